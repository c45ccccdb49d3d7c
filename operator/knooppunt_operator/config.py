"""Operator settings, from ``KNOOPPUNT_OPERATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    """How the operator runs and what it puts into every node's pods."""

    model_config = SettingsConfigDict(env_prefix="KNOOPPUNT_OPERATOR_", frozen=True)

    namespace: str | None = Field(
        default=None,
        description="The operator's own namespace (leader-election Lease, NetworkPolicy peer); "
        "in a pod taken from the service account when unset.",
    )
    identity: str | None = Field(
        default=None, description="Leader-election identity; default: host name."
    )
    leader_election: bool = Field(default=True, description="Elect one active replica.")
    lease_name: str = "knooppunt-operator"
    lease_create: bool = Field(
        default=True,
        description="Create the Lease when it is absent. False when it is installed with the "
        "operator (the Helm chart): a replica that is still stopping then cannot bring it back "
        "after an uninstall removed it.",
    )
    lease_seconds: float = Field(default=15.0, gt=0, description="Lease duration.")
    renew_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and a standby retries."
    )
    renew_deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        description="The leader stops when it could not renew for this long (before the lease "
        "runs out for the others); default two thirds of the lease.",
    )

    rollout_deadline_seconds: int = Field(
        default=600,
        ge=1,
        description="A rollout that is not ready after this long is rolled back to the last "
        "good connector revisions (also the Deployment's progressDeadlineSeconds).",
    )
    observe_interval: float = Field(
        default=10.0, gt=0, description="How often a node's rollout state is checked."
    )
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Reconciles the leader runs at the same time (a node goes before its "
        "connectors, those before gemeenten).",
    )
    resync_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Every resource is reconciled again this often, changed or not "
        "(certificate renewal, drift).",
    )
    pending_retry_seconds: float = Field(
        default=30.0, gt=0, description="Retry delay while deletion waits for undelivered messages."
    )
    revision_history: int = Field(
        default=10, ge=2, description="Connector revisions kept as ControllerRevisions."
    )

    operator_oin: str = Field(
        default="00000000000000000001",
        pattern=r"^[0-9]{20}$",
        description="Subject serialNumber of the operator's short-lived administrator "
        "certificate (added to every node's administrators).",
    )
    server_cert_days: int = Field(default=90, ge=1)
    client_cert_days: int = Field(default=365, ge=1)
    renew_before_days: int = Field(default=30, ge=0)

    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    # two processes per runtime pod, intake and push delivery: room for two cores and two
    # interpreters (about 280 MiB together when idle)
    cpu_limit: str = "2"
    memory_limit: str = "768Mi"
    sqlite_volume_size: str = "1Gi"
    termination_grace_seconds: int = Field(default=60, ge=1)
    run_as_user: int = Field(default=10001, ge=1)

    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus metrics on this port."
    )
    webhook_port: int = Field(default=9443, ge=1, le=65535)
    webhook_service: str | None = Field(
        default=None,
        description="Service in front of the operator's webhook server; enables the admission "
        "webhook.",
    )
    webhook_managed: bool = Field(
        default=True,
        description="Create and keep the ValidatingWebhookConfiguration current from the "
        "operator (kopf's managed mode). False when it is installed with the operator, as the "
        "Helm chart does: then the operator needs no rights on webhook configurations and an "
        "uninstall removes it.",
    )
    webhook_url_host: str | None = Field(
        default=None,
        description="Development: serve the webhook with a throw-away certificate on this host "
        "(at webhook_port) and register it by URL (the API server must reach the host).",
    )
    webhook_local_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Development and tests: serve the admission webhook over plain HTTP on "
        "127.0.0.1 at this port (not registered with the API server).",
    )
    webhook_cert_dir: str | None = Field(
        default=None, description="tls.crt/tls.key for the webhook server; self-signed if unset."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Default OTLP/HTTP endpoint of the node pods (OTEL_EXPORTER_OTLP_ENDPOINT) "
        "for Knooppunten without spec.tracing.otlpEndpoint. Unset: only those that name one "
        "export spans.",
    )
