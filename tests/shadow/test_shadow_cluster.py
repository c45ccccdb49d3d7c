"""Shadow validation on a cluster (real control plane, operator with its generated RBAC).

spec.shadow with a bundle from a ConfigMap → the operator snapshots it with the revision and
mounts it into the node's pod → the node, started from exactly what its pod would see (kwok
pods do not run; tests/operator/podview.py) and with only its own service account, evaluates
the live traffic off the request path and writes the differences into the SectorConnector's
status → promotion is an edit of the SectorConnector, and the existing rollbacks (a pin, and
the automatic one after a failed rollout) still work after it. On the way, the other two
parts of issue 17 as the pod runs them: its processing-log checkpoint is signed with the key of
its mounted TLS Secret, and an overdue conversation's Event carries the Knooppunt's uid.

The traffic and the expected report are those of the local-mode test (tests/shadow/
test_shadow.py): one tightened rule, one renamed field; the live answers are byte for byte
those of a local node without a shadow.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from cryptography import x509
from knooppunt_operator import kube
from knooppunt_operator.builders import meta

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.conversations.events import EventSink
from node_runtime.ledger import checkpoints
from node_runtime.node.config import Settings
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import ADMIN_CERT, ADMIN_OIN, free_port
from tests.controlplane.capabilities import FAKE_NODE, RUNTIME_PODS
from tests.controlplane.cluster import KubeCluster
from tests.operator import scenarios
from tests.operator.harness import Cluster
from tests.operator.podview import PodView, materialise
from tests.operator.test_operator_controlplane import (  # noqa: F401 - fixtures
    Running,
    cordoned,
    operator_credentials,
    running,
)
from tests.shadow import test_shadow as local

pytestmark = [pytest.mark.controlplane, pytest.mark.asyncio]

NODE, CONNECTOR = scenarios.NODE, scenarios.CONNECTOR
NEXT_BUNDLE = "iwmo-next-bundle"  # the next release's files, as a platform team ships them
TLS_SECRET = f"{NODE}-server-tls"
BUILTIN = Path(local.__file__).resolve().parents[2] / "node_runtime" / "connectors" / "iwmo-2.1"
SHADOW_MOUNT = f"/etc/knooppunt/shadow-bundles/{CONNECTOR}"
LIVE_MOUNT = f"/etc/knooppunt/bundles/{CONNECTOR}"


def bundle_config_map() -> dict[str, Any]:
    """The iWmo 2.1 files with one change the next release makes: retourcode 8190 (the new
    rule's) is a valid RetourCode in its retour messages."""
    data = {
        str(p.relative_to(BUILTIN)).replace("/", "__"): p.read_text()
        for p in sorted(BUILTIN.rglob("*"))
        if p.is_file() and p.suffix in (".xsd", ".xsl")
    }
    anchor = '<xs:enumeration value="9101">'
    assert anchor in data["basisschema.xsd"]
    data["basisschema.xsd"] = data["basisschema.xsd"].replace(
        anchor, f'<xs:enumeration value="8190"/>{anchor}', 1
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NEXT_BUNDLE},
        "data": data,
    }


def next_release(live_spec: dict[str, Any]) -> dict[str, Any]:
    """The shadow: WMO305 with one rule more and `code` renamed to `productcode`."""
    messages = copy.deepcopy(live_spec["messages"])
    wmo305 = next(m for m in messages if m["name"] == "WMO305")
    wmo305["rules"].append(local.NEW_RULE)
    fields = wmo305["conversion"]["mapping"]["fields"]
    fields["clienten[].producten[].productcode"] = fields.pop("clienten[].producten[].code")
    return {
        "standardVersion": "2.2-concept",
        "bundle": {"configMap": NEXT_BUNDLE},
        "messages": messages,
    }


def b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def tls_secret(pki: DevPki) -> dict[str, Any]:
    """The node's server certificate from the (PKIoverheid-shaped) development PKI."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": TLS_SECRET},
        "data": {
            "tls.crt": b64(pki.server.chain),
            "tls.key": b64(pki.server.key),
            "ca.crt": b64(pki.ca_bundle),
            "crl.pem": b64(pki.crl),
        },
    }


class Pod:
    """`knooppunt serve` as the node's pod would run it: its env, its mounts, its account."""

    def __init__(self, view: PodView, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        env = dict(view.env)
        env.update(
            KNOOPPUNT_HOST="127.0.0.1",
            KNOOPPUNT_PORT=str(free_port()),
            KNOOPPUNT_KUBECONFIG=str(kubeconfig),
            KNOOPPUNT_SHADOW_STATUS_INTERVAL="0.3",
            KNOOPPUNT_RELOAD_INTERVAL="0.2",
        )
        env.pop("KNOOPPUNT_HEALTH_PORT")
        for name in [n for n in os.environ if n.startswith("KNOOPPUNT_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.settings = Settings()  # type: ignore[call-arg] - from the environment, as in a pod
        self.view = view
        self.node: RunningNode | None = None

    def __enter__(self) -> RunningNode:
        self.node = start_in_thread(self.settings)
        return self.node

    def __exit__(self, *exc: object) -> None:
        assert self.node is not None
        self.node.stop()


def client(node: RunningNode, pki: DevPki, name: str) -> httpx.Client:
    paths = pki.store.paths(name)
    return httpx.Client(
        base_url=f"https://localhost:{node.port}",
        timeout=30,
        verify=client_context(paths.chain, paths.key, pki.ca_bundle),
    )


def send_traffic(
    node: RunningNode, pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[int, bytes]]:
    """The local test's traffic, with the same message ids (as local.run numbers them)."""
    counter = itertools.count(1)
    answers = []
    with monkeypatch.context() as patched:
        patched.setattr("node_runtime.pipeline.intake.secrets", local.numbered(counter))
        for sender, body in local.traffic():
            with client(node, pki, sender) as c:
                r = c.post(local.URL, content=body, headers=local.XML)
                answers.append((r.status_code, r.content))
    assert node.node.intake.shadow is not None
    node.node.intake.shadow.drain()
    return answers


async def shadow_status(cluster: Cluster) -> dict[str, Any]:
    connector = await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR)
    return dict((connector.get("status") or {}).get("shadow") or {})


@pytest_asyncio.fixture()
async def shadowed(
    running: Running,  # noqa: F811 - the control-plane suite's fixture
    controlplane: KubeCluster,
    dev_pki: DevPki,
) -> AsyncIterator[Cluster]:
    """The next release's bundle ConfigMap, the connector declaring it as its shadow, the
    example gemeenten and a node (provided TLS Secret), rolled out."""
    cluster = running.cluster
    await cluster.create(bundle_config_map())
    await cluster.create(tls_secret(dev_pki))
    for doc in scenarios.example("gemeenten.yaml"):
        await cluster.create(doc)
    body = scenarios.connector_resource()
    body["spec"]["shadow"] = next_release(body["spec"])
    await cluster.create(body)
    await cluster.wait_condition(kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True")
    kp = scenarios.knooppunt_resource(
        security={"administrators": [ADMIN_OIN], "tlsSecret": TLS_SECRET}
    )
    await cluster.create(kp)
    await cluster.eventually(lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    yield cluster


@pytest.mark.cluster_needs(RUNTIME_PODS, FAKE_NODE)
async def test_a_shadow_revision_reaches_the_pod_reports_its_differences_and_is_promoted(
    shadowed: Cluster,
    controlplane: KubeCluster,
    dev_pki: DevPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = shadowed
    if not dev_pki.store.has("admin"):  # the local-mode comparison asks as "admin"
        dev_pki.store.issue_client("admin", organisation="Beheer", oin=ADMIN_OIN)

    # --- spec.shadow → the objects the pod mounts -------------------------------------------
    [record] = await cluster.list(kube.CONTROLLER_REVISION, **{meta.CONNECTOR_LABEL: CONNECTOR})
    snapshot_name = meta.shadow_bundle_snapshot_name(CONNECTOR, 1)
    assert record["data"]["shadowBundle"]["configMap"] == snapshot_name
    snapshot = await cluster.must_get(kube.CONFIG_MAP, snapshot_name)
    assert snapshot["immutable"] is True
    assert snapshot["data"] == bundle_config_map()["data"]
    # editing the source ConfigMap later never changes what the revision serves
    await cluster.patch(kube.CONFIG_MAP, NEXT_BUNDLE, {"data": {"wmo305.xsd": "<broken/>"}})
    pod_root = tmp_path / "pod-r1"
    view = await materialise(cluster, NODE, pod_root)
    assert SHADOW_MOUNT in view.mounts and LIVE_MOUNT not in view.mounts  # live: builtin
    shadow_files = view.path(SHADOW_MOUNT)
    assert (shadow_files / "retour" / "wmo306.xsl").is_file()
    assert (shadow_files / "wmo305.xsd").read_text() == bundle_config_map()["data"]["wmo305.xsd"]

    # --- the node runs it off the request path and reports into the SectorConnector ---------
    kubeconfig = controlplane.kubeconfig_for_service_account(cluster.namespace, NODE, create=False)
    pod = Pod(view, kubeconfig, monkeypatch)
    with pod as node:
        answers = await asyncio.to_thread(send_traffic, node, dev_pki, monkeypatch)

        async def reported() -> dict[str, Any] | None:
            entry = (await shadow_status(cluster)).get(NODE)
            return entry if entry and entry.get("messages") == 4 else None

        entry = await cluster.eventually(reported, timeout=30, what="status.shadow.<node>")
        with client(node, dev_pki, ADMIN_CERT) as admin:
            metrics = (await asyncio.to_thread(admin.get, "/metrics")).text
        # an overdue conversation becomes an Event `kubectl describe knooppunt` finds (it
        # selects by uid), posted with the node's own account
        sink = next(h for h in node.node.conversations.on_overdue if isinstance(h, EventSink))
        labels = (CONNECTOR, "verzoek-om-toewijzing", "0363", "98000023", "overdue")
        await asyncio.to_thread(sink, {}, {labels: 2})
        with client(node, dev_pki, "gemeente-amsterdam") as amsterdam:
            checkpoint = await asyncio.to_thread(
                amsterdam.post, "/api/v1/gemeenten/0363/processing-log/checkpoint"
            )
    assert [status for status, _ in answers] == [202, 202, 422, 202, 202]
    expected = {
        "standardVersion": "2.2-concept",
        "messages": 4,
        "differences": {
            "WMO305": {"would-be-rejected": 1, "different-fields": 1, "other-retourcodes": 1}
        },
    }
    assert {k: entry[k] for k in expected} == expected
    assert "error" not in entry and entry["updatedAt"]
    kinds = [(e["messageType"], e["kind"]) for e in entry["examples"]]
    assert kinds == [
        ("WMO305", "would-be-rejected"),
        ("WMO305", "different-fields"),
        ("WMO305", "other-retourcodes"),
    ]
    assert entry["examples"][0]["retourcodes"][0]["code"] == "8190"
    assert entry["examples"][1] == {
        "messageType": "WMO305",
        "kind": "different-fields",
        "missingFields": ["clienten[].producten[].code"],
        "addedFields": ["clienten[].producten[].productcode"],
    }
    connector = await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR)
    status_text = yaml.safe_dump(connector["status"])
    for value in ("999990", "01A0", "Bakker", "98000011"):  # no BSN, product codes, names
        assert value not in status_text
    for kind in ("would-be-rejected", "different-fields", "other-retourcodes"):
        assert (
            f'knooppunt_shadow_differences_total{{connector="{CONNECTOR}",'
            f'kind="{kind}",message_type="WMO305"}} 1.0'
        ) in metrics
    # the operator's part of the status is untouched by the node's report
    assert connector["status"]["revisions"] == [1]

    # the processing-log checkpoint: signed with the node's key from the mounted TLS Secret
    assert checkpoint.status_code == 200, checkpoint.text
    signed = checkpoints.Checkpoint.from_json(checkpoint.json())
    assert signed.tree_size > 0
    trust = x509.load_pem_x509_certificates(
        (pod.view.path("/etc/knooppunt/tls") / "ca.crt").read_bytes()
    )
    signer = checkpoints.verify(signed, trust=trust)
    assert signer == x509.load_pem_x509_certificates(dev_pki.server.chain.read_bytes())[0]

    uid = (await cluster.must_get(kube.KNOOPPUNT, NODE))["metadata"]["uid"]
    assert pod.view.env["KNOOPPUNT_NODE_UID"] == uid
    selector = f"involvedObject.kind=Knooppunt,involvedObject.name={NODE},involvedObject.uid={uid}"
    with controlplane.client() as http:
        found = http.get(
            f"/api/v1/namespaces/{cluster.namespace}/events", params={"fieldSelector": selector}
        ).json()["items"]
    assert [e["message"] for e in found if e["reason"] == "ConversationOverdue"] == [
        f"2 item(s) of conversation verzoek-om-toewijzing ({CONNECTOR}) overdue for gemeente "
        "0363, opened by 98000023"
    ]

    # live answers: byte for byte those of a local node without a shadow
    with monkeypatch.context() as patched:
        without = local.run(tmp_path, dev_pki, local.resources(tmp_path, shadow=False), patched)
    assert answers == without[0]

    # --- promotion: an edit of the SectorConnector -------------------------------------------
    first_template = await scenarios.template_hash(cluster)
    spec = (await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR))["spec"]
    promoted = copy.deepcopy(spec)
    shadow = promoted.pop("shadow")
    promoted.update(
        revision=2,
        standardVersion=shadow["standardVersion"],
        bundle={"builtin": None, **shadow["bundle"]},  # a merge patch: drop the old source
        messages=shadow["messages"],
    )
    await cluster.patch(kube.CONFIG_MAP, NEXT_BUNDLE, {"data": bundle_config_map()["data"]})
    await cluster.patch(kube.SECTOR_CONNECTOR, CONNECTOR, {"spec": {**promoted, "shadow": None}})

    async def serving(revision: int) -> bool:
        return await scenarios.served_revision(cluster) == revision

    async def template_changed() -> bool:
        return await scenarios.template_hash(cluster) != first_template

    await cluster.eventually(lambda: serving(2), what="promotion to revision 2")
    # the operator writes the resources ConfigMap and then the Deployment's template: two
    # writes, which a reader may see one at a time
    await cluster.eventually(template_changed, what="pod template of revision 2")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["connectors"][0]["standardVersion"] == "2.2-concept"
    view = await materialise(cluster, NODE, tmp_path / "pod-r2")
    assert LIVE_MOUNT in view.mounts and SHADOW_MOUNT not in view.mounts
    assert (await cluster.must_get(kube.CONFIG_MAP, meta.bundle_snapshot_name(CONNECTOR, 2)))[
        "immutable"
    ]
    # the new pod: the tightened rule is live now, and it takes its predecessor's report away
    pod = Pod(view, kubeconfig, monkeypatch)
    with pod as node:
        with client(node, dev_pki, "zorggroep-de-linde") as sender:
            body = local.with_new_id(local.LINDE.read_bytes(), "LINDE000009")
            r = await asyncio.to_thread(sender.post, local.URL, content=body, headers=local.XML)

        async def removed() -> bool:
            return NODE not in await shadow_status(cluster)

        await cluster.eventually(removed, timeout=30, what="status.shadow.<node> removed")
    assert r.status_code == 422 and b"RetourCode>8190<" in r.content, r.text  # rejected now

    # --- the existing rollbacks after a promotion --------------------------------------------
    # declarative: pin the previous revision again (and its shadow comes back with it)
    await cluster.patch(
        kube.KNOOPPUNT, NODE, {"spec": {"connectors": [{"name": CONNECTOR, "revision": 1}]}}
    )
    await cluster.eventually(lambda: serving(1), what="pinned back to revision 1")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    view = await materialise(cluster, NODE, tmp_path / "pod-r1-again")
    assert SHADOW_MOUNT in view.mounts
    # automatic: promote again; the rollout does not become ready → back to revision 1
    await cluster.patch(
        kube.KNOOPPUNT, NODE, {"spec": {"connectors": [{"name": CONNECTOR, "revision": 2}]}}
    )
    await cluster.eventually(lambda: serving(2), what="promoted again")
    await cluster.set_rollout(NODE, ready=False)
    degraded = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Degraded", "True", reason="RolledBack", timeout=30
    )
    assert "rolled back to revision 1" in degraded["message"]
    await cluster.eventually(lambda: serving(1), what="rolled back to revision 1")
    view = await materialise(cluster, NODE, tmp_path / "pod-rolled-back")
    assert SHADOW_MOUNT in view.mounts
