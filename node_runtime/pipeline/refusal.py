"""A message refused before its content was judged (unknown connector, not XML, not allowed …):
problem details for the sender, one processing-log record, nothing else stored."""

from __future__ import annotations

import json
import logging

from node_runtime.audit.processing_log import NODE_PURPOSE
from node_runtime.observability.metrics import Metrics
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.outcomes import PROBLEM_TYPE, IntakeResult
from node_runtime.pipeline.pending import PendingWrite
from node_runtime.store.sql import LogWrite
from node_runtime.web.problems import Problem

log = logging.getLogger("knooppunt.intake")


def refuse(ctx: MessageContext, problem: Problem, *, metrics: Metrics) -> PendingWrite:
    """The refusal's answer and its processing-log record. From the event loop the answer
    does not wait for the record's fsync: nothing of the request is stored, so the record is
    committed behind the answer (a flood of refused requests then costs no more than its
    transport, and its records still arrive, in batches)."""
    metrics.count_refusal(problem.slug)
    ctx.logs.add(
        activity="refuse",
        controller=f"knooppunt:{ctx.state.name}",
        purpose=NODE_PURPOSE,
        legal_basis="not applicable: request refused",
        outcome=problem.slug,
        connector=ctx.connector.name if ctx.connector else None,
        message_type=ctx.message_type.name if ctx.message_type else None,
        detail=f"{problem.status} {problem.title}",
    )
    log.info(
        "message refused",
        extra={
            "connector": ctx.connector_name,
            "reason": problem.slug,
            "status": problem.status,
            "actor": ctx.principal.actor,
        },
    )
    result = IntakeResult(
        "refused", json.dumps(problem.body()).encode(), PROBLEM_TYPE, None, {}, problem
    )
    return PendingWrite(LogWrite(ctx.unwritten_logs()), lambda _written: result, answer_waits=False)
