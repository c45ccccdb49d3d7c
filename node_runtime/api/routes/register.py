"""The virtual register of a gemeente: one citizen's current care, purpose-bound.

``POST /gemeenten/{code}/register/search`` (BSN in the body, never in a URL): the assignments
derived from the iWmo conversation messages delivered to the gemeente under one of its purposes
that identifies citizens (``conversations/register.py``); every search is itself a
processing-log record (activity ``consult``) with that purpose and its legal basis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from node_runtime.api.deps import NodeDep, PrincipalDep, TraceDep
from node_runtime.api.routes.statistics import check_own
from node_runtime.audit.processing_log import LogBuilder
from node_runtime.conversations import register
from node_runtime.model.bsn import elfproef
from node_runtime.web import contract
from node_runtime.web.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["insight"])


class RegisterSearch(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    bsn: str = Field(
        pattern=r"^[0-9]{9}$", description="The citizen's BSN (in the body, never in a URL)."
    )
    purpose: str = Field(
        min_length=1,
        max_length=63,
        description="The gemeente's purpose (subscription) the register is consulted for; it "
        "must identify citizens.",
    )


@router.post(
    "/gemeenten/{gemeentecode}/register/search",
    summary="Virtual register: the citizen's current care from the conversation messages "
    "delivered under one purpose (logged as a consultation)",
    responses={**contract.problem_responses(403, 422)},
)
async def search_register(
    gemeentecode: str,
    search: RegisterSearch,
    node: NodeDep,
    principal: PrincipalDep,
    trace: TraceDep,
) -> dict[str, Any]:
    check_own(principal, gemeentecode)
    if not elfproef(search.bsn):
        raise Problem(422, "bsn-invalid", "Invalid BSN", "The BSN does not pass the 11-proof.")
    state = node.holder.current
    gemeente = state.gemeenten_by_code.get(gemeentecode)
    subs = [
        s
        for s in (gemeente.spec.subscriptions if gemeente else [])
        if s.purpose == search.purpose and s.connector in state.connectors
    ]
    if not subs:
        raise Problem(
            403,
            "not-your-purpose",
            "No subscription for this purpose",
            f"Gemeente {gemeentecode} has no subscription on this node for purpose "
            f"{search.purpose!r}.",
        )
    sub = subs[0]
    purpose = state.connectors[sub.connector].purposes[search.purpose].spec
    if not register.releases_identity(purpose.fields):
        raise Problem(
            422,
            "purpose-not-identifying",
            "Purpose does not identify citizens",
            f"Purpose {search.purpose} does not release the BSN and the products' provider, "
            "code and period; the register cannot be built for it.",
            extra={"needs": list(register.NEEDED_FIELDS)},
        )
    ref = node.pseudonymizer.subject_ref(search.bsn)
    found = await asyncio.to_thread(
        node.store.deliveries_for_subject,
        gemeentecode,
        search.purpose,
        ref,
        set(register.ROLES),
    )
    rows = register.derive(found, search.bsn)
    logs = LogBuilder(trace, principal.actor)
    logs.add(
        activity="consult",
        controller=gemeentecode,
        purpose=search.purpose,
        legal_basis=sub.legal_basis,
        outcome="success",
        subject_ref=ref,
        connector=sub.connector,
        detail=f"virtueel register: {len(rows)} toewijzing(en) uit {len(found)} berichten",
    )
    await node.store.write_log_async(logs.records)
    return {
        "subjectRef": ref,
        "purpose": search.purpose,
        "legalBasis": sub.legal_basis,
        "assignments": [r.json() for r in rows],
    }
