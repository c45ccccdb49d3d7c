"""The façade deployed by the Pulumi stacks runs as a real pod and serves a gemeente.

The real Pulumi engine (tools/pulumi/build.sh, a fresh ``file://`` backend) applies the
platform stack (namespaces, the development CA, the façade's server certificate, the gemeenten's
client certificates) and the façade stack, whose Deployment runs the node-runtime image built
from this tree on the real worker node. The provider waits for the Deployment, so ``pulumi up``
only returns once the kubelet found the pod Ready through its real readiness probe. Then
Amsterdam, with the client certificate the platform stack issued into its Secret, calls the
façade over mutual TLS and gets its own catalogue; a caller without a certificate is refused in
the handshake. ``pulumi destroy`` of both stacks leaves no namespace of theirs.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node_runtime.security.tls.contexts import client_context
from tests.iac.conftest import unavailable
from tests.iac.engine import BUILD, Engine, built, example_config
from tests.iac.engine import platform_config as shared_platform_config
from tests.iac.harness import REPO
from tests.realpods.conftest import RealPods

pytestmark = [pytest.mark.realpods, pytest.mark.pulumi_engine, pytest.mark.timeout(1800)]

SFX = uuid.uuid4().hex[:5]
NS = {"operator": f"kp{SFX}-system", "facade": f"kp{SFX}-facade", "nodes": f"kp{SFX}-nodes"}
FACADE_HOST = "facade.knooppunt.localtest.me"  # the façade certificate's name (Pulumi.dev.yaml)


def platform_config() -> dict[str, Any]:
    return shared_platform_config(NS)


def facade_config(image: str) -> dict[str, Any]:
    config = example_config("facade")
    config["image"] = image
    config["replicas"] = 1
    # No ingress controller on the test node: the Ingress never gets an address.
    config["entry"] = {**config["entry"], "annotations": {"pulumi.com/skipAwait": "true"}}
    return config


@pytest.fixture(scope="module")
def engine(realpods: RealPods, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if not built():
        unavailable(f"the Pulumi engine is not built: run {BUILD.relative_to(REPO)}")
    eng = Engine(tmp_path_factory.mktemp("pulumi-realpods"), realpods.cp.kubeconfig)
    eng.init("platform", config=platform_config())
    eng.init("facade", config=facade_config(realpods.images.node_runtime))
    yield eng
    for project in ("facade", "platform"):  # after a failure: leave no debris
        if any(r["type"].startswith("kubernetes:") for r in eng.resources(project)):
            eng.run(project, "destroy", "--yes", "--skip-preview", check=False)


def secret_files(http: httpx.Client, ns: str, name: str, into: Path) -> tuple[Path, Path]:
    r = http.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    r.raise_for_status()
    data = r.json()["data"]
    cert, key = into / f"{name}.crt", into / f"{name}.key"
    cert.write_bytes(base64.b64decode(data["tls.crt"]))
    key.write_bytes(base64.b64decode(data["tls.key"]))
    key.chmod(0o600)
    return cert, key


def test_the_facade_of_the_stack_serves_a_gemeente(
    engine: Engine, realpods: RealPods, tmp_path: Path
) -> None:
    engine.run("platform", "up", "--yes")
    engine.run("facade", "up", "--yes")  # returns when the Deployment is available
    engine.run("facade", "preview", "--expect-no-changes")

    with realpods.cp.client() as http:
        r = http.get(
            f"/api/v1/namespaces/{NS['facade']}/pods",
            params={"labelSelector": "app.kubernetes.io/name=knooppunt-facade"},
        )
        r.raise_for_status()
        [pod] = r.json()["items"]
        assert pod["spec"]["nodeName"] == realpods.node.name
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and "running" in status["state"], status
        assert status["imageID"], "the image really ran"
        cert, key = secret_files(http, NS["facade"], "gemeente-amsterdam-client-tls", tmp_path)

    ca = tmp_path / "federation-ca.crt"
    ca.write_text(engine.outputs("platform")["caCertificate"])
    url = f"https://{pod['status']['podIP']}:8443/api/v1/catalogue"
    sni = {"sni_hostname": FACADE_HOST}

    with httpx.Client(verify=client_context(cert, key, ca), timeout=60) as amsterdam:
        r = amsterdam.get(url, extensions=sni)
    assert r.status_code == 200, r.text
    catalogue = r.json()
    assert catalogue["gemeente"] == {
        "gemeentecode": "0363",
        "oin": "00000001999000363000",
        "displayName": "Gemeente Amsterdam",
    }
    [iwmo] = [c for c in catalogue["connectors"] if c["name"] == "iwmo-2-1"]
    assert iwmo["subscribed"]
    assert {s["purpose"] for s in iwmo["subscriptions"]} == {"wmo-uitvoering", "wmo-toewijzing"}

    # Without a client certificate the façade refuses the handshake.
    with (
        pytest.raises(httpx.HTTPError),
        httpx.Client(verify=client_context(None, None, ca), timeout=30) as anonymous,
    ):
        anonymous.get(url, extensions=sni)

    engine.run("facade", "destroy", "--yes")
    engine.run("platform", "destroy", "--yes")
    with realpods.cp.client() as http:
        for ns in NS.values():
            assert http.get(f"/api/v1/namespaces/{ns}").status_code == 404, ns
