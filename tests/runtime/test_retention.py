"""Retention: settled payloads are purged after their period, with a log record; nothing
unacknowledged is ever purged; the processing log has its own period."""

from __future__ import annotations

from datetime import timedelta

from node_runtime.api.server import RunningNode
from node_runtime.jobs.retention import run_retention
from node_runtime.model.loading import ResourceSet
from node_runtime.store.sql import now
from tests.conftest import CONNECTOR, MESSAGES, PartyFactory
from tests.runtime.helpers import header

URL = f"/api/v1/connectors/{CONNECTOR}/messages"


def test_purge_after_retention(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = next(
        p.read_bytes()
        for p in sorted(MESSAGES.glob("wmo305*.xml"))
        if header(p.read_bytes())["Ontvanger"] == "0363"
    )
    agb = header(body)["Afzender"]
    provider = next(
        p.name
        for p in example_resources.connectors[CONNECTOR].spec.participants
        if agb in p.identifiers
    )
    assert (
        party(provider)
        .post(URL, content=body, headers={"content-type": "application/xml"})
        .status_code
        == 202
    )
    owner = party("gemeente-amsterdam")
    items = owner.get("/api/v1/gemeenten/0363/mailbox").json()["items"]
    assert len(items) == 1
    state = running_node.node.holder.current
    store = running_node.node.store
    days = state.connectors[CONNECTOR].resource.spec.payload_retention_days
    later = now() + timedelta(days=days + 1)
    # unacknowledged: never purged, however old
    assert run_retention(state, store, now=later)["deliveries"] == 0
    assert owner.get(f"/api/v1/gemeenten/0363/mailbox/{items[0]['id']}").status_code == 200
    assert owner.post(f"/api/v1/gemeenten/0363/mailbox/{items[0]['id']}/ack").status_code == 204
    # acknowledged but within the period: kept
    assert run_retention(state, store, now=now())["deliveries"] == 0
    result = run_retention(state, store, now=later)
    assert result["deliveries"] == 1 and result["payloads"] == 1
    gone = owner.get(f"/api/v1/gemeenten/0363/mailbox/{items[0]['id']}")
    assert gone.status_code == 410
    log = owner.get("/api/v1/gemeenten/0363/processing-log", params={"activity": "purge"}).json()[
        "records"
    ]
    assert log and all(r["deliveryId"] == items[0]["id"] for r in log)
    # idempotent
    assert run_retention(state, store, now=later)["deliveries"] == 0
    # the processing log has its own, longer period
    log_days = state.knooppunt.spec.processing_log.retention_days
    assert run_retention(state, store, now=later)["logRecords"] == 0
    assert run_retention(state, store, now=now() + timedelta(days=log_days + 2))["logRecords"] > 0
