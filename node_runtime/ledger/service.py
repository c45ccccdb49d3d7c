"""The node's ledger service: signs a checkpoint on an interval and on demand, serves proofs.

Every replica runs the loop; on one database they sign the same tree, and a size already
signed by another replica is taken as it is (`LogTree.checkpoint`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from node_runtime.ledger.checkpoints import Checkpoint, CheckpointError, Signer
from node_runtime.ledger.tree import LogTree, TreeError

log = logging.getLogger("knooppunt.ledger")


class LedgerUnavailable(RuntimeError):
    """No signing key configured, or the tree cannot be signed."""


class LedgerService:
    def __init__(
        self,
        tree: LogTree,
        *,
        signer: Signer | None,
        interval: Callable[[], float],
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.tree = tree
        self.signer = signer
        self.interval = interval
        self.clock = clock
        self.size = Gauge(
            "knooppunt_log_tree_size",
            "Leaves in the processing log's Merkle tree.",
            registry=registry,
        )
        self.signed_size = Gauge(
            "knooppunt_log_checkpoint_size",
            "Tree size of the latest signed checkpoint.",
            registry=registry,
        )
        self.failures = Counter(
            "knooppunt_log_checkpoint_failures",
            "Checkpoints not signed, by reason (tree: leaves contradict an earlier checkpoint,"
            " alert on any; error: other).",
            ["reason"],
            registry=registry,
        )

    def checkpoint(self) -> Checkpoint:
        """Sign a checkpoint now if the tree grew; the latest one otherwise."""
        if self.signer is None:
            raise LedgerUnavailable("no signing key is configured for checkpoints")
        try:
            cp = self.tree.checkpoint(self.signer, now=self.clock())
        except TreeError:
            self.failures.labels("tree").inc()
            raise
        self.size.set(len(self.tree.tree))
        self.signed_size.set(cp.tree_size)
        return cp

    async def run(self) -> None:
        """Sign at start (so a checkpoint is ready to serve), then every interval; an empty
        log gets its first checkpoint on request."""
        while True:
            try:
                if await asyncio.to_thread(self.tree.sync) > 0:
                    await asyncio.to_thread(self.checkpoint)
            except TreeError as exc:
                log.error("processing-log checkpoint refused", extra={"error": str(exc)})
            except LedgerUnavailable:
                return  # no signing key: warned about at start
            except Exception:
                self.failures.labels("error").inc()
                log.exception("processing-log checkpoint failed")
            await asyncio.sleep(self.interval())


def load_signer(key: Path | None, chain: Path | None) -> Signer | None:
    if key is None or chain is None:
        log.warning(
            "no signing key for processing-log checkpoints: the log is hashed but no "
            "checkpoint is signed (configure log_signing_key/log_signing_cert or TLS)"
        )
        return None
    try:
        return Signer(key, chain)
    except (OSError, ValueError, CheckpointError) as exc:
        raise LedgerUnavailable(f"cannot load the checkpoint signing key: {exc}") from exc
