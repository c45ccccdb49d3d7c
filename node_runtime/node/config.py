"""Runtime settings: one BaseSettings, read from KNOOPPUNT_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from node_runtime.store.database_tls import DatabaseTls, SslMode


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KNOOPPUNT_", env_nested_delimiter="__")

    node: str = Field(description="Name of the Knooppunt resource this runtime serves.")
    node_uid: str | None = Field(
        default=None,
        description="uid of the Knooppunt resource (on a cluster, set by the operator): the "
        "node's Events name it, so `kubectl describe knooppunt` shows them.",
    )
    resources: list[Path] = Field(description="Resource files or directories (YAML).")
    data_dir: Path = Path(".knooppunt/data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in data_dir."
    )
    database_ca: Path | None = Field(
        default=None,
        description="PostgreSQL: PEM bundle of the CAs that sign the server certificate; "
        "with it the connection is TLS with sslmode verify-full (server verified against the "
        "CA and its host name).",
    )
    database_sslmode: SslMode | None = Field(
        default=None,
        description="PostgreSQL: libpq sslmode; default verify-full when database_ca is set. "
        "Anything weaker than verify-full next to a CA is refused.",
    )
    database_client_cert: Path | None = Field(
        default=None, description="PostgreSQL: client certificate (PEM) for cert authentication."
    )
    database_client_key: Path | None = Field(
        default=None, description="PostgreSQL: private key of database_client_cert (PEM)."
    )
    pseudonym_key_file: Path | None = Field(
        default=None, description="Key for subject references; default: data_dir/pseudonym.key."
    )
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8443
    health_port: int | None = Field(
        default=None,
        description="Optional plain-HTTP port serving only /healthz, /readyz, /metrics.",
    )
    tls_cert: Path | None = Field(default=None, description="Server certificate chain (PEM).")
    tls_key: Path | None = Field(default=None, description="Server private key (PEM).")
    tls_trust: Path | None = Field(default=None, description="Trusted client CAs (PEM bundle).")
    tls_crl: Path | None = Field(default=None, description="CRL(s) of the trusted CAs (PEM).")
    tls_issuers: Path | None = Field(
        default=None,
        description="Issuer policy (YAML/JSON): which trusted CA may speak for "
        "which organisation. Default: only the CA of the server certificate speaks for anyone.",
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
    trusted_proxy_header: str = Field(
        default="x-ssl-client-cert",
        description="Header carrying the URL-encoded PEM client certificate from a trusted proxy.",
    )
    delivery_enabled: bool = Field(default=True, description="Run push-delivery workers.")
    delivery_worker: Literal["process", "inline"] = Field(
        default="process",
        description="process: push delivery runs in a child process of its own (`knooppunt "
        "deliver`), supervised by the node (restarted when it ends, stopped with the node; "
        "readiness and /metrics include it), so intake and delivery use separate cores. "
        "inline: in the node's own process (tests, embedding).",
    )
    delivery_cert: Path | None = Field(
        default=None, description="Client certificate chain the node presents when pushing."
    )
    delivery_key: Path | None = None
    delivery_trust: Path | None = Field(
        default=None, description="CAs trusted for gemeente endpoints; default tls_trust."
    )
    gemeenten_source: Literal["files", "kubernetes"] = Field(
        default="files",
        description="files: Gemeente resources from `resources`; kubernetes: list and watch "
        "them in `namespace` through the Kubernetes API.",
    )
    namespace: str | None = Field(default=None, description="Namespace of the resources.")
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig for the API (default: in-cluster account)."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        # KNOOPPUNT_OTLP_ENDPOINT, or the OpenTelemetry SDK's own variable (the operator sets
        # that one on node pods from spec.tracing or its default)
        validation_alias=AliasChoices(
            "otlp_endpoint", "KNOOPPUNT_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OTLP/HTTP endpoint (e.g. http://otel-collector:4318): "
        "export OpenTelemetry spans of requests, intake steps and deliveries. Off when unset.",
    )
    config_map_root: Path = Path("/etc/knooppunt/bundles")
    shadow_config_map_root: Path = Field(
        default=Path("/etc/knooppunt/shadow-bundles"),
        description="Where the bundles of shadow releases from a ConfigMap are mounted, one "
        "directory per connector (the operator mounts them there).",
    )
    shadow_status_interval: float = Field(
        default=30.0,
        ge=0.1,
        description="Seconds between writes of the shadow report into the SectorConnector's "
        "status (on a cluster; only a changed report is written).",
    )
    reload_interval: float = Field(default=2.0, ge=0.1)
    log_signing_key: Path | None = Field(
        default=None,
        description="Key that signs processing-log checkpoints (PEM); default "
        "tls_key: the node's key from its PKI.",
    )
    log_signing_cert: Path | None = Field(
        default=None, description="Certificate chain of log_signing_key; default tls_cert."
    )
    conversation_interval: float = Field(
        default=15.0, ge=0.1, description="Seconds between refreshes of conversation metrics."
    )
    retention_interval: float = Field(
        default=3600.0, ge=1.0, description="Seconds between retention purges."
    )

    def sqlite_path(self, relative: str = "knooppunt.db") -> Path:
        """The SQLite file: ``spec.storage.sqlitePath`` of the Knooppunt, inside the data dir."""
        path = Path(relative)
        if path.is_absolute() or ".." in path.parts or not path.name:
            raise ValueError(
                f"spec.storage.sqlitePath {relative!r} must be a file name relative "
                "to the data directory"
            )
        return self.data_dir / path

    def database_tls(self) -> DatabaseTls:
        return DatabaseTls(
            ca=self.database_ca,
            sslmode=self.database_sslmode,
            client_cert=self.database_client_cert,
            client_key=self.database_client_key,
        )

    def key_path(self) -> Path:
        return self.pseudonym_key_file or self.data_dir / "pseudonym.key"
