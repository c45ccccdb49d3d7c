"""Overzicht: who is signed in, what waits in the mailbox, which knooppunten serve it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from node_runtime.facade.portal.access import FacadeOf, SignedIn, trace
from node_runtime.facade.portal.nodes import Nodes
from node_runtime.facade.portal.rendering import render

router = APIRouter(prefix="/portaal", include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def start(request: Request, facade: FacadeOf, gemeente: SignedIn) -> HTMLResponse:
    nodes = Nodes(facade, gemeente)
    items, got = await nodes.mailbox(include_acknowledged=False, headers=trace(request))
    return render(
        "start.html",
        gemeente,
        title="Overzicht",
        nav="start",
        waiting=len(items),
        nodes=nodes.serving(),
        missing=dict(got.missing),
    )
