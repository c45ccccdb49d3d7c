"""kopf entry point: decorators and start-up settings only.

    kopf run -m knooppunt_operator.main --all-namespaces

The handlers live in :mod:`knooppunt_operator.handlers`; :func:`register` puts them into a
kopf registry (the default one when this module is imported by ``kopf run``; tests pass
their own registry and configuration).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import kopf

from knooppunt_operator import FIELD_MANAGER, kube, leader, metrics
from knooppunt_operator.admission import ServiceWebhookServer, UrlWebhookServer
from knooppunt_operator.builders import meta
from knooppunt_operator.config import OperatorConfig
from knooppunt_operator.handlers import connector, gemeente, knooppunt
from knooppunt_operator.handlers.context import Context, guarded
from knooppunt_operator.runtime_client import RuntimeAdminClient
from node_runtime.model.meta import GROUP, VERSION

PREFIX = "knooppunt.nl"


def ns(namespace: str | None) -> str:
    return namespace or "default"


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf settings: own finalizer and annotations, no CRD scanning, the admission webhook."""
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API request otherwise
    settings.posting.reporting_component = FIELD_MANAGER
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # CRDs are installed before the operator
    settings.peering.standalone = True  # one active replica through the Lease instead
    settings.background.cancellation_polling = 1.0  # a deleted node's timer stops quickly
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if config.webhook_service and config.namespace:
        settings.admission.server = ServiceWebhookServer(
            service=config.webhook_service,
            namespace=config.namespace,
            port=config.webhook_port,
            cert_dir=config.webhook_cert_dir,
        )
        settings.admission.managed = PREFIX
    elif config.webhook_url_host:
        settings.admission.server = UrlWebhookServer(
            host=config.webhook_url_host, port=config.webhook_port
        )
        settings.admission.managed = PREFIX
    elif config.webhook_local_port:
        settings.admission.server = kopf.WebhookServer(
            addr="127.0.0.1", port=config.webhook_local_port, insecure=True
        )


def webhook_enabled(config: OperatorConfig) -> bool:
    return bool(
        (config.webhook_service and config.namespace)
        or config.webhook_url_host
        or config.webhook_local_port
    )


def build_context(config: OperatorConfig, credentials: kube.Credentials) -> Context:
    namespace = config.namespace or credentials.default_namespace
    if namespace and config.namespace is None:
        config = config.model_copy(update={"namespace": namespace})
    client = kube.KubeClient(credentials)
    ctx = Context(
        client=client,
        config=config,
        pending=RuntimeAdminClient(config.operator_oin),
        events=kube.EventRecorder(client),
    )
    if config.leader_election and namespace:
        ctx.gate = leader.LeaseElector(
            client,
            namespace,
            name=config.lease_name,
            identity=config.identity or socket.gethostname(),
            lease_seconds=config.lease_seconds,
            renew_seconds=config.renew_seconds,
        )
    return ctx


def register(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    *,
    credentials: kube.Credentials | None = None,
) -> None:
    """Put the operator's handlers into ``registry``.

    ``credentials`` default to :meth:`kube.Credentials.from_env` (in-cluster, kubeconfig, or
    ``KNOOPPUNT_OPERATOR_KUBE_URL``); kopf logs in with the same ones.
    """

    def creds() -> kube.Credentials:
        return credentials or kube.Credentials.from_env()

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, config)
        if memo.get("ctx") is None:
            memo["ctx"] = build_context(config, creds())
        gate = memo["ctx"].gate
        if isinstance(gate, leader.LeaseElector):
            gate.start()
        if config.metrics_port:
            metrics.serve(config.metrics_port)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx: Context | None = memo.get("ctx")
        if ctx is not None and isinstance(ctx.gate, leader.LeaseElector):
            await ctx.gate.stop()

    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> Any:
        return kube.kopf_connection(creds())

    # ------------------------------------------------------------------------- Knooppunt

    @kopf.on.resume(GROUP, VERSION, "knooppunten", id="knooppunt-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, "knooppunten", id="knooppunt-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, "knooppunten", id="knooppunt-update", registry=registry)
    async def knooppunt_changed(
        namespace: str | None, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        await guarded(knooppunt.reconcile(memo["ctx"], ns(namespace), name))

    @kopf.timer(GROUP, VERSION, "knooppunten", interval=config.observe_interval,
                id="knooppunt-observe", registry=registry)
    async def knooppunt_observed(
        namespace: str | None, name: str, memo: kopf.Memo,
        gemeente_subscriptions: kopf.Index[str, Any] | None = None, **_: Any,
    ) -> None:
        def count(connectors: frozenset[str]) -> int:
            index: Mapping[str, Any] = gemeente_subscriptions or {}
            return sum(1 for subs in index.get(namespace or "", []) if subs & connectors)

        await guarded(knooppunt.observe(memo["ctx"], ns(namespace), name, gemeenten=count))

    @kopf.on.event("apps", "v1", "deployments",
                   labels={"app.kubernetes.io/managed-by": meta.MANAGED_BY},
                   id="deployment-event", registry=registry)
    async def deployment_event(
        type: str, namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any
    ) -> None:
        node = labels.get(meta.NODE_LABEL)
        if not node:
            return
        if type == "DELETED":
            await guarded(knooppunt.reconcile(memo["ctx"], ns(namespace), node))
        else:
            await guarded(knooppunt.observe(memo["ctx"], ns(namespace), node))

    # ------------------------------------------------------------------- SectorConnector

    @kopf.on.resume(GROUP, VERSION, "sectorconnectors", id="connector-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, "sectorconnectors", id="connector-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, "sectorconnectors", id="connector-update", registry=registry)
    async def connector_changed(
        namespace: str | None, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        await guarded(connector.reconcile(memo["ctx"], ns(namespace), name))

    @kopf.on.delete(GROUP, VERSION, "sectorconnectors", id="connector-delete", registry=registry)
    async def connector_deleted(
        namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        await guarded(connector.delete(memo["ctx"], ns(namespace), name, body))

    async def connector_admission(
        body: kopf.Body, memo: kopf.Memo, old: kopf.Body | None = None,
        operation: str | None = None, **_: Any,
    ) -> None:
        namespace = body.get("metadata", {}).get("namespace") or "default"
        problems = await connector.validate(
            memo["ctx"], namespace, body, old=old if operation == "UPDATE" else None
        )
        if problems:
            raise kopf.AdmissionError("; ".join(problems), code=422)

    if webhook_enabled(config):  # kopf refuses admission handlers without a server
        kopf.on.validate(
            GROUP, VERSION, "sectorconnectors", id="validate-connector",
            operations=["CREATE", "UPDATE"], registry=registry,
        )(connector_admission)

    # -------------------------------------------------------------------------- Gemeente

    @kopf.index(GROUP, VERSION, "gemeenten", id="gemeente_subscriptions", registry=registry)
    def gemeente_subscriptions(
        namespace: str | None, spec: kopf.Spec, **_: Any
    ) -> dict[str, Any]:
        return {ns(namespace): frozenset(s.get("connector") for s in spec.get("subscriptions", []))}

    @kopf.on.resume(GROUP, VERSION, "gemeenten", id="gemeente-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, "gemeenten", id="gemeente-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, "gemeenten", id="gemeente-update", registry=registry)
    async def gemeente_changed(
        namespace: str | None, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        await guarded(gemeente.reconcile(memo["ctx"], ns(namespace), name))

    @kopf.on.delete(GROUP, VERSION, "gemeenten", id="gemeente-delete", registry=registry)
    async def gemeente_deleted(
        namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        await guarded(gemeente.delete(memo["ctx"], ns(namespace), name, body))


register(kopf.get_default_registry(), OperatorConfig())  # for `kopf run -m`
