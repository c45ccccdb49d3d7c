"""Plain records that cross the storage interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

MailboxKind = Literal["gemeente", "participant"]


@dataclass(frozen=True)
class MessageRecord:
    """An accepted message, with the answer its sender got (replayed on a duplicate)."""

    id: str
    connector: str
    connector_revision: int
    message_type: str
    direction: str
    sender: str
    recipient: str
    sender_message_id: str
    payload_sha256: str
    payload: bytes
    received_at: datetime
    trace_id: str
    controller: str
    answer_status: int
    answer_body: bytes
    answer_content_type: str


@dataclass(frozen=True)
class DeliveryRecord:
    """One message for one mailbox (a gemeente subscription or a participant)."""

    id: str
    message_id: str
    mailbox_kind: MailboxKind
    mailbox_id: str
    connector: str
    message_type: str
    purpose: str | None
    legal_basis: str | None
    content: bytes
    content_type: str
    subject_refs: tuple[str, ...]
    order_key: str | None
    created_at: datetime
    delivery_mode: str = "pull"
    endpoint: str | None = None
    acknowledged_at: datetime | None = None
    read_count: int = 0
    seq: int | None = None
    traceparent: str | None = None


@dataclass(frozen=True)
class LogRecord:
    """One processing-log record (verwerkingenlog), modelled on Logboek dataverwerkingen."""

    id: str
    timestamp: datetime
    trace_id: str
    span_id: str
    parent_span_id: str | None
    activity: str
    purpose: str
    legal_basis: str
    controller: str
    actor: str
    subject_ref: str | None
    connector: str | None
    message_type: str | None
    message_id: str | None
    delivery_id: str | None
    outcome: str
    detail: str | None = None


@dataclass(frozen=True)
class LogQuery:
    controller: str
    subject_ref: str | None = None
    purpose: str | None = None
    connector: str | None = None
    activity: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    after_id: str | None = None


@dataclass(frozen=True)
class ConversationEvent:
    """One item of an accepted message opening or closing a conversation (no values: the
    correlation key is a keyed hash)."""

    kind: Literal["open", "close"]
    connector: str
    conversation: str
    key_hash: str
    gemeente: str
    participant: str
    sender: str
    recipient: str
    message_id: str
    message_type: str
    sender_message_id: str
    item: int
    at: datetime
    due_at: datetime | None = None


@dataclass
class IntakeCommit:
    """Everything one accepted message writes, in one transaction."""

    message: MessageRecord
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    log: list[LogRecord] = field(default_factory=list)
    conversations: list[ConversationEvent] = field(default_factory=list)
