"""Liveness, readiness and Prometheus metrics.

On the optional plain health port (reachable only inside the cluster, by the NetworkPolicy) all
three answer anyone. On the mutual-TLS port ``/metrics`` carries per-gemeente figures, so it
answers an administrator certificate only (:data:`tls_router`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node_runtime.api.deps import NodeDep
from node_runtime.api.routes.admin import require_admin
from node_runtime.observability import cert_expiry
from node_runtime.store.sql import now

router = APIRouter(tags=["operations"])

READY = {
    "schema": {
        "type": "object",
        "required": ["status", "node", "generation"],
        "properties": {
            "status": {"enum": ["ready", "not ready"]},
            "node": {"type": "string"},
            "generation": {"type": "integer"},
            "connectors": {"type": "object"},
            "gemeenten": {"type": "integer"},
            "delivery": {"enum": ["off", "inline", "running", "down"]},
        },
    }
}
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Ready.", "content": {"application/json": READY}},
    503: {"description": "Not ready.", "content": {"application/json": READY}},
}
METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: configuration loaded, database reachable, delivery process running",
)
async def readyz(node: NodeDep) -> Response:
    ok = await asyncio.to_thread(node.ready)
    state = node.holder.current
    body = {
        "status": "ready" if ok else "not ready",
        "node": state.name,
        "generation": state.generation,
        "connectors": {n: c.revision for n, c in state.connectors.items()},
        "gemeenten": len(state.gemeenten_by_code),
        "delivery": node.delivery_state(),
    }
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(node: NodeDep) -> Response:
    """Prometheus metrics (per gemeente: messages, deliveries, pending counts)."""
    backlog = await asyncio.to_thread(node.store.backlog)
    moment = now()
    node.metrics.pending.clear()
    node.metrics.backlog_age.clear()
    for (_kind, owner), (count, oldest) in backlog.items():
        node.metrics.pending.labels(owner).set(count)
        node.metrics.backlog_age.labels(owner).set((moment - oldest).total_seconds())
    for name, path in (
        ("server", node.settings.tls_cert),
        ("delivery", node.settings.delivery_cert),
    ):
        expiry = cert_expiry.not_after(path) if path is not None else None
        if expiry is not None:
            node.metrics.certificate_expiry.labels(name).set(expiry)
    if node.outbox is not None:
        counts = await asyncio.to_thread(node.outbox.counts)
        for status in ("pending", "delivered", "dead"):
            node.metrics.outbox.labels(status).set(counts.get(status, 0))
    # in a thread: the delivery process's figures are read from its socket
    body = await asyncio.to_thread(generate_latest, node.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


router.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics")

#: The mutual-TLS port's operations routes: /metrics for administrators only.
tls_router = APIRouter(tags=["operations"])
tls_router.add_api_route("/healthz", healthz, methods=["GET"], summary="Liveness")
tls_router.add_api_route(
    "/readyz",
    readyz,
    methods=["GET"],
    summary="Readiness: configuration loaded, database reachable, delivery process running",
    responses=READY_RESPONSES,
)
tls_router.add_api_route(
    "/metrics",
    metrics,
    methods=["GET"],
    summary="Prometheus metrics (administrator certificate only)",
    dependencies=[Depends(require_admin)],
    responses=METRICS_RESPONSES,
)
