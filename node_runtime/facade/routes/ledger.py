"""The tamper-evident processing log through the façade: each knooppunt keeps its own tree.

The façade gathers the latest signed checkpoint of every knooppunt that serves the gemeente
and passes proofs through from the knooppunt that holds the record (records from the
aggregated processing log carry their `node`). It signs nothing and changes nothing: a
gemeente verifies each checkpoint against the knooppunt's certificate itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from node_runtime.facade.assembly import Facade
from node_runtime.facade.client import NodeOutcome
from node_runtime.facade.deps import FacadeDep, GemeenteDep, own, trace_headers
from node_runtime.facade.node_answers import failure, passthrough_problem
from node_runtime.facade.state import NodeEntry
from node_runtime.model.gemeente import Gemeente
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["processing log"])


def _node(facade: Facade, gemeente: Gemeente, name: str) -> NodeEntry:
    state = facade.holder.current
    node: NodeEntry | None = state.nodes.get(name)
    if node is None or node not in state.nodes_for(gemeente):
        raise Problem(
            404,
            "no-such-node",
            "No such knooppunt",
            f"No knooppunt {name} serves {gemeente.spec.gemeentecode}.",
        )
    return node


async def _all(
    method: str, code: str, request: Request, facade: Facade, gemeente: Gemeente
) -> dict[str, Any]:
    path = f"/api/v1/gemeenten/{code}/processing-log/checkpoint"
    headers = trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(node, gemeente, method, path, headers=headers)

    outcomes = await facade.nodes.fan_out(facade.holder.current.nodes_for(gemeente), call)
    checkpoints: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    for name, outcome in outcomes.items():
        if outcome.ok:
            try:
                checkpoints[name] = outcome.json()
            except ValueError:
                outcome = NodeOutcome(name, "error", "malformed answer", None, outcome.elapsed_ms)
        reports[name] = outcome.describe()
    return {
        "checkpoints": checkpoints,
        "complete": all(r["status"] == "ok" for r in reports.values()),
        "nodes": reports,
    }


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/checkpoints",
    summary="The latest signed checkpoint of every knooppunt serving the gemeente",
)
async def checkpoints(
    gemeentecode: str, request: Request, facade: FacadeDep, gemeente: GemeenteDep
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "processing-log")
    return await _all("GET", gemeentecode, request, facade, gemeente)


@router.post(
    "/gemeenten/{gemeentecode}/processing-log/checkpoints",
    summary="Have every knooppunt serving the gemeente sign a checkpoint now",
)
async def new_checkpoints(
    gemeentecode: str, request: Request, facade: FacadeDep, gemeente: GemeenteDep
) -> dict[str, Any]:
    own(gemeente, gemeentecode, "processing-log")
    return await _all("POST", gemeentecode, request, facade, gemeente)


async def _pass(
    facade: Facade,
    gemeente: Gemeente,
    node: NodeEntry,
    path: str,
    params: dict[str, str],
    request: Request,
) -> Response:
    outcome = await facade.nodes.attempt(
        node,
        gemeente,
        "GET",
        path,
        params=params,
        headers=trace_headers(request),
        accept=lambda r: r.status_code == 200,
    )
    if not outcome.ok:
        passed = passthrough_problem(outcome)
        if passed is not None:
            return passed
        raise failure(outcome, action="no proof was fetched; try again later.")
    response = outcome.response
    assert response is not None
    return Response(
        response.content,
        status_code=200,
        media_type="application/json",
        headers={"Knooppunt-Node": node.name},
    )


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/nodes/{node}/records/{record_id}/inclusion-proof",
    summary="Inclusion proof of one of the gemeente's records, from its knooppunt",
    responses=contract.problem_responses(409, 502, 503, 504),
)
async def inclusion_proof(
    gemeentecode: str,
    node: str,
    record_id: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    tree_size: Annotated[int | None, Query(alias="treeSize", ge=1, le=2**62)] = None,
) -> Response:
    own(gemeente, gemeentecode, "processing-log")
    entry = _node(facade, gemeente, node)
    params = {} if tree_size is None else {"treeSize": str(tree_size)}
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log/records/{record_id}/inclusion-proof"
    return await _pass(facade, gemeente, entry, path, params, request)


@router.get(
    "/gemeenten/{gemeentecode}/processing-log/nodes/{node}/consistency-proof",
    summary="Consistency proof between two checkpoints of one knooppunt",
    responses=contract.problem_responses(502, 504),
)
async def consistency_proof(
    gemeentecode: str,
    node: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    first: Annotated[int, Query(alias="from", ge=0, le=2**62)],
    second: Annotated[int, Query(alias="to", ge=0, le=2**62)],
) -> Response:
    own(gemeente, gemeentecode, "processing-log")
    entry = _node(facade, gemeente, node)
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log/consistency-proof"
    return await _pass(
        facade, gemeente, entry, path, {"from": str(first), "to": str(second)}, request
    )
