"""Where an accepted message goes: one mailbox entry per subscription (purpose-filtered), or the
addressed participant's mailbox for a message from a gemeente."""

from __future__ import annotations

import json

from lxml import etree

from node_runtime.audit.identifiers import time_ordered_uuid
from node_runtime.audit.processing_log import NODE_PURPOSE
from node_runtime.messages.conversion import ConversionError
from node_runtime.pipeline import envelopes
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.outcomes import JSON_TYPE, XML_TYPE
from node_runtime.store.records import DeliveryRecord
from node_runtime.store.sql import now
from node_runtime.web.problems import Problem

# json.dumps(..., ensure_ascii=False) builds an encoder per call; one encoder gives the same text.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def route(
    ctx: MessageContext, *, order_key: str | None, public_url: str | None
) -> list[DeliveryRecord]:
    if ctx.mt.spec.direction == "fromGemeente":
        return [to_participant(ctx, order_key=order_key)]
    return to_gemeente(ctx, order_key=order_key, public_url=public_url)


def to_participant(ctx: MessageContext, *, order_key: str | None) -> DeliveryRecord:
    connector, mt, header = ctx.compiled, ctx.mt, ctx.head
    participant = connector.participants_by_identifier.get(header.recipient)
    if participant is None:  # guarded by a participant rule; never deliver blindly
        raise Problem.of(
            "unprocessable",
            "unknown-recipient",
            "Unknown recipient",
            f"No participant with identifier {header.recipient}.",
        )
    delivery = DeliveryRecord(
        id=time_ordered_uuid(),
        message_id=ctx.message_id,
        mailbox_kind="participant",
        mailbox_id=participant,
        connector=connector.name,
        message_type=mt.name,
        purpose=None,
        legal_basis=ctx.legal_basis,
        content=etree.tostring(ctx.root, xml_declaration=True, encoding="UTF-8"),
        content_type=XML_TYPE,
        subject_refs=tuple(s for s in ctx.subjects if s),
        order_key=order_key,
        created_at=now(),
        traceparent=ctx.logs.trace.traceparent(ctx.logs.span_id),
    )
    ctx.logs.for_subjects(
        ctx.subjects,
        activity="route",
        purpose=NODE_PURPOSE,
        legal_basis=ctx.legal_basis,
        outcome="success",
        delivery_id=delivery.id,
        detail=f"to participant {participant}",
        **ctx.log_fields(),
    )
    return delivery


def to_gemeente(
    ctx: MessageContext, *, order_key: str | None, public_url: str | None
) -> list[DeliveryRecord]:
    connector, mt, header = ctx.compiled, ctx.mt, ctx.head
    created = now()
    assert mt.converter is not None and mt.spec.notification is not None
    try:
        content = mt.converter.convert(ctx.root)
    except ConversionError as exc:
        raise Problem.of(
            "failed",
            "conversion-failed",
            "Conversion failed",
            f"The connector's conversion of {mt.name} failed: {exc}",
        ) from exc
    ctx.logs.for_subjects(
        ctx.subjects,
        activity="convert",
        purpose=NODE_PURPOSE,
        legal_basis=ctx.legal_basis,
        outcome="success",
        **ctx.log_fields(),
    )
    subs = ctx.state.subscriptions(header.recipient, connector.name, mt.name)
    if not subs:  # guarded by a tenant rule; never accept what cannot be delivered
        raise Problem.of(
            "unprocessable",
            "no-subscription",
            "Recipient has no subscription",
            f"Gemeente {header.recipient} takes no {mt.name} from this node.",
        )
    refs = tuple(s for s in ctx.subjects if s)
    deliveries = []
    for sub in subs:
        delivery_id = time_ordered_uuid()
        envelope = envelopes.notification(
            notification=mt.spec.notification,
            public_url=public_url,
            connector=connector.name,
            message_type=mt.name,
            header=header,
            message_id=ctx.message_id,
            delivery_id=delivery_id,
            purpose=sub.purpose,
            legal_basis=sub.legal_basis,
            created=created,
            released=connector.purposes[sub.purpose].filter.apply(content),
        )
        deliveries.append(
            DeliveryRecord(
                id=delivery_id,
                message_id=ctx.message_id,
                mailbox_kind="gemeente",
                mailbox_id=header.recipient,
                connector=connector.name,
                message_type=mt.name,
                purpose=sub.purpose,
                legal_basis=sub.legal_basis,
                content=_encode(envelope).encode(),
                content_type=JSON_TYPE,
                subject_refs=refs,
                order_key=order_key,
                created_at=created,
                traceparent=ctx.logs.trace.traceparent(ctx.logs.span_id),
                delivery_mode=sub.delivery.mode,
                endpoint=sub.delivery.endpoint,
            )
        )
        ctx.logs.for_subjects(
            ctx.subjects,
            activity="route",
            purpose=sub.purpose,
            legal_basis=sub.legal_basis,
            outcome="success",
            delivery_id=delivery_id,
            **ctx.log_fields(),
        )
    return deliveries
