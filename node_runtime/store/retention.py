"""Retention: delivered payloads are purged after their period; the processing log keeps its
own (longer) period. Nothing unacknowledged or dead-lettered is ever purged."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, not_, select, update

from node_runtime.store import row_mapping, schema
from node_runtime.store.records import LogRecord
from node_runtime.store.sql import SqlStore, insert_in_seq_order


@dataclass(frozen=True)
class PurgeRule:
    """Purge settled deliveries of one (connector, gemeente) older than `days`."""

    connector: str
    gemeente: str | None  # None: every mailbox of the connector not covered by another rule
    days: int


@dataclass(frozen=True)
class PurgedDelivery:
    id: str
    message_id: str
    mailbox_id: str
    connector: str
    message_type: str
    purpose: str | None
    legal_basis: str | None
    subject_refs: tuple[str, ...]


class Retention:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def purge_deliveries(
        self,
        rules: Sequence[PurgeRule],
        *,
        now: datetime,
        log_for: Callable[[PurgedDelivery], list[LogRecord]],
        batch: int = 500,
    ) -> list[PurgedDelivery]:
        d = schema.deliveries
        purged: list[PurgedDelivery] = []
        specific = {(r.connector, r.gemeente) for r in rules if r.gemeente is not None}
        for rule in rules:
            cutoff = now - timedelta(days=rule.days)
            clauses = [
                d.c.connector == rule.connector,
                d.c.purged_at.is_(None),
                d.c.acknowledged_at.is_not(None),
                d.c.status.in_(("acknowledged", "delivered")),
                d.c.created_at < cutoff,
            ]
            if rule.gemeente is not None:
                clauses.append(
                    and_(d.c.mailbox_kind == "gemeente", d.c.mailbox_id == rule.gemeente)
                )
            else:
                others = [g for (c, g) in specific if c == rule.connector and g is not None]
                if others:
                    clauses.append(
                        not_(and_(d.c.mailbox_kind == "gemeente", d.c.mailbox_id.in_(others)))
                    )
            with self.store.transaction() as conn:
                rows = list(conn.execute(select(d).where(*clauses).order_by(d.c.seq).limit(batch)))
                if not rows:
                    continue
                conn.execute(
                    update(d)
                    .where(d.c.id.in_([r.id for r in rows]))
                    .values(content=None, purged_at=now, status="purged")
                )
                records: list[LogRecord] = []
                for r in rows:
                    item = PurgedDelivery(
                        r.id,
                        r.message_id,
                        r.mailbox_id,
                        r.connector,
                        r.message_type,
                        r.purpose,
                        r.legal_basis,
                        tuple(json.loads(r.subject_refs)),
                    )
                    purged.append(item)
                    records.extend(log_for(item))
                insert_in_seq_order(
                    conn, schema.processing_log, [row_mapping.log_values(x) for x in records]
                )
        return purged

    def purge_message_payloads(self, connector_days: dict[str, int], *, now: datetime) -> int:
        """Drop the original payload once every delivery is purged and the period has passed."""
        m, d = schema.messages, schema.deliveries
        total = 0
        for connector, days in connector_days.items():
            unpurged = select(d.c.id).where(d.c.message_id == m.c.id, d.c.purged_at.is_(None))
            with self.store.transaction() as conn:
                result = conn.execute(
                    update(m)
                    .where(
                        m.c.connector == connector,
                        m.c.purged_at.is_(None),
                        m.c.received_at < now - timedelta(days=days),
                        ~unpurged.exists(),
                    )
                    .values(payload=None, purged_at=now)
                )
                total += int(result.rowcount)
        return total

    def purge_log(
        self, *, days: int, now: datetime, log_for: Callable[[int, int], list[LogRecord]]
    ) -> int:
        """Delete the processing-log records older than `days`, as one prefix in commit order
        (up to the oldest record that stays), and log the purge itself in the same
        transaction: ``log_for(count, through_leaf)`` builds that record. The records' Merkle
        leaves stay, so the tree, its checkpoints and its proofs remain verifiable."""
        p, lv = schema.processing_log, schema.log_leaves
        cutoff = now - timedelta(days=days)
        with self.store.transaction() as conn:
            oldest_kept = conn.execute(
                select(func.min(p.c.seq)).where(p.c.timestamp >= cutoff)
            ).scalar_one()
            prefix = [p.c.timestamp < cutoff]
            if oldest_kept is not None:
                prefix.append(p.c.seq < oldest_kept)
            through_seq = conn.execute(select(func.max(p.c.seq)).where(*prefix)).scalar_one()
            if through_seq is None:
                return 0
            through_leaf = conn.execute(
                select(func.max(lv.c.leaf_index)).where(lv.c.seq <= through_seq)
            ).scalar_one()
            count = int(
                conn.execute(
                    select(func.count()).select_from(p).where(p.c.seq <= through_seq)
                ).scalar_one()
            )
            # The purge's own record first: it takes the next number while the purged rows
            # still exist (SQLite would otherwise hand out a purged row's number again).
            insert_in_seq_order(
                conn,
                schema.processing_log,
                [row_mapping.log_values(r) for r in log_for(count, int(through_leaf or 0))],
            )
            conn.execute(delete(p).where(p.c.seq <= through_seq))
            return count
