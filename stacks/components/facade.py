"""The shared municipal cloud façade: Deployment, Service, disruption budget and its entry.

Gemeenten connect once, to the façade, with mutual TLS; the façade calls the nodes with its
own certificate (server and client use, OIN in the subject). TLS is never terminated in front
of it: the entry is either a ``LoadBalancer`` Service or an Ingress with TLS **pass-through**,
so the client certificate reaches the façade itself and is verified there, in the handshake.

The pods run as the non-root user 10001 with a read-only root file system, no privilege
escalation, all capabilities dropped and the runtime's default seccomp profile (Pod Security
``restricted``), with CPU and memory limits, spread over nodes, and carry
``knooppunt.nl/access: facade`` so the nodes' NetworkPolicies admit them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from node_runtime import __version__
from stacks.components import labels

HTTPS_PORT = 8443
HEALTH_PORT = 8080
SERVICE_PORT = 443
RUN_AS_USER = 10001
TLS_DIR = "/etc/knooppunt/tls"
TRUST_DIR = "/etc/knooppunt/trust"
CRL_DIR = "/etc/knooppunt/crl"
RESOURCES_DIR = "/etc/knooppunt/resources"

PASSTHROUGH_ANNOTATIONS = {
    # ingress-nginx compatible controllers: TLS is forwarded untouched (needs the controller's
    # --enable-ssl-passthrough); HAProxy's controller reads its own annotation.
    "nginx.ingress.kubernetes.io/ssl-passthrough": "true",
    "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
    "haproxy.org/ssl-passthrough": "true",
}


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "100m"
    memory_request: str = "128Mi"
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"

    def spec(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class Entry:
    """How gemeenten reach the façade: ``loadBalancer`` or ``ingress`` (TLS pass-through)."""

    kind: str = "loadBalancer"
    host: str | None = None
    ingress_class: str | None = None
    load_balancer_source_ranges: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("loadBalancer", "ingress"):
            raise ValueError(f"entry kind must be loadBalancer or ingress, not {self.kind!r}")
        if self.kind == "ingress" and not (self.host and self.ingress_class):
            raise ValueError("an ingress entry needs host and ingressClass")


@dataclass(frozen=True)
class FacadeArgs:
    environment: str
    namespace: pulumi.Input[str]
    tls_secret: pulumi.Input[str]
    trust_config_map: pulumi.Input[str]
    image: str = f"ghcr.io/knooppunt/node-runtime:{__version__}"
    command: tuple[str, ...] = ("knooppunt", "facade", "--env")  # every setting from env
    replicas: int = 2
    resources: Resources = field(default_factory=Resources)
    entry: Entry = field(default_factory=Entry)
    resource_documents: Mapping[str, str] = field(default_factory=dict)
    resources_config_map: str = "knooppunt-facade-resources"
    # The CRLs of the trusted CAs (key crl.pem), kept current by the platform: the façade
    # checks revocation and fails closed (does not start) without them.
    crl_config_map: str = "knooppunt-crl"
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = labels.FACADE_APP

    def __post_init__(self) -> None:
        if self.replicas < 2 and self.environment != "dev":
            raise ValueError("the façade runs at least 2 replicas outside development")
        if ":" not in self.image.rsplit("/", 1)[-1] and "@" not in self.image:
            raise ValueError(f"pin the façade image to a tag or digest: {self.image}")


def selector_labels(args: FacadeArgs) -> dict[str, str]:
    return {labels.NAME: labels.FACADE_APP, "app.kubernetes.io/instance": args.name}


def pod_labels(args: FacadeArgs) -> dict[str, str]:
    return labels.merged(
        selector_labels(args),
        labels.common(args.environment, "facade"),
        {labels.ACCESS: labels.ACCESS_FACADE},
    )


def container_env(args: FacadeArgs) -> list[dict[str, str]]:
    env = {
        "KNOOPPUNT_FACADE_RESOURCES": f'["{RESOURCES_DIR}"]',
        "KNOOPPUNT_FACADE_HOST": "0.0.0.0",  # noqa: S104 - inside the pod
        "KNOOPPUNT_FACADE_PORT": str(HTTPS_PORT),
        "KNOOPPUNT_FACADE_HEALTH_PORT": str(HEALTH_PORT),
        "KNOOPPUNT_FACADE_TLS_CERT": f"{TLS_DIR}/tls.crt",
        "KNOOPPUNT_FACADE_TLS_KEY": f"{TLS_DIR}/tls.key",
        "KNOOPPUNT_FACADE_TLS_TRUST": f"{TRUST_DIR}/ca.crt",
        "KNOOPPUNT_FACADE_TLS_CRL": f"{CRL_DIR}/crl.pem",
        "KNOOPPUNT_FACADE_CLIENT_CERT": f"{TLS_DIR}/tls.crt",
        "KNOOPPUNT_FACADE_CLIENT_KEY": f"{TLS_DIR}/tls.key",
        "KNOOPPUNT_FACADE_NODE_TRUST": f"{TRUST_DIR}/ca.crt",
        **args.env,
    }
    return [{"name": k, "value": v} for k, v in env.items()]


def pod_spec(args: FacadeArgs) -> dict[str, Any]:
    """The façade's pod: restricted, read-only, limited, spread."""
    probe = {"scheme": "HTTP", "port": HEALTH_PORT}
    return {
        "serviceAccountName": args.name,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "facade",
                "image": args.image,
                "imagePullPolicy": "IfNotPresent",
                "command": list(args.command),
                "env": container_env(args),
                "ports": [
                    {"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
                    {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {**probe, "path": "/readyz"}, "periodSeconds": 5},
                "livenessProbe": {
                    "httpGet": {**probe, "path": "/healthz"},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "resources": args.resources.spec(),
                "securityContext": {
                    "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                    {"name": "trust", "mountPath": TRUST_DIR, "readOnly": True},
                    {"name": "crl", "mountPath": CRL_DIR, "readOnly": True},
                    {"name": "resources", "mountPath": RESOURCES_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
                ],
            }
        ],
        "volumes": [
            {"name": "tls", "secret": {"secretName": args.tls_secret, "defaultMode": 0o440}},
            {"name": "trust", "configMap": {"name": args.trust_config_map}},
            {"name": "crl", "configMap": {"name": args.crl_config_map}},
            {"name": "resources", "configMap": {"name": args.resources_config_map}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(args)},
            }
        ],
        "terminationGracePeriodSeconds": 30,
    }


class Facade(pulumi.ComponentResource):
    """ServiceAccount, resources ConfigMap, Deployment, Service, PDB and the entry."""

    service_name: str
    endpoint: pulumi.Output[str]

    def __init__(
        self, name: str, args: FacadeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("knooppunt:facade:Facade", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        common = labels.merged(selector_labels(args), labels.common(args.environment, "facade"))

        def meta(object_name: str, **extra: Any) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels=common, **extra
            )

        k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(args.name),
            automount_service_account_token=False,
            opts=child,
        )
        if args.resource_documents:
            k8s.core.v1.ConfigMap(
                f"{name}-resources",
                metadata=meta(args.resources_config_map),
                data=dict(args.resource_documents),
                opts=child,
            )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(args.name),
            spec=cast(
                Any,
                {  # Kubernetes field names, as in a manifest
                    "replicas": args.replicas,
                    "revisionHistoryLimit": 5,
                    "selector": {"matchLabels": selector_labels(args)},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                    },
                    "template": {"metadata": {"labels": pod_labels(args)}, "spec": pod_spec(args)},
                },
            ),
            opts=child,
        )
        load_balancer = args.entry.kind == "loadBalancer"
        service_spec: dict[str, Any] = {
            "type": "LoadBalancer" if load_balancer else "ClusterIP",
            "selector": selector_labels(args),
            "ports": [
                {
                    "name": "https",
                    "port": SERVICE_PORT,
                    "targetPort": "https",
                    "protocol": "TCP",
                }
            ],
        }
        if load_balancer:
            # Keep the client's address (for logs and NetworkPolicy ipBlocks).
            service_spec["externalTrafficPolicy"] = "Local"
            if args.entry.load_balancer_source_ranges:
                service_spec["loadBalancerSourceRanges"] = list(
                    args.entry.load_balancer_source_ranges
                )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(args.name, annotations=dict(args.entry.annotations) or None),
            spec=cast(Any, service_spec),
            opts=child,
        )
        if args.replicas > 1:  # with one replica a budget would only block node drains
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=meta(args.name),
                spec=cast(
                    Any, {"minAvailable": 1, "selector": {"matchLabels": selector_labels(args)}}
                ),
                opts=child,
            )
        if args.entry.kind == "ingress":
            k8s.networking.v1.Ingress(
                f"{name}-ingress",
                metadata=meta(
                    args.name,
                    annotations={**PASSTHROUGH_ANNOTATIONS, **args.entry.annotations},
                ),
                spec=cast(
                    Any,
                    {
                        "ingressClassName": args.entry.ingress_class,
                        # Pass-through: no `tls` section, the controller must not terminate TLS.
                        "rules": [
                            {
                                "host": args.entry.host,
                                "http": {
                                    "paths": [
                                        {
                                            "path": "/",
                                            "pathType": "Prefix",
                                            "backend": {
                                                "service": {
                                                    "name": args.name,
                                                    "port": {"name": "https"},
                                                }
                                            },
                                        }
                                    ]
                                },
                            }
                        ],
                    },
                ),
                opts=child,
            )
        self.service_name = args.name
        host = args.entry.host
        self.endpoint = pulumi.Output.from_input(args.namespace).apply(
            lambda ns: f"https://{host}" if host else f"https://{args.name}.{ns}.svc:{SERVICE_PORT}"
        )
        self.register_outputs({"service": self.service_name, "endpoint": self.endpoint})


def documents_from_files(paths: Sequence[str], base: str) -> dict[str, str]:
    """ConfigMap data from resource files (key: file name), paths relative to ``base``."""
    data: dict[str, str] = {}
    for item in paths:
        path = (Path(base) / item).resolve()
        if path.name in data:
            raise ValueError(f"two resource files named {path.name}")
        data[path.name] = path.read_text()
    return data
