"""What this node offers the calling organisation: connectors, message types, purposes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from node_runtime.api.deps import NodeDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


@router.get("/catalogue", summary="Connectors, purposes and the caller's subscriptions")
async def catalogue(node: NodeDep, principal: PrincipalDep) -> dict[str, Any]:
    state = node.holder.current
    subscribed: dict[str, list[dict[str, Any]]] = {}
    if principal.kind == "gemeente":
        gemeente = state.gemeenten_by_code[principal.id]
        for sub in gemeente.spec.subscriptions:
            subscribed.setdefault(sub.connector, []).append(
                {"purpose": sub.purpose, "legalBasis": sub.legal_basis,
                 "messages": list(sub.messages), "delivery": sub.delivery.mode})
    connectors = []
    for name, compiled in sorted(state.connectors.items()):
        spec = compiled.resource.spec
        connectors.append({
            "name": name,
            "standard": spec.standard,
            "standardVersion": spec.standard_version,
            "revision": spec.revision,
            "messages": [{"name": m.name, "direction": m.direction, "description": m.description}
                         for m in spec.messages],
            "purposes": [{"name": p.name, "description": p.description, "messages": p.messages,
                          "fields": p.fields} for p in spec.purposes],
            "subscriptions": subscribed.get(name, []),
        })
    return {"node": state.name, "principal": {"kind": principal.kind, "id": principal.id},
            "connectors": connectors}
