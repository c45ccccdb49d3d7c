"""The Merkle tree of one node's processing log, read from the store, and its checkpoints.

Every replica keeps the tree in memory (about 64 bytes per record) and reads the leaves it has
not seen yet before answering; all replicas read the same leaves, so they serve one tree. A
checkpoint is signed only for a tree that extends the previous checkpoint: a node never signs
over leaves that changed under an earlier signature.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from node_runtime.ledger import merkle
from node_runtime.ledger.checkpoints import Checkpoint, Signer
from node_runtime.store import log_tree, schema


class TreeError(RuntimeError):
    """The stored leaves contradict the tree already read or an earlier checkpoint."""


def to_checkpoint(stored: log_tree.StoredCheckpoint) -> Checkpoint:
    return Checkpoint(
        stored.origin,
        stored.tree_size,
        stored.root_hash,
        stored.issued_at,
        stored.algorithm,
        stored.signature,
        stored.certificate,
    )


@dataclass(frozen=True)
class InclusionProof:
    record_id: str
    leaf_index: int
    leaf_hash: bytes
    tree_size: int
    path: list[bytes]


class LogTree:
    def __init__(self, engine: Engine, *, origin: str) -> None:
        self.engine = engine
        self.origin = origin
        self.tree = merkle.Tree()
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Read leaves appended since the last call; returns the tree size."""
        with self._lock, self.engine.connect() as conn:
            for leaf in log_tree.read_leaves(conn, start=len(self.tree)):
                if leaf.index != len(self.tree):
                    raise TreeError(
                        f"leaf {len(self.tree)} is missing from the log_leaves "
                        f"table (next stored leaf is {leaf.index})"
                    )
                self.tree.append(leaf.hash)
            return len(self.tree)

    def latest(self) -> Checkpoint | None:
        with self.engine.connect() as conn:
            stored = log_tree.latest_checkpoint(conn)
        return None if stored is None else to_checkpoint(stored)

    def at(self, tree_size: int) -> Checkpoint | None:
        with self.engine.connect() as conn:
            stored = log_tree.checkpoint_at(conn, tree_size)
        return None if stored is None else to_checkpoint(stored)

    def checkpoint(self, signer: Signer, *, now: datetime) -> Checkpoint:
        """The latest checkpoint, after signing a new one if the tree grew since then."""
        size = self.sync()
        latest = self.latest()
        if latest is not None and latest.tree_size >= size:
            return latest
        if latest is not None and self.tree.root(latest.tree_size) != latest.root_hash:
            raise TreeError(
                f"the leaves no longer match the signed checkpoint of size "
                f"{latest.tree_size}; refusing to sign (run knooppunt log verify)"
            )
        signed = signer.sign(self.origin, size, self.tree.root(size), now)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(schema.log_checkpoints),
                    [
                        log_tree.checkpoint_values(
                            log_tree.StoredCheckpoint(
                                size,
                                signed.root_hash,
                                signed.issued_at,
                                signed.origin,
                                signed.algorithm,
                                signed.signature,
                                signed.certificate,
                            )
                        )
                    ],
                )
        except IntegrityError:  # another replica signed this size first: one tree, its head
            stored = self.at(size)
            if stored is None:
                raise
            if stored.root_hash != signed.root_hash:
                raise TreeError(
                    f"another replica signed a different root for size {size}"
                ) from None
            return stored
        return signed

    def inclusion(self, record_id: str, tree_size: int) -> InclusionProof | None:
        """None when the record has no leaf in a tree of that size."""
        with self.engine.connect() as conn:
            leaf = log_tree.leaf_of_record(conn, record_id)
        if leaf is None or leaf.index >= tree_size:
            return None
        if tree_size > self.sync():
            raise merkle.ProofError(f"the tree has fewer than {tree_size} leaves")
        return InclusionProof(
            record_id,
            leaf.index,
            self.tree.leaf(leaf.index),
            tree_size,
            self.tree.inclusion_proof(leaf.index, tree_size),
        )

    def consistency(self, old: int, new: int) -> list[bytes]:
        if new > self.sync():
            raise merkle.ProofError(f"the tree has fewer than {new} leaves")
        return self.tree.consistency_proof(old, new)
