"""An accepted message: its answer, then the message, its deliveries and its log in one commit."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from node_runtime.conversations.matching import Matcher
from node_runtime.messages.retour import RetourError
from node_runtime.observability.metrics import Metrics
from node_runtime.pipeline import conversation_events
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.idempotency import replay
from node_runtime.pipeline.outcomes import JSON_TYPE, XML_TYPE, IntakeResult, id_headers
from node_runtime.pipeline.pending import PendingWrite
from node_runtime.store.records import DeliveryRecord, IntakeCommit, MessageRecord
from node_runtime.store.sql import now
from node_runtime.web.problems import Problem
from node_runtime.web.statuses import OUTCOME_STATUS

log = logging.getLogger("knooppunt.intake")


def answer(ctx: MessageContext) -> tuple[bytes, str]:
    """The standard's retour message (e.g. WMO306 for WMO305), or a JSON acknowledgement."""
    mt = ctx.mt
    if mt.retour is None:
        body = json.dumps({"messageId": ctx.message_id, "status": "accepted"}).encode()
        return body, JSON_TYPE
    assert ctx.tree is not None
    try:
        built = mt.retour.build(ctx.tree, [], retour_id=ctx.retour_id, retour_date=ctx.today)
    except RetourError as exc:
        log.error(
            "retour generation failed",
            extra={"connector": ctx.compiled.name, "message_type": mt.name},
        )
        raise Problem.of(
            "failed", "retour-failed", "Retour message could not be produced", str(exc)
        ) from exc
    return built, XML_TYPE


def commit(
    ctx: MessageContext,
    deliveries: list[DeliveryRecord],
    *,
    metrics: Metrics,
    on_commit: Callable[[], None] | None,
    conversations: Matcher | None = None,
) -> PendingWrite:
    """The message, its deliveries and its log records as one write; the answer once it is
    durable (or the first answer again, when a concurrent duplicate was stored first)."""
    connector, mt, header = ctx.compiled, ctx.mt, ctx.head
    body, content_type = answer(ctx)
    record = MessageRecord(
        id=ctx.message_id,
        connector=connector.name,
        connector_revision=connector.revision,
        message_type=mt.name,
        direction=mt.spec.direction,
        sender=header.sender,
        recipient=header.recipient,
        sender_message_id=header.message_id,
        payload_sha256=ctx.digest,
        payload=ctx.body,
        received_at=now(),
        trace_id=ctx.logs.trace.trace_id,
        controller=ctx.controller,
        answer_status=OUTCOME_STATUS["accepted"],
        answer_body=body,
        answer_content_type=content_type,
    )
    events = conversation_events.events(ctx, conversations)
    logs = list(ctx.logs.records[ctx.logs_written :])

    def committed(outcome: tuple[MessageRecord, bool]) -> IntakeResult:
        stored, created = outcome
        if not created:
            return replay(stored, ctx.digest, mt)
        ctx.logs_written += len(logs)
        if on_commit is not None and any(d.delivery_mode == "push" for d in deliveries):
            on_commit()
        metrics.messages.labels(connector.name, mt.name, ctx.controller, "accepted").inc()
        for d in deliveries:
            metrics.deliveries.labels(connector.name, d.mailbox_id, d.purpose or "").inc()
        log.info(
            "message accepted",
            extra={
                "connector": connector.name,
                "message_type": mt.name,
                "message_id": ctx.message_id,
                "deliveries": len(deliveries),
            },
        )
        return IntakeResult(
            "accepted", body, content_type, ctx.message_id, id_headers(ctx.message_id)
        )

    return PendingWrite(IntakeCommit(record, deliveries, logs, events), committed)
