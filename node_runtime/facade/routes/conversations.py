"""Conversation deadlines through the façade: the gemeente's conversations on every knooppunt
that serves it, in one list (each item names its `node`), e.g. everything overdue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.deps import FacadeDep, GemeenteDep, own, trace_headers
from node_runtime.facade.state import NodeEntry

router = APIRouter(prefix="/api/v1", tags=["conversations"])

State = Literal["open", "overdue", "closed", "late", "unmatched"]


@router.get(
    "/gemeenten/{gemeentecode}/conversations",
    summary="The gemeente's conversations with deadlines on every knooppunt",
)
async def conversations(
    gemeentecode: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    state: State | None = None,
    connector: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "conversations")
    nodes = facade.holder.current.nodes_for(gemeente)
    if connector is not None:
        nodes = [n for n in nodes if connector in n.connectors]
    params = {"limit": str(limit)}
    if state is not None:
        params["state"] = state
    if connector is not None:
        params["connector"] = connector
    path = f"/api/v1/gemeenten/{gemeentecode}/conversations"
    headers = trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(
            node, gemeente, "GET", path, params=params, headers=headers
        )

    outcomes = await facade.nodes.fan_out(nodes, call)
    items: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}
    more = False
    for name, outcome in outcomes.items():
        if outcome.ok:
            try:
                body = outcome.json()
                found = [{**i, "node": name} for i in body["items"] if isinstance(i, dict)]
            except (ValueError, KeyError, TypeError):
                outcome = NodeOutcome(name, "error", "malformed answer", None, outcome.elapsed_ms)
            else:
                items.extend(found)
                more = more or body.get("nextAfter") is not None
        reports[name] = outcome.describe()
        if outcome.ok:
            reports[name]["count"] = sum(1 for i in items if i["node"] == name)
    items.sort(key=lambda i: (i.get("dueAt") or "", i["node"], i["id"]))
    return {
        "items": items,
        "truncated": more,
        "complete": all(r["status"] == "ok" for r in reports.values()),
        "nodes": reports,
    }
