"""Defect 6 of issue 19: no 500 for a cursor ≥ 2⁶³, and unknown routes answer problem details
(RFC 9457) — on the node and through the façade, over real mutual TLS."""

from __future__ import annotations

import base64
import json

from tests.conftest import PartyFactory
from tests.facade.conftest import World

TOO_LARGE = str(2**63)
PROBLEM = "application/problem+json"


def test_node_mailbox_cursor_beyond_int64_is_a_400_problem(party: PartyFactory) -> None:
    amsterdam = party("gemeente-amsterdam")
    for after in (TOO_LARGE, str(2**64), "9" * 40):
        resp = amsterdam.get("/api/v1/gemeenten/0363/mailbox", params={"after": after})
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert resp.json()["type"].endswith("/invalid-request")
    largest = amsterdam.get("/api/v1/gemeenten/0363/mailbox", params={"after": str(2**63 - 1)})
    assert largest.status_code == 200
    assert largest.json()["items"] == []


def test_node_unknown_route_and_method_are_problem_details(party: PartyFactory) -> None:
    amsterdam = party("gemeente-amsterdam")
    missing = amsterdam.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith(PROBLEM)
    body = missing.json()
    assert body["type"].endswith("/not-found") and body["status"] == 404
    assert body["instance"] == "/api/v1/no-such-thing"
    wrong = amsterdam.delete("/api/v1/catalogue")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"].startswith(PROBLEM)
    assert wrong.json()["type"].endswith("/method-not-allowed")


def _cursor(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_facade_cursor_beyond_int64_is_a_400_problem(world: World) -> None:
    amsterdam = world.at_facade("gemeente-amsterdam")
    for bad in ({"knooppunt-zorg": 2**63}, {"knooppunt-zorg": -1}):
        resp = amsterdam.get("/api/v1/gemeenten/0363/mailbox", params={"after": _cursor(bad)})
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM)
        assert resp.json()["type"].endswith("/invalid-cursor")
    missing = amsterdam.get("/api/v1/nowhere")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith(PROBLEM)
    assert missing.json()["type"].endswith("/not-found")
