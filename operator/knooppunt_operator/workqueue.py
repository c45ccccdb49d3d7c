"""A work queue of object keys, as controller-runtime's: deduplicated, prioritised, delayed.

Watch events only *name* work (a key); the work itself reads the object fresh when it runs,
so a key queued ten times is reconciled once. The guarantees, as in client-go's workqueue:

* a key is in the queue at most once; adding it again while it waits changes nothing (or
  brings a delayed key forward);
* a key is never handed to two workers at once: added while a worker has it, it is queued
  again when that worker is done;
* keys of a lower priority number go first (a node before its 400 gemeenten), first come
  first served within one priority;
* a failed key comes back after a per-key exponential backoff with full jitter, a success
  resets it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class Backoff:
    """Per-key retry delays: ``base * 2**failures`` capped at ``cap``, with full jitter."""

    base: float = 0.5
    cap: float = 300.0
    rng: Callable[[], float] = field(default=random.random)

    def delay(self, failures: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return max(self.base / 2, ceiling * self.rng())


class ShutDown(Exception):
    """The queue was shut down while a worker waited for a key."""


@dataclass
class WorkQueue(Generic[K]):
    priority: Callable[[K], int] = field(default=lambda _key: 0)
    backoff: Backoff = field(default_factory=Backoff)
    _heap: list[tuple[int, int, K]] = field(default_factory=list, init=False)
    _queued: set[K] = field(default_factory=set, init=False)
    _processing: set[K] = field(default_factory=set, init=False)
    _dirty: set[K] = field(default_factory=set, init=False)
    _delayed: dict[K, asyncio.TimerHandle] = field(default_factory=dict, init=False)
    _due: dict[K, float] = field(default_factory=dict, init=False)
    _failures: dict[K, int] = field(default_factory=dict, init=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, init=False)
    _ready: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _closed: bool = field(default=False, init=False)

    def __len__(self) -> int:
        """Keys waiting now (not the delayed ones, not the ones being worked on)."""
        return len(self._queued)

    @property
    def delayed(self) -> int:
        return len(self._delayed)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def add(self, key: K) -> None:
        """Queue ``key`` now (a delayed one comes forward)."""
        if self._closed:
            return
        timer = self._delayed.pop(key, None)
        if timer is not None:
            timer.cancel()
            self._due.pop(key, None)
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        heapq.heappush(self._heap, (self.priority(key), next(self._seq), key))
        self._ready.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds, unless it is queued sooner anyway."""
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        if key in self._queued:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if key in self._due and self._due[key] <= due:
            return
        timer = self._delayed.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._due[key] = due
        self._delayed[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self._due.pop(key, None)
        self.add(key)

    def retry(self, key: K, delay: float | None = None) -> float:
        """Queue a failed key again: after ``delay`` or after its backoff. Returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        wait = self.backoff.delay(failures) if delay is None else delay
        self.add_after(key, wait)
        return wait

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff from the beginning."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        """The next key by priority; the caller must call :meth:`done` with it."""
        while not self._heap:
            if self._closed:
                raise ShutDown
            self._ready.clear()
            await self._ready.wait()
        if self._closed:
            raise ShutDown
        _, _, key = heapq.heappop(self._heap)
        self._queued.discard(key)
        self._processing.add(key)
        if self._heap:
            self._ready.set()  # more work: keep the other workers awake
        return key

    def done(self, key: K) -> None:
        """A worker finished ``key``; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def shutdown(self) -> None:
        self._closed = True
        for timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._due.clear()
        self._ready.set()
