"""LoopGroupCommit (node_runtime.store.loop_group): coroutines' writes share batches on the
event loop; each caller gets its own outcome; a caller that goes away leaves its write
standing and no unretrieved exception behind."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

from node_runtime.store.loop_group import LoopGroupCommit


class Batches:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # the COMMIT in a thread
        self.batches.append(list(items))
        return [ValueError(f"bad {i}") if i % 10 == 7 else i * 2 for i in items]


def test_callers_share_batches_and_each_gets_its_own_outcome() -> None:
    commit = Batches()

    async def main() -> list[Any]:
        group: LoopGroupCommit[int, int] = LoopGroupCommit(commit)
        return await asyncio.gather(*(group.submit(i) for i in range(20)), return_exceptions=True)

    results = asyncio.run(main())
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        f"bad {i}" if i % 10 == 7 else i * 2 for i in range(20)
    ]
    assert len(commit.batches) < 20  # shared
    assert sorted(i for b in commit.batches for i in b) == list(range(20))


def test_a_caller_that_goes_away_leaves_its_write_and_no_unretrieved_exception() -> None:
    commit = Batches()
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        commit.gate = asyncio.Event()
        group: LoopGroupCommit[int, int] = LoopGroupCommit(commit)
        good = asyncio.ensure_future(group.submit(1))
        bad = asyncio.ensure_future(group.submit(7))  # its item fails
        await asyncio.sleep(0)
        bad.cancel()  # the client disconnected
        good.cancel()
        await asyncio.sleep(0)
        commit.gate.set()
        while group._draining is not None:
            await asyncio.sleep(0)
        gc.collect()  # an unretrieved exception is reported when its future is collected
        await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    assert commit.batches == [[1, 7]]  # both writes went to the database
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))], reported
