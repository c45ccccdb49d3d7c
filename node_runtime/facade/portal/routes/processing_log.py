"""Verwerkingenlog: all of the gemeente's records filtered by purpose, activity and period, and
a search per citizen (the BSN in the POST body only) exported as CSV or JSON. Each search and
each export is a ``consult`` record on every node searched, with the reason chosen."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from node_runtime.facade.portal.access import FacadeOf, SameOrigin, SignedIn, trace
from node_runtime.facade.portal.nodes import Nodes
from node_runtime.facade.portal.rendering import SECURITY_HEADERS, PortalRefusal, render
from node_runtime.model.bsn import elfproef
from node_runtime.model.gemeente import Gemeente

router = APIRouter(prefix="/portaal", include_in_schema=False)

# Why a person searches the processing log for one citizen: the search is logged with it.
REASONS = {
    "inzageverzoek": ("Inzageverzoek van de burger", "AVG art. 15 (recht van inzage)"),
    "klacht-of-bezwaar": (
        "Behandeling van een klacht of bezwaar",
        "AVG art. 5 lid 2 (verantwoordingsplicht)",
    ),
    "interne-controle": (
        "Interne controle op verwerkingen",
        "AVG art. 5 lid 2 en art. 24 (verantwoordingsplicht)",
    ),
}
FORMATS = {
    "html": "verwerkingenlog doorzocht in het portaal",
    "csv": "verwerkingenlog geëxporteerd als CSV",
    "json": "verwerkingenlog geëxporteerd als JSON",
}
CSV_COLUMNS = [
    ("timestamp", "tijdstip"),
    ("activity", "activiteit"),
    ("purpose", "doel"),
    ("legalBasis", "grondslag"),
    ("actor", "actor"),
    ("connector", "connector"),
    ("messageType", "berichttype"),
    ("messageId", "bericht"),
    ("deliveryId", "aflevering"),
    ("outcome", "uitkomst"),
    ("detail", "toelichting"),
    ("node", "knooppunt"),
    ("traceId", "trace"),
    ("subjectRef", "betrokkene"),
]
SHOWN = 500


def day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError as exc:
        raise PortalRefusal(400, "Ongeldige datum", "Vul een datum in als JJJJ-MM-DD.") from exc


def in_period(record: dict[str, Any], since: date | None, until: date | None) -> bool:
    moment = (record.get("timestamp") or "")[:10]
    return (since is None or moment >= since.isoformat()) and (
        until is None or moment <= until.isoformat()
    )


def purposes(gemeente: Gemeente) -> list[str]:
    return sorted({s.purpose for s in gemeente.spec.subscriptions})


def page(gemeente: Gemeente, status: int = 200, **context: Any) -> HTMLResponse:
    return render(
        "log.html",
        gemeente,
        status=status,
        title="Verwerkingenlog",
        nav="verwerkingen",
        purposes=purposes(gemeente),
        reasons=REASONS,
        **context,
    )


@router.get("/verwerkingen", response_class=HTMLResponse)
async def processing_log(
    request: Request,
    facade: FacadeOf,
    gemeente: SignedIn,
    doel: str = "",
    activiteit: str = "",
    van: str = "",
    tot: str = "",
) -> HTMLResponse:
    since, until = day(van), day(tot)
    params = {k: v for k, v in (("purpose", doel), ("activity", activiteit)) if v}
    if since:
        params["since"] = datetime.combine(since, datetime.min.time(), UTC).isoformat()
    if until:
        params["until"] = datetime.combine(
            until + timedelta(days=1), datetime.min.time(), UTC
        ).isoformat()
    records, got = await Nodes(facade, gemeente).log(params, trace(request))
    return page(
        gemeente,
        records=records[:SHOWN],
        filters={"doel": doel, "activiteit": activiteit, "van": van, "tot": tot},
        searched=None,
        missing=dict(got.missing),
    )


@router.post("/verwerkingen/zoeken", dependencies=[SameOrigin])
async def search_log(
    request: Request,
    facade: FacadeOf,
    gemeente: SignedIn,
    bsn: Annotated[str, Form()],
    reden: Annotated[str, Form()],
    doel: Annotated[str, Form()] = "",
    activiteit: Annotated[str, Form()] = "",
    van: Annotated[str, Form()] = "",
    tot: Annotated[str, Form()] = "",
    formaat: Annotated[str, Form()] = "html",
) -> Response:
    bsn = bsn.strip()
    filters = {"doel": doel, "activiteit": activiteit, "van": van, "tot": tot}
    error = None
    if not (len(bsn) == 9 and bsn.isdigit() and elfproef(bsn)):
        error = "Vul een geldig burgerservicenummer in (9 cijfers, elfproef)."
    elif reden not in REASONS:
        error = "Kies de reden van deze raadpleging: die wordt zelf vastgelegd."
    elif formaat not in FORMATS:
        error = "Kies zoeken, of exporteren als CSV of JSON."
    if error is not None:
        return page(
            gemeente,
            status=422,
            records=[],
            filters=filters,
            searched=None,
            error=error,
            missing={},
        )
    since, until = day(van), day(tot)
    label, basis = REASONS[reden]
    records, got = await Nodes(facade, gemeente).search(
        bsn,
        purpose=doel or None,
        headers=trace(request),
        consultation={"purpose": reden, "legalBasis": basis, "detail": FORMATS[formaat]},
    )
    records = [
        r
        for r in records
        if in_period(r, since, until) and (not activiteit or r.get("activity") == activiteit)
    ]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if formaat == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([nl for _, nl in CSV_COLUMNS])
        for r in records:
            writer.writerow([r.get(k) or "" for k, _ in CSV_COLUMNS])
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="verwerkingen-{stamp}.csv"',
            },
        )
    if formaat == "json":
        body = {
            "gemeentecode": gemeente.spec.gemeentecode,
            "reden": reden,
            "filters": {k: v for k, v in filters.items() if v},
            "records": records,
            "onvolledig": dict(got.missing),
        }
        return Response(
            json.dumps(body, ensure_ascii=False, indent=2),
            media_type="application/json",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="verwerkingen-{stamp}.json"',
            },
        )
    return page(
        gemeente,
        records=records,
        filters=filters,
        searched={"bsn": bsn, "reden": reden, "label": label},
        missing=dict(got.missing),
    )
