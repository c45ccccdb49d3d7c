"""The same message again gets the first answer again; another one under its name is refused."""

from __future__ import annotations

from node_runtime.messages.compiled import CompiledMessageType
from node_runtime.pipeline.outcomes import IntakeResult, id_headers
from node_runtime.store.records import MessageRecord
from node_runtime.web.problems import Problem


def replay(existing: MessageRecord, digest: str, mt: CompiledMessageType) -> IntakeResult:
    if existing.payload_sha256 != digest:
        raise Problem.of(
            "conflict",
            "duplicate-message-id",
            "Message identification already used",
            f"A different {mt.name} with the same sender and BerichtIdentificatie "
            "was accepted before; identifications must be unique per sender.",
            extra={"messageId": existing.id},
        )
    headers = id_headers(existing.id)
    headers["Knooppunt-Duplicate"] = "true"
    return IntakeResult(
        "duplicate", existing.answer_body, existing.answer_content_type, existing.id, headers
    )
