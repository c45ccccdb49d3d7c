"""The images run: metadata, a non-root read-only container, the node serving iWmo over mTLS."""

from __future__ import annotations

import os
import shutil
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node_runtime.model.loading import ResourceSet
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, EXAMPLES, MESSAGES, NODE, free_port
from tests.controlplane.cluster import wait_for
from tests.images import podman
from tests.runtime.helpers import header, retourcodes
from tests.runtime.test_intake_e2e import gemeente_name, sender_of

pytestmark = pytest.mark.images

UID = 10001
VERSION = tomllib.loads((podman.REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("which", ["node_runtime", "operator"])
def test_image_metadata(images: podman.Images, which: str) -> None:
    ref = getattr(images, which)
    assert ref.endswith(f":{VERSION}")
    info = images.inspect(ref)
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "EUPL-1.2"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.title"] == f"knooppunt-{which.replace('_', '-')}"
    assert info["Config"]["User"] == f"{UID}:{UID}"


@pytest.mark.parametrize("which", ["node_runtime", "operator"])
def test_image_runs_read_only_as_non_root_without_build_tools(
    images: podman.Images, which: str
) -> None:
    script = (
        "import importlib.metadata as m, os, shutil, knooppunt_operator.main\n"
        "import node_runtime.api.server\n"
        "print(os.getuid(), os.getgid(), m.version('knooppunt'))\n"
        "print(*[t for t in ('gcc', 'cc', 'make', 'pip', 'pip3', 'apt-get') if shutil.which(t)])\n"
        "caches = ('/root/.cache', '/var/lib/apt/lists/partial', '/var/cache/apt/archives')\n"
        "print(*[d for d in caches if os.path.isdir(d) and os.listdir(d)])\n"
        "try:\n    open('/opt/knooppunt/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n"
    )
    out = podman.podman(
        "run",
        "--rm",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        *podman.ulimit_args(),
        getattr(images, which),
        "python3",
        "-c",
        script,
    ).stdout.splitlines()
    assert out[0] == f"{UID} {UID} {VERSION}"
    assert out[1] == "", f"build tools in the final image: {out[1]}"
    assert out[2] == "", f"caches left in the final image: {out[2]}"
    assert out[3] == "ro 30"  # EROFS: the root filesystem is read-only


def test_node_image_carries_the_portals_css(images: podman.Images) -> None:
    """The façade (the node image's `knooppunt facade`) serves the vendored NL Design System
    CSS from the image: the files of tools/portal-assets/build.sh, found by the setting."""
    script = (
        "import os\n"
        "from node_runtime.facade.config import FacadeSettings\n"
        "assets = FacadeSettings(resources=[]).portal_assets\n"
        "print(assets)\n"
        "print(sorted(os.listdir(assets / 'css')))\n"
        "print(os.path.getsize(assets / 'css' / 'components.css') > 10000)\n"
    )
    out = podman.podman(
        "run",
        "--rm",
        "--read-only",
        *podman.ulimit_args(),
        images.node_runtime,
        "python3",
        "-c",
        script,
    ).stdout.splitlines()
    assert out == [
        "/opt/knooppunt/share/portal",
        "['components.css', 'theme.css']",
        "True",
    ]


def _private_copy(src: Path, dst: Path) -> None:
    shutil.copy(src, dst)
    os.chown(dst, UID, UID)
    dst.chmod(0o400)


@pytest.fixture()
def node_container(
    images: podman.Images, dev_pki: DevPki, tmp_path: Path
) -> Iterator[tuple[int, int]]:
    """`knooppunt serve` in the node image, configured like the operator's pod; its ports."""
    tls = tmp_path / "tls"
    tls.mkdir()
    _private_copy(dev_pki.server.chain, tls / "tls.crt")
    _private_copy(dev_pki.server.key, tls / "tls.key")
    _private_copy(dev_pki.ca_bundle, tls / "ca.crt")
    _private_copy(dev_pki.crl, tls / "crl.pem")
    resources = tmp_path / "resources"
    resources.mkdir()
    for name in ("knooppunt.yaml", "connector.yaml", "gemeenten.yaml"):
        shutil.copy(EXAMPLES / name, resources / name)
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    port, health = free_port(), free_port()
    name = f"knooppunt-test-{uuid.uuid4().hex[:10]}"
    env = {
        "KNOOPPUNT_NODE": NODE,
        "KNOOPPUNT_RESOURCES": '["/etc/knooppunt/resources"]',
        "KNOOPPUNT_DATA_DIR": "/var/lib/knooppunt",
        "KNOOPPUNT_HOST": "0.0.0.0",
        "KNOOPPUNT_PORT": "8443",
        "KNOOPPUNT_HEALTH_PORT": "8080",
        "KNOOPPUNT_TLS_CERT": "/etc/knooppunt/tls/tls.crt",
        "KNOOPPUNT_TLS_KEY": "/etc/knooppunt/tls/tls.key",
        "KNOOPPUNT_TLS_TRUST": "/etc/knooppunt/tls/ca.crt",
        "KNOOPPUNT_TLS_CRL": "/etc/knooppunt/tls/crl.pem",
    }
    podman.podman(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        *podman.ulimit_args(),
        "--publish",
        f"127.0.0.1:{port}:8443",
        "--publish",
        f"127.0.0.1:{health}:8080",
        "--volume",
        f"{resources}:/etc/knooppunt/resources:ro",
        "--volume",
        f"{tls}:/etc/knooppunt/tls:ro",
        "--volume",
        f"{data}:/var/lib/knooppunt",
        *[a for k, v in env.items() for a in ("--env", f"{k}={v}")],
        images.node_runtime,
        "knooppunt",
        "serve",
    )
    try:

        def ready() -> bool:
            state = podman.podman("inspect", "--format", "{{.State.Running}}", name).stdout
            if state.strip() != "true":
                raise AssertionError(podman.podman("logs", name, check=False).stderr[-3000:])
            return httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=2).status_code == 200

        wait_for(ready, timeout=120, message="the node container's /readyz")
        yield port, health
    finally:
        podman.podman("rm", "--force", "--time", "5", name, check=False)


def test_node_image_serves_the_iwmo_example_over_mutual_tls(
    node_container: tuple[int, int], dev_pki: DevPki, example_resources: ResourceSet
) -> None:
    port, _ = node_container

    def party(name: str) -> httpx.Client:
        paths = dev_pki.clients[name]
        ctx = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
        return httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=30)

    url = f"/api/v1/connectors/{CONNECTOR}/messages"
    connector = example_resources.connectors[CONNECTOR]
    purposes = {p.name: p for p in connector.spec.purposes}
    expected: dict[str, int] = {}
    messages = sorted(MESSAGES.glob("*.xml"))
    assert len(messages) >= 8
    for path in messages:
        body = path.read_bytes()
        head = header(body)
        with party(sender_of(example_resources, head["Afzender"])) as client:
            resp = client.post(url, content=body, headers={"content-type": "application/xml"})
        assert resp.status_code == 202, resp.text
        assert set(retourcodes(resp.content)) == {"0200"}
        mt = "WMO" + {"414": "301", "418": "305", "420": "307", "444": "315"}[head["BerichtCode"]]
        if mt != "WMO301":  # toewijzingen go to the provider's mailbox
            g = example_resources.gemeenten[gemeente_name(example_resources, head["Ontvanger"])]
            subs = [
                s
                for s in g.spec.subscriptions
                if mt in purposes[s.purpose].messages and (not s.messages or mt in s.messages)
            ]
            expected[head["Ontvanger"]] = expected.get(head["Ontvanger"], 0) + len(subs)
    assert sum(expected.values()) > 0
    for g in example_resources.gemeenten.values():
        code = g.spec.gemeentecode
        with party(g.name) as client:
            items = client.get(f"/api/v1/gemeenten/{code}/mailbox").json()["items"]
            assert len(items) == expected.get(code, 0), code
            for item in items[:2]:
                doc = client.get(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}").json()
                assert doc["kenmerken"]["ontvanger"] == code

    # Without a client certificate the TLS handshake itself is refused.
    ctx = client_context(None, None, dev_pki.ca_bundle)
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx, timeout=10) as anonymous:
        anonymous.get(f"https://localhost:{port}/api/v1/gemeenten/0363/mailbox")
