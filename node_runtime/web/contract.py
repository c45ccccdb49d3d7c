"""The OpenAPI contract of the node and the façade: what each operation really answers.

* Every error is RFC 9457 problem details (``application/problem+json``) with a ``type`` URI
  under :data:`PROBLEM_BASE`; :class:`ProblemDetails` is its schema.
* Each operation documents every status it can answer: the ones its route declares
  (:func:`problem_responses`), ``400`` where it takes parameters or a body (invalid input is a
  400 problem, never FastAPI's 422 validation error), ``401`` everywhere (no certificate behind
  a trusted proxy; a certificate revoked while its connection is open), ``403`` where the
  caller must be a known organisation, ``404`` where the path names a resource.
* Mutual TLS is the security scheme (OpenAPI 3.1 ``mutualTLS``) of every operation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://knooppunt.nl/problems/"
XML_MEDIA_TYPES = ("application/xml", "text/xml")

DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: parameters, body or cursor (problem details).",
    401: "No acceptable client certificate: none forwarded by a trusted proxy, or the "
    "certificate of this connection was revoked or expired (problem details; the "
    "connection is closed).",
    403: "The certificate's organisation may not do this: not registered, not its own "
    "resource, or its issuing CA may not speak for it (problem details).",
    404: "No such resource (problem details).",
    405: "Method not allowed (problem details).",
    409: "Conflict (problem details).",
    410: "Gone: the payload was purged after its retention period (problem details).",
    413: "Body over the size limit (problem details).",
    415: "Unsupported content type (problem details).",
    422: "Semantically invalid (problem details).",
    502: "A knooppunt behind the façade is unavailable (problem details).",
    503: "Not ready.",
    504: "A knooppunt behind the façade did not answer in time (problem details).",
}


class ProblemViolation(BaseModel):
    model_config = ConfigDict(extra="allow")

    rule: str | None = None
    message: str | None = None
    path: str | None = None


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; ``type`` is ``https://knooppunt.nl/problems/<slug>``."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    type: str = Field(
        pattern=r"^https://knooppunt\.nl/problems/[a-z0-9-]+$",
        description="The problem type: https://knooppunt.nl/problems/<slug>.",
    )
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = None
    errors: list[ProblemViolation] | None = Field(
        default=None, description="Individual violations (invalid input)."
    )


def problem_content() -> dict[str, Any]:
    return {PROBLEM: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for problem answers of a route."""
    return {
        s: {"description": DESCRIPTIONS.get(s, "Problem details."), "content": problem_content()}
        for s in statuses
    }


def xml_request_body(description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads a raw XML body."""
    schema = {"type": "string", "description": description}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {m: {"schema": schema} for m in XML_MEDIA_TYPES},
        }
    }


def _has_inputs(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters")) or "requestBody" in operation


def install(app: FastAPI, *, description: str, authenticated: tuple[str, ...] = ("/api/",)) -> None:
    """Replace ``app.openapi`` with the contract described in the module docstring.

    ``authenticated``: path prefixes of operations that require a registered organisation
    (they may answer 403).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        problem_schema = ProblemDetails.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in problem_schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas["ProblemDetails"] = problem_schema
        components["securitySchemes"] = {
            "mutualTLS": {"type": "mutualTLS", "description": description}
        }
        schema["security"] = [{"mutualTLS": []}]
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                _complete(operation, path, path.startswith(authenticated))
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], path: str, authenticated: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    validation = responses.get("422")
    if validation is not None:
        if validation.get("description") == "Validation Error":
            del responses["422"]  # FastAPI's default: this API answers invalid input with 400
        else:
            validation.get("content", {}).pop("application/json", None)
    wanted: set[int] = {401}
    if _has_inputs(operation):
        wanted.add(400)
    if authenticated:
        wanted.add(403)
    if "{" in path:
        wanted.add(404)
    for wanted_status in wanted:
        responses.setdefault(str(wanted_status), {"description": DESCRIPTIONS[wanted_status]})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400 and int(status) != 503:
            content = response.setdefault("content", {})
            content.setdefault(PROBLEM, problem_content()[PROBLEM])
            if _empty(content.get("application/json")):
                del content["application/json"]


def _empty(media: Any) -> bool:
    return isinstance(media, dict) and not media.get("schema")


def statuses(schema: dict[str, Any], path: str, method: str) -> Iterable[str]:
    """The documented statuses of one operation (for tests)."""
    responses: dict[str, Any] = schema["paths"][path][method.lower()]["responses"]
    return responses.keys()
