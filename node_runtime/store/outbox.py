"""The transactional outbox of push deliveries: claim with a lease, settle, dead-letter, replay.

Deliveries are written in the intake transaction (no dual write). Workers in any number of
runtime replicas claim due deliveries with a lease (PostgreSQL: FOR UPDATE SKIP LOCKED), so a
crashed worker's claims fall back to the pool when the lease runs out. A delivery waits while an
earlier delivery of the same stream (mailbox, purpose, order key) is undelivered: a stop never
overtakes its start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from node_runtime.store import row_mapping, schema
from node_runtime.store.records import DeliveryRecord, LogRecord
from node_runtime.store.sql import SqlStore, insert_in_seq_order, now

UNSETTLED = schema.UNSETTLED_STATUSES

_D = schema.deliveries
# "Still pending", for statements that pick their rows by id: written so that no index on
# status can serve it (``status || ''``), and the planner looks the ids up on their unique
# index. With a plain ``status = 'pending'`` SQLite (no statistics) walked every pending
# row of (status, seq) instead: a settlement or a lease cost time in proportion to the
# backlog (35 ms of CPU each with 100 000 pending), and a large backlog drained slowest at
# its start.
_STILL_PENDING = _D.c.status.concat(literal_column("''")) == "pending"
# Lease the rows a claim selected, in one statement, and say which it got (a row another
# worker leased or settled meanwhile is not returned). Built once.
_LEASE = (
    update(_D)
    .where(
        _D.c.id.in_(bindparam("ids", expanding=True)),
        _STILL_PENDING,
        or_(_D.c.lease_until.is_(None), _D.c.lease_until < bindparam("moment")),
    )
    .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"))
    .returning(*_D.c)
)
# Whether PostgreSQL's planner has statistics of the deliveries' status (see ensure_statistics).
_HAS_STATISTICS = text(
    "SELECT EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema() "
    "AND tablename = 'deliveries' AND attname = 'status')"
)
# Settle successful pushes still pending, and say which (one statement for a batch).
_SETTLE = (
    update(_D)
    .where(_D.c.id.in_(bindparam("ids", expanding=True)), _STILL_PENDING)
    .values(
        status="delivered",
        delivered_at=bindparam("moment"),
        acknowledged_at=bindparam("moment"),
        attempts=_D.c.attempts + 1,
        lease_owner=None,
        lease_until=None,
        last_error=None,
    )
    .returning(_D.c.id)
)


@functools.cache
def _claim_query(dialect: str, excluding: bool) -> Select[Any]:
    """Due push deliveries, oldest first, none behind an unsettled one of its stream; ids and
    endpoints only (the lease returns the whole rows). Built once per dialect and form: building
    it (an aliased table, two dozen comparisons) cost more than running it."""
    d, e = _D, aliased(_D)
    moment = bindparam("moment", type_=_D.c.lease_until.type)
    earlier_unsettled = exists().where(
        e.c.mailbox_kind == d.c.mailbox_kind,
        e.c.mailbox_id == d.c.mailbox_id,
        e.c.purpose == d.c.purpose,
        e.c.order_key == d.c.order_key,
        e.c.seq < d.c.seq,
        # as literals, in the words of the partial index's predicate: the planner uses that
        # index only if it sees that this condition implies the index's
        e.c.status.in_([literal_column(f"'{s}'") for s in UNSETTLED]),
    )
    query = (
        select(d.c.id, d.c.endpoint)
        .where(
            d.c.delivery_mode == "push",
            d.c.status == "pending",
            or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= moment),
            or_(d.c.lease_until.is_(None), d.c.lease_until < moment),
            ~earlier_unsettled,
        )
        .order_by(d.c.seq)
        .limit(bindparam("limit", type_=Integer))
    )
    if excluding:
        query = query.where(d.c.endpoint.not_in(bindparam("excluded", expanding=True)))
    if dialect == "postgresql":
        query = query.with_for_update(of=d, skip_locked=True)
    return query


@dataclass(frozen=True)
class ClaimRequest:
    """What a claim asks for (see :meth:`Outbox.claim`)."""

    owner: str
    limit: int
    lease: timedelta
    exclude_endpoints: tuple[str, ...] = ()
    room: Callable[[str], int] | None = None


@dataclass(frozen=True)
class DeadLetterFilter:
    gemeente: str | None = None
    connector: str | None = None
    ids: tuple[str, ...] = ()


def _within_room(rows: list[Any], room: Callable[[str], int]) -> list[Any]:
    left: dict[str, int] = {}
    kept = []
    for row in rows:
        endpoint = row.endpoint or ""
        if endpoint not in left:
            left[endpoint] = room(endpoint)
        if left[endpoint] > 0:
            left[endpoint] -= 1
            kept.append(row)
    return kept


class Outbox:
    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine = store.engine

    def claim(
        self,
        *,
        owner: str,
        limit: int,
        lease: timedelta,
        exclude_endpoints: Sequence[str] = (),
        room: Callable[[str], int] | None = None,
    ) -> list[DeliveryRecord]:
        """Lease up to ``limit`` due deliveries, oldest first, none behind an unsettled one of
        its stream. ``room(endpoint)``: how many more this worker may have in flight to that
        endpoint; the rest stay in the pool (their streams wait for them, order holds)."""
        request = ClaimRequest(owner, limit, lease, tuple(exclude_endpoints), room)
        with self.store.transaction() as conn:
            return self._lease_due(conn, request)

    def _lease_due(self, conn: Connection, request: ClaimRequest) -> list[DeliveryRecord]:
        """:meth:`claim` in the caller's transaction. It only reads and updates deliveries
        (on PostgreSQL: locks rows, skipping those locked), so it may come before a
        processing-log insert, never after one (see ``insert_in_seq_order``)."""
        moment = now()
        query = _claim_query(self.store.dialect, bool(request.exclude_endpoints))
        params: dict[str, Any] = {"moment": moment, "limit": request.limit}
        if request.exclude_endpoints:
            params["excluded"] = list(request.exclude_endpoints)
        rows = list(conn.execute(query, params))
        if request.room is not None:
            rows = _within_room(rows, request.room)
        if not rows:
            return []
        # the whole rows only of those leased (a claim may select several times more)
        leased = list(
            conn.execute(
                _LEASE,
                {
                    "ids": [r.id for r in rows],
                    "moment": moment,
                    "owner": request.owner,
                    "until": moment + request.lease,
                },
            )
        )
        return [row_mapping.delivery(r) for r in sorted(leased, key=lambda r: r.seq)]

    def ensure_statistics(self) -> bool:
        """PostgreSQL: analyse the deliveries if the planner has no statistics of them (a
        database restored from a dump or upgraded, deliveries loaded in bulk, before
        autovacuum came by). Without them it planned the claim as a walk over every pending
        delivery with a stream check each, then a sort: 5.6 s per claim with 20 000 pending,
        against 0.4 ms with statistics, until autovacuum analysed the table (up to a
        minute). True if it analysed; SQLite plans without statistics (see _STILL_PENDING)."""
        if self.store.dialect != "postgresql":
            return False
        with self.store.transaction() as conn:
            known = conn.execute(_HAS_STATISTICS).scalar()
            if known:
                return False
            conn.execute(text("ANALYZE deliveries"))
            return True

    def delivered(self, delivery_id: str, log: Sequence[LogRecord]) -> bool:
        """Settle a successful push. False if it was already settled (harmless)."""
        d = schema.deliveries
        moment = now()
        with self.store.transaction() as conn:
            result = conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == "pending")
                .values(
                    status="delivered",
                    delivered_at=moment,
                    acknowledged_at=moment,
                    attempts=d.c.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                )
            )
            if result.rowcount == 1:
                insert_in_seq_order(
                    conn, schema.processing_log, [row_mapping.log_values(r) for r in log]
                )
            return result.rowcount == 1

    def delivered_many(self, settled: Sequence[tuple[str, Sequence[LogRecord]]]) -> int:
        """Settle many successful pushes in one transaction (group commit)."""
        if not settled:
            return 0
        return self.settle_and_claim(settled, None)[0]

    def settle_and_claim(
        self,
        settled: Sequence[tuple[str, Sequence[LogRecord]]],
        claim: ClaimRequest | None,
    ) -> tuple[int, list[DeliveryRecord]]:
        """Settle successful pushes (as :meth:`delivered_many`) and, with ``claim``, lease the
        deliveries due then (as :meth:`claim`), in one transaction: one commit (on SQLite one
        turn at the single writer and one fsync) instead of two. The claim comes after the
        settlement, so it sees the streams whose next delivery the settlement let through,
        and before the settlement's processing-log records, which are inserted last (they
        take the lock that orders the log, see ``insert_in_seq_order``). Returns the count
        settled and the deliveries leased; all or nothing."""
        with self.store.transaction() as conn:
            pending: set[str] = set()
            if settled:
                ids = [i for i, _ in settled]
                pending = {r[0] for r in conn.execute(_SETTLE, {"ids": ids, "moment": now()})}
            leased = self._lease_due(conn, claim) if claim is not None else []
            records = [row_mapping.log_values(r) for i, log in settled if i in pending for r in log]
            insert_in_seq_order(conn, schema.processing_log, records)
            return len(pending), leased

    def failed(
        self,
        delivery_id: str,
        *,
        error: str,
        retry_at: datetime | None,
        log: Sequence[LogRecord] = (),
    ) -> str:
        """Record a failed attempt: back to pending with retry_at, or dead when None."""
        d = schema.deliveries
        status = "pending" if retry_at is not None else "dead"
        with self.store.transaction() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == "pending")
                .values(
                    status=status,
                    attempts=d.c.attempts + 1,
                    last_error=error[:2000],
                    next_attempt_at=retry_at,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            insert_in_seq_order(
                conn, schema.processing_log, [row_mapping.log_values(r) for r in log]
            )
        return status

    def release(self, delivery_id: str) -> None:
        """Give a claimed delivery back untried (e.g. its circuit opened meanwhile)."""
        d = schema.deliveries
        with self.store.transaction() as conn:
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status == "pending")
                .values(lease_owner=None, lease_until=None)
            )

    def release_many(self, delivery_ids: Sequence[str], *, owner: str) -> int:
        """Give back claimed deliveries untried (a worker's leased deliveries it will not
        start: their circuit opened, or it stops), in one transaction; a lease that has
        meanwhile passed to another owner is left alone. Returns the count."""
        if not delivery_ids:
            return 0
        d = schema.deliveries
        with self.store.transaction() as conn:
            result = conn.execute(
                update(d)
                .where(
                    d.c.id.in_(list(delivery_ids)),
                    _STILL_PENDING,
                    d.c.lease_owner == owner,
                )
                .values(lease_owner=None, lease_until=None)
            )
            return int(result.rowcount)

    def release_owner(self, owner: str) -> int:
        """Give back every pending delivery leased by ``owner``, untried as far as the outbox
        knows: called by a delivery process at start for the leases of its predecessor under
        the same owner, which has ended (a push it made but did not settle is made again with
        the same idempotency key). Returns the count."""
        d = schema.deliveries
        with self.store.transaction() as conn:
            result = conn.execute(
                update(d)
                .where(d.c.lease_owner == owner, d.c.status == "pending")
                .values(lease_owner=None, lease_until=None)
            )
            return int(result.rowcount)

    def attempts(self, delivery_id: str) -> int:
        d = schema.deliveries
        with self.engine.connect() as conn:
            return int(conn.execute(select(d.c.attempts).where(d.c.id == delivery_id)).scalar_one())

    def _filter(self, f: DeadLetterFilter) -> list[Any]:
        d = schema.deliveries
        clauses: list[Any] = [d.c.status == "dead"]
        if f.gemeente is not None:
            clauses.append(and_(d.c.mailbox_kind == "gemeente", d.c.mailbox_id == f.gemeente))
        if f.connector is not None:
            clauses.append(d.c.connector == f.connector)
        if f.ids:
            clauses.append(d.c.id.in_(list(f.ids)))
        return clauses

    def dead_letters(
        self, f: DeadLetterFilter, *, limit: int = 100
    ) -> list[tuple[DeliveryRecord, int, str]]:
        d = schema.deliveries
        query = select(d).where(*self._filter(f)).order_by(d.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [
                (row_mapping.delivery(r), int(r.attempts), r.last_error or "")
                for r in conn.execute(query)
            ]

    def replay(self, f: DeadLetterFilter) -> int:
        """Put dead letters back in the outbox (fresh attempt budget). Returns the count."""
        d = schema.deliveries
        with self.store.transaction() as conn:
            result = conn.execute(
                update(d)
                .where(*self._filter(f))
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_until=None,
                )
            )
            return int(result.rowcount)

    def counts(self) -> dict[str, int]:
        d = schema.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.status, func.count())
                .where(d.c.delivery_mode == "push")
                .group_by(d.c.status)
            )
            return {r[0]: int(r[1]) for r in rows}

    def created_at(self, delivery_id: str) -> datetime | None:
        d = schema.deliveries
        with self.engine.connect() as conn:
            value = conn.execute(select(d.c.created_at).where(d.c.id == delivery_id)).scalar()
        if value is None:
            return None
        return row_mapping.utc(value)
