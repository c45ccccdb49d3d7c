"""Serve the façade over HTTPS with client-certificate authentication (uvicorn)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from node_runtime.facade.app import create_facade_app
from node_runtime.facade.assembly import Facade, build_facade
from node_runtime.facade.config import FacadeSettings
from node_runtime.facade.routes import health
from node_runtime.security.tls.contexts import ReloadableServerContext
from node_runtime.serving.servers import (
    connection_limits,
    run_forever,
    server_tls,
    start_background,
    stop_servers,
    tls_watcher,
    uvicorn_servers,
)
from node_runtime.web.applications import application

log = logging.getLogger("knooppunt.facade.server")


def health_app(facade: Facade) -> FastAPI:
    """The optional plain-HTTP port: only /healthz and /readyz."""
    app = application(
        title="Knooppunt façade health", openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.facade = facade
    app.include_router(health.router)
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
        stop_servers(self.servers, self.thread, timeout)


def build_facade_servers(
    settings: FacadeSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Facade, list[uvicorn.Server], ReloadableServerContext]:
    facade = build_facade(settings, transport=transport)
    tls = server_tls(
        "façade",
        settings.tls_cert,
        settings.tls_key,
        settings.tls_trust,
        settings.tls_crl,
        issuers=settings.tls_issuers,
        trusted_cas_speak=True,
    )
    facade.on_tick.append(
        tls_watcher(
            [settings.tls_crl, settings.tls_trust, settings.tls_cert, settings.tls_issuers], tls
        )
    )
    app = create_facade_app(settings, facade=facade)
    servers = uvicorn_servers(
        app,
        tls=tls,
        host=settings.host,
        port=settings.port,
        health=health_app(facade),
        health_port=settings.health_port,
        limits=connection_limits(settings),
    )
    return facade, servers, tls


def serve_facade(settings: FacadeSettings) -> None:
    """Run until interrupted (the `knooppunt facade` command)."""
    _facade, servers, _tls = build_facade_servers(settings)
    run_forever(servers)


def start_facade_in_thread(settings: FacadeSettings) -> RunningFacade:
    """Start the façade in a background thread and wait until it accepts connections."""
    facade, servers, tls = build_facade_servers(settings)
    thread, port = start_background(servers, name="knooppunt-facade", default_port=settings.port)
    return RunningFacade(facade, servers, thread, port, tls)
