"""Virtueel register: one citizen's care (assignments started and stopped), derived by the
nodes from the iWmo conversation messages delivered under a purpose whose legal basis allows it;
each row links to its messages, each consultation is a ``consult`` record on the node."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from node_runtime.facade.assembly import Facade
from node_runtime.facade.portal.access import FacadeOf, SameOrigin, SignedIn, trace
from node_runtime.facade.portal.nodes import Nodes
from node_runtime.facade.portal.rendering import render
from node_runtime.model.bsn import elfproef
from node_runtime.model.gemeente import Gemeente

router = APIRouter(prefix="/portaal", include_in_schema=False)
STATUS_NL = {"actief": "Actief", "beëindigd": "Beëindigd", "aangevraagd": "Aangevraagd"}


def register_purposes(facade: Facade, gemeente: Gemeente) -> list[str]:
    allowed = set(facade.settings.portal_register_purposes)
    return sorted({s.purpose for s in gemeente.spec.subscriptions} & allowed)


@router.get("/register", response_class=HTMLResponse)
async def register_form(facade: FacadeOf, gemeente: SignedIn) -> HTMLResponse:
    return render(
        "register.html",
        gemeente,
        title="Virtueel register",
        nav="register",
        purposes=register_purposes(facade, gemeente),
        rows=None,
        searched=None,
        missing={},
    )


@router.post("/register", response_class=HTMLResponse, dependencies=[SameOrigin])
async def register_search(
    request: Request,
    facade: FacadeOf,
    gemeente: SignedIn,
    bsn: Annotated[str, Form()],
    doel: Annotated[str, Form()],
) -> HTMLResponse:
    purposes = register_purposes(facade, gemeente)
    bsn = bsn.strip()
    error = None
    if not (len(bsn) == 9 and bsn.isdigit() and elfproef(bsn)):
        error = "Vul een geldig burgerservicenummer in (9 cijfers, elfproef)."
    elif doel not in purposes:
        error = "Kies een doel waarvoor uw gemeente het register mag raadplegen."
    if error is not None:
        return render(
            "register.html",
            gemeente,
            status=422,
            title="Virtueel register",
            nav="register",
            purposes=purposes,
            rows=None,
            searched=None,
            error=error,
            missing={},
        )
    rows, got = await Nodes(facade, gemeente).register(bsn, doel, trace(request))
    basis = next((s.legal_basis for s in gemeente.spec.subscriptions if s.purpose == doel), "")
    return render(
        "register.html",
        gemeente,
        title="Virtueel register",
        nav="register",
        purposes=purposes,
        rows=rows,
        status_nl=STATUS_NL,
        searched={"bsn": bsn, "doel": doel, "grondslag": basis},
        missing=dict(got.missing),
    )
