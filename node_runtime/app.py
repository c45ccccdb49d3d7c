"""create_app(settings): the node runtime as a FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from node_runtime import __version__
from node_runtime.config import Settings
from node_runtime.node import IdentityExtractor, Node, build_node
from node_runtime.pipeline.errors import Problem, Violation
from node_runtime.processing_log import NODE_PURPOSE, LogBuilder
from node_runtime.routes import admin, catalogue, health, mailbox, messages, processing_log
from node_runtime.store.sql import SqlStore
from node_runtime.tracing import from_header

log = logging.getLogger("knooppunt.app")
PROBLEM = "application/problem+json"


def _problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(problem.body(instance=request.url.path), status_code=problem.status,
                        media_type=PROBLEM, headers={"Knooppunt-Outcome": "refused"})


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

    app = FastAPI(
        title="Knooppunt node runtime",
        version=__version__,
        description="Intake, validation, conversion, routing, doelbinding, mailboxes and the "
        "processing log of one knooppunt. Every call authenticates with a client certificate.",
        lifespan=lifespan,
    )
    app.state.node = node

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> JSONResponse:
        if problem.status in (401, 403):
            node.metrics.refusals.labels(problem.slug).inc()
            principal = getattr(request.state, "principal", None)
            actor = principal.actor if principal is not None else "unauthenticated"
            logs = LogBuilder(from_header(request.headers.get("traceparent")), actor)
            logs.add(activity="refuse", controller=f"knooppunt:{node.holder.current.name}",
                     purpose=NODE_PURPOSE, legal_basis="not applicable: request refused",
                     outcome=problem.slug, detail=f"{problem.status} {request.method} "
                     f"{request.url.path}")
            node.store.write_log(logs.records)
        return _problem_response(problem, request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        violations = [
            Violation("request", str(e.get("msg")), path=".".join(str(p) for p in e["loc"]))
            for e in exc.errors()
        ]
        return _problem_response(
            Problem(400, "invalid-request", "Invalid request", "The request parameters or body "
                    "are invalid.", violations), request)

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return _problem_response(
            Problem(500, "internal-error", "Internal error",
                    "The node could not process the request; nothing was stored."), request)

    for module in (messages, mailbox, processing_log, catalogue, admin, health):
        app.include_router(module.router)
    return app
