"""The processing log's Merkle leaves and signed checkpoints in the database.

`append_leaves` runs in the transaction that inserts processing-log records, right after the
insert and under the commit-order lock (`sql.insert_in_seq_order`), so leaf i is the i-th
record in commit order on every replica: one tree per node, however many replicas write.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine

from node_runtime.ledger.leaves import record_leaf_hash
from node_runtime.store import prepared, schema

_CHUNK = 500

# The statements of the intake's commit, built once: building them per call (coercing every
# column and comparison, computing cache keys) cost more than running them.
_P, _LV = schema.processing_log, schema.log_leaves
_NEXT_INDEX = select(func.coalesce(func.max(_LV.c.leaf_index) + 1, 0))
_INSERT_LEAVES = insert(_LV)


@dataclass(frozen=True)
class Leaf:
    index: int
    seq: int
    record_id: str
    hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    issued_at: datetime
    origin: str
    algorithm: str
    signature: bytes
    certificate: str


def append_leaves(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Leaves for processing-log rows just inserted in this transaction (commit-order lock
    held). Their seq numbers are read back: a sequence, not the insert, numbers them."""
    by_id = {r["id"]: r for r in rows}
    seqs: list[tuple[int, str]] = []
    ids = list(by_id)
    mark = prepared.placeholder(conn.dialect)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        marks = ", ".join([mark] * len(chunk))  # only markers: the ids are parameters
        sql = f"SELECT seq, id FROM {_P.name} WHERE id IN ({marks})"  # noqa: S608
        seqs.extend((int(s), str(rid)) for s, rid in prepared.fetch_sql(conn, sql, chunk))
    seqs.sort()
    ((start,),) = prepared.fetch(conn, _NEXT_INDEX, {})
    prepared.execute_many(
        conn,
        _INSERT_LEAVES,
        [
            {
                "leaf_index": int(start) + n,
                "seq": seq,
                "record_id": rid,
                "leaf_hash": record_leaf_hash(by_id[rid]),
            }
            for n, (seq, rid) in enumerate(seqs)
        ],
    )


def backfill(conn: Connection) -> int:
    """Leaves for every record that has none (a database from before the tree), in seq order."""
    p, leaves = schema.processing_log, schema.log_leaves
    done = select(leaves.c.seq)
    rows = [
        dict(r._mapping)
        for r in conn.execute(select(p).where(p.c.seq.not_in(done)).order_by(p.c.seq))
    ]
    if not rows:
        return 0
    start = int(
        conn.execute(select(func.coalesce(func.max(leaves.c.leaf_index) + 1, 0))).scalar_one()
    )
    for i in range(0, len(rows), _CHUNK):
        conn.execute(
            insert(leaves),
            [
                {
                    "leaf_index": start + i + n,
                    "seq": r["seq"],
                    "record_id": r["id"],
                    "leaf_hash": record_leaf_hash(r),
                }
                for n, r in enumerate(rows[i : i + _CHUNK])
            ],
        )
    return len(rows)


def read_leaves(conn: Connection, *, start: int = 0, batch: int = 10_000) -> Iterator[Leaf]:
    lv = schema.log_leaves
    position = start
    while True:
        rows = conn.execute(
            select(lv).where(lv.c.leaf_index >= position).order_by(lv.c.leaf_index).limit(batch)
        ).all()
        for r in rows:
            yield Leaf(int(r.leaf_index), int(r.seq), r.record_id, bytes(r.leaf_hash))
        if len(rows) < batch:
            return
        position = int(rows[-1].leaf_index) + 1


def leaf_of_record(conn: Connection, record_id: str) -> Leaf | None:
    lv = schema.log_leaves
    r = conn.execute(select(lv).where(lv.c.record_id == record_id)).first()
    return (
        None if r is None else Leaf(int(r.leaf_index), int(r.seq), r.record_id, bytes(r.leaf_hash))
    )


def _checkpoint(r: Any) -> StoredCheckpoint:
    return StoredCheckpoint(
        int(r.tree_size),
        bytes(r.root_hash),
        r.issued_at,
        r.origin,
        r.algorithm,
        bytes(r.signature),
        r.certificate,
    )


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    c = schema.log_checkpoints
    r = conn.execute(select(c).order_by(c.c.tree_size.desc()).limit(1)).first()
    return None if r is None else _checkpoint(r)


def checkpoint_at(conn: Connection, tree_size: int) -> StoredCheckpoint | None:
    c = schema.log_checkpoints
    r = conn.execute(select(c).where(c.c.tree_size == tree_size)).first()
    return None if r is None else _checkpoint(r)


def all_checkpoints(conn: Connection) -> list[StoredCheckpoint]:
    c = schema.log_checkpoints
    return [_checkpoint(r) for r in conn.execute(select(c).order_by(c.c.tree_size))]


def checkpoint_values(cp: StoredCheckpoint) -> dict[str, Any]:
    return {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash,
        "issued_at": cp.issued_at,
        "origin": cp.origin,
        "algorithm": cp.algorithm,
        "signature": cp.signature,
        "certificate": cp.certificate,
    }


def controller_of(engine: Engine, record_id: str) -> str | None:
    p = schema.processing_log
    with engine.connect() as conn:
        value = conn.execute(select(p.c.controller).where(p.c.id == record_id)).scalar_one_or_none()
    return None if value is None else str(value)
