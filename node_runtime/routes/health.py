"""Liveness, readiness and Prometheus metrics (also served on the optional plain port)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node_runtime.deps import NodeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: configuration loaded and database reachable")
async def readyz(node: NodeDep) -> Response:
    ok = await asyncio.to_thread(node.ready)
    state = node.holder.current
    body = {
        "status": "ready" if ok else "not ready",
        "node": state.name,
        "generation": state.generation,
        "connectors": {n: c.revision for n, c in state.connectors.items()},
        "gemeenten": len(state.gemeenten_by_code),
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(node: NodeDep) -> Response:
    pending = await asyncio.to_thread(node.store.pending_count)
    node.metrics.pending.clear()
    for (_kind, owner), count in pending.items():
        node.metrics.pending.labels(owner).set(count)
    if node.outbox is not None:
        counts = await asyncio.to_thread(node.outbox.counts)
        for status in ("pending", "delivered", "dead"):
            node.metrics.outbox.labels(status).set(counts.get(status, 0))
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)
