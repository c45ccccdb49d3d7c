"""On a cluster the runtime lists and watches Gemeente resources itself (real API server):
onboarding, changing and removing a gemeente take effect live, without a restart."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from node_runtime.node.assembly import build_node
from node_runtime.node.config import Settings
from node_runtime.security.pki.store import DevPki
from tests.conftest import EXAMPLES, NODE, REPO
from tests.controlplane.cluster import KubeCluster


def _wait(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _install_crds(cp: KubeCluster) -> None:
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        cp.apply(yaml.safe_load(crd.read_text()))
    with cp.client() as http:
        for plural in ("gemeenten", "sectorconnectors", "knooppunten"):
            assert _wait(
                lambda p=plural: any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (
                        http.get(
                            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                            f"{p}.knooppunt.nl"
                        )
                        .json()
                        .get("status")
                        or {}
                    ).get("conditions")
                    or []
                )
            )


@pytest.mark.controlplane
def test_runtime_follows_gemeenten_in_the_api(
    controlplane: KubeCluster, controlplane_namespace: str, tmp_path: Path, dev_pki: DevPki
) -> None:
    cp, ns = controlplane, controlplane_namespace
    _install_crds(cp)
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "gemeenten.yaml").read_text()) if d]
    for doc in docs[:2]:
        doc["metadata"]["namespace"] = ns
        cp.apply(doc)
    files = tmp_path / "resources"
    files.mkdir()
    for name in ("knooppunt.yaml", "connector.yaml"):
        shutil.copy(EXAMPLES / name, files / name)
    settings = Settings(
        node=NODE,
        resources=[files],
        data_dir=tmp_path / "data",
        gemeenten_source="kubernetes",
        namespace=ns,
        kubeconfig=cp.kubeconfig,
        delivery_enabled=False,
    )
    node = build_node(settings, identity=lambda request: None)
    try:
        codes = lambda: set(node.holder.current.gemeenten_by_code)  # noqa: E731
        assert codes() == {d["spec"]["gemeentecode"] for d in docs[:2]}
        # onboarding
        docs[2]["metadata"]["namespace"] = ns
        cp.apply(docs[2])
        assert _wait(lambda: docs[2]["spec"]["gemeentecode"] in codes())
        generation = node.holder.current.generation
        # changing a subscription
        docs[2]["spec"]["subscriptions"] = docs[2]["spec"]["subscriptions"][:1]
        docs[2]["spec"]["subscriptions"][0]["purpose"] = "wmo-uitvoering"
        cp.apply(docs[2])
        code = docs[2]["spec"]["gemeentecode"]
        assert _wait(
            lambda: (
                [s.purpose for s in node.holder.current.gemeenten_by_code[code].spec.subscriptions]
                == ["wmo-uitvoering"]
            )
        )
        assert node.holder.current.generation > generation
        # removal
        with cp.client() as http:
            http.delete(
                f"/apis/knooppunt.nl/v1alpha1/namespaces/{ns}/gemeenten/"
                f"{docs[0]['metadata']['name']}"
            ).raise_for_status()
        assert _wait(lambda: docs[0]["spec"]["gemeentecode"] not in codes())
    finally:
        if node.gemeente_watch is not None:
            node.gemeente_watch.stop()
        node.store.close()


@pytest.mark.controlplane
def test_overdue_conversations_become_events_on_the_knooppunt(
    controlplane: KubeCluster, controlplane_namespace: str
) -> None:
    """The node records a ConversationOverdue Warning Event when an overdue count grows."""
    from node_runtime.conversations.events import EventSink
    from node_runtime.state.kubernetes_source import from_kubeconfig

    cp, ns = controlplane, controlplane_namespace
    sink = EventSink(from_kubeconfig(cp.kubeconfig), ns, NODE)
    labels = ("iwmo-2-1", "verzoek-om-toewijzing", "0363", "98000023", "overdue")
    sink({}, {labels: 2})
    sink({labels: 2}, {labels: 2})  # unchanged: no new event
    with cp.client() as http:
        events = [
            e
            for e in http.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
            if e["reason"] == "ConversationOverdue"
        ]
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Knooppunt"
    assert event["involvedObject"]["name"] == NODE
    assert "2 item(s) of conversation verzoek-om-toewijzing" in event["message"]
    assert "0363" in event["message"]


@pytest.mark.controlplane
def test_shadow_report_lands_in_the_sectorconnector_status(
    controlplane: KubeCluster, controlplane_namespace: str
) -> None:
    """A node writes its shadow report into status.shadow.<node> and removes it when the
    shadow is gone; the operator's part of the status stays."""
    from node_runtime.shadow.status import StatusWriter
    from node_runtime.state.kubernetes_source import from_kubeconfig

    cp, ns = controlplane, controlplane_namespace
    _install_crds(cp)
    doc = yaml.safe_load((EXAMPLES / "connector.yaml").read_text())
    doc["metadata"]["namespace"] = ns
    cp.apply(doc)
    path = f"/apis/knooppunt.nl/v1alpha1/namespaces/{ns}/sectorconnectors/iwmo-2-1"
    with cp.client() as http:
        http.patch(
            f"{path}/status",
            json={"status": {"revision": 1}},
            headers={"content-type": "application/merge-patch+json"},
        ).raise_for_status()
    report = {
        "standardVersion": "2.2-concept",
        "messages": 3,
        "error": None,
        "differences": {"WMO305": {"would-be-rejected": 1}},
        "examples": [
            {
                "messageType": "WMO305",
                "kind": "would-be-rejected",
                "retourcodes": [{"code": "8190", "path": "/wmo305:Bericht"}],
            }
        ],
    }
    reports: dict[str, dict[str, object]] = {"iwmo-2-1": report}
    writer = StatusWriter(
        from_kubeconfig(cp.kubeconfig),
        ns,
        NODE,
        reports=lambda: reports,
        connectors=lambda: ["iwmo-2-1"],
    )
    assert writer.write() == 1
    assert writer.write() == 0  # unchanged: no patch
    with cp.client() as http:
        status = http.get(path).json()["status"]
    assert status["revision"] == 1
    entry = status["shadow"][NODE]
    assert entry["messages"] == 3 and entry["updatedAt"]
    assert entry["differences"] == {"WMO305": {"would-be-rejected": 1}}
    assert entry["examples"][0]["retourcodes"] == [{"code": "8190", "path": "/wmo305:Bericht"}]
    reports.clear()  # promoted: no shadow any more
    assert writer.write() == 1
    with cp.client() as http:
        status = http.get(path).json()["status"]
    assert NODE not in (status.get("shadow") or {}) and status["revision"] == 1
