"""The Knooppunt resource: one node runtime serving sector connectors to gemeenten."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from node_runtime.model.meta import DNS_LABEL, OIN_PATTERN, Model, Resource


class ConnectorPin(Model):
    """A connector served by the node, optionally pinned to one connector revision."""

    name: str = Field(pattern=DNS_LABEL, description="Name of the SectorConnector resource.")
    revision: int | None = Field(
        default=None,
        ge=1,
        description="Pinned connector revision; the node serves exactly this revision. "
        "Promotion is an explicit change of this field. Empty follows the connector's latest.",
    )


class SecretKeyRef(Model):
    name: str = Field(pattern=DNS_LABEL, description="Secret name.")
    key: str = Field(min_length=1, description="Key within the Secret.")


OBJECT_KEY_PATTERN = r"^[-._a-zA-Z0-9]{1,253}$"


class PostgresqlCa(Model):
    """Where the CA bundle (PEM) that signs the PostgreSQL server's certificate is kept."""

    secret: str | None = Field(
        default=None, pattern=DNS_LABEL, description="A Secret in the node's namespace."
    )
    config_map: str | None = Field(
        default=None,
        alias="configMap",
        pattern=DNS_LABEL,
        description="A ConfigMap in the node's namespace (a CA certificate is public).",
    )
    key: str = Field(
        default="ca.crt", pattern=OBJECT_KEY_PATTERN, description="Key holding the PEM bundle."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PostgresqlCa:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("postgresqlTls.ca needs exactly one of secret, configMap")
        return self


class PostgresqlClientCertificate(Model):
    """A client certificate for PostgreSQL certificate authentication (``cert`` in pg_hba)."""

    secret: str = Field(
        pattern=DNS_LABEL, description="Secret (e.g. kubernetes.io/tls) in the node's namespace."
    )
    cert_key: str = Field(
        default="tls.crt",
        alias="certKey",
        pattern=OBJECT_KEY_PATTERN,
        description="Key holding the certificate chain (PEM).",
    )
    key_key: str = Field(
        default="tls.key",
        alias="keyKey",
        pattern=OBJECT_KEY_PATTERN,
        description="Key holding the private key (PEM).",
    )


class PostgresqlTls(Model):
    """TLS of the node's connection to PostgreSQL. With a CA the server is verified against
    it and its host name (sslmode verify-full); nothing weaker is accepted next to a CA."""

    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="verify-full",
        alias="sslMode",
        description="libpq sslmode. verify-full (the default) is the only mode allowed with a CA.",
    )
    ca: PostgresqlCa | None = Field(
        default=None, description="The CA bundle of the PostgreSQL server (mounted read-only)."
    )
    client_certificate: PostgresqlClientCertificate | None = Field(
        default=None,
        alias="clientCertificate",
        description="Optional client certificate for certificate authentication.",
    )

    @model_validator(mode="after")
    def _verified(self) -> PostgresqlTls:
        if self.ca is not None and self.ssl_mode != "verify-full":
            raise ValueError(
                f"postgresqlTls.sslMode {self.ssl_mode} is weaker than verify-full while a CA "
                "is given; with a CA the server is verified against it and its host name"
            )
        if self.ca is None and self.ssl_mode in ("verify-ca", "verify-full"):
            raise ValueError(f"postgresqlTls.sslMode {self.ssl_mode} needs postgresqlTls.ca")
        if self.client_certificate is not None and self.ca is None:
            raise ValueError("postgresqlTls.clientCertificate needs postgresqlTls.ca")
        return self


class StorageSpec(Model):
    """Where the node keeps messages, mailboxes and the processing log."""

    backend: Literal["sqlite", "postgresql"] = Field(
        default="sqlite", description="sqlite (embedded, single replica) or postgresql (shared)."
    )
    sqlite_path: str = Field(
        default="knooppunt.db",
        alias="sqlitePath",
        description="SQLite database file, relative to the node's data directory.",
    )
    postgresql_dsn_secret: SecretKeyRef | None = Field(
        default=None,
        alias="postgresqlDsnSecret",
        description="Secret holding the PostgreSQL connection string (backend postgresql).",
    )
    postgresql_tls: PostgresqlTls | None = Field(
        default=None,
        alias="postgresqlTls",
        description="TLS to PostgreSQL: the server's CA (sslMode verify-full) and an optional "
        "client certificate, mounted read-only into the node pods (backend postgresql).",
    )

    @model_validator(mode="after")
    def _tls_for_postgresql(self) -> StorageSpec:
        if self.postgresql_tls is not None and self.backend != "postgresql":
            raise ValueError("storage.postgresqlTls is for backend postgresql only")
        return self


class LimitsSpec(Model):
    max_message_bytes: int = Field(
        default=5 * 1024 * 1024,
        alias="maxMessageBytes",
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest accepted request body; enforced while streaming.",
    )
    max_xml_depth: int = Field(
        default=64, alias="maxXmlDepth", ge=8, le=256, description="Deepest XML nesting accepted."
    )


class TrustedProxy(Model):
    address: str = Field(description="IP address or CIDR of a TLS-terminating proxy.")


class SecuritySpec(Model):
    """Transport security and authorisation of the node."""

    administrators: list[str] = Field(
        default_factory=list,
        description="OINs (certificate subject serialNumber) allowed to use management endpoints.",
        json_schema_extra={"items": {"type": "string", "pattern": OIN_PATTERN}},
    )
    facade_oins: list[str] = Field(
        default_factory=list,
        alias="facadeOins",
        description="OINs of façade instances allowed to act for a gemeente with a signed "
        "assertion.",
    )
    trusted_proxies: list[TrustedProxy] = Field(
        default_factory=list,
        alias="trustedProxies",
        description="Off when empty. Forwarded client certificates are accepted only from these "
        "addresses and are verified against the trusted CAs by the node itself.",
    )
    tls_secret: str | None = Field(
        default=None,
        alias="tlsSecret",
        description="Secret with tls.crt, tls.key and ca.crt for the node; issued by the "
        "operator when empty.",
    )


class ProcessingLogSpec(Model):
    retention_days: int = Field(
        default=7 * 365,
        alias="retentionDays",
        ge=1,
        description="How long processing-log records are kept.",
    )
    checkpoint_interval_seconds: int = Field(
        default=300,
        alias="checkpointIntervalSeconds",
        ge=5,
        le=86400,
        description="How often the node signs a checkpoint (tree head) of its tamper-evident "
        "processing log when it grew; a checkpoint can also be requested at any time.",
    )


class DeliverySpec(Model):
    """Push delivery: retries with backoff, per-endpoint limits, circuit breaker, dead letters."""

    max_attempts: int = Field(
        default=12,
        alias="maxAttempts",
        ge=1,
        le=1000,
        description="Attempts before a push delivery becomes a dead letter.",
    )
    max_age_seconds: int = Field(
        default=3 * 24 * 3600,
        alias="maxAgeSeconds",
        ge=1,
        description="Age after which a failing push delivery becomes a dead letter.",
    )
    initial_backoff_seconds: float = Field(
        default=1.0,
        alias="initialBackoffSeconds",
        gt=0,
        le=3600,
        description="First retry delay; doubles per attempt, with full jitter.",
    )
    max_backoff_seconds: float = Field(
        default=600.0,
        alias="maxBackoffSeconds",
        gt=0,
        le=86400,
        description="Upper bound of the retry delay.",
    )
    timeout_seconds: float = Field(
        default=15.0,
        alias="timeoutSeconds",
        gt=0,
        le=300,
        description="Time a receiver gets to answer one delivery.",
    )
    concurrency_per_endpoint: int = Field(
        default=4,
        alias="concurrencyPerEndpoint",
        ge=1,
        le=256,
        description="Deliveries in flight per receiving endpoint.",
    )
    circuit_breaker_threshold: int = Field(
        default=5,
        alias="circuitBreakerThreshold",
        ge=1,
        description="Consecutive failures that open an endpoint's circuit.",
    )
    circuit_breaker_cooldown_seconds: float = Field(
        default=30.0,
        alias="circuitBreakerCooldownSeconds",
        gt=0,
        description="How long an open circuit waits before one trial delivery.",
    )


class TracingSpec(Model):
    """Where the node's OpenTelemetry spans go (docs/operations.md, traces)."""

    otlp_endpoint: str | None = Field(
        default=None,
        alias="otlpEndpoint",
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="OTLP/HTTP base URL of a collector (e.g. "
        "http://otel-collector.monitoring.svc:4318); the operator sets it on the node's pods as "
        "OTEL_EXPORTER_OTLP_ENDPOINT. Empty: the operator's default (its otlpEndpoint setting), "
        "or no spans at all.",
    )


class KnooppuntSpec(Model):
    display_name: str = Field(alias="displayName", min_length=1, max_length=200)
    connectors: list[ConnectorPin] = Field(
        default_factory=list, max_length=32, description="Sector connectors served by this node."
    )
    replicas: int = Field(default=2, ge=1, le=50, description="Runtime replicas.")
    image: str = Field(
        default="ghcr.io/knooppunt/node-runtime:0.1.0", description="Runtime container image."
    )
    oin: str | None = Field(
        default=None,
        pattern=OIN_PATTERN,
        description="OIN of the organisation operating the node (its delivery certificate).",
    )
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https://[^\s/?#]+(/[^\s?#]*)?$",
        description="The node's HTTPS base URL as the municipal cloud façade reaches it (e.g. "
        "https://knooppunt-zorg.knooppunten.svc:8443). Empty: the façade does not use this node; "
        "on a cluster the operator defaults it to the node's Service.",
    )
    storage: StorageSpec = Field(default_factory=StorageSpec)
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    processing_log: ProcessingLogSpec = Field(
        default_factory=ProcessingLogSpec, alias="processingLog"
    )
    tracing: TracingSpec = Field(default_factory=TracingSpec)


class Knooppunt(Resource):
    KIND: ClassVar[str] = "Knooppunt"
    PLURAL: ClassVar[str] = "knooppunten"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("kp",)

    kind: Literal["Knooppunt"] = "Knooppunt"
    spec: KnooppuntSpec
