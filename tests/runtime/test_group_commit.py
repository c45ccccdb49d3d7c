"""Group commit: concurrent writers share a transaction; each still gets its own outcome."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from node_runtime.store.group import GroupCommit


class Recorder:
    def __init__(self, delay: float = 0.005) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.active = 0
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        with self.lock:
            self.active += 1
            self.overlap |= self.active > 1
        time.sleep(self.delay)  # an fsync
        with self.lock:
            self.active -= 1
            self.batches.append(list(items))
        return [ValueError(f"bad {i}") if i % 10 == 7 else i * 2 for i in items]


def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    recorder = Recorder()
    group: GroupCommit[int, int] = GroupCommit(recorder, max_batch=8)
    barrier = threading.Barrier(16)

    def call(i: int) -> int | str:
        barrier.wait(10)
        try:
            return group.submit(i)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(16)))
    assert results == [f"bad {i}" if i % 10 == 7 else i * 2 for i in range(16)]
    assert not recorder.overlap, "two batches committed at once"
    assert sorted(i for b in recorder.batches for i in b) == list(range(16))
    assert max(len(b) for b in recorder.batches) > 1, recorder.batches
    assert all(len(b) <= 8 for b in recorder.batches)
    assert group.batches == len(recorder.batches) < 16


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk full")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group.submit(1)
    assert group.submit(2) == 2


def test_a_lone_caller_commits_alone() -> None:
    recorder = Recorder(delay=0)
    group: GroupCommit[int, int] = GroupCommit(recorder)
    assert [group.submit(i) for i in (1, 2, 3)] == [2, 4, 6]
    assert recorder.batches == [[1], [2], [3]]


def test_coroutines_share_batches_in_the_writer_thread_and_the_loop_keeps_serving() -> None:
    """Awaited writes are committed by the writer thread: while one batch "fsyncs", the event
    loop goes on (a ticker keeps ticking) and the writes that arrive meanwhile form the next
    batch; each coroutine gets its own result or its own error."""
    recorder = Recorder(delay=0.02)
    committing_threads: set[str] = set()

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        committing_threads.add(threading.current_thread().name)
        return recorder(items)

    group: GroupCommit[int, int] = GroupCommit(commit, max_batch=8, name="test-writer")

    async def main() -> tuple[list[int | str], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        async def write(i: int) -> int | str:
            try:
                return await group.submit_async(i)
            except ValueError as exc:
                return str(exc)

        tick_task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(write(i) for i in range(20)))
        stop.set()
        await tick_task
        return list(results), ticks

    results, ticks = asyncio.run(main())
    group.close()
    assert results == [f"bad {i}" if i % 10 == 7 else i * 2 for i in range(20)]
    assert committing_threads == {group.name}
    assert not recorder.overlap, "two batches committed at once"
    assert sorted(i for b in recorder.batches for i in b) == list(range(20))
    assert len(recorder.batches) < 20 and all(len(b) <= 8 for b in recorder.batches)
    assert ticks >= len(recorder.batches), "the event loop was blocked during the commits"


def test_threads_and_coroutines_share_one_queue_and_never_commit_at_once() -> None:
    recorder = Recorder(delay=0.003)
    group: GroupCommit[int, int] = GroupCommit(recorder, max_batch=4)
    barrier = threading.Barrier(9)

    def thread_call(i: int) -> int | str:
        barrier.wait(10)
        try:
            return group.submit(i)
        except ValueError as exc:
            return str(exc)

    def loop_calls() -> list[int | str]:
        async def write(i: int) -> int | str:
            try:
                return await group.submit_async(i)
            except ValueError as exc:
                return str(exc)

        async def main() -> list[int | str]:
            barrier.wait(10)
            return list(await asyncio.gather(*(write(i) for i in range(100, 140))))

        return asyncio.run(main())

    with ThreadPoolExecutor(max_workers=9) as pool:
        async_results = pool.submit(loop_calls)
        thread_results = list(pool.map(thread_call, range(8)))
        coroutine_results = async_results.result(30)
    group.close()
    expected = [f"bad {i}" if i % 10 == 7 else i * 2 for i in range(8)]
    assert thread_results == expected
    assert coroutine_results == [f"bad {i}" if i % 10 == 7 else i * 2 for i in range(100, 140)]
    assert not recorder.overlap, "two batches committed at once"
    assert sorted(i for b in recorder.batches for i in b) == [*range(8), *range(100, 140)]


def test_a_failing_batch_fails_its_coroutines_and_the_writer_goes_on() -> None:
    calls: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk full")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(commit)

    async def main() -> int:
        with pytest.raises(OSError, match="disk full"):
            await group.submit_async(1)
        return await group.submit_async(2)

    assert asyncio.run(main()) == 2
    group.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(group.submit_async(3))
