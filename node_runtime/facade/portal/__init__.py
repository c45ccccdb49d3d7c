"""The gemeente portal, served by the façade under ``/portaal/`` (docs/portal.md).

Server-rendered pages in Dutch with the NL Design System's CSS (vendored by
``tools/portal-assets/build.sh``, served from ``KNOOPPUNT_FACADE_PORTAL_ASSETS``; never a CDN).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from node_runtime.facade.portal import rendering
from node_runtime.facade.portal.routes import figures, mailbox, processing_log, register, start

log = logging.getLogger("knooppunt.portal")
OWN_STATIC = Path(__file__).with_name("static")


def install(app: FastAPI, assets: Path | None) -> None:
    """Add the portal's pages and stylesheets to the façade application."""

    async def refused(_request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, rendering.PortalRefusal)
        return rendering.refusal_page(exc)

    app.add_exception_handler(rendering.PortalRefusal, refused)
    for routes in (start, mailbox, processing_log, figures, register):
        app.include_router(routes.router)
    app.mount("/portaal/static/eigen", StaticFiles(directory=OWN_STATIC), name="portal-own")
    css = assets / "css" if assets is not None else None
    if css is not None and (css / "components.css").is_file():
        app.mount("/portaal/static/nlds", StaticFiles(directory=css), name="portal-nlds")
    else:
        log.warning(
            "portal without NL Design System CSS: build it with tools/portal-assets/build.sh "
            "and set KNOOPPUNT_FACADE_PORTAL_ASSETS",
            extra={"assets": str(assets)},
        )
