"""A message refused before its content was judged (unknown connector, not XML, not allowed …):
problem details for the sender, one processing-log record, nothing else stored."""

from __future__ import annotations

import json
import logging

from node_runtime.audit.processing_log import NODE_PURPOSE
from node_runtime.observability.metrics import Metrics
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.outcomes import PROBLEM_TYPE, IntakeResult
from node_runtime.store.sql import SqlStore
from node_runtime.web.problems import Problem

log = logging.getLogger("knooppunt.intake")


def refuse(
    ctx: MessageContext, problem: Problem, *, store: SqlStore, metrics: Metrics
) -> IntakeResult:
    metrics.refusals.labels(problem.slug).inc()
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
    store.write_log(ctx.logs.records)
    log.info(
        "message refused",
        extra={
            "connector": ctx.connector_name,
            "reason": problem.slug,
            "status": problem.status,
            "actor": ctx.principal.actor,
        },
    )
    return IntakeResult(
        "refused", json.dumps(problem.body()).encode(), PROBLEM_TYPE, None, {}, problem
    )
