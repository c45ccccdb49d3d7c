"""Group commit: concurrent callers' writes share one transaction (one fsync).

Every caller waits until its own item is durable (or failed), exactly as with a transaction
of its own; it only may share that transaction with items of callers that arrived meanwhile.

Two kinds of callers share one queue:

* a thread calls :meth:`GroupCommit.submit` and blocks. One caller at a time leads: it takes
  everything waiting (its own item included, at most ``max_batch``), commits it with
  ``commit_batch`` and, if more arrived meanwhile, hands the lead to the first of those before
  it returns, so no thread works for others longer than one batch;
* a coroutine awaits :meth:`GroupCommit.submit_async`. Its event loop never blocks: the
  batches are committed by a writer thread of the group's own, which leads while anything
  is waiting and resolves the waiting coroutines' futures with one call into each event loop
  per batch. While the writer waits for a commit's fsync, the event loop goes on serving and
  the next batch gathers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _Ticket(Generic[T, R]):
    item: T
    wake: threading.Event | None = field(default_factory=threading.Event)
    future: asyncio.Future[R] | None = None
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
        name: str = "group-commit",
    ) -> None:
        """``commit_batch`` commits the items together and returns one result (or the
        exception for that item) per item, in order; if it raises, every item fails with it."""
        self._commit_batch = commit_batch
        self.max_batch = max_batch
        self.name = name
        self._lock = threading.Lock()
        self._waiting: list[_Ticket[T, R]] = []
        self._leading = False  # a thread or the writer is committing batches
        self._writer_leads = False  # ... and it is the writer
        self._writer: threading.Thread | None = None
        self._writer_wake = threading.Event()
        self._closed = False
        self.batches = 0
        self.largest = 0

    # -- threads ---------------------------------------------------------------------------

    def submit(self, item: T) -> R:
        """Commit ``item`` (with whatever else is waiting); blocks until it is durable."""
        ticket: _Ticket[T, R] = _Ticket(item)
        with self._lock:
            self._waiting.append(ticket)
            if not self._leading:
                self._leading = ticket.lead = True
        if not ticket.lead:
            assert ticket.wake is not None
            ticket.wake.wait()
        if not ticket.done:  # woken to lead (or leading from the start)
            self._run_batch(by_writer=False)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    # -- coroutines ------------------------------------------------------------------------

    async def submit_async(self, item: T) -> R:
        """Commit ``item`` (with whatever else is waiting) in the writer thread; the event
        loop goes on while it waits. Returns once the item is durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        ticket: _Ticket[T, R] = _Ticket(item, wake=None, future=future)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            self._waiting.append(ticket)
            start = not self._leading
            if start:
                self._leading = self._writer_leads = True
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._writer_main, name=self.name, daemon=True
                )
                self._writer.start()
        if start:
            self._writer_wake.set()
        return await future

    def close(self) -> None:
        """Stop the writer thread once nothing waits (later async submits are refused)."""
        with self._lock:
            self._closed = True
            writer = self._writer
        self._writer_wake.set()
        if writer is not None and writer.ident is not None:
            writer.join(timeout=30)

    def _writer_main(self) -> None:
        while True:
            self._writer_wake.wait()
            self._writer_wake.clear()
            with self._lock:
                has_work = bool(self._waiting) and self._writer_leads
                stop = self._closed and not self._waiting
            if has_work:
                while self._run_batch(by_writer=True):
                    pass
            elif stop:
                return

    # -- one batch -------------------------------------------------------------------------

    def _run_batch(self, *, by_writer: bool) -> bool:
        """Commit the next batch; returns True when the writer should go on leading."""
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
        keep_leading = False
        with self._lock:
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            successor = self._waiting[0] if self._waiting else None
            if successor is None:
                self._leading = self._writer_leads = False
            elif by_writer:
                keep_leading = True  # the writer leads while anything waits
            elif successor.future is not None:
                self._writer_leads = True  # a thread hands a coroutine's item to the writer
            else:
                successor.lead = True
        self._resolve(batch)
        if successor is not None:
            if successor.future is None and not by_writer:
                assert successor.wake is not None
                successor.wake.set()
            elif not by_writer:
                self._writer_wake.set()
        return keep_leading

    @staticmethod
    def _resolve(batch: Sequence[_Ticket[T, R]]) -> None:
        """Wake the threads of the batch, and resolve its coroutines' futures: one call into
        each event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Ticket[T, R]]] = {}
        for ticket in batch:
            if ticket.future is not None:
                by_loop.setdefault(ticket.future.get_loop(), []).append(ticket)
            elif not ticket.lead:
                assert ticket.wake is not None
                ticket.wake.set()
        for loop, tickets in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, tickets)
            except RuntimeError:  # the loop has closed: nobody awaits these any more
                pass


def _settle(tickets: Sequence[_Ticket[T, R]]) -> None:
    for ticket in tickets:
        future = ticket.future
        assert future is not None
        if future.done():  # the awaiting coroutine was cancelled; the write stands
            continue
        if ticket.error is not None:
            future.set_exception(ticket.error)
        else:
            future.set_result(ticket.result)  # type: ignore[arg-type]
