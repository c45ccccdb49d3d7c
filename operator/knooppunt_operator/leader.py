"""Leader election with a ``coordination.k8s.io`` Lease: one replica reconciles, others wait.

kopf's peering pauses an operator only when a peer of *higher* priority is alive; replicas
of equal priority keep working side by side. So the operator also elects a leader: every
replica watches and serves the admission webhook and its health endpoint (both stateless),
but the workers of :mod:`knooppunt_operator.controller` wait at :meth:`LeaseElector.wait`
until their replica holds the Lease.

The timing follows client-go's leader election, so that two replicas never act at once:

* the holder renews every ``renew_seconds``; if it has not renewed for ``renew_deadline``
  (less than the lease), it stops leading at once (its workers take no more work) and stops
  its process, *before* anyone else may take over;
* a standby judges expiry by its own monotonic clock: the Lease is free only when its record
  has not changed for ``leaseDurationSeconds`` since this replica last saw it change, so
  clocks that disagree between machines do not shorten the lease;
* every write carries the ``resourceVersion`` it read (optimistic concurrency): of two
  replicas racing for a free Lease, one gets a 409 and stays standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import time
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
    renew_seconds: float = 2.0
    renew_deadline: float | None = None
    """Stop leading when not renewed for this long; default two thirds of the lease."""
    create: bool = True
    """Create the Lease when absent; otherwise it is installed with the operator (the chart)."""
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    monotonic: Callable[[], float] = time.monotonic
    on_lost: Callable[[], None] = _stop_process
    _leader: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _observed: tuple[Any, ...] | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.renew_deadline is None:
            self.renew_deadline = self.lease_seconds * 2 / 3
        if not 0 < self.renew_seconds < self.renew_deadline < self.lease_seconds:
            raise ValueError("leader election needs renew_seconds < renew_deadline < lease_seconds")

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

    def _lose(self, why: str) -> None:
        logger.error("leader election: %s; stopping this replica", why)
        self._leader.clear()  # the workers take no more work from here on
        metrics.LEADER.set(0)
        self.on_lost()

    async def _run(self) -> None:
        deadline = float(self.renew_deadline or 0)
        last_renewal = self.monotonic()
        try:
            while True:
                held: bool | None
                try:
                    held = await self.try_acquire_or_renew()
                except (kube.ApiError, OSError) as exc:
                    logger.warning("leader election: %s", exc)
                    held = None  # unknown: keep leading until the deadline
                now = self.monotonic()
                if held:
                    last_renewal = now
                    if not self.is_leader:
                        logger.info("leader election: %s now leads", self.identity)
                        self._leader.set()
                        metrics.LEADER.set(1)
                elif self.is_leader and held is False:
                    self._lose("another replica holds the lease, or it was removed")
                    return
                elif self.is_leader and now - last_renewal > deadline:
                    self._lose(f"not renewed for {now - last_renewal:.1f} s")
                    return
                await asyncio.sleep(self.renew_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("leader election failed")
            if self.is_leader:
                self._lose("leader election failed")
            raise

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

    def _observe(self, lease: Mapping[str, Any]) -> float:
        """Seconds (own monotonic clock) since this replica saw the Lease record change."""
        now = self.monotonic()
        record = (
            (lease.get("metadata") or {}).get("resourceVersion"),
            (lease.get("spec") or {}).get("holderIdentity"),
            (lease.get("spec") or {}).get("renewTime"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, now
        return now - self._observed_at

    async def try_acquire_or_renew(self) -> bool:
        """Take or keep the Lease; False when another live holder has it."""
        now = self.clock()
        lease = await self.client.get(kube.LEASE, self.namespace, self.name)
        if lease is None and not self.create:
            if self.is_leader:
                return False  # removed under a leader (an uninstall): stop leading at once
            logger.warning(
                "leader election: Lease %s/%s does not exist (it is installed with the operator)",
                self.namespace,
                self.name,
            )
            return False
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, now),
            }
            try:
                created = await self.client.create(kube.LEASE, self.namespace, body)
            except kube.Conflict:
                return False
            self._observe(created)
            return True
        unchanged_for = self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder not in (None, "", self.identity) and unchanged_for <= duration:
            return False
        patch = {
            "metadata": {"resourceVersion": lease["metadata"].get("resourceVersion")},
            "spec": self._spec(lease, now),
        }
        try:
            result = await self.client.merge_patch(kube.LEASE, self.namespace, self.name, patch)
        except kube.Conflict:
            return False
        if result is None:
            return False
        self._observe(result)
        return True

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
