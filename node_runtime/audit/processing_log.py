"""Builds processing-log records (verwerkingenlog) for one traced request."""

from __future__ import annotations

from dataclasses import dataclass, field

from node_runtime.audit.identifiers import time_ordered_uuid
from node_runtime.observability.tracing import TraceContext
from node_runtime.store.records import LogRecord
from node_runtime.store.sql import now

NODE_PURPOSE = "gegevenslogistiek"


@dataclass
class LogBuilder:
    """Collects the records of one request; each record is a span of the caller's trace."""

    trace: TraceContext
    actor: str
    records: list[LogRecord] = field(default_factory=list)
    span_id: str = ""

    def __post_init__(self) -> None:
        self.span_id = self.trace.span_id or self.trace.new_span()

    def add(
        self,
        *,
        activity: str,
        controller: str,
        purpose: str,
        legal_basis: str,
        outcome: str,
        subject_ref: str | None = None,
        connector: str | None = None,
        message_type: str | None = None,
        message_id: str | None = None,
        delivery_id: str | None = None,
        detail: str | None = None,
    ) -> LogRecord:
        record = LogRecord(
            id=time_ordered_uuid(),
            timestamp=now(),
            trace_id=self.trace.trace_id,
            span_id=self.trace.new_span(),
            parent_span_id=self.span_id,
            activity=activity,
            purpose=purpose,
            legal_basis=legal_basis,
            controller=controller,
            actor=self.actor,
            subject_ref=subject_ref,
            connector=connector,
            message_type=message_type,
            message_id=message_id,
            delivery_id=delivery_id,
            outcome=outcome,
            detail=detail,
        )
        self.records.append(record)
        return record

    def for_subjects(self, subjects: list[str | None], **kwargs: str | None) -> None:
        for ref in subjects or [None]:
            self.add(subject_ref=ref, **kwargs)  # type: ignore[arg-type]
