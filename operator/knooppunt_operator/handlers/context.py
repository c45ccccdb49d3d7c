"""What every handler works with, created once at start-up and kept in kopf's memo."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knooppunt_operator import apply as applying
from knooppunt_operator import kube, leader, metrics
from knooppunt_operator.config import OperatorConfig
from knooppunt_operator.runtime_client import PendingCounter

Key = tuple[str, str]

# What a reconcile can ask for through ``Context.wake`` (the controller's work kinds).
KNOOPPUNT = "knooppunt"
OBSERVE = "observe"
CONNECTOR = "connector"
GEMEENTE = "gemeente"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Context:
    """Collaborators of the handlers; tests pass their own (emulator client, stub counters)."""

    client: kube.KubeClient
    config: OperatorConfig
    pending: PendingCounter
    events: kube.EventRecorder
    gate: leader.Gate = field(default_factory=leader.AlwaysLeader)
    clock: Callable[[], dt.datetime] = utcnow
    node_locks: collections.defaultdict[Key, asyncio.Lock] = field(
        default_factory=lambda: collections.defaultdict(asyncio.Lock)
    )
    ca_locks: collections.defaultdict[Key, asyncio.Lock] = field(
        default_factory=lambda: collections.defaultdict(asyncio.Lock)
    )
    problems: dict[Key, list[str]] = field(default_factory=dict)
    wake: Callable[[str, str, str], None] | None = None
    """Queue another reconcile (kind of work, namespace, name); set by the controller."""

    async def apply_all(
        self,
        owner: Mapping[str, Any],
        objects: Iterable[Mapping[str, Any] | applying.ObjectRef | None],
    ) -> list[applying.Applied]:
        """Apply each desired object (an ``ObjectRef`` alone means: must not exist) in order."""
        results = []
        for item in objects:
            if isinstance(item, applying.ObjectRef):
                done = await applying.apply(self.client, None, ref=item)
            elif item is not None:
                done = await applying.apply(self.client, item)
            else:
                continue
            results.append(done)
            metrics.APPLIED.labels(done.ref.kind.kind, done.result.value).inc()
            if done.result.changed:
                await self.events.record(
                    owner,
                    reason=done.result.value.capitalize(),
                    message=f"{done.result.value} {done.ref.kind.kind} {done.ref.name}",
                )
        return results
