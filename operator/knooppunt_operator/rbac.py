"""Least-privilege RBAC for the operator, generated from what the handlers actually use.

:data:`USES` lists every (API group, resource, verbs) the operator's code touches and why;
``python -m knooppunt_operator.rbac [--namespace NS] [--service-account SA]`` prints the
ClusterRole (cluster-wide work), the Role in the operator's namespace (the leader-election
Lease) and their bindings as YAML. The handler scenarios record every request the operator
makes and fail if one is not covered here.

Notes on the verbs: a server-side apply that creates an object needs ``create`` as well as
``patch``; the operator never ``update``\\s (PUT). It lists and watches the kinds it makes so
that its reconciles read from memory (:mod:`knooppunt_operator.cache`); the watches select
``app.kubernetes.io/managed-by=knooppunt-operator`` on the server, but RBAC cannot narrow
``list`` by label, so the role grants ``list/watch`` on Secrets and ConfigMaps as such.
Creating the node's Role (read gemeenten) is allowed because the operator holds those
permissions itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml  # type: ignore[import-untyped,unused-ignore]

from knooppunt_operator import FIELD_MANAGER
from node_runtime.model.meta import GROUP

Scope = Literal["cluster", "operator-namespace"]
APPLY = ("get", "create", "patch")
WATCH = ("list", "watch")


@dataclass(frozen=True)
class Use:
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    scope: Scope = "cluster"
    resource_names: tuple[str, ...] = ()


USES: tuple[Use, ...] = (
    Use(
        GROUP,
        ("knooppunten", "sectorconnectors", "gemeenten"),
        ("get", "list", "watch", "patch"),
        "watch and reconcile the three resources; kopf's finalizer and progress annotations",
    ),
    Use(
        GROUP,
        ("knooppunten/status", "sectorconnectors/status", "gemeenten/status"),
        ("get", "patch"),
        "conditions and observed state, written only when they change",
    ),
    Use(
        "apps",
        ("deployments",),
        (*APPLY, *WATCH),
        "the node's Deployment; its rollout state is watched for the conditions",
    ),
    Use(
        "apps",
        ("controllerrevisions",),
        (*APPLY, *WATCH, "delete"),
        "recorded connector revisions; pruned beyond the history limit",
    ),
    Use(
        "",
        ("configmaps",),
        (*APPLY, *WATCH, "delete"),
        "the resources ConfigMap; connector bundles are read and snapshotted per revision; "
        "the operator's own are watched (label selector) for its cache",
    ),
    Use(
        "",
        ("secrets",),
        (*APPLY, *WATCH, "delete"),
        "node CA, TLS and pseudonym key; gemeente client certificates; provided certificates; "
        "the operator's own are watched (label selector) for its cache",
    ),
    Use(
        "",
        ("services", "serviceaccounts", "persistentvolumeclaims"),
        (*APPLY, *WATCH),
        "the node's Service, ServiceAccount and SQLite volume",
    ),
    Use("policy", ("poddisruptionbudgets",), (*APPLY, *WATCH), "the node's disruption budget"),
    Use("networking.k8s.io", ("networkpolicies",), (*APPLY, *WATCH), "the node's network policy"),
    Use(
        "rbac.authorization.k8s.io",
        ("roles", "rolebindings"),
        (*APPLY, *WATCH),
        "the node's Role: its runtime reads the gemeenten of its namespace",
    ),
    Use("", ("events",), ("create",), "Events about what the operator did"),
    Use(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("create",),
        "kopf creates its managed webhook configurations when absent (the mutating one stays "
        "empty)",
    ),
    Use(
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("get", "patch"),
        "kopf keeps the connector webhook's configuration current",
        resource_names=(GROUP,),
    ),
    Use(
        "coordination.k8s.io",
        ("leases",),
        APPLY,
        "leader election: one active replica",
        scope="operator-namespace",
    ),
)


def rules(scope: Scope) -> list[dict[str, Any]]:
    out = []
    for use in USES:
        if use.scope != scope:
            continue
        rule: dict[str, Any] = {
            "apiGroups": [use.group],
            "resources": list(use.resources),
            "verbs": list(use.verbs),
        }
        if use.resource_names:
            rule["resourceNames"] = list(use.resource_names)
        out.append(rule)
    return out


def allows(verb: str, group: str, resource: str, *, namespaced_in_operator_ns: bool) -> bool:
    """Whether the generated rules allow one request (used by the coverage test)."""
    scopes: list[Scope] = ["cluster"]
    if namespaced_in_operator_ns:
        scopes.append("operator-namespace")
    return any(
        use.group == group and resource in use.resources and verb in use.verbs
        for use in USES
        if use.scope in scopes
    )


def manifests(namespace: str, service_account: str = FIELD_MANAGER) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": FIELD_MANAGER, "app.kubernetes.io/part-of": "knooppunt"}
    subject = [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": FIELD_MANAGER, "labels": labels},
            "rules": rules("cluster"),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": FIELD_MANAGER, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": FIELD_MANAGER,
            },
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": FIELD_MANAGER, "namespace": namespace, "labels": labels},
            "rules": rules("operator-namespace"),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": FIELD_MANAGER, "namespace": namespace, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": FIELD_MANAGER,
            },
            "subjects": subject,
        },
    ]


def render(namespace: str, service_account: str = FIELD_MANAGER) -> str:
    header = "# Generated by `python -m knooppunt_operator.rbac`: the operator's RBAC.\n"
    return header + str(
        yaml.safe_dump_all(manifests(namespace, service_account), sort_keys=False, width=100)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the operator's RBAC manifests.")
    parser.add_argument("--namespace", default="knooppunt-system")
    parser.add_argument("--service-account", default=FIELD_MANAGER)
    args = parser.parse_args(argv)
    print(render(args.namespace, args.service_account), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
