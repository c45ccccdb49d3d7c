"""Group commit: concurrent writers share a transaction; each still gets its own outcome."""

from __future__ import annotations

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
