"""What the façade makes of a node that did not answer as hoped."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from node_runtime.facade.client import NodeOutcome
from node_runtime.web.problems import Problem


def failure(outcome: NodeOutcome, *, action: str, **extra: Any) -> Problem:
    if outcome.status == "timeout":
        return Problem(
            504,
            "node-timeout",
            "Knooppunt did not answer in time",
            f"Knooppunt {outcome.node} did not answer within the façade's bound; {action}",
            extra={"node": outcome.node, **extra},
        )
    return Problem(
        502,
        "node-unavailable" if outcome.status == "unavailable" else "node-error",
        "Knooppunt unavailable"
        if outcome.status == "unavailable"
        else "Knooppunt answered with an error",
        f"Knooppunt {outcome.node}: {outcome.detail}; {action}",
        extra={"node": outcome.node, **extra},
    )


def passthrough_problem(outcome: NodeOutcome) -> Response | None:
    """A node's own 4xx answer (404, 410, 422 …) goes to the gemeente unchanged; a refusal of
    the façade itself (401/403) is the façade's problem, not the gemeente's."""
    response = outcome.response
    if (
        response is None
        or not 400 <= response.status_code < 500
        or response.status_code in (401, 403)
    ):
        return None
    return Response(
        response.content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type"),
        headers={"Knooppunt-Node": outcome.node, "Knooppunt-Outcome": "refused"},
    )
