"""Group commit for writers on an event loop, where the rows are written on the loop itself.

:class:`~node_runtime.store.group.GroupCommit` commits coroutines' writes in a writer
thread. On SQLite that thread and the event loop contend for the interpreter lock: the
driver releases it around every row it steps (``executemany`` of a batch's rows), and each
time the writer must win it back from a busy event loop (up to the interpreter's switch
interval, 5 ms). Measured on the intake, that convoy cost more CPU per message than the
inserts themselves. Here the batch's rows are written on the loop (a few hundred
microseconds of work the loop would otherwise wait for), and only the call that blocks on
the disk — the ``COMMIT`` with its fsync — runs in a thread; the loop serves other requests
until it returns. Each caller still waits until its own item is durable, and shares that
transaction only with the items that arrived while the previous batch committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class LoopGroupCommit(Generic[T, R]):
    def __init__(
        self,
        commit_batch: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 64,
    ) -> None:
        """``commit_batch`` commits the items together (awaiting the disk without blocking
        the loop) and returns one result (or the exception for that item) per item, in
        order; if it raises, every item of the batch fails with it. One batch at a time."""
        self._commit_batch = commit_batch
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest = 0

    async def submit(self, item: T) -> R:
        """Commit ``item`` with whatever else waits; returns once it is durable."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._waiting.append((item, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        # shielded: a caller that goes away (a client that disconnects) does not cancel
        # the batch it shares with others; its write stands
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    outcomes = await self._commit_batch([item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError("group commit returned a wrong number of results")
                except BaseException as exc:  # every waiter learns of it
                    outcomes = [exc] * len(batch)
                    if isinstance(exc, asyncio.CancelledError):
                        self._fail_all(batch)
                        raise
                self.batches += 1
                self.largest = max(self.largest, len(batch))
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._draining = None

    def _fail_all(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        """The loop is going away: nobody gets a result; nothing is left waiting forever."""
        for _, future in [*batch, *self._waiting]:
            if not future.done():
                future.set_exception(RuntimeError("the node stopped before the commit ended"))
        self._waiting.clear()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a failed item's exception as seen. Its caller awaits it through a shield; a
    caller that went away never does, and asyncio would then report "Future exception was
    never retrieved" with a traceback for a write nobody waits for any more (the batch's
    failure is the store's to log)."""
    if not future.cancelled():
        future.exception()
