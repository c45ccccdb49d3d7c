"""`knooppunt log verify`: recompute the processing log's tree and name the first record that
was altered, deleted, inserted or reordered.

Two layers are checked. (1) Each record against its leaf: the records, in commit order (`seq`),
must hash to the leaves in leaf order; a record may be missing only where a logged retention
purge removed it. (2) The leaves against every signed checkpoint: the root of the first n
leaves must be the signed root of size n. Someone who changes a record and its leaf alike
passes (1) but not (2), which then names the range of leaves between the last checkpoint that
still matches and the first that does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.engine import Engine

from node_runtime.ledger import checkpoints, leaves, merkle, purges
from node_runtime.ledger.tree import to_checkpoint
from node_runtime.store import log_tree, schema

Kind = Literal[
    "altered",
    "deleted",
    "inserted",
    "reordered",
    "leaves-rewritten",
    "leaves-missing",
    "checkpoint-invalid",
]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    message: str
    leaf_index: int | None = None
    record_id: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "leafIndex": self.leaf_index,
            "recordId": self.record_id,
            "seq": self.seq,
        }


@dataclass
class Report:
    records: int = 0
    leaves: int = 0
    purged_through_leaf: int | None = None
    checkpoints: int = 0
    root_hash: bytes = merkle.EMPTY_ROOT
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "leaves": self.leaves,
            "purgedThroughLeaf": self.purged_through_leaf,
            "checkpoints": self.checkpoints,
            "rootHash": self.root_hash.hex(),
            "findings": [f.to_json() for f in self.findings],
        }

    def text(self) -> str:
        head = (
            f"{self.leaves} leaves, {self.records} records, {self.checkpoints} signed "
            f"checkpoints, root {self.root_hash.hex()}"
        )
        if self.purged_through_leaf is not None:
            head += f"; records of leaves 0..{self.purged_through_leaf} purged by retention"
        if self.ok:
            return f"OK: {head}"
        return "\n".join([f"FAILED: {head}", *(f"  {f.kind}: {f.message}" for f in self.findings)])


@dataclass(frozen=True)
class _Record:
    seq: int
    id: str
    hash: bytes
    activity: str
    detail: str | None


def verify(engine: Engine, *, trust: list[x509.Certificate] | None = None) -> Report:
    p = schema.processing_log
    with engine.connect() as conn:
        stored_leaves = list(log_tree.read_leaves(conn))
        records = [
            _Record(
                int(r.seq), r.id, leaves.record_leaf_hash(dict(r._mapping)), r.activity, r.detail
            )
            for r in conn.execute(select(p).order_by(p.c.seq))
        ]
        stored_checkpoints = log_tree.all_checkpoints(conn)
    report = Report(
        records=len(records), leaves=len(stored_leaves), checkpoints=len(stored_checkpoints)
    )
    for i, leaf in enumerate(stored_leaves):
        if leaf.index != i:
            report.findings.append(
                Finding(
                    "leaves-missing",
                    f"leaf {i} is missing from the tree (next leaf stored is "
                    f"{leaf.index}, record {leaf.record_id})",
                    leaf_index=i,
                )
            )
            return report
    tree = merkle.Tree(leaf.hash for leaf in stored_leaves)
    report.root_hash = tree.root()
    finding = _check_records(stored_leaves, records, report)
    if finding is not None:
        report.findings.append(finding)
    finding = _check_checkpoints(tree, stored_checkpoints, trust)
    if finding is not None:
        report.findings.append(finding)
    return report


def _purged_through(stored: list[log_tree.Leaf], records: list[_Record]) -> int | None:
    """The highest leaf a verified purge record says was purged."""
    hash_of = {leaf.record_id: leaf.hash for leaf in stored}
    through: int | None = None
    for r in records:
        if r.activity == purges.LOG_PURGE and hash_of.get(r.id) == r.hash:
            leaf = purges.through_leaf(r.detail)
            if leaf is not None and (through is None or leaf > through):
                through = leaf
    return through


def _check_records(
    stored: list[log_tree.Leaf], records: list[_Record], report: Report
) -> Finding | None:
    through = _purged_through(stored, records)
    report.purged_through_leaf = through
    leaf_ids = {leaf.record_id for leaf in stored}
    position_of = {r.id: n for n, r in enumerate(records)}
    j = 0
    for leaf in stored:
        current = records[j] if j < len(records) else None
        if current is not None and current.id == leaf.record_id:
            if current.hash != leaf.hash:
                return Finding(
                    "altered",
                    f"record {current.id} (seq {current.seq}, leaf "
                    f"{leaf.index}) was altered: it no longer hashes to its leaf",
                    leaf_index=leaf.index,
                    record_id=current.id,
                    seq=current.seq,
                )
            j += 1
            continue
        purged = through is not None and leaf.index <= through
        present = leaf.record_id in position_of
        if current is not None and current.id not in leaf_ids:
            if present:
                return Finding(
                    "inserted",
                    f"record {current.id} (seq {current.seq}) was "
                    f"inserted before the record of leaf {leaf.index}: it has no "
                    "leaf",
                    leaf_index=leaf.index,
                    record_id=current.id,
                    seq=current.seq,
                )
            if purged:
                continue
            return Finding(
                "altered",
                f"the record of leaf {leaf.index} ({leaf.record_id}, "
                f"seq {leaf.seq}) was altered: its place holds record {current.id} "
                f"(seq {current.seq}), which has no leaf",
                leaf_index=leaf.index,
                record_id=leaf.record_id,
                seq=leaf.seq,
            )
        if present:
            moved = records[position_of[leaf.record_id]]
            return Finding(
                "reordered",
                f"record {moved.id} (leaf {leaf.index}) was moved: it "
                f"now has seq {moved.seq}; in commit order it came before record "
                f"{current.id if current else '(none)'}",
                leaf_index=leaf.index,
                record_id=moved.id,
                seq=moved.seq,
            )
        if purged:
            continue  # removed by a retention purge, and the purge is logged
        return Finding(
            "deleted",
            f"record {leaf.record_id} (seq {leaf.seq}, leaf {leaf.index}) was deleted",
            leaf_index=leaf.index,
            record_id=leaf.record_id,
            seq=leaf.seq,
        )
    if j < len(records):
        extra = records[j]
        return Finding(
            "inserted",
            f"record {extra.id} (seq {extra.seq}) was inserted: it has no leaf",
            record_id=extra.id,
            seq=extra.seq,
        )
    return None


def _check_checkpoints(
    tree: merkle.Tree, stored: list[log_tree.StoredCheckpoint], trust: list[x509.Certificate] | None
) -> Finding | None:
    good = 0
    for cp in stored:
        try:
            checkpoints.verify(to_checkpoint(cp), trust=trust)
        except checkpoints.CheckpointError as exc:
            return Finding("checkpoint-invalid", f"checkpoint of size {cp.tree_size}: {exc}")
        if cp.tree_size > len(tree):
            return Finding(
                "leaves-missing",
                f"the signed checkpoint of size {cp.tree_size} "
                f"covers more leaves than are stored ({len(tree)}): leaves "
                f"{len(tree)}..{cp.tree_size - 1} were deleted",
                leaf_index=len(tree),
            )
        if tree.root(cp.tree_size) != cp.root_hash:
            return Finding(
                "leaves-rewritten",
                f"leaf hashes between leaf {good} and leaf "
                f"{cp.tree_size - 1} were rewritten: the root no longer matches the "
                f"signed checkpoint of size {cp.tree_size}",
                leaf_index=good,
            )
        good = cp.tree_size
    return None
