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


def install(
    app: FastAPI,
    *,
    role: str,
    internal_detail: str,
    on_problem: Callable[[Request, Problem], Awaitable[None]] | None = None,
) -> None:
    """Problems as raised; invalid parameters as 400; unknown routes and methods (and any other
    HTTP exception) as problem details too; anything unexpected as a bare 500."""

    @app.exception_handler(Problem)
    async def handle_problem(request: Request, problem: Problem) -> JSONResponse:
        if on_problem is not None:
            await on_problem(request, problem)
        return problem_response(problem, request)

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
        # Nobody is left to answer: one line for the operator, no traceback, nothing stored.
        log.warning(
            "client disconnected before the request body was complete",
            extra={"path": request.url.path, "role": role},
        )
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def handle_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path, "role": role})
        return problem_response(
            Problem(500, "internal-error", "Internal error", internal_detail), request
        )
