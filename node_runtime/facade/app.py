"""create_facade_app: the municipal cloud façade as a FastAPI application.

A gemeente connects once — one certificate, one base URL, one API — and gets its mailbox, its
processing log, the outbound path to every sector and a catalogue across all the knooppunten
that serve it. The façade stores nothing: every answer comes from the nodes, called with the
façade's own certificate and a signed, short-lived assertion naming the gemeente.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from cryptography import x509
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from node_runtime import __version__
from node_runtime.facade.client import NodeClient, NodeOutcome
from node_runtime.facade.config import FacadeSettings
from node_runtime.facade.state import FacadeState, NodeEntry, build_facade_state
from node_runtime.messages.rules import elfproef
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.loading import ResourceSet, load_paths
from node_runtime.security.acting_for import AssertionSigner, SigningKey
from node_runtime.security.peers import CertificateIdentity
from node_runtime.security.tls.contexts import client_context
from node_runtime.state.node_state import StateHolder, watch_files
from node_runtime.state.principals import PeerCertificate, claimed_serial
from node_runtime.web import contract
from node_runtime.web import problem_handlers as problems
from node_runtime.web.problems import Problem

log = logging.getLogger("knooppunt.facade")
ITEM_ID = re.compile(r"^([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)~([A-Za-z0-9][A-Za-z0-9._-]{0,127})$")
CONNECTOR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Answer headers of a node that the outbound path hands back unchanged.
PASSTHROUGH_HEADERS = ("content-type", "location", "traceparent", "retry-after")

IdentityExtractor = Callable[[Request], PeerCertificate | None]


# --------------------------------------------------------------------------- the façade object


@dataclass
class Facade:
    settings: FacadeSettings
    holder: StateHolder[FacadeState]
    identity: IdentityExtractor
    signer: AssertionSigner
    client_ssl: ssl.SSLContext
    transport: httpx.AsyncBaseTransport | None = None
    on_tick: list[Callable[[], None]] = field(default_factory=list)
    client: NodeClient | None = None
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        self.client = NodeClient(
            self.client_ssl, self.signer, timeout=self.settings.node_timeout,
            submit_timeout=self.settings.submit_timeout,
            assertion_lifetime=self.settings.assertion_lifetime,
            max_connections_per_node=self.settings.max_connections_per_node,
            transport=self.transport)
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.client is not None:
            await self.client.aclose()

    async def _watch(self) -> None:
        """Pick up changed resources (a new gemeente, node or subscription) live."""

        def reloaded(generation: int) -> None:
            log.info("façade configuration reloaded", extra={"generation": generation})

        await watch_files(list(self.settings.resources), interval=self.settings.reload_interval,
                          holder=self.holder, ticks=self.on_tick, on_reloaded=reloaded)

    @property
    def nodes(self) -> NodeClient:
        assert self.client is not None, "the façade is not started"
        return self.client


def _load_signer(cert: Path, key: Path) -> AssertionSigner:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    certificate = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    private = load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise SystemExit(f"{key}: unsupported key type for signing assertions")
    signing: SigningKey = private
    return AssertionSigner(signing, certificate)


def build_facade(
    settings: FacadeSettings,
    *,
    identity: IdentityExtractor | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Facade:
    missing = [n for n in ("client_cert", "client_key") if getattr(settings, n) is None]
    if missing:
        raise SystemExit(f"the façade needs {', '.join(missing)}: its own organisation "
                         "certificate for calling the nodes")
    assert settings.client_cert is not None and settings.client_key is not None
    trust = settings.node_trust or settings.tls_trust
    if trust is None:
        raise SystemExit("the façade needs node_trust (or tls_trust) to verify the nodes")
    paths = list(settings.resources)

    def loader() -> ResourceSet:
        return load_paths(paths)

    def on_error(exc: Exception) -> None:
        log.error("façade configuration reload refused; keeping the previous one",
                  extra={"error": str(exc)})

    holder: StateHolder[FacadeState] = StateHolder(
        loader, lambda res, gen: build_facade_state(res, generation=gen), on_error=on_error)
    if identity is None:
        identity = CertificateIdentity(proxies=list, trust_bundle=settings.tls_trust,
                                       crl=settings.tls_crl)
    return Facade(settings=settings, holder=holder, identity=identity,
                  signer=_load_signer(settings.client_cert, settings.client_key),
                  client_ssl=client_context(settings.client_cert, settings.client_key, trust),
                  transport=transport)


# --------------------------------------------------------------------------- dependencies


async def get_facade(request: Request) -> Facade:
    facade: Facade = request.app.state.facade
    return facade


FacadeDep = Annotated[Facade, Depends(get_facade)]


async def get_gemeente(request: Request, facade: FacadeDep) -> Gemeente:
    """The calling gemeente, from its verified client certificate (never from a header).

    Async on purpose: cheap, and it saves a thread-pool hop on every request."""
    cert = facade.identity(request)
    if cert is None:
        raise Problem(401, "no-client-certificate", "Client certificate required",
                      "Authenticate with your gemeente's client certificate.")
    serial = claimed_serial(cert)
    if cert.serial_number and serial is None:
        raise Problem(403, "issuer-not-allowed",
                      "Issuing CA may not speak for this organisation",
                      f"The certificate carries serialNumber {cert.serial_number}, but its "
                      "issuing CA is not allowed to speak for that organisation.")
    gemeente = facade.holder.current.gemeenten_by_oin.get(serial or "")
    if gemeente is None:
        raise Problem(403, "not-a-gemeente", "Not a gemeente known to the façade",
                      f"The certificate (serialNumber {cert.serial_number or '-'}) is valid but "
                      "belongs to no gemeente; the façade serves gemeenten only.")
    request.state.gemeente = gemeente
    return gemeente


GemeenteDep = Annotated[Gemeente, Depends(get_gemeente)]


def _own(gemeente: Gemeente, code: str, what: str) -> None:
    if gemeente.spec.gemeentecode != code:
        raise Problem(403, f"not-your-{what}", f"Not your {what.replace('-', ' ')}",
                      f"{gemeente.spec.display_name} may use only its own {what.replace('-', ' ')}"
                      f" (gemeentecode {gemeente.spec.gemeentecode}).")


def _trace_headers(request: Request) -> dict[str, str]:
    value = request.headers.get("traceparent")
    return {"traceparent": value} if value else {}


# --------------------------------------------------------------------------- models (OpenAPI)


class NodeReport(BaseModel):
    """How one node contributed to an aggregated answer."""

    status: Literal["ok", "unavailable", "timeout", "error"] = Field(
        description="ok: answered; unavailable: not reachable; timeout: no answer within the "
        "façade's per-node bound; error: answered with an error.")
    detail: str | None = None
    elapsed_ms: float = Field(alias="elapsedMs")
    http_status: int | None = Field(default=None, alias="httpStatus")
    count: int | None = Field(default=None, description="Items taken from this node.")


class FacadeMailboxItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Façade id: <node>~<delivery id>.")
    node: str
    node_item_id: str = Field(alias="nodeItemId", description="The delivery id on the node.")
    connector: str
    message_type: str = Field(alias="messageType")
    purpose: str | None
    created_at: str = Field(alias="createdAt")


class AggregatedMailbox(BaseModel):
    items: list[FacadeMailboxItem]
    next_after: str | None = Field(alias="nextAfter",
                                   description="Opaque cursor for the next page.")
    complete: bool = Field(description="False when a node is missing from this answer.")
    nodes: dict[str, NodeReport]


class AggregatedLog(BaseModel):
    records: list[dict[str, Any]] = Field(
        description="The gemeente's processing-log records from every node, merged by "
        "timestamp; each names its node.")
    next_after: str | None = Field(alias="nextAfter")
    complete: bool
    nodes: dict[str, NodeReport]


class SubjectSearch(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    bsn: str = Field(pattern=r"^[0-9]{9}$", description="The citizen's BSN (body only, never a "
                     "URL); each node pseudonymises it with its own key.")
    purpose: str | None = None
    connector: str | None = None
    limit: int = Field(default=100, ge=1, le=1000)


# --------------------------------------------------------------------------- helpers


def _decode_cursor(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor",
                      "Pass nextAfter from the previous page unchanged.") from exc
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and (isinstance(v, str) or (
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63))
            for k, v in data.items()):
        raise Problem(400, "invalid-cursor", "Invalid cursor",
                      "Pass nextAfter from the previous page unchanged.")
    return data


def _encode_cursor(cursor: dict[str, Any]) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min


def _json_list(outcome: NodeOutcome, key: str) -> tuple[list[dict[str, Any]], Any]:
    """(items, nextAfter) of an ok node answer; raises ValueError on a malformed one."""
    body = outcome.json()
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise ValueError(f"answer has no {key} list")
    return [i for i in body[key] if isinstance(i, dict)], body.get("nextAfter")


def _failure(outcome: NodeOutcome, *, action: str, **extra: Any) -> Problem:
    if outcome.status == "timeout":
        return Problem(504, "node-timeout", "Knooppunt did not answer in time",
                       f"Knooppunt {outcome.node} did not answer within the façade's bound; "
                       f"{action}", extra={"node": outcome.node, **extra})
    return Problem(502, "node-unavailable" if outcome.status == "unavailable" else "node-error",
                   "Knooppunt unavailable" if outcome.status == "unavailable"
                   else "Knooppunt answered with an error",
                   f"Knooppunt {outcome.node}: {outcome.detail}; {action}",
                   extra={"node": outcome.node, **extra})


def _resolve_item(state: FacadeState, gemeente: Gemeente, item_id: str) -> tuple[NodeEntry, str]:
    match = ITEM_ID.fullmatch(item_id)
    node = state.nodes.get(match.group(1)) if match else None
    if match is None or node is None or node not in state.nodes_for(gemeente):
        raise Problem(404, "no-such-message", "No such message",
                      f"Mailbox {gemeente.spec.gemeentecode} holds no message {item_id}.")
    return node, match.group(2)


def _passthrough_node_problem(outcome: NodeOutcome) -> Response | None:
    """A node's own 4xx answer (404, 410, 422 …) goes to the gemeente unchanged; a refusal of
    the façade itself (401/403) is the façade's problem, not the gemeente's."""
    response = outcome.response
    if response is None or not 400 <= response.status_code < 500 or \
            response.status_code in (401, 403):
        return None
    return Response(response.content, status_code=response.status_code,
                    media_type=response.headers.get("content-type"),
                    headers={"Knooppunt-Node": outcome.node, "Knooppunt-Outcome": "refused"})


# --------------------------------------------------------------------------- routes

router = APIRouter(prefix="/api/v1")
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/gemeenten/{gemeentecode}/mailbox", tags=["mailbox"],
            summary="One mailbox across every knooppunt serving the gemeente",
            responses={200: {"model": AggregatedMailbox}})
async def list_mailbox(
    gemeentecode: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    after: Annotated[str | None, Query(description="nextAfter of the previous page")] = None,
    limit: Limit = 100,
    include_acknowledged: Annotated[bool, Query(alias="includeAcknowledged")] = False,
) -> dict[str, Any]:
    _own(gemeente, gemeentecode, "mailbox")
    cursor = _decode_cursor(after)
    nodes = facade.holder.current.nodes_for(gemeente)
    path = f"/api/v1/gemeenten/{gemeentecode}/mailbox"
    trace = _trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        params = {"limit": str(limit),
                  "includeAcknowledged": "true" if include_acknowledged else "false"}
        if node.name in cursor:
            params["after"] = str(cursor[node.name])
        return await facade.nodes.attempt(node, gemeente, "GET", path, params=params,
                                          headers=trace)

    outcomes = await facade.nodes.fan_out(nodes, call)
    merged: list[tuple[datetime, str, int, dict[str, Any]]] = []
    reports: dict[str, dict[str, Any]] = {}
    more = False
    for name, outcome in outcomes.items():
        if outcome.ok:
            try:
                items, next_after = _json_list(outcome, "items")
            except ValueError as exc:
                outcome = NodeOutcome(name, "error", f"malformed answer: {exc}", None,
                                      outcome.elapsed_ms)
            else:
                more = more or next_after is not None
                for item in items:
                    merged.append((_when(item.get("createdAt")), name,
                                   int(item.get("seq") or 0), item))
        reports[name] = outcome.describe()
    merged.sort(key=lambda t: (t[0], t[1], t[2]))
    page, rest = merged[:limit], merged[limit:]
    new_cursor = dict(cursor)
    out: list[dict[str, Any]] = []
    for _moment, name, seq, item in page:
        new_cursor[name] = seq
        out.append({**item, "id": f"{name}~{item.get('id')}", "node": name,
                    "nodeItemId": item.get("id")})
        reports[name]["count"] = reports[name].get("count", 0) + 1
    for report in reports.values():
        if report["status"] == "ok":
            report.setdefault("count", 0)
    complete = all(r["status"] == "ok" for r in reports.values())
    return {"items": out, "nextAfter": _encode_cursor(new_cursor) if (more or rest) else None,
            "complete": complete, "nodes": reports}


@router.get("/gemeenten/{gemeentecode}/mailbox/{item_id}", tags=["mailbox"],
            summary="Fetch one message from the knooppunt that holds it (unchanged)",
            responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                         "application/xml": {"schema": {"type": "string"}}}},
                       **contract.problem_responses(404, 410, 502, 504)})
async def fetch_message(gemeentecode: str, item_id: str, request: Request, facade: FacadeDep,
                        gemeente: GemeenteDep) -> Response:
    _own(gemeente, gemeentecode, "mailbox")
    node, delivery = _resolve_item(facade.holder.current, gemeente, item_id)
    outcome = await facade.nodes.attempt(
        node, gemeente, "GET", f"/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery}",
        headers=_trace_headers(request), accept=lambda r: r.status_code == 200)
    if not outcome.ok:
        passed = _passthrough_node_problem(outcome)
        if passed is not None:
            return passed
        raise _failure(outcome, action="the message was not fetched; try again later.")
    response = outcome.response
    assert response is not None
    headers = {"Knooppunt-Node": node.name, "Knooppunt-Delivery-Id": item_id}
    if "traceparent" in response.headers:
        headers["traceparent"] = response.headers["traceparent"]
    return Response(response.content, status_code=200,
                    media_type=response.headers.get("content-type"), headers=headers)


@router.post("/gemeenten/{gemeentecode}/mailbox/{item_id}/ack", tags=["mailbox"],
             status_code=204,
             summary="Acknowledge a message at the knooppunt that holds it",
             responses={204: {"description": "The owning node confirmed the acknowledgement."},
                        **contract.problem_responses(404),
                        502: {"description": "The node is unavailable: NOT acknowledged."},
                        504: {"description": "The node did not confirm in time: retry (the "
                              "acknowledgement is idempotent)."}})
async def ack_message(gemeentecode: str, item_id: str, request: Request, facade: FacadeDep,
                      gemeente: GemeenteDep) -> Response:
    _own(gemeente, gemeentecode, "mailbox")
    node, delivery = _resolve_item(facade.holder.current, gemeente, item_id)
    outcome = await facade.nodes.attempt(
        node, gemeente, "POST", f"/api/v1/gemeenten/{gemeentecode}/mailbox/{delivery}/ack",
        headers=_trace_headers(request), accept=lambda r: r.status_code == 204)
    if not outcome.ok:
        passed = _passthrough_node_problem(outcome)
        if passed is not None:
            return passed
        raise _failure(outcome, action="the message is not acknowledged (acknowledging again "
                       "is harmless).", acknowledged=False)
    response = outcome.response
    assert response is not None
    headers = {"Knooppunt-Node": node.name}
    for name in ("knooppunt-acknowledged", "traceparent"):
        if name in response.headers:
            headers[name] = response.headers[name]
    return Response(status_code=204, headers=headers)


LogLimit = Annotated[int, Query(ge=1, le=1000)]


def _merge_records(outcomes: dict[str, NodeOutcome], cursor: dict[str, Any], limit: int,
                   ) -> tuple[list[dict[str, Any]], str | None, bool, dict[str, Any]]:
    merged: list[tuple[datetime, str, int, dict[str, Any]]] = []
    reports: dict[str, dict[str, Any]] = {}
    more = False
    for name, outcome in outcomes.items():
        if outcome.ok:
            try:
                records, next_after = _json_list(outcome, "records")
            except ValueError as exc:
                outcome = NodeOutcome(name, "error", f"malformed answer: {exc}", None,
                                      outcome.elapsed_ms)
            else:
                more = more or next_after is not None
                merged.extend((_when(r.get("timestamp")), name, i, r)
                              for i, r in enumerate(records))
        reports[name] = outcome.describe()
        if outcome.ok:
            reports[name]["count"] = 0
    merged.sort(key=lambda t: (t[0], t[1], t[2]))
    page, rest = merged[:limit], merged[limit:]
    new_cursor = dict(cursor)
    out = []
    for _t, name, _i, record in page:
        new_cursor[name] = record.get("id")
        out.append({**record, "node": name})
        reports[name]["count"] += 1
    complete = all(r["status"] == "ok" for r in reports.values())
    return out, _encode_cursor(new_cursor) if (more or rest) else None, complete, reports


@router.get("/gemeenten/{gemeentecode}/processing-log", tags=["processing log"],
            summary="The gemeente's processing log from every knooppunt, merged by time",
            responses={200: {"model": AggregatedLog}})
async def query_log(
    gemeentecode: str,
    request: Request,
    facade: FacadeDep,
    gemeente: GemeenteDep,
    subject_ref: Annotated[str | None, Query(alias="subjectRef")] = None,
    purpose: str | None = None,
    connector: str | None = None,
    activity: str | None = None,
    trace_id: Annotated[str | None, Query(alias="traceId")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: Annotated[str | None, Query(description="nextAfter of the previous page")] = None,
    limit: LogLimit = 100,
) -> dict[str, Any]:
    _own(gemeente, gemeentecode, "processing-log")
    cursor = _decode_cursor(after)
    state = facade.holder.current
    nodes = state.nodes_for(gemeente)
    if connector is not None:
        nodes = [n for n in nodes if connector in n.connectors]
    base: dict[str, str] = {"limit": str(limit)}
    for key, value in (("subjectRef", subject_ref), ("purpose", purpose),
                       ("connector", connector), ("activity", activity),
                       ("traceId", trace_id)):
        if value is not None:
            base[key] = value
    if since is not None:
        base["since"] = since.isoformat()
    if until is not None:
        base["until"] = until.isoformat()
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log"
    trace = _trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        params = dict(base)
        if node.name in cursor:
            params["after"] = str(cursor[node.name])
        return await facade.nodes.attempt(node, gemeente, "GET", path, params=params,
                                          headers=trace)

    outcomes = await facade.nodes.fan_out(nodes, call)
    records, next_after, complete, reports = _merge_records(outcomes, cursor, limit)
    return {"records": records, "nextAfter": next_after, "complete": complete,
            "nodes": reports}


@router.post("/gemeenten/{gemeentecode}/processing-log/search", tags=["processing log"],
             summary="All processings concerning one citizen on every knooppunt (BSN in the "
             "body)", responses=contract.problem_responses(422))
async def search_log(gemeentecode: str, search: SubjectSearch, request: Request,
                     facade: FacadeDep, gemeente: GemeenteDep) -> dict[str, Any]:
    _own(gemeente, gemeentecode, "processing-log")
    if not elfproef(search.bsn):
        raise Problem(422, "bsn-invalid", "Invalid BSN", "The BSN does not pass the 11-proof.")
    nodes = facade.holder.current.nodes_for(gemeente)
    if search.connector is not None:
        nodes = [n for n in nodes if search.connector in n.connectors]
    body = search.model_dump_json(exclude_none=True).encode()
    path = f"/api/v1/gemeenten/{gemeentecode}/processing-log/search"
    headers = {"content-type": "application/json", **_trace_headers(request)}

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(node, gemeente, "POST", path, content=body,
                                          headers=headers)

    outcomes = await facade.nodes.fan_out(nodes, call)
    refs = {}
    for name, outcome in outcomes.items():
        if outcome.ok:
            with contextlib.suppress(ValueError, AttributeError):
                refs[name] = outcome.json().get("subjectRef")
    records, _next, complete, reports = _merge_records(outcomes, {}, search.limit)
    return {"subjectRefs": refs, "records": records, "complete": complete, "nodes": reports}


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = Problem(413, "body-too-large", "Message too large",
                        f"The body exceeds the knooppunt's limit of {limit} bytes.",
                        extra={"maxBytes": limit})
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError as exc:
            raise Problem(400, "bad-content-length", "Invalid Content-Length",
                          "Content-Length is not a number.") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/connectors/{connector}/messages", tags=["messages"],
             summary="Send a message to a sector (e.g. WMO301): routed to the knooppunt "
             "serving the connector; its answer is passed back unchanged",
             status_code=202,
             openapi_extra=contract.xml_request_body("The message in the connector's standard "
                                                     "(XML)."),
             responses={202: {"description": "The node's answer (e.g. the WMO302 retour).",
                              "content": {"application/xml": {"schema": {"type": "string"}},
                                          "application/json": {"schema": {"type": "object"}}}},
                        **contract.problem_responses(409, 413, 415),
                        422: {"description": "Schema-invalid (problem) or rejected by rules "
                              "(the retour message carrying the retourcodes).",
                              "content": {"application/xml": {"schema": {"type": "string"}},
                                          **contract.problem_content()}},
                        502: {"description": "The node is unreachable: nothing was submitted "
                              "(Knooppunt-Submitted: false) or the outcome is unknown."},
                        504: {"description": "No answer in time: the outcome is unknown; send "
                              "the same message again (the node answers a duplicate with the "
                              "first answer)."}})
async def submit_message(connector: str, request: Request, facade: FacadeDep,
                         gemeente: GemeenteDep) -> Response:
    state = facade.holder.current
    nodes = state.nodes_serving_connector(connector) if CONNECTOR_NAME.fullmatch(connector) \
        else []
    if not nodes:
        raise Problem(404, "unknown-connector", "Unknown connector",
                      f"No knooppunt behind this façade serves a connector named {connector!r}.",
                      extra={"connectors": sorted(state.nodes_by_connector)})
    if len(nodes) > 1:
        raise Problem(409, "ambiguous-connector", "Connector served by several knooppunten",
                      f"Connector {connector} is served by {', '.join(n.name for n in nodes)}; "
                      "the façade will not guess. Pin it on one knooppunt.",
                      extra={"nodes": [n.name for n in nodes]})
    node = nodes[0]
    body = await _read_body(request, node.max_message_bytes)
    headers = _trace_headers(request)
    if "content-type" in request.headers:
        headers["content-type"] = request.headers["content-type"]
    path = f"/api/v1/connectors/{connector}/messages"
    try:
        response = await facade.nodes.send(node, gemeente, "POST", path, content=body,
                                           headers=headers,
                                           timeout=facade.settings.submit_timeout)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise Problem(504, "node-timeout", "Knooppunt did not answer in time",
                      f"Knooppunt {node.name} did not answer within "
                      f"{facade.settings.submit_timeout:g} s. The outcome is unknown: send the "
                      "same message again; a node answers a message it already accepted with "
                      "the first answer, byte for byte.", extra={"node": node.name}) from exc
    except httpx.ConnectError as exc:
        raise Problem(502, "node-unavailable", "Knooppunt unavailable",
                      f"Knooppunt {node.name} could not be reached; nothing was submitted.",
                      extra={"node": node.name, "submitted": False}) from exc
    except httpx.TransportError as exc:
        raise Problem(502, "node-unavailable", "Knooppunt connection failed",
                      f"The connection to knooppunt {node.name} failed ({type(exc).__name__}). "
                      "The outcome is unknown: send the same message again.",
                      extra={"node": node.name}) from exc
    out_headers = {k: v for k, v in response.headers.items()
                   if k.lower() in PASSTHROUGH_HEADERS or k.lower().startswith("knooppunt-")}
    out_headers.pop("content-length", None)
    out_headers["Knooppunt-Node"] = node.name
    return Response(response.content, status_code=response.status_code, headers=out_headers)


@router.get("/catalogue", tags=["catalogue"],
            summary="The services available to the calling gemeente across all knooppunten")
async def catalogue(request: Request, facade: FacadeDep, gemeente: GemeenteDep,
                    ) -> dict[str, Any]:
    state = facade.holder.current
    subscribed: dict[str, list[dict[str, Any]]] = {}
    for sub in gemeente.spec.subscriptions:
        subscribed.setdefault(sub.connector, []).append(
            {"purpose": sub.purpose, "legalBasis": sub.legal_basis,
             "messages": list(sub.messages), "delivery": sub.delivery.mode})
    serving = state.nodes_for(gemeente)
    trace = _trace_headers(request)

    async def call(node: NodeEntry) -> NodeOutcome:
        return await facade.nodes.attempt(node, gemeente, "GET", "/api/v1/catalogue",
                                          headers=trace)

    outcomes = await facade.nodes.fan_out(serving, call)
    nodes = []
    connectors = []
    for name, node in sorted(state.nodes.items()):
        nodes.append({"name": name, "displayName": node.display_name,
                      "connectors": list(node.connectors),
                      "subscribed": node in serving,
                      "status": outcomes[name].status if name in outcomes else None})
        for connector_name in node.connectors:
            resource = state.connectors[connector_name]
            spec = resource.spec
            mine = subscribed.get(connector_name, [])
            purposes_taken = {s["purpose"] for s in mine}
            connectors.append({
                "name": connector_name, "node": name, "standard": spec.standard,
                "standardVersion": spec.standard_version, "revision": spec.revision,
                "messages": [{"name": m.name, "direction": m.direction,
                              "description": m.description} for m in spec.messages],
                "purposes": [{"name": p.name, "description": p.description,
                              "messages": p.messages, "fields": p.fields,
                              "subscribed": p.name in purposes_taken} for p in spec.purposes],
                "subscribed": bool(mine),
                "subscriptions": mine,
                "outbound": [m.name for m in spec.messages if m.direction == "fromGemeente"],
            })
    reports = {name: o.describe() for name, o in outcomes.items()}
    return {
        "gemeente": {"gemeentecode": gemeente.spec.gemeentecode, "oin": gemeente.spec.oin,
                     "displayName": gemeente.spec.display_name},
        "nodes": nodes,
        "connectors": connectors,
        "complete": all(o.ok for o in outcomes.values()),
        "nodeStatus": reports,
    }


health = APIRouter(tags=["operations"])


@health.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", summary="Readiness: configuration loaded")
async def readyz(facade: FacadeDep) -> dict[str, Any]:
    state = facade.holder.current
    return {"status": "ready", "generation": state.generation, "nodes": sorted(state.nodes),
            "gemeenten": len(state.gemeenten_by_code)}


# --------------------------------------------------------------------------- application


def create_facade_app(
    settings: FacadeSettings,
    *,
    identity: IdentityExtractor | None = None,
    facade: Facade | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    facade = facade or build_facade(settings, identity=identity, transport=transport)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await facade.start()
        try:
            yield
        finally:
            await facade.stop()

    app = FastAPI(
        title="Knooppunt municipal cloud façade",
        version=__version__,
        description="One uniform interface for a gemeente across all knooppunten that serve "
        "it: one certificate, one base URL, one API. Aggregated mailbox and processing log, "
        "the outbound path to every sector, and a catalogue. Every call authenticates with the "
        "gemeente's client certificate; aggregated answers say per knooppunt what is missing.",
        lifespan=lifespan,
    )
    app.state.facade = facade

    problems.install(app, role="façade",
                     internal_detail="The façade could not process the request.")

    from node_runtime.facade import conversations, ledger  # routes on this module's deps

    app.include_router(router)
    app.include_router(ledger.router)
    app.include_router(conversations.router)
    app.include_router(health)
    contract.install(app,
                     description="Every call authenticates with the gemeente's organisation "
                     "certificate (PKIoverheid) in the TLS handshake.")
    return app
