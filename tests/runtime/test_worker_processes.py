"""Several worker processes on one SQLite file (docs/decisions/worker-processes.md): their
writers queue on one cross-process write lock, so the processing log stays one dense tree in
commit order, every push delivery is leased by exactly one process, and a claim does not come
back empty while deliveries wait (without the shared lock a claim reads outside the write lock,
and one that picked the rows another process leased meanwhile comes back with nothing)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from node_runtime.audit.processing_log import LogBuilder
from node_runtime.ledger.verification import verify
from node_runtime.observability.tracing import from_header
from node_runtime.store import schema
from node_runtime.store.outbox import Outbox
from node_runtime.store.sql import SqlStore, now, sqlite_url

PROCESSES = 2
THREADS = 3
WRITES = 15
DELIVERIES = 300


def _log_writer(url: str, worker: int) -> None:
    store = SqlStore(url)
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for i in range(WRITES):
                builder = LogBuilder(from_header(None), f"worker:{worker}")
                for n in range(1 + (i + thread) % 3):
                    builder.add(
                        activity="receive",
                        controller="0363",
                        purpose="wmo-toewijzing",
                        legal_basis="Wmo 2015 art. 2.3.2",
                        outcome="success",
                        subject_ref=f"ref-{worker}-{thread}-{i}-{n}",
                        connector="iwmo-2-1",
                        message_type="WMO305",
                    )
                store.write_log(builder.records)
        except BaseException as exc:  # reported through the exit code
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    if errors:
        raise SystemExit(f"worker {worker}: {errors[0]!r}")


def _claimer(url: str, out: str, start: Any) -> None:
    store = SqlStore(url)
    outbox = Outbox(store)
    owner = f"worker-{uuid.uuid4().hex[:8]}"
    claimed: list[str] = []
    start.wait()  # both processes claim at the same time
    while batch := outbox.claim(owner=owner, limit=7, lease=timedelta(minutes=5)):
        claimed += [d.id for d in batch]
        time.sleep(0.005)  # the pushes
        outbox.delivered_many([(d.id, []) for d in batch])
    store.close()
    Path(out).write_text(json.dumps(claimed))


def _run(target: object, args: list[tuple[object, ...]], *, barrier: bool = False) -> None:
    ctx = multiprocessing.get_context("spawn")
    if barrier:
        start = ctx.Barrier(len(args))
        args = [(*a, start) for a in args]
    procs = [ctx.Process(target=target, args=a) for a in args]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_worker_processes_write_one_dense_tree(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "knooppunt.db")
    store = SqlStore(url)
    store.migrate()
    _run(_log_writer, [(url, w) for w in range(PROCESSES)])
    report = verify(store.engine)
    assert report.ok, report.text()
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT leaf_index, seq FROM log_leaves ORDER BY leaf_index"))
        leaves = rows.all()
        total = conn.execute(text("SELECT count(*) FROM processing_log")).scalar_one()
    expected = PROCESSES * sum(1 + (i + t) % 3 for t in range(THREADS) for i in range(WRITES))
    assert report.records == report.leaves == total == expected
    assert [r[0] for r in leaves] == list(range(total))
    assert [r[1] for r in leaves] == sorted(r[1] for r in leaves)  # leaf order = commit order
    store.close()


def test_worker_processes_lease_each_delivery_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "knooppunt.db")
    store = SqlStore(url)
    store.migrate()
    created = now()
    ids = [str(uuid.uuid4()) for _ in range(DELIVERIES)]
    with store.transaction() as conn:
        conn.execute(
            insert(schema.messages),
            [
                {
                    "id": f"m-{i}",
                    "connector": "iwmo-2-1",
                    "connector_revision": 1,
                    "message_type": "WMO305",
                    "direction": "toGemeente",
                    "sender": "98000023",
                    "recipient": "0599",
                    "sender_message_id": f"S{i:08d}",
                    "payload_sha256": "0" * 64,
                    "payload": b"",
                    "received_at": created,
                    "trace_id": "0" * 32,
                    "controller": "0599",
                    "answer_status": 202,
                    "answer_body": b"",
                    "answer_content_type": "application/xml",
                }
                for i in range(DELIVERIES)
            ],
        )
        conn.execute(
            insert(schema.deliveries),
            [
                {
                    "id": delivery_id,
                    "message_id": f"m-{i}",
                    "mailbox_kind": "gemeente",
                    "mailbox_id": "0599",
                    "connector": "iwmo-2-1",
                    "message_type": "WMO305",
                    "purpose": "wmo-uitvoering",
                    "legal_basis": "test",
                    "content": b"{}",
                    "content_type": "application/json",
                    "subject_refs": "[]",
                    "order_key": f"k{i % 40}",  # streams: a later one waits for its earlier
                    "delivery_mode": "push",
                    "endpoint": "https://gemeente.example/notificaties",
                    "created_at": created,
                    "read_count": 0,
                    "status": "pending",
                    "attempts": 0,
                }
                for i, delivery_id in enumerate(ids)
            ],
        )
    outs = [tmp_path / f"claimed-{w}.json" for w in range(PROCESSES)]
    _run(_claimer, [(url, str(out)) for out in outs], barrier=True)
    claimed = [json.loads(out.read_text()) for out in outs]
    every = [i for side in claimed for i in side]
    assert sorted(every) == sorted(ids)  # each delivery leased by exactly one process
    assert all(side for side in claimed)  # both processes took part
    with store.engine.connect() as conn:
        statuses = conn.execute(text("SELECT status, attempts FROM deliveries")).all()
    assert set(statuses) == {("delivered", 1)}
    store.close()
