"""The services available to the calling gemeente across all knooppunten."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.deps import FacadeDep, GemeenteDep, trace_headers
from node_runtime.facade.state import NodeEntry

router = APIRouter(prefix="/api/v1")


@router.get(
    "/catalogue",
    tags=["catalogue"],
    summary="The services available to the calling gemeente across all knooppunten",
)
async def catalogue(
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
) -> dict[str, Any]:
    state = facade.holder.current
    subscribed: dict[str, list[dict[str, Any]]] = {}
    for sub in gemeente.spec.subscriptions:
        subscribed.setdefault(sub.connector, []).append(
            {
                "purpose": sub.purpose,
                "legalBasis": sub.legal_basis,
                "messages": list(sub.messages),
                "delivery": sub.delivery.mode,
            }
        )
    serving = state.nodes_for(gemeente)
    trace = trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(node, gemeente, "GET", "/api/v1/catalogue", headers=trace)

    outcomes = await facade.nodes.fan_out(serving, call)
    nodes = []
    connectors = []
    for name, node in sorted(state.nodes.items()):
        nodes.append(
            {
                "name": name,
                "displayName": node.display_name,
                "connectors": list(node.connectors),
                "subscribed": node in serving,
                "status": outcomes[name].status if name in outcomes else None,
            }
        )
        for connector_name in node.connectors:
            resource = state.connectors[connector_name]
            spec = resource.spec
            mine = subscribed.get(connector_name, [])
            purposes_taken = {s["purpose"] for s in mine}
            connectors.append(
                {
                    "name": connector_name,
                    "node": name,
                    "standard": spec.standard,
                    "standardVersion": spec.standard_version,
                    "revision": spec.revision,
                    "messages": [
                        {"name": m.name, "direction": m.direction, "description": m.description}
                        for m in spec.messages
                    ],
                    "purposes": [
                        {
                            "name": p.name,
                            "description": p.description,
                            "messages": p.messages,
                            "fields": p.fields,
                            "subscribed": p.name in purposes_taken,
                        }
                        for p in spec.purposes
                    ],
                    "subscribed": bool(mine),
                    "subscriptions": mine,
                    "outbound": [m.name for m in spec.messages if m.direction == "fromGemeente"],
                }
            )
    reports = {name: o.describe() for name, o in outcomes.items()}
    return {
        "gemeente": {
            "gemeentecode": gemeente.spec.gemeentecode,
            "oin": gemeente.spec.oin,
            "displayName": gemeente.spec.display_name,
        },
        "nodes": nodes,
        "connectors": connectors,
        "complete": all(o.ok for o in outcomes.values()),
        "nodeStatus": reports,
    }
