"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from node_runtime.node import Node
from node_runtime.pipeline.errors import Problem
from node_runtime.principals import Principal, resolve
from node_runtime.tracing import TraceContext, from_header


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def get_principal(request: Request, node: NodeDep) -> Principal:
    cert = node.identity(request)
    if cert is None:
        raise Problem(401, "no-client-certificate", "Client certificate required",
                      "Authenticate with a client certificate issued by a trusted CA.")
    principal = resolve(node.holder.current, cert)
    if principal is None:
        raise Problem(
            403,
            "unknown-organisation",
            "Organisation not registered on this node",
            f"The certificate (serialNumber {cert.serial_number or '-'}) is valid but belongs to "
            "no gemeente, participant or administrator of this node.",
        )
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_trace(request: Request) -> TraceContext:
    return from_header(request.headers.get("traceparent"))


TraceDep = Annotated[TraceContext, Depends(get_trace)]
