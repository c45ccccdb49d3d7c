"""create_app(settings): the node runtime as a FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from node_runtime import __version__
from node_runtime.api.intake_endpoint import IntakeEndpoint
from node_runtime.api.routes import (
    admin,
    catalogue,
    conversations,
    health,
    ledger,
    mailbox,
    messages,
    processing_log,
    register,
    shadow,
    statistics,
)
from node_runtime.audit.processing_log import NODE_PURPOSE, LogBuilder
from node_runtime.node.assembly import IdentityExtractor, Node, build_node
from node_runtime.node.config import Settings
from node_runtime.observability.tracing import from_header
from node_runtime.store.sql import LogWrite, SqlStore
from node_runtime.web import contract
from node_runtime.web import problem_handlers as problems
from node_runtime.web.applications import application
from node_runtime.web.problems import Problem

log = logging.getLogger("knooppunt.app")


def create_app(
    settings: Settings,
    *,
    identity: IdentityExtractor,
    store: SqlStore | None = None,
    node: Node | None = None,
) -> FastAPI:
    node = node or build_node(settings, identity=identity, store=store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = application(
        title="Knooppunt node runtime",
        version=__version__,
        description="Intake, validation, conversion, routing, doelbinding, mailboxes and the "
        "processing log of one knooppunt. Every call authenticates with a client certificate.",
        lifespan=lifespan,
    )
    app.state.node = node

    async def log_refusal(request: Request, problem: Problem) -> None:
        if problem.status not in (401, 403):
            return
        node.metrics.count_refusal(problem.slug)
        principal = getattr(request.state, "principal", None)
        actor = principal.actor if principal is not None else "unauthenticated"
        logs = LogBuilder(from_header(request.headers.get("traceparent")), actor)
        logs.add(
            activity="refuse",
            controller=f"knooppunt:{node.holder.current.name}",
            purpose=NODE_PURPOSE,
            legal_basis="not applicable: request refused",
            outcome=problem.slug,
            detail=f"{problem.status} {request.method} {request.url.path}",
        )
        # Committed behind the answer, like every refusal's record (nothing is stored).
        await node.store.write_behind(LogWrite(tuple(logs.records)))

    answers = problems.install(
        app,
        role="node",
        on_problem=log_refusal,
        internal_detail="The node could not process the request; nothing was stored.",
    )

    # The intake in front of the router: the same handler, without the framework's cost.
    app.add_middleware(IntakeEndpoint, answers=answers)
    for module in (messages, mailbox, processing_log, statistics, register, catalogue, admin):
        app.include_router(module.router)
    app.include_router(ledger.router)
    app.include_router(conversations.router)
    app.include_router(shadow.router)
    app.include_router(ledger.admin_router)
    app.include_router(health.tls_router)
    contract.install(
        app,
        authenticated=("/api/", "/metrics"),
        description="Every call authenticates with an organisation certificate "
        "(PKIoverheid or the node's CA) in the TLS handshake.",
    )
    return app
