"""RFC 9457 problem details for every error of a FastAPI app (node and façade alike)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from node_runtime.web.problems import Problem, Violation

log = logging.getLogger("knooppunt.problems")
PROBLEM = "application/problem+json"
#: Routing-level answers as problem types (RFC 9457).
HTTP_PROBLEMS: dict[int, tuple[str, str]] = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(
        problem.body(instance=request.url.path),
        status_code=problem.status,
        media_type=PROBLEM,
        headers={"Knooppunt-Outcome": "refused"},
    )


class ProblemAnswers:
    """How an application answers a raised :class:`Problem`, a client that went away, and
    anything unexpected. The exception handlers :func:`install` registers use it, and so does
    an endpoint served outside FastAPI's router (the node's intake), so both answer alike."""

    def __init__(
        self,
        *,
        role: str,
        internal_detail: str,
        on_problem: Callable[[Request, Problem], Awaitable[None]] | None = None,
    ) -> None:
        self.role = role
        self.internal_detail = internal_detail
        self.on_problem = on_problem

    async def problem(self, request: Request, problem: Problem) -> JSONResponse:
        if self.on_problem is not None:
            await self.on_problem(request, problem)
        return problem_response(problem, request)

    def disconnected(self, request: Request) -> Response:
        # Nobody is left to answer: one line for the operator, no traceback, nothing stored.
        log.warning(
            "client disconnected before the request body was complete",
            extra={"path": request.url.path, "role": self.role},
        )
        return Response(status_code=400)

    def error(self, request: Request) -> JSONResponse:
        """Call from inside an ``except`` block: logs the exception with its traceback."""
        log.exception("unhandled error", extra={"path": request.url.path, "role": self.role})
        return problem_response(
            Problem(500, "internal-error", "Internal error", self.internal_detail), request
        )

    async def answer(self, request: Request, exc: Exception) -> Response:
        """The answer to ``exc`` raised while handling ``request`` (from its ``except``)."""
        if isinstance(exc, Problem):
            return await self.problem(request, exc)
        if isinstance(exc, ClientDisconnect):
            return self.disconnected(request)
        return self.error(request)


def install(
    app: FastAPI,
    *,
    role: str,
    internal_detail: str,
    on_problem: Callable[[Request, Problem], Awaitable[None]] | None = None,
) -> ProblemAnswers:
    """Problems as raised; invalid parameters as 400; unknown routes and methods (and any other
    HTTP exception) as problem details too; anything unexpected as a bare 500."""
    answers = ProblemAnswers(role=role, internal_detail=internal_detail, on_problem=on_problem)

    @app.exception_handler(Problem)
    async def handle_problem(request: Request, problem: Problem) -> JSONResponse:
        return await answers.problem(request, problem)

    @app.exception_handler(RequestValidationError)
    async def handle_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        violations = [
            Violation("request", str(e.get("msg")), path=".".join(str(p) for p in e["loc"]))
            for e in exc.errors()
        ]
        return problem_response(
            Problem(
                400,
                "invalid-request",
                "Invalid request",
                "The request parameters or body are invalid.",
                violations,
            ),
            request,
        )

    @app.exception_handler(StarletteHTTPException)
    async def handle_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = HTTP_PROBLEMS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404:
            detail = f"There is no resource at {request.url.path}."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        response = problem_response(Problem(exc.status_code, slug, title, detail), request)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(ClientDisconnect)
    async def handle_disconnect(request: Request, _exc: ClientDisconnect) -> Response:
        return answers.disconnected(request)

    @app.exception_handler(Exception)
    async def handle_error(request: Request, exc: Exception) -> JSONResponse:
        return answers.error(request)

    return answers
