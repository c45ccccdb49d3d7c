"""FastAPI dependencies as Annotated aliases."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated
from urllib.parse import unquote

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import Depends, Request
from opentelemetry.trace import SpanKind
from starlette.concurrency import run_in_threadpool

from node_runtime.node.assembly import Node
from node_runtime.observability.tracing import TraceContext, from_header
from node_runtime.security.acting_for import HEADER as ACTING_FOR_HEADER
from node_runtime.security.acting_for import (
    ReplayCache,
    ReplayGuard,
    SharedReplayGuard,
    verify_assertion,
)
from node_runtime.security.callers import CertificateIdentity, PeerCertificate, claimed_serial
from node_runtime.security.tls.certificates import load_certificates
from node_runtime.state.principals import (
    Principal,
    PrincipalCache,
    issuer_refusal,
    resolve_acting_for,
)
from node_runtime.web.problems import Problem

_replay_lock = threading.Lock()


async def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def _replay_guard(request: Request, node: Node) -> ReplayGuard:
    """Used assertion ids: in the shared database when replicas share one (PostgreSQL), in
    the process otherwise (SQLite runs one replica). One guard per application."""
    state = request.app.state
    guard: ReplayGuard | None = getattr(state, "facade_replay_guard", None)
    if guard is None:
        with _replay_lock:
            guard = getattr(state, "facade_replay_guard", None)
            if guard is None:
                guard = (
                    SharedReplayGuard(node.store)
                    if node.store.dialect == "postgresql"
                    else ReplayCache()
                )
                state.facade_replay_guard = guard
    return guard


def _presenting_der(request: Request, cert: PeerCertificate, node: Node) -> bytes | None:
    """The DER of the verified certificate ``cert``: the TLS peer's, or (trusted-proxy mode)
    the forwarded one the identity extractor verified. Matched by fingerprint, never assumed."""
    candidates: list[bytes] = []
    der = getattr(request.state, "tls_client_cert_der", None)
    if isinstance(der, bytes | bytearray):
        candidates.append(bytes(der))
    forwarded = request.headers.get(node.settings.trusted_proxy_header)
    if forwarded:
        try:
            candidates.extend(
                c.public_bytes(Encoding.DER) for c in load_certificates(unquote(forwarded))[:1]
            )
        except ValueError:
            pass
    for candidate in candidates:
        if hashlib.sha256(candidate).hexdigest() == cert.fingerprint_sha256:
            return candidate
    return None


def _acting_for(
    request: Request, node: Node, cert: PeerCertificate, assertion: str | None
) -> Principal | None:
    """A façade acting for a gemeente; None when the caller is no façade (and sent no
    assertion)."""
    state = node.holder.current
    facades = state.knooppunt.spec.security.facade_oins
    serial = claimed_serial(cert)
    is_facade = bool(serial) and serial in facades
    if not is_facade:
        if assertion is not None:
            raise Problem(
                403,
                "not-a-facade",
                "Only a façade may act for a gemeente",
                f"The {ACTING_FOR_HEADER} header is accepted only from a certificate "
                "listed in spec.security.facadeOins; this one is not.",
            )
        return None
    if assertion is None:
        raise Problem(
            403,
            "assertion-required",
            "Façade call without assertion",
            f"A façade certificate acts only for a gemeente named in a signed "
            f"{ACTING_FOR_HEADER} assertion.",
        )
    der = _presenting_der(request, cert, node)
    if der is None:
        raise Problem(
            401,
            "assertion-invalid",
            "Acting-for assertion rejected",
            "The certificate presented on this connection is not available to verify "
            "the assertion against.",
            extra={"reason": "certificate"},
        )
    acting = verify_assertion(
        assertion,
        der,
        node_name=state.name,
        method=request.method,
        path=request.url.path,
        replay=_replay_guard(request, node),
    )
    principal = resolve_acting_for(
        state,
        gemeente_oin=acting.gemeente_oin,
        gemeentecode=acting.gemeentecode,
        facade_oin=acting.facade_oin,
    )
    if principal is None:
        raise Problem(
            403,
            "unknown-organisation",
            "Organisation not registered on this node",
            f"The façade acts for gemeente {acting.gemeentecode} (OIN "
            f"{acting.gemeente_oin}), which this node does not serve.",
        )
    return principal


_principals = PrincipalCache()


def _principal(request: Request, node: Node) -> Principal:
    cert = node.identity(request)
    if cert is None:
        raise Problem(
            401,
            "no-client-certificate",
            "Client certificate required",
            "Authenticate with a client certificate issued by a trusted CA.",
        )
    principal = _acting_for(request, node, cert, request.headers.get(ACTING_FOR_HEADER))
    if principal is None:
        principal = _principals.resolve(node.holder.current, cert)
    if principal is None:
        refusal = issuer_refusal(node.holder.current, cert)
        if refusal is not None:
            raise Problem(
                403, "issuer-not-allowed", "Issuing CA may not speak for this organisation", refusal
            )
        raise Problem(
            403,
            "unknown-organisation",
            "Organisation not registered on this node",
            f"The certificate (serialNumber {cert.serial_number or '-'}) is valid but belongs to "
            "no gemeente, participant or administrator of this node.",
        )
    request.state.principal = principal
    return principal


async def get_principal(request: Request, node: NodeDep) -> Principal:
    """The caller. The common case (the certificate of this TLS connection, parsed once per
    connection; no façade assertion, no forwarded certificate) is resolved on the event loop
    from a cache; verifying an assertion or a forwarded certificate may block (database,
    chain verification) and runs in a worker thread."""
    identity = node.identity
    if (
        isinstance(identity, CertificateIdentity)
        and identity.header not in request.headers
        and ACTING_FOR_HEADER not in request.headers
    ):
        return _principal(request, node)
    return await run_in_threadpool(_principal, request, node)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@contextlib.contextmanager
def request_trace(
    request: Request, node: Node, *, template: str | None = None
) -> Iterator[TraceContext]:
    """The caller's W3C trace continued; with tracing on, inside this request's server span.
    (A route on the hot path uses this directly instead of :data:`TraceDep`: FastAPI's
    handling of a generator dependency costs more than the rest of a refused request.)
    The span is named after the route's path ``template`` (default: the matched route's)."""
    if not node.telemetry.enabled:
        yield from_header(request.headers.get("traceparent"))
        return
    if template is None:
        template = getattr(request.scope.get("route"), "path", None) or request.url.path
    name = f"{request.method} {template}"
    with node.telemetry.span(
        name, request.headers.get("traceparent"), kind=SpanKind.SERVER
    ) as span:
        yield span.trace


async def get_trace(request: Request, node: NodeDep) -> AsyncIterator[TraceContext]:
    """The caller's W3C trace continued; with tracing on, inside this request's server span."""
    with request_trace(request, node) as trace:
        yield trace


TraceDep = Annotated[TraceContext, Depends(get_trace)]
