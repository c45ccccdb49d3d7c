"""The NetworkPolicy builders on their own (pure functions)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from stacks.components import network
from stacks.components.network import NetworkPoliciesArgs, policies


def args(**extra: object) -> NetworkPoliciesArgs:
    base: dict[str, object] = dict(
        environment="test",
        operator_namespace="op",
        facade_namespace="fc",
        node_namespaces=("n1", "n2"),
        api_server_cidrs=("10.0.0.1/32",),
        facade_client_cidrs=("192.0.2.0/24",),
    )
    base.update(extra)
    return NetworkPoliciesArgs(**base)  # type: ignore[arg-type]


def test_required_settings_are_refused_when_missing() -> None:
    with pytest.raises(ValueError, match="apiServerCidrs"):
        args(api_server_cidrs=())
    with pytest.raises(ValueError, match="façade needs clients"):
        args(facade_client_cidrs=())


def test_each_namespace_gets_deny_and_dns() -> None:
    got = {(ns, name) for ns, name, _ in policies(args())}
    for ns in ("op", "fc", "n1", "n2"):
        assert (ns, "default-deny-all") in got
        assert (ns, "allow-dns") in got


def test_dns_is_only_the_cluster_dns_on_port_53() -> None:
    [spec] = [s for ns, n, s in policies(args()) if ns == "op" and n == "allow-dns"]
    [rule] = spec["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("UDP", 53), ("TCP", 53)}


def test_optional_allows_appear_only_when_configured() -> None:
    names = {n for _, n, _ in policies(args())}
    assert not names & {
        "nodes-to-delivery-endpoints",
        "nodes-to-database",
        "operator-from-monitoring",
        "nodes-from-monitoring",
    }
    names = {
        n
        for _, n, _ in policies(
            args(
                delivery_cidrs=("198.51.100.0/24",),
                database_cidrs=("10.1.0.5/32",),
                monitoring_namespace="mon",
            )
        )
    }
    assert {
        "nodes-to-delivery-endpoints",
        "nodes-to-database",
        "operator-from-monitoring",
        "facade-from-monitoring",
        "nodes-from-monitoring",
    } <= names


def test_webhook_sources_default_to_the_api_server() -> None:
    [spec] = [s for _, n, s in policies(args()) if n == "operator-webhook-from-api-server"]
    assert spec["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    [spec] = [
        s
        for _, n, s in policies(args(webhook_source_cidrs=("10.9.0.0/16",)))
        if n == "operator-webhook-from-api-server"
    ]
    assert spec["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.9.0.0/16"}}]


def test_nodes_peer_spans_all_node_namespaces() -> None:
    [spec] = [s for ns, n, s in policies(args()) if n == "facade-to-nodes"]
    selector = spec["egress"][0]["to"][0]["namespaceSelector"]
    assert selector == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["n1", "n2"]}
        ]
    }


def test_ingress_controller_namespace_can_reach_the_facade() -> None:
    [spec] = [
        s
        for _, n, s in policies(
            args(facade_client_cidrs=(), ingress_controller_namespace="ingress")
        )
        if n == "facade-from-clients"
    ]
    assert spec["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    ]
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": network.HTTPS_PORT}]


def test_one_policy_per_gemeente_admits_its_ranges_to_the_facade() -> None:
    got = args(
        gemeente_client_cidrs={"0363": ("192.0.2.0/26",), "0599": ("198.51.100.0/24",)},
        gemeenten={"0363": "gemeente-amsterdam", "0599": "gemeente-rotterdam"},
    )
    specs = {(ns, name): spec for ns, name, spec in network.policies(got)}
    spec = specs[("fc", "facade-from-gemeente-0599")]
    assert spec["ingress"][0]["from"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": network.HTTPS_PORT}]
    assert spec["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "facade_client_cidrs",
            ("10.0.0.0/33",),
            "facadeClientCidrs: '10.0.0.0/33' is not a valid",
        ),
        ("api_server_cidrs", ("10.0.0.1/8",), "apiServerCidrs: '10.0.0.1/8' is not a valid CIDR"),
        ("delivery_cidrs", ("10.0.0.1",), "deliveryCidrs: '10.0.0.1' is not a valid CIDR"),
        ("gemeente_client_cidrs", {"0363": ("300.1.1.0/24",)}, "gemeenteClientCidrs.0363"),
        ("gemeente_client_cidrs", {"9999": ("10.1.0.0/16",)}, "unknown gemeentecode '9999'"),
    ],
)
def test_invalid_cidrs_and_unknown_gemeenten_are_refused(
    field: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        args(**{field: value, "gemeenten": {"0363": "gemeente-amsterdam"}})


def test_gemeentecodes_have_four_digits() -> None:
    with pytest.raises(ValueError, match="'363' is not a gemeentecode"):
        network.check_gemeenten({"363": "gemeente-amsterdam"})
    # An unquoted 0599 in the stack's YAML reaches the program as the number 599.
    with pytest.raises(ValueError, match="gemeentecode 599 is a number, not text: quote it"):
        network.check_gemeenten({599: "gemeente-rotterdam"})  # type: ignore[dict-item]
