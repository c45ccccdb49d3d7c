"""Everything one running node holds: state, store, services. Built once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from node_runtime.conversations.events import EventSink
from node_runtime.conversations.matching import Matcher
from node_runtime.conversations.monitor import ConversationMonitor
from node_runtime.jobs.delivery import DeliveryWorker
from node_runtime.jobs.envelopes import Envelope
from node_runtime.jobs.retention import run_retention
from node_runtime.ledger.checkpoints import origin_for
from node_runtime.ledger.service import LedgerService, load_signer
from node_runtime.ledger.tree import LogTree
from node_runtime.messages.compiled import ConnectorCache
from node_runtime.model.loading import ResourceSet, load_paths
from node_runtime.model.reloading import StateHolder, watch_files
from node_runtime.node.config import Settings
from node_runtime.node.supervisor import DeliverySupervisor
from node_runtime.observability.metrics import Metrics
from node_runtime.observability.telemetry import DISABLED, Telemetry
from node_runtime.pipeline.intake import IntakeService
from node_runtime.security.callers import PeerCertificate
from node_runtime.security.pseudonyms import Pseudonymizer, load_or_create_key
from node_runtime.security.tls.contexts import client_context
from node_runtime.shadow.runner import ShadowRunner
from node_runtime.shadow.status import StatusWriter
from node_runtime.state.kubernetes_source import GemeenteWatch, from_kubeconfig, in_cluster
from node_runtime.state.node_state import NodeState, build_state
from node_runtime.store import database_tls
from node_runtime.store.outbox import Outbox
from node_runtime.store.records import DeliveryRecord
from node_runtime.store.sql import SqlStore, now, sqlite_url

log = logging.getLogger("knooppunt.node")

IdentityExtractor = Callable[[Request], PeerCertificate | None]


@dataclass
class Node:
    settings: Settings
    holder: StateHolder[NodeState]
    store: SqlStore
    intake: IntakeService
    metrics: Metrics
    pseudonymizer: Pseudonymizer
    identity: IdentityExtractor
    loader: Callable[[], ResourceSet]
    ledger: LedgerService
    conversations: ConversationMonitor
    on_tick: list[Callable[[], None]] = field(default_factory=list)
    gemeente_watch: GemeenteWatch | None = None
    telemetry: Telemetry = DISABLED
    outbox: Outbox | None = None
    worker: DeliveryWorker | None = None
    delivery: DeliverySupervisor | None = None
    _worker_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _retention: asyncio.Task[None] | None = field(default=None, repr=False)
    _reloader: asyncio.Task[None] | None = field(default=None, repr=False)
    _checkpoints: asyncio.Task[None] | None = field(default=None, repr=False)
    _conversations: asyncio.Task[None] | None = field(default=None, repr=False)
    shadow_status: StatusWriter | None = None
    _shadow_status: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._reloader = asyncio.create_task(self._watch())
        self._checkpoints = asyncio.create_task(self.ledger.run())
        self._conversations = asyncio.create_task(self.conversations.run())
        if self.intake.shadow is not None:
            self.intake.shadow.start()
        if self.shadow_status is not None:
            self._shadow_status = asyncio.create_task(self.shadow_status.run())
        self._retention = asyncio.create_task(self._retention_loop())
        if self.worker is not None:
            self._worker_task = asyncio.create_task(self.worker.run())
        if self.delivery is not None:
            self._worker_task = asyncio.create_task(self.delivery.run())

    async def _retention_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(run_retention, self.holder.current, self.store, now=now())
            except Exception:
                log.exception("retention run failed")
            await asyncio.sleep(self.settings.retention_interval)

    async def stop(self) -> None:
        if self.intake.shadow is not None:
            await asyncio.to_thread(self.intake.shadow.stop)
        for task in (self._checkpoints, self._conversations, self._shadow_status):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self.worker is not None and self._worker_task is not None:
            await self.worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        if self.delivery is not None and self._worker_task is not None:
            await self.delivery.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        if self.gemeente_watch is not None:
            self.gemeente_watch.stop()
        await self.store.flush()  # refusal records written behind their answers
        self.telemetry.shutdown()
        self.store.close()

    async def _watch(self) -> None:
        """Pick up changed resources (e.g. a new gemeente) live, without a restart."""

        def reloaded(generation: int) -> None:
            self.metrics.config_generation.set(generation)
            log.info("configuration reloaded", extra={"generation": generation})

        await watch_files(
            list(self.settings.resources),
            interval=self.settings.reload_interval,
            holder=self.holder,
            ticks=self.on_tick,
            on_reloaded=reloaded,
        )

    def reload_from_watch(self) -> None:
        """A Gemeente changed in the API: rebuild the state now (called from the watch)."""
        if self.holder.reload():
            self.metrics.config_generation.set(self.holder.current.generation)
            log.info(
                "tenants reloaded from the Kubernetes API",
                extra={"generation": self.holder.current.generation},
            )

    def wake_delivery(self) -> None:
        """New or replayed deliveries are waiting (thread-safe)."""
        if self.worker is not None:
            self.worker.wake()
        if self.delivery is not None:
            self.delivery.wake()

    def delivery_state(self) -> str:
        """off, inline (in this process), running or down (the delivery process)."""
        if self.delivery is not None:
            return "running" if self.delivery.up else "down"
        return "inline" if self.worker is not None else "off"

    def ready(self) -> bool:
        """The database answers, and the delivery process (if any) runs."""
        if self.delivery_state() == "down":
            return False
        try:
            return self.store.ping()
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            return False


def build_node(
    settings: Settings,
    *,
    identity: IdentityExtractor,
    store: SqlStore | None = None,
) -> Node:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    holder, loader, watch = build_holder(settings, metrics)
    if store is None:
        store = open_store(settings, holder)
    store.migrate()
    pseudonymizer = Pseudonymizer(load_or_create_key(settings.key_path()))
    telemetry = Telemetry(
        "knooppunt-node",
        endpoint=settings.otlp_endpoint,
        attributes={"knooppunt.node": settings.node},
    )
    outbox = Outbox(store)
    worker: DeliveryWorker | None = None
    supervisor: DeliverySupervisor | None = None
    if settings.delivery_enabled and settings.delivery_worker == "inline":
        worker = build_worker(settings, holder, outbox, metrics, telemetry)
    elif settings.delivery_enabled:
        supervisor = DeliverySupervisor(settings, metrics=metrics)
    wake = worker.wake if worker is not None else supervisor.wake if supervisor else None
    intake = IntakeService(
        store=store,
        pseudonymizer=pseudonymizer,
        metrics=metrics,
        max_depth=holder.current.knooppunt.spec.limits.max_xml_depth,
        public_url=settings.public_url,
        on_commit=wake,
        conversations=Matcher(load_or_create_key(settings.key_path())),
        shadow=ShadowRunner(
            store=store,
            registry=metrics.registry,
            config_map_root=settings.shadow_config_map_root,
            origin=lambda name: loader().origin_of("SectorConnector", name),
        ),
    )
    intake.telemetry = telemetry
    ledger = LedgerService(
        LogTree(store.engine, origin=origin_for(settings.node)),
        signer=load_signer(
            settings.log_signing_key or settings.tls_key,
            settings.log_signing_cert or settings.tls_cert,
        ),
        interval=lambda: holder.current.knooppunt.spec.processing_log.checkpoint_interval_seconds,
        registry=metrics.registry,
    )
    monitor = ConversationMonitor(
        store.engine, registry=metrics.registry, interval=settings.conversation_interval
    )
    shadow_status: StatusWriter | None = None
    if watch is not None and settings.namespace:  # on a cluster: Events on the Knooppunt
        monitor.on_overdue.append(
            EventSink(watch.access, settings.namespace, settings.node, uid=settings.node_uid)
        )
        runner = intake.shadow
        assert runner is not None
        shadow_status = StatusWriter(
            watch.access,
            settings.namespace,
            settings.node,
            reports=lambda: runner.snapshot(holder.current),
            connectors=lambda: sorted(holder.current.connectors),
            interval=settings.shadow_status_interval,
        )
    node = Node(
        settings,
        holder,
        store,
        intake,
        metrics,
        pseudonymizer,
        identity,
        loader,
        ledger,
        monitor,
        outbox=outbox,
        worker=worker,
        delivery=supervisor,
        shadow_status=shadow_status,
    )
    node.telemetry = telemetry
    if watch is not None:
        node.gemeente_watch = watch
        watch.on_change = node.reload_from_watch
    return node


def build_holder(
    settings: Settings, metrics: Metrics
) -> tuple[StateHolder[NodeState], Callable[[], ResourceSet], GemeenteWatch | None]:
    """The node's live configuration: its resource files, and on a cluster its Gemeente
    resources watched in the Kubernetes API (the watch is started)."""
    paths: list[Path] = list(settings.resources)
    watch: GemeenteWatch | None = None
    if settings.gemeenten_source == "kubernetes":
        if not settings.namespace:
            raise ValueError("gemeenten_source kubernetes needs a namespace")
        access = from_kubeconfig(settings.kubeconfig) if settings.kubeconfig else in_cluster()
        watch = GemeenteWatch(access, settings.namespace)
        watch.start()

    def loader() -> ResourceSet:
        resources = load_paths(paths)
        if watch is not None:
            resources.gemeenten = watch.snapshot()
        return resources

    def on_error(exc: Exception) -> None:
        metrics.config_errors.inc()
        log.error(
            "configuration reload refused; keeping the previous one", extra={"error": str(exc)}
        )

    cache = ConnectorCache(config_map_root=settings.config_map_root)
    holder: StateHolder[NodeState] = StateHolder(
        loader,
        lambda res, gen: build_state(res, node=settings.node, cache=cache, generation=gen),
        on_error=on_error,
    )
    return holder, loader, watch


def open_store(settings: Settings, holder: StateHolder[NodeState]) -> SqlStore:
    """The node's database: PostgreSQL when a URL is set, else its SQLite file."""
    if settings.database_url:
        connect_args = settings.database_tls().connect_args(settings.database_url)
        log.info("PostgreSQL connection TLS", extra={"tls": database_tls.describe(connect_args)})
        return SqlStore(settings.database_url, connect_args=connect_args)
    database = settings.sqlite_path(holder.current.knooppunt.spec.storage.sqlite_path)
    database.parent.mkdir(parents=True, exist_ok=True)
    return SqlStore(sqlite_url(database))


def build_worker(
    settings: Settings,
    holder: StateHolder[NodeState],
    outbox: Outbox,
    metrics: Metrics,
    telemetry: Telemetry,
    *,
    owner: str | None = None,
) -> DeliveryWorker:
    """The push delivery worker, configured by the node's live state (in the node's process
    or in its delivery process)."""
    worker = DeliveryWorker(
        outbox=outbox,
        spec=lambda: holder.current.knooppunt.spec.delivery,
        client_ssl=_delivery_ssl(settings),
        metrics=metrics,
        node_name=lambda: holder.current.name,
        envelope=lambda d: _envelope(holder.current, d),
        node_oin=lambda: holder.current.knooppunt.spec.oin,
        owner=owner,
    )
    worker.telemetry = telemetry
    return worker


def _envelope(state: NodeState, d: DeliveryRecord) -> Envelope:
    """The envelope the delivery's subscription asks for (CloudEvents unless it says plain)."""
    gemeente = state.gemeenten_by_code.get(d.mailbox_id)
    if gemeente is not None:
        for sub in gemeente.spec.subscriptions:
            if sub.connector == d.connector and sub.purpose == d.purpose:
                return sub.delivery.envelope
    return "cloudevents"


def _delivery_ssl(settings: Settings) -> ssl.SSLContext:
    trust = settings.delivery_trust or settings.tls_trust
    if trust is None:
        return ssl.create_default_context()
    return client_context(settings.delivery_cert, settings.delivery_key, trust)
