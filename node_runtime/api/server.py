"""Serve a node over HTTPS with client-certificate authentication (uvicorn)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from node_runtime.api.app import create_app
from node_runtime.api.routes import health
from node_runtime.node.assembly import Node, build_node
from node_runtime.node.config import Settings
from node_runtime.security.callers import CertificateIdentity
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


def health_app(node: Node) -> FastAPI:
    """The optional plain-HTTP port: only /healthz, /readyz and /metrics."""
    app = application(title="Knooppunt health", openapi_url=None, docs_url=None, redoc_url=None)
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
        stop_servers(self.servers, self.thread, timeout)


def build_servers(
    settings: Settings, node: Node | None = None
) -> tuple[Node, list[uvicorn.Server], ReloadableServerContext]:
    if node is None:
        holder_ref: list[Node] = []
        identity = CertificateIdentity(
            proxies=lambda: holder_ref[0].holder.current.knooppunt.spec.security.trusted_proxies,
            trust_bundle=settings.tls_trust,
            crl=settings.tls_crl,
            header=settings.trusted_proxy_header,
        )
        node = build_node(settings, identity=identity)
        holder_ref.append(node)
    proxies = node.holder.current.knooppunt.spec.security.trusted_proxies
    # Behind a trusted proxy the proxy may connect without a client certificate; every
    # certificate that is presented is still verified in the handshake.
    tls = server_tls(
        "node",
        settings.tls_cert,
        settings.tls_key,
        settings.tls_trust,
        settings.tls_crl,
        require_client_cert=not proxies,
        issuers=settings.tls_issuers,
    )
    if isinstance(node.identity, CertificateIdentity):
        node.identity.issuer_policy = lambda: tls.material.policy if tls.material else None
    node.on_tick.append(
        tls_watcher(
            [settings.tls_crl, settings.tls_trust, settings.tls_cert, settings.tls_issuers], tls
        )
    )
    app = create_app(settings, identity=node.identity, node=node)
    servers = uvicorn_servers(
        app,
        tls=tls,
        host=settings.host,
        port=settings.port,
        health=health_app(node),
        health_port=settings.health_port,
        limits=connection_limits(settings),
    )
    return node, servers, tls


def serve(settings: Settings) -> None:
    """Run until interrupted (`knooppunt up`, `knooppunt serve`)."""
    _node, servers, _tls = build_servers(settings)
    run_forever(servers)


def start_in_thread(settings: Settings) -> RunningNode:
    """Start a node in a background thread and wait until it accepts connections."""
    node, servers, tls = build_servers(settings)
    thread, port = start_background(servers, name="knooppunt-node", default_port=settings.port)
    return RunningNode(node, servers, thread, port, tls)
