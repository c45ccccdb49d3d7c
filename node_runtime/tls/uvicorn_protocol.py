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

Use a single process per node instance (scale out with replicas): an ``SSLContext`` cannot be
shipped to uvicorn's ``--workers`` subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from node_runtime.tls.contexts import ReloadableServerContext
from node_runtime.tls.identity import CertificateIdentity, identity_from_der

logger = logging.getLogger("node_runtime.tls")

STATE_CLIENT_CERT_DER = "tls_client_cert_der"
STATE_CLIENT_IDENTITY = "tls_client_identity"
STATE_TLS_VERSION = "tls_version"
STATE_TLS_CIPHER = "tls_cipher"
TLS_STATE_KEYS = (STATE_CLIENT_CERT_DER, STATE_CLIENT_IDENTITY, STATE_TLS_VERSION, STATE_TLS_CIPHER)
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


class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with per-connection TLS state (see module docstring).

    Works both behind :class:`AlertingSSLProtocol` and with uvicorn's own ``ssl=`` handling
    (``uvicorn.Config(app, http=TLSH11Protocol, ssl_context_factory=...)``).
    """

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        # asyncio calls connection_made only after the TLS handshake has completed.
        self.app_state = {**self.app_state, **tls_connection_state(transport)}


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
    ) -> None:
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
            self._report(_rejection(handshake_exc, peer))
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
    ) -> None:
        self.context = context
        self.handshake_timeout = handshake_timeout
        self.on_rejected = on_rejected

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
    **kwargs: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` over mutual TLS with our context.

    ``ssl_context``: from :func:`~node_runtime.tls.contexts.server_context`, or a
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
        ssl_context, handshake_timeout=handshake_timeout, on_rejected=on_rejected
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
