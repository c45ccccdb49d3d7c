"""The virtual register's derivation and the statistics' percentiles, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from node_runtime.conversations import register
from node_runtime.store.records import DeliveryRecord
from node_runtime.store.statistics import percentile

BSN = "999990019"
OTHER = "999990032"


def delivery(
    n: int,
    message_type: str,
    products: list[dict[str, object]],
    bsn: str = BSN,
    dagtekening: str = "2026-01-01",
) -> DeliveryRecord:
    inhoud = {
        "dagtekening": dagtekening,
        "clienten": [
            {"bsn": bsn, "producten": products},
            {"bsn": OTHER, "producten": [{"code": "99X99", "aanbieder": "1"}]},
        ],
    }
    return DeliveryRecord(
        id=f"d{n}",
        message_id=f"m{n}",
        mailbox_kind="gemeente",
        mailbox_id="0363",
        connector="iwmo-2-1",
        message_type=message_type,
        purpose="wmo-uitvoering",
        legal_basis="Wmo 2015",
        content=json.dumps({"inhoud": inhoud}).encode(),
        content_type="application/json",
        subject_refs=("a", "b"),
        order_key=None,
        created_at=datetime(2026, 1, n, tzinfo=UTC),
    )


def test_request_start_stop_of_one_assignment() -> None:
    product = {
        "toewijzingNummer": 7001,
        "code": "01A01",
        "categorie": "01",
        "aanbieder": "98000023",
        "beschikkingNummer": 5,
    }
    rows = register.derive(
        [
            delivery(1, "WMO315", [product], dagtekening="2026-01-01"),
            delivery(2, "WMO305", [{**product, "begindatum": "2026-01-05"}]),
            delivery(
                3,
                "WMO305",
                [
                    {
                        "toewijzingNummer": 7002,
                        "code": "02A01",
                        "aanbieder": "98000011",
                        "begindatum": "2026-02-01",
                    }
                ],
            ),
            delivery(
                4,
                "WMO307",
                [
                    {
                        **product,
                        "begindatum": "2026-01-05",
                        "einddatum": "2026-03-31",
                        "redenBeeindiging": "02",
                    }
                ],
            ),
        ],
        BSN,
    )
    assert [(r.assignment_number, r.status) for r in rows] == [
        ("7002", "actief"),
        ("7001", "beëindigd"),
    ]
    stopped = rows[1]
    assert (stopped.requested, stopped.started, stopped.stopped, stopped.end_reason) == (
        "2026-01-01",
        "2026-01-05",
        "2026-03-31",
        "02",
    )
    assert [s.message_type for s in stopped.sources] == ["WMO315", "WMO305", "WMO307"]
    assert [s.delivery_id for s in stopped.sources] == ["d1", "d2", "d4"]
    # the other client in the same messages is never in this citizen's register
    assert all(r.product_code != "99X99" for r in rows)


def test_a_stop_is_not_undone_by_a_late_start_and_purged_messages_are_skipped() -> None:
    product = {"toewijzingNummer": 1, "code": "01A01", "aanbieder": "9"}
    purged = delivery(3, "WMO305", [product])
    purged = DeliveryRecord(**{**purged.__dict__, "content": b""})
    rows = register.derive(
        [
            delivery(1, "WMO307", [{**product, "einddatum": "2026-02-01"}]),
            delivery(2, "WMO305", [{**product, "begindatum": "2026-01-01"}]),
            purged,
        ],
        BSN,
    )
    [row] = rows
    assert row.status == "beëindigd" and row.started == "2026-01-01"
    assert len(row.sources) == 2


def test_only_identifying_purposes_feed_the_register() -> None:
    assert register.releases_identity(["clienten[].bsn", "clienten[].producten[]"])
    assert register.releases_identity(["clienten[]"])
    assert register.releases_identity(
        [
            "clienten[].bsn",
            "clienten[].producten[].code",
            "clienten[].producten[].aanbieder",
            "clienten[].producten[].begindatum",
            "clienten[].producten[].einddatum",
        ]
    )
    # beleidsinformatie: products but no BSN
    assert not register.releases_identity(
        ["dagtekening", "clienten[].producten[].code", "clienten[].producten[].begindatum"]
    )
    assert not register.releases_identity(["clienten[].bsn"])


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0
