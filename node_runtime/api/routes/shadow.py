"""Shadow validation results: per connector with a shadow release, how many live messages it
saw and how it would have treated them differently (paths and codes, never values)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from node_runtime.api.deps import NodeDep
from node_runtime.api.routes.admin import require_admin

router = APIRouter(
    prefix="/api/v1/admin", tags=["management"], dependencies=[Depends(require_admin)]
)


@router.get("/shadow", summary="Differences the shadow release of each connector would make")
async def shadow(node: NodeDep) -> dict[str, Any]:
    runner = node.intake.shadow
    if runner is None:
        return {"connectors": {}}
    return {"connectors": await asyncio.to_thread(runner.snapshot, node.holder.current)}
