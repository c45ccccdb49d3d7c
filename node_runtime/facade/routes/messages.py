"""The outbound path: a gemeente sends a message to a sector through the node serving it."""

from __future__ import annotations

import re

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from node_runtime.facade.deps import FacadeDep, GemeenteDep, trace_headers
from node_runtime.web import contract
from node_runtime.web.bodies import read_body
from node_runtime.web.problems import Problem

CONNECTOR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Answer headers of a node that the outbound path hands back unchanged.
PASSTHROUGH_HEADERS = ("content-type", "location", "traceparent", "retry-after")

router = APIRouter(prefix="/api/v1")


@router.post(
    "/connectors/{connector}/messages",
    tags=["messages"],
    summary="Send a message to a sector (e.g. WMO301): routed to the knooppunt "
    "serving the connector; its answer is passed back unchanged",
    status_code=202,
    openapi_extra=contract.xml_request_body("The message in the connector's standard (XML)."),
    responses={
        202: {
            "description": "The node's answer (e.g. the WMO302 retour).",
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        },
        **contract.problem_responses(409, 413, 415),
        422: {
            "description": "Schema-invalid (problem) or rejected by rules "
            "(the retour message carrying the retourcodes).",
            "content": {
                "application/xml": {"schema": {"type": "string"}},
                **contract.problem_content(),
            },
        },
        502: {
            "description": "The node is unreachable: nothing was submitted "
            "(Knooppunt-Submitted: false) or the outcome is unknown."
        },
        504: {
            "description": "No answer in time: the outcome is unknown; send "
            "the same message again (the node answers a duplicate with the "
            "first answer)."
        },
    },
)
async def submit_message(
    connector: str, request: Request, facade: FacadeDep, gemeente: GemeenteDep
) -> Response:
    state = facade.holder.current
    nodes = state.nodes_serving_connector(connector) if CONNECTOR_NAME.fullmatch(connector) else []
    if not nodes:
        raise Problem(
            404,
            "unknown-connector",
            "Unknown connector",
            f"No knooppunt behind this façade serves a connector named {connector!r}.",
            extra={"connectors": sorted(state.nodes_by_connector)},
        )
    if len(nodes) > 1:
        raise Problem(
            409,
            "ambiguous-connector",
            "Connector served by several knooppunten",
            f"Connector {connector} is served by {', '.join(n.name for n in nodes)}; "
            "the façade will not guess. Pin it on one knooppunt.",
            extra={"nodes": [n.name for n in nodes]},
        )
    node = nodes[0]
    body = await read_body(request, node.max_message_bytes, whose="knooppunt")
    headers = trace_headers(request)
    if "content-type" in request.headers:
        headers["content-type"] = request.headers["content-type"]
    path = f"/api/v1/connectors/{connector}/messages"
    try:
        response = await facade.nodes.send(
            node,
            gemeente,
            "POST",
            path,
            content=body,
            headers=headers,
            timeout=facade.settings.submit_timeout,
        )
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Problem(
            504,
            "node-timeout",
            "Knooppunt did not answer in time",
            f"Knooppunt {node.name} did not answer within "
            f"{facade.settings.submit_timeout:g} s. The outcome is unknown: send the "
            "same message again; a node answers a message it already accepted with "
            "the first answer, byte for byte.",
            extra={"node": node.name},
        ) from exc
    except httpx.ConnectError as exc:
        raise Problem(
            502,
            "node-unavailable",
            "Knooppunt unavailable",
            f"Knooppunt {node.name} could not be reached; nothing was submitted.",
            extra={"node": node.name, "submitted": False},
        ) from exc
    except httpx.TransportError as exc:
        raise Problem(
            502,
            "node-unavailable",
            "Knooppunt connection failed",
            f"The connection to knooppunt {node.name} failed ({type(exc).__name__}). "
            "The outcome is unknown: send the same message again.",
            extra={"node": node.name},
        ) from exc
    out_headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() in PASSTHROUGH_HEADERS or k.lower().startswith("knooppunt-")
    }
    out_headers.pop("content-length", None)
    out_headers["Knooppunt-Node"] = node.name
    return Response(response.content, status_code=response.status_code, headers=out_headers)
