"""Leader election with a ``coordination.k8s.io`` Lease: one replica reconciles, others wait.

kopf's peering pauses an operator only when a peer of *higher* priority is alive; replicas
of equal priority keep working side by side. So the operator also elects a leader: every
replica watches and serves the admission webhook and its health endpoint (both stateless),
but the workers of :mod:`knooppunt_operator.controller` wait at :meth:`LeaseElector.wait`
until their replica holds the Lease. The Lease is taken
with optimistic concurrency (``resourceVersion``), renewed well before it expires, and when a
renewal fails for longer than the lease lasts the replica stops itself (another one takes
over), like controller-runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from knooppunt_operator import kube, metrics

logger = logging.getLogger(__name__)


class Gate(Protocol):
    @property
    def is_leader(self) -> bool: ...

    async def wait(self) -> None: ...


class AlwaysLeader:
    """Leader election switched off (a single replica, or tests)."""

    @property
    def is_leader(self) -> bool:
        return True

    async def wait(self) -> None:
        return None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _micro(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stop_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class LeaseElector:
    client: kube.KubeClient
    namespace: str
    name: str = "knooppunt-operator"
    identity: str = field(default_factory=socket.gethostname)
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    on_lost: Callable[[], None] = _stop_process
    _leader: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait(self) -> None:
        await self._leader.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leader election")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.is_leader:
            await self.release()

    async def _run(self) -> None:
        last_renewal = self.clock()
        while True:
            held: bool | None
            try:
                held = await self.try_acquire_or_renew()
            except (kube.ApiError, OSError) as exc:
                logger.warning("leader election: %s", exc)
                held = False if not self.is_leader else None
            now = self.clock()
            if held:
                last_renewal = now
                if not self.is_leader:
                    logger.info("leader election: %s now leads", self.identity)
                    self._leader.set()
                    metrics.LEADER.set(1)
            elif self.is_leader and (
                held is False or (now - last_renewal).total_seconds() > self.lease_seconds
            ):
                logger.error("leader election: lost the lease; stopping this replica")
                self._leader.clear()
                metrics.LEADER.set(0)
                self.on_lost()
                return
            await asyncio.sleep(self.renew_seconds if self.is_leader else self.renew_seconds / 2)

    def _spec(self, previous: Mapping[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
        spec = dict((previous or {}).get("spec") or {})
        transitions = int(spec.get("leaseTransitions") or 0)
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = _micro(now)
            transitions += 1 if previous is not None else 0
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.lease_seconds),
            renewTime=_micro(now),
            leaseTransitions=transitions,
        )
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """Take or keep the Lease; False when another live holder has it."""
        now = self.clock()
        lease = await self.client.get(kube.LEASE, self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            try:
                await self.client.create(kube.LEASE, self.namespace, body)
            except kube.Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse_time(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder not in (None, "", self.identity) and not expired:
            return False
        patch = {
            "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
            "spec": self._spec(lease, now),
        }
        try:
            result = await self.client.merge_patch(kube.LEASE, self.namespace, self.name, patch)
        except kube.Conflict:
            return False
        return result is not None

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown so a standby takes over at once."""
        lease = await self.client.get(kube.LEASE, self.namespace, self.name)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        patch = {
            "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
            "spec": {"holderIdentity": None, "renewTime": None},
        }
        with contextlib.suppress(kube.ApiError):
            await self.client.merge_patch(kube.LEASE, self.namespace, self.name, patch)
        self._leader.clear()
        metrics.LEADER.set(0)
