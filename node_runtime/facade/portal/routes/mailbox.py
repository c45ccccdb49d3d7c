"""Postbus: the gemeente's messages on every knooppunt, one message's released fields (a
``read`` in the node's processing log, with the delivery's purpose) and acknowledging it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from node_runtime.facade.portal.access import FacadeOf, SameOrigin, SignedIn, trace
from node_runtime.facade.portal.nodes import Nodes
from node_runtime.facade.portal.rendering import PortalRefusal, render

router = APIRouter(prefix="/portaal", include_in_schema=False)
NOT_FOUND = PortalRefusal(404, "Bericht niet gevonden", "Dit bericht is er niet voor uw gemeente.")


@router.get("/postbus", response_class=HTMLResponse)
async def mailbox(
    request: Request,
    facade: FacadeOf,
    gemeente: SignedIn,
    alles: bool = False,
    bevestigd: bool = False,
    knooppunt: str = "",
    connector: str = "",
) -> HTMLResponse:
    nodes = Nodes(facade, gemeente)
    items, got = await nodes.mailbox(include_acknowledged=alles, headers=trace(request))
    # the mailbox per node and connector: counts of each, and the list narrowed to one
    per: Counter[tuple[str, str]] = Counter((i["node"], i["connector"]) for i in items)
    shown = [
        i
        for i in items
        if (not knooppunt or i["node"] == knooppunt)
        and (not connector or i["connector"] == connector)
    ]
    serving = nodes.serving()
    return render(
        "mailbox.html",
        gemeente,
        title="Postbus",
        nav="postbus",
        items=shown,
        per=sorted(per.items()),
        node_names=[n.name for n in serving],
        connectors=sorted({c for n in serving for c in n.connectors}),
        filters={"knooppunt": knooppunt, "connector": connector},
        everything=alles,
        acknowledged=bevestigd,
        missing=dict(got.missing),
    )


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested released fields as (path, value) rows, in document order."""
    if isinstance(value, dict):
        return [
            row
            for k, v in value.items()
            for row in flatten(v, f"{prefix}.{k}" if prefix else str(k))
        ]
    if isinstance(value, list):
        return [row for i, v in enumerate(value, 1) for row in flatten(v, f"{prefix} {i}")]
    return [(prefix, "" if value is None else str(value))]


@router.get("/postbus/{node_name}/{delivery}", response_class=HTMLResponse)
async def message(
    request: Request, node_name: str, delivery: str, facade: FacadeOf, gemeente: SignedIn
) -> HTMLResponse:
    nodes = Nodes(facade, gemeente)
    node = nodes.entry(node_name)
    if node is None:
        raise NOT_FOUND
    outcome = await nodes.message(node, delivery, trace(request))
    if not outcome.ok:
        code = outcome.response.status_code if outcome.response is not None else 502
        if code in (400, 403, 404, 422):
            raise NOT_FOUND
        raise PortalRefusal(
            502,
            "Bericht niet beschikbaar",
            f"{node.display_name} is nu niet bereikbaar. Probeer het later opnieuw.",
        )
    assert outcome.response is not None
    kind = outcome.response.headers.get("content-type", "")
    envelope: dict[str, Any] = outcome.json() if "json" in kind else {}
    features = envelope.get("kenmerken", {})
    return render(
        "message.html",
        gemeente,
        title=f"Bericht {features.get('berichttype', '')}".strip(),
        nav="postbus",
        node=node,
        delivery=delivery,
        features=features,
        fields=flatten(envelope.get("inhoud", {})),
        raw=None if envelope else outcome.response.text,
    )


@router.post("/postbus/{node_name}/{delivery}/bevestigen", dependencies=[SameOrigin])
async def acknowledge(
    request: Request, node_name: str, delivery: str, facade: FacadeOf, gemeente: SignedIn
) -> Response:
    nodes = Nodes(facade, gemeente)
    node = nodes.entry(node_name)
    if node is None:
        raise NOT_FOUND
    outcome = await nodes.acknowledge(node, delivery, trace(request))
    if not outcome.ok:
        raise PortalRefusal(
            502,
            "Niet bevestigd",
            "Het knooppunt bevestigde de ontvangst niet. Probeer het opnieuw (nogmaals "
            "bevestigen kan geen kwaad).",
        )
    return RedirectResponse("/portaal/postbus?bevestigd=true", status_code=303)
