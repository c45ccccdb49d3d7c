"""The gemeente's processing log from every knooppunt, merged by time; search by citizen."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from node_runtime.facade import aggregation
from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.deps import FacadeDep, GemeenteDep, own, trace_headers
from node_runtime.facade.models import AggregatedLog, SubjectSearch
from node_runtime.facade.state import NodeEntry
from node_runtime.model.bsn import elfproef
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1")
LogLimit = Annotated[int, Query(ge=1, le=1000)]


def merge_records(
    outcomes: dict[str, NodeOutcome], cursor: dict[str, Any], limit: int
) -> aggregation.MergedPage:
    return aggregation.merge(
        outcomes,
        key="records",
        time_field="timestamp",
        cursor=cursor,
        limit=limit,
        tiebreak=lambda index, _record: index,
        position=lambda record: record.get("id"),
        present=lambda name, record: {**record, "node": name},
    )


@router.get(
    "/gemeenten/{gemeentecode}/processing-log",
    tags=["processing log"],
    summary="The gemeente's processing log from every knooppunt, merged by time",
    responses={200: {"model": AggregatedLog}},
)
async def query_log(
    gemeentecode: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    subject_ref: Annotated[str | None, Query(alias="subjectRef")] = None,
    purpose: str | None = None,
    connector: str | None = None,
    activity: str | None = None,
    trace_id: Annotated[str | None, Query(alias="traceId")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Annotated[str | None, Query(description="nextAfter of the previous page")] = None,
    limit: LogLimit = 100,
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "processing-log")
    cursor = aggregation.decode_cursor(after)
    state = facade.holder.current
    nodes = state.nodes_for(gemeente)
    if connector is not None:
        nodes = [n for n in nodes if connector in n.connectors]
    base: dict[str, str] = {"limit": str(limit)}
    for key, value in (
        ("subjectRef", subject_ref),
        ("purpose", purpose),
        ("connector", connector),
        ("activity", activity),
        ("traceId", trace_id),
    ):
        if value is not None:
            base[key] = value
    if since is not None:
        base["since"] = since.isoformat()
    if until is not None:
        base["until"] = until.isoformat()
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log"
    trace = trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        params = dict(base)
        if node.name in cursor:
            params["after"] = str(cursor[node.name])
        return await facade.nodes.attempt(node, gemeente, "GET", path, params=params, headers=trace)

    outcomes = await facade.nodes.fan_out(nodes, call)
    page = merge_records(outcomes, cursor, limit)
    return {
        "records": page.items,
        "nextAfter": page.next_after,
        "complete": page.complete,
        "nodes": page.reports,
    }


@router.post(
    "/gemeenten/{gemeentecode}/processing-log/search",
    tags=["processing log"],
    summary="All processings concerning one citizen on every knooppunt (BSN in the body)",
    responses=contract.problem_responses(422),
)
async def search_log(
    gemeentecode: str,
    search: SubjectSearch,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "processing-log")
    if not elfproef(search.bsn):
        raise Problem(422, "bsn-invalid", "Invalid BSN", "The BSN does not pass the 11-proof.")
    nodes = facade.holder.current.nodes_for(gemeente)
    if search.connector is not None:
        nodes = [n for n in nodes if search.connector in n.connectors]
    body = search.model_dump_json(exclude_none=True).encode()
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log/search"
    headers = {"content-type": "application/json", **trace_headers(request)}

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(
            node, gemeente, "POST", path, content=body, headers=headers
        )

    outcomes = await facade.nodes.fan_out(nodes, call)
    refs = {}
    for name, outcome in outcomes.items():
        if outcome.ok:
            with contextlib.suppress(ValueError, AttributeError):
                refs[name] = outcome.json().get("subjectRef")
    page = merge_records(outcomes, {}, search.limit)
    return {
        "subjectRefs": refs,
        "records": page.items,
        "complete": page.complete,
        "nodes": page.reports,
    }
