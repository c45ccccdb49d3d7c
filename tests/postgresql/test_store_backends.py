"""The storage interface (`SqlStore`) behaves the same on SQLite and on PostgreSQL.

Every test runs twice: on a SQLite file and on a fresh database of a private PostgreSQL
server (tests/postgresql/server.py). Replicas are modelled as separate `SqlStore`s (own
engine, own connection pool) on one database, driven from threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from node_runtime.store import prepared, row_mapping, schema, statistics
from node_runtime.store.outbox import ClaimRequest, Outbox
from node_runtime.store.records import (
    DeliveryRecord,
    IntakeCommit,
    LogQuery,
    LogRecord,
    MailboxKind,
    MessageRecord,
)
from node_runtime.store.sql import (
    MIGRATIONS,
    LogWrite,
    SqlStore,
    WriterLock,
    insert_in_seq_order,
    normalise_url,
    sqlite_url,
)

pytest_plugins = ["tests.postgresql.fixtures"]

LATEST = max(v for v, _ in MIGRATIONS)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AMSTERDAM, UTRECHT = "0363", "0344"
AANBIEDER = "12345678"
CONNECTOR = "iwmo-2-1"


# -- backends --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    url: str = request.getfixturevalue("postgresql_url")
    return url


@pytest.fixture
def open_store(db_url: str) -> Iterator[Callable[[], SqlStore]]:
    """Factory of stores on the one database (each like a separate runtime replica)."""
    stores: list[SqlStore] = []

    def make() -> SqlStore:
        s = SqlStore(db_url)
        stores.append(s)
        return s

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], SqlStore]) -> SqlStore:
    s = open_store()
    assert s.migrate() == LATEST
    return s


# -- records ---------------------------------------------------------------------------------


def _id() -> str:
    return str(uuid.uuid4())


def message(
    sender_message_id: str | None = None,
    *,
    sender: str = AANBIEDER,
    recipient: str = AMSTERDAM,
    at: datetime = T0,
    payload: bytes = b"<WMO305/>",
) -> MessageRecord:
    return MessageRecord(
        id=_id(),
        connector=CONNECTOR,
        connector_revision=3,
        message_type="WMO305",
        direction="toGemeente",
        sender=sender,
        recipient=recipient,
        sender_message_id=sender_message_id or _id(),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload,
        received_at=at,
        trace_id=uuid.uuid4().hex,
        controller=recipient,
        answer_status=200,
        answer_body=b"<WMO306/>",
        answer_content_type="application/xml",
    )


def delivery(
    msg: MessageRecord,
    *,
    kind: MailboxKind = "gemeente",
    mailbox: str = AMSTERDAM,
    purpose: str | None = "toewijzing",
    mode: str = "pull",
    content: bytes = b"<m/>",
    order_key: str | None = None,
    at: datetime = T0,
) -> DeliveryRecord:
    return DeliveryRecord(
        id=_id(),
        message_id=msg.id,
        mailbox_kind=kind,
        mailbox_id=mailbox,
        connector=msg.connector,
        message_type=msg.message_type,
        purpose=purpose,
        legal_basis="Wmo 2015 art. 2.3.5" if purpose else None,
        content=content,
        content_type="application/xml",
        subject_refs=("ps-1", "ps-2"),
        order_key=order_key,
        created_at=at,
        delivery_mode=mode,
        endpoint="https://gemeente.example/inbox" if mode == "push" else None,
    )


def log(
    *,
    controller: str = AMSTERDAM,
    activity: str = "ontvangen",
    purpose: str = "toewijzing",
    subject_ref: str | None = "ps-1",
    connector: str | None = CONNECTOR,
    trace_id: str | None = None,
    at: datetime = T0,
    message_id: str | None = None,
    delivery_id: str | None = None,
    outcome: str = "ok",
) -> LogRecord:
    return LogRecord(
        id=_id(),
        timestamp=at,
        trace_id=trace_id or uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        parent_span_id=None,
        activity=activity,
        purpose=purpose,
        legal_basis="Wmo 2015",
        controller=controller,
        actor="knooppunt-zorg",
        subject_ref=subject_ref,
        connector=connector,
        message_type="WMO305" if connector else None,
        message_id=message_id,
        delivery_id=delivery_id,
        outcome=outcome,
        detail=None,
    )


def intake(msg: MessageRecord, *deliveries: DeliveryRecord, logs: int = 1) -> IntakeCommit:
    return IntakeCommit(
        message=msg,
        deliveries=list(deliveries),
        log=[log(message_id=msg.id, at=msg.received_at) for _ in range(logs)],
    )


def run_together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) in n threads released at the same moment; re-raises the first error."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result(timeout=120) for f in [pool.submit(go, i) for i in range(n)]]


def migration_rows(s: SqlStore) -> list[int]:
    with s.engine.connect() as conn:
        return [
            r[0]
            for r in conn.execute(
                sa.select(schema.schema_migrations.c.version).order_by(
                    schema.schema_migrations.c.version
                )
            )
        ]


# -- migrations ------------------------------------------------------------------------------


def test_migrate_creates_schema_and_is_idempotent(open_store: Callable[[], SqlStore]) -> None:
    first = open_store()
    assert first.migrate() == LATEST
    assert first.migrate() == LATEST  # again: nothing to do, no error
    assert open_store().migrate() == LATEST  # another replica, later
    assert migration_rows(first) == [v for v, _ in MIGRATIONS]
    assert first.count_rows() == {"messages": 0, "deliveries": 0, "processing_log": 0}
    names = set(sa.inspect(first.engine).get_table_names())
    assert {t.name for t in schema.metadata.sorted_tables} <= names


def test_concurrent_migrate_from_many_replicas(open_store: Callable[[], SqlStore]) -> None:
    """Replicas starting at once on an empty database: no error, each version once."""
    replicas = [open_store() for _ in range(8)]
    assert run_together(len(replicas), lambda i: replicas[i].migrate()) == [LATEST] * 8
    assert migration_rows(replicas[0]) == [v for v, _ in MIGRATIONS]
    # The schema is complete and usable from every replica.
    msg = message()
    assert replicas[3].commit_intake(intake(msg, delivery(msg)))[1] is True
    assert replicas[5].count_pending(gemeente=AMSTERDAM) == 1


def test_failed_migration_leaves_nothing_behind(
    open_store: Callable[[], SqlStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """All pending steps share one transaction: a failing step rolls back the earlier ones."""
    from node_runtime.store import sql as sql_module

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("step failed")

    monkeypatch.setattr(sql_module, "MIGRATIONS", [*MIGRATIONS, (LATEST + 1, broken)])
    s = open_store()
    with pytest.raises(RuntimeError, match="step failed"):
        s.migrate()
    assert "messages" not in sa.inspect(s.engine).get_table_names()
    assert "half_done" not in sa.inspect(s.engine).get_table_names()
    monkeypatch.setattr(sql_module, "MIGRATIONS", MIGRATIONS)
    assert s.migrate() == LATEST
    assert migration_rows(s) == [v for v, _ in MIGRATIONS]


# -- intake ----------------------------------------------------------------------------------


def test_commit_intake_round_trip(store: SqlStore) -> None:
    msg = message(payload=bytes(range(256)))  # arbitrary bytes survive (bytea / blob)
    d1, d2 = delivery(msg), delivery(msg, kind="participant", mailbox=AANBIEDER, purpose=None)
    stored, created = store.commit_intake(intake(msg, d1, d2, logs=2))
    assert created is True
    assert stored == msg
    found = store.find_message(CONNECTOR, AANBIEDER, msg.sender_message_id)
    assert found == msg
    assert found is not None and found.received_at.tzinfo is not None
    assert store.count_rows() == {"messages": 1, "deliveries": 2, "processing_log": 2}
    got = store.get_delivery("participant", AANBIEDER, d2.id)
    assert got is not None
    assert replace(got, seq=None) == d2
    assert store.find_message(CONNECTOR, AANBIEDER, "no-such-id") is None


def test_timestamps_come_back_as_the_same_instant_in_utc(store: SqlStore) -> None:
    cet = timezone(timedelta(hours=1))
    at = datetime(2026, 1, 15, 10, 30, 15, 123456, tzinfo=cet)
    msg = message(at=at)
    store.commit_intake(intake(msg, delivery(msg, at=at)))
    found = store.find_message(CONNECTOR, AANBIEDER, msg.sender_message_id)
    assert found is not None
    assert found.received_at == at
    assert found.received_at.utcoffset() == timedelta(0)
    [d] = store.list_mailbox("gemeente", AMSTERDAM)
    assert d.created_at == at and d.created_at.tzinfo is not None
    # Filters compare instants, whatever offset the caller's bounds carry.
    [entry] = store.query_log(LogQuery(controller=AMSTERDAM))
    assert entry.timestamp == at
    eastern = timezone(timedelta(hours=-5))
    just_before = (at - timedelta(microseconds=1)).astimezone(eastern)
    just_after = (at + timedelta(microseconds=1)).astimezone(eastern)
    assert store.query_log(LogQuery(controller=AMSTERDAM, since=just_before)) == [entry]
    assert store.query_log(LogQuery(controller=AMSTERDAM, since=just_after)) == []
    assert store.query_log(LogQuery(controller=AMSTERDAM, until=just_after)) == [entry]
    assert store.query_log(LogQuery(controller=AMSTERDAM, until=at.astimezone(eastern))) == []
    naive_utc = at.astimezone(UTC).replace(tzinfo=None)  # naive bounds are taken as UTC
    assert store.query_log(LogQuery(controller=AMSTERDAM, since=naive_utc)) == [entry]


def test_duplicate_intake_writes_nothing_and_returns_the_first(store: SqlStore) -> None:
    first = message("bericht-1")
    assert store.commit_intake(intake(first, delivery(first)))[1] is True
    again = message("bericht-1", payload=b"<other/>")
    stored, created = store.commit_intake(intake(again, delivery(again), logs=3))
    assert created is False
    assert stored == first
    assert store.count_rows() == {"messages": 1, "deliveries": 1, "processing_log": 1}
    # Same sender message id from another sender is another message.
    other = message("bericht-1", sender="87654321")
    assert store.commit_intake(intake(other, delivery(other)))[1] is True


def test_concurrent_duplicates_create_exactly_one(open_store: Callable[[], SqlStore]) -> None:
    """Two replicas get the same message at the same moment: one stores it, one replays."""
    replicas = [open_store(), open_store()]
    replicas[0].migrate()
    for round_ in range(10):
        msgs = [message(f"race-{round_}") for _ in replicas]
        commits = [intake(m, delivery(m), delivery(m, mailbox=UTRECHT)) for m in msgs]
        results = run_together(2, lambda i, c=commits: replicas[i].commit_intake(c[i]))
        assert sorted(created for _, created in results) == [False, True]
        winner = next(r for r, created in results if created)
        assert all(r == winner for r, _ in results)
    assert replicas[0].count_rows() == {"messages": 10, "deliveries": 20, "processing_log": 10}


def test_failing_intake_is_not_half_stored(store: SqlStore) -> None:
    msg = message()
    d = delivery(msg)
    clash = replace(delivery(msg, mailbox=UTRECHT), id=d.id)  # violates deliveries.id unique
    with pytest.raises(IntegrityError):
        store.commit_intake(intake(msg, d, clash))
    assert store.count_rows() == {"messages": 0, "deliveries": 0, "processing_log": 0}
    assert store.find_message(CONNECTOR, AANBIEDER, msg.sender_message_id) is None


def test_concurrent_intakes_on_one_store_share_commits_and_stay_separate(
    store: SqlStore,
) -> None:
    """Group commit: 24 concurrent intakes on one replica (some the same message twice, one
    broken) commit together, yet each caller gets exactly what a transaction of its own
    would have given it."""
    msgs = [message(f"group-{i}") for i in range(20)]
    commits = [intake(m, delivery(m), delivery(m, mailbox=UTRECHT), logs=2) for m in msgs]
    for i in range(3):  # the same sender message id again, other content: a duplicate
        again = message(f"group-{i}")
        commits.append(intake(again, delivery(again)))
    broken = message("group-broken")
    good = delivery(broken)
    commits.append(intake(broken, good, replace(delivery(broken, mailbox=UTRECHT), id=good.id)))

    def submit(i: int) -> tuple[MessageRecord, bool] | Exception:
        try:
            return store.commit_intake(commits[i])
        except Exception as exc:  # the broken one is expected to fail
            return exc

    results = run_together(len(commits), submit)
    assert isinstance(results[-1], IntegrityError)
    outcomes = results[:-1]
    assert all(not isinstance(r, Exception) for r in outcomes)
    created = {
        r[0].sender_message_id: r[0] for r in outcomes if not isinstance(r, Exception) and r[1]
    }
    replays = [r[0] for r in outcomes if not isinstance(r, Exception) and not r[1]]
    assert sorted(created) == sorted(m.sender_message_id for m in msgs)
    assert len(replays) == 3
    for record in replays:  # whichever came first, the other gets its record
        assert record == created[record.sender_message_id]
    winners = [c for c in commits if c.message.id in {r.id for r in created.values()}]
    assert store.count_rows() == {
        "messages": 20,
        "deliveries": sum(len(c.deliveries) for c in winners),
        "processing_log": sum(len(c.log) for c in winners),
    }
    assert store.find_message(CONNECTOR, AANBIEDER, "group-broken") is None
    assert store._intake_group.largest > 1, "no intake shared a commit"


def test_log_writes_join_the_intake_group_commit_and_survive_a_broken_batch(
    store: SqlStore,
) -> None:
    """Processing-log records written on their own (refusals, rejections) share the intakes'
    group commit; each is durable when write_log returns, even when it shared a batch with an
    intake that failed (the batch is then retried item by item)."""
    msgs = [message(f"mixed-{i}") for i in range(8)]
    commits = [intake(m, delivery(m)) for m in msgs]
    broken = message("mixed-broken")
    good = delivery(broken)
    commits.append(intake(broken, good, replace(delivery(broken, mailbox=UTRECHT), id=good.id)))
    refusals = [
        [log(activity="refuse", outcome="unknown-connector", subject_ref=None)] for _ in range(12)
    ]

    def submit(i: int) -> object:
        try:
            if i < len(commits):
                return store.commit_intake(commits[i])
            store.write_log(refusals[i - len(commits)])
            return None
        except Exception as exc:  # the broken intake is expected to fail
            return exc

    results = run_together(len(commits) + len(refusals), submit)
    assert isinstance(results[len(commits) - 1], IntegrityError)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != len(commits) - 1)
    assert store.count_rows() == {
        "messages": 8,
        "deliveries": 8,
        "processing_log": 8 + 12,
    }
    refused = store.query_log(LogQuery(controller=AMSTERDAM, activity="refuse"))
    assert sorted(r.id for r in refused) == sorted(r[0].id for r in refusals)
    assert store._intake_group.largest > 1, "no write shared a commit"


def test_write_log(store: SqlStore) -> None:
    store.write_log([])
    store.write_log([log(), log(activity="geraadpleegd")])
    assert len(store.query_log(LogQuery(controller=AMSTERDAM))) == 2


# -- mailbox ---------------------------------------------------------------------------------


def _fill_mailboxes(store: SqlStore) -> list[DeliveryRecord]:
    """Five deliveries for Amsterdam (in intake order) and noise for other mailboxes."""
    mine: list[DeliveryRecord] = []
    for i in range(5):
        msg = message(at=T0 + timedelta(minutes=i))
        d = delivery(msg, content=f"<m n='{i}'/>".encode(), at=msg.received_at)
        noise = [
            delivery(msg, mailbox=UTRECHT),
            delivery(msg, kind="participant", mailbox=AMSTERDAM, purpose=None),
        ]
        store.commit_intake(intake(msg, noise[0], d, noise[1]))
        mine.append(d)
    return mine


def test_mailbox_lists_in_intake_order_and_only_its_own(store: SqlStore) -> None:
    mine = _fill_mailboxes(store)
    listed = store.list_mailbox("gemeente", AMSTERDAM)
    assert [d.id for d in listed] == [d.id for d in mine]
    seqs = [d.seq for d in listed]
    assert all(s is not None for s in seqs) and seqs == sorted(seqs)
    assert [replace(d, seq=None) for d in listed] == mine
    # paging
    page1 = store.list_mailbox("gemeente", AMSTERDAM, limit=2)
    page2 = store.list_mailbox("gemeente", AMSTERDAM, after_seq=page1[-1].seq, limit=2)
    page3 = store.list_mailbox("gemeente", AMSTERDAM, after_seq=page2[-1].seq, limit=2)
    assert [d.id for d in page1 + page2 + page3] == [d.id for d in mine]
    # another kind with the same id is another mailbox
    assert len(store.list_mailbox("participant", AMSTERDAM)) == 5
    assert len(store.list_mailbox("gemeente", UTRECHT)) == 5
    assert store.list_mailbox("gemeente", "0999") == []


def test_acknowledge_is_idempotent_and_scoped_to_the_mailbox(store: SqlStore) -> None:
    mine = _fill_mailboxes(store)
    target = mine[1]
    before = store.query_log(LogQuery(controller=AMSTERDAM, activity="afgeleverd"))
    assert before == []
    ack_log = [log(activity="afgeleverd", delivery_id=target.id)]
    assert store.acknowledge("gemeente", UTRECHT, target.id, ack_log) is None  # not theirs
    assert store.acknowledge("participant", AMSTERDAM, target.id, ack_log) is None
    assert store.acknowledge("gemeente", AMSTERDAM, "no-such-delivery", ack_log) is None
    assert store.acknowledge("gemeente", AMSTERDAM, target.id, ack_log) is True
    again = [log(activity="afgeleverd", delivery_id=target.id)]
    assert store.acknowledge("gemeente", AMSTERDAM, target.id, again) is False
    # logged once, for the acknowledgement that took effect
    logged = store.query_log(LogQuery(controller=AMSTERDAM, activity="afgeleverd"))
    assert [r.id for r in logged] == [ack_log[0].id]

    pending = store.list_mailbox("gemeente", AMSTERDAM)
    assert [d.id for d in pending] == [d.id for d in mine if d is not target]
    everything = store.list_mailbox("gemeente", AMSTERDAM, include_acknowledged=True)
    assert [d.id for d in everything] == [d.id for d in mine]
    acked = store.get_delivery("gemeente", AMSTERDAM, target.id)
    assert acked is not None and acked.acknowledged_at is not None
    assert acked.acknowledged_at.tzinfo is not None
    assert store.get_delivery("gemeente", UTRECHT, target.id) is None


def test_concurrent_acknowledgements_take_effect_once(
    open_store: Callable[[], SqlStore],
) -> None:
    replicas = [open_store() for _ in range(4)]
    replicas[0].migrate()
    target = _fill_mailboxes(replicas[0])[0]
    logs = [[log(activity="afgeleverd", delivery_id=target.id)] for _ in replicas]
    results = run_together(
        4, lambda i: replicas[i].acknowledge("gemeente", AMSTERDAM, target.id, logs[i])
    )
    assert sorted(results) == [False, False, False, True]
    logged = replicas[0].query_log(LogQuery(controller=AMSTERDAM, activity="afgeleverd"))
    assert len(logged) == 1


def test_record_read_counts_and_logs(store: SqlStore) -> None:
    target = _fill_mailboxes(store)[2]
    store.record_read(target.id, [log(activity="geraadpleegd", delivery_id=target.id)])
    store.record_read(target.id, [])
    got = store.get_delivery("gemeente", AMSTERDAM, target.id)
    assert got is not None and got.read_count == 2
    others = [d.read_count for d in store.list_mailbox("gemeente", AMSTERDAM) if d.id != target.id]
    assert others == [0, 0, 0, 0]
    logged = store.query_log(LogQuery(controller=AMSTERDAM, activity="geraadpleegd"))
    assert [r.delivery_id for r in logged] == [target.id]


def test_count_pending(store: SqlStore) -> None:
    assert store.count_pending() == 0
    mine = _fill_mailboxes(store)
    other = message()
    store.commit_intake(
        IntakeCommit(
            message=replace(other, connector="ijw-3-2"),
            deliveries=[replace(delivery(other), connector="ijw-3-2")],
        )
    )
    assert store.count_pending() == 16
    assert store.count_pending(gemeente=AMSTERDAM) == 6
    assert store.count_pending(connector=CONNECTOR) == 15
    assert store.count_pending(gemeente=AMSTERDAM, connector=CONNECTOR) == 5
    assert store.count_pending(gemeente=UTRECHT, connector="ijw-3-2") == 0
    store.acknowledge("gemeente", AMSTERDAM, mine[0].id, [])
    assert store.count_pending(gemeente=AMSTERDAM, connector=CONNECTOR) == 4
    assert store.pending_count() == {
        ("gemeente", AMSTERDAM): 5,
        ("gemeente", UTRECHT): 5,
        ("participant", AMSTERDAM): 5,
    }
    # the backlog: the same counts, and when the oldest unacknowledged one was queued
    backlog = store.backlog()
    assert {k: n for k, (n, _) in backlog.items()} == store.pending_count()
    assert backlog[("gemeente", AMSTERDAM)][1] == T0  # the other connector's, queued at T0
    assert backlog[("participant", AMSTERDAM)][1] == T0


# -- processing log --------------------------------------------------------------------------


def test_query_log_filters(store: SqlStore) -> None:
    trace = uuid.uuid4().hex
    records = [
        log(at=T0, subject_ref="ps-1", trace_id=trace),
        log(at=T0 + timedelta(minutes=1), subject_ref="ps-2", activity="doorgegeven"),
        log(at=T0 + timedelta(minutes=2), subject_ref="ps-1", purpose="declaratie"),
        log(at=T0 + timedelta(minutes=3), subject_ref=None, connector=None, trace_id=trace),
        log(at=T0 + timedelta(minutes=4), subject_ref="ps-1", connector="ijw-3-2"),
        log(at=T0 + timedelta(minutes=5), controller=UTRECHT, subject_ref="ps-1"),
    ]
    store.write_log(records)

    def ids(**kw: Any) -> list[str]:
        return [r.id for r in store.query_log(LogQuery(**{"controller": AMSTERDAM, **kw}))]

    r = [x.id for x in records]
    assert ids() == r[:5]  # ordered by insertion, only this controller's
    assert [x.id for x in store.query_log(LogQuery(controller=UTRECHT))] == [r[5]]
    assert ids(subject_ref="ps-1") == [r[0], r[2], r[4]]
    assert ids(purpose="declaratie") == [r[2]]
    assert ids(connector="ijw-3-2") == [r[4]]
    assert ids(activity="doorgegeven") == [r[1]]
    assert ids(trace_id=trace) == [r[0], r[3]]
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == r[1:3]
    assert ids(subject_ref="ps-1", since=T0 + timedelta(minutes=1)) == [r[2], r[4]]
    assert ids(limit=2) == r[:2]
    assert ids(after_id=r[1], limit=2) == r[2:4]
    assert ids(after_id=r[4]) == []
    assert ids(subject_ref="ps-9") == []
    # round trip of every field
    assert store.query_log(LogQuery(controller=AMSTERDAM, limit=1)) == [records[0]]


@pytest.mark.postgresql
def test_a_connection_is_pinged_only_after_idling(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round trip to the server before each use of a pooled connection (pool_pre_ping
    did one per transaction): only one idle for PING_AFTER_IDLE is pinged, and replaced
    when dead. A connection dropped while in use just now fails its next transaction once;
    the pool is then renewed."""
    from node_runtime.store import sql

    store = SqlStore(postgresql_url)
    store.migrate()
    admin = sa.create_engine(postgresql_url)

    def drop_pooled() -> None:
        with store.engine.connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as conn:
            assert conn.execute(sa.text(f"SELECT pg_terminate_backend({pid})")).scalar_one()
        time.sleep(0.1)  # the backend is gone

    try:
        monkeypatch.setattr(sql, "PING_AFTER_IDLE", 3600.0)
        drop_pooled()
        with pytest.raises(sa.exc.OperationalError), store.transaction() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert store.ping()  # a new connection
        monkeypatch.setattr(sql, "PING_AFTER_IDLE", 0.0)
        drop_pooled()
        assert store.ping()  # found dead at checkout and replaced: no error
    finally:
        admin.dispose()
        store.close()


# -- the PostgreSQL fixtures themselves ------------------------------------------------------


@pytest.mark.postgresql
def test_postgresql_url_is_a_fresh_private_database(postgresql_url: str) -> None:
    engine = sa.create_engine(postgresql_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT current_user, current_database(), inet_server_addr()::text,"
                    " current_setting('fsync'), current_setting('synchronous_commit'),"
                    " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')"
                )
            ).one()
    finally:
        engine.dispose()
    user, database, address, fsync, sync_commit, tables = row
    assert user == "knooppunt"
    assert database.startswith("t_test_postgresql_url_is_a_fresh")
    assert address.split("/")[0] == "127.0.0.1"
    assert (fsync, sync_commit) == ("on", "on")
    assert tables == 0


def test_normalise_url() -> None:
    assert normalise_url("postgresql://u:p@db:5432/k") == "postgresql+psycopg://u:p@db:5432/k"
    assert normalise_url("postgres://u@db/k") == "postgresql+psycopg://u@db/k"
    assert normalise_url("postgresql+psycopg://u@db/k") == "postgresql+psycopg://u@db/k"
    assert normalise_url("sqlite+pysqlite:///x.db") == "sqlite+pysqlite:///x.db"


def test_v2_adds_push_columns_to_a_v1_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database created before push delivery gets its columns and indexes from v2."""
    from sqlalchemy import create_engine, inspect, text

    from node_runtime.store.sql import MIGRATIONS, SqlStore

    url = f"sqlite+pysqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMP NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO schema_migrations VALUES (1, '2026-01-01')"))
        conn.execute(text("CREATE TABLE messages (id VARCHAR(36) PRIMARY KEY)"))
        conn.execute(
            text(
                "CREATE TABLE deliveries (seq INTEGER PRIMARY KEY, id VARCHAR(36), message_id "
                "VARCHAR(36), mailbox_kind VARCHAR(16), mailbox_id VARCHAR(64), connector "
                "VARCHAR(63), message_type VARCHAR(63), purpose VARCHAR(63), legal_basis TEXT, "
                "content BLOB, content_type VARCHAR(100), subject_refs TEXT, "
                "order_key VARCHAR(64), "
                "delivery_mode VARCHAR(8), endpoint TEXT, created_at TIMESTAMP, acknowledged_at "
                "TIMESTAMP, read_count INTEGER, status VARCHAR(16), attempts INTEGER, "
                "next_attempt_at TIMESTAMP, last_error TEXT, purged_at TIMESTAMP)"
            )
        )
    engine.dispose()
    store = SqlStore(url)
    assert store.migrate() == max(v for v, _ in MIGRATIONS)
    columns = {c["name"] for c in inspect(store.engine).get_columns("deliveries")}
    assert {"delivered_at", "lease_owner", "lease_until"} <= columns
    assert "traceparent" in columns  # from v8
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("deliveries")}
    assert "ix_deliveries_due" in indexes
    store.close()


def test_refuses_a_newer_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest as _pytest
    from sqlalchemy import text

    from node_runtime.store.sql import SqlStore

    store = SqlStore(f"sqlite+pysqlite:///{tmp_path / 'new.db'}")
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations VALUES (99, '2030-01-01')"))
    with _pytest.raises(RuntimeError, match="newer"):
        store.migrate()
    store.close()


def test_a_cursor_never_skips_a_row_whose_transaction_committed_late(
    open_store: Callable[[], SqlStore],
) -> None:
    """Row numbers follow commit order: while an earlier insert is still uncommitted, a later
    one waits, so a reader paging with ?after= cannot move past a row that appears later."""
    slow, fast, reader = open_store(), open_store(), open_store()
    slow.migrate()
    inserted, release = threading.Event(), threading.Event()
    first, second = log(), log()

    def slow_writer() -> None:
        with slow.transaction() as conn:
            insert_in_seq_order(conn, schema.processing_log, [row_mapping.log_values(first)])
            inserted.set()
            release.wait(10)  # a commit that takes long (fsync, network, a busy server)

    with ThreadPoolExecutor(max_workers=2) as pool:
        slow_done = pool.submit(slow_writer)
        assert inserted.wait(10)
        fast_done = pool.submit(fast.write_log, [second])
        seen = [r.id for r in reader.query_log(LogQuery(controller=AMSTERDAM))]
        # Whatever the backend, the reader sees neither row yet; the later one waits its turn.
        assert seen == []
        with pytest.raises(TimeoutError):
            fast_done.result(timeout=0.5)
        release.set()
        slow_done.result(timeout=10)
        fast_done.result(timeout=10)
    rows = reader.query_log(LogQuery(controller=AMSTERDAM))
    assert [r.id for r in rows] == [first.id, second.id]
    cursor = reader.query_log(LogQuery(controller=AMSTERDAM, after_id=first.id))
    assert [r.id for r in cursor] == [second.id]


def test_paging_readers_see_every_row_under_concurrent_writers(
    open_store: Callable[[], SqlStore],
) -> None:
    """Writers commit at random moments; a reader follows the log with its cursor only and
    still ends up with every record exactly once, in seq order."""
    reader = open_store()
    reader.migrate()
    writers = [open_store() for _ in range(4)]
    written: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def write(i: int) -> None:
        rng = random.Random(i)
        for _ in range(25):
            record = log()
            with writers[i].transaction() as conn:
                insert_in_seq_order(conn, schema.processing_log, [row_mapping.log_values(record)])
                time.sleep(rng.random() * 0.01)  # commit latency varies per transaction
            with lock:
                written.append(record.id)

    followed: list[str] = []

    def follow() -> None:
        after: str | None = None
        while True:
            finished = done.is_set()
            page = reader.query_log(LogQuery(controller=AMSTERDAM, after_id=after, limit=7))
            followed.extend(r.id for r in page)
            if page:
                after = page[-1].id
            elif finished:
                return
            else:
                time.sleep(0.002)

    with ThreadPoolExecutor(max_workers=1) as pool:
        following = pool.submit(follow)
        run_together(4, write)
        done.set()
        following.result(timeout=60)
    assert len(followed) == len(set(followed)) == 100
    assert set(followed) == set(written)


def test_an_assertion_id_is_accepted_once_by_all_replicas_together(
    open_store: Callable[[], SqlStore],
) -> None:
    """The façade's acting-for assertions: whichever replica sees an id first accepts it; a
    replay to any replica of the same node is refused; expired ids are purged."""
    a, b = open_store(), open_store()
    a.migrate()
    now = 1_800_000_000
    assert a.first_assertion_use("00000001234567890000", "jti-1", now + 60)
    assert not b.first_assertion_use("00000001234567890000", "jti-1", now + 60)
    assert not a.first_assertion_use("00000001234567890000", "jti-1", now + 60)
    assert b.first_assertion_use("00000001234567890000", "jti-2", now + 60)
    assert b.first_assertion_use("00000009999999999999", "jti-1", now + 60)  # other issuer
    # Simultaneous replays: exactly one replica accepts.
    outcomes = run_together(2, lambda i: (a, b)[i].first_assertion_use("iss", "race", now + 60))
    assert sorted(outcomes) == [False, True]
    # Purging drops only ids that expired before the cut-off.
    assert a.first_assertion_use("iss", "old", now - 100)
    assert a.first_assertion_use("iss", "new", now + 5, purge_before=now - 10)
    with a.engine.connect() as conn:
        left = {r.jti for r in conn.execute(sa.select(schema.used_assertions.c.jti))}
    assert "old" not in left and {"jti-1", "jti-2", "race", "new"} <= left


# -- management information and the register's query ---------------------------------------


def test_statistics_and_register_query_agree_on_both_backends(store: SqlStore) -> None:
    """Months in UTC, latency from queued to acknowledged, each rejection counted once per
    message and code, only the gemeente's own; the register finds a subject's deliveries under
    one purpose, in intake order, and never purged ones."""
    march = message(at=T0)
    late_march = message(at=datetime(2026, 3, 31, 23, 30, tzinfo=timezone(-timedelta(hours=2))))
    other = message(recipient=UTRECHT, at=T0)
    first = delivery(march, at=T0)
    second = delivery(late_march, at=late_march.received_at)
    store.commit_intake(intake(march, first))
    store.commit_intake(intake(late_march, second))
    store.commit_intake(intake(other, delivery(other, mailbox=UTRECHT)))
    assert store.acknowledge("gemeente", AMSTERDAM, first.id, []) is True
    rejected = [
        replace(log(activity="reject", at=T0), parent_span_id="a" * 16, detail=d)
        for d in ("retourcodes 0435,8001", "retourcodes 0435,8001")  # two subjects, one message
    ]
    store.write_log(rejected)
    period = statistics.Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    stats = statistics.gather(store.engine, AMSTERDAM, period, now=T0)
    assert dict(stats.volumes) == {
        ("2026-03", "WMO305", AANBIEDER): 1,
        ("2026-04", "WMO305", AANBIEDER): 1,  # 23:30 at UTC-2 is April in UTC
    }
    assert dict(stats.rejections) == {
        ("2026-03", "0435", "knooppunt-zorg"): 1,
        ("2026-03", "8001", "knooppunt-zorg"): 1,
    }
    [waited] = stats.latencies["2026-03"]
    assert waited >= 0 and stats.undelivered == {"2026-04": 1}
    assert not stats.dead_letters and not stats.conversations

    found = store.deliveries_for_subject(AMSTERDAM, "toewijzing", "ps-2", {"WMO305"})
    assert [d.id for d in found] == [first.id, second.id]
    assert store.deliveries_for_subject(AMSTERDAM, "toewijzing", "ps-3", {"WMO305"}) == []
    assert store.deliveries_for_subject(AMSTERDAM, "other", "ps-2", {"WMO305"}) == []
    assert store.deliveries_for_subject(AMSTERDAM, "toewijzing", "ps-2", {"WMO307"}) == []
    d = schema.deliveries
    with store.transaction() as conn:  # retention purged the second one's content
        conn.execute(sa.update(d).where(d.c.id == second.id).values(purged_at=T0))
    found = store.deliveries_for_subject(AMSTERDAM, "toewijzing", "ps-2", {"WMO305"})
    assert [d.id for d in found] == [first.id]


# -- statements run on the driver's cursor (store/prepared.py) ------------------------------


def test_rows_written_on_the_drivers_cursor_equal_rows_written_by_sqlalchemy(
    store: SqlStore,
) -> None:
    """The intake's inserts bypass SQLAlchemy's execute: the same values must land the same
    (instants normalised to UTC, binaries, NULLs), on either backend."""
    at = datetime(2026, 3, 31, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-2)))
    by_cursor = message(at=at, payload=b"\x00\xffbin")
    by_sqlalchemy = replace(by_cursor, id=_id(), sender_message_id=_id())
    with store.transaction() as conn:
        prepared.execute_many(
            conn, sa.insert(schema.messages), [row_mapping.message_values(by_cursor)]
        )
        conn.execute(sa.insert(schema.messages), [row_mapping.message_values(by_sqlalchemy)])
    m = schema.messages
    with store.engine.connect() as conn:
        rows = {
            r.id: {k: v for k, v in r._mapping.items() if k not in ("id", "sender_message_id")}
            for r in conn.execute(sa.select(m))
        }
    assert rows[by_cursor.id] == rows[by_sqlalchemy.id]
    assert rows[by_cursor.id]["received_at"] == at  # the same instant, read back in UTC
    with store.engine.connect() as conn:  # as stored (SQLite: text), not read back as instants
        stored = dict(conn.exec_driver_sql("SELECT id, received_at FROM messages").fetchall())
    assert stored[by_cursor.id] == stored[by_sqlalchemy.id]
    assert rows[by_cursor.id]["purged_at"] is None
    found = store.find_message(CONNECTOR, AANBIEDER, by_cursor.sender_message_id)
    assert found == by_cursor


def test_a_duplicate_on_the_drivers_cursor_is_sqlalchemys_integrity_error(
    store: SqlStore,
) -> None:
    msg = message()
    with store.transaction() as conn:
        prepared.execute_many(conn, sa.insert(schema.messages), [row_mapping.message_values(msg)])
    with pytest.raises(IntegrityError), store.transaction() as conn:
        prepared.execute_many(
            conn, sa.insert(schema.messages), [row_mapping.message_values(replace(msg, id=_id()))]
        )
    assert store.count_rows()["messages"] == 1  # the failed transaction left nothing


def test_a_statement_needing_a_default_it_is_not_given_is_refused() -> None:
    """Column defaults are SQLAlchemy's to fill in; on the cursor every value must be given."""
    dialect = sa.create_engine("sqlite://").dialect
    with pytest.raises(ValueError, match="read_count"):
        prepared.prepare(sa.insert(schema.deliveries), dialect, ["id", "message_id"])


def test_released_leases_are_only_the_owners_and_due_again(store: SqlStore) -> None:
    """A worker gives back leased deliveries it will not start (release_many) and a delivery
    process gives back its dead predecessor's (release_owner); another owner's lease stays."""
    outbox = Outbox(store)
    for i in range(4):
        msg = message()
        store.commit_intake(intake(msg, delivery(msg, mode="push", order_key=f"k{i}")))
    lease = timedelta(minutes=5)
    mine = outbox.claim(owner="a", limit=3, lease=lease)
    theirs = outbox.claim(owner="b", limit=3, lease=lease)
    assert len(mine) == 3 and len(theirs) == 1
    assert outbox.release_many([d.id for d in mine[:2]] + [theirs[0].id], owner="a") == 2
    assert outbox.release_owner("a") == 1
    again = outbox.claim(owner="c", limit=10, lease=lease)
    assert {d.id for d in again} == {d.id for d in mine}  # b's lease is still b's


def test_a_claim_takes_stream_heads_only_in_seq_order(store: SqlStore) -> None:
    """A delivery is claimed only while no earlier one of its stream is unsettled (pending,
    leased or not, or dead); claims come oldest first, with their whole rows."""
    outbox = Outbox(store)
    pushes = []
    for key in ("a", "b", "a", "b", "a"):
        msg = message()
        pushes.append(delivery(msg, mode="push", order_key=key, content=key.encode()))
        store.commit_intake(intake(msg, pushes[-1]))
    lease = timedelta(minutes=5)
    heads = outbox.claim(owner="w", limit=10, lease=lease)
    assert [d.id for d in heads] == [pushes[0].id, pushes[1].id]
    assert [d.content for d in heads] == [b"a", b"b"] and heads[0].endpoint == pushes[0].endpoint
    assert outbox.claim(owner="w", limit=10, lease=lease) == []  # leased heads hold their streams
    assert outbox.delivered_many([(pushes[0].id, [])]) == 1
    assert outbox.failed(pushes[1].id, error="HTTP 500", retry_at=None) == "dead"
    # a's next is due; b's waits behind its dead letter
    assert [d.id for d in outbox.claim(owner="w", limit=10, lease=lease)] == [pushes[2].id]
    assert outbox.delivered_many([(pushes[2].id, [])]) == 1
    assert outbox.delivered_many([(pushes[2].id, [])]) == 0  # settled once
    assert [d.id for d in outbox.claim(owner="w", limit=10, lease=lease)] == [pushes[4].id]


def test_a_settlement_claims_in_its_own_transaction(store: SqlStore) -> None:
    """settle_and_claim settles and leases in one commit; its claim sees the stream heads the
    settlement let through; log records only of what it settled, once; all or nothing."""
    outbox = Outbox(store)
    pushes = []
    for key in ("a", "a", "b"):
        msg = message()
        pushes.append(delivery(msg, mode="push", order_key=key))
        store.commit_intake(intake(msg, pushes[-1]))
    lease = timedelta(minutes=5)
    first = outbox.claim(owner="w", limit=10, lease=lease)
    assert [d.id for d in first] == [pushes[0].id, pushes[2].id]
    request = ClaimRequest(owner="w", limit=10, lease=lease)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    sa.event.listen(store.engine, "commit", committed)
    logged = store.count_rows()["processing_log"]
    settled, leased = outbox.settle_and_claim(
        [(pushes[0].id, [log(delivery_id=pushes[0].id, activity="deliver")])], request
    )
    assert len(commits) == 1
    assert settled == 1 and [d.id for d in leased] == [pushes[1].id]  # a's next, now a head
    assert store.count_rows()["processing_log"] == logged + 1
    # settled once: no second record; nothing more due (b's head and a's next are leased)
    again = outbox.settle_and_claim(
        [(pushes[0].id, [log(delivery_id=pushes[0].id, activity="deliver")])], request
    )
    assert again == (0, [])
    assert store.count_rows()["processing_log"] == logged + 1
    assert outbox.settle_and_claim([], None) == (0, [])
    sa.event.remove(store.engine, "commit", committed)
    # a failing claim takes the settlement back with it
    broken = ClaimRequest(owner="w", limit=10, lease=lease, room=lambda _e: 1 // 0)
    outbox.release_many([pushes[2].id], owner="w")
    with pytest.raises(ZeroDivisionError):
        outbox.settle_and_claim([(pushes[1].id, [])], broken)
    assert outbox.settle_and_claim([(pushes[1].id, [])], None) == (1, [])


def test_settling_and_leasing_look_deliveries_up_by_id(tmp_path: Path) -> None:
    """SQLite (no statistics) planned 'these ids, if still pending' on the (status, seq)
    index, walking every pending delivery: a settlement cost time in proportion to the
    backlog. A claim checks a stream's earlier deliveries on the index of unsettled ones."""
    from node_runtime.store import outbox as outbox_module

    store = SqlStore(sqlite_url(tmp_path / "plans.db"))
    store.migrate()
    captured: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    for i in range(3):
        msg = message()
        store.commit_intake(intake(msg, delivery(msg, mode="push", order_key=f"k{i % 2}")))
    sa.event.listen(store.engine, "before_cursor_execute", capture)
    outbox = Outbox(store)
    claimed = outbox.claim(owner="w", limit=5, lease=timedelta(minutes=5))
    outbox.delivered_many([(d.id, []) for d in claimed])
    outbox.release_many([claimed[0].id], owner="w")
    sa.event.remove(store.engine, "before_cursor_execute", capture)
    raw = store.engine.raw_connection()
    try:
        plans = [
            (
                statement.split()[0],
                " / ".join(
                    row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
                ),
            )
            for statement, parameters in captured
            if statement.startswith(("SELECT", "UPDATE"))
        ]
    finally:
        raw.close()
    by_id = "SEARCH deliveries USING INDEX sqlite_autoindex_deliveries_1 (id=?)"
    # the lease, the settlement, the release
    assert [plan for verb, plan in plans if verb == "UPDATE"] == [by_id] * 3
    [claim] = [plan for verb, plan in plans if verb == "SELECT"]
    assert "USING INDEX ix_deliveries_unsettled_order" in claim
    assert outbox_module.UNSETTLED == schema.UNSETTLED_STATUSES
    store.close()


def test_v9_replaces_the_stream_index_by_one_of_unsettled_deliveries(tmp_path: Path) -> None:
    from sqlalchemy import inspect

    store = SqlStore(sqlite_url(tmp_path / "v8.db"))
    store.migrate()
    with store.transaction() as conn:  # as v8 left it
        conn.execute(sa.text("DROP INDEX ix_deliveries_unsettled_order"))
        conn.execute(
            sa.text(
                "CREATE INDEX ix_deliveries_order ON deliveries (mailbox_id, purpose, "
                "order_key, seq)"
            )
        )
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version = 9"))
    assert store.migrate() == LATEST
    indexes = {i["name"] for i in inspect(store.engine).get_indexes("deliveries")}
    assert "ix_deliveries_unsettled_order" in indexes and "ix_deliveries_order" not in indexes
    store.close()


def test_deliveries_without_statistics_are_analysed_once(store: SqlStore) -> None:
    """PostgreSQL planned the claim badly without statistics of the deliveries (a restored or
    bulk-loaded database); a worker analyses them when it starts if there are none. SQLite
    plans without statistics."""
    if store.dialect == "postgresql":  # autovacuum must not do it first
        with store.transaction() as conn:
            conn.execute(sa.text("ALTER TABLE deliveries SET (autovacuum_enabled = false)"))
    for i in range(60):
        msg = message()
        store.commit_intake(intake(msg, delivery(msg, mode="push", order_key=f"k{i % 7}")))
    outbox = Outbox(store)
    assert outbox.ensure_statistics() is (store.dialect == "postgresql")
    assert outbox.ensure_statistics() is False  # once there are statistics, nothing to do
    assert len(outbox.claim(owner="w", limit=10, lease=timedelta(minutes=5))) == 7


# -- writes from an event loop (the intake's path: the pipeline runs on the loop) -------------
# SQLite writes the rows on the loop and commits in a thread; PostgreSQL runs the whole
# transaction in the group's writer thread. The loop is never blocked while the disk or the
# server works, and every caller gets what a transaction of its own would have given it.


def largest_batch(s: SqlStore) -> int:
    return max(s._loop_group.largest, s._intake_group.largest)


def test_concurrent_async_intakes_share_commits_and_each_gets_its_own_outcome(
    store: SqlStore,
) -> None:
    msgs = [message(f"async-{i}") for i in range(20)]
    commits = [intake(m, delivery(m), delivery(m, mailbox=UTRECHT), logs=2) for m in msgs]
    for i in range(3):  # the same sender message id again, other content
        again = message(f"async-{i}")
        commits.append(intake(again, delivery(again)))
    broken = message("async-broken")
    good = delivery(broken)
    commits.append(intake(broken, good, replace(delivery(broken, mailbox=UTRECHT), id=good.id)))
    refusals = [
        LogWrite((log(activity="refuse", outcome="unknown-connector", subject_ref=None),))
        for _ in range(5)
    ]

    async def main() -> list[object]:
        async def one(write: object) -> object:
            try:
                return await store.submit_write_async(write)  # type: ignore[arg-type]
            except Exception as exc:  # the broken one is expected to fail
                return exc

        return list(await asyncio.gather(*(one(w) for w in [*commits, *refusals])))

    results = asyncio.run(main())
    assert isinstance(results[len(commits) - 1], IntegrityError)
    assert results[len(commits) :] == [None] * len(refusals)
    outcomes = [r for r in results[: len(commits) - 1]]
    assert all(isinstance(r, tuple) for r in outcomes)
    pairs: list[tuple[MessageRecord, bool]] = outcomes  # type: ignore[assignment]
    created = {r.sender_message_id: r for r, new in pairs if new}
    replays = [r for r, new in pairs if not new]
    assert sorted(created) == sorted(m.sender_message_id for m in msgs)
    assert len(replays) == 3
    for record in replays:
        assert record == created[record.sender_message_id]
    winners = [c for c in commits if c.message.id in {r.id for r in created.values()}]
    assert store.count_rows() == {
        "messages": 20,
        "deliveries": sum(len(c.deliveries) for c in winners),
        "processing_log": sum(len(c.log) for c in winners) + len(refusals),
    }
    assert store.find_message(CONNECTOR, AANBIEDER, "async-broken") is None
    assert largest_batch(store) > 1, "no write shared a commit"


def test_a_write_behind_returns_before_its_commit_and_flush_waits_for_it(
    store: SqlStore,
) -> None:
    records = [log(activity="refuse", outcome="unknown-connector", subject_ref=None)]

    async def main() -> tuple[int, int]:
        await store.write_behind(LogWrite(tuple(records)))
        before = store.count_rows()["processing_log"]  # the loop has not run the write yet
        await store.flush()
        return before, store.count_rows()["processing_log"]

    assert asyncio.run(main()) == (0, 1)
    refused = store.query_log(LogQuery(controller=AMSTERDAM, activity="refuse"))
    assert [r.id for r in refused] == [records[0].id]
    assert store.write_behind_failures == 0


def test_a_failed_write_behind_is_counted_not_lost_silently(store: SqlStore) -> None:
    record = log(activity="refuse", outcome="unknown-connector", subject_ref=None)

    async def main() -> None:
        await store.write_behind(LogWrite((record, record)))  # the same id twice: refused
        await store.flush()

    asyncio.run(main())
    assert store.write_behind_failures == 1
    assert store.count_rows()["processing_log"] == 0


def test_writes_behind_queued_together_are_committed_as_one_and_a_bad_one_fails_alone(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [log(activity="refuse", outcome="unknown-connector", subject_ref=None) for _ in range(5)]
    bad = log(activity="refuse", outcome="unknown-connector", subject_ref=None)
    submitted: list[int] = []
    submit = store.submit_write_async

    async def counting(write: Any) -> Any:
        submitted.append(len(write.records))
        return await submit(write)

    monkeypatch.setattr(store, "submit_write_async", counting)

    async def main(writes: list[LogWrite]) -> None:
        for write in writes:  # in one turn of the loop: queued together
            await store.write_behind(write)
        await store.flush()

    asyncio.run(main([LogWrite((r,)) for r in good[:3]]))
    assert submitted == [3], "three queued writes, one commit entry"
    assert store.count_rows()["processing_log"] == 3

    submitted.clear()
    asyncio.run(main([LogWrite((good[3],)), LogWrite((bad, bad)), LogWrite((good[4],))]))
    # together they fail (the same id twice); then one by one: only the bad one is lost
    assert submitted == [4, 1, 2, 1]
    assert store.write_behind_failures == 1
    assert store.count_rows()["processing_log"] == 5
    written = store.query_log(LogQuery(controller=AMSTERDAM, activity="refuse", limit=10))
    assert {r.id for r in written} == {r.id for r in good}


def test_the_loop_keeps_serving_while_another_process_holds_the_sqlite_write_lock(
    tmp_path: Path,
) -> None:
    """A writer of another process (a second SqlStore's lock file, as a worker process or
    the delivery process holds it) holds the lock: the intake's commit waits for it in a
    thread, the event loop goes on, and the write lands once the lock is free."""
    path = tmp_path / "store.db"
    s = SqlStore(sqlite_url(path))
    s.migrate()
    other = WriterLock(str(path))
    other.acquire(blocking=True)
    m = message("locked")

    async def main() -> tuple[int, tuple[MessageRecord, bool] | None]:
        ticks = 0
        write = asyncio.ensure_future(s.submit_write_async(intake(m)))
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done(), "committed while another process held the write lock"
        other.release()
        return ticks, await write

    try:
        ticks, outcome = asyncio.run(main())
    finally:
        other.close()
        s.close()
    assert ticks == 20
    assert outcome == (m, True)


def test_a_cancelled_caller_leaves_its_write_standing(store: SqlStore) -> None:
    """A request whose client went away: the write it shared a batch with others stands."""
    m = message("cancelled")

    async def main() -> MessageRecord | None:
        task = asyncio.ensure_future(store.submit_write_async(intake(m)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(1000):  # the batch goes on without its caller
            found = store.find_message(CONNECTOR, AANBIEDER, "cancelled")
            if found is not None:
                return found
            await asyncio.sleep(0.01)
        return None

    found = asyncio.run(main())
    assert found is not None and found.id == m.id
