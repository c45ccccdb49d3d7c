"""A Knooppunt's runtime: identity, configuration, pods, network and disruption budget.

The runtime contract (what the pod is told and where it finds things) lives here, in one
place: ``knooppunt serve`` configured by ``KNOOPPUNT_*`` variables, the resources ConfigMap
mounted at ``/etc/knooppunt/resources``, TLS material at ``/etc/knooppunt/tls``, connector
bundles at ``/etc/knooppunt/bundles/<connector>/`` (a shadow release's bundle at
``/etc/knooppunt/shadow-bundles/<connector>/``), the PostgreSQL CA (and client certificate)
at ``/etc/knooppunt/postgresql``, data at ``/var/lib/knooppunt``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from knooppunt_operator.builders import meta
from knooppunt_operator.builders.revisions import ConnectorRevision, bundle_path
from knooppunt_operator.config import OperatorConfig
from node_runtime.model.knooppunt import Knooppunt, PostgresqlTls
from node_runtime.model.meta import GROUP

HTTPS_PORT = 8443
HEALTH_PORT = 8080
RESOURCES_DIR = "/etc/knooppunt/resources"
TLS_DIR = "/etc/knooppunt/tls"
ISSUERS_KEY = "issuers.json"
PSEUDONYM_DIR = "/etc/knooppunt/pseudonym"
BUNDLES_DIR = "/etc/knooppunt/bundles"
SHADOW_BUNDLES_DIR = "/etc/knooppunt/shadow-bundles"
DATA_DIR = "/var/lib/knooppunt"
POSTGRESQL_TLS_DIR = "/etc/knooppunt/postgresql"
POSTGRESQL_CA = "ca.crt"
POSTGRESQL_CLIENT_CERT = "client.crt"
POSTGRESQL_CLIENT_KEY = "client.key"
CONTAINER = "knooppunt"

ACCESS_HTTPS = ("facade", "sector")
ACCESS_METRICS = "monitoring"


def _ns(kp: Knooppunt) -> str | None:
    return kp.metadata.namespace


def sqlite(kp: Knooppunt) -> bool:
    return kp.spec.storage.backend == "sqlite"


def effective_replicas(kp: Knooppunt) -> int:
    """SQLite has one writer: a node on SQLite always runs one replica."""
    return 1 if sqlite(kp) else kp.spec.replicas


def image_version(image: str) -> str:
    """The tag (or digest) of an image reference, for the Version printer column."""
    if "@" in image:
        return image.rsplit("@", 1)[1][:19]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


# ------------------------------------------------------------------------------ identity


def service_account(kp: Knooppunt) -> dict[str, Any]:
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta.object_meta(
            names.service_account, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "automountServiceAccountToken": False,
    }


def role(kp: Knooppunt) -> dict[str, Any]:
    """What the runtime may do: read the gemeenten of its namespace (it picks them up live)
    and record Events (overdue conversations) and shadow reports (SectorConnector status)
    there."""
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta.object_meta(
            names.role, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "rules": [
            {"apiGroups": [GROUP], "resources": ["gemeenten"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {"apiGroups": [GROUP], "resources": ["sectorconnectors/status"], "verbs": ["patch"]},
        ],
    }


def role_binding(kp: Knooppunt) -> dict[str, Any]:
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta.object_meta(
            names.role, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [
            {"kind": "ServiceAccount", "name": names.service_account, "namespace": _ns(kp)}
        ],
    }


# ------------------------------------------------------------------------- configuration


def runtime_knooppunt(kp: Knooppunt, *, operator_oin: str) -> dict[str, Any]:
    """The Knooppunt as the runtime reads it.

    Without ``replicas`` (scaling must not roll pods) and with the operator's administrator
    OIN added, so the operator may ask the node about undelivered messages.
    """
    spec = kp.spec.model_dump(by_alias=True, exclude_unset=True, mode="json")
    spec.pop("replicas", None)
    security = dict(spec.get("security") or {})
    administrators = list(security.get("administrators") or [])
    if operator_oin not in administrators:
        administrators.append(operator_oin)
    security["administrators"] = administrators
    spec["security"] = security
    doc_meta: dict[str, Any] = {"name": kp.name}
    if kp.metadata.labels:
        doc_meta["labels"] = dict(kp.metadata.labels)
    return {"apiVersion": kp.api_version, "kind": kp.kind, "metadata": doc_meta, "spec": spec}


def _dump(document: Mapping[str, Any]) -> str:
    return str(yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=100))


def resources_data(
    kp: Knooppunt, connectors: Sequence[ConnectorRevision], *, operator_oin: str
) -> dict[str, str]:
    data = {"knooppunt.yaml": _dump(runtime_knooppunt(kp, operator_oin=operator_oin))}
    for rev in sorted(connectors, key=lambda r: r.name):
        data[f"connector-{rev.name}.yaml"] = _dump(rev.document)
    return data


def config_hash(data: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resources_config_map(
    kp: Knooppunt, connectors: Sequence[ConnectorRevision], *, operator_oin: str
) -> dict[str, Any]:
    """``<node>-resources``: knooppunt.yaml and one connector-<name>.yaml per served revision."""
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta.object_meta(
            names.resources, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "data": resources_data(kp, connectors, operator_oin=operator_oin),
    }


# -------------------------------------------------------------------------------- storage


def data_volume_claim(kp: Knooppunt, *, size: str) -> dict[str, Any] | None:
    """The SQLite database volume; ``None`` (no claim) with PostgreSQL."""
    if not sqlite(kp):
        return None
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta.object_meta(
            names.data, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        },
    }


# ----------------------------------------------------------------------------------- pods


def otlp_endpoint(kp: Knooppunt, config: OperatorConfig) -> str | None:
    """Where the node exports spans: its own spec.tracing, else the operator's default."""
    return kp.spec.tracing.otlp_endpoint or config.otlp_endpoint


def _env(kp: Knooppunt, *, tls_managed: bool, otlp: str | None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "KNOOPPUNT_NODE", "value": kp.name},
        # the Knooppunt's uid: the node's Events name it, so `kubectl describe` finds them
        {"name": "KNOOPPUNT_NODE_UID", "value": kp.metadata.uid or ""},
        {
            "name": "KNOOPPUNT_NAMESPACE",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
        },
        {"name": "KNOOPPUNT_RESOURCES", "value": json.dumps([RESOURCES_DIR])},
        {"name": "KNOOPPUNT_GEMEENTEN_SOURCE", "value": "kubernetes"},
        {"name": "KNOOPPUNT_DATA_DIR", "value": DATA_DIR},
        {"name": "KNOOPPUNT_HOST", "value": "0.0.0.0"},  # noqa: S104 - inside the pod
        {"name": "KNOOPPUNT_PORT", "value": str(HTTPS_PORT)},
        {"name": "KNOOPPUNT_HEALTH_PORT", "value": str(HEALTH_PORT)},
        {"name": "KNOOPPUNT_TLS_CERT", "value": f"{TLS_DIR}/tls.crt"},
        {"name": "KNOOPPUNT_TLS_KEY", "value": f"{TLS_DIR}/tls.key"},
        {"name": "KNOOPPUNT_TLS_TRUST", "value": f"{TLS_DIR}/ca.crt"},
    ]
    # Always a CRL (fail-closed: a provided TLS Secret must carry crl.pem too) and the issuer
    # policy (issuers.json; without it only the server certificate's CA speaks for anyone).
    del tls_managed
    env.append({"name": "KNOOPPUNT_TLS_CRL", "value": f"{TLS_DIR}/crl.pem"})
    env.append({"name": "KNOOPPUNT_TLS_ISSUERS", "value": f"{TLS_DIR}/{ISSUERS_KEY}"})
    env += [
        {"name": "KNOOPPUNT_PSEUDONYM_KEY_FILE", "value": f"{PSEUDONYM_DIR}/key"},
        {"name": "KNOOPPUNT_CONFIG_MAP_ROOT", "value": BUNDLES_DIR},
        {"name": "KNOOPPUNT_SHADOW_CONFIG_MAP_ROOT", "value": SHADOW_BUNDLES_DIR},
        # push delivery in a process of its own beside intake (docs/decisions/
        # delivery-process.md); the runtime's default too, stated so the pod spec shows it
        {"name": "KNOOPPUNT_DELIVERY_WORKER", "value": "process"},
    ]
    dsn = kp.spec.storage.postgresql_dsn_secret
    if not sqlite(kp) and dsn is not None:
        env.append(
            {
                "name": "KNOOPPUNT_DATABASE_URL",
                "valueFrom": {"secretKeyRef": {"name": dsn.name, "key": dsn.key}},
            }
        )
    env += _postgresql_tls_env(kp)
    if otlp is not None:
        # the OpenTelemetry SDK's own variable, which the runtime reads too
        env.append({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": otlp})
    return env


def _postgresql_tls(kp: Knooppunt) -> PostgresqlTls | None:
    return None if sqlite(kp) else kp.spec.storage.postgresql_tls


def _postgresql_tls_env(kp: Knooppunt) -> list[dict[str, Any]]:
    """The runtime's PostgreSQL TLS settings (node_runtime.store.database_tls)."""
    tls = _postgresql_tls(kp)
    if tls is None:
        return []
    env = [{"name": "KNOOPPUNT_DATABASE_SSLMODE", "value": tls.ssl_mode}]
    if tls.ca is not None:
        env.append(
            {"name": "KNOOPPUNT_DATABASE_CA", "value": f"{POSTGRESQL_TLS_DIR}/{POSTGRESQL_CA}"}
        )
    if tls.client_certificate is not None:
        env += [
            {
                "name": "KNOOPPUNT_DATABASE_CLIENT_CERT",
                "value": f"{POSTGRESQL_TLS_DIR}/{POSTGRESQL_CLIENT_CERT}",
            },
            {
                "name": "KNOOPPUNT_DATABASE_CLIENT_KEY",
                "value": f"{POSTGRESQL_TLS_DIR}/{POSTGRESQL_CLIENT_KEY}",
            },
        ]
    return env


def postgresql_tls_volume(kp: Knooppunt) -> dict[str, Any] | None:
    """One read-only projected volume: the CA (from its Secret or ConfigMap) as ca.crt and
    the client certificate as client.crt/client.key; files 0440 (libpq accepts a key of
    root:fsGroup 0440, and the kubelet refreshes rotated contents in place)."""
    tls = _postgresql_tls(kp)
    if tls is None or tls.ca is None:
        return None
    ca_items = [{"key": tls.ca.key, "path": POSTGRESQL_CA}]
    sources: list[dict[str, Any]] = [
        {"secret": {"name": tls.ca.secret, "items": ca_items}}
        if tls.ca.secret is not None
        else {"configMap": {"name": tls.ca.config_map, "items": ca_items}}
    ]
    client = tls.client_certificate
    if client is not None:
        sources.append(
            {
                "secret": {
                    "name": client.secret,
                    "items": [
                        {"key": client.cert_key, "path": POSTGRESQL_CLIENT_CERT},
                        {"key": client.key_key, "path": POSTGRESQL_CLIENT_KEY},
                    ],
                }
            }
        )
    return {"name": "postgresql-tls", "projected": {"sources": sources, "defaultMode": 0o440}}


def _bundle_volume(rev: ConnectorRevision, *, shadow: bool = False) -> str:
    prefix = "shadow-bundle-" if shadow else "bundle-"
    return prefix + hashlib.sha256(rev.name.encode()).hexdigest()[:10]


def _bundle_mount(
    volume: str, config_map: str, keys: Sequence[str], mount_path: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {
            "name": volume,
            "configMap": {
                "name": config_map,
                "items": [{"key": key, "path": bundle_path(key)} for key in keys],
            },
        },
        {"name": volume, "mountPath": mount_path, "readOnly": True},
    )


def _volumes(
    kp: Knooppunt, connectors: Sequence[ConnectorRevision], *, tls_secret: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    names = meta.NodeNames(kp.name)
    volumes: list[dict[str, Any]] = [
        {"name": "resources", "configMap": {"name": names.resources}},
        {"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o440}},
        {"name": "pseudonym", "secret": {"secretName": names.pseudonym, "defaultMode": 0o440}},
        (
            {"name": "data", "persistentVolumeClaim": {"claimName": names.data}}
            if sqlite(kp)
            else {"name": "data", "emptyDir": {}}
        ),
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "resources", "mountPath": RESOURCES_DIR, "readOnly": True},
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        {"name": "pseudonym", "mountPath": PSEUDONYM_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own scratch volume
    ]
    pg_tls = postgresql_tls_volume(kp)
    if pg_tls is not None:
        volumes.append(pg_tls)
        mounts.append({"name": pg_tls["name"], "mountPath": POSTGRESQL_TLS_DIR, "readOnly": True})
    for rev in sorted(connectors, key=lambda r: r.name):
        bundles = []
        if rev.bundle_config_map is not None:
            bundles.append(
                _bundle_mount(
                    _bundle_volume(rev),
                    rev.bundle_config_map,
                    rev.bundle_keys,
                    f"{BUNDLES_DIR}/{rev.name}",
                )
            )
        if rev.shadow_bundle_config_map is not None:  # the shadow travels with its revision
            bundles.append(
                _bundle_mount(
                    _bundle_volume(rev, shadow=True),
                    rev.shadow_bundle_config_map,
                    rev.shadow_bundle_keys,
                    f"{SHADOW_BUNDLES_DIR}/{rev.name}",
                )
            )
        for volume, mount in bundles:
            volumes.append(volume)
            mounts.append(mount)
    return volumes, mounts


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "metrics", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def pod_template(
    kp: Knooppunt,
    *,
    config_hash: str,
    connectors: Sequence[ConnectorRevision],
    tls_secret: str,
    tls_managed: bool,
    config: OperatorConfig,
) -> dict[str, Any]:
    names = meta.NodeNames(kp.name)
    volumes, mounts = _volumes(kp, connectors, tls_secret=tls_secret)
    selector = meta.selector_labels(kp.name)
    container = {
        "name": CONTAINER,
        "image": kp.spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["knooppunt", "serve"],
        "env": _env(kp, tls_managed=tls_managed, otlp=otlp_endpoint(kp, config)),
        "ports": [
            {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "startupProbe": _probe("/healthz", period=2, failures=90),
        "livenessProbe": _probe("/healthz", period=10, failures=3),
        "readinessProbe": _probe("/readyz", period=5, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "resources": {
            "requests": {"cpu": config.cpu_request, "memory": config.memory_request},
            "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": meta.node_labels(kp.name),
            "annotations": {meta.CONFIG_HASH: config_hash},
        },
        "spec": {
            "serviceAccountName": names.service_account,
            "automountServiceAccountToken": True,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": config.termination_grace_seconds,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": config.run_as_user,
                "runAsGroup": config.run_as_user,
                "fsGroup": config.run_as_user,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": selector},
                    "matchLabelKeys": ["pod-template-hash"],
                },
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": selector},
                    "matchLabelKeys": ["pod-template-hash"],
                },
            ],
            "containers": [container],
            "volumes": volumes,
        },
    }


def template_hash(template: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def deployment(
    kp: Knooppunt,
    *,
    template: Mapping[str, Any],
    config: OperatorConfig,
) -> dict[str, Any]:
    """Rolling without losing accepted messages.

    PostgreSQL: surge one new pod, wait until it is ready, only then take an old one out of
    the Service (preStop pause) and stop it gracefully. SQLite: one writer, so the old pod
    stops (finishing in-flight requests) before the new one opens the database.
    """
    names = meta.NodeNames(kp.name)
    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if sqlite(kp)
        else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta.object_meta(
            names.deployment, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "spec": {
            "replicas": effective_replicas(kp),
            "selector": {"matchLabels": meta.selector_labels(kp.name)},
            "strategy": strategy,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": config.rollout_deadline_seconds,
            "template": dict(template),
        },
    }


# -------------------------------------------------------------------------------- network


def service(kp: Knooppunt) -> dict[str, Any]:
    names = meta.NodeNames(kp.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta.object_meta(
            names.service, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": meta.selector_labels(kp.name),
            "ports": [
                {"name": "https", "port": HTTPS_PORT, "targetPort": "https", "protocol": "TCP"},
                {
                    "name": "metrics",
                    "port": HEALTH_PORT,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }


def pod_disruption_budget(kp: Knooppunt) -> dict[str, Any]:
    """At most one pod voluntarily down at a time (and a single-replica node stays drainable)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta.object_meta(kp.name, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": meta.selector_labels(kp.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def network_policy(kp: Knooppunt, *, operator_namespace: str | None) -> dict[str, Any]:
    """Default deny; https only from the façade and the sector side, metrics from monitoring.

    Peers are recognised by the pod label ``knooppunt.nl/access`` (facade, sector, monitoring)
    in any namespace; the operator may reach https to ask about undelivered messages.
    """
    ingress: list[dict[str, Any]] = [
        {
            "from": [
                {
                    "namespaceSelector": {},
                    "podSelector": {
                        "matchExpressions": [
                            {
                                "key": meta.ACCESS_LABEL,
                                "operator": "In",
                                "values": list(ACCESS_HTTPS),
                            }
                        ]
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": HTTPS_PORT}],
        },
        {
            "from": [
                {
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {meta.ACCESS_LABEL: ACCESS_METRICS}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": HEALTH_PORT}],
        },
    ]
    if operator_namespace:
        ingress.append(
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": operator_namespace}
                        },
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": meta.MANAGED_BY}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": HTTPS_PORT}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta.object_meta(kp.name, _ns(kp), owner=kp, labels=meta.node_labels(kp.name)),
        "spec": {
            "podSelector": {"matchLabels": meta.selector_labels(kp.name)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
