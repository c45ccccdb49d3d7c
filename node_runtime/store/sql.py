"""The storage interface on SQLAlchemy Core: SQLite (WAL) or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, RootTransaction
from sqlalchemy.exc import IntegrityError, InvalidatePoolError

from node_runtime.store import conversations, log_tree, prepared, row_mapping, schema
from node_runtime.store.group import GroupCommit
from node_runtime.store.loop_group import LoopGroupCommit
from node_runtime.store.records import (
    DeliveryRecord,
    IntakeCommit,
    LogQuery,
    LogRecord,
    MailboxKind,
    MessageRecord,
)
from node_runtime.store.write_behind import WriteBehind

logger = logging.getLogger(__name__)

Migration = Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    schema.metadata.create_all(
        conn,
        tables=[schema.messages, schema.deliveries, schema.processing_log],
        checkfirst=True,
    )


def _v2(conn: Connection) -> None:
    """Push delivery: settlement time and claim leases on deliveries, and their indexes.

    A database created by v1 before these columns existed gets them here; a fresh one already
    has them from v1's create_all, so every step checks first.
    """
    inspector = inspect(conn)
    present = {c["name"] for c in inspector.get_columns("deliveries")}
    for column in ("delivered_at", "lease_owner", "lease_until"):
        if column not in present:
            col = schema.deliveries.c[column]
            type_sql = col.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE deliveries ADD COLUMN {column} {type_sql}"))
    indexes = {i["name"] for i in inspector.get_indexes("deliveries")}
    for index in schema.deliveries.indexes:
        if index.name not in indexes:
            index.create(conn)


def _v3(conn: Connection) -> None:
    """Claims walk pending deliveries in seq order: index (status, seq)."""
    indexes = {i["name"] for i in inspect(conn).get_indexes("deliveries")}
    for index in schema.deliveries.indexes:
        if index.name not in indexes:
            index.create(conn)


def _v4(conn: Connection) -> None:
    """Used acting-for assertion ids, shared by the replicas (façade replay protection)."""
    schema.metadata.create_all(conn, tables=[schema.used_assertions], checkfirst=True)


def _v5(conn: Connection) -> None:
    """The processing log's Merkle tree: leaves (backfilled for existing records, in commit
    order) and signed checkpoints."""
    schema.metadata.create_all(
        conn, tables=[schema.log_leaves, schema.log_checkpoints], checkfirst=True
    )
    if inspect(conn).has_table("processing_log"):
        log_tree.backfill(conn)


def _v6(conn: Connection) -> None:
    """Conversation deadlines: open and closed conversation items."""
    schema.metadata.create_all(conn, tables=[schema.conversations], checkfirst=True)


def _v7(conn: Connection) -> None:
    """Shadow validation counts and examples, shared by the replicas."""
    schema.metadata.create_all(
        conn, tables=[schema.shadow_counts, schema.shadow_examples], checkfirst=True
    )


def _v8(conn: Connection) -> None:
    """Deliveries carry the intake's traceparent (push attempts continue the message's trace)."""
    if "traceparent" not in {c["name"] for c in inspect(conn).get_columns("deliveries")}:
        conn.execute(text("ALTER TABLE deliveries ADD COLUMN traceparent VARCHAR(55)"))


def _v9(conn: Connection) -> None:
    """Claims find stream heads on a partial index of unsettled deliveries; it replaces the
    index on all deliveries by stream, which made that check walk each stream's history."""
    indexes = {i["name"] for i in inspect(conn).get_indexes("deliveries")}
    if "ix_deliveries_order" in indexes:
        conn.execute(text("DROP INDEX ix_deliveries_order"))
    for index in schema.deliveries.indexes:
        if index.name not in indexes:
            index.create(conn)


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
    (7, _v7),
    (8, _v8),
    (9, _v9),
]


def now() -> datetime:
    return datetime.now(UTC)


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` (as operators and secrets write them) → psycopg 3.

    SQLAlchemy would pick psycopg2 for a bare ``postgresql://``; we ship psycopg 3.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# pg_advisory_xact_lock key of schema migrations: the first 8 bytes of
# sha256("knooppunt.schema_migrations") as a signed bigint (any constant would do).
MIGRATION_LOCK_KEY = 0x4DBA_9318_C5E6_CBB2


# pg_advisory_xact_lock key that orders the commits of rows readers page through by ``seq``
# (deliveries, processing-log records): sha256("knooppunt.seq_order")[:8], signed.
SEQ_ORDER_LOCK_KEY = 0x2F0C_5A41_7D93_1E66


# Statements of the hot paths, built once: building them per call (coercing every column and
# comparison) cost more than executing them.
_SEQ_ORDER_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_INSERTS = {t.name: insert(t) for t in (schema.messages, schema.deliveries, schema.processing_log)}
_MESSAGE_COLUMNS = tuple(c.name for c in schema.messages.c)
_FIND_MESSAGE = select(schema.messages).where(
    schema.messages.c.connector == bindparam("connector"),
    schema.messages.c.sender == bindparam("sender"),
    schema.messages.c.sender_message_id == bindparam("sender_message_id"),
)


def insert_in_seq_order(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that readers page through with a ``seq`` cursor (``?after=``).

    On PostgreSQL a sequence hands out numbers in insert order, but transactions commit in any
    order: a reader at cursor 11 would never see row 10 if row 10's transaction committed
    after row 11's. So every such insert takes one transaction-scoped advisory lock first and
    holds it to the commit: numbers are then handed out in commit order. Call it last in a
    transaction, after every statement that may wait for another transaction's row locks (the
    lock holder must only insert and commit, so it can never be part of a deadlock). SQLite
    has one writer at a time already. Processing-log records get their Merkle leaves here,
    under the same lock, so the tree follows commit order too.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        prepared.execute(conn, _SEQ_ORDER_LOCK, {"key": SEQ_ORDER_LOCK_KEY})
    statement = _INSERTS.get(table.name)
    if statement is None:
        conn.execute(insert(table), list(rows))
    else:
        prepared.execute_many(conn, statement, rows)
    if table is schema.processing_log:
        log_tree.append_leaves(conn, rows)


@dataclass(frozen=True)
class LogWrite:
    """Processing-log records written on their own (refusals, rejections): they join the
    intake group commit, so they share its transaction and fsync."""

    records: tuple[LogRecord, ...]


Write = IntakeCommit | LogWrite


def _merge_logs(writes: list[Write]) -> LogWrite | None:
    """One write of several log-only writes (None when one of them is more than records)."""
    records: list[LogRecord] = []
    for write in writes:
        if not isinstance(write, LogWrite):
            return None
        records.extend(write.records)
    return LogWrite(tuple(records))


def _insert_intakes(conn: Connection, commits: Sequence[Write]) -> None:
    """The rows of accepted messages: messages first, in one key order for every replica (two
    batches racing for the same messages wait for each other instead of deadlocking on the
    unique index), then their deliveries and all log records (also those of log-only writes)
    in commit order."""
    intakes = [c for c in commits if isinstance(c, IntakeCommit)]
    ordered = sorted(
        intakes, key=lambda c: (c.message.connector, c.message.sender, c.message.sender_message_id)
    )
    if ordered:
        prepared.execute_many(
            conn, _INSERTS["messages"], [row_mapping.message_values(c.message) for c in ordered]
        )
    insert_in_seq_order(
        conn,
        schema.deliveries,
        [row_mapping.delivery_values(d) for c in intakes for d in c.deliveries],
    )
    insert_in_seq_order(
        conn,
        schema.processing_log,
        [
            row_mapping.log_values(r)
            for c in commits
            for r in (c.log if isinstance(c, IntakeCommit) else c.records)
        ],
    )
    conversations.apply(conn, [e for c in intakes for e in c.conversations])


def _lock_for_migration(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class WriterLock:
    """One writer at a time on a SQLite database: across this process's threads (a lock) and
    across processes on the same file (``flock`` on ``<database>.writer``), so that several
    worker processes queue for the write lock instead of polling SQLite's busy handler (which
    sleeps in growing steps), and a transaction that reads before it writes (a delivery claim)
    reads what no other process is changing. Each process's group commit still shares one
    transaction and fsync among its waiting writers."""

    def __init__(self, database: str | None) -> None:
        self._thread = threading.Lock()
        self._path = f"{database}.writer" if database and database != ":memory:" else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        self.acquire(blocking=True)

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def acquire(self, *, blocking: bool) -> bool:
        """Take the lock; without ``blocking``, only if it is free now (False if not)."""
        if not self._thread.acquire(blocking):
            return False
        try:
            if self._path is not None:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    self._thread.release()
                    return False
        except BaseException:
            self._thread.release()
            raise
        return True

    async def acquire_async(self) -> None:
        """Take the lock from an event loop: at once when it is free, else waiting in a
        thread (another process's writer may hold it through its fsync). A caller cancelled
        while it waits never ends up holding the lock."""
        if self.acquire(blocking=False):
            return
        waiting = asyncio.ensure_future(asyncio.to_thread(self.acquire, blocking=True))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(self._release_if_taken)
            raise

    def _release_if_taken(self, waiting: asyncio.Future[bool]) -> None:
        if not waiting.cancelled() and waiting.exception() is None and waiting.result():
            self.release()

    def release(self) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        with self._thread:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# PostgreSQL: a pooled connection is pinged before use only after it has been idle this
# long (seconds). A ping on every checkout (pool_pre_ping) cost a round trip to the server per
# transaction and per read, on two cores shared with the server; connections die while idle
# (a server restart or failover, an idle timeout on the way), and one that is found dead
# invalidates the pool, so the others are replaced too before they are used.
PING_AFTER_IDLE = 1.0


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout when it has been idle ``PING_AFTER_IDLE`` or more;
    a dead one is replaced (with every connection pooled before it) and the checkout goes
    on with a new one, as with ``pool_pre_ping``."""
    dialect = engine.dialect

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return  # new, or back from use just now
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"ping of a connection idle since {idle_since}") from exc

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checkout)


def _commit_and_release(transaction: RootTransaction, conn: Connection, lock: WriterLock) -> None:
    try:
        transaction.commit()
    finally:
        try:
            conn.close()  # after a failed COMMIT this rolls back
        finally:
            lock.release()


class SqlStore:
    """All durable state of a node. Every method is one transaction."""

    def __init__(
        self,
        url: str,
        *,
        engine: Engine | None = None,
        connect_args: Mapping[str, str] | None = None,
    ) -> None:
        """``connect_args``: extra libpq parameters for PostgreSQL (TLS, see
        :mod:`node_runtime.store.database_tls`); they override the URL's."""
        url = normalise_url(url)
        self.url = url
        if engine is None:
            kwargs: dict[str, Any] = {"future": True}
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            else:
                kwargs.update(pool_size=10, max_overflow=10)
                if connect_args:
                    kwargs["connect_args"] = dict(connect_args)
            engine = create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                _ping_after_idle(engine)
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time; serialising writers (threads and processes on the
        # same file) avoids its busy handler, which sleeps in growing steps and wrecks latency
        # under contention.
        self._write_lock: WriterLock | None = (
            WriterLock(engine.url.database) if self.dialect == "sqlite" else None
        )
        self._intake_group: GroupCommit[Write, tuple[MessageRecord, bool] | None] = GroupCommit(
            self._commit_intake_batch, name="knooppunt-intake-writer"
        )
        self._loop_group: LoopGroupCommit[Write, tuple[MessageRecord, bool] | None] = (
            LoopGroupCommit(self._commit_intake_batch_on_loop)
        )
        # Refusal records: committed behind their answers, gathered into shared writes.
        self._behind = WriteBehind(lambda write: self.submit_write_async(write), _merge_logs)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (serialised per process on SQLite)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    # -- lifecycle -------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version now in force.

        All pending steps run in one transaction, serialised across processes: several
        runtime replicas may start at once on one database. PostgreSQL: a transaction-scoped
        advisory lock (DDL is transactional, so a failed step leaves nothing behind). SQLite:
        BEGIN IMMEDIATE takes the write lock up front (pysqlite would otherwise run the DDL
        outside any transaction).
        """
        with self.transaction() as conn:
            _lock_for_migration(conn)
            schema.schema_migrations.create(conn, checkfirst=True)
            done = {r[0] for r in conn.execute(select(schema.schema_migrations.c.version))}
            newest = max(v for v, _ in MIGRATIONS)
            if done and max(done) > newest:
                raise RuntimeError(
                    f"database schema version {max(done)} is newer than this runtime knows "
                    f"({newest}); refusing to run an older runtime against it"
                )
            for version, step in MIGRATIONS:
                if version not in done:
                    step(conn)
                    conn.execute(
                        insert(schema.schema_migrations).values(version=version, applied_at=now())
                    )
            return max([v for v, _ in MIGRATIONS])

    def ping(self) -> bool:
        with self.engine.connect() as conn:
            conn.execute(select(1))
        return True

    def close(self) -> None:
        self._intake_group.close()
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    # -- intake ----------------------------------------------------------------------------

    def find_message(
        self, connector: str, sender: str, sender_message_id: str
    ) -> MessageRecord | None:
        with self.engine.connect() as conn:
            rows = prepared.fetch(
                conn,
                _FIND_MESSAGE,
                {
                    "connector": connector,
                    "sender": sender,
                    "sender_message_id": sender_message_id,
                },
            )
        if not rows:
            return None
        return row_mapping.message_from_values(dict(zip(_MESSAGE_COLUMNS, rows[0], strict=True)))

    async def find_message_async(
        self, connector: str, sender: str, sender_message_id: str
    ) -> MessageRecord | None:
        """:meth:`find_message` from an event loop. SQLite reads the local file through an
        indexed look-up (tens of microseconds, never waiting for a writer in WAL mode), so it
        runs on the loop; PostgreSQL is a network round trip, so it runs in a thread."""
        if self.dialect == "sqlite":
            return self.find_message(connector, sender, sender_message_id)
        return await asyncio.to_thread(self.find_message, connector, sender, sender_message_id)

    def submit_write(self, write: Write) -> tuple[MessageRecord, bool] | None:
        """Commit an intake's write (an accepted message, or log records on their own) in the
        group commit; returns once it is durable (:meth:`commit_intake`, :meth:`write_log`)."""
        return self._intake_group.submit(write)

    async def submit_write_async(self, write: Write) -> tuple[MessageRecord, bool] | None:
        """:meth:`submit_write` from an event loop, together with whatever else waits; the
        loop serves others while the disk or the server works. SQLite: the rows are written
        on the loop and only the COMMIT waits in a thread (:mod:`.loop_group`); PostgreSQL:
        the whole transaction runs in the group's writer thread (its round trips would
        otherwise hold up the loop)."""
        if self.dialect == "sqlite":
            return await self._loop_group.submit(write)
        return await self._intake_group.submit_async(write)

    async def write_behind(self, write: Write) -> None:
        """Commit ``write`` (log records of a refused request) behind its answer: queued and
        gathered with others into one write of the group commit, without waiting for it
        (:mod:`node_runtime.store.write_behind`). :meth:`flush` writes and waits for all of
        them; a write that fails is logged (without its content) and counted in
        :attr:`write_behind_failures`, never lost silently."""
        await self._behind.put(write)

    @property
    def write_behind_failures(self) -> int:
        """Writes behind answers that failed (logged at error level when they did)."""
        return self._behind.failures

    async def flush(self) -> None:
        """Write every write behind an answer now and wait until it is committed (or has
        failed)."""
        await self._behind.flush()

    async def _commit_intake_batch_on_loop(
        self, commits: Sequence[Write]
    ) -> list[tuple[MessageRecord, bool] | BaseException | None]:
        lock = self._write_lock
        assert lock is not None, "SQLite only"
        await lock.acquire_async()
        conn: Connection | None = None
        try:
            conn = self.engine.connect()
            transaction = conn.begin()
            _insert_intakes(conn, commits)
        except Exception as exc:  # noqa: BLE001 - a duplicate or a bad item
            if conn is not None:
                conn.close()  # rolls the batch back
            lock.release()
            logger.debug(
                "group commit of %d writes fell back to one by one: %s",
                len(commits),
                type(exc).__name__,
            )
            return await asyncio.to_thread(self._commit_intake_one_by_one, commits)
        except BaseException:
            if conn is not None:
                conn.close()
            lock.release()
            raise
        # The COMMIT (its fsync) in a thread, which also closes and unlocks, whatever happens
        # to the awaiting coroutine meanwhile.
        await asyncio.to_thread(_commit_and_release, transaction, conn, lock)
        return [(c.message, True) if isinstance(c, IntakeCommit) else None for c in commits]

    def commit_intake(self, commit: IntakeCommit) -> tuple[MessageRecord, bool]:
        """Store an accepted message with its deliveries and log records atomically.

        Returns (record, created) once it is durable. A concurrent duplicate (same connector,
        sender and sender message id) writes nothing and returns the first record with created
        False. Concurrent calls share one transaction (group commit, one fsync), each still
        all-or-nothing: a batch that fails is retried item by item.
        """
        outcome = self._intake_group.submit(commit)
        assert outcome is not None
        return outcome

    def _commit_intake_batch(
        self, commits: Sequence[Write]
    ) -> list[tuple[MessageRecord, bool] | BaseException | None]:
        if len(commits) > 1:
            try:
                with self.transaction() as conn:
                    _insert_intakes(conn, commits)
                return [(c.message, True) if isinstance(c, IntakeCommit) else None for c in commits]
            except Exception as exc:  # noqa: BLE001 - a duplicate or a bad item
                logger.debug(
                    "group commit of %d writes fell back to one by one: %s",
                    len(commits),
                    type(exc).__name__,
                )
        return self._commit_intake_one_by_one(commits)

    def _commit_intake_one_by_one(
        self, commits: Sequence[Write]
    ) -> list[tuple[MessageRecord, bool] | BaseException | None]:
        outcomes: list[tuple[MessageRecord, bool] | BaseException | None] = []
        for commit in commits:
            try:
                outcomes.append(self._commit_intake_one(commit))
            except Exception as exc:  # noqa: BLE001 - that caller gets its own error
                outcomes.append(exc)
        return outcomes

    def _commit_intake_one(self, commit: Write) -> tuple[MessageRecord, bool] | None:
        if isinstance(commit, LogWrite):
            with self.transaction() as conn:
                _insert_intakes(conn, [commit])
            return None
        msg = commit.message
        try:
            with self.transaction() as conn:
                _insert_intakes(conn, [commit])
        except IntegrityError:
            existing = self.find_message(msg.connector, msg.sender, msg.sender_message_id)
            if existing is None:
                raise
            return existing, False
        return msg, True

    def first_assertion_use(
        self, issuer: str, jti: str, expires_at: int, *, purge_before: int | None = None
    ) -> bool:
        """Record an acting-for assertion id; False when any replica recorded it before.
        ``purge_before``: also drop ids that expired before that moment (epoch seconds)."""
        t = schema.used_assertions
        statement = (
            (pg_insert(t) if self.dialect == "postgresql" else sqlite_insert(t))
            .values(issuer=issuer, jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["issuer", "jti"])
            .returning(t.c.jti)
        )
        with self.transaction() as conn:
            if purge_before is not None:
                conn.execute(delete(t).where(t.c.expires_at < purge_before))
            return conn.execute(statement).first() is not None

    def write_log(self, records: Sequence[LogRecord]) -> None:
        """Store processing-log records; returns once they are durable. Concurrent writers
        (intakes included) share one transaction (group commit)."""
        if not records:
            return
        self._intake_group.submit(LogWrite(tuple(records)))

    async def write_log_async(self, records: Sequence[LogRecord]) -> None:
        """:meth:`write_log` from an event loop (committed by the group's writer thread)."""
        if records:
            await self._intake_group.submit_async(LogWrite(tuple(records)))

    # -- mailbox ---------------------------------------------------------------------------

    def list_mailbox(
        self,
        kind: MailboxKind,
        mailbox_id: str,
        *,
        include_acknowledged: bool = False,
        after_seq: int | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        d = schema.deliveries
        query = select(d).where(d.c.mailbox_kind == kind, d.c.mailbox_id == mailbox_id)
        if not include_acknowledged:
            query = query.where(d.c.acknowledged_at.is_(None))
        if after_seq is not None:
            query = query.where(d.c.seq > after_seq)
        query = query.order_by(d.c.seq).limit(limit)
        with self.engine.connect() as conn:
            return [row_mapping.delivery(r) for r in conn.execute(query)]

    def get_delivery(
        self, kind: MailboxKind, mailbox_id: str, delivery_id: str
    ) -> DeliveryRecord | None:
        d = schema.deliveries
        with self.engine.connect() as conn:
            row = conn.execute(
                select(d).where(
                    d.c.mailbox_kind == kind, d.c.mailbox_id == mailbox_id, d.c.id == delivery_id
                )
            ).first()
        return None if row is None else row_mapping.delivery(row)

    def record_read(self, delivery_id: str, log: Sequence[LogRecord]) -> None:
        d = schema.deliveries
        with self.transaction() as conn:
            conn.execute(
                update(d).where(d.c.id == delivery_id).values(read_count=d.c.read_count + 1)
            )
            insert_in_seq_order(
                conn, schema.processing_log, [row_mapping.log_values(r) for r in log]
            )

    def acknowledge(
        self, kind: MailboxKind, mailbox_id: str, delivery_id: str, log: Sequence[LogRecord]
    ) -> bool | None:
        """Mark delivered. None: no such delivery; True: acknowledged now; False: already was."""
        d = schema.deliveries
        with self.transaction() as conn:
            result = conn.execute(
                update(d)
                .where(
                    d.c.mailbox_kind == kind,
                    d.c.mailbox_id == mailbox_id,
                    d.c.id == delivery_id,
                    d.c.acknowledged_at.is_(None),
                )
                .values(acknowledged_at=now(), status="acknowledged")
            )
            if result.rowcount == 1:
                insert_in_seq_order(
                    conn, schema.processing_log, [row_mapping.log_values(r) for r in log]
                )
                return True
            exists = conn.execute(
                select(func.count())
                .select_from(d)
                .where(
                    d.c.mailbox_kind == kind, d.c.mailbox_id == mailbox_id, d.c.id == delivery_id
                )
            ).scalar_one()
            return False if exists else None

    def count_pending(self, *, gemeente: str | None = None, connector: str | None = None) -> int:
        """Unacknowledged deliveries, optionally for one gemeente and/or connector."""
        d = schema.deliveries
        query = select(func.count()).select_from(d).where(d.c.acknowledged_at.is_(None))
        if gemeente is not None:
            query = query.where(d.c.mailbox_kind == "gemeente", d.c.mailbox_id == gemeente)
        if connector is not None:
            query = query.where(d.c.connector == connector)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def pending_count(self) -> dict[tuple[str, str], int]:
        d = schema.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.mailbox_kind, d.c.mailbox_id, func.count())
                .where(d.c.acknowledged_at.is_(None))
                .group_by(d.c.mailbox_kind, d.c.mailbox_id)
            )
            return {(r[0], r[1]): int(r[2]) for r in rows}

    def backlog(self) -> dict[tuple[str, str], tuple[int, datetime]]:
        """Per mailbox: unacknowledged deliveries and when the oldest of them was queued."""
        d = schema.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d.c.mailbox_kind, d.c.mailbox_id, func.count(), func.min(d.c.created_at))
                .where(d.c.acknowledged_at.is_(None))
                .group_by(d.c.mailbox_kind, d.c.mailbox_id)
            )
            # min() of a non-null UtcDateTime column over a non-empty group: an aware instant
            return {(r[0], r[1]): (int(r[2]), r[3] or now()) for r in rows}

    def deliveries_for_subject(
        self, gemeente: str, purpose: str, subject_ref: str, message_types: set[str]
    ) -> list[DeliveryRecord]:
        """The gemeente's deliveries under ``purpose`` naming ``subject_ref``, in intake order.

        Purged deliveries (content removed after retention) are left out: the virtual register
        shows only what the node still holds.
        """
        d = schema.deliveries
        needle = json.dumps(subject_ref)  # subject_refs is a JSON list of strings
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(d)
                .where(
                    d.c.mailbox_kind == "gemeente",
                    d.c.mailbox_id == gemeente,
                    d.c.purpose == purpose,
                    d.c.message_type.in_(sorted(message_types)),
                    d.c.purged_at.is_(None),
                    d.c.subject_refs.contains(needle),
                )
                .order_by(d.c.seq)
            )
            return [row_mapping.delivery(r) for r in rows]

    # -- processing log --------------------------------------------------------------------

    async def query_log_async(self, q: LogQuery) -> list[LogRecord]:
        """:meth:`query_log` from an event loop, after the records written behind answers
        given before (refusals) are committed: a query sees every request answered before."""
        await self.flush()
        return await asyncio.to_thread(self.query_log, q)

    def query_log(self, q: LogQuery) -> list[LogRecord]:
        p = schema.processing_log
        query = select(p).where(p.c.controller == q.controller)
        for column, value in (
            (p.c.subject_ref, q.subject_ref),
            (p.c.purpose, q.purpose),
            (p.c.connector, q.connector),
            (p.c.activity, q.activity),
            (p.c.trace_id, q.trace_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if q.since is not None:
            query = query.where(p.c.timestamp >= q.since)
        if q.until is not None:
            query = query.where(p.c.timestamp < q.until)
        if q.after_id is not None:
            after = select(p.c.seq).where(p.c.id == q.after_id).scalar_subquery()
            query = query.where(p.c.seq > after)
        query = query.order_by(p.c.seq).limit(q.limit)
        with self.engine.connect() as conn:
            return [row_mapping.log_record(r) for r in conn.execute(query)]

    def count_rows(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in (schema.messages, schema.deliveries, schema.processing_log)
            }
