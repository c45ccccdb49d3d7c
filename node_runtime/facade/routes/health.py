"""Liveness and readiness of the façade."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from node_runtime.facade.deps import FacadeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: configuration loaded")
async def readyz(facade: FacadeDep) -> dict[str, Any]:
    state = facade.holder.current
    return {
        "status": "ready",
        "generation": state.generation,
        "nodes": sorted(state.nodes),
        "gemeenten": len(state.gemeenten_by_code),
    }
