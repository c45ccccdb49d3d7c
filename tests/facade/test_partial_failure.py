"""One node down or slow: the façade answers from the others within its per-node bound, says per
node what is missing, and reports nothing as acknowledged that the owning node did not confirm.

No wall-clock assertions: a node that never answers would hang the call forever; the test's own
client timeout (ten times the façade's bound) is a safety net, not a measurement."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.facade.conftest import (
    IWMO,
    IWMO_MESSAGES,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    World,
)

MAILBOX = "/api/v1/gemeenten/0363/mailbox"


@pytest.fixture()
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung node)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _fill(world: World) -> None:
    world.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    world.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-amsterdam.xml", VS)


def _client(world: World) -> Any:
    return world.at_facade("gemeente-amsterdam", timeout=10 * world.facade_settings.node_timeout)


def _unacknowledged_on_b(world: World) -> set[str]:
    items = world.at_node(NODE_B, "gemeente-amsterdam").get(MAILBOX).json()["items"]
    return {i["id"] for i in items}


def test_node_down_degraded_answers_and_no_false_ack(world: World) -> None:
    _fill(world)
    ams = _client(world)
    before = ams.get(MAILBOX).json()["items"]
    on_b = next(i for i in before if i["node"] == NODE_B)
    world.stop_node(NODE_B)

    page = ams.get(MAILBOX)
    assert page.status_code == 200
    body = page.json()
    assert body["complete"] is False
    assert body["nodes"][NODE_A]["status"] == "ok"
    assert body["nodes"][NODE_B]["status"] == "unavailable"
    assert body["nodes"][NODE_B]["detail"]
    assert {i["node"] for i in body["items"]} == {NODE_A}

    log = ams.get("/api/v1/gemeenten/0363/processing-log").json()
    assert log["complete"] is False and log["nodes"][NODE_B]["status"] == "unavailable"
    assert log["records"] and {r["node"] for r in log["records"]} == {NODE_A}

    catalogue = ams.get("/api/v1/catalogue").json()
    assert catalogue["complete"] is False
    assert catalogue["nodeStatus"][NODE_B]["status"] == "unavailable"
    assert {c["name"] for c in catalogue["connectors"]} == {IWMO, VS}  # still listed

    fetch = ams.get(f"{MAILBOX}/{on_b['id']}")
    assert fetch.status_code == 502 and fetch.json()["node"] == NODE_B
    ack = ams.post(f"{MAILBOX}/{on_b['id']}/ack")
    assert ack.status_code == 502
    assert ack.json()["acknowledged"] is False
    assert ack.json()["type"].endswith("/node-unavailable")
    outbound = ams.post(
        f"/api/v1/connectors/{VS}/messages",
        content=(VS_MESSAGES / "vs02-amsterdam-onshuis.xml").read_bytes(),
        headers={"content-type": "application/xml"},
    )
    assert outbound.status_code == 502 and outbound.json()["submitted"] is False

    # the other node keeps working through the façade
    on_a = next(i for i in body["items"] if i["node"] == NODE_A)
    assert ams.post(f"{MAILBOX}/{on_a['id']}/ack").status_code == 204

    world.start_node(NODE_B)
    assert on_b["nodeItemId"] in _unacknowledged_on_b(world)  # nothing was acknowledged
    healed = ams.get(MAILBOX).json()
    assert healed["complete"] is True
    assert [i["id"] for i in healed["items"]] == [on_b["id"]]
    assert ams.post(f"{MAILBOX}/{on_b['id']}/ack").status_code == 204
    assert on_b["nodeItemId"] not in _unacknowledged_on_b(world)


def test_hung_node_times_out_per_node(world: World, black_hole: int) -> None:
    _fill(world)
    ams = _client(world)
    on_b = next(i for i in ams.get(MAILBOX).json()["items"] if i["node"] == NODE_B)
    generation = ams.get("/readyz").json()["generation"]
    # Point the façade at a node that accepts connections and never answers (live change).
    world.write_knooppunt(NODE_B, endpoint=f"https://localhost:{black_hole}")
    world.wait_for(lambda: ams.get("/readyz").json()["generation"] > generation)

    body = ams.get(MAILBOX).json()
    assert body["complete"] is False
    assert body["nodes"][NODE_A]["status"] == "ok"
    assert body["nodes"][NODE_B]["status"] == "timeout"
    assert {i["node"] for i in body["items"]} == {NODE_A}

    ack = ams.post(f"{MAILBOX}/{on_b['id']}/ack")
    assert ack.status_code == 504
    assert ack.json()["acknowledged"] is False
    assert on_b["nodeItemId"] in _unacknowledged_on_b(world)

    generation = ams.get("/readyz").json()["generation"]
    world.write_knooppunt(NODE_B, endpoint=f"https://localhost:{world.ports[NODE_B]}")
    world.wait_for(lambda: ams.get("/readyz").json()["generation"] > generation)
    assert ams.get(MAILBOX).json()["complete"] is True


def test_node_refusing_the_facade_is_reported_not_hidden(world: World) -> None:
    """A node that no longer lists the façade refuses it: reported per node as an error."""
    _fill(world)
    ams = _client(world)
    world.write_knooppunt(NODE_B, security={"facadeOins": []})
    world.wait_for(lambda: ams.get(MAILBOX).json()["nodes"][NODE_B]["status"] == "error")
    body = ams.get(MAILBOX).json()
    assert body["complete"] is False
    assert "not-a-facade" in body["nodes"][NODE_B]["detail"]
    on_b_id = f"{NODE_B}~{next(iter(_unacknowledged_on_b(world)))}"
    ack = ams.post(f"{MAILBOX}/{on_b_id}/ack")
    assert ack.status_code == 502 and ack.json()["acknowledged"] is False
