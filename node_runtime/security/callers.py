"""Who is on the other end of the connection: the verified client certificate.

Directly: the certificate the TLS handshake verified. Behind a TLS-terminating ingress (an
explicit, off-by-default trusted-proxy mode): a certificate forwarded in a header, accepted only
from a configured proxy address and verified here against the node's own trusted CAs and CRL.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from starlette.requests import Request

from node_runtime.model.knooppunt import TrustedProxy
from node_runtime.security.tls.certificates import ChainVerifier, identity_from_der
from node_runtime.security.tls.peers import IssuerPolicy
from node_runtime.web.problems import Problem

DEFAULT_FORWARDED_HEADER = "x-ssl-client-cert"


class PeerCertificate(Protocol):
    """What the node and the façade need from a verified client certificate."""

    @property
    def serial_number(self) -> str | None: ...

    @property
    def fingerprint_sha256(self) -> str: ...

    @property
    def common_name(self) -> str | None: ...


def peer_from_tls(request: Request) -> PeerCertificate | None:
    """The handshake's client certificate, with the issuing CA's scope of the current trust
    generation (attached by the TLS protocol)."""
    identity = getattr(request.state, "tls_client_identity", None)
    connection = getattr(request.state, "tls_connection", None)
    current = getattr(connection, "identity", None)
    if current is not None:
        return current  # type: ignore[no-any-return]
    if identity is not None:
        return identity  # type: ignore[no-any-return]
    der = getattr(request.state, "tls_client_cert_der", None)
    return identity_from_der(der) if der else None


def _in(address: str, proxies: Sequence[TrustedProxy]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for proxy in proxies:
        try:
            if ip in ipaddress.ip_network(proxy.address, strict=False):
                return True
        except ValueError:
            continue
    return False


class CertificateIdentity:
    """The node's IdentityExtractor: TLS peer certificate, or a verified forwarded one."""

    def __init__(
        self,
        *,
        proxies: Callable[[], Sequence[TrustedProxy]],
        trust_bundle: Path | None,
        crl: Path | None,
        header: str = DEFAULT_FORWARDED_HEADER,
        issuer_policy: Callable[[], IssuerPolicy | None] | None = None,
    ) -> None:
        #: The issuer policy in force (from the TLS trust material); binds forwarded
        #: certificates to their issuing CA as the handshake path is bound.
        self.issuer_policy = issuer_policy
        self._proxies = proxies
        self._trust = trust_bundle
        self._crl = crl
        self._header = header.lower()
        self._lock = threading.Lock()
        self._verifier: ChainVerifier | None = None
        self._stamp: tuple[float, float] | None = None

    @property
    def header(self) -> str:
        """The (lower-case) header a trusted proxy forwards client certificates in."""
        return self._header

    def _current_verifier(self) -> ChainVerifier:
        assert self._trust is not None
        stamp = (
            self._trust.stat().st_mtime,
            self._crl.stat().st_mtime if self._crl is not None else 0.0,
        )
        with self._lock:
            if self._verifier is None or stamp != self._stamp:
                self._verifier = ChainVerifier(self._trust, self._crl)
                self._stamp = stamp
            return self._verifier

    def __call__(self, request: Request) -> PeerCertificate | None:
        forwarded = request.headers.get(self._header)
        if forwarded is None:
            return peer_from_tls(request)
        peer = request.client.host if request.client else ""
        proxies = self._proxies()
        if not proxies or not _in(peer, proxies):
            raise Problem(
                403,
                "untrusted-proxy",
                "Forwarded certificate from an untrusted peer",
                "A client certificate header is accepted only from a configured "
                "trusted proxy; this connection is not one.",
            )
        if self._trust is None:
            raise Problem(
                401,
                "forwarded-certificate-rejected",
                "Forwarded certificate rejected",
                "The node has no trust bundle to verify forwarded certificates.",
            )
        result = self._current_verifier().verify(unquote(forwarded).encode())
        if not result.ok or result.identity is None:
            raise Problem(
                401,
                "forwarded-certificate-rejected",
                "Forwarded certificate rejected",
                f"The forwarded client certificate is not acceptable: {result.detail}.",
                extra={"reason": result.reason},
            )
        policy = self.issuer_policy() if self.issuer_policy is not None else None
        if policy is not None and len(result.chain) > 1:
            return replace(result.identity, issuer_scope=policy.scope(result.chain[1]))
        return result.identity


def claimed_serial(cert: PeerCertificate) -> str | None:
    """The certificate's subject serialNumber, if its issuing CA may speak for it.

    The TLS layer attaches the issuing CA's :class:`~node_runtime.security.tls.peers.IssuerScope`
    (``issuer_scope``); without one (no issuer policy in force) the claim stands as is.
    """
    serial = cert.serial_number
    scope = getattr(cert, "issuer_scope", None)
    if serial and scope is not None and not scope.may_claim(serial):
        return None
    return serial


def may_administer(cert: PeerCertificate) -> bool:
    scope = getattr(cert, "issuer_scope", None)
    return scope is None or bool(scope.administers)
