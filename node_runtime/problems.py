"""RFC 9457 problem details for every error of a FastAPI app (node and façade alike)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from node_runtime.pipeline.errors import Problem, Violation

log = logging.getLogger("knooppunt.problems")
PROBLEM = "application/problem+json"


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(problem.body(instance=request.url.path), status_code=problem.status,
                        media_type=PROBLEM, headers={"Knooppunt-Outcome": "refused"})


def install(
    app: FastAPI,
    *,
    role: str,
    internal_detail: str,
    on_problem: Callable[[Request, Problem], Awaitable[None]] | None = None,
) -> None:
    """Problems as raised; invalid parameters as 400; anything unexpected as a bare 500."""

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
            Problem(400, "invalid-request", "Invalid request",
                    "The request parameters or body are invalid.", violations), request)

    @app.exception_handler(Exception)
    async def handle_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path, "role": role})
        return problem_response(Problem(500, "internal-error", "Internal error", internal_detail),
                                request)
