"""Which conversations (request and answer within a deadline) an accepted message opens or
closes; the events are written in the intake's own transaction."""

from __future__ import annotations

from node_runtime.conversations.matching import Matcher, Parties
from node_runtime.pipeline.context import MessageContext
from node_runtime.store.records import ConversationEvent


def events(ctx: MessageContext, matcher: Matcher | None) -> list[ConversationEvent]:
    if matcher is None:
        return []
    mt, header = ctx.mt, ctx.head
    participant = header.sender if mt.spec.direction == "toGemeente" else header.recipient
    parties = Parties(header.sender, header.recipient, ctx.controller, participant)
    return matcher.events(
        ctx.compiled.resource,
        mt.name,
        ctx.root,
        parties,
        message_id=ctx.message_id,
        sender_message_id=header.message_id,
    )
