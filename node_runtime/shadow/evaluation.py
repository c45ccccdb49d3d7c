"""What a compiled connector makes of a message: the steps of the intake pipeline that decide
the answer (schema, rules, conversion), with no store and no side effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from node_runtime.messages.compiled import CompiledConnector
from node_runtime.messages.conversion import ConversionError
from node_runtime.messages.parsing import parse_message
from node_runtime.messages.rules import evaluate
from node_runtime.state.node_state import NodeState
from node_runtime.web.problems import Problem


@dataclass(frozen=True)
class Outcome:
    message_type: str
    accepted: bool
    # (retourcode, element path): the standard's verdict; XSD failures are retourcode 0001
    retourcodes: tuple[tuple[str, str], ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)  # converted field path → value


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [{"c": 1}]}} → {"a.b[0].c": 1}: every leaf of a converted document."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def evaluate_message(
    compiled: CompiledConnector, state: NodeState, body: bytes, *, max_depth: int = 64
) -> Outcome | None:
    """None when the message is not one of this connector's types (or cannot be parsed)."""
    try:
        tree = parse_message(body, max_depth=max_depth)
    except Problem:
        return None
    root = tree.getroot()
    mt = compiled.identify(root)
    if mt is None:
        return None
    with mt.schema_lock:
        valid = mt.schema.validate(tree)
        errors = [] if valid else list(mt.schema.error_log)
    if not valid:
        return Outcome(mt.name, False, tuple(sorted({("0001", e.path or "/") for e in errors})))
    spec = mt.spec

    def is_tenant(code: str) -> bool:
        if spec.direction == "fromGemeente":
            gemeente = state.gemeenten_by_code.get(code)
            return gemeente is not None and any(
                s.connector == compiled.name for s in gemeente.spec.subscriptions
            )
        return bool(state.subscriptions(code, compiled.name, mt.name))

    failures = evaluate(
        mt.rules,
        root,
        is_tenant=is_tenant,
        is_participant=lambda i: i in compiled.participants_by_identifier,
    )
    if failures:
        return Outcome(mt.name, False, tuple(sorted({(f.retourcode, f.path) for f in failures})))
    fields: dict[str, Any] = {}
    if mt.converter is not None:
        try:
            fields = flatten(mt.converter.convert(root))
        except (ConversionError, etree.Error):
            return Outcome(mt.name, False, (("conversion", "/"),))
    return Outcome(mt.name, True, (), fields)
