"""WriteBehind (node_runtime.store.write_behind): refusal records gathered into shared writes
behind their answers, bounded, never lost silently. The store-level behaviour on SQLite and
PostgreSQL is in tests/postgresql/test_store_backends.py."""

from __future__ import annotations

import asyncio

import pytest

from node_runtime.store import write_behind
from node_runtime.store.write_behind import WriteBehind


class FakeStore:
    """Writes are tuples of names; a write naming "bad" fails; merging concatenates."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, ...]] = []
        self.committed: list[str] = []
        self.gate: asyncio.Event | None = None

    async def submit(self, write: tuple[str, ...]) -> None:
        self.submitted.append(write)
        if self.gate is not None:
            await self.gate.wait()
        if "bad" in write:
            raise ValueError("refused by the database")
        self.committed.extend(write)

    @staticmethod
    def merge(writes: list[tuple[str, ...]]) -> tuple[str, ...] | None:
        return tuple(name for write in writes for name in write)

    def behind(self) -> WriteBehind:
        return WriteBehind(self.submit, self.merge)


def test_writes_wait_for_company_and_then_share_one_write() -> None:
    fake = FakeStore()

    async def main() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        behind = fake.behind()
        for name in ("a", "b", "c"):
            await behind.put((name,))
        await asyncio.sleep(0)
        before = list(fake.submitted)  # returned at once, nothing written yet
        await asyncio.sleep(write_behind.GATHER_SECONDS * 4)
        return before, list(fake.submitted)

    before, after = asyncio.run(main())
    assert before == []
    assert after == [("a", "b", "c")]
    assert fake.committed == ["a", "b", "c"]


def test_a_full_batch_is_written_without_waiting_for_the_gathering_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(write_behind, "GATHER_SECONDS", 3600.0)
    fake = FakeStore()

    async def main() -> None:
        behind = fake.behind()
        for i in range(write_behind.BATCH):
            await behind.put((f"r{i}",))
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert [len(w) for w in fake.submitted] == [write_behind.BATCH]


def test_flush_writes_at_once_and_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(write_behind, "GATHER_SECONDS", 3600.0)
    fake = FakeStore()

    async def main() -> None:
        behind = fake.behind()
        await behind.flush()  # nothing queued: returns
        await behind.put(("a",))
        await behind.put(("b",))
        await behind.flush()
        assert behind.pending == 0

    asyncio.run(main())
    assert fake.submitted == [("a", "b")]


def test_a_bad_write_fails_alone_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeStore()

    async def main() -> int:
        behind = fake.behind()
        for write in (("a",), ("bad",), ("c",)):
            await behind.put(write)
        await behind.flush()
        return behind.failures

    assert asyncio.run(main()) == 1
    assert fake.submitted == [("a", "bad", "c"), ("a",), ("bad",), ("c",)]
    assert fake.committed == ["a", "c"]
    assert any("not written: ValueError" in r.getMessage() for r in caplog.records)


def test_unmergeable_writes_go_one_by_one() -> None:
    fake = FakeStore()

    async def main() -> None:
        behind = WriteBehind(fake.submit, lambda _writes: None)
        await behind.put(("a",))
        await behind.put(("b",))
        await behind.flush()

    asyncio.run(main())
    assert fake.submitted == [("a",), ("b",)]


def test_beyond_the_limit_a_caller_waits_for_its_own_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(write_behind, "LIMIT", 4)
    monkeypatch.setattr(write_behind, "BATCH", 2)
    fake = FakeStore()

    async def main() -> None:
        fake.gate = asyncio.Event()
        behind = fake.behind()
        for name in ("a", "b", "c", "d"):  # a+b on their way (held at the gate), c+d queued
            await behind.put((name,))
        await asyncio.sleep(0)
        assert behind.pending == 4
        own = asyncio.ensure_future(behind.put(("e",)))
        await asyncio.sleep(0)
        assert ("e",) in fake.submitted and not own.done()  # its own write, awaited
        fake.gate.set()
        await own
        await behind.flush()

    asyncio.run(main())
    assert sorted(fake.committed) == ["a", "b", "c", "d", "e"]


def test_writes_arriving_during_a_commit_gather_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeStore()

    async def main() -> None:
        fake.gate = asyncio.Event()
        behind = fake.behind()
        await behind.put(("a",))
        await asyncio.sleep(write_behind.GATHER_SECONDS * 2)  # "a" is on its way
        assert fake.submitted == [("a",)]
        await behind.put(("b",))
        await behind.put(("c",))
        fake.gate.set()
        await asyncio.sleep(write_behind.GATHER_SECONDS * 4)

    asyncio.run(main())
    assert fake.submitted == [("a",), ("b", "c")]
