"""Conversation items in SQLite and PostgreSQL: open, close in time or late, a closer before
its opener, oldest opener first; states as the API lists them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_runtime.store import conversations
from node_runtime.store.records import ConversationEvent
from node_runtime.store.sql import SqlStore, sqlite_url

T0 = datetime(2026, 4, 2, 13, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (
        sqlite_url(tmp_path / "k.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgresql_url")
    )
    s = SqlStore(url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def event(kind: str, key: str, at: datetime, *, due: datetime | None = None) -> ConversationEvent:
    return ConversationEvent(
        kind=kind,
        connector="iwmo-2-1",
        conversation="verzoek",
        key_hash=key,  # type: ignore[arg-type]
        gemeente="0363",
        participant="98000023",
        sender="98000023" if kind == "open" else "0363",
        recipient="0363" if kind == "open" else "98000023",
        message_id=f"m-{kind}-{key}-{at.isoformat()}",
        message_type="WMO315" if kind == "open" else "WMO301",
        sender_message_id="REF",
        item=1,
        at=at,
        due_at=due,
    )


def apply(store: SqlStore, *events: ConversationEvent) -> None:
    with store.transaction() as conn:
        conversations.apply(conn, list(events))


def states(store: SqlStore, now: datetime) -> list[str]:
    rows = conversations.list_conversations(store.engine, now=now, gemeente="0363")
    return sorted(r.state(now) for r in rows)


def test_open_close_late_and_out_of_order(store: SqlStore) -> None:
    due = T0 + timedelta(days=5)
    apply(store, event("open", "a", T0, due=due), event("open", "b", T0, due=due))
    assert states(store, T0) == ["open", "open"]
    assert states(store, due + timedelta(minutes=1)) == ["overdue", "overdue"]
    apply(store, event("close", "a", T0 + timedelta(days=1)))
    apply(store, event("close", "b", due + timedelta(hours=2)))
    assert states(store, due + timedelta(days=30)) == ["closed", "late"]
    # a closer first, then its opener: closed in time, never overdue
    apply(store, event("close", "c", T0))
    assert states(store, T0)[-1] == "unmatched"
    apply(store, event("open", "c", T0 + timedelta(hours=1), due=due))
    assert states(store, due + timedelta(days=30)) == ["closed", "closed", "late"]
    counts = conversations.counts(store.engine, now=due + timedelta(days=30))
    assert counts[("iwmo-2-1", "verzoek", "0363", "98000023", "closed")] == 2
    assert counts[("iwmo-2-1", "verzoek", "0363", "98000023", "late")] == 1


def test_oldest_opener_is_closed_first(store: SqlStore) -> None:
    apply(store, event("open", "k", T0, due=T0 + timedelta(days=1)))
    apply(store, event("open", "k", T0 + timedelta(hours=1), due=T0 + timedelta(days=2)))
    apply(store, event("close", "k", T0 + timedelta(days=1, hours=12)))
    rows = conversations.list_conversations(store.engine, now=T0, gemeente="0363")
    by_open = sorted(rows, key=lambda r: r.opened_at or T0)
    assert [r.status for r in by_open] == ["late", "open"]
