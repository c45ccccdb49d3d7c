"""Under which legal basis the node takes in a message (grondslag), for the processing log."""

from __future__ import annotations

from node_runtime.pipeline.context import MessageContext


def for_intake(ctx: MessageContext) -> str:
    """The bases under which the responsible gemeente takes messages of this connector."""
    gemeente = ctx.state.gemeenten_by_code.get(ctx.controller)
    if gemeente is None:
        return "unknown"
    bases = sorted(
        {s.legal_basis for s in gemeente.spec.subscriptions if s.connector == ctx.compiled.name}
    )
    return "; ".join(bases) or "unknown"
