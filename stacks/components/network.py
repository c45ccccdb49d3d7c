"""Default-deny NetworkPolicies in every platform namespace, and the explicit allows.

What may talk to what (everything else is refused, in both directions):

=================  ===========================================  ==========================
from               to                                           port
=================  ===========================================  ==========================
every pod          cluster DNS (kube-system, ``k8s-app=kube-dns``)  53 UDP/TCP
operator           API server (``apiServerCidrs``)              443, 6443
API server         operator admission webhook                   9443
operator           node pods (HTTPS: undelivered-message checks)  8443
façade clients     façade pods (``facadeClientCidrs`` or the    8443
                   ingress controller's namespace)
a gemeente         façade pods (``gemeenteClientCidrs``: one    8443
                   policy per gemeentecode)
façade             node pods                                    8443
sector parties     node pods (``knooppunt.nl/access=sector``    8443
                   pods, ``sectorCidrs``)
node pods          API server (they watch their Gemeenten)      443, 6443
node pods          gemeente push endpoints (``deliveryCidrs``)  443
node pods          PostgreSQL (``databaseCidrs``)               5432
monitoring         metrics / health of operator, façade, nodes  8080 (operator: 9090)
=================  ===========================================  ==========================

The operator adds a per-node policy of its own (same peers); NetworkPolicies are additive, so
these namespace-wide rules are the outer bound. Builders are pure: :func:`policies` returns
the (namespace, name, spec) triples and is tested on its own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from stacks.components import labels

HTTPS_PORT = 8443
HEALTH_PORT = 8080
OPERATOR_METRICS_PORTS = (8080, 9090)  # kopf's health endpoint, the operator's metrics
WEBHOOK_PORT = 9443
API_SERVER_PORTS = (443, 6443)
DELIVERY_PORTS = (443,)
DATABASE_PORTS = (5432,)

Spec = dict[str, Any]


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    environment: str
    operator_namespace: str
    facade_namespace: str
    node_namespaces: tuple[str, ...]
    # namespace name → Input of it (a Namespace output), so that policies wait for it
    namespace_inputs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    api_server_cidrs: tuple[str, ...] = ()
    api_server_ports: tuple[int, ...] = API_SERVER_PORTS
    webhook_source_cidrs: tuple[str, ...] | None = None  # default: api_server_cidrs
    facade_client_cidrs: tuple[str, ...] = ()
    ingress_controller_namespace: str | None = None
    sector_cidrs: tuple[str, ...] = ()
    delivery_cidrs: tuple[str, ...] = ()
    database_cidrs: tuple[str, ...] = ()
    monitoring_namespace: str | None = None
    # gemeentecode → the CIDRs that gemeente calls the façade from (one policy each)
    gemeente_client_cidrs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # the federation's gemeenten: gemeentecode → name (what gemeente_client_cidrs may name)
    gemeenten: Mapping[str, str] = field(default_factory=dict)
    dns_namespace: str = "kube-system"
    dns_pod_labels: Mapping[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})

    def __post_init__(self) -> None:
        if not self.api_server_cidrs:
            raise ValueError("apiServerCidrs is required: the operator and nodes talk to it")
        if not (self.facade_client_cidrs or self.ingress_controller_namespace):
            raise ValueError(
                "the façade needs clients: set facadeClientCidrs or ingressControllerNamespace"
            )
        for key, cidrs in (
            ("apiServerCidrs", self.api_server_cidrs),
            ("webhookSourceCidrs", self.webhook_source_cidrs or ()),
            ("facadeClientCidrs", self.facade_client_cidrs),
            ("sectorCidrs", self.sector_cidrs),
            ("deliveryCidrs", self.delivery_cidrs),
            ("databaseCidrs", self.database_cidrs),
            *((f"gemeenteClientCidrs.{code}", c) for code, c in self.gemeente_client_cidrs.items()),
        ):
            for cidr in cidrs:
                check_cidr(key, cidr)
        for code, cidrs in self.gemeente_client_cidrs.items():
            if code not in self.gemeenten:
                known = ", ".join(f"{c} ({n})" for c, n in sorted(self.gemeenten.items()))
                raise ValueError(
                    f"network.gemeenteClientCidrs: unknown gemeentecode {code!r}; the "
                    f"federation's gemeenten are: {known or 'none (set gemeenten)'}"
                )
            if not cidrs:
                raise ValueError(f"network.gemeenteClientCidrs.{code}: no CIDR given")


GEMEENTECODE = re.compile(r"[0-9]{4}")


def check_cidr(key: str, cidr: str) -> str:
    """A network in CIDR notation with no host bits set (``10.0.0.0/8``, ``2001:db8::/32``)."""
    if not isinstance(cidr, str) or "/" not in cidr:
        raise ValueError(f"network.{key}: {cidr!r} is not a valid CIDR (no prefix length)")
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise ValueError(f"network.{key}: {cidr!r} is not a valid CIDR ({exc})") from None
    return cidr


def check_gemeenten(gemeenten: Mapping[str, str]) -> Mapping[str, str]:
    """gemeentecode (four digits, CBS) → name; codes and names unique."""
    for code in gemeenten:
        if not isinstance(code, str):
            raise ValueError(
                f"gemeenten: gemeentecode {code!r} is a number, not text: quote it in the stack "
                "config ('0599'; a number loses its leading zero)"
            )
        if not GEMEENTECODE.fullmatch(code):
            raise ValueError(f"gemeenten: {code!r} is not a gemeentecode (four digits)")
    names = list(gemeenten.values())
    if len(set(names)) != len(names):
        raise ValueError(f"gemeenten: a name appears twice: {names}")
    return gemeenten


def _ns_selector(*names: str) -> Spec:
    if len(names) == 1:
        return {"matchLabels": {labels.NAMESPACE_NAME: names[0]}}
    return {
        "matchExpressions": [
            {"key": labels.NAMESPACE_NAME, "operator": "In", "values": list(names)}
        ]
    }


def _ports(ports: Sequence[int], protocol: str = "TCP") -> list[Spec]:
    return [{"protocol": protocol, "port": p} for p in ports]


def _cidrs(cidrs: Sequence[str]) -> list[Spec]:
    return [{"ipBlock": {"cidr": c}} for c in cidrs]


def _pods(app: str) -> Spec:
    return {"matchLabels": {labels.NAME: app}}


def default_deny() -> Spec:
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def allow_dns(args: NetworkPoliciesArgs) -> Spec:
    return {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": _ns_selector(args.dns_namespace),
                        "podSelector": {"matchLabels": dict(args.dns_pod_labels)},
                    }
                ],
                "ports": _ports([53], "UDP") + _ports([53], "TCP"),
            }
        ],
    }


def _egress(app: str, peers: list[Spec], ports: Sequence[int]) -> Spec:
    return {
        "podSelector": _pods(app),
        "policyTypes": ["Egress"],
        "egress": [{"to": peers, "ports": _ports(ports)}],
    }


def _ingress(pods: Spec, peers: list[Spec], ports: Sequence[int]) -> Spec:
    return {
        "podSelector": pods,
        "policyTypes": ["Ingress"],
        "ingress": [{"from": peers, "ports": _ports(ports)}],
    }


def _monitoring(
    args: NetworkPoliciesArgs, app: str, ports: Sequence[int] = (HEALTH_PORT,)
) -> Spec | None:
    if not args.monitoring_namespace:
        return None
    peer = {
        "namespaceSelector": _ns_selector(args.monitoring_namespace),
        "podSelector": {"matchLabels": {labels.ACCESS: labels.ACCESS_MONITORING}},
    }
    return _ingress(_pods(app), [peer], ports)


def policies(args: NetworkPoliciesArgs) -> list[tuple[str, str, Spec]]:
    """Every policy as (namespace, name, spec)."""
    out: list[tuple[str, str, Spec]] = []
    nodes_peer = {
        "namespaceSelector": _ns_selector(*args.node_namespaces),
        "podSelector": _pods(labels.NODE_APP),
    }
    api = _cidrs(args.api_server_cidrs)
    webhook_sources = args.webhook_source_cidrs
    if webhook_sources is None:
        webhook_sources = args.api_server_cidrs

    def add(ns: str, name: str, spec: Spec | None) -> None:
        if spec is not None:
            out.append((ns, name, spec))

    for ns in (args.operator_namespace, args.facade_namespace, *args.node_namespaces):
        add(ns, "default-deny-all", default_deny())
        add(ns, "allow-dns", allow_dns(args))

    op = args.operator_namespace
    add(op, "operator-to-api-server", _egress(labels.OPERATOR_APP, api, args.api_server_ports))
    add(op, "operator-to-nodes", _egress(labels.OPERATOR_APP, [nodes_peer], [HTTPS_PORT]))
    add(
        op,
        "operator-webhook-from-api-server",
        _ingress(_pods(labels.OPERATOR_APP), _cidrs(webhook_sources), [WEBHOOK_PORT]),
    )
    add(
        op,
        "operator-from-monitoring",
        _monitoring(args, labels.OPERATOR_APP, OPERATOR_METRICS_PORTS),
    )

    fc = args.facade_namespace
    clients = _cidrs(args.facade_client_cidrs)
    if args.ingress_controller_namespace:
        clients.append({"namespaceSelector": _ns_selector(args.ingress_controller_namespace)})
    facade_pods = {"matchLabels": {labels.ACCESS: labels.ACCESS_FACADE}}
    add(fc, "facade-from-clients", _ingress(facade_pods, clients, [HTTPS_PORT]))
    add(
        fc,
        "facade-to-nodes",
        {
            "podSelector": facade_pods,
            "policyTypes": ["Egress"],
            "egress": [{"to": [nodes_peer], "ports": _ports([HTTPS_PORT])}],
        },
    )
    add(fc, "facade-from-monitoring", _monitoring(args, labels.FACADE_APP))
    for code, cidrs in sorted(args.gemeente_client_cidrs.items()):
        add(fc, f"facade-from-gemeente-{code}", _ingress(facade_pods, _cidrs(cidrs), [HTTPS_PORT]))

    facade_peer = {
        "namespaceSelector": _ns_selector(args.facade_namespace),
        "podSelector": {"matchLabels": {labels.ACCESS: labels.ACCESS_FACADE}},
    }
    operator_peer = {
        "namespaceSelector": _ns_selector(args.operator_namespace),
        "podSelector": _pods(labels.OPERATOR_APP),
    }
    sector_peers: list[Spec] = [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {labels.ACCESS: labels.ACCESS_SECTOR}},
        },
        *_cidrs(args.sector_cidrs),
    ]
    node_pods = _pods(labels.NODE_APP)
    for ns in args.node_namespaces:
        add(ns, "nodes-from-facade", _ingress(node_pods, [facade_peer], [HTTPS_PORT]))
        add(ns, "nodes-from-operator", _ingress(node_pods, [operator_peer], [HTTPS_PORT]))
        add(ns, "nodes-from-sector", _ingress(node_pods, sector_peers, [HTTPS_PORT]))
        add(ns, "nodes-from-monitoring", _monitoring(args, labels.NODE_APP))
        add(ns, "nodes-to-api-server", _egress(labels.NODE_APP, api, args.api_server_ports))
        if args.delivery_cidrs:
            add(
                ns,
                "nodes-to-delivery-endpoints",
                _egress(labels.NODE_APP, _cidrs(args.delivery_cidrs), DELIVERY_PORTS),
            )
        if args.database_cidrs:
            add(
                ns,
                "nodes-to-database",
                _egress(labels.NODE_APP, _cidrs(args.database_cidrs), DATABASE_PORTS),
            )
    return out


# A policy edited behind Pulumi's back (``kubectl edit``: another field manager now owns its
# rules) is put back by the next ``pulumi up``: the declared policy wins, the provider forces
# its server-side apply instead of stopping at the field conflict.
PATCH_FORCE = {"pulumi.com/patchForce": "true"}


class NetworkPolicies(pulumi.ComponentResource):
    """The policies of :func:`policies` as NetworkPolicy objects."""

    names: list[str]

    def __init__(
        self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("knooppunt:platform:NetworkPolicies", name, None, opts)
        meta_labels = labels.common(args.environment, "network")
        self.names = []
        for ns, policy, spec in policies(args):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{ns}-{policy}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=policy,
                    namespace=args.namespace_inputs.get(ns, ns),
                    labels=meta_labels,
                    annotations=PATCH_FORCE,
                ),
                spec=cast(Any, spec),  # Kubernetes field names, as in a manifest
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.names.append(f"{ns}/{policy}")
        self.register_outputs({"policies": self.names})
