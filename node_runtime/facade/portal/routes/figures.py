"""Managementinformatie: aggregates over every knooppunt as SVG bar charts with the numbers
beside them, and a monthly report as CSV. No personal data on these pages."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from node_runtime.facade.assembly import Facade
from node_runtime.facade.portal import charts
from node_runtime.facade.portal.access import FacadeOf, SignedIn, trace
from node_runtime.facade.portal.nodes import Figures, Nodes, merge_statistics
from node_runtime.facade.portal.rendering import SECURITY_HEADERS, PortalRefusal, render
from node_runtime.model.gemeente import Gemeente

router = APIRouter(prefix="/portaal", include_in_schema=False)
CONVERSATION_STATES = {
    "open": "binnen de termijn",
    "overdue": "over de termijn",
    "closed": "op tijd beantwoord",
    "late": "te laat beantwoord",
}


def month(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(f"{value}-01")
    except ValueError as exc:
        raise PortalRefusal(400, "Ongeldige maand", "Vul een maand in als JJJJ-MM.") from exc


def month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


async def gather(
    request: Request, facade: Facade, gemeente: Gemeente, since: date, until: date
) -> tuple[Figures, dict[str, str]]:
    got = await Nodes(facade, gemeente).statistics(since, until, trace(request))
    return merge_statistics(got), dict(got.missing)


def totals(counter: Counter[tuple[str, str, str]], position: int) -> dict[str, int]:
    out: Counter[str] = Counter()
    for key, n in counter.items():
        out[key[position]] += n
    return dict(sorted(out.items()))


@router.get("/managementinformatie", response_class=HTMLResponse)
async def management(
    request: Request, facade: FacadeOf, gemeente: SignedIn, van: str = "", tot: str = ""
) -> HTMLResponse:
    today = datetime.now(UTC).date()
    first = month(van, (today.replace(day=1) - timedelta(days=335)).replace(day=1))
    last = month_end(month(tot, today.replace(day=1)))
    if last < first:
        raise PortalRefusal(400, "Ongeldige periode", "De eindmaand ligt vóór de beginmaand.")
    figures, missing = await gather(request, facade, gemeente, first, last)
    by_type, by_sender = totals(figures.volumes, 1), totals(figures.volumes, 2)
    by_code = totals(figures.rejections, 1)
    p95 = [
        (m, v["p95Seconds"])
        for m, v in sorted(figures.latency.items())
        if v["p95Seconds"] is not None
    ]
    states = totals(figures.conversations, 2)
    overdue = sorted(
        ((conversation, sender), n)
        for (conversation, sender, state), n in figures.conversations.items()
        if state == "overdue"
    )
    chart = {
        "months": charts.bar_chart(
            "Berichten per maand", list(figures.per_month(figures.volumes).items())
        ),
        "types": charts.bar_chart("Berichten per berichttype", list(by_type.items())),
        "senders": charts.bar_chart("Berichten per afzender", list(by_sender.items())),
        "codes": charts.bar_chart("Afwijzingen per retourcode", list(by_code.items())),
        "latency": charts.bar_chart("Afleverduur (95e percentiel) per maand", p95, unit="s"),
        "dead": charts.bar_chart(
            "Onbestelbare berichten per maand", sorted(figures.dead_letters.items())
        ),
        "conversations": charts.bar_chart(
            "Gesprekken per status",
            [(label, states.get(state, 0)) for state, label in CONVERSATION_STATES.items()],
        ),
    }
    return render(
        "figures.html",
        gemeente,
        title="Managementinformatie",
        nav="mi",
        figures=figures,
        chart=chart,
        first=first,
        last=last,
        by_type=by_type,
        by_sender=by_sender,
        by_code=by_code,
        states=[(label, states.get(state, 0)) for state, label in CONVERSATION_STATES.items()],
        missing=missing,
        overdue=overdue,
        report_month=(today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"),
    )


@router.get("/managementinformatie/maandrapport.csv")
async def monthly_report(
    request: Request, facade: FacadeOf, gemeente: SignedIn, maand: str
) -> Response:
    first = month(maand, datetime.now(UTC).date().replace(day=1))
    figures, missing = await gather(request, facade, gemeente, first, month_end(first))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "onderdeel",
            "maand",
            "berichttype, retourcode of gesprek",
            "afzender",
            "aantal",
            "afgeleverd",
            "niet afgeleverd",
            "p50 seconden",
            "p95 seconden",
        ]
    )
    for (m, message_type, sender), n in sorted(figures.volumes.items()):
        writer.writerow(["volume", m, message_type, sender, n, "", "", "", ""])
    for (m, code, sender), n in sorted(figures.rejections.items()):
        writer.writerow(["afwijzing", m, code, sender, n, "", "", "", ""])
    for m, v in sorted(figures.latency.items()):
        writer.writerow(
            [
                "aflevering",
                m,
                "",
                "",
                "",
                v["delivered"],
                v["undelivered"],
                "" if v["p50Seconds"] is None else v["p50Seconds"],
                "" if v["p95Seconds"] is None else v["p95Seconds"],
            ]
        )
    for m, n in sorted(figures.dead_letters.items()):
        writer.writerow(["onbestelbaar", m, "", "", n, "", "", "", ""])
    for (conversation, sender), n in sorted(
        ((c, s), n) for (c, s, state), n in figures.conversations.items() if state == "overdue"
    ):
        writer.writerow(["over de termijn (nu)", "", conversation, sender, n, "", "", "", ""])
    for node, why in sorted(missing.items()):
        writer.writerow(["onvolledig", first.strftime("%Y-%m"), "", node, "", "", "", "", why])
    name = f"maandrapport-{gemeente.spec.gemeentecode}-{first.strftime('%Y-%m')}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )
