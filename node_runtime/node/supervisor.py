"""The node's push delivery process: started, watched, restarted and stopped by the node.

With ``delivery_worker: process`` (the default; what the operator deploys) a node runs intake in
its own process and push delivery in a child process, ``knooppunt deliver``, so the two use
separate cores and neither waits for the other's interpreter lock (see
docs/decisions/delivery-process.md). The supervisor, in the node's event loop:

* starts the child with the node's settings as JSON on its standard input (a database password
  never appears on a command line or in ``ps``), a wake pipe and a private Unix socket;
* wakes it: one byte on the pipe per intake commit, so it claims at once instead of at its next
  poll; when the node process is gone the child reads end of file and stops;
* gives it one lease owner for the node's lifetime: a restarted child first gives back the
  leases its dead predecessor held (its pushes are retried with the same idempotency key)
  instead of leaving them until they run out;
* restarts it when it ends unexpectedly, after a pause that doubles from ``first_pause`` to
  ``longest_pause`` (back to the first after it ran ``stable_after`` seconds);
* stops it with the node: SIGTERM (it finishes and settles in-flight pushes for up to 5 s),
  SIGKILL after ``stop_grace`` seconds;
* reports: :attr:`up` (the node's readiness), ``knooppunt_delivery_process_up`` and
  ``_restarts``, and the child's own metrics, read from its socket at each scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from node_runtime.node.config import Settings
from node_runtime.observability.metrics import Metrics

log = logging.getLogger("knooppunt.delivery.supervisor")

SOCKET_DIR_PREFIX = "knooppunt-delivery-"  # the delivery process removes it when it ends

COMMAND = (sys.executable, "-m", "node_runtime.cli", "deliver")


class DeliverySupervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        command: Sequence[str] = COMMAND,
        first_pause: float = 0.5,
        longest_pause: float = 30.0,
        stable_after: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.settings = settings
        self.command = list(command)
        self.owner = f"delivery-{uuid.uuid4().hex[:12]}"
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self.stable_after = stable_after
        self.stop_grace = stop_grace
        self.process: asyncio.subprocess.Process | None = None
        self.up = False
        self.restarts = 0
        self._dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))  # 0700: ours only
        self.socket_path = self._dir / "metrics.sock"
        self._wake_lock = threading.Lock()
        self._wake_fd: int | None = None
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._up = Gauge(
            "knooppunt_delivery_process_up",
            "1 while the node's push delivery process runs and answers, 0 while it is down or "
            "restarting (readiness fails meanwhile).",
            registry=metrics.registry,
        )
        self._restarts = Counter(
            "knooppunt_delivery_process_restarts",
            "Times the push delivery process ended unexpectedly and was started again.",
            registry=metrics.registry,
        )
        metrics.delivery_source = self.collect

    # -- the node's side ---------------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: new deliveries were committed (one byte; a full pipe already says so)."""
        with self._wake_lock:
            if self._wake_fd is None:
                return
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self._wake_fd, b"\x01")

    def collect(self) -> list[Metric]:
        """The child's metric families (nothing while it is down). Blocking: call it from a
        thread, as the /metrics route does."""
        if not self.up:
            return []
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2.0)
                conn.connect(str(self.socket_path))
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            log.warning("delivery process metrics unavailable", extra={"error": str(exc)})
            return []
        return list(text_string_to_metric_families(b"".join(chunks).decode()))

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a delivery process running until :meth:`stop`."""
        self._stop_requested = asyncio.Event()
        pause = self.first_pause
        while not self._stopping:
            started = time.monotonic()
            code = await self._run_once()
            if self._stopping:
                return
            self.restarts += 1
            self._restarts.inc()
            if time.monotonic() - started >= self.stable_after:
                pause = self.first_pause
            log.error(
                "delivery process ended; starting it again",
                extra={"exit_code": code, "pause_seconds": pause},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), pause)
            pause = min(pause * 2, self.longest_pause)

    async def stop(self) -> None:
        """Stop the delivery process: SIGTERM, SIGKILL after ``stop_grace`` seconds."""
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_grace)
            except TimeoutError:
                log.error("delivery process did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._set_up(False)
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _run_once(self) -> int:
        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(write_fd, False)
            self._dir.mkdir(mode=0o700, exist_ok=True)  # a child that ended removed it
            self.socket_path.unlink(missing_ok=True)
            process = await asyncio.create_subprocess_exec(
                *self.command,
                "--settings-stdin",
                "--owner",
                self.owner,
                "--wake-fd",
                str(read_fd),
                "--metrics-socket",
                str(self.socket_path),
                "--log-level",
                logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(read_fd,),
                # a terminal's Ctrl-C reaches the node only, which then stops the child (else
                # the child would stop first and be restarted during the node's shutdown)
                start_new_session=True,
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)  # the child's end: only the child holds it now
        self.process = process
        if self._stopping:  # stop() came while it was being started: it saw no process
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        with self._wake_lock:
            self._wake_fd = write_fd
        ready = asyncio.create_task(self._await_ready(process))
        try:
            assert process.stdin is not None
            with contextlib.suppress(ConnectionError):
                process.stdin.write(self.settings.model_dump_json().encode())
                await process.stdin.drain()
                process.stdin.close()
            return await process.wait()
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            self._set_up(False)
            with self._wake_lock:
                os.close(write_fd)
                self._wake_fd = None

    async def _await_ready(self, process: asyncio.subprocess.Process) -> None:
        """Up once the child answers on its socket (it opens it when its worker is built)."""
        while process.returncode is None:
            try:
                _reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._set_up(True)
            log.info("delivery process running", extra={"pid": process.pid})
            return

    def _set_up(self, up: bool) -> None:
        self.up = up
        self._up.set(1 if up else 0)
