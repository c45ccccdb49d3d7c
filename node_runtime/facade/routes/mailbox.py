"""One mailbox across every knooppunt serving the gemeente; fetch and acknowledge at the owner."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from node_runtime.facade import aggregation
from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.deps import FacadeDep, GemeenteDep, own, trace_headers
from node_runtime.facade.models import AggregatedMailbox
from node_runtime.facade.node_answers import failure, passthrough_problem
from node_runtime.facade.state import FacadeState, NodeEntry
from node_runtime.model.gemeente import Gemeente
from node_runtime.web import contract
from node_runtime.web.problems import Problem

ITEM_ID = re.compile(r"^([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)~([A-Za-z0-9][A-Za-z0-9._-]{0,127})$")

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=500)]


def resolve_item(state: FacadeState, gemeente: Gemeente, item_id: str) -> tuple[NodeEntry, str]:
    """The node holding a façade mailbox id (``<node>~<delivery id>``), and the delivery id."""
    match = ITEM_ID.fullmatch(item_id)
    node = state.nodes.get(match.group(1)) if match else None
    if match is None or node is None or node not in state.nodes_for(gemeente):
        raise Problem(
            404,
            "no-such-message",
            "No such message",
            f"Mailbox {gemeente.spec.gemeentecode} holds no message {item_id}.",
        )
    return node, match.group(2)


@router.get(
    "/gemeenten/{gemeentecode}/mailbox",
    tags=["mailbox"],
    summary="One mailbox across every knooppunt serving the gemeente",
    responses={200: {"model": AggregatedMailbox}},
)
async def list_mailbox(
    gemeentecode: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    after: Annotated[str | None, Query(description="nextAfter of the previous page")] = None,
    limit: Limit = 100,
    include_acknowledged: Annotated[bool, Query(alias="includeAcknowledged")] = False,
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "mailbox")
    cursor = aggregation.decode_cursor(after)
    nodes = facade.holder.current.nodes_for(gemeente)
    path = f"/api/v1/gemeenten/{gemeentecode}/mailbox"
    trace = trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        params = {
            "limit": str(limit),
            "includeAcknowledged": "true" if include_acknowledged else "false",
        }
        if node.name in cursor:
            params["after"] = str(cursor[node.name])
        return await facade.nodes.attempt(node, gemeente, "GET", path, params=params, headers=trace)

    outcomes = await facade.nodes.fan_out(nodes, call)
    page = aggregation.merge(
        outcomes,
        key="items",
        time_field="createdAt",
        cursor=cursor,
        limit=limit,
        tiebreak=lambda _i, item: int(item.get("seq") or 0),
        position=lambda item: int(item.get("seq") or 0),
        present=lambda name, item: {
            **item,
            "id": f"{name}~{item.get('id')}",
            "node": name,
            "nodeItemId": item.get("id"),
        },
    )
    return {
        "items": page.items,
        "nextAfter": page.next_after,
        "complete": page.complete,
        "nodes": page.reports,
    }


@router.get(
    "/gemeenten/{gemeentecode}/mailbox/{item_id}",
    tags=["mailbox"],
    summary="Fetch one message from the knooppunt that holds it (unchanged)",
    responses={
        200: {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/xml": {"schema": {"type": "string"}},
            }
        },
        **contract.problem_responses(404, 410, 502, 504),
    },
)
async def fetch_message(
    gemeentecode: str, item_id: str, request: Request, facade: FacadeDep, gemeente: GemeenteDep
) -> Response:
    own(gemeente, gemeentecode, "mailbox")
    node, delivery = resolve_item(facade.holder.current, gemeente, item_id)
    outcome = await facade.nodes.attempt(
        node,
        gemeente,
        "GET",
        f"/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery}",
        headers=trace_headers(request),
        accept=lambda r: r.status_code == 200,
    )
    if not outcome.ok:
        passed = passthrough_problem(outcome)
        if passed is not None:
            return passed
        raise failure(outcome, action="the message was not fetched; try again later.")
    response = outcome.response
    assert response is not None
    headers = {"Knooppunt-Node": node.name, "Knooppunt-Delivery-Id": item_id}
    if "traceparent" in response.headers:
        headers["traceparent"] = response.headers["traceparent"]
    return Response(
        response.content,
        status_code=200,
        media_type=response.headers.get("content-type"),
        headers=headers,
    )


@router.post(
    "/gemeenten/{gemeentecode}/mailbox/{item_id}/ack",
    tags=["mailbox"],
    status_code=204,
    summary="Acknowledge a message at the knooppunt that holds it",
    responses={
        204: {"description": "The owning node confirmed the acknowledgement."},
        **contract.problem_responses(404),
        502: {"description": "The node is unavailable: NOT acknowledged."},
        504: {
            "description": "The node did not confirm in time: retry (the "
            "acknowledgement is idempotent)."
        },
    },
)
async def ack_message(
    gemeentecode: str, item_id: str, request: Request, facade: FacadeDep, gemeente: GemeenteDep
) -> Response:
    own(gemeente, gemeentecode, "mailbox")
    node, delivery = resolve_item(facade.holder.current, gemeente, item_id)
    outcome = await facade.nodes.attempt(
        node,
        gemeente,
        "POST",
        f"/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery}/ack",
        headers=trace_headers(request),
        accept=lambda r: r.status_code == 204,
    )
    if not outcome.ok:
        passed = passthrough_problem(outcome)
        if passed is not None:
            return passed
        raise failure(
            outcome,
            action="the message is not acknowledged (acknowledging again is harmless).",
            acknowledged=False,
        )
    response = outcome.response
    assert response is not None
    headers = {"Knooppunt-Node": node.name}
    for name in ("knooppunt-acknowledged", "traceparent"):
        if name in response.headers:
            headers[name] = response.headers[name]
    return Response(status_code=204, headers=headers)
