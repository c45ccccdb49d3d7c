"""Mailboxes, the processing log, tenant isolation, live reload and operability."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from node_runtime.api.server import RunningNode
from node_runtime.model.loading import ResourceSet
from tests.conftest import ADMIN_CERT, CONNECTOR, MESSAGES, PartyFactory
from tests.runtime.helpers import bsns, header

URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}


def _participant(resources: ResourceSet, agb: str) -> str:
    return next(
        p.name for p in resources.connectors[CONNECTOR].spec.participants if agb in p.identifiers
    )


def _gemeente(resources: ResourceSet, code: str) -> str:
    return next(g.name for g in resources.gemeenten.values() if g.spec.gemeentecode == code)


def _send(party: PartyFactory, resources: ResourceSet, path: Path) -> dict[str, str]:
    body = path.read_bytes()
    head = header(body)
    resp = party(_participant(resources, head["Afzender"])).post(URL, content=body, headers=XML)
    assert resp.status_code == 202, resp.text
    return head


def test_mailbox_list_fetch_ack_and_isolation(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    path = sorted(MESSAGES.glob("wmo305*.xml"))[0]
    head = _send(party, example_resources, path)
    code = head["Ontvanger"]
    owner = party(_gemeente(example_resources, code))
    items = owner.get(f"/api/v1/gemeenten/{code}/mailbox").json()["items"]
    assert items
    item = items[0]
    doc = owner.get(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}")
    assert doc.status_code == 200 and doc.headers["content-type"].startswith("application/json")
    env = doc.json()
    for key in (
        "kanaal",
        "hoofdObject",
        "resource",
        "resourceUrl",
        "actie",
        "aanmaakdatum",
        "kenmerken",
        "inhoud",
    ):
        assert key in env
    # another gemeente can neither list, fetch, nor acknowledge it
    other = next(g for g in example_resources.gemeenten.values() if g.spec.gemeentecode != code)
    intruder = party(other.name)
    assert intruder.get(f"/api/v1/gemeenten/{code}/mailbox").status_code == 403
    assert intruder.get(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}").status_code == 403
    assert intruder.post(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}/ack").status_code == 403
    own_code = other.spec.gemeentecode
    assert intruder.get(f"/api/v1/gemeenten/{own_code}/mailbox/{item['id']}").status_code == 404
    # a participant cannot read a gemeente mailbox
    provider = party(_participant(example_resources, head["Afzender"]))
    assert provider.get(f"/api/v1/gemeenten/{code}/mailbox").status_code == 403
    # acknowledging twice is harmless; the message then leaves the default listing
    first = owner.post(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}/ack")
    again = owner.post(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}/ack")
    assert first.status_code == again.status_code == 204
    assert first.headers["knooppunt-acknowledged"] == "first"
    assert again.headers["knooppunt-acknowledged"] == "again"
    remaining = owner.get(f"/api/v1/gemeenten/{code}/mailbox").json()["items"]
    assert item["id"] not in [i["id"] for i in remaining]
    everything = owner.get(
        f"/api/v1/gemeenten/{code}/mailbox", params={"includeAcknowledged": "true"}
    ).json()["items"]
    acked = next(i for i in everything if i["id"] == item["id"])
    assert acked["acknowledgedAt"] and acked["readCount"] == 1


def test_processing_log_per_subject_and_step(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    path = sorted(MESSAGES.glob("wmo305*.xml"))[0]
    body = path.read_bytes()
    head = _send(party, example_resources, path)
    code = head["Ontvanger"]
    owner = party(_gemeente(example_resources, code))
    item = owner.get(f"/api/v1/gemeenten/{code}/mailbox").json()["items"][0]
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fetched = owner.get(
        f"/api/v1/gemeenten/{code}/mailbox/{item['id']}", headers={"traceparent": traceparent}
    )
    assert fetched.headers["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    records = owner.get(f"/api/v1/gemeenten/{code}/processing-log", params={"limit": 1000}).json()[
        "records"
    ]
    subjects = bsns(body)
    activities = {r["activity"] for r in records}
    assert {"receive", "validate", "convert", "route", "read"} <= activities
    routed = [r for r in records if r["activity"] == "route"]
    assert len({r["subjectRef"] for r in routed}) == len(set(subjects))
    assert all(r["controller"] == code for r in records)
    reads = [r for r in records if r["activity"] == "read"]
    assert reads and all(r["traceId"] == "0af7651916cd43dd8448eb211c80319c" for r in reads)
    assert all(r["parentSpanId"] for r in reads)
    assert all(r["purpose"] == item["purpose"] and r["legalBasis"] for r in reads)
    text = repr(records)
    assert not any(bsn in text for bsn in subjects)
    # search by BSN (in the body) finds that citizen's records only
    found = owner.post(
        f"/api/v1/gemeenten/{code}/processing-log/search", json={"bsn": subjects[0]}
    ).json()
    assert found["records"]
    assert {r["subjectRef"] for r in found["records"]} == {found["subjectRef"]}
    by_ref = owner.get(
        f"/api/v1/gemeenten/{code}/processing-log", params={"subjectRef": found["subjectRef"]}
    ).json()["records"]
    assert [r["id"] for r in by_ref] == [r["id"] for r in found["records"]]
    # another gemeente sees none of it
    other = next(g for g in example_resources.gemeenten.values() if g.spec.gemeentecode != code)
    intruder = party(other.name)
    assert intruder.get(f"/api/v1/gemeenten/{code}/processing-log").status_code == 403
    own = intruder.get(f"/api/v1/gemeenten/{other.spec.gemeentecode}/processing-log").json()
    assert all(r["controller"] == other.spec.gemeentecode for r in own["records"])
    assert not {r["id"] for r in own["records"]} & {r["id"] for r in records}


def test_new_gemeente_is_picked_up_live(
    running_node: RunningNode, party: PartyFactory, resource_dir: Path, dev_pki: object
) -> None:
    state = running_node.node.holder.current
    assert "0014" not in state.gemeenten_by_code
    doc = {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Gemeente",
        "metadata": {"name": "gemeente-groningen"},
        "spec": {
            "gemeentecode": "0014",
            "oin": "00000001999000014000",
            "displayName": "Gemeente Groningen",
            "subscriptions": [
                {
                    "connector": CONNECTOR,
                    "purpose": "wmo-beleidsinformatie",
                    "legalBasis": "Wmo 2015 art. 5.4.1",
                }
            ],
        },
    }
    (resource_dir / "groningen.yaml").write_text(yaml.safe_dump(doc))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "0014" in running_node.node.holder.current.gemeenten_by_code:
            break
        time.sleep(0.1)
    assert "0014" in running_node.node.holder.current.gemeenten_by_code
    # a broken change is refused and the last good configuration stays in force
    (resource_dir / "broken.yaml").write_text(
        "apiVersion: knooppunt.nl/v1alpha1\n"
        "kind: Gemeente\nmetadata: {name: x}\n"
        "spec: {gemeentecode: '12'}\n"
    )
    generation = running_node.node.holder.current.generation
    time.sleep(1.0)
    assert running_node.node.holder.current.generation == generation
    assert "0014" in running_node.node.holder.current.gemeenten_by_code
    metrics = party(ADMIN_CERT).get("/metrics").text
    assert "knooppunt_config_reload_errors_total 1.0" in metrics


def test_operability_endpoints(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    client = party("gemeente-amsterdam")
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["connectors"] == {CONNECTOR: 1}
    _send(party, example_resources, sorted(MESSAGES.glob("wmo305*.xml"))[0])
    assert client.get("/metrics").status_code == 403  # per-gemeente figures: administrators only
    metrics = party(ADMIN_CERT).get("/metrics").text
    assert 'knooppunt_messages_total{connector="iwmo-2-1",gemeente=' in metrics
    assert "knooppunt_intake_duration_seconds_bucket" in metrics
    assert "knooppunt_mailbox_pending" in metrics
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    for expected in (
        "/api/v1/connectors/{connector}/messages",
        "/api/v1/gemeenten/{gemeentecode}/mailbox",
        "/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery_id}",
        "/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery_id}/ack",
        "/api/v1/gemeenten/{gemeentecode}/processing-log",
        "/api/v1/gemeenten/{gemeentecode}/processing-log/search",
        "/api/v1/participants/{participant}/mailbox",
        "/api/v1/catalogue",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert expected in paths
    catalogue = client.get("/api/v1/catalogue").json()
    assert catalogue["principal"] == {"kind": "gemeente", "id": "0363"}
    assert catalogue["connectors"][0]["subscriptions"]
