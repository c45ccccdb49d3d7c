"""What this node offers the calling organisation: connectors, message types, purposes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from node_runtime.api.deps import NodeDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["catalogue"])


class CatalogueMessage(BaseModel):
    name: str
    direction: str
    description: str | None = None


class CataloguePurpose(BaseModel):
    name: str
    description: str | None = None
    messages: list[str]
    fields: list[str]


class CatalogueSubscription(BaseModel):
    purpose: str
    legal_basis: str = Field(alias="legalBasis")
    messages: list[str]
    delivery: str


class CatalogueConnector(BaseModel):
    name: str
    standard: str
    standard_version: str = Field(alias="standardVersion")
    revision: int
    messages: list[CatalogueMessage]
    purposes: list[CataloguePurpose]
    subscriptions: list[CatalogueSubscription]


class CataloguePrincipal(BaseModel):
    kind: Literal["gemeente", "participant", "administrator"]
    id: str


class Catalogue(BaseModel):
    """What the node offers the calling organisation."""

    node: str
    principal: CataloguePrincipal
    connectors: list[CatalogueConnector]


@router.get(
    "/catalogue",
    summary="Connectors, purposes and the caller's subscriptions",
    responses={200: {"model": Catalogue}},
)
async def catalogue(node: NodeDep, principal: PrincipalDep) -> dict[str, Any]:
    state = node.holder.current
    subscribed: dict[str, list[dict[str, Any]]] = {}
    if principal.kind == "gemeente":
        gemeente = state.gemeenten_by_code[principal.id]
        for sub in gemeente.spec.subscriptions:
            subscribed.setdefault(sub.connector, []).append(
                {
                    "purpose": sub.purpose,
                    "legalBasis": sub.legal_basis,
                    "messages": list(sub.messages),
                    "delivery": sub.delivery.mode,
                }
            )
    connectors = []
    for name, compiled in sorted(state.connectors.items()):
        spec = compiled.resource.spec
        connectors.append(
            {
                "name": name,
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
                    }
                    for p in spec.purposes
                ],
                "subscriptions": subscribed.get(name, []),
            }
        )
    return {
        "node": state.name,
        "principal": {"kind": principal.kind, "id": principal.id},
        "connectors": connectors,
    }
