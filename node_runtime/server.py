"""Serve a node over HTTPS with client-certificate authentication (uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from node_runtime.app import create_app
from node_runtime.config import Settings
from node_runtime.identity import CertificateIdentity
from node_runtime.node import Node, build_node
from node_runtime.routes import health
from node_runtime.tls.contexts import ReloadableServerContext, reloadable_server_context
from node_runtime.tls.uvicorn_protocol import tls_config

log = logging.getLogger("knooppunt.server")


def _server_tls(settings: Settings, *, require_client_cert: bool) -> ReloadableServerContext:
    missing = [n for n in ("tls_cert", "tls_key", "tls_trust") if getattr(settings, n) is None]
    if missing:
        raise SystemExit(f"HTTPS needs {', '.join(missing)}: the node never serves plain HTTP")
    assert settings.tls_cert and settings.tls_key and settings.tls_trust
    return reloadable_server_context(settings.tls_cert, settings.tls_key, settings.tls_trust,
                                     settings.tls_crl, require_client_cert=require_client_cert)


def _crl_watcher(settings: Settings, tls: ReloadableServerContext) -> Callable[[], None]:
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


def health_app(node: Node) -> FastAPI:
    """The optional plain-HTTP port: only /healthz, /readyz and /metrics."""
    app = FastAPI(title="Knooppunt health", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.node = node
    app.include_router(health.router)
    return app


@dataclass
class RunningNode:
    node: Node
    servers: list[uvicorn.Server]
    thread: threading.Thread
    port: int
    tls: ReloadableServerContext

    def stop(self, timeout: float = 15.0) -> None:
        for server in self.servers:
            server.should_exit = True
        self.thread.join(timeout)


def build_servers(settings: Settings, node: Node | None = None) -> tuple[Node, list[uvicorn.Server],
                                                                          ReloadableServerContext]:
    if node is None:
        holder_ref: list[Node] = []
        identity = CertificateIdentity(
            proxies=lambda: holder_ref[0].holder.current.knooppunt.spec.security.trusted_proxies,
            trust_bundle=settings.tls_trust, crl=settings.tls_crl,
            header=settings.trusted_proxy_header)
        node = build_node(settings, identity=identity)
        holder_ref.append(node)
    proxies = node.holder.current.knooppunt.spec.security.trusted_proxies
    # Behind a trusted proxy the proxy may connect without a client certificate; every
    # certificate that is presented is still verified in the handshake.
    tls = _server_tls(settings, require_client_cert=not proxies)
    node.on_tick.append(_crl_watcher(settings, tls))
    app = create_app(settings, identity=node.identity, node=node)
    config = tls_config(app, ssl_context=tls, host=settings.host, port=settings.port,
                        log_config=None, access_log=False, timeout_graceful_shutdown=10,
                        h11_max_incomplete_event_size=64 * 1024)
    servers = [uvicorn.Server(config)]
    if settings.health_port:
        servers.append(uvicorn.Server(uvicorn.Config(
            health_app(node), host=settings.host, port=settings.health_port, log_config=None,
            access_log=False, lifespan="off")))
    return node, servers, tls


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(s.serve() for s in servers))


def serve(settings: Settings) -> None:
    """Run until interrupted (the `knooppunt up` command)."""
    _node, servers, _tls = build_servers(settings)
    asyncio.run(_serve_all(servers))


def start_in_thread(settings: Settings) -> RunningNode:
    """Start a node in a background thread and wait until it accepts connections."""
    node, servers, tls = build_servers(settings)

    def run() -> None:
        asyncio.run(_serve_all(servers))

    thread = threading.Thread(target=run, name="knooppunt-node", daemon=True)
    thread.start()
    for _ in range(400):
        if all(s.started for s in servers):
            break
        if not thread.is_alive():
            raise RuntimeError("node failed to start")
        threading.Event().wait(0.025)
    else:
        raise RuntimeError("node did not start in time")
    sockets = servers[0].servers[0].sockets if servers[0].servers else []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    return RunningNode(node, servers, thread, port, tls)
