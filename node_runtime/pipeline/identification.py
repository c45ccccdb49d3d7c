"""Which connector, which message type, and what its header says."""

from __future__ import annotations

from lxml import etree

from node_runtime.messages.rules import xpath_text
from node_runtime.pipeline.context import Header, MessageContext
from node_runtime.web.problems import Problem, Violation


def find_connector(ctx: MessageContext) -> None:
    connector = ctx.state.connectors.get(ctx.connector_name)
    if connector is None:
        raise Problem.of(
            "not-found",
            "unknown-connector",
            "Unknown connector",
            f"This node serves no connector named {ctx.connector_name!r}.",
            extra={"connectors": sorted(ctx.state.connectors)},
        )
    ctx.connector = connector


def identify_message_type(ctx: MessageContext) -> None:
    """By the root element's namespace and name."""
    root = ctx.root
    mt = ctx.compiled.identify(root)
    if mt is None:
        qname = etree.QName(root)
        raise Problem.of(
            "invalid",
            "unknown-message-type",
            "Unknown message type",
            f"Connector {ctx.compiled.name} accepts no message with root "
            f"{{{qname.namespace}}}{qname.localname}.",
            [
                Violation(
                    "message-type",
                    "root element not declared by the connector",
                    line=root.sourceline,
                )
            ],
            extra={"accepted": sorted(ctx.compiled.messages)},
        )
    ctx.message_type = mt


def read_header(ctx: MessageContext) -> None:
    mt, root = ctx.mt, ctx.root
    header = Header(
        sender=xpath_text(mt.sender(root)),
        recipient=xpath_text(mt.recipient(root)),
        message_id=xpath_text(mt.message_id(root)),
    )
    ctx.header = header
    # the gemeente responsible for the message: the one it goes to, or the one sending it
    ctx.controller = header.recipient if mt.spec.direction == "toGemeente" else header.sender
