"""The nodes' endpoints behind the portal: statistics and the virtual register, over mutual TLS
as a gemeente (or anyone else) calls them; who may ask what, and what each answer holds."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.facade.conftest import IWMO, IWMO_MESSAGES, NODE_A, World
from tests.runtime.helpers import invalid_bsn

BSN = "999990019"  # a client in De Linde's WMO305 to Amsterdam


def test_statistics_and_register_only_for_the_callers_own(world: World) -> None:
    world.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    amsterdam = world.at_node(NODE_A, "gemeente-amsterdam")
    today = datetime.now(UTC).date().isoformat()
    period = {"since": today, "until": today}

    stats = amsterdam.get("/api/v1/gemeenten/0363/statistics", params=period)
    assert stats.status_code == 200, stats.text
    body = stats.json()
    month = today[:7]
    assert body["volumes"] == [
        {"month": month, "messageType": "WMO305", "sender": "98000011", "count": 1}
    ]
    assert body["latency"] == [
        {"month": month, "delivered": 0, "undelivered": 1, "p50Seconds": None, "p95Seconds": None}
    ]
    assert body["rejections"] == body["deadLetters"] == body["conversations"] == []
    assert "999990019" not in stats.text  # aggregates only
    for who, code in (("gemeente-rotterdam", "0363"), ("zorggroep-de-linde", "0363")):
        other = world.at_node(NODE_A, who).get(
            f"/api/v1/gemeenten/{code}/statistics", params=period
        )
        assert other.status_code == 403 and other.json()["type"].endswith("not-your-gemeente")
    bad = amsterdam.get(
        "/api/v1/gemeenten/0363/statistics", params={"since": today, "until": "2000-01-01"}
    )
    assert bad.status_code == 400 and bad.json()["type"].endswith("bad-period")

    search = "/api/v1/gemeenten/0363/register/search"
    found = amsterdam.post(search, json={"bsn": BSN, "purpose": "wmo-uitvoering"})
    assert found.status_code == 200, found.text
    rows = found.json()["assignments"]
    assert [(r["status"], r["productCode"], r["provider"]) for r in rows] == [
        ("actief", "01A02", "98000011"),
        ("actief", "03A01", "98000011"),
    ]
    [item] = amsterdam.get("/api/v1/gemeenten/0363/mailbox").json()["items"]
    assert {s["deliveryId"] for r in rows for s in r["sources"]} == {item["id"]}
    log = amsterdam.get(
        "/api/v1/gemeenten/0363/processing-log", params={"activity": "consult"}
    ).json()["records"]
    assert [(r["purpose"], r["subjectRef"]) for r in log] == [
        ("wmo-uitvoering", found.json()["subjectRef"])
    ]
    # a purpose the gemeente does not have here, a BSN failing the 11-proof, a purpose that
    # identifies nobody (Utrecht's beleidsinformatie), another gemeente's register
    refusals = [
        (
            amsterdam,
            "0363",
            {"bsn": BSN, "purpose": "wmo-beleidsinformatie"},
            403,
            "not-your-purpose",
        ),
        (
            amsterdam,
            "0363",
            {"bsn": invalid_bsn(), "purpose": "wmo-uitvoering"},
            422,
            "bsn-invalid",
        ),
        (
            world.at_node(NODE_A, "gemeente-utrecht"),
            "0344",
            {"bsn": BSN, "purpose": "wmo-beleidsinformatie"},
            422,
            "purpose-not-identifying",
        ),
        (
            world.at_node(NODE_A, "gemeente-rotterdam"),
            "0363",
            {"bsn": BSN, "purpose": "wmo-uitvoering"},
            403,
            "not-your-gemeente",
        ),
    ]
    for client, code, ask, status, kind in refusals:
        got = client.post(f"/api/v1/gemeenten/{code}/register/search", json=ask)
        assert got.status_code == status, (ask, got.text)
        assert got.json()["type"].endswith(kind), got.text
    assert (
        len(
            amsterdam.get(
                "/api/v1/gemeenten/0363/processing-log", params={"activity": "consult"}
            ).json()["records"]
        )
        == 1
    )  # refused searches consulted nothing
