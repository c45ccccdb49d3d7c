"""The façade end to end over mutual TLS: one mailbox, one processing log, the outbound path and
one catalogue across two knooppunten with different connectors."""

from __future__ import annotations

from typing import Any

from tests.facade.conftest import (
    FACADE_OIN,
    IWMO,
    IWMO_MESSAGES,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    XML,
    World,
)


def _fill(world: World) -> None:
    """Messages for Amsterdam on both nodes, and for Rotterdam, Utrecht and Den Haag."""
    world.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    world.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-amsterdam.xml", VS)
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo315-anker-amsterdam.xml", IWMO)
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo305-anker-rotterdam.xml", IWMO)
    world.send(NODE_B, "energie-noord", VS_MESSAGES / "vs01-energienoord-rotterdam.xml", VS)
    world.send(NODE_A, "welzijn-de-brug", IWMO_MESSAGES / "wmo315-brug-utrecht.xml", IWMO)
    world.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-denhaag.xml", VS)


def _mailbox(world: World, cert: str, code: str, **params: Any) -> dict[str, Any]:
    resp = world.at_facade(cert).get(f"/api/v1/gemeenten/{code}/mailbox", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_one_mailbox_across_both_nodes(world: World) -> None:
    _fill(world)
    page = _mailbox(world, "gemeente-amsterdam", "0363")
    assert page["complete"] is True
    assert set(page["nodes"]) == {NODE_A, NODE_B}
    assert all(r["status"] == "ok" for r in page["nodes"].values())
    items = page["items"]
    # WMO305 (wmo-uitvoering), WMO315 (twice: uitvoering and toewijzing) and VS01
    assert {i["node"] for i in items} == {NODE_A, NODE_B}
    assert sorted(i["messageType"] for i in items) == ["VS01", "WMO305", "WMO315", "WMO315"]
    for item in items:
        node, _, node_id = item["id"].partition("~")
        assert node == item["node"] and node_id == item["nodeItemId"]
    created = [i["createdAt"] for i in items]
    assert created == sorted(created)  # merged by time
    # The same items as each node lists for Amsterdam directly.
    for node in (NODE_A, NODE_B):
        direct = (
            world.at_node(node, "gemeente-amsterdam")
            .get("/api/v1/gemeenten/0363/mailbox")
            .json()["items"]
        )
        assert sorted(d["id"] for d in direct) == sorted(
            i["nodeItemId"] for i in items if i["node"] == node
        )
    # Only its own nodes: Utrecht (iWmo only) and Den Haag (vroegsignalering only)
    utrecht = _mailbox(world, "gemeente-utrecht", "0344")
    assert set(utrecht["nodes"]) == {NODE_A} and {i["node"] for i in utrecht["items"]} == {NODE_A}
    denhaag = _mailbox(world, "gemeente-s-gravenhage", "0518")
    assert set(denhaag["nodes"]) == {NODE_B}
    assert [i["messageType"] for i in denhaag["items"]] == ["VS01"]


def test_fetch_is_the_nodes_document_unchanged(world: World) -> None:
    _fill(world)
    ams = world.at_facade("gemeente-amsterdam")
    for item in _mailbox(world, "gemeente-amsterdam", "0363")["items"]:
        via = ams.get(f"/api/v1/gemeenten/0363/mailbox/{item['id']}")
        assert via.status_code == 200
        assert via.headers["knooppunt-node"] == item["node"]
        assert via.headers["knooppunt-delivery-id"] == item["id"]
        direct = world.at_node(item["node"], "gemeente-amsterdam").get(
            f"/api/v1/gemeenten/0363/mailbox/{item['nodeItemId']}"
        )
        assert via.content == direct.content
        assert via.headers["content-type"] == direct.headers["content-type"]
    # Doelbinding still applies: Den Haag's beleidsinformatie purpose releases no BSN or name.
    dh = world.at_facade("gemeente-s-gravenhage")
    item = _mailbox(world, "gemeente-s-gravenhage", "0518")["items"][0]
    doc = dh.get(f"/api/v1/gemeenten/0518/mailbox/{item['id']}").json()
    assert set(doc["inhoud"]) <= {"dagtekening", "huishoudens"}
    assert all(
        set(h) <= {"soortAchterstand", "bedrag", "maanden"} for h in doc["inhoud"]["huishoudens"]
    )
    assert "999990056" not in str(doc)


def test_ack_reaches_the_owning_node(world: World) -> None:
    _fill(world)
    ams = world.at_facade("gemeente-amsterdam")
    items = _mailbox(world, "gemeente-amsterdam", "0363")["items"]
    target = next(i for i in items if i["node"] == NODE_B)
    first = ams.post(f"/api/v1/gemeenten/0363/mailbox/{target['id']}/ack")
    again = ams.post(f"/api/v1/gemeenten/0363/mailbox/{target['id']}/ack")
    assert first.status_code == again.status_code == 204
    assert first.headers["knooppunt-acknowledged"] == "first"
    assert again.headers["knooppunt-acknowledged"] == "again"
    assert first.headers["knooppunt-node"] == NODE_B
    # On the owning node the delivery is acknowledged, on the other node nothing changed.
    node_b = world.at_node(NODE_B, "gemeente-amsterdam")
    everything = node_b.get(
        "/api/v1/gemeenten/0363/mailbox", params={"includeAcknowledged": "true"}
    ).json()["items"]
    acked = next(i for i in everything if i["id"] == target["nodeItemId"])
    assert acked["acknowledgedAt"] is not None
    remaining = _mailbox(world, "gemeente-amsterdam", "0363")["items"]
    assert target["id"] not in [i["id"] for i in remaining]
    assert len(remaining) == len(items) - 1
    # The node's processing log names the gemeente as actor, and the façade it came through.
    log = node_b.get(
        "/api/v1/gemeenten/0363/processing-log", params={"activity": "acknowledge"}
    ).json()["records"]
    assert log and all(r["actor"] == f"gemeente:0363 via facade:{FACADE_OIN}" for r in log)


def test_mailbox_pagination_across_nodes(world: World) -> None:
    _fill(world)
    expected = {i["id"] for i in _mailbox(world, "gemeente-amsterdam", "0363")["items"]}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["after"] = cursor
        page = _mailbox(world, "gemeente-amsterdam", "0363", **params)
        seen += [i["id"] for i in page["items"]]
        cursor = page["nextAfter"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and set(seen) == expected
    bad = world.at_facade("gemeente-amsterdam").get(
        "/api/v1/gemeenten/0363/mailbox", params={"after": "not a cursor!"}
    )
    assert bad.status_code == 400 and bad.json()["type"].endswith("/invalid-cursor")


def test_one_processing_log_merged_and_filtered(world: World) -> None:
    _fill(world)
    ams = world.at_facade("gemeente-amsterdam")
    resp = ams.get("/api/v1/gemeenten/0363/processing-log", params={"limit": 1000})
    assert resp.status_code == 200
    body = resp.json()
    records = body["records"]
    assert body["complete"] and set(body["nodes"]) == {NODE_A, NODE_B}
    assert {r["node"] for r in records} == {NODE_A, NODE_B}
    assert {r["controller"] for r in records} == {"0363"}
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps)
    for node in (NODE_A, NODE_B):
        direct = (
            world.at_node(node, "gemeente-amsterdam")
            .get("/api/v1/gemeenten/0363/processing-log", params={"limit": 1000})
            .json()["records"]
        )
        assert {r["id"] for r in direct} <= {r["id"] for r in records if r["node"] == node}
    # by connector: only the node serving it is asked
    only_vs = ams.get(
        "/api/v1/gemeenten/0363/processing-log", params={"connector": VS, "limit": 1000}
    ).json()
    assert set(only_vs["nodes"]) == {NODE_B}
    assert only_vs["records"] and {r["connector"] for r in only_vs["records"]} == {VS}
    # by purpose
    purpose = ams.get(
        "/api/v1/gemeenten/0363/processing-log", params={"purpose": "wmo-toewijzing"}
    ).json()["records"]
    assert purpose and {r["purpose"] for r in purpose} == {"wmo-toewijzing"}
    # by subject reference (each node pseudonymises with its own key)
    ref = next(r["subjectRef"] for r in records if r["node"] == NODE_B and r["subjectRef"])
    by_ref = ams.get("/api/v1/gemeenten/0363/processing-log", params={"subjectRef": ref}).json()[
        "records"
    ]
    assert by_ref and {r["subjectRef"] for r in by_ref} == {ref}
    # by period: nothing before the first record, everything from it on
    first = records[0]["timestamp"]
    assert (
        ams.get("/api/v1/gemeenten/0363/processing-log", params={"until": first}).json()["records"]
        == []
    )
    since = ams.get(
        "/api/v1/gemeenten/0363/processing-log", params={"since": first, "limit": 1000}
    ).json()["records"]
    assert len(since) == len(records)
    # pagination walks the merged log without gaps or repeats
    walked: list[str] = []
    cursor = None
    for _ in range(200):
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["after"] = cursor
        page = ams.get("/api/v1/gemeenten/0363/processing-log", params=params).json()
        walked += [r["id"] for r in page["records"]]
        cursor = page["nextAfter"]
        if cursor is None:
            break
    assert len(walked) == len(set(walked)) >= len(records)


def test_citizen_search_across_nodes(world: World) -> None:
    _fill(world)
    ams = world.at_facade("gemeente-amsterdam")
    # 999990019 occurs in the WMO305 (iWmo node) and in the VS01 (vroegsignalering node)
    resp = ams.post("/api/v1/gemeenten/0363/processing-log/search", json={"bsn": "999990019"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body["subjectRefs"]) == {NODE_A, NODE_B}
    assert {r["node"] for r in body["records"]} == {NODE_A, NODE_B}
    assert "999990019" not in resp.text.replace('"bsn"', "")  # never echoed
    bad = ams.post("/api/v1/gemeenten/0363/processing-log/search", json={"bsn": "123456789"})
    assert bad.status_code == 422


def test_outbound_wmo301_answer_passed_back_unchanged(world: World) -> None:
    ams = world.at_facade("gemeente-amsterdam")
    body = (IWMO_MESSAGES / "wmo301-amsterdam-anker.xml").read_bytes()
    via = ams.post(f"/api/v1/connectors/{IWMO}/messages", content=body, headers=XML)
    assert via.status_code == 202, via.text
    assert via.headers["knooppunt-node"] == NODE_A
    assert via.headers["knooppunt-outcome"] == "accepted"
    assert via.headers["content-type"].startswith("application/xml")
    assert b"wmo302" in via.content.lower()
    # The node answers the very same message (a duplicate) with the first answer, byte for byte:
    # the façade handed that answer over unchanged.
    direct = world.at_node(NODE_A, "gemeente-amsterdam").post(
        f"/api/v1/connectors/{IWMO}/messages", content=body, headers=XML
    )
    assert direct.status_code == 202 and direct.headers["knooppunt-duplicate"] == "true"
    assert direct.content == via.content
    assert direct.headers["knooppunt-message-id"] == via.headers["knooppunt-message-id"]
    assert direct.headers["location"] == via.headers["location"]
    again = ams.post(f"/api/v1/connectors/{IWMO}/messages", content=body, headers=XML)
    assert again.headers["knooppunt-duplicate"] == "true" and again.content == via.content
    # The provider finds the assignment in its mailbox on the iWmo node.
    anker = world.at_node(NODE_A, "thuiszorg-het-anker")
    items = anker.get("/api/v1/participants/thuiszorg-het-anker/mailbox").json()["items"]
    assert [i["messageType"] for i in items] == ["WMO301"]


def test_outbound_routed_by_connector_and_refusals_unchanged(world: World) -> None:
    ams = world.at_facade("gemeente-amsterdam")
    vs02 = (VS_MESSAGES / "vs02-amsterdam-onshuis.xml").read_bytes()
    resp = ams.post(f"/api/v1/connectors/{VS}/messages", content=vs02, headers=XML)
    assert resp.status_code == 202, resp.text
    assert resp.headers["knooppunt-node"] == NODE_B
    assert resp.json()["status"] == "accepted"
    creditor = world.at_node(NODE_B, "woningcorporatie-ons-huis")
    items = creditor.get("/api/v1/participants/woningcorporatie-ons-huis/mailbox").json()["items"]
    assert [i["messageType"] for i in items] == ["VS02"]
    # The node's refusals come back as the node gave them.
    broken = ams.post(f"/api/v1/connectors/{IWMO}/messages", content=b"<not-xml", headers=XML)
    assert broken.status_code == 400 and broken.headers["knooppunt-node"] == NODE_A
    assert broken.json()["type"].endswith("/not-well-formed")
    wrong_type = ams.post(
        f"/api/v1/connectors/{IWMO}/messages",
        content=b"<a/>",
        headers={"content-type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    unknown = ams.post("/api/v1/connectors/ijw-3-0/messages", content=vs02, headers=XML)
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/unknown-connector")
    # Utrecht has no vroegsignalering subscription: the node refuses it.
    utrecht = world.at_facade("gemeente-utrecht")
    refused = utrecht.post(f"/api/v1/connectors/{VS}/messages", content=vs02, headers=XML)
    assert refused.status_code == 403


def test_catalogue_and_openapi(world: World) -> None:
    ams = world.at_facade("gemeente-amsterdam").get("/api/v1/catalogue").json()
    assert ams["gemeente"]["gemeentecode"] == "0363"
    assert ams["complete"] is True
    assert {n["name"]: n["subscribed"] for n in ams["nodes"]} == {NODE_A: True, NODE_B: True}
    connectors = {c["name"]: c for c in ams["connectors"]}
    assert connectors[IWMO]["node"] == NODE_A and connectors[VS]["node"] == NODE_B
    purposes = {p["name"]: p["subscribed"] for p in connectors[IWMO]["purposes"]}
    assert purposes == {
        "wmo-uitvoering": True,
        "wmo-toewijzing": True,
        "wmo-rechtmatigheid": False,
        "wmo-beleidsinformatie": False,
    }
    assert connectors[IWMO]["outbound"] == ["WMO301"]
    assert connectors[VS]["outbound"] == ["VS02"]
    utrecht = world.at_facade("gemeente-utrecht").get("/api/v1/catalogue").json()
    assert {n["name"]: n["subscribed"] for n in utrecht["nodes"]} == {NODE_A: True, NODE_B: False}
    vs = next(c for c in utrecht["connectors"] if c["name"] == VS)
    assert vs["subscribed"] is False and vs["subscriptions"] == []
    assert set(utrecht["nodeStatus"]) == {NODE_A}
    spec = world.at_facade("gemeente-utrecht").get("/openapi.json").json()
    for path in (
        "/api/v1/gemeenten/{gemeentecode}/mailbox",
        "/api/v1/gemeenten/{gemeentecode}/mailbox/{item_id}",
        "/api/v1/gemeenten/{gemeentecode}/mailbox/{item_id}/ack",
        "/api/v1/gemeenten/{gemeentecode}/processing-log",
        "/api/v1/gemeenten/{gemeentecode}/processing-log/search",
        "/api/v1/connectors/{connector}/messages",
        "/api/v1/catalogue",
    ):
        assert path in spec["paths"], path


def test_trace_context_continues_through_the_facade(world: World) -> None:
    _fill(world)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    ams = world.at_facade("gemeente-amsterdam")
    item = _mailbox(world, "gemeente-amsterdam", "0363")["items"][0]
    resp = ams.get(
        f"/api/v1/gemeenten/0363/mailbox/{item['id']}",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert resp.headers["traceparent"].split("-")[1] == trace_id
    log = ams.get("/api/v1/gemeenten/0363/processing-log", params={"traceId": trace_id}).json()
    assert [r["activity"] for r in log["records"]] and {r["activity"] for r in log["records"]} == {
        "read"
    }
