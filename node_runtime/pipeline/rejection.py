"""A message its business rules reject: the retourcodes, in the standard's retour message."""

from __future__ import annotations

import json

from node_runtime.audit.processing_log import NODE_PURPOSE
from node_runtime.messages.retour import RetourError
from node_runtime.messages.rules import RuleFailure
from node_runtime.observability.metrics import Metrics
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.outcomes import PROBLEM_TYPE, XML_TYPE, IntakeResult
from node_runtime.pipeline.pending import PendingWrite
from node_runtime.store.sql import LogWrite
from node_runtime.web.problems import Problem, Violation


def reject(ctx: MessageContext, failures: list[RuleFailure], *, metrics: Metrics) -> PendingWrite:
    """Nothing of the message is stored; only the processing-log record of the rejection,
    durable before the retour is made."""
    connector, mt = ctx.compiled, ctx.mt
    codes = sorted({f.retourcode for f in failures})
    for code in codes:
        metrics.retourcodes.labels(connector.name, code).inc()
    metrics.messages.labels(connector.name, mt.name, ctx.controller, "rejected").inc()
    ctx.logs.for_subjects(
        ctx.subjects,
        activity="reject",
        purpose=NODE_PURPOSE,
        legal_basis="not applicable: message rejected",
        outcome="rejected",
        controller=ctx.controller,
        connector=connector.name,
        message_type=mt.name,
        detail="retourcodes " + ",".join(codes),
    )
    return PendingWrite(
        LogWrite(ctx.unwritten_logs()), lambda _written: _answer(ctx, failures, codes)
    )


def _answer(ctx: MessageContext, failures: list[RuleFailure], codes: list[str]) -> IntakeResult:
    mt = ctx.mt
    headers = {"Knooppunt-Retourcodes": ",".join(codes)}
    if mt.retour is not None:
        assert ctx.tree is not None
        try:
            body = mt.retour.build(
                ctx.tree, failures, retour_id=ctx.retour_id, retour_date=ctx.today
            )
        except RetourError as exc:
            raise Problem.of(
                "failed", "retour-failed", "Retour message could not be produced", str(exc)
            ) from exc
        return IntakeResult("rejected", body, XML_TYPE, None, headers)
    details = [
        {
            "rule": f.rule,
            "retourcode": f.retourcode,
            "message": f.message,
            "line": f.line,
            "path": f.path,
        }
        for f in failures
    ]
    problem = Problem.of(
        "unprocessable",
        "rules-violated",
        "Message rejected by business rules",
        f"{mt.name} violates {len(failures)} rule(s).",
        [Violation(f.rule, f"{f.retourcode} {f.message}", f.line, f.path) for f in failures],
        extra={"retourcodes": codes, "rules": details},
    )
    return IntakeResult(
        "rejected", json.dumps(problem.body()).encode(), PROBLEM_TYPE, None, headers
    )
