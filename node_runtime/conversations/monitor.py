"""Conversation metrics: how many items are open, overdue, closed in time, late or unmatched,
per connector, conversation, gemeente and sender. Refreshed on an interval in every replica
from the shared database, so any replica's /metrics tells the whole truth.

Alert on ``sum by (connector, gemeente) (knooppunt_conversations{state="overdue"}) > 0``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy.engine import Engine

from node_runtime.store import conversations

log = logging.getLogger("knooppunt.conversations")

Labels = tuple[str, str, str, str, str]
OverdueHook = Callable[[dict[Labels, int], dict[Labels, int]], None]


class ConversationMonitor:
    def __init__(
        self,
        engine: Engine,
        *,
        registry: CollectorRegistry,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        interval: float = 15.0,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.interval = interval
        self.gauge = Gauge(
            "knooppunt_conversations",
            "Conversation items by state (open, overdue, closed, late, unmatched), connector, "
            "conversation, gemeente and the opener's sender.",
            ["connector", "conversation", "gemeente", "sender", "state"],
            registry=registry,
        )
        self._seen: set[Labels] = set()
        self.overdue: dict[Labels, int] = {}
        self.on_overdue: list[OverdueHook] = []

    def refresh(self) -> dict[Labels, int]:
        counts = conversations.counts(self.engine, now=self.clock())
        current: dict[Labels, int] = {
            (a, b, c, d, str(e)): v for (a, b, c, d, e), v in counts.items()
        }
        for labels in self._seen - set(current):
            self.gauge.labels(*labels).set(0)
        for labels, value in current.items():
            self.gauge.labels(*labels).set(value)
        self._seen |= set(current)
        overdue = {k: v for k, v in current.items() if k[4] == "overdue"}
        previous, self.overdue = self.overdue, overdue
        for hook in self.on_overdue:
            try:
                hook(previous, overdue)
            except Exception:
                log.exception("overdue notification failed")
        return current

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("conversation metrics refresh failed")
            await asyncio.sleep(self.interval)
