"""Serve the façade over HTTPS with client-certificate authentication (uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from node_runtime.facade.app import Facade, build_facade, create_facade_app, health
from node_runtime.facade.config import FacadeSettings
from node_runtime.tls.contexts import ReloadableServerContext, reloadable_server_context
from node_runtime.tls.uvicorn_protocol import tls_config

log = logging.getLogger("knooppunt.facade.server")


def _server_tls(settings: FacadeSettings) -> ReloadableServerContext:
    missing = [n for n in ("tls_cert", "tls_key", "tls_trust") if getattr(settings, n) is None]
    if missing:
        raise SystemExit(f"HTTPS needs {', '.join(missing)}: the façade never serves plain HTTP")
    assert settings.tls_cert and settings.tls_key and settings.tls_trust
    return reloadable_server_context(settings.tls_cert, settings.tls_key, settings.tls_trust,
                                     settings.tls_crl, require_client_cert=True)


def _tls_watcher(settings: FacadeSettings, tls: ReloadableServerContext) -> Callable[[], None]:
    """Reload the TLS context when the CRL, trust bundle or certificate files change."""
    files = [p for p in (settings.tls_crl, settings.tls_trust, settings.tls_cert) if p]

    def stamp() -> tuple[float, ...]:
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in files)

    last = [stamp()]

    def check() -> None:
        now = stamp()
        if now != last[0]:
            last[0] = now
            try:
                tls.reload()
                log.info("TLS material reloaded")
            except Exception as exc:  # noqa: BLE001 - keep the last good context
                log.error("TLS reload failed; keeping the previous context",
                          extra={"error": str(exc)})

    return check


def health_app(facade: Facade) -> FastAPI:
    """The optional plain-HTTP port: only /healthz and /readyz."""
    app = FastAPI(title="Knooppunt façade health", openapi_url=None, docs_url=None,
                  redoc_url=None)
    app.state.facade = facade
    app.include_router(health)
    return app


@dataclass
class RunningFacade:
    facade: Facade
    servers: list[uvicorn.Server]
    thread: threading.Thread
    port: int
    tls: ReloadableServerContext

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(timeout)


def build_facade_servers(
    settings: FacadeSettings, *, transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Facade, list[uvicorn.Server], ReloadableServerContext]:
    facade = build_facade(settings, transport=transport)
    tls = _server_tls(settings)
    facade.on_tick.append(_tls_watcher(settings, tls))
    app = create_facade_app(settings, facade=facade)
    config = tls_config(app, ssl_context=tls, host=settings.host, port=settings.port,
                        log_config=None, access_log=False, timeout_graceful_shutdown=10,
                        h11_max_incomplete_event_size=64 * 1024)
    servers = [uvicorn.Server(config)]
    if settings.health_port:
        servers.append(uvicorn.Server(uvicorn.Config(
            health_app(facade), host=settings.host, port=settings.health_port, log_config=None,
            access_log=False, lifespan="off")))
    return facade, servers, tls


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(s.serve() for s in servers))


def serve_facade(settings: FacadeSettings) -> None:
    """Run until interrupted (the `knooppunt facade` command)."""
    _facade, servers, _tls = build_facade_servers(settings)
    asyncio.run(_serve_all(servers))


def start_facade_in_thread(settings: FacadeSettings) -> RunningFacade:
    """Start the façade in a background thread and wait until it accepts connections."""
    facade, servers, tls = build_facade_servers(settings)

    def run() -> None:
        asyncio.run(_serve_all(servers))

    thread = threading.Thread(target=run, name="knooppunt-facade", daemon=True)
    thread.start()
    for _ in range(400):
        if all(s.started for s in servers):
            break
        if not thread.is_alive():
            raise RuntimeError("façade failed to start")
        threading.Event().wait(0.025)
    else:
        raise RuntimeError("façade did not start in time")
    sockets = servers[0].servers[0].sockets if servers[0].servers else []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    return RunningFacade(facade, servers, thread, port, tls)
