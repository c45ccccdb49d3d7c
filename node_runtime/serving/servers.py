"""Serving plumbing shared by the node and the façade: the TLS listener, the optional plain
health port, TLS material reloads, and running in a background thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import uvicorn

from node_runtime.security.tls.contexts import ReloadableServerContext, reloadable_server_context
from node_runtime.security.tls.uvicorn_protocol import ConnectionLimits, tls_config

log = logging.getLogger("knooppunt.serving")


def server_tls(
    role: str,
    cert: Path | None,
    key: Path | None,
    trust: Path | None,
    crl: Path | None,
    *,
    require_client_cert: bool = True,
    issuers: Path | None = None,
    trusted_cas_speak: bool = False,
) -> ReloadableServerContext:
    if cert is None or key is None or trust is None:
        missing = [
            n for n, v in (("tls_cert", cert), ("tls_key", key), ("tls_trust", trust)) if v is None
        ]
        raise SystemExit(f"HTTPS needs {', '.join(missing)}: the {role} never serves plain HTTP")
    return reloadable_server_context(
        cert,
        key,
        trust,
        crl,
        require_client_cert=require_client_cert,
        issuers=issuers,
        trusted_cas_speak=trusted_cas_speak,
    )


def connection_limits(settings: Any) -> ConnectionLimits:
    """The connection deadlines and per-client cap of a node's or façade's settings."""
    return ConnectionLimits(
        idle_timeout=settings.idle_timeout,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_per_client=settings.max_connections_per_client,
    )


def tls_watcher(files: list[Path | None], tls: ReloadableServerContext) -> Callable[[], None]:
    """A tick that reloads the TLS context when the CRL, trust bundle, certificate or issuer
    policy change (each reload starts a new trust generation: open connections re-check)."""
    watched = [p for p in files if p is not None]

    def stamp() -> tuple[float, ...]:
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in watched)

    last = [stamp()]

    def check() -> None:
        now = stamp()
        if now != last[0]:
            last[0] = now
            try:
                tls.reload()
                log.info("TLS material reloaded")
            except Exception as exc:  # noqa: BLE001 - keep the last good context
                log.error(
                    "TLS reload failed; keeping the previous context", extra={"error": str(exc)}
                )

    return check


#: Set in the task of a listener that is not the process's main one.
_secondary: ContextVar[bool] = ContextVar("knooppunt_secondary_listener", default=False)


class _ProcessLinesOnce(logging.Filter):
    """uvicorn says "Started/Finished server process" per server; a process says it once: the
    lines of secondary listeners (the health port) are dropped."""

    MESSAGES = ("Started server process [%d]", "Finished server process [%d]")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg in self.MESSAGES and _secondary.get())


logging.getLogger("uvicorn.error").addFilter(_ProcessLinesOnce())


class Listener(uvicorn.Server):
    """A uvicorn server that logs what it really listens on.

    Our TLS comes as an SSL context factory uvicorn does not see, so uvicorn itself would
    announce the mutual-TLS port as ``http://``.
    """

    def __init__(
        self, config: uvicorn.Config, *, scheme: str, note: str, announce_process: bool = True
    ) -> None:
        super().__init__(config)
        self.scheme = scheme
        self.note = note
        self.announce_process = announce_process

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # runs in a task of its own (serve_all), so the flag stays with this listener
        _secondary.set(not self.announce_process)
        await super().serve(sockets)

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        host = "0.0.0.0" if self.config.host is None else self.config.host  # noqa: S104
        port = self.config.port or int(listeners[0].getsockname()[1])
        if ":" in host:
            host = f"[{host}]"
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s://%s:%d (%s; Press CTRL+C to quit)",
            self.scheme,
            host,
            port,
            self.note,
        )


def uvicorn_servers(
    app: Any,
    *,
    tls: ReloadableServerContext,
    host: str,
    port: int,
    health: Any | None = None,
    health_port: int | None = None,
    limits: ConnectionLimits | None = None,
) -> list[uvicorn.Server]:
    """The mutual-TLS listener, plus a plain-HTTP health listener when a port is given."""
    config = tls_config(
        app,
        ssl_context=tls,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        h11_max_incomplete_event_size=64 * 1024,
        limits=limits or ConnectionLimits(),
    )
    servers: list[uvicorn.Server] = [Listener(config, scheme="https", note="mutual TLS")]
    if health is not None and health_port:
        servers.append(
            Listener(
                uvicorn.Config(
                    health,
                    host=host,
                    port=health_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                ),
                scheme="http",
                note="health only",
                announce_process=False,
            )
        )
    return servers


async def serve_all(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(s.serve() for s in servers))


def run_forever(servers: list[uvicorn.Server]) -> None:
    asyncio.run(serve_all(servers))


def start_background(
    servers: list[uvicorn.Server], *, name: str, default_port: int
) -> tuple[threading.Thread, int]:
    """Run the servers in a daemon thread; returns once they accept connections."""
    thread = threading.Thread(target=run_forever, args=(servers,), name=name, daemon=True)
    thread.start()
    for _ in range(400):
        if all(s.started for s in servers):
            break
        if not thread.is_alive():
            raise RuntimeError(f"{name} failed to start")
        threading.Event().wait(0.025)
    else:
        raise RuntimeError(f"{name} did not start in time")
    sockets = servers[0].servers[0].sockets if servers[0].servers else []
    port = int(sockets[0].getsockname()[1]) if sockets else default_port
    return thread, port


def stop_servers(
    servers: list[uvicorn.Server], thread: threading.Thread, timeout: float = 15.0
) -> None:
    for server in servers:
        server.should_exit = True
    thread.join(timeout)
