"""kopf entry point: decorators and start-up settings only.

    kopf run -m knooppunt_operator.main --all-namespaces

kopf watches and serves the admission webhook; the work itself is queued and done by
:mod:`knooppunt_operator.controller` (on the leader only) with the reconcile functions of
:mod:`knooppunt_operator.handlers`. :func:`register` puts the kopf side into a registry
(the default one when this module is imported by ``kopf run``; tests pass their own registry
and configuration).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import kopf

from knooppunt_operator import FIELD_MANAGER, cache, kube, leader, metrics
from knooppunt_operator.admission import ServiceWebhookServer, UrlWebhookServer
from knooppunt_operator.builders import meta
from knooppunt_operator.config import OperatorConfig
from knooppunt_operator.controller import Controller
from knooppunt_operator.handlers import connector, knooppunt
from knooppunt_operator.handlers.context import CONNECTOR, GEMEENTE, KNOOPPUNT, Context
from knooppunt_operator.runtime_client import RuntimeAdminClient
from node_runtime.model.meta import GROUP, VERSION


class Validator(Protocol):
    """An admission check: the problems with `body` (none: admitted)."""

    def __call__(
        self,
        ctx: Context,
        namespace: str,
        body: Mapping[str, Any],
        *,
        old: Mapping[str, Any] | None = None,
    ) -> Awaitable[list[str]]: ...


PREFIX = "knooppunt.nl"


def ns(namespace: str | None) -> str:
    return namespace or "default"


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf settings: watching only (no state on objects), no CRD scanning, the webhook."""
    # kopf only watches (event handlers), so it needs no finalizer; it would remove the one
    # configured here from objects, so this must not be the operator's own finalizer.
    settings.persistence.finalizer = f"{PREFIX}/kopf"
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API request otherwise
    settings.posting.reporting_component = FIELD_MANAGER
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # CRDs are installed before the operator
    settings.peering.standalone = True  # one active replica through the Lease instead
    settings.background.cancellation_polling = 1.0  # a deleted node's timer stops quickly
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    for watched in cache.WATCHED:  # only the operator's own objects of the child kinds
        if watched.managed_only:
            settings.watching.label_selectors[_selects(watched.kind)] = cache.MANAGED_SELECTOR
    if config.webhook_service and config.namespace:
        settings.admission.server = ServiceWebhookServer(
            service=config.webhook_service,
            namespace=config.namespace,
            port=config.webhook_port,
            cert_dir=config.webhook_cert_dir,
        )
        if config.webhook_managed:  # otherwise installed with the operator (the Helm chart)
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


def _selects(kind: kube.Kind) -> Any:
    def check(resource: Any) -> bool:
        return bool(resource.group == kind.group and resource.plural == kind.plural)

    return check


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
            renew_deadline=config.renew_deadline_seconds,
            create=config.lease_create,
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
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        configure(settings, config)
        if memo.get("ctx") is None:
            memo["ctx"] = build_context(config, creds())
        ctx: Context = memo["ctx"]
        for watched in cache.WATCHED:
            ctx.cache.attach(watched.kind, kwargs[watched.index_id])
        memo["controller"] = controller = Controller(
            ctx, workers=config.workers, resync_seconds=config.resync_seconds
        )
        if isinstance(ctx.gate, leader.LeaseElector):
            ctx.gate.start()
        controller.start()
        if config.metrics_port:
            metrics.serve(config.metrics_port)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        if memo.get("controller") is not None:
            await memo["controller"].stop()
        ctx: Context | None = memo.get("ctx")
        if ctx is not None and isinstance(ctx.gate, leader.LeaseElector):
            await ctx.gate.stop()

    @kopf.on.login(id="login", registry=registry)
    async def login(**_: Any) -> Any:
        return await kube.kopf_connection(creds())

    # What the reconcilers read: kopf indexes of every watched kind (knooppunt_operator.cache).
    # kopf holds every event handler back until all of them are filled.
    for watched in cache.WATCHED:
        kind = watched.kind
        kopf.on.index(
            group=kind.group,
            version=kind.version,
            plural=kind.plural,
            id=watched.index_id,
            registry=registry,
            labels={"app.kubernetes.io/managed-by": meta.MANAGED_BY}
            if watched.managed_only
            else None,
        )(_index_body)

    # Watch events only name the work; see knooppunt_operator.controller.

    @kopf.on.event(GROUP, VERSION, "knooppunten", id="knooppunt-event", registry=registry)
    def knooppunt_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        memo["controller"].on_event(KNOOPPUNT, type, body)

    @kopf.on.event(GROUP, VERSION, "sectorconnectors", id="connector-event", registry=registry)
    def connector_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        memo["controller"].on_event(CONNECTOR, type, body)

    @kopf.on.event(GROUP, VERSION, "gemeenten", id="gemeente-event", registry=registry)
    def gemeente_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        memo["controller"].on_event(GEMEENTE, type, body)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        labels={"app.kubernetes.io/managed-by": meta.MANAGED_BY},
        id="deployment-event",
        registry=registry,
    )
    def deployment_event(
        type: str | None, namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any
    ) -> None:
        node = labels.get(meta.NODE_LABEL)
        if node:
            memo["controller"].on_deployment(type, ns(namespace), node)

    def admission(validate: Validator) -> Callable[..., Awaitable[None]]:
        """A kopf admission handler: refuse (422) with every problem `validate` finds."""

        async def handler(
            body: kopf.Body,
            memo: kopf.Memo,
            old: kopf.Body | None = None,
            operation: str | None = None,
            **_: Any,
        ) -> None:
            namespace = body.get("metadata", {}).get("namespace") or "default"
            problems = await validate(
                memo["ctx"], namespace, body, old=old if operation == "UPDATE" else None
            )
            if problems:
                raise kopf.AdmissionError("; ".join(problems), code=422)

        return handler

    connector_admission = admission(connector.validate)
    knooppunt_admission = admission(knooppunt.validate)

    if webhook_enabled(config):  # kopf refuses admission handlers without a server
        kopf.on.validate(
            GROUP,
            VERSION,
            "knooppunten",
            id="validate-knooppunt",
            operations=["CREATE", "UPDATE"],
            registry=registry,
        )(knooppunt_admission)
        kopf.on.validate(
            GROUP,
            VERSION,
            "sectorconnectors",
            id="validate-connector",
            operations=["CREATE", "UPDATE"],
            registry=registry,
        )(connector_admission)


def _index_body(body: kopf.Body, **_: Any) -> dict[cache.Key, dict[str, Any]]:
    return cache.index_body(body)


register(kopf.get_default_registry(), OperatorConfig())  # for `kopf run -m`
