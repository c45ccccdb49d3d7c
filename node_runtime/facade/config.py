"""Façade settings: one BaseSettings, read from KNOOPPUNT_FACADE_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FacadeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNOOPPUNT_FACADE_", env_nested_delimiter="__")

    resources: list[Path] = Field(
        description="Resource files or directories (YAML): the Knooppunt resources (with "
        "spec.endpoint), their SectorConnectors and the Gemeenten."
    )
    host: str = "127.0.0.1"
    port: int = 9443
    health_port: int | None = Field(
        default=None, description="Optional plain-HTTP port serving only /healthz and /readyz."
    )
    tls_cert: Path | None = Field(default=None, description="Server certificate chain (PEM).")
    tls_key: Path | None = Field(default=None, description="Server private key (PEM).")
    tls_trust: Path | None = Field(
        default=None, description="CAs trusted to issue gemeente client certificates (PEM)."
    )
    tls_crl: Path | None = Field(default=None, description="CRL(s) of those CAs (PEM).")
    tls_issuers: Path | None = Field(
        default=None,
        description="Issuer policy (YAML/JSON): which trusted CA may speak for "
        "which gemeente. Default: every CA of tls_trust (the platform's curated bundle).",
    )
    idle_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a connection may wait for a request (after the handshake or a "
        "response) before it is closed.",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds from a request's first byte to its complete headers (else 408).",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds from complete headers to the complete body (else 408).",
    )
    max_connections_per_client: int = Field(
        default=64,
        ge=1,
        le=100000,
        description="Connections one client certificate (or address) may hold open at once.",
    )
    client_cert: Path | None = Field(
        default=None,
        description="The façade's own organisation certificate chain (PEM), "
        "presented to the nodes; its key also signs the acting-for assertions.",
    )
    client_key: Path | None = Field(default=None, description="Its private key (PEM).")
    node_trust: Path | None = Field(
        default=None,
        description="CAs trusted for the nodes' server certificates; default tls_trust.",
    )
    node_timeout: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="Seconds a node gets to answer a mailbox, log or catalogue call; the "
        "aggregated answer never waits longer.",
    )
    submit_timeout: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="Seconds a node gets to answer a submitted message (outbound path).",
    )
    assertion_lifetime: int = Field(
        default=30, ge=5, le=60, description="Lifetime of an acting-for assertion (seconds)."
    )
    max_connections_per_node: int = Field(default=20, ge=1, le=1000)
    reload_interval: float = Field(default=2.0, ge=0.1)
    portal_assets: Path | None = Field(
        default=None,
        description="Directory built by tools/portal-assets/build.sh (the NL Design System "
        "CSS the gemeente portal uses).",
    )
    portal_register_purposes: list[str] = Field(
        default_factory=lambda: ["wmo-uitvoering"],
        description="Purposes whose legal basis allows keeping a current picture of care per "
        "citizen (the portal's virtual register); see docs/security.md.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint: export a span per request (the nodes' "
        "spans become its children). Off when unset.",
    )
