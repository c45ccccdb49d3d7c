"""May this caller send this message on this connector?"""

from __future__ import annotations

from node_runtime.messages.compiled import CompiledConnector, CompiledMessageType
from node_runtime.pipeline.context import Header
from node_runtime.state.principals import Principal
from node_runtime.web.problems import Problem, Violation


def authorise_connector(connector: CompiledConnector, principal: Principal) -> None:
    if principal.kind == "administrator":
        raise Problem.of(
            "forbidden",
            "not-a-sender",
            "Administrators do not send messages",
            "Management identities may not submit sector messages.",
        )
    if connector.name not in principal.connectors:
        raise Problem.of(
            "forbidden",
            "not-a-participant",
            "Not a participant of this connector",
            f"{principal.display_name} is not registered on connector {connector.name}.",
        )


def authorise_sender(mt: CompiledMessageType, header: Header, principal: Principal) -> None:
    expected = "participant" if mt.spec.direction == "toGemeente" else "gemeente"
    if principal.kind != expected:
        raise Problem.of(
            "forbidden",
            "wrong-direction",
            "Message type not allowed for this sender",
            f"{mt.name} is sent by a {expected}, not by a {principal.kind}.",
        )
    if header.sender not in principal.identifiers:
        raise Problem.of(
            "forbidden",
            "sender-mismatch",
            "Header sender is not the authenticated sender",
            f"The message names sender {header.sender!r}, but the client certificate "
            f"belongs to {principal.display_name}, who may send as "
            f"{', '.join(sorted(principal.identifiers))}.",
            [Violation("sender", "Afzender differs from the authenticated identity")],
        )
