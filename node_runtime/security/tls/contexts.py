"""TLS contexts following the NCSC "ICT-beveiligingsrichtlijnen voor TLS" (2021, v2.1).

* Versions: TLS 1.3 ("good") preferred, TLS 1.2 ("sufficient") accepted, nothing older.
* TLS 1.2 cipher suites: only ECDHE key exchange with AEAD bulk ciphers (AES-GCM, ChaCha20-
  Poly1305) — all rated "good". No CBC, no static-RSA key transport, no (FF)DHE.
* TLS 1.3 cipher suites: OpenSSL's defaults (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM), all
  "good"; Python's ``ssl`` cannot narrow them further.
* No renegotiation, no compression, server cipher preference.
* Mutual TLS: the server requires a client certificate, verifies it against the configured
  trust bundle (the dev PKI's bundle, or PKIoverheid's in production), and — when a CRL file is
  given — checks the leaf against it (``VERIFY_CRL_CHECK_LEAF``; a missing or *expired* CRL for
  the issuing CA then fails every handshake, i.e. fail-closed). ``VERIFY_X509_STRICT`` is on.

A context loads its files once. :class:`ReloadableServerContext` lets a running server pick up a
new CRL or certificate without a restart.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import TypeAlias

from node_runtime.security.tls.peers import TrustMaterial

StrPath: TypeAlias = str | os.PathLike[str]

#: NCSC "good" TLS 1.2 suites, strongest first (ECDSA certificates first: the dev PKI's choice).
TLS12_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
)
CIPHER_STRING = ":".join(TLS12_CIPHERS)
ALPN_HTTP11: tuple[str, ...] = ("http/1.1",)


def _hardening(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(CIPHER_STRING)
    context.options |= (
        ssl.OP_NO_RENEGOTIATION
        | ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )


def _trust(
    context: ssl.SSLContext,
    trust_bundle: StrPath,
    crl: StrPath | Sequence[StrPath] | None,
    *,
    strict: bool,
) -> None:
    context.load_verify_locations(cafile=os.fspath(trust_bundle))
    if crl is not None:
        files = [crl] if isinstance(crl, str | os.PathLike) else list(crl)
        for path in files:
            # A PEM file with X509 CRL blocks: OpenSSL adds them to the verify store.
            context.load_verify_locations(cafile=os.fspath(path))
        if files:
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT


def server_context(
    cert_chain: StrPath,
    key: StrPath,
    trust_bundle: StrPath,
    crl: StrPath | Sequence[StrPath] | None = None,
    *,
    require_client_cert: bool = True,
    strict: bool = True,
    alpn_protocols: Sequence[str] | None = ALPN_HTTP11,
) -> ssl.SSLContext:
    """A server-side context for mutual TLS.

    ``cert_chain``: PEM with the server certificate followed by its intermediate(s);
    ``trust_bundle``: PEM CA certificates that may issue client certificates; ``crl``: PEM
    CRL file(s) of the issuing CA(s) — enables leaf revocation checking. With
    ``require_client_cert=False`` a client certificate is optional but still verified if sent.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _hardening(context)
    context.load_cert_chain(os.fspath(cert_chain), os.fspath(key))
    _trust(context, trust_bundle, crl, strict=strict)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


def client_context(
    cert_chain: StrPath | None,
    key: StrPath | None,
    trust_bundle: StrPath,
    crl: StrPath | Sequence[StrPath] | None = None,
    *,
    strict: bool = True,
    alpn_protocols: Sequence[str] | None = ALPN_HTTP11,
) -> ssl.SSLContext:
    """A client-side context for outgoing mutual TLS (hostname checking on).

    Pass ``cert_chain``/``key`` of the node's organisation certificate; ``None`` for both
    connects without a client certificate.
    """
    if (cert_chain is None) != (key is None):
        raise ValueError("give both cert_chain and key, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _hardening(context)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    _trust(context, trust_bundle, crl, strict=strict)
    if cert_chain is not None and key is not None:
        context.load_cert_chain(os.fspath(cert_chain), os.fspath(key))
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


class ReloadableServerContext:
    """A server context whose certificates, trust bundle and CRL can be swapped at runtime.

    Give :attr:`context` to the server (uvicorn, ``asyncio.start_server``, …). Every new
    connection is switched, in the SNI callback, to the most recently built context, so
    :meth:`reload` (e.g. after a revocation, or periodically to pick up a fresh CRL before the
    old one's nextUpdate) takes effect for the next handshake without a restart.

    Every successful :meth:`reload` starts a new *trust generation* (:attr:`generation`) and,
    when a ``material`` factory is given, builds that generation's
    :class:`~node_runtime.security.tls.peers.TrustMaterial` from the same files. Connections
    that are already open re-check their client certificate against the current generation
    before their next request (:mod:`node_runtime.security.tls.uvicorn_protocol`), so a
    revocation also ends keep-alive connections.

    OpenSSL runs the servername callback for every ClientHello, with or without SNI.
    """

    def __init__(
        self,
        factory: Callable[[], ssl.SSLContext],
        material: Callable[[int], TrustMaterial] | None = None,
    ) -> None:
        self._factory = factory
        self._material_factory = material
        self._lock = threading.Lock()
        self._current = factory()
        self._generation = 1
        self._material = material(1) if material is not None else None
        self.context = factory()
        self.context.sni_callback = self._select

    @property
    def current(self) -> ssl.SSLContext:
        return self._current

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def material(self) -> TrustMaterial | None:
        """The current generation's trust material (``None`` without a material factory)."""
        return self._material

    def reload(self) -> None:
        """Rebuild the context from the factory; raises (and keeps the old one) on error."""
        fresh = self._factory()
        generation = self._generation + 1
        material = (
            self._material_factory(generation) if self._material_factory is not None else None
        )
        with self._lock:
            self._current = fresh
            self._material = material
            self._generation = generation

    def _select(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        del server_name
        connection.context = self._current
        return None


def reloadable_server_context(
    cert_chain: StrPath,
    key: StrPath,
    trust_bundle: StrPath,
    crl: StrPath | Sequence[StrPath] | None = None,
    *,
    require_client_cert: bool = True,
    strict: bool = True,
    issuers: StrPath | None = None,
    trusted_cas_speak: bool = False,
) -> ReloadableServerContext:
    """:func:`server_context` wrapped in a :class:`ReloadableServerContext` (files re-read on
    every :meth:`~ReloadableServerContext.reload`), with the trust material of each generation
    (``issuers``: the optional issuer-policy file, see :class:`~node_runtime.security.tls.peers.
    IssuerPolicy`)."""

    def build() -> ssl.SSLContext:
        return server_context(
            cert_chain,
            key,
            trust_bundle,
            crl,
            require_client_cert=require_client_cert,
            strict=strict,
        )

    crl_file = crl if crl is None or isinstance(crl, str | os.PathLike) else None
    if crl is not None and crl_file is None:
        files = list(crl)  # type: ignore[arg-type]
        crl_file = files[0] if len(files) == 1 else None

    def material(generation: int) -> TrustMaterial:
        return TrustMaterial(
            generation=generation,
            trust_bundle=trust_bundle,
            crl=crl_file,
            server_chain=cert_chain,
            issuers=issuers,
            trusted_cas_speak=trusted_cas_speak,
        )

    # Several CRL files: the handshake checks them; open connections are checked against the
    # handshake's verdict only (the node and façade always pass one file).
    return ReloadableServerContext(build, material if crl is None or crl_file else None)


def describe(context: ssl.SSLContext) -> dict[str, object]:
    """Effective settings of a context (for diagnostics and tests)."""
    return {
        "minimum_version": context.minimum_version.name,
        "maximum_version": context.maximum_version.name,
        "ciphers": [c["name"] for c in context.get_ciphers()],
        "verify_mode": context.verify_mode.name,
        "verify_flags": context.verify_flags,
        "no_renegotiation": bool(context.options & ssl.OP_NO_RENEGOTIATION),
        "no_compression": bool(context.options & ssl.OP_NO_COMPRESSION),
    }


__all__ = [
    "ALPN_HTTP11",
    "CIPHER_STRING",
    "TLS12_CIPHERS",
    "ReloadableServerContext",
    "client_context",
    "describe",
    "reloadable_server_context",
    "server_context",
]
