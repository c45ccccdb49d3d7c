"""Two knooppunten with different connectors and a façade on loopback, all over mutual TLS.

* knooppunt-zorg serves iWmo 2.1 (examples/iwmo); knooppunt-schulden serves a small second
  sector written as data only (tests/facade/data/vroegsignalering: its own XSD in a path:
  bundle).
* Four gemeenten: Amsterdam and Rotterdam use both nodes, Utrecht only the iWmo node,
  's-Gravenhage only the vroegsignalering node. Zwolle has a certificate but is onboarded
  live by a test.
* One development PKI issues every certificate: the nodes' and façade's server certificate, the
  gemeenten, the sector parties, the façade's own organisation certificate (listed in both
  nodes' spec.security.facadeOins), a second listed façade and an unlisted look-alike.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.facade import FacadeSettings, RunningFacade, start_facade_in_thread
from node_runtime.model.loading import load_paths
from node_runtime.node.config import Settings
from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from node_runtime.security.tls.contexts import client_context

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "iwmo"
IWMO_MESSAGES = EXAMPLES / "messages"
DATA = Path(__file__).resolve().parent / "data"
VS_DIR = DATA / "vroegsignalering"
VS_MESSAGES = VS_DIR / "messages"

NODE_A = "knooppunt-zorg"
NODE_B = "knooppunt-schulden"
IWMO = "iwmo-2-1"
VS = "vroegsignalering-1-0"
FACADE_OIN = "00000001999000000777"
SECOND_FACADE_OIN = "00000001999000000778"
UNLISTED_FACADE_OIN = "00000001999000000779"
XML = {"content-type": "application/xml"}


@dataclass(frozen=True)
class G:
    name: str
    code: str
    oin: str
    display: str
    subscriptions: tuple[tuple[str, str, str], ...]


GEMEENTEN = (
    G(
        "gemeente-amsterdam",
        "0363",
        "00000001999000363000",
        "Gemeente Amsterdam",
        (
            (IWMO, "wmo-uitvoering", "Wmo 2015 art. 5.1.1 jo. art. 2.3.5"),
            (IWMO, "wmo-toewijzing", "Wmo 2015 art. 2.3.2 en 2.3.5"),
            (VS, "schuldhulp-vroegsignalering", "Wgs art. 3a"),
        ),
    ),
    G(
        "gemeente-rotterdam",
        "0599",
        "00000001999000599000",
        "Gemeente Rotterdam",
        (
            (IWMO, "wmo-uitvoering", "Wmo 2015 art. 5.1.1 jo. art. 2.3.5"),
            (VS, "schuldhulp-vroegsignalering", "Wgs art. 3a"),
        ),
    ),
    G(
        "gemeente-utrecht",
        "0344",
        "00000001999000344000",
        "Gemeente Utrecht",
        (
            (IWMO, "wmo-toewijzing", "Wmo 2015 art. 2.3.2 en 2.3.5"),
            (IWMO, "wmo-beleidsinformatie", "Wmo 2015 art. 5.4.1"),
        ),
    ),
    G(
        "gemeente-s-gravenhage",
        "0518",
        "00000001999000518000",
        "Gemeente 's-Gravenhage",
        ((VS, "schuldhulp-beleidsinformatie", "Wgs art. 7"),),
    ),
)
LATE = G(
    "gemeente-zwolle",
    "0193",
    "00000001999000193000",
    "Gemeente Zwolle",
    ((VS, "schuldhulp-vroegsignalering", "Wgs art. 3a"),),
)
BY_CODE = {g.code: g for g in (*GEMEENTEN, LATE)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gemeente_doc(g: G) -> dict[str, Any]:
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Gemeente",
        "metadata": {"name": g.name},
        "spec": {
            "gemeentecode": g.code,
            "oin": g.oin,
            "displayName": g.display,
            "subscriptions": [
                {"connector": c, "purpose": p, "legalBasis": b} for c, p, b in g.subscriptions
            ],
        },
    }


def knooppunt_doc(name: str, display: str, connector: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Knooppunt",
        "metadata": {"name": name},
        "spec": {
            "displayName": display,
            "connectors": [{"name": connector}],
            "replicas": 1,
            "endpoint": f"https://localhost:{port}",
            "security": {"facadeOins": [FACADE_OIN, SECOND_FACADE_OIN]},
        },
    }


@pytest.fixture(scope="session")
def facade_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    resources = load_paths([EXAMPLES / "connector.yaml", VS_DIR / "connector.yaml"])
    clients = [(g.name, g.display, g.oin) for g in (*GEMEENTEN, LATE)]
    for connector in resources.connectors.values():
        for p in connector.spec.participants:
            assert p.certificate.serial_number
            clients.append((p.name, p.display_name, p.certificate.serial_number))
    clients += [
        ("facade", "Gemeentelijke cloud façade", FACADE_OIN),
        ("facade-2", "Gemeentelijke cloud façade (tweede instantie)", SECOND_FACADE_OIN),
        ("facade-unlisted", "Niet-geregistreerde façade", UNLISTED_FACADE_OIN),
    ]
    return ensure_dev_pki(tmp_path_factory.mktemp("facade-pki"), clients=clients)


@dataclass
class World:
    root: Path
    tmp: Path
    pki: DevPki
    node_settings: dict[str, Settings]
    nodes: dict[str, RunningNode]
    facade: RunningFacade
    facade_settings: FacadeSettings
    ports: dict[str, int]
    _clients: list[httpx.Client] = field(default_factory=list)

    # -- clients ---------------------------------------------------------------------------

    def _client(self, port: int, cert: str, timeout: float = 30) -> httpx.Client:
        paths = self.pki.clients[cert]
        ctx = client_context(paths.chain, paths.key, self.pki.ca_bundle)
        client = httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=timeout)
        self._clients.append(client)
        return client

    def at_facade(self, cert: str, timeout: float = 30) -> httpx.Client:
        """A client of the façade authenticated with certificate ``cert``."""
        return self._client(self.facade.port, cert, timeout)

    def at_node(self, node: str, cert: str) -> httpx.Client:
        """A client straight to a node, authenticated with certificate ``cert``."""
        return self._client(self.ports[node], cert)

    def close(self) -> None:
        for c in self._clients:
            c.close()

    # -- scenario helpers ------------------------------------------------------------------

    def send(self, node: str, sender_cert: str, path: Path, connector: str) -> httpx.Response:
        resp = self.at_node(node, sender_cert).post(
            f"/api/v1/connectors/{connector}/messages", content=path.read_bytes(), headers=XML
        )
        assert resp.status_code == 202, resp.text
        return resp

    def stop_node(self, node: str) -> None:
        self.nodes.pop(node).stop()

    def start_node(self, node: str) -> None:
        self.nodes[node] = start_in_thread(self.node_settings[node])

    def write_knooppunt(self, node: str, **spec: Any) -> None:
        path = self.root / f"{node}.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["spec"].update(spec)
        path.write_text(yaml.safe_dump(doc))

    def wait_for(self, check: Callable[[], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            time.sleep(0.1)


def build_world(
    tmp: Path,
    pki: DevPki,
    *,
    node_timeout: float = 1.5,
    prepare: Callable[[Path], None] | None = None,
    **facade: Any,
) -> World:
    """Two nodes and a façade on ``tmp``; ``prepare`` may change the resources before they start,
    ``facade`` sets further façade settings."""
    root = tmp / "resources"
    root.mkdir()
    shutil.copy(EXAMPLES / "connector.yaml", root / "iwmo-connector.yaml")
    shutil.copytree(VS_DIR / "bundle", root / "bundle")
    shutil.copy(VS_DIR / "connector.yaml", root / "vroegsignalering-connector.yaml")
    (root / "gemeenten.yaml").write_text(yaml.safe_dump_all([gemeente_doc(g) for g in GEMEENTEN]))
    ports = {NODE_A: free_port(), NODE_B: free_port()}
    (root / f"{NODE_A}.yaml").write_text(
        yaml.safe_dump(
            knooppunt_doc(NODE_A, "Knooppunt Zorg en Ondersteuning (iWmo)", IWMO, ports[NODE_A])
        )
    )
    (root / f"{NODE_B}.yaml").write_text(
        yaml.safe_dump(
            knooppunt_doc(NODE_B, "Knooppunt Schulden (vroegsignalering)", VS, ports[NODE_B])
        )
    )
    settings = {
        name: Settings(
            node=name,
            resources=[root],
            data_dir=tmp / f"data-{name}",
            port=port,
            tls_cert=pki.server.chain,
            tls_key=pki.server.key,
            tls_trust=pki.ca_bundle,
            tls_crl=pki.crl,
            reload_interval=0.2,
            delivery_enabled=False,
        )
        for name, port in ports.items()
    }
    facade_settings = FacadeSettings(
        resources=[root],
        port=free_port(),
        tls_cert=pki.server.chain,
        tls_key=pki.server.key,
        tls_trust=pki.ca_bundle,
        tls_crl=pki.crl,
        client_cert=pki.clients["facade"].chain,
        client_key=pki.clients["facade"].key,
        node_timeout=node_timeout,
        reload_interval=0.2,
        **facade,
    )
    if prepare is not None:
        prepare(root)
    nodes = {name: start_in_thread(s) for name, s in settings.items()}
    facade = start_facade_in_thread(facade_settings)
    return World(
        root=root,
        tmp=tmp,
        pki=pki,
        node_settings=settings,
        nodes=nodes,
        facade=facade,
        facade_settings=facade_settings,
        ports=ports,
    )


@pytest.fixture()
def world(tmp_path: Path, facade_pki: DevPki) -> Iterator[World]:
    w = build_world(tmp_path, facade_pki)
    try:
        yield w
    finally:
        w.close()
        w.facade.stop()
        for running in list(w.nodes.values()):
            running.stop()


def participant_for(sender: str) -> str:
    """The certificate name of the sector party sending as ``sender`` (AGB or KvK)."""
    resources = load_paths([EXAMPLES / "connector.yaml", VS_DIR / "connector.yaml"])
    for connector in resources.connectors.values():
        for p in connector.spec.participants:
            if sender in p.identifiers:
                return p.name
    raise KeyError(sender)
