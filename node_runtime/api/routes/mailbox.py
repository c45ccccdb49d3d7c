"""Mailboxes: gemeenten (and participants) pull, fetch and acknowledge their messages."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from node_runtime.api.deps import NodeDep, PrincipalDep, TraceDep
from node_runtime.audit.processing_log import LogBuilder
from node_runtime.node.assembly import Node
from node_runtime.observability.tracing import TraceContext
from node_runtime.state.principals import Principal
from node_runtime.store.records import DeliveryRecord, MailboxKind
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["mailbox"])


class MailboxItem(BaseModel):
    id: str
    seq: int
    connector: str
    message_type: str = Field(serialization_alias="messageType")
    purpose: str | None
    legal_basis: str | None = Field(serialization_alias="legalBasis")
    content_type: str = Field(serialization_alias="contentType")
    created_at: str = Field(serialization_alias="createdAt")
    acknowledged_at: str | None = Field(serialization_alias="acknowledgedAt")
    read_count: int = Field(serialization_alias="readCount")


class MailboxPage(BaseModel):
    items: list[MailboxItem]
    next_after: int | None = Field(serialization_alias="nextAfter")


def _item(d: DeliveryRecord) -> MailboxItem:
    assert d.seq is not None
    return MailboxItem(
        id=d.id,
        seq=d.seq,
        connector=d.connector,
        message_type=d.message_type,
        purpose=d.purpose,
        legal_basis=d.legal_basis,
        content_type=d.content_type,
        created_at=d.created_at.isoformat(),
        acknowledged_at=d.acknowledged_at.isoformat() if d.acknowledged_at else None,
        read_count=d.read_count,
    )


def _owner_check(principal: Principal, kind: MailboxKind, owner: str) -> None:
    if principal.kind != kind or principal.id != owner:
        raise Problem(
            403,
            "not-your-mailbox",
            "Not your mailbox",
            f"{principal.display_name} may read only its own mailbox.",
        )


def _controller(d: DeliveryRecord, kind: MailboxKind, node: Node) -> str:
    if kind == "gemeente":
        return d.mailbox_id
    return node.holder.current.name


def _list(
    node: Node, kind: MailboxKind, owner: str, after: int | None, limit: int, include_ack: bool
) -> dict[str, Any]:
    items = node.store.list_mailbox(
        kind, owner, after_seq=after, limit=limit, include_acknowledged=include_ack
    )
    page = MailboxPage(
        items=[_item(d) for d in items], next_after=items[-1].seq if len(items) == limit else None
    )
    return page.model_dump(by_alias=True)


def _fetch(
    node: Node,
    kind: MailboxKind,
    owner: str,
    delivery_id: str,
    principal: Principal,
    trace: TraceContext,
) -> Response:
    d = node.store.get_delivery(kind, owner, delivery_id)
    if d is None:
        raise Problem(
            404,
            "no-such-message",
            "No such message",
            f"Mailbox {owner} holds no message {delivery_id}.",
        )
    if d.content == b"" and d.acknowledged_at is not None:
        raise Problem(
            410,
            "purged",
            "Payload purged",
            "This message was acknowledged and its payload has been purged after "
            "the retention period; the processing log keeps the record.",
        )
    logs = LogBuilder(trace, principal.actor)
    logs.for_subjects(
        list(d.subject_refs),
        activity="read",
        controller=_controller(d, kind, node),
        purpose=d.purpose or "gegevenslogistiek",
        legal_basis=d.legal_basis or "unknown",
        outcome="success",
        connector=d.connector,
        message_type=d.message_type,
        message_id=d.message_id,
        delivery_id=d.id,
    )
    node.store.record_read(d.id, logs.records)
    node.metrics.mailbox_reads.labels(owner, "fetch").inc()
    return Response(
        d.content,
        media_type=d.content_type,
        headers={"Knooppunt-Delivery-Id": d.id, "traceparent": trace.traceparent(logs.span_id)},
    )


def _ack(
    node: Node,
    kind: MailboxKind,
    owner: str,
    delivery_id: str,
    principal: Principal,
    trace: TraceContext,
) -> Response:
    d = node.store.get_delivery(kind, owner, delivery_id)
    if d is None:
        raise Problem(
            404,
            "no-such-message",
            "No such message",
            f"Mailbox {owner} holds no message {delivery_id}.",
        )
    logs = LogBuilder(trace, principal.actor)
    logs.for_subjects(
        list(d.subject_refs),
        activity="acknowledge",
        controller=_controller(d, kind, node),
        purpose=d.purpose or "gegevenslogistiek",
        legal_basis=d.legal_basis or "unknown",
        outcome="success",
        connector=d.connector,
        message_type=d.message_type,
        message_id=d.message_id,
        delivery_id=d.id,
    )
    first = node.store.acknowledge(kind, owner, delivery_id, logs.records)
    node.metrics.mailbox_reads.labels(owner, "acknowledge").inc()
    return Response(
        status_code=204, headers={"Knooppunt-Acknowledged": "first" if first else "again"}
    )


Limit = Annotated[int, Query(ge=1, le=500)]
#: A delivery seq is a signed 64-bit column: a larger cursor is a bad request, not an overflow.
MAX_SEQ = 2**63 - 1
After = Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Continue after this seq")]


@router.get(
    "/gemeenten/{gemeentecode}/mailbox",
    summary="List unacknowledged messages",
    responses={200: {"model": MailboxPage}},
)
async def list_gemeente_mailbox(
    gemeentecode: str,
    node: NodeDep,
    principal: PrincipalDep,
    after: After = None,
    limit: Limit = 100,
    include_acknowledged: Annotated[bool, Query(alias="includeAcknowledged")] = False,
) -> dict[str, Any]:
    _owner_check(principal, "gemeente", gemeentecode)
    return await asyncio.to_thread(
        _list, node, "gemeente", gemeentecode, after, limit, include_acknowledged
    )


@router.get(
    "/gemeenten/{gemeentecode}/mailbox/{delivery_id}",
    summary="Fetch one message (purpose-filtered municipal JSON)",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **contract.problem_responses(404, 410),
    },
)
async def fetch_gemeente_message(
    gemeentecode: str, delivery_id: str, node: NodeDep, principal: PrincipalDep, trace: TraceDep
) -> Response:
    _owner_check(principal, "gemeente", gemeentecode)
    return await asyncio.to_thread(
        _fetch, node, "gemeente", gemeentecode, delivery_id, principal, trace
    )


@router.post(
    "/gemeenten/{gemeentecode}/mailbox/{delivery_id}/ack",
    status_code=204,
    summary="Acknowledge a message (idempotent)",
    responses=contract.problem_responses(404),
)
async def ack_gemeente_message(
    gemeentecode: str, delivery_id: str, node: NodeDep, principal: PrincipalDep, trace: TraceDep
) -> Response:
    _owner_check(principal, "gemeente", gemeentecode)
    return await asyncio.to_thread(
        _ack, node, "gemeente", gemeentecode, delivery_id, principal, trace
    )


@router.get(
    "/participants/{participant}/mailbox",
    summary="List a participant's messages",
    responses={200: {"model": MailboxPage}},
)
async def list_participant_mailbox(
    participant: str,
    node: NodeDep,
    principal: PrincipalDep,
    after: After = None,
    limit: Limit = 100,
    include_acknowledged: Annotated[bool, Query(alias="includeAcknowledged")] = False,
) -> dict[str, Any]:
    _owner_check(principal, "participant", participant)
    return await asyncio.to_thread(
        _list, node, "participant", participant, after, limit, include_acknowledged
    )


@router.get(
    "/participants/{participant}/mailbox/{delivery_id}",
    summary="Fetch one message (the standard XML)",
    responses={
        200: {
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            }
        },
        **contract.problem_responses(404, 410),
    },
)
async def fetch_participant_message(
    participant: str, delivery_id: str, node: NodeDep, principal: PrincipalDep, trace: TraceDep
) -> Response:
    _owner_check(principal, "participant", participant)
    return await asyncio.to_thread(
        _fetch, node, "participant", participant, delivery_id, principal, trace
    )


@router.post(
    "/participants/{participant}/mailbox/{delivery_id}/ack",
    status_code=204,
    summary="Acknowledge a message (idempotent)",
    responses=contract.problem_responses(404),
)
async def ack_participant_message(
    participant: str, delivery_id: str, node: NodeDep, principal: PrincipalDep, trace: TraceDep
) -> Response:
    _owner_check(principal, "participant", participant)
    return await asyncio.to_thread(
        _ack, node, "participant", participant, delivery_id, principal, trace
    )
