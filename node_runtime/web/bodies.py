"""Reading a request body under a size limit, refused as soon as it passes the limit."""

from __future__ import annotations

from starlette.requests import Request

from node_runtime.web.problems import Problem


async def read_body(request: Request, limit: int, *, whose: str = "node") -> bytes:
    """The whole body, never buffered past ``limit`` bytes (Content-Length checked first).

    ``whose`` names the limit in the problem ("the node's limit", "the knooppunt's limit").
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large(limit, whose)
        except ValueError as exc:
            raise Problem.of(
                "invalid",
                "bad-content-length",
                "Invalid Content-Length",
                "Content-Length is not a number.",
            ) from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit, whose)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int, whose: str = "node") -> Problem:
    return Problem.of(
        "too-large",
        "body-too-large",
        "Message too large",
        f"The body exceeds the {whose}'s limit of {limit} bytes.",
        extra={"maxBytes": limit},
    )
