"""create_facade_app: the municipal cloud façade as a FastAPI application.

A gemeente connects once — one certificate, one base URL, one API — and gets its mailbox, its
processing log, the outbound path to every sector and a catalogue across all the knooppunten
that serve it. The façade stores nothing: every answer comes from the nodes, called with the
façade's own certificate and a signed, short-lived assertion naming the gemeente.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from node_runtime import __version__
from node_runtime.facade import portal
from node_runtime.facade.assembly import Facade, IdentityExtractor, build_facade
from node_runtime.facade.config import FacadeSettings
from node_runtime.facade.routes import (
    catalogue,
    conversations,
    health,
    ledger,
    mailbox,
    messages,
    processing_log,
)
from node_runtime.observability.telemetry import ServerSpans
from node_runtime.web import contract
from node_runtime.web import problem_handlers as problems
from node_runtime.web.applications import application

__all__ = ["Facade", "build_facade", "create_facade_app"]


def create_facade_app(
    settings: FacadeSettings,
    *,
    identity: IdentityExtractor | None = None,
    facade: Facade | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    facade = facade or build_facade(settings, identity=identity, transport=transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await facade.start()
        try:
            yield
        finally:
            await facade.stop()

    app = application(
        title="Knooppunt municipal cloud façade",
        version=__version__,
        description="One uniform interface for a gemeente across all knooppunten that serve "
        "it: one certificate, one base URL, one API. Aggregated mailbox and processing log, "
        "the outbound path to every sector, and a catalogue. Every call authenticates with the "
        "gemeente's client certificate; aggregated answers say per knooppunt what is missing.",
        lifespan=lifespan,
    )
    app.state.facade = facade

    problems.install(
        app, role="façade", internal_detail="The façade could not process the request."
    )

    for routes in (mailbox, processing_log, ledger, conversations, messages, catalogue, health):
        app.include_router(routes.router)
    contract.install(
        app,
        description="Every call authenticates with the gemeente's organisation "
        "certificate (PKIoverheid) in the TLS handshake.",
    )
    portal.install(app, facade.settings.portal_assets)
    app.add_middleware(ServerSpans, telemetry=facade.telemetry)
    return app
