"""Serve the ASGI app on uvicorn over *our* mutual-TLS context and expose the verified client
certificate to the application.

Per-connection TLS state
    uvicorn builds each request scope with ``"state": self.app_state.copy()``.
    :class:`TLSH11Protocol` gives every connection its own ``app_state`` holding what the TLS
    handshake established, so handlers read ``request.state.tls_client_cert_der`` (Starlette /
    FastAPI) or ``scope["state"]["tls_client_cert_der"]`` (raw ASGI); see
    :func:`tls_connection_state` for all keys. The keys are always set — to ``None`` without a
    client certificate — so a value the application put in its lifespan state under the same
    name can never pass for a handshake result.

TLS termination
    :func:`tls_config` does not hand the context to uvicorn's ``ssl=`` (which makes asyncio
    terminate TLS). It wraps every accepted connection in :class:`AlertingSSLProtocol`, an
    ``asyncio.sslproto.SSLProtocol`` that

    * sends the TLS alert when a handshake fails. CPython's asyncio drops it (gh-98078, fixed
      only in recent CPython): a client whose certificate is revoked would otherwise see a bare
      connection close instead of ``certificate_revoked``, which makes partner onboarding
      needlessly hard;
    * reports every rejected handshake (peer address and OpenSSL's reason, e.g. "certificate
      revoked") to the ``node_runtime.tls`` logger and an optional callback, for the security
      log and metrics;
    * takes the context per connection, so a :class:`ReloadableServerContext` (new CRL, renewed
      server certificate) applies to the next connection without a restart.

    Consequence: uvicorn itself believes it serves plain HTTP and logs ``http://`` in its
    start-up line; the scope's ``scheme`` is correctly ``https``. It also works on any uvicorn
    version ≥ 0.30 (no ``ssl_context_factory`` needed).

Connection hygiene (:class:`ConnectionLimits`)
    Every connection has a deadline for its current phase: ``idle_timeout`` while no request
    is in progress (after the handshake and between keep-alive requests), ``header_timeout`` from
    a request's first byte to its complete headers, ``body_timeout`` from the complete headers
    to the complete body (a 1-byte/s body cannot hold a connection). A request or body that
    misses its deadline gets ``408`` (problem details) and the connection is closed; an idle one
    is closed. ``max_per_client`` caps the connections one client certificate (or, without one,
    one address) holds open at once: the next one is answered ``429`` and closed.

Revocation on open connections (the invariant any per-connection cache must keep)
    A connection's client identity was checked against one *trust generation* of the
    :class:`~node_runtime.security.tls.contexts.ReloadableServerContext` (trust bundle, CRLs, issuer
    policy; a new generation starts on every reload). Before each request the connection's
    generation is compared with the current one; when it differs, or the certificate's
    notAfter or its CRL's nextUpdate has passed, the certificate is checked again
    (:meth:`~node_runtime.security.tls.peers.TrustMaterial.check`). A certificate that no longer
    passes
    (revoked, CRL missing or expired, issuer no longer trusted, expired) gets ``401`` problem
    details and the connection is closed. Anything cached per connection (e.g. the resolved
    principal) is valid only together with the generation it was derived under.

Use a single process per node instance (scale out with replicas): an ``SSLContext`` cannot be
shipped to uvicorn's ``--workers`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import socket
import ssl
import threading
import time
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from node_runtime.security.tls.certificates import CertificateIdentity, identity_from_der
from node_runtime.security.tls.contexts import ReloadableServerContext
from node_runtime.security.tls.peers import IssuerScope, PeerCheck, TrustMaterial

logger = logging.getLogger("node_runtime.tls")

STATE_CLIENT_CERT_DER = "tls_client_cert_der"
STATE_CLIENT_IDENTITY = "tls_client_identity"
STATE_TLS_VERSION = "tls_version"
STATE_TLS_CIPHER = "tls_cipher"
STATE_CONNECTION = "tls_connection"
TLS_STATE_KEYS = (
    STATE_CLIENT_CERT_DER,
    STATE_CLIENT_IDENTITY,
    STATE_TLS_VERSION,
    STATE_TLS_CIPHER,
    STATE_CONNECTION,
)
PROBLEM_BASE = "https://knooppunt.nl/problems/"
DEFAULT_HANDSHAKE_TIMEOUT = 15  # seconds; slow-loris protection for the TLS handshake


# --------------------------------------------------------------------------- per-connection state


def tls_connection_state(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """What the handshake of ``transport`` established (all ``None`` without TLS).

    ``tls_client_cert_der``: DER of the client certificate OpenSSL verified (``None`` when the
    client sent none, possible only with ``require_client_cert=False``);
    ``tls_client_identity``: its :class:`CertificateIdentity`; ``tls_version`` e.g.
    ``"TLSv1.3"``; ``tls_cipher`` e.g. ``"TLS_AES_256_GCM_SHA384"``.
    """
    state: dict[str, Any] = dict.fromkeys(TLS_STATE_KEYS)
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return state
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    state[STATE_TLS_VERSION] = ssl_object.version()
    state[STATE_TLS_CIPHER] = cipher[0] if cipher else None
    if der:
        state[STATE_CLIENT_CERT_DER] = der
        state[STATE_CLIENT_IDENTITY] = identity_from_der(der)
    return state


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and the per-client connection cap (see module docstring); seconds."""

    idle_timeout: float = 30.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_per_client: int = 64


class ClientConnections:
    """Open connections per client (certificate fingerprint, or address without one)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, limit: int) -> bool:
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= limit:
                return False
            self._counts[key] = count + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self._counts.get(key, 0) - 1
            if count <= 0:
                self._counts.pop(key, None)
            else:
                self._counts[key] = count

    def open(self, key: str) -> int:
        return self._counts.get(key, 0)


class ConnectionPeer:
    """The client of one TLS connection and the trust generation it was last checked under."""

    def __init__(self, der: bytes | None) -> None:
        self.der = der
        self.generation: int | None = None
        self.valid_until: dt.datetime | None = None
        self.refusal: PeerCheck | None = None
        self.scope: IssuerScope | None = None
        self.identity: CertificateIdentity | None = identity_from_der(der) if der else None

    def current(self, material: TrustMaterial | None, now: dt.datetime) -> PeerCheck | None:
        """``None`` when the peer may be served under ``material``; else the refusal."""
        if self.der is None or material is None:
            return None
        if (
            self.generation == material.generation
            and self.refusal is None
            and (self.valid_until is None or now < self.valid_until)
        ):
            return None
        check = material.check(self.der, now)
        self.generation = material.generation
        self.valid_until = check.valid_until
        if not check.ok:
            self.refusal = check
            return check
        self.refusal = None
        if check.scope != self.scope:
            self.scope = check.scope
            if self.identity is not None:
                self.identity = replace(self.identity, issuer_scope=check.scope)
        return None


def _problem_bytes(
    status: int, reason: str, slug: str, title: str, detail: str, **extra: Any
) -> bytes:
    body = json.dumps(
        {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail, **extra}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with per-connection TLS state (see module docstring).

    Works both behind :class:`AlertingSSLProtocol` and with uvicorn's own ``ssl=`` handling
    (``uvicorn.Config(app, http=TLSH11Protocol, ssl_context_factory=...)``). The factory of
    :func:`tls_config` also gives it the trust source (re-checks on open connections), the
    :class:`ConnectionLimits` and the shared per-client counts.
    """

    trust_source: ReloadableServerContext | None = None
    limits: ConnectionLimits | None = None
    clients: ClientConnections | None = None

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        # asyncio calls connection_made only after the TLS handshake has completed.
        state = tls_connection_state(transport)
        self.peer = ConnectionPeer(state[STATE_CLIENT_CERT_DER])
        material = self.trust_source.material if self.trust_source is not None else None
        self.peer.current(material, dt.datetime.now(dt.UTC))
        state[STATE_CLIENT_IDENTITY] = self.peer.identity
        state[STATE_CONNECTION] = self.peer
        self.app_state = {**self.app_state, **state}
        self.app = self._guarded(self.app)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = "idle"
        self._client_key: str | None = None
        if self.limits is None:
            return
        der = self.peer.der
        key = (
            hashlib.sha256(der).hexdigest()
            if der
            else f"address:{self.client[0] if self.client else '?'}"
        )
        if self.clients is not None:
            if not self.clients.acquire(key, self.limits.max_per_client):
                logger.warning(
                    "connection refused: client %s already holds %d connections",
                    key[:16],
                    self.limits.max_per_client,
                )
                self._close_with(
                    _problem_bytes(
                        429,
                        "Too Many Requests",
                        "too-many-connections",
                        "Too many connections",
                        f"This client already holds {self.limits.max_per_client} open connections; "
                        "reuse them or close some.",
                    )
                )
                return
            self._client_key = key
        self._arm(self.limits.idle_timeout, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.clients is not None and getattr(self, "_client_key", None) is not None:
            self.clients.release(self._client_key)  # type: ignore[arg-type]
            self._client_key = None
        super().connection_lost(exc)

    # -- per-request re-check (revocation on open connections) ----------------------------

    def _guarded(self, inner: Any) -> Any:
        protocol = self

        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                refusal = protocol._refusal()
                if refusal is not None:
                    await _refuse(send, refusal)
                    return
            await inner(scope, receive, send)

        return guarded

    def _refusal(self) -> PeerCheck | None:
        material = self.trust_source.material if self.trust_source is not None else None
        refusal = self.peer.current(material, dt.datetime.now(dt.UTC))
        if refusal is not None:
            peer = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown peer"
            logger.warning(
                "request on an open connection from %s refused: %s (%s)",
                peer,
                refusal.reason,
                refusal.detail,
            )
        return refusal

    # -- deadlines -------------------------------------------------------------------------

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.limits is not None and not self.transport.is_closing():
            # Our idle deadline replaces uvicorn's keep-alive timer.
            self._unset_keepalive_if_required()
            self._phase = "busy"
            self._follow()

    def _follow(self) -> None:
        """Move the deadline to the phase the request on this connection is in."""
        limits = self.limits
        if limits is None or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            buffered = bool(self.conn.trailing_data[0])
            if buffered and self._phase != "headers":
                self._arm(limits.header_timeout, "headers")
            elif not buffered and self._phase not in ("idle", "headers"):
                self._arm(limits.idle_timeout, "idle")
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm(limits.body_timeout, "body")
        elif self._phase != "busy":
            self._disarm()
            self._phase = "busy"

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown peer"
        logger.info("closing connection from %s: %s timeout", peer, phase)
        if phase in ("headers", "body") and (
            self.cycle is None or self.cycle.response_complete or not self.cycle.response_started
        ):
            limits = self.limits or ConnectionLimits()
            seconds = limits.header_timeout if phase == "headers" else limits.body_timeout
            self._close_with(
                _problem_bytes(
                    408,
                    "Request Timeout",
                    "request-timeout",
                    "Request timeout",
                    f"The request's {'headers' if phase == 'headers' else 'body'} did not arrive "
                    f"within {seconds:g} seconds.",
                )
            )
        else:
            self._close_with(b"")

    def _close_with(self, raw: bytes) -> None:
        if raw:
            with contextlib.suppress(Exception):
                self.transport.write(raw)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


async def _refuse(send: Any, refusal: PeerCheck) -> None:
    slug = "certificate-revoked" if refusal.reason == "revoked" else "certificate-rejected"
    body = json.dumps(
        {
            "type": PROBLEM_BASE + slug,
            "title": "Client certificate no longer accepted",
            "status": 401,
            "detail": f"The client certificate of this connection is no longer "
            f"accepted: {refusal.detail}. Connect again with a valid certificate.",
            "reason": refusal.reason,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"connection", b"close"),
                (b"content-length", str(len(body)).encode()),
                (b"knooppunt-outcome", b"refused"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_identity(state: Mapping[str, Any] | Any) -> CertificateIdentity | None:
    """The verified client identity from ``scope["state"]`` or a Starlette ``request.state``."""
    if isinstance(state, Mapping):
        value = state.get(STATE_CLIENT_IDENTITY)
    else:
        value = getattr(state, STATE_CLIENT_IDENTITY, None)
    return value if isinstance(value, CertificateIdentity) else None


# --------------------------------------------------------------------------- TLS termination


@dataclass(frozen=True)
class RejectedHandshake:
    """A TLS handshake the server refused."""

    peer: tuple[str, int] | None
    reason: str  # OpenSSL reason, e.g. CERTIFICATE_VERIFY_FAILED, UNSUPPORTED_PROTOCOL
    verify_message: str | None  # e.g. "certificate revoked", "certificate has expired"
    error: str

    @property
    def certificate_problem(self) -> bool:
        """The client's certificate was missing or did not verify (vs. protocol mismatch)."""
        return self.verify_message is not None or self.reason in {
            "PEER_DID_NOT_RETURN_A_CERTIFICATE",
            "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        }


RejectionCallback = Callable[[RejectedHandshake], None]


def _rejection(exc: BaseException, peer: Any) -> RejectedHandshake:
    address: tuple[str, int] | None = None
    if isinstance(peer, tuple) and len(peer) >= 2:
        address = (str(peer[0]), int(peer[1]))
    reason = getattr(exc, "reason", None) or type(exc).__name__
    verify = getattr(exc, "verify_message", None)
    return RejectedHandshake(address, str(reason), verify or None, str(exc))


class AlertingSSLProtocol(SSLProtocol):
    """Server-side asyncio TLS that sends the alert on handshake failure and reports it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        *,
        handshake_timeout: int = DEFAULT_HANDSHAKE_TIMEOUT,
        on_rejected: RejectionCallback | None = None,
        explain: Callable[[RejectedHandshake], str | None] | None = None,
    ) -> None:
        self._explain = explain
        super().__init__(
            loop,
            app_protocol,
            context,
            None,  # type: ignore[arg-type]  # no waiter: the server does not wait on us
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,
        )
        self._on_rejected = on_rejected

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            peer = self._transport.get_extra_info("peername") if self._transport else None
            rejected = _rejection(handshake_exc, peer)
            if self._explain is not None:
                with contextlib.suppress(Exception):
                    clearer = self._explain(rejected)
                    if clearer:
                        rejected = replace(rejected, verify_message=clearer)
            self._report(rejected)
            # OpenSSL has written the fatal alert into the outgoing BIO; send it before the
            # transport is force-closed (what blocking ssl sockets do, and CPython ≥ 3.15).
            process_outgoing: Callable[[], None] | None = getattr(self, "_process_outgoing", None)
            if process_outgoing is not None and self._transport is not None:
                with contextlib.suppress(Exception):
                    process_outgoing()
        super()._on_handshake_complete(handshake_exc)

    def _report(self, rejected: RejectedHandshake) -> None:
        peer = f"{rejected.peer[0]}:{rejected.peer[1]}" if rejected.peer else "unknown peer"
        logger.log(
            logging.WARNING if rejected.certificate_problem else logging.INFO,
            "TLS handshake from %s rejected: %s",
            peer,
            rejected.verify_message or rejected.reason,
            extra={"tls_rejection": rejected},
        )
        if self._on_rejected is not None:
            try:
                self._on_rejected(rejected)
            except Exception:
                logger.exception("on_rejected callback failed")


class _TLSProtocolFactory:
    """What uvicorn calls as ``http_protocol_class``: TLS wrapper around TLSH11Protocol."""

    def __init__(
        self,
        context: ssl.SSLContext | ReloadableServerContext,
        *,
        handshake_timeout: int,
        on_rejected: RejectionCallback | None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.on_rejected = on_rejected
        self.limits = limits
        self.clients = ClientConnections()

    def __call__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> asyncio.BaseProtocol:
        loop = _loop or asyncio.get_running_loop()
        app_protocol = TLSH11Protocol(
            config=config, server_state=server_state, app_state=app_state, _loop=loop
        )
        if isinstance(self.context, ReloadableServerContext):
            app_protocol.trust_source = self.context
        app_protocol.limits = self.limits
        app_protocol.clients = self.clients
        context = (
            self.context.current
            if isinstance(self.context, ReloadableServerContext)
            else self.context
        )
        return AlertingSSLProtocol(
            loop,
            app_protocol,
            context,
            handshake_timeout=self.handshake_timeout,
            on_rejected=self.on_rejected,
            explain=self._explain,
        )

    def _explain(self, rejected: RejectedHandshake) -> str | None:
        """A clearer reason for OpenSSL's "unable to get certificate CRL" (defect: a trusted
        CA without a CRL): name the CAs whose CRL is missing."""
        if rejected.verify_message != "unable to get certificate CRL":
            return None
        material = (
            self.context.material if isinstance(self.context, ReloadableServerContext) else None
        )
        names = (
            [c.subject.rfc4514_string() for c in material.missing_crls]
            if material is not None
            else []
        )
        which = "; ".join(names) if names else "the client certificate's issuing CA"
        return (
            f"no CRL for the issuing CA in the CRL file (fail-closed); CAs without a CRL: {which}"
        )


# --------------------------------------------------------------------------- configuration


def tls_config(
    app: Any,
    *,
    ssl_context: ssl.SSLContext | ReloadableServerContext,
    host: str = "127.0.0.1",
    port: int = 8443,
    on_rejected: RejectionCallback | None = None,
    handshake_timeout: int = DEFAULT_HANDSHAKE_TIMEOUT,
    limits: ConnectionLimits | None = None,
    **kwargs: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` over mutual TLS with our context.

    ``ssl_context``: from :func:`~node_runtime.security.tls.contexts.server_context`, or a
    :class:`ReloadableServerContext` to reload CRL/certificates at runtime. ``on_rejected`` is
    called (on the event loop) for every refused handshake. ``proxy_headers`` defaults to off:
    the node takes identity and client address from the connection, never from headers. Other
    keyword arguments go to ``uvicorn.Config``; ``ssl_*`` and ``http`` are refused.
    """
    refused = sorted(k for k in kwargs if k.startswith("ssl_") or k == "http")
    if refused:
        raise TypeError(f"tls_config() sets these itself: {', '.join(refused)}")
    context = (
        ssl_context.current if isinstance(ssl_context, ReloadableServerContext) else ssl_context
    )
    if context.verify_mode != ssl.CERT_REQUIRED:
        # A supported mode (the app then decides), but never a silent one.
        logger.warning("TLS context does not require a client certificate")
    kwargs.setdefault("proxy_headers", False)
    factory = _TLSProtocolFactory(
        ssl_context, handshake_timeout=handshake_timeout, on_rejected=on_rejected, limits=limits
    )
    return uvicorn.Config(app, host=host, port=port, http=factory, **kwargs)  # type: ignore[arg-type]


def serve_tls(
    app: Any,
    *,
    ssl_context: ssl.SSLContext | ReloadableServerContext,
    host: str = "127.0.0.1",
    port: int = 8443,
    **kwargs: Any,
) -> None:
    """Serve ``app`` over mutual TLS until interrupted (blocking)."""
    config = tls_config(app, ssl_context=ssl_context, host=host, port=port, **kwargs)
    logger.info("serving mutual TLS on https://%s:%d", host, port)
    uvicorn.Server(config).run()


# --------------------------------------------------------------------------- background server


class RunningServer:
    """A uvicorn server running in a background thread (tests, the local demo)."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket
    ) -> None:
        self.server = server
        self.thread = thread
        self.socket = sock
        address = sock.getsockname()
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.socket.close()


@contextlib.contextmanager
def run_in_thread(config: uvicorn.Config, *, timeout: float = 10.0) -> Iterator[RunningServer]:
    """Run ``config`` in a daemon thread on a pre-bound socket (port 0: a free port) and stop
    it on exit."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-tls", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout)
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    running = RunningServer(server, thread, sock)
    try:
        yield running
    finally:
        running.stop(timeout)
