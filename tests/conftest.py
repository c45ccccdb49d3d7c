"""Shared fixtures: the example resources, a development PKI, a node served over mutual TLS."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.model.loading import ResourceSet, load_paths
from node_runtime.node.config import Settings
from node_runtime.security.pki.development import ensure_for_resources
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.runtime.receiver import Receiver, start_receiver

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "iwmo"
MESSAGES = EXAMPLES / "messages"
NODE = "knooppunt-zorg"
#: The example node's SQLite file in its data directory (spec.storage.sqlitePath).
SQLITE_FILE = "knooppunt-zorg.db"
CONNECTOR = "iwmo-2-1"
#: The administrator every test node registers (certificate ``admin-test`` of the dev PKI).
ADMIN_OIN = "00000001999000000999"
ADMIN_CERT = "admin-test"

pytest_plugins = [
    "tests.controlplane.fixtures",
    "tests.postgresql.fixtures",
    "tests.images.fixtures",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def example_resources() -> ResourceSet:
    return load_paths([EXAMPLES])


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory, example_resources: ResourceSet) -> DevPki:
    pki = ensure_for_resources(tmp_path_factory.mktemp("pki"), example_resources, NODE)
    pki.store.issue_client(ADMIN_CERT, organisation="Knooppunt beheer", oin=ADMIN_OIN)
    return pki


@pytest.fixture()
def resource_dir(tmp_path: Path) -> Path:
    """A private copy of the example resources (tests may change it while the node runs)."""
    target = tmp_path / "resources"
    target.mkdir()
    for name in ("knooppunt.yaml", "connector.yaml", "gemeenten.yaml"):
        shutil.copy(EXAMPLES / name, target / name)
    knooppunt = yaml.safe_load((target / "knooppunt.yaml").read_text())
    knooppunt["spec"].setdefault("security", {})["administrators"] = [ADMIN_OIN]
    (target / "knooppunt.yaml").write_text(yaml.safe_dump(knooppunt))
    return target


def node_settings(resource_dir: Path, data_dir: Path, pki: DevPki, **extra: object) -> Settings:
    """A node's settings for tests; push delivery inline (in the node's process) unless
    ``delivery_worker="process"`` is given (tests/runtime/test_delivery_process.py)."""
    extra.setdefault("delivery_worker", "inline")
    return Settings(
        node=NODE,
        resources=[resource_dir],
        data_dir=data_dir,
        port=free_port(),
        tls_cert=pki.server.chain,
        tls_key=pki.server.key,
        tls_trust=pki.ca_bundle,
        tls_crl=pki.crl,
        reload_interval=0.2,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture()
def running_node(tmp_path: Path, resource_dir: Path, dev_pki: DevPki) -> Iterator[RunningNode]:
    running = start_in_thread(node_settings(resource_dir, tmp_path / "data", dev_pki))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def receiver(dev_pki: DevPki) -> Iterator[Receiver]:
    """A gemeente's push endpoint (mTLS) on loopback, trusting the dev PKI."""
    rec, manager = start_receiver(dev_pki)
    try:
        yield rec
    finally:
        manager.__exit__(None, None, None)


PartyFactory = Callable[[str], httpx.Client]


@pytest.fixture()
def party(running_node: RunningNode, dev_pki: DevPki) -> Iterator[PartyFactory]:
    """party('gemeente-amsterdam') → an httpx client authenticated with that certificate."""
    clients: list[httpx.Client] = []

    def make(name: str) -> httpx.Client:
        paths = dev_pki.store.paths(name)
        ctx = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
        client = httpx.Client(
            base_url=f"https://localhost:{running_node.port}", verify=ctx, timeout=30
        )
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
