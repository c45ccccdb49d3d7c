"""The façade's answer models (for its OpenAPI description)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class NodeReport(BaseModel):
    """How one node contributed to an aggregated answer."""

    status: Literal["ok", "unavailable", "timeout", "error"] = Field(
        description="ok: answered; unavailable: not reachable; timeout: no answer within the "
        "façade's per-node bound; error: answered with an error."
    )
    detail: str | None = None
    elapsed_ms: float = Field(alias="elapsedMs")
    http_status: int | None = Field(default=None, alias="httpStatus")
    count: int | None = Field(default=None, description="Items taken from this node.")


class FacadeMailboxItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Façade id: <node>~<delivery id>.")
    node: str
    node_item_id: str = Field(alias="nodeItemId", description="The delivery id on the node.")
    connector: str
    message_type: str = Field(alias="messageType")
    purpose: str | None
    created_at: str = Field(alias="createdAt")


class AggregatedMailbox(BaseModel):
    items: list[FacadeMailboxItem]
    next_after: str | None = Field(
        alias="nextAfter", description="Opaque cursor for the next page."
    )
    complete: bool = Field(description="False when a node is missing from this answer.")
    nodes: dict[str, NodeReport]


class AggregatedLog(BaseModel):
    records: list[dict[str, Any]] = Field(
        description="The gemeente's processing-log records from every node, merged by "
        "timestamp; each names its node."
    )
    next_after: str | None = Field(alias="nextAfter")
    complete: bool
    nodes: dict[str, NodeReport]


class SubjectSearch(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    bsn: str = Field(
        pattern=r"^[0-9]{9}$",
        description="The citizen's BSN (body only, never a "
        "URL); each node pseudonymises it with its own key.",
    )
    purpose: str | None = None
    connector: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)
