"""Management information for one gemeente: aggregates only, no personal data.

Volumes per month, message type and sender (accepted messages), rejections per month,
retourcode and sender (from the processing log's ``reject`` records: rejected messages are not
stored), delivery latency per month (queued to delivered or acknowledged), dead letters, and the
gemeente's conversations per state now (open, overdue, …). Months are calendar months in UTC;
grouping happens here rather than in SQL so SQLite and PostgreSQL agree to the byte.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from node_runtime.store import conversations, schema
from node_runtime.store.row_mapping import utc


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime  # exclusive


@dataclass
class Statistics:
    volumes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rejections: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    undelivered: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    # (connector, conversation, sender of the opener, state) → conversations in it now
    conversations: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)


def month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _instant(value: datetime | None) -> datetime:
    aware = utc(value)
    assert aware is not None, "a NOT NULL timestamp column"
    return aware


def gather(engine: Engine, gemeente: str, period: Period, *, now: datetime) -> Statistics:
    stats = Statistics()
    m, d, p = schema.messages, schema.deliveries, schema.processing_log
    with engine.connect() as conn:
        rows = conn.execute(
            select(m.c.received_at, m.c.message_type, m.c.sender).where(
                m.c.controller == gemeente,
                m.c.received_at >= period.since,
                m.c.received_at < period.until,
            )
        )
        for received, message_type, sender in rows:
            stats.volumes[(month(_instant(received)), message_type, sender)] += 1
        # one rejected message writes one reject record per subject, all children of its
        # intake span: count each (span, code) once
        rejected = conn.execute(
            select(p.c.timestamp, p.c.actor, p.c.parent_span_id, p.c.span_id, p.c.detail).where(
                p.c.controller == gemeente,
                p.c.activity == "reject",
                p.c.timestamp >= period.since,
                p.c.timestamp < period.until,
            )
        )
        seen: set[tuple[str, str]] = set()
        for at, actor, parent, span, detail in rejected:
            codes = (detail or "").removeprefix("retourcodes ").split(",")
            for code in filter(None, (c.strip() for c in codes)):
                once = (parent or span, code)
                if once not in seen:
                    seen.add(once)
                    stats.rejections[(month(_instant(at)), code, actor)] += 1
        queued = conn.execute(
            select(d.c.created_at, d.c.delivered_at, d.c.acknowledged_at, d.c.status).where(
                d.c.mailbox_kind == "gemeente",
                d.c.mailbox_id == gemeente,
                d.c.created_at >= period.since,
                d.c.created_at < period.until,
            )
        )
        for created_at, delivered, acknowledged, status in queued:
            created = _instant(created_at)
            key = month(created)
            if status == "dead":
                stats.dead_letters[key] += 1
            done = utc(delivered) or utc(acknowledged)
            if done is None:
                stats.undelivered[key] += 1
            else:
                stats.latencies[key].append(max(0.0, (done - created).total_seconds()))
    for (connector, conversation, _g, sender, state), n in conversations.counts(
        engine, now=now, gemeente=gemeente
    ).items():
        stats.conversations[(connector, conversation, sender, state)] += n
    return stats


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]
