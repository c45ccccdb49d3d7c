"""Writes committed behind their answers: the processing-log records of refused requests.

A refused request stores nothing of its own; its record (no data subject, the node itself as
controller) is a security record, and the answer promises nothing about it. So the answer
does not wait for it (docs/decisions/intake-on-the-event-loop.md). :class:`WriteBehind`
gathers such writes for up to :data:`GATHER_SECONDS` (or until :data:`BATCH` are queued) and
hands them to the store's group commit as one write:

* under a flood of refused requests a commit then carries dozens of records instead of a
  handful (measured served: the per-commit work — lock, transaction, Merkle leaves, the
  COMMIT's thread hand-off — had cost a refused request 0.27 ms of node CPU, as much as the
  rest of the request);
* at most :data:`LIMIT` writes are queued or on their way; beyond that a caller waits for its
  own write, so memory stays bounded;
* a merged write that fails is retried write by write, so one bad write fails alone; every
  failure is logged (without content) and counted, never silent;
* :meth:`WriteBehind.flush` writes everything queued at once and waits for it (the node
  stops with it; processing-log queries call it first, so they see every request answered
  before them).

What a crash can lose: the records of refusals answered in the last :data:`GATHER_SECONDS`
plus one commit cycle. Accepted messages and rejections never go this way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("knooppunt.store")

#: How long a queued write waits for others to share its commit.
GATHER_SECONDS = 0.05
#: A queue this long is written at once, without waiting for the rest of the gathering time.
BATCH = 256
#: Writes queued or on their way at most; beyond that a caller waits for its own.
LIMIT = 1000


class WriteBehind:
    """The queue of writes behind their answers, for one store (see the module docstring)."""

    def __init__(
        self,
        submit: Callable[[Any], Awaitable[object]],
        merge: Callable[[list[Any]], Any | None],
    ) -> None:
        """``submit`` commits one write (durably, in the group commit); ``merge`` makes one
        write of several, or None when they cannot be merged."""
        self._submit = submit
        self._merge = merge
        self._queue: list[Any] = []
        self._writing = 0
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.failures = 0

    @property
    def pending(self) -> int:
        """Writes queued or being written."""
        return len(self._queue) + self._writing

    async def put(self, write: Any) -> None:
        """Queue ``write``; returns at once unless :data:`LIMIT` writes are on their way, when
        it commits ``write`` itself and waits for it."""
        if self.pending >= LIMIT:
            await self._submit(write)
            return
        self._queue.append(write)
        if len(self._queue) >= BATCH:
            self._start()
        elif self._task is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(GATHER_SECONDS, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None and self._queue:
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                writes, self._queue = self._queue, []
                self._writing = len(writes)
                try:
                    await self._write(writes)
                finally:
                    self._writing = 0
                if len(self._queue) < BATCH:
                    break  # the rest gathers again
        finally:
            self._task = None
            if self._queue and self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(GATHER_SECONDS, self._start)

    async def _write(self, writes: list[Any]) -> None:
        merged = self._merge(writes) if len(writes) > 1 else None
        if merged is not None:
            try:
                await self._submit(merged)
                return
            except asyncio.CancelledError:
                self._failed(len(writes), "cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - retried one by one below
                logger.debug(
                    "%d writes behind answers failed together (%s); retrying one by one",
                    len(writes),
                    type(exc).__name__,
                )
        for index, write in enumerate(writes):
            try:
                await self._submit(write)
            except asyncio.CancelledError:
                self._failed(len(writes) - index, "cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - counted and logged, the rest go on
                self._failed(1, type(exc).__name__)

    def _failed(self, count: int, reason: str) -> None:
        self.failures += count
        logger.error(
            "%d processing-log record write(s) of refused requests not written: %s", count, reason
        )

    async def flush(self) -> None:
        """Write everything queued now and wait until it is committed (or has failed)."""
        while self._queue or self._task is not None:
            if self._task is None:
                self._start()
            assert self._task is not None
            await asyncio.wait([self._task])
