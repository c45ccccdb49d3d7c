"""XSD validation against the connector's schema set (compiled once per connector revision)."""

from __future__ import annotations

from node_runtime.pipeline.context import MessageContext
from node_runtime.web.problems import Problem, Violation

MAX_VIOLATIONS = 50


def validate_schema(ctx: MessageContext) -> None:
    mt = ctx.mt
    assert ctx.tree is not None
    with mt.schema_lock:
        valid = mt.schema.validate(ctx.tree)
        errors = [] if valid else list(mt.schema.error_log)
    if not valid:
        violations = [
            Violation("xsd", e.message, line=e.line, path=e.path) for e in errors[:MAX_VIOLATIONS]
        ]
        raise Problem.of(
            "unprocessable",
            "schema-invalid",
            "Message does not conform to its schema",
            f"{mt.name} is not valid against {mt.spec.schema_file}: {len(errors)} violation(s).",
            violations,
            extra={"retourcode": "0001", "messageType": mt.name},
        )
