"""The shadow release as a connector of its own: what the runtime compiles and evaluates, and
what the operator's admission check compiles before a revision with a shadow is recorded."""

from __future__ import annotations

from node_runtime.model.connector import SectorConnector


def shadow_resource(live: SectorConnector) -> SectorConnector | None:
    """The connector as its shadow release describes it: the shadow's standard version,
    bundle, namespaces (over the live ones) and message types; everything else as live."""
    shadow = live.spec.shadow
    if shadow is None:
        return None
    spec = live.spec.model_copy(
        update={
            "standard_version": shadow.standard_version,
            "bundle": shadow.bundle,
            "namespaces": {**live.spec.namespaces, **shadow.namespaces},
            "messages": shadow.messages,
            "shadow": None,
        }
    )
    return live.model_copy(update={"spec": spec})
