"""The connector's business rules against one message, with the node's view of who is who."""

from __future__ import annotations

from node_runtime.messages.rules import RuleFailure, evaluate
from node_runtime.pipeline.context import MessageContext


def check_rules(ctx: MessageContext) -> list[RuleFailure]:
    mt, connector, state = ctx.mt, ctx.compiled, ctx.state

    def is_tenant(code: str) -> bool:
        if mt.spec.direction == "fromGemeente":  # the gemeente uses this connector
            gemeente = state.gemeenten_by_code.get(code)
            return gemeente is not None and any(
                s.connector == connector.name for s in gemeente.spec.subscriptions
            )
        return bool(state.subscriptions(code, connector.name, mt.name))

    def is_participant(ident: str) -> bool:
        return ident in connector.participants_by_identifier

    return evaluate(mt.rules, ctx.root, is_tenant=is_tenant, is_participant=is_participant)
