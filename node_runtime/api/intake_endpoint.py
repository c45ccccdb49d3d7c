"""The message intake answered in front of FastAPI's router.

The intake is the node's hot path: every message of every sender passes it, and so does every
refused request. Through FastAPI a request first walks the router (a match per route), then
FastAPI's request handling (dependency solving and parameter validation, exception wrapping,
a task group for the body); measured per refused request, that framework work cost more than
the caller's identity, the body and the refusal together. :class:`IntakeEndpoint` is a plain
ASGI middleware that recognises ``POST /api/v1/connectors/{connector}/messages`` by its path
and calls the same handler (:func:`~node_runtime.api.routes.messages.submit`) directly,
answering errors with the application's own
:class:`~node_runtime.web.problem_handlers.ProblemAnswers` (RFC 9457 problems, the
refusal hook, a bare 500 for the unexpected). Every other request, and every other method on
that path, goes on to FastAPI unchanged; the route stays declared there for the OpenAPI
contract.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from node_runtime.api.routes.messages import INTAKE_PATH, submit
from node_runtime.web.problem_handlers import ProblemAnswers

_PREFIX, _, _SUFFIX = INTAKE_PATH.partition("{connector}")


def connector_of(scope: Scope) -> str | None:
    """The connector named by an intake request's path, None for any other request.

    Matches as the router would: on the path below the application's ``root_path``, one
    non-empty segment for the connector (Starlette's ``{connector}`` matches ``[^/]+``)."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    connector = path[len(_PREFIX) : len(path) - len(_SUFFIX)]
    if not connector or "/" in connector:
        return None
    return connector


class IntakeEndpoint:
    """ASGI middleware: the intake directly, everything else to the wrapped application."""

    def __init__(self, app: ASGIApp, *, answers: ProblemAnswers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connector = connector_of(scope)
        if connector is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = {"connector": connector}
        request = Request(scope, receive, send)
        try:
            response = await submit(request, connector)
        except Exception as exc:  # noqa: BLE001 - answered as the application answers errors
            response = await self.answers.answer(request, exc)
        await response(scope, receive, send)
