"""Row mapping: records to the values of a table row and rows back to records.

Public so that every repository module of the store maps rows the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row

from node_runtime.store.records import DeliveryRecord, LogRecord, MessageRecord


def utc(value: datetime | None) -> datetime | None:
    """A database timestamp as an aware UTC datetime (SQLite returns naive ones)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def message_values(m: MessageRecord) -> dict[str, Any]:
    return {
        "id": m.id,
        "connector": m.connector,
        "connector_revision": m.connector_revision,
        "message_type": m.message_type,
        "direction": m.direction,
        "sender": m.sender,
        "recipient": m.recipient,
        "sender_message_id": m.sender_message_id,
        "payload_sha256": m.payload_sha256,
        "payload": m.payload,
        "received_at": m.received_at,
        "trace_id": m.trace_id,
        "controller": m.controller,
        "answer_status": m.answer_status,
        "answer_body": m.answer_body,
        "answer_content_type": m.answer_content_type,
    }


def message(r: Row[Any]) -> MessageRecord:
    return message_from_values(r._mapping)


def message_from_values(r: Mapping[Any, Any]) -> MessageRecord:
    """A message from its column values by name (a row's mapping, or values read raw)."""
    received = utc(r["received_at"])
    assert received is not None
    return MessageRecord(
        id=r["id"],
        connector=r["connector"],
        connector_revision=r["connector_revision"],
        message_type=r["message_type"],
        direction=r["direction"],
        sender=r["sender"],
        recipient=r["recipient"],
        sender_message_id=r["sender_message_id"],
        payload_sha256=r["payload_sha256"],
        payload=r["payload"] or b"",
        received_at=received,
        trace_id=r["trace_id"],
        controller=r["controller"],
        answer_status=r["answer_status"],
        answer_body=r["answer_body"],
        answer_content_type=r["answer_content_type"],
    )


def delivery_values(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "message_id": d.message_id,
        "mailbox_kind": d.mailbox_kind,
        "mailbox_id": d.mailbox_id,
        "connector": d.connector,
        "message_type": d.message_type,
        "purpose": d.purpose,
        "legal_basis": d.legal_basis,
        "content": d.content,
        "content_type": d.content_type,
        "subject_refs": json.dumps(list(d.subject_refs)),
        "order_key": d.order_key,
        "delivery_mode": d.delivery_mode,
        "endpoint": d.endpoint,
        "traceparent": d.traceparent,
        "created_at": d.created_at,
        "read_count": 0,
        "status": "pending",
        "attempts": 0,
    }


def delivery(r: Row[Any]) -> DeliveryRecord:
    created = utc(r.created_at)
    assert created is not None
    return DeliveryRecord(
        id=r.id,
        message_id=r.message_id,
        mailbox_kind=r.mailbox_kind,
        mailbox_id=r.mailbox_id,
        connector=r.connector,
        message_type=r.message_type,
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        content=r.content or b"",
        content_type=r.content_type,
        subject_refs=tuple(json.loads(r.subject_refs)),
        order_key=r.order_key,
        created_at=created,
        delivery_mode=r.delivery_mode,
        endpoint=r.endpoint,
        acknowledged_at=utc(r.acknowledged_at),
        read_count=r.read_count,
        seq=r.seq,
        traceparent=r.traceparent,
    )


def log_values(r: LogRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "timestamp": r.timestamp,
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "parent_span_id": r.parent_span_id,
        "activity": r.activity,
        "purpose": r.purpose,
        "legal_basis": r.legal_basis,
        "controller": r.controller,
        "actor": r.actor,
        "subject_ref": r.subject_ref,
        "connector": r.connector,
        "message_type": r.message_type,
        "message_id": r.message_id,
        "delivery_id": r.delivery_id,
        "outcome": r.outcome,
        "detail": r.detail,
    }


def log_record(r: Row[Any]) -> LogRecord:
    ts = utc(r.timestamp)
    assert ts is not None
    return LogRecord(
        id=r.id,
        timestamp=ts,
        trace_id=r.trace_id,
        span_id=r.span_id,
        parent_span_id=r.parent_span_id,
        activity=r.activity,
        purpose=r.purpose,
        legal_basis=r.legal_basis,
        controller=r.controller,
        actor=r.actor,
        subject_ref=r.subject_ref,
        connector=r.connector,
        message_type=r.message_type,
        message_id=r.message_id,
        delivery_id=r.delivery_id,
        outcome=r.outcome,
        detail=r.detail,
    )
