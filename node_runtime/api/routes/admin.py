"""Management endpoints: administrator certificates only."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from node_runtime.api.deps import NodeDep, PrincipalDep
from node_runtime.api.routes.processing_log import record_json
from node_runtime.node.assembly import Node
from node_runtime.state.principals import Principal
from node_runtime.store.outbox import DeadLetterFilter, Outbox
from node_runtime.store.records import LogQuery
from node_runtime.web.problems import Problem


def require_admin(principal: PrincipalDep) -> Principal:
    if principal.kind != "administrator":
        raise Problem(
            403,
            "not-an-administrator",
            "Administrator identity required",
            f"{principal.display_name} is not an administrator of this node.",
        )
    return principal


router = APIRouter(
    prefix="/api/v1/admin", tags=["management"], dependencies=[Depends(require_admin)]
)


@router.get("/pending", summary="Undelivered (unacknowledged) messages, e.g. before deletion")
async def pending(
    node: NodeDep, gemeente: str | None = None, connector: str | None = None
) -> dict[str, Any]:
    count = await asyncio.to_thread(
        node.store.count_pending, gemeente=gemeente, connector=connector
    )
    return {"gemeente": gemeente, "connector": connector, "pending": count}


@router.get("/processing-log", summary="The node's own records (refusals, rejected input)")
async def node_log(
    node: NodeDep,
    outcome_activity: Annotated[str | None, Query(alias="activity")] = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    controller = f"knooppunt:{node.holder.current.name}"
    records = await node.store.query_log_async(
        LogQuery(controller=controller, activity=outcome_activity, after_id=after, limit=limit)
    )
    return {
        "records": [record_json(r) for r in records],
        "nextAfter": records[-1].id if len(records) == limit else None,
    }


class ReplayRequest(BaseModel):
    """Which dead letters to put back in the outbox: ids, a filter, or all."""

    ids: list[str] = Field(default_factory=list)
    gemeente: str | None = None
    connector: str | None = None
    all: bool = Field(default=False, description="Required to replay without ids or filter.")


def _outbox(node: Node) -> Outbox:
    assert node.outbox is not None
    return node.outbox


@router.get("/dead-letters", summary="Push deliveries that exhausted their attempts")
async def dead_letters(
    node: NodeDep,
    gemeente: str | None = None,
    connector: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await asyncio.to_thread(
        _outbox(node).dead_letters,
        DeadLetterFilter(gemeente=gemeente, connector=connector),
        limit=limit,
    )
    return {
        "items": [
            {
                "id": d.id,
                "messageId": d.message_id,
                "gemeente": d.mailbox_id,
                "connector": d.connector,
                "messageType": d.message_type,
                "purpose": d.purpose,
                "endpoint": d.endpoint,
                "attempts": attempts,
                "lastError": error,
                "createdAt": d.created_at.isoformat(),
            }
            for d, attempts, error in rows
        ]
    }


@router.post("/dead-letters/replay", summary="Replay dead letters (one, a filter, or all)")
async def replay(request: ReplayRequest, node: NodeDep) -> dict[str, Any]:
    if not (request.ids or request.gemeente or request.connector or request.all):
        raise Problem(
            400,
            "replay-scope-missing",
            "Say what to replay",
            "Give ids, a gemeente or connector filter, or all=true.",
        )
    count = await asyncio.to_thread(
        _outbox(node).replay,
        DeadLetterFilter(
            gemeente=request.gemeente, connector=request.connector, ids=tuple(request.ids)
        ),
    )
    node.wake_delivery()
    return {"replayed": count}
