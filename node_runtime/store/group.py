"""Group commit: concurrent callers' writes share one transaction (one fsync).

Every caller blocks in :meth:`GroupCommit.submit` until its own item is durable (or failed),
exactly as with a transaction of its own; it only may share that transaction with items of
callers that arrived meanwhile. One caller at a time leads: it takes everything waiting (its
own item included, at most ``max_batch``), commits it with ``commit_batch`` and, if more
arrived meanwhile, hands the lead to the first of those before it returns, so no caller works
for others longer than one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Ticket(Generic[T, R]):
    item: T
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        commit_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        *,
        max_batch: int = 64,
    ) -> None:
        """``commit_batch`` commits the items together and returns one result (or the
        exception for that item) per item, in order; if it raises, every item fails with it."""
        self._commit_batch = commit_batch
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Ticket[T, R]] = []
        self._leading = False
        self.batches = 0
        self.largest = 0

    def submit(self, item: T) -> R:
        ticket: _Ticket[T, R] = _Ticket(item)
        with self._lock:
            self._waiting.append(ticket)
            if not self._leading:
                self._leading = ticket.lead = True
        if not ticket.lead:
            ticket.wake.wait()
        if not ticket.done:  # woken to lead (or leading from the start)
            self._run_batch()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _run_batch(self) -> None:
        with self._lock:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
        try:
            outcomes: Sequence[R | BaseException] = self._commit_batch([t.item for t in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError("group commit returned a wrong number of results")
        except BaseException as exc:  # noqa: BLE001 - every waiter learns of the failure
            outcomes = [exc] * len(batch)
        for ticket, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                ticket.error = outcome
            else:
                ticket.result = outcome
            ticket.done = True
        with self._lock:
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            successor = self._waiting[0] if self._waiting else None
            if successor is None:
                self._leading = False
            else:
                successor.lead = True
        for ticket in batch:
            if not ticket.lead:
                ticket.wake.set()
        if successor is not None:
            successor.wake.set()
