"""Management information for a gemeente: aggregates of its own traffic, no personal data.

``GET /gemeenten/{code}/statistics``: volumes, rejections, delivery latency and dead letters per
month, and its conversations per state now (e.g. overdue); the façade's portal draws them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from node_runtime.api.deps import NodeDep, PrincipalDep
from node_runtime.state.principals import Principal
from node_runtime.store import statistics
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["insight"])
MAX_DAYS = 731


def check_own(principal: Principal, gemeentecode: str) -> None:
    if principal.kind != "gemeente" or principal.id != gemeentecode:
        raise Problem(
            403,
            "not-your-gemeente",
            "Not your gemeente",
            f"{principal.display_name} may see only its own information.",
        )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@router.get(
    "/gemeenten/{gemeentecode}/statistics",
    summary="Management information: volumes, rejections, delivery latency, dead letters per "
    "month and conversations per state (aggregates only)",
)
async def get_statistics(
    gemeentecode: str,
    node: NodeDep,
    principal: PrincipalDep,
    since: Annotated[date, Query(description="First day (inclusive)")],
    until: Annotated[date, Query(description="Last day (inclusive)")],
) -> dict[str, Any]:
    check_own(principal, gemeentecode)
    if until < since or (until - since).days > MAX_DAYS:
        raise Problem(
            400,
            "bad-period",
            "Invalid period",
            "until must not precede since, and a period spans at most two years.",
        )
    period = statistics.Period(_midnight(since), _midnight(until + timedelta(days=1)))
    stats = await asyncio.to_thread(
        statistics.gather,
        node.store.engine,
        gemeentecode,
        period,
        now=node.conversations.clock(),
    )
    return statistics_json(stats)


def statistics_json(stats: statistics.Statistics) -> dict[str, Any]:
    months = sorted(set(stats.latencies) | set(stats.undelivered))
    return {
        "volumes": [
            {"month": m, "messageType": t, "sender": s, "count": n}
            for (m, t, s), n in sorted(stats.volumes.items())
        ],
        "rejections": [
            {"month": m, "retourcode": c, "sender": s, "count": n}
            for (m, c, s), n in sorted(stats.rejections.items())
        ],
        "latency": [
            {
                "month": m,
                "delivered": len(stats.latencies.get(m, [])),
                "undelivered": stats.undelivered.get(m, 0),
                "p50Seconds": statistics.percentile(stats.latencies[m], 0.5)
                if stats.latencies.get(m)
                else None,
                "p95Seconds": statistics.percentile(stats.latencies[m], 0.95)
                if stats.latencies.get(m)
                else None,
            }
            for m in months
        ],
        "deadLetters": [{"month": m, "count": n} for m, n in sorted(stats.dead_letters.items())],
        "conversations": [
            {"connector": c, "conversation": conv, "sender": s, "state": st, "count": n}
            for (c, conv, s, st), n in sorted(stats.conversations.items())
        ],
    }
