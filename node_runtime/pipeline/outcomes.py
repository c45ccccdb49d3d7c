"""What the intake of one message comes to: an answer and how it came about, never a status."""

from __future__ import annotations

from dataclasses import dataclass, field

from node_runtime.web.problems import Problem
from node_runtime.web.statuses import Outcome

XML_TYPE = "application/xml"
JSON_TYPE = "application/json"
PROBLEM_TYPE = "application/problem+json"


@dataclass
class IntakeResult:
    """The answer for the sender; the HTTP layer turns ``outcome`` (or ``problem``) into a
    status through :mod:`node_runtime.web.statuses`."""

    outcome: Outcome
    body: bytes
    content_type: str
    message_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    problem: Problem | None = None
    """Set when the message was refused: the problem its body describes."""


def id_headers(message_id: str) -> dict[str, str]:
    return {"Knooppunt-Message-Id": message_id, "Location": f"/api/v1/messages/{message_id}"}
