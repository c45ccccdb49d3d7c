"""Intake: sector parties and gemeenten submit standard messages here."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from node_runtime.api.deps import get_principal, request_trace
from node_runtime.node.assembly import Node
from node_runtime.observability.tracing import TraceContext
from node_runtime.state.principals import Principal
from node_runtime.web import contract
from node_runtime.web.bodies import read_body
from node_runtime.web.problems import Problem
from node_runtime.web.statuses import OUTCOME_STATUS

router = APIRouter(prefix="/api/v1", tags=["messages"])

XML_MEDIA_TYPES = {"application/xml", "text/xml"}
#: The intake's path template (under the router's prefix).
INTAKE_PATH = "/api/v1/connectors/{connector}/messages"


@router.post(
    INTAKE_PATH.removeprefix(router.prefix),
    summary="Submit a sector message (e.g. iWmo WMO305)",
    status_code=202,
    openapi_extra=contract.xml_request_body("The message in the connector's standard (XML)."),
    responses={
        202: {
            "description": "Accepted: the retour message (0200 per record) or a message id "
            "(a resent message gets the first answer again).",
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        400: {"description": "Not XML, DTD/entities, unknown message type (problem details)."},
        401: {"description": "No client certificate."},
        403: {"description": "Sender not authorised (problem details)."},
        404: {"description": "Unknown connector."},
        409: {"description": "Identification reused for a different message."},
        413: {"description": "Body over the size limit."},
        415: {"description": "Content type is not XML."},
        422: {
            "description": "Schema-invalid (problem) or rejected by rules (retour message "
            "carrying the retourcodes).",
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                **contract.problem_content(),
            },
        },
    },
)
async def submit_message(connector: str, request: Request) -> Response:
    """Documents the intake in the OpenAPI contract. On the node's listener the intake is
    answered in front of the router (:class:`~node_runtime.api.intake_endpoint.IntakeEndpoint`),
    by the same :func:`submit`; this route serves it where that endpoint is not installed."""
    return await submit(request, connector)


async def submit(request: Request, connector: str) -> Response:
    """The intake of one message. The node, the caller and the trace as the dependencies
    NodeDep, PrincipalDep and TraceDep give them, resolved here: FastAPI's dependency
    machinery (a generator dependency above all) cost more per request than a refusal's own
    work."""
    node: Node = request.app.state.node
    principal = await get_principal(request, node)
    with request_trace(request, node, template=INTAKE_PATH) as trace:
        return await _submit(connector, request, node, principal, trace)


async def _submit(
    connector: str, request: Request, node: Node, principal: Principal, trace: TraceContext
) -> Response:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in XML_MEDIA_TYPES:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"Send messages as application/xml, not {media_type or 'nothing'}.",
        )
    state = node.holder.current
    body = await read_body(request, state.knooppunt.spec.limits.max_message_bytes)
    result = await node.intake.process_async(state, connector, body, principal, trace)
    headers = dict(result.headers)
    headers["Knooppunt-Outcome"] = result.outcome
    status = result.problem.status if result.problem else OUTCOME_STATUS[result.outcome]
    return Response(
        result.body, status_code=status, media_type=result.content_type, headers=headers
    )
