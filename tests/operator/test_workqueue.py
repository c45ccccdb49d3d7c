"""The operator's work queue: deduplicated, prioritised, never one key to two workers."""

from __future__ import annotations

import asyncio

import pytest
from knooppunt_operator.workqueue import Backoff, ShutDown, WorkQueue

pytestmark = pytest.mark.asyncio


def queue() -> WorkQueue[str]:
    return WorkQueue(priority=lambda key: 0 if key.startswith("node") else 1)


async def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while len(q):
        key = await q.get()
        out.append(key)
        q.done(key)
    return out


async def test_a_key_is_queued_once_however_often_it_is_added() -> None:
    q = queue()
    for _ in range(5):
        q.add("gemeente-1")
    q.add("gemeente-2")
    q.add("gemeente-1")
    assert len(q) == 2
    assert await drain(q) == ["gemeente-1", "gemeente-2"]


async def test_lower_priority_numbers_go_first_in_arrival_order_within_one() -> None:
    q = queue()
    for key in ("gemeente-1", "gemeente-2", "node-a", "gemeente-3", "node-b"):
        q.add(key)
    assert await drain(q) == ["node-a", "node-b", "gemeente-1", "gemeente-2", "gemeente-3"]


async def test_a_key_being_worked_on_is_not_handed_out_again_until_done() -> None:
    q = queue()
    q.add("gemeente-1")
    first = await q.get()
    q.add("gemeente-1")  # changed again while a worker has it
    assert len(q) == 0 and q.processing == 1
    second_worker = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second_worker.done()
    q.done(first)  # now it comes back, once
    assert await asyncio.wait_for(second_worker, 1) == "gemeente-1"
    q.done("gemeente-1")
    assert len(q) == 0 and q.processing == 0


async def test_delayed_keys_arrive_later_and_an_add_brings_them_forward() -> None:
    q = queue()
    q.add_after("gemeente-1", 0.05)
    q.add_after("gemeente-2", 30)
    assert len(q) == 0 and q.delayed == 2
    assert await asyncio.wait_for(q.get(), 1) == "gemeente-1"
    q.done("gemeente-1")
    q.add("gemeente-2")  # an event for it: no need to wait 30 s
    assert q.delayed == 0
    assert await asyncio.wait_for(q.get(), 1) == "gemeente-2"


async def test_a_later_delay_does_not_postpone_an_earlier_one() -> None:
    q = queue()
    q.add_after("gemeente-1", 0.05)
    q.add_after("gemeente-1", 30)
    assert await asyncio.wait_for(q.get(), 1) == "gemeente-1"


async def test_failures_back_off_exponentially_and_success_resets() -> None:
    q: WorkQueue[str] = WorkQueue(backoff=Backoff(base=1, cap=8, rng=lambda: 1.0))
    delays = []
    for _ in range(5):
        delays.append(q.retry("gemeente-1"))
    assert delays == [1, 2, 4, 8, 8]
    assert q.retry("gemeente-1", delay=0.5) == 0.5  # the handler's own delay wins
    q.forget("gemeente-1")
    assert q.failures("gemeente-1") == 0
    assert q.retry("gemeente-1") == 1
    await q.shutdown()


async def test_jitter_stays_within_the_ceiling_and_above_half_the_base() -> None:
    backoff = Backoff(base=0.5, cap=60, rng=lambda: 0.0)
    assert backoff.delay(10) == 0.25
    backoff = Backoff(base=0.5, cap=60, rng=lambda: 0.999)
    assert 59 < backoff.delay(30) <= 60


async def test_shutdown_wakes_waiting_workers() -> None:
    q = queue()
    waiting = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    await q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)
    q.add("gemeente-1")  # ignored after shutdown
    assert len(q) == 0


async def test_many_workers_share_the_work_without_overlap() -> None:
    q = queue()
    active: set[str] = set()
    seen: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            assert key not in active
            active.add(key)
            await asyncio.sleep(0.001)
            if len(seen) < 200:
                q.add(key)  # re-added while being worked on
            seen.append(key)
            active.discard(key)
            q.done(key)

    for i in range(20):
        q.add(f"gemeente-{i}")
    workers = [asyncio.create_task(worker()) for _ in range(4)]
    while len(seen) < 200 or len(q) or q.processing:
        await asyncio.sleep(0.005)
    await q.shutdown()
    await asyncio.gather(*workers)
    assert set(seen) == {f"gemeente-{i}" for i in range(20)}
