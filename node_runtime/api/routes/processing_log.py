"""The processing log (verwerkingenlog): each gemeente queries its own records only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from node_runtime.api.deps import NodeDep, PrincipalDep, TraceDep
from node_runtime.audit.processing_log import LogBuilder
from node_runtime.model.bsn import elfproef
from node_runtime.state.principals import Principal
from node_runtime.store.records import LogQuery, LogRecord
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["processing log"])


def record_json(r: LogRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "timestamp": r.timestamp.isoformat(),
        "traceId": r.trace_id,
        "spanId": r.span_id,
        "parentSpanId": r.parent_span_id,
        "activity": r.activity,
        "purpose": r.purpose,
        "legalBasis": r.legal_basis,
        "controller": r.controller,
        "actor": r.actor,
        "subjectRef": r.subject_ref,
        "connector": r.connector,
        "messageType": r.message_type,
        "messageId": r.message_id,
        "deliveryId": r.delivery_id,
        "outcome": r.outcome,
        "detail": r.detail,
    }


class LogRecordOut(BaseModel):
    """One processing-log record as the API answers it (no personal data: pseudonyms)."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    timestamp: str
    trace_id: str | None = Field(default=None, alias="traceId")
    span_id: str | None = Field(default=None, alias="spanId")
    parent_span_id: str | None = Field(default=None, alias="parentSpanId")
    activity: str
    purpose: str | None = None
    legal_basis: str | None = Field(default=None, alias="legalBasis")
    controller: str | None = None
    actor: str | None = None
    subject_ref: str | None = Field(default=None, alias="subjectRef")
    connector: str | None = None
    message_type: str | None = Field(default=None, alias="messageType")
    message_id: str | None = Field(default=None, alias="messageId")
    delivery_id: str | None = Field(default=None, alias="deliveryId")
    outcome: str | None = None
    detail: str | None = None


class LogPage(BaseModel):
    records: list[LogRecordOut]
    next_after: str | None = Field(alias="nextAfter")


class SubjectRecords(BaseModel):
    subject_ref: str = Field(alias="subjectRef")
    records: list[LogRecordOut]


def check_own_log(principal: Principal, gemeentecode: str) -> None:
    if principal.kind != "gemeente" or principal.id != gemeentecode:
        raise Problem(
            403,
            "not-your-log",
            "Not your processing log",
            f"{principal.display_name} may query only its own processing log.",
        )


Limit = Annotated[int, Query(ge=1, le=1000)]


@router.get(
    "/gemeenten/{gemeentecode}/processing-log",
    summary="Query the gemeente's processing-log records",
    responses={200: {"model": LogPage}},
)
async def query_log(
    gemeentecode: str,
    node: NodeDep,
    principal: PrincipalDep,
    subject_ref: Annotated[str | None, Query(alias="subjectRef")] = None,
    purpose: str | None = None,
    connector: str | None = None,
    activity: str | None = None,
    trace_id: Annotated[str | None, Query(alias="traceId")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Annotated[str | None, Query(description="Continue after this record id")] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    q = LogQuery(
        controller=gemeentecode,
        subject_ref=subject_ref,
        purpose=purpose,
        connector=connector,
        activity=activity,
        trace_id=trace_id,
        since=since,
        until=until,
        after_id=after,
        limit=limit,
    )
    records = await node.store.query_log_async(q)
    return {
        "records": [record_json(r) for r in records],
        "nextAfter": records[-1].id if len(records) == limit else None,
    }


class Consultation(BaseModel):
    """Why a person looks: the search is then itself a processing-log record."""

    model_config = ConfigDict(populate_by_name=True)

    purpose: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    legal_basis: str = Field(alias="legalBasis", min_length=1, max_length=300)
    detail: str | None = Field(default=None, max_length=200)


class SubjectSearch(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    bsn: str = Field(
        pattern=r"^[0-9]{9}$",
        description="The citizen's BSN (sent in the body, "
        "never in a URL, so it stays out of access logs).",
    )
    purpose: str | None = None
    connector: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    consultation: Consultation | None = Field(
        default=None,
        description="Record this search in the log (activity consult) with this purpose and "
        "legal basis; the gemeente portal always does.",
    )


@router.post(
    "/gemeenten/{gemeentecode}/processing-log/search",
    summary="All processings concerning one citizen (by BSN, pseudonymised by the node)",
    responses={200: {"model": SubjectRecords}, **contract.problem_responses(422)},
)
async def search_log(
    gemeentecode: str,
    search: SubjectSearch,
    node: NodeDep,
    principal: PrincipalDep,
    trace: TraceDep,
) -> dict[str, Any]:
    check_own_log(principal, gemeentecode)
    if not elfproef(search.bsn):
        raise Problem(422, "bsn-invalid", "Invalid BSN", "The BSN does not pass the 11-proof.")
    ref = node.pseudonymizer.subject_ref(search.bsn)
    q = LogQuery(
        controller=gemeentecode,
        subject_ref=ref,
        purpose=search.purpose,
        connector=search.connector,
        limit=search.limit,
    )
    records = await node.store.query_log_async(q)
    if search.consultation is not None:
        c = search.consultation
        logs = LogBuilder(trace, principal.actor)
        logs.add(
            activity="consult",
            controller=gemeentecode,
            purpose=c.purpose,
            legal_basis=c.legal_basis,
            outcome="success",
            subject_ref=ref,
            detail=c.detail or f"verwerkingenlog doorzocht: {len(records)} records",
        )
        await node.store.write_log_async(logs.records)
    return {"subjectRef": ref, "records": [record_json(r) for r in records]}
