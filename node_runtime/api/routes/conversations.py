"""Conversation deadlines: the gemeente and the participant see their open, overdue and
closed conversation items (types, message ids, references, times: never message contents)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from node_runtime.api.deps import NodeDep, PrincipalDep
from node_runtime.store.conversations import ConversationRow, State, list_conversations
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["conversations"])
Limit = Annotated[int, Query(ge=1, le=1000)]
StateQuery = Annotated[
    State | None,
    Query(
        description=(
            "open (within its term), overdue (open past its term), closed (answered in time), late "
            "(answered after its term), unmatched (an answer whose opener has not arrived)"
        )
    ),
]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def conversation_json(row: ConversationRow, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "connector": row.connector,
        "conversation": row.conversation,
        "state": row.state(now),
        "gemeente": row.gemeente,
        "participant": row.participant,
        "sender": row.sender,
        "recipient": row.recipient,
        "dueAt": _iso(row.due_at),
        "opener": None
        if row.opener_message_id is None
        else {
            "messageType": row.opener_type,
            "messageId": row.opener_message_id,
            "reference": row.opener_reference,
            "item": row.opener_item,
            "openedAt": _iso(row.opened_at),
        },
        "closer": None
        if row.closer_message_id is None
        else {
            "messageType": row.closer_type,
            "messageId": row.closer_message_id,
            "reference": row.closer_reference,
            "closedAt": _iso(row.closed_at),
        },
    }


@router.get(
    "/gemeenten/{gemeentecode}/conversations",
    summary="The gemeente's conversations with their deadlines (e.g. overdue ones)",
)
async def gemeente_conversations(
    gemeentecode: str,
    node: NodeDep,
    principal: PrincipalDep,
    state: StateQuery = None,
    connector: str | None = None,
    after: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    if principal.kind != "gemeente" or principal.id != gemeentecode:
        raise Problem(
            403,
            "not-your-conversations",
            "Not your conversations",
            f"{principal.display_name} may list only its own conversations.",
        )
    now = node.conversations.clock()
    rows = await asyncio.to_thread(
        list_conversations,
        node.store.engine,
        now=now,
        gemeente=gemeentecode,
        state=state,
        connector=connector,
        after=after,
        limit=limit,
    )
    return {
        "items": [conversation_json(r, now) for r in rows],
        "nextAfter": rows[-1].id if len(rows) == limit else None,
    }


@router.get(
    "/participants/{participant}/conversations",
    summary="The participant's conversations with their deadlines",
)
async def participant_conversations(
    participant: str,
    node: NodeDep,
    principal: PrincipalDep,
    state: StateQuery = None,
    connector: str | None = None,
    after: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    if principal.kind != "participant" or principal.id != participant:
        raise Problem(
            403,
            "not-your-conversations",
            "Not your conversations",
            f"{principal.display_name} may list only its own conversations.",
        )
    now = node.conversations.clock()
    rows = await asyncio.to_thread(
        list_conversations,
        node.store.engine,
        now=now,
        participants=sorted(principal.identifiers),
        state=state,
        connector=connector,
        after=after,
        limit=limit,
    )
    return {
        "items": [conversation_json(r, now) for r in rows],
        "nextAfter": rows[-1].id if len(rows) == limit else None,
    }
