"""The reconcile loop: every replica watches, only the leader's workers reconcile.

kopf watches the three resources and the nodes' Deployments on every replica and hands
each event to :meth:`Controller.on_event`, which writes nothing: it only names the work (a
:class:`Work` key) in a :class:`~knooppunt_operator.workqueue.WorkQueue`. Workers take keys
from the queue only while their replica holds the leader Lease, read the object fresh and
reconcile it (level-triggered, like controller-runtime). So a standby replica never writes
to the API server, not even a finalizer or a progress annotation, and when it takes over its
queue already names every object it has seen: it reconciles them all once.

The queue also sets the order when much arrives at once: a node before its connectors, the
connectors before 400 gemeenten, and a bounded number of workers so that one node's
reconcile is not starved by hundreds of gemeente reconciles at the same time.

Deletion of a Gemeente or SectorConnector waits on the operator's own finalizer until its
messages are delivered (or the force annotation is set); kopf itself keeps no state on the
objects (no finalizers, no progress annotations, no last-handled configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from knooppunt_operator import kube, metrics
from knooppunt_operator.handlers import connector, gemeente, knooppunt
from knooppunt_operator.handlers.context import CONNECTOR, GEMEENTE, KNOOPPUNT, OBSERVE, Context
from knooppunt_operator.workqueue import Backoff, ShutDown, WorkQueue

logger = logging.getLogger(__name__)

FINALIZER = "knooppunt.nl/finalizer"
"""Held by the operator on Gemeenten and SectorConnectors until their messages are delivered."""

PRIORITY = {KNOOPPUNT: 0, OBSERVE: 1, CONNECTOR: 2, GEMEENTE: 3}
KINDS = {KNOOPPUNT: kube.KNOOPPUNT, CONNECTOR: kube.SECTOR_CONNECTOR, GEMEENTE: kube.GEMEENTE}

# Annotations that change what the operator does (anything else, like kubectl's
# last-applied-configuration, does not call for a reconcile).
WATCHED_ANNOTATION_PREFIXES = ("knooppunt.nl/",)


@dataclass(frozen=True, order=True)
class Work:
    what: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.what} {self.namespace}/{self.name}"


Fingerprint = tuple[Any, ...]


def fingerprint(body: Mapping[str, Any]) -> Fingerprint:
    """What of an object calls for a reconcile: its spec (generation), labels, the operator's
    annotations and whether it is being deleted; not its status, not its finalizers."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        bool(meta.get("deletionTimestamp")),
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(
            sorted(
                (k, v) for k, v in annotations.items() if k.startswith(WATCHED_ANNOTATION_PREFIXES)
            )
        ),
    )


Reconcile = Callable[[Context, str, str, Mapping[str, Any]], Awaitable[None]]


class Controller:
    def __init__(self, ctx: Context, *, workers: int = 4, resync_seconds: float = 1800.0) -> None:
        self.ctx = ctx
        self.workers = workers
        self.resync_seconds = resync_seconds
        self.queue: WorkQueue[Work] = WorkQueue(
            priority=lambda work: PRIORITY[work.what], backoff=Backoff(base=0.5, cap=120.0)
        )
        self.seen: dict[Work, Fingerprint] = {}
        self.subscriptions: dict[tuple[str, str], frozenset[str]] = {}
        self.legacy_finalizer: set[Work] = set()
        self.refs: dict[Work, dict[str, Any]] = {}
        self.reported: dict[Work, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        ctx.wake = self.wake

    # ------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._tasks:
            return
        metrics.QUEUE_DEPTH.set_function(lambda: len(self.queue))
        for number in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"worker {number}"))
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))

    async def stop(self) -> None:
        await self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # ---------------------------------------------------------------------------- events

    def on_event(self, what: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a Knooppunt, SectorConnector or Gemeente (no API calls here)."""
        meta = body.get("metadata") or {}
        work = Work(what, meta.get("namespace") or "default", meta["name"])
        if event_type == "DELETED":
            self.ctx.cache.forget(KINDS[what], work.namespace, work.name)
            self.seen.pop(work, None)
            self.refs.pop(work, None)
            self.reported.pop(work, None)
            self.reported.pop(Work(OBSERVE, work.namespace, work.name), None)
            self.legacy_finalizer.discard(work)
            if what == GEMEENTE:
                if self.subscriptions.pop((work.namespace, work.name), None) is not None:
                    self._recount(work.namespace)
            return
        if what == GEMEENTE:
            subs = (body.get("spec") or {}).get("subscriptions") or []
            connectors = frozenset(s.get("connector") for s in subs)
            if self.subscriptions.get((work.namespace, work.name)) != connectors:
                self.subscriptions[(work.namespace, work.name)] = connectors
                self._recount(work.namespace)
        if what == KNOOPPUNT and FINALIZER in (meta.get("finalizers") or []):
            # Versions before the work queue let kopf put it there for its timer.
            self.legacy_finalizer.add(work)
        self.refs[work] = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {"name": work.name, "namespace": work.namespace, "uid": meta.get("uid")},
        }
        current = fingerprint(body)
        if self.seen.get(work) != current:
            self.seen[work] = current
            self.queue.add(work)
            if what == KNOOPPUNT:
                self.queue.add(Work(OBSERVE, work.namespace, work.name))

    def _recount(self, namespace: str) -> None:
        """The gemeenten a node serves changed: its status counts them (one observe per node
        however many gemeenten arrive together)."""
        for known in list(self.seen):
            if known.what == KNOOPPUNT and known.namespace == namespace:
                self.queue.add(Work(OBSERVE, namespace, known.name))

    def on_deployment(self, event_type: str | None, namespace: str, node: str) -> None:
        """A node's Deployment changed: observe the rollout (re-create it when deleted)."""
        self.queue.add(Work(KNOOPPUNT if event_type == "DELETED" else OBSERVE, namespace, node))

    def wake(self, what: str, namespace: str, name: str) -> None:
        """Ask for a reconcile from inside another one (e.g. gemeenten waiting for a CA)."""
        self.queue.add(Work(what, namespace, name))

    def gemeenten_for(self, namespace: str) -> Callable[[frozenset[str]], int]:
        def count(connectors: frozenset[str]) -> int:
            return sum(
                1
                for (ns, _), subs in self.subscriptions.items()
                if ns == namespace and subs & connectors
            )

        return count

    # --------------------------------------------------------------------------- workers

    async def _worker(self) -> None:
        while True:
            await self.ctx.gate.wait()
            try:
                work = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._process(work)
            finally:
                self.queue.done(work)

    async def _resync(self) -> None:
        """Reconcile everything now and then (certificate renewal, drift nobody announced)."""
        while True:
            await asyncio.sleep(self.resync_seconds)
            if self.ctx.gate.is_leader:
                for work in list(self.seen):
                    self.queue.add(work)

    async def _process(self, work: Work) -> None:
        started = time.monotonic()
        result, problem = "success", ""
        try:
            await self.dispatch(work)
        except kopf.TemporaryError as exc:
            result, problem = "retry", str(exc)
            delay = self.queue.retry(work, exc.delay)
            logger.info("%s: %s (again in %.1f s)", work, exc, delay)
        except kopf.PermanentError as exc:
            result, problem = "failed", str(exc)
            self.queue.forget(work)
            logger.error("%s: %s (not retried until the resource changes)", work, exc)
        except kube.ApiError as exc:
            result, problem = "retry", f"API server: {exc}"
            delay = self.queue.retry(work)
            logger.warning("%s: API server: %s (again in %.1f s)", work, exc, delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result, problem = "error", f"{type(exc).__name__}: {exc}"
            delay = self.queue.retry(work)
            logger.exception("%s failed (again in %.1f s)", work, delay)
        else:
            self.queue.forget(work)
            self.reported.pop(work, None)
        finally:
            metrics.RECONCILES.labels(work.what, result).inc()
            metrics.RECONCILE_SECONDS.labels(work.what).observe(time.monotonic() - started)
        if problem:
            await self._report(work, result, problem)

    async def _report(self, work: Work, result: str, problem: str) -> None:
        """A Warning Event on the resource when its reconcile fails, once per distinct problem
        (a retry with the same problem posts nothing new; a success starts afresh)."""
        owner = Work(KNOOPPUNT if work.what == OBSERVE else work.what, work.namespace, work.name)
        ref = self.refs.get(owner)
        if ref is None or self.reported.get(work) == problem:
            return
        self.reported[work] = problem
        reason = "ReconcileRetrying" if result == "retry" else "ReconcileFailed"
        await self.ctx.events.record(ref, reason=reason, type_="Warning", message=problem)

    async def dispatch(self, work: Work) -> None:
        ctx = self.ctx
        if work.what == KNOOPPUNT:
            if work in self.legacy_finalizer:
                body = await ctx.read(kube.KNOOPPUNT, work.namespace, work.name)
                if body is not None:
                    await self._set_finalizer(kube.KNOOPPUNT, body, present=False)
                self.legacy_finalizer.discard(work)
            await knooppunt.reconcile(ctx, work.namespace, work.name)
        elif work.what == OBSERVE:
            await knooppunt.observe(
                ctx, work.namespace, work.name, gemeenten=self.gemeenten_for(work.namespace)
            )
            if Work(KNOOPPUNT, work.namespace, work.name) in self.seen:
                self.queue.add_after(work, ctx.config.observe_interval)
        elif work.what == CONNECTOR:
            await self._finalized(work, connector.reconcile, connector.delete)
        elif work.what == GEMEENTE:
            await self._finalized(work, gemeente.reconcile, gemeente.delete)
        else:  # pragma: no cover - keys are made in this module only
            raise ValueError(f"unknown work {work}")

    async def _finalized(self, work: Work, reconcile: Reconcile, delete: Reconcile) -> None:
        """Reconcile under the finalizer; on deletion let go only when ``delete`` agrees."""
        kind = KINDS[work.what]
        body = await self.ctx.read(kind, work.namespace, work.name)
        if body is None:
            return
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            if FINALIZER in (meta.get("finalizers") or []):
                await delete(self.ctx, work.namespace, work.name, body)
                await self._set_finalizer(kind, body, present=False)
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            body = await self._set_finalizer(kind, body, present=True)
            if body is None:
                return
        await reconcile(self.ctx, work.namespace, work.name, body)

    async def _set_finalizer(
        self, kind: kube.Kind, body: Mapping[str, Any], *, present: bool
    ) -> dict[str, Any] | None:
        """Add or drop the operator's finalizer, on the version read (409 when it changed)."""
        meta = body["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if present:
            finalizers.append(FINALIZER)
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}
        }
        return await self.ctx.patch(kind, meta.get("namespace"), meta["name"], patch)
