"""Verification of the processing log against its Merkle tree: one row altered, deleted,
inserted or reordered directly in the database (SQLite and PostgreSQL) is found and named;
a retention purge is not a finding; two replicas on PostgreSQL write one tree."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from node_runtime.audit.processing_log import LogBuilder
from node_runtime.ledger import merkle
from node_runtime.ledger.checkpoints import Signer
from node_runtime.ledger.checkpoints import verify as verify_checkpoint
from node_runtime.ledger.purges import LOG_PURGE, purge_detail
from node_runtime.ledger.tree import LogTree
from node_runtime.ledger.verification import verify
from node_runtime.observability.tracing import from_header
from node_runtime.security.pki.store import DevPki
from node_runtime.store.records import LogRecord
from node_runtime.store.retention import Retention
from node_runtime.store.sql import SqlStore, sqlite_url

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = datetime.now(UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "knooppunt.db")
    else:
        url = request.getfixturevalue("postgresql_url")
    s = SqlStore(url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture()
def signer(dev_pki: DevPki) -> Signer:
    return Signer(dev_pki.server.key, dev_pki.server.chain)


def records(n: int, *, controller: str = "0363", start: datetime = T0) -> list[LogRecord]:
    builder = LogBuilder(from_header(None), "AGB:12345678")
    for i in range(n):
        builder.add(
            activity="receive",
            controller=controller,
            purpose="wmo-toewijzing",
            legal_basis="Wmo 2015 art. 2.3.2",
            outcome="success",
            subject_ref=f"ref-{i:04d}",
            connector="iwmo-2-1",
            message_type="WMO305",
            detail=f"record {i}",
        )
    return [
        LogRecord(**{**r.__dict__, "timestamp": start + timedelta(minutes=i)})
        for i, r in enumerate(builder.records)
    ]


def fill(store: SqlStore, n: int = 12) -> list[LogRecord]:
    written = records(n)
    for i in range(0, n, 3):  # several transactions, as intakes write them
        store.write_log(written[i : i + 3])
    return written


def seq_of(store: SqlStore, record_id: str) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT seq FROM processing_log WHERE id = :id"), {"id": record_id}
            ).scalar_one()
        )


def sql(store: SqlStore, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_intact_log_verifies_and_checkpoint_is_signed(
    store: SqlStore, signer: Signer, dev_pki: DevPki
) -> None:
    fill(store)
    tree = LogTree(store.engine, origin="knooppunt.nl/test")
    # Signed now, not at import time: the session's PKI may be younger than this module.
    cp = tree.checkpoint(signer, now=datetime.now(UTC))
    assert cp.tree_size == 12
    from cryptography import x509

    trust = x509.load_pem_x509_certificates(dev_pki.ca_bundle.read_bytes())
    verify_checkpoint(cp, trust=trust)
    report = verify(store.engine, trust=trust)
    assert report.ok, report.text()
    assert (report.records, report.leaves, report.checkpoints) == (12, 12, 1)
    assert report.root_hash == cp.root_hash


def test_altered_row_is_named(store: SqlStore, signer: Signer) -> None:
    written = fill(store)
    LogTree(store.engine, origin="o").checkpoint(signer, now=NOW)
    sql(store, "UPDATE processing_log SET outcome = 'rejected' WHERE id = :id", id=written[5].id)
    report = verify(store.engine)
    assert not report.ok
    finding = report.findings[0]
    assert (finding.kind, finding.record_id, finding.leaf_index) == ("altered", written[5].id, 5)


def test_deleted_row_is_named(store: SqlStore, signer: Signer) -> None:
    written = fill(store)
    sql(store, "DELETE FROM processing_log WHERE id = :id", id=written[7].id)
    finding = verify(store.engine).findings[0]
    assert (finding.kind, finding.record_id, finding.leaf_index) == ("deleted", written[7].id, 7)


def test_inserted_row_is_named(store: SqlStore) -> None:
    written = fill(store)
    # make room after the 4th record and put a forged one there
    fourth = seq_of(store, written[3].id)
    sql(store, "UPDATE processing_log SET seq = seq + 1000 WHERE seq > :s", s=fourth)
    forged = records(1, start=T0 + timedelta(minutes=3, seconds=30))[0]
    sql(
        store,
        "INSERT INTO processing_log (seq, id, timestamp, trace_id, span_id, activity, "
        "purpose, legal_basis, controller, actor, outcome) VALUES (:seq, :id, :ts, :trace, "
        ":span, 'read', 'wmo-toewijzing', 'Wmo 2015', '0363', 'someone', 'success')",
        seq=fourth + 1,
        id=forged.id,
        ts=forged.timestamp,
        trace=forged.trace_id,
        span=forged.span_id,
    )
    finding = verify(store.engine).findings[0]
    assert (finding.kind, finding.record_id) == ("inserted", forged.id)
    assert finding.leaf_index == 4


def test_appended_row_is_named(store: SqlStore) -> None:
    fill(store)
    forged = records(1)[0]
    sql(
        store,
        "INSERT INTO processing_log (id, timestamp, trace_id, span_id, activity, "
        "purpose, legal_basis, controller, actor, outcome) VALUES (:id, :ts, :trace, :span, "
        "'read', 'p', 'l', '0363', 'someone', 'success')",
        id=forged.id,
        ts=forged.timestamp,
        trace=forged.trace_id,
        span=forged.span_id,
    )
    finding = verify(store.engine).findings[0]
    assert (finding.kind, finding.record_id) == ("inserted", forged.id)


def test_reordered_rows_are_named(store: SqlStore) -> None:
    written = fill(store)
    a, b = seq_of(store, written[2].id), seq_of(store, written[9].id)
    sql(store, "UPDATE processing_log SET seq = -1 WHERE seq = :a", a=a)
    sql(store, "UPDATE processing_log SET seq = :a WHERE seq = :b", a=a, b=b)
    sql(store, "UPDATE processing_log SET seq = :b WHERE seq = -1", b=b)
    finding = verify(store.engine).findings[0]
    assert (finding.kind, finding.record_id, finding.leaf_index) == ("reordered", written[2].id, 2)


def test_row_and_leaf_rewritten_together_break_the_signed_checkpoint(
    store: SqlStore, signer: Signer
) -> None:
    written = fill(store)
    LogTree(store.engine, origin="o").checkpoint(signer, now=NOW)
    sql(store, "UPDATE processing_log SET outcome = 'rejected' WHERE id = :id", id=written[5].id)
    with store.engine.connect() as conn:
        row = dict(
            conn.execute(text("SELECT * FROM processing_log WHERE id = :id"), {"id": written[5].id})
            .mappings()
            .one()
        )
    from node_runtime.ledger.leaves import record_leaf_hash

    sql(
        store,
        "UPDATE log_leaves SET leaf_hash = :h WHERE record_id = :id",
        h=record_leaf_hash(row),
        id=written[5].id,
    )
    findings = verify(store.engine).findings
    assert [f.kind for f in findings] == ["leaves-rewritten"]
    assert "size 12" in findings[0].message
    # and the node refuses to sign over it
    from node_runtime.ledger.tree import TreeError

    store.write_log(records(1))
    with pytest.raises(TreeError):
        LogTree(store.engine, origin="o").checkpoint(signer, now=NOW)


def test_retention_purge_keeps_the_log_verifiable(store: SqlStore, signer: Signer) -> None:
    written = fill(store)
    tree = LogTree(store.engine, origin="o")
    before = tree.checkpoint(signer, now=NOW)

    def log_for(count: int, through: int) -> list[LogRecord]:
        builder = LogBuilder(from_header(None), "knooppunt:test")
        builder.add(
            activity=LOG_PURGE,
            controller="knooppunt:test",
            purpose="p",
            legal_basis="retention",
            outcome="success",
            detail=purge_detail(count, through),
        )
        return builder.records

    # records 0..4 are older than 7 minutes after T0 + 12 minutes
    purged = Retention(store).purge_log(days=0, now=T0 + timedelta(minutes=5), log_for=log_for)
    assert purged == 5
    report = verify(store.engine)
    assert report.ok, report.text()
    assert (report.records, report.leaves, report.purged_through_leaf) == (8, 13, 4)
    after = tree.checkpoint(signer, now=NOW)
    assert after.tree_size == 13
    merkle.verify_consistency(
        before.tree_size,
        after.tree_size,
        before.root_hash,
        after.root_hash,
        tree.consistency(12, 13),
    )
    # a deletion beyond the purged prefix is still found
    sql(store, "DELETE FROM processing_log WHERE id = :id", id=written[6].id)
    finding = verify(store.engine).findings[0]
    assert (finding.kind, finding.record_id) == ("deleted", written[6].id)


@pytest.mark.postgresql
def test_two_replicas_on_postgresql_write_one_tree(postgresql_url: str, signer: Signer) -> None:
    replicas = [SqlStore(postgresql_url), SqlStore(postgresql_url)]
    replicas[0].migrate()
    replicas[1].migrate()
    trees = [LogTree(r.engine, origin="o") for r in replicas]
    signed: list[list[object]] = [[], []]
    errors: list[BaseException] = []

    def write(replica: int, worker: int) -> None:
        try:
            for i in range(25):
                replicas[replica].write_log(records(1 + (i + worker) % 3))
                if i % 5 == worker % 5:
                    signed[replica].append(trees[replica].checkpoint(signer, now=NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r, w)) for r in (0, 1) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    try:
        report = verify(replicas[0].engine)
        assert report.ok, report.text()
        with replicas[0].engine.connect() as conn:
            rows = conn.execute(
                text("SELECT leaf_index, seq FROM log_leaves ORDER BY leaf_index")
            ).all()
            total = conn.execute(text("SELECT count(*) FROM processing_log")).scalar_one()
        expected = 2 * sum(1 + (i + w) % 3 for w in range(4) for i in range(25))
        assert report.records == report.leaves == total == expected
        assert [r[0] for r in rows] == list(range(total))
        assert [r[1] for r in rows] == sorted(r[1] for r in rows)  # leaf order = commit order
        # every checkpoint either replica signed is consistent with every later one
        every = sorted({(c.tree_size, c.root_hash) for side in signed for c in side})  # type: ignore[attr-defined]
        assert len(every) >= 2
        final = LogTree(replicas[1].engine, origin="o")
        final.sync()
        for size, root in every:
            assert final.tree.root(size) == root
            merkle.verify_consistency(
                size, total, root, final.tree.root(), final.consistency(size, total)
            )
    finally:
        for r in replicas:
            r.close()


def test_migration_gives_existing_records_their_leaves(store: SqlStore, signer: Signer) -> None:
    """A database from before the tree: v5 adds leaves for its records in commit order."""
    written = fill(store)
    sql(store, "DELETE FROM log_leaves")
    sql(store, "DELETE FROM schema_migrations WHERE version = 5")
    assert not verify(store.engine).ok
    store.migrate()
    report = verify(store.engine)
    assert report.ok, report.text()
    assert report.leaves == len(written)
    cp = LogTree(store.engine, origin="o").checkpoint(signer, now=NOW)
    assert cp.tree_size == len(written)
