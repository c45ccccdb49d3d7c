"""Conversation items in the database: applied in the intake's own transaction, listed per
gemeente or participant, counted for metrics."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from node_runtime.store import prepared, schema
from node_runtime.store.records import ConversationEvent

State = Literal["open", "overdue", "closed", "late", "unmatched"]
STATES: tuple[State, ...] = ("open", "overdue", "closed", "late", "unmatched")


@dataclass(frozen=True)
class ConversationRow:
    id: str
    connector: str
    conversation: str
    gemeente: str
    participant: str
    sender: str
    recipient: str
    status: str
    opener_message_id: str | None
    opener_type: str | None
    opener_reference: str | None
    opener_item: int | None
    opened_at: datetime | None
    due_at: datetime | None
    closer_message_id: str | None
    closer_type: str | None
    closer_reference: str | None
    closed_at: datetime | None

    def state(self, now: datetime) -> State:
        if self.status == "open" and self.due_at is not None and self.due_at < now:
            return "overdue"
        return self.status  # type: ignore[return-value]


# The statements of the intake's commit, built once (building them per call cost more than
# running them). One conversation item: connector, conversation and keyed hash.
_C = schema.conversations
_SAME = and_(
    _C.c.connector == bindparam("k_connector"),
    _C.c.conversation == bindparam("k_conversation"),
    _C.c.key_hash == bindparam("k_hash"),
)
_UNMATCHED = (
    select(_C.c.id).where(_SAME, _C.c.status == "unmatched").order_by(_C.c.closed_at).limit(1)
)
_OPEN = (
    select(_C.c.id, _C.c.due_at)
    .where(_SAME, _C.c.status == "open")
    .order_by(_C.c.opened_at)
    .limit(1)
)
_INSERT = insert(_C)
_UPDATE = update(_C).where(_C.c.id == bindparam("row_id"))


def apply(conn: Connection, events: Sequence[ConversationEvent]) -> None:
    """Open and close conversation items. Called under the commit-order lock (after the
    processing-log insert), so replicas on one database apply events one at a time."""
    for e in events:
        same = {"k_connector": e.connector, "k_conversation": e.conversation, "k_hash": e.key_hash}
        if e.kind == "open":
            early = next(iter(prepared.fetch(conn, _UNMATCHED, same)), None)
            values = {
                "opener_message_id": e.message_id,
                "opener_type": e.message_type,
                "opener_reference": e.sender_message_id,
                "opener_item": e.item,
                "opened_at": e.at,
                "due_at": e.due_at,
                "sender": e.sender,
                "recipient": e.recipient,
            }
            if early is not None:  # its answer came first: closed in time
                prepared.execute(conn, _UPDATE, {"row_id": early[0], "status": "closed", **values})
            else:
                prepared.execute(
                    conn,
                    _INSERT,
                    {
                        "id": str(uuid.uuid4()),
                        "connector": e.connector,
                        "conversation": e.conversation,
                        "key_hash": e.key_hash,
                        "gemeente": e.gemeente,
                        "participant": e.participant,
                        "status": "open",
                        **values,
                    },
                )
            continue
        opened = next(iter(prepared.fetch(conn, _OPEN, same)), None)
        closing = {
            "closer_message_id": e.message_id,
            "closer_type": e.message_type,
            "closer_reference": e.sender_message_id,
            "closed_at": e.at,
        }
        if opened is not None:
            row_id, due = opened
            late = due is not None and e.at > _aware(due)
            prepared.execute(
                conn, _UPDATE, {"row_id": row_id, "status": "late" if late else "closed", **closing}
            )
        else:
            prepared.execute(
                conn,
                _INSERT,
                {
                    "id": str(uuid.uuid4()),
                    "connector": e.connector,
                    "conversation": e.conversation,
                    "key_hash": e.key_hash,
                    "gemeente": e.gemeente,
                    "participant": e.participant,
                    "sender": e.recipient,
                    "recipient": e.sender,
                    "status": "unmatched",
                    **closing,
                },
            )


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _state_clause(state: State, now: datetime) -> Any:
    c = schema.conversations
    if state == "overdue":
        return and_(c.c.status == "open", c.c.due_at < now)
    if state == "open":
        return and_(c.c.status == "open", or_(c.c.due_at.is_(None), c.c.due_at >= now))
    return c.c.status == state


def list_conversations(
    engine: Engine,
    *,
    now: datetime,
    gemeente: str | None = None,
    participants: Sequence[str] | None = None,
    state: State | None = None,
    connector: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[ConversationRow]:
    c = schema.conversations
    query = select(c)
    if gemeente is not None:
        query = query.where(c.c.gemeente == gemeente)
    if participants is not None:
        query = query.where(c.c.participant.in_(list(participants)))
    if connector is not None:
        query = query.where(c.c.connector == connector)
    if state is not None:
        query = query.where(_state_clause(state, now))
    if after is not None:
        query = query.where(c.c.id > after)
    query = query.order_by(c.c.id).limit(limit)
    with engine.connect() as conn:
        return [
            ConversationRow(**{k: v for k, v in r._mapping.items() if k != "key_hash"})
            for r in conn.execute(query)
        ]


def counts(
    engine: Engine, *, now: datetime, gemeente: str | None = None
) -> dict[tuple[str, str, str, str, State], int]:
    """(connector, conversation, gemeente, sender, state) → count; one gemeente's when named."""
    c = schema.conversations
    out: dict[tuple[str, str, str, str, State], int] = {}
    with engine.connect() as conn:
        for state in STATES:
            query = select(
                c.c.connector, c.c.conversation, c.c.gemeente, c.c.sender, func.count()
            ).where(_state_clause(state, now))
            if gemeente is not None:
                query = query.where(c.c.gemeente == gemeente)
            rows = conn.execute(
                query.group_by(c.c.connector, c.c.conversation, c.c.gemeente, c.c.sender)
            )
            for r in rows:
                out[(r[0], r[1], r[2], r[3], state)] = int(r[4])
    return out
