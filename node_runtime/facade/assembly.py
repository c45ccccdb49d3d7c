"""The façade object: its settings, routing table, identity check, signer and node client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from fastapi import Request

from node_runtime.facade.client import NodeClient
from node_runtime.facade.config import FacadeSettings
from node_runtime.facade.state import FacadeState, build_facade_state
from node_runtime.model.loading import ResourceSet, load_paths
from node_runtime.model.reloading import StateHolder, watch_files
from node_runtime.observability.telemetry import DISABLED, Telemetry
from node_runtime.security.acting_for import AssertionSigner, SigningKey
from node_runtime.security.callers import CertificateIdentity, PeerCertificate
from node_runtime.security.tls.contexts import client_context

log = logging.getLogger("knooppunt.facade")

IdentityExtractor = Callable[[Request], PeerCertificate | None]


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
    telemetry: Telemetry = DISABLED
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        self.client = NodeClient(
            self.client_ssl,
            self.signer,
            timeout=self.settings.node_timeout,
            submit_timeout=self.settings.submit_timeout,
            assertion_lifetime=self.settings.assertion_lifetime,
            max_connections_per_node=self.settings.max_connections_per_node,
            transport=self.transport,
        )
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.client is not None:
            await self.client.aclose()
        self.telemetry.shutdown()

    async def _watch(self) -> None:
        """Pick up changed resources (a new gemeente, node or subscription) live."""

        def reloaded(generation: int) -> None:
            log.info("façade configuration reloaded", extra={"generation": generation})

        await watch_files(
            list(self.settings.resources),
            interval=self.settings.reload_interval,
            holder=self.holder,
            ticks=self.on_tick,
            on_reloaded=reloaded,
        )

    @property
    def nodes(self) -> NodeClient:
        assert self.client is not None, "the façade is not started"
        return self.client


def _load_signer(cert: Path, key: Path) -> AssertionSigner:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    certificate = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    private = load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(
        private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
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
        raise SystemExit(
            f"the façade needs {', '.join(missing)}: its own organisation "
            "certificate for calling the nodes"
        )
    assert settings.client_cert is not None and settings.client_key is not None
    trust = settings.node_trust or settings.tls_trust
    if trust is None:
        raise SystemExit("the façade needs node_trust (or tls_trust) to verify the nodes")
    paths = list(settings.resources)

    def loader() -> ResourceSet:
        return load_paths(paths)

    def on_error(exc: Exception) -> None:
        log.error(
            "façade configuration reload refused; keeping the previous one",
            extra={"error": str(exc)},
        )

    holder: StateHolder[FacadeState] = StateHolder(
        loader, lambda res, gen: build_facade_state(res, generation=gen), on_error=on_error
    )
    if identity is None:
        identity = CertificateIdentity(
            proxies=list, trust_bundle=settings.tls_trust, crl=settings.tls_crl
        )
    return Facade(
        settings=settings,
        holder=holder,
        identity=identity,
        signer=_load_signer(settings.client_cert, settings.client_key),
        client_ssl=client_context(settings.client_cert, settings.client_key, trust),
        transport=transport,
        telemetry=Telemetry("knooppunt-facade", endpoint=settings.otlp_endpoint),
    )
