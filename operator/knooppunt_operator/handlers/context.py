"""What every handler works with, created once at start-up and kept in kopf's memo."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from knooppunt_operator import apply as applying
from knooppunt_operator import kube, leader, metrics, status
from knooppunt_operator.cache import Cache
from knooppunt_operator.config import OperatorConfig
from knooppunt_operator.runtime_client import PendingCounter
from node_runtime.model.connector import SectorConnector

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
    database_secrets: dict[Key, status.Observed] = field(default_factory=dict)
    """The last DatabaseSecretReady condition of each PostgreSQL node:
    while it is False, every observe looks at the Secret again."""
    wake: Callable[[str, str, str], None] | None = None
    """Queue another reconcile (kind of work, namespace, name); set by the controller."""
    cache: Cache = field(default_factory=Cache)
    connector_models: dict[Key, tuple[Any, SectorConnector | None]] = field(default_factory=dict)
    """What kopf watches (see :mod:`knooppunt_operator.cache`); empty in unit tests that
    call handlers without kopf, where reads go to the API server."""

    async def read(
        self, kind: kube.Kind, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """An object the operator watches, from the cache (never a GET when kopf runs)."""
        if self.cache.holds(kind):
            return self.cache.get(kind, namespace, name)
        return await self.client.get(kind, namespace, name)

    async def read_list(
        self,
        kind: kube.Kind,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        copies: bool = True,
    ) -> list[dict[str, Any]]:
        """Objects of a namespace from the cache; ``copies=False`` for readers that change
        nothing (hundreds of gemeenten are not copied for a count)."""
        if self.cache.holds(kind):
            return self.cache.list(kind, namespace, labels=labels, copies=copies)
        return await self.client.list(kind, namespace, labels=labels)

    async def connector(self, namespace: str | None, name: str) -> SectorConnector | None:
        """The SectorConnector as the typed model (``None``: missing or invalid), parsed once
        per resource version: every gemeente's reconcile checks its subscriptions with it."""
        if self.cache.holds(kube.SECTOR_CONNECTOR):
            raw: Mapping[str, Any] | None = self.cache.peek(kube.SECTOR_CONNECTOR, namespace, name)
        else:
            raw = await self.client.get(kube.SECTOR_CONNECTOR, namespace, name)
        if raw is None:
            return None
        version = (raw.get("metadata") or {}).get("resourceVersion")
        key = (namespace or "", name)
        known = self.connector_models.get(key)
        if known is not None and version is not None and known[0] == version:
            return known[1]
        try:
            model: SectorConnector | None = SectorConnector.model_validate(raw)
        except ValidationError:
            model = None
        self.connector_models[key] = (version, model)
        return model

    async def read_before_creating(
        self, kind: kube.Kind, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        """For what is created once and never replaced (a CA, a pseudonym key): when the cache
        does not show it, the API server is asked before the operator creates it."""
        obj = await self.read(kind, namespace, name)
        if obj is None and self.cache.holds(kind):
            obj = await self.client.get(kind, namespace, name)
            self.cache.wrote(obj)
        return obj

    async def patch_status(
        self, kind: kube.Kind, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        result = await self.client.merge_patch(kind, namespace, name, patch, subresource="status")
        self.cache.wrote(result)
        return result

    async def patch(
        self, kind: kube.Kind, namespace: str | None, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        result = await self.client.merge_patch(kind, namespace, name, patch)
        self.cache.wrote(result)
        return result

    async def apply_all(
        self,
        owner: Mapping[str, Any],
        objects: Iterable[Mapping[str, Any] | applying.ObjectRef | None],
        *,
        announce: bool = True,
    ) -> list[applying.Applied]:
        """Apply each desired object (an ``ObjectRef`` alone means: must not exist) in order;
        a Created / Patched / Deleted Event for each change unless ``announce`` is off."""
        results = []
        for item in objects:
            if isinstance(item, applying.ObjectRef):
                done = await applying.apply(self.client, None, ref=item, cache=self.cache)
            elif item is not None:
                done = await applying.apply(self.client, item, cache=self.cache)
            else:
                continue
            results.append(done)
            metrics.APPLIED.labels(done.ref.kind.kind, done.result.value).inc()
            if done.result.changed and announce:
                await self.events.record(
                    owner,
                    reason=done.result.value.capitalize(),
                    message=f"{done.result.value} {done.ref.kind.kind} {done.ref.name}",
                )
        return results
