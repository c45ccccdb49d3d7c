"""The intake answered in front of FastAPI's router (node_runtime.api.intake_endpoint): the
same answers as the route, over real mutual TLS, without the router."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from node_runtime.api.intake_endpoint import connector_of
from node_runtime.api.routes.messages import INTAKE_PATH
from node_runtime.api.server import RunningNode
from node_runtime.model.loading import ResourceSet
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from node_runtime.store.records import LogQuery
from tests.conftest import CONNECTOR, MESSAGES, PartyFactory
from tests.runtime.helpers import header, with_new_id

URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}


def _scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


@pytest.mark.parametrize(
    ("method", "path", "root_path", "expected"),
    [
        ("POST", "/api/v1/connectors/iwmo-2-1/messages", "", "iwmo-2-1"),
        ("POST", "/api/v1/connectors/x y/messages", "", "x y"),  # the decoded path, as routed
        ("POST", "/node/api/v1/connectors/iwmo-2-1/messages", "/node", "iwmo-2-1"),
        ("GET", "/api/v1/connectors/iwmo-2-1/messages", "", None),
        ("PUT", "/api/v1/connectors/iwmo-2-1/messages", "", None),
        ("POST", "/api/v1/connectors//messages", "", None),
        ("POST", "/api/v1/connectors/a/b/messages", "", None),
        ("POST", "/api/v1/connectors/iwmo-2-1/messages/", "", None),
        ("POST", "/api/v1/connectors/iwmo-2-1/messages/x", "", None),
        ("POST", "/api/v2/connectors/iwmo-2-1/messages", "", None),
        ("POST", "/api/v1/connectors/iwmo-2-1", "", None),
    ],
)
def test_the_endpoint_recognises_exactly_the_intake_path(
    method: str, path: str, root_path: str, expected: str | None
) -> None:
    assert connector_of(_scope(method, path, root_path)) == expected
    assert connector_of({"type": "websocket", "path": path}) is None


def _sender(resources: ResourceSet, body: bytes) -> str:
    agb = header(body)["Afzender"]
    return next(
        p.name
        for c in resources.connectors.values()
        for p in c.spec.participants
        if agb in p.identifiers
    )


@pytest.fixture()
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path templates of the requests FastAPI's router handed to one of its routes."""
    paths: list[str] = []
    handle = APIRoute.handle

    async def spy(self: APIRoute, scope: Any, receive: Any, send: Any) -> None:
        paths.append(self.path)
        await handle(self, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", spy)
    return paths


def test_the_intake_is_answered_in_front_of_the_router(
    running_node: RunningNode,
    party: PartyFactory,
    example_resources: ResourceSet,
    routed: list[str],
) -> None:
    body = with_new_id(sorted(MESSAGES.glob("wmo305*.xml"))[0].read_bytes(), "T-ENDPOINT-1")
    client = party(_sender(example_resources, body))

    accepted = client.post(URL, content=body, headers=XML)
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["knooppunt-outcome"] == "accepted"
    assert accepted.headers["traceparent"].startswith("00-")
    assert b"<wmo306:RetourCode>0200</wmo306:RetourCode>" in accepted.content

    again = client.post(URL, content=body, headers=XML)  # idempotent replay, same answer
    assert again.status_code == 202 and again.content == accepted.content

    unknown = client.post("/api/v1/connectors/nope/messages", content=body, headers=XML)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.headers["knooppunt-outcome"] == "refused"
    assert unknown.json()["type"].endswith("/unknown-connector")

    wrong_type = client.post(URL, content=body, headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    assert wrong_type.json()["type"].endswith("/unsupported-media-type")
    assert wrong_type.json()["instance"] == URL

    assert client.get("/api/v1/catalogue").status_code == 200
    assert routed == ["/api/v1/catalogue"], "the intake went through the router"


def test_other_methods_on_the_intake_path_still_get_the_routers_problem(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = sorted(MESSAGES.glob("wmo305*.xml"))[0].read_bytes()
    resp = party(_sender(example_resources, body)).get(URL)
    assert resp.status_code == 405
    assert resp.json()["type"].endswith("/method-not-allowed")


def test_the_intake_stays_in_the_openapi_contract(running_node: RunningNode) -> None:
    app = running_node.servers[0].config.app
    operation = app.openapi()["paths"][INTAKE_PATH]["post"]
    assert set(operation["responses"]) >= {"202", "400", "401", "403", "404", "413", "415"}


def test_a_refusal_by_identity_is_logged_by_the_applications_hook(
    running_node: RunningNode, dev_pki: DevPki, routed: list[str]
) -> None:
    """A 403 raised before the pipeline (a valid certificate of no organisation of this node)
    is answered by the application's problem answers, its refusal record included."""
    if not dev_pki.store.has("endpoint-stranger"):
        dev_pki.store.issue_client(
            "endpoint-stranger", organisation="Test stranger", oin="00000001999000777001"
        )
    paths = dev_pki.store.paths("endpoint-stranger")
    context = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
    body = sorted(MESSAGES.glob("wmo305*.xml"))[0].read_bytes()
    with httpx.Client(
        base_url=f"https://localhost:{running_node.port}", verify=context, timeout=10
    ) as stranger:
        resp = stranger.post(URL, content=body, headers=XML)
    assert resp.status_code == 403, resp.text
    assert resp.json()["type"].endswith("/unknown-organisation")
    assert resp.headers["knooppunt-outcome"] == "refused"
    node = running_node.node
    controller = f"knooppunt:{node.holder.current.name}"
    deadline = time.monotonic() + 10  # the record is committed behind the answer
    while not (refused := node.store.query_log(LogQuery(controller, activity="refuse"))):
        assert time.monotonic() < deadline, "no refusal record"
        time.sleep(0.02)
    assert [r.outcome for r in refused] == ["unknown-organisation"]
    assert node.store.count_rows()["messages"] == 0
    assert routed == []


def test_an_unexpected_error_is_a_500_problem_and_the_node_goes_on(
    running_node: RunningNode,
    party: PartyFactory,
    example_resources: ResourceSet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    routed: list[str],
) -> None:
    intake = running_node.node.intake
    original = intake.process_async

    async def broken(*_args: object, **_kwargs: object) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(intake, "process_async", broken)
    body = with_new_id(sorted(MESSAGES.glob("wmo305*.xml"))[0].read_bytes(), "T-ENDPOINT-2")
    client = party(_sender(example_resources, body))
    with caplog.at_level(logging.ERROR, logger="knooppunt.problems"):
        resp = client.post(URL, content=body, headers=XML)
    assert resp.status_code == 500
    assert resp.json()["type"].endswith("/internal-error")
    assert "boom" not in resp.text  # no internals in the answer
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)

    monkeypatch.setattr(intake, "process_async", original)
    assert client.post(URL, content=body, headers=XML).status_code == 202
    assert running_node.node.store.count_rows()["messages"] == 1
    assert routed == []
