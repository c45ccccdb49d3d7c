"""The delivery process (``knooppunt deliver``): the push delivery worker on its own.

Started by the node's :class:`~node_runtime.node.supervisor.DeliverySupervisor`, it builds what
the worker needs from the same settings as the node — the live configuration (resource files
and, on a cluster, the Gemeente watch), the database, the client certificate — and nothing
else: no listener, no intake, no timers. It

* first gives back the leases its predecessor under the same ``owner`` held (that process has
  ended: the supervisor starts a successor only after the predecessor's exit);
* answers its Prometheus metrics to anyone connecting to ``metrics_socket`` (a Unix socket in
  a directory only the node's user can enter), which the node adds to its own /metrics;
* claims at once when a byte arrives on ``wake_fd``, and stops when that pipe reaches end of
  file (the node process is gone), on SIGTERM and on SIGINT: in-flight pushes get up to 5 s to
  finish and are settled; what is cut off is retried from its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from prometheus_client import generate_latest

from node_runtime.model.reloading import watch_files
from node_runtime.node.assembly import build_holder, build_worker, open_store
from node_runtime.node.config import Settings
from node_runtime.node.supervisor import SOCKET_DIR_PREFIX
from node_runtime.observability.metrics import Metrics
from node_runtime.observability.telemetry import Telemetry
from node_runtime.store.outbox import Outbox

log = logging.getLogger("knooppunt.delivery.process")


async def run_delivery(
    settings: Settings,
    *,
    owner: str,
    wake_fd: int | None = None,
    metrics_socket: Path | None = None,
) -> None:
    metrics = Metrics()
    holder, _loader, watch = build_holder(settings, metrics)
    store = open_store(settings, holder)
    store.migrate()  # the node migrated already; this only checks the version
    outbox = Outbox(store)
    released = await asyncio.to_thread(outbox.release_owner, owner)
    if released:
        log.warning(
            "gave back the leases of the previous delivery process", extra={"deliveries": released}
        )
    telemetry = Telemetry(
        "knooppunt-node",
        endpoint=settings.otlp_endpoint,
        attributes={"knooppunt.node": settings.node, "knooppunt.process": "delivery"},
    )
    worker = build_worker(settings, holder, outbox, metrics, telemetry, owner=owner)
    if watch is not None:

        def tenants_changed() -> None:
            if holder.reload():
                log.info("tenants reloaded", extra={"generation": holder.current.generation})

        watch.on_change = tenants_changed

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if wake_fd is not None:
        os.set_blocking(wake_fd, False)

        def woken() -> None:
            try:
                data = os.read(wake_fd, 4096)
            except BlockingIOError:
                return
            if data:
                worker.wake()
                return
            loop.remove_reader(wake_fd)
            log.warning("the node process is gone; stopping delivery")
            stop.set()

        loop.add_reader(wake_fd, woken)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await asyncio.to_thread(generate_latest, metrics.registry))
            await writer.drain()
        except ConnectionError:
            pass  # the reader left (the supervisor's first connect only checks we are up)
        finally:
            writer.close()

    running = asyncio.create_task(worker.run(), name="delivery-worker")
    reloads = asyncio.create_task(
        watch_files(
            list(settings.resources),
            interval=settings.reload_interval,
            holder=holder,
            ticks=[],
            on_reloaded=lambda g: log.info("configuration reloaded", extra={"generation": g}),
        )
    )
    server = None
    if metrics_socket is not None:  # opened last: the supervisor counts us up from here
        server = await asyncio.start_unix_server(answer, path=str(metrics_socket))
        os.chmod(metrics_socket, 0o600)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():  # the worker ended by itself: a failure; exit so it is restarted
            running.result()
            raise RuntimeError("the delivery worker stopped unexpectedly")
        log.info("stopping delivery")
        await worker.stop()
        await running
    finally:
        stopping.cancel()
        reloads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloads
        if server is not None:
            server.close()
        if metrics_socket is not None:
            metrics_socket.unlink(missing_ok=True)
            if metrics_socket.parent.name.startswith(SOCKET_DIR_PREFIX):
                # the node's private directory for it: gone with us, even when the node was
                # killed (the node makes it again for a successor)
                with contextlib.suppress(OSError):
                    metrics_socket.parent.rmdir()
        if watch is not None:
            watch.stop()
        telemetry.shutdown()
        store.close()
