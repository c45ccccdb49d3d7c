"""RBAC generated from a declared list of what the handlers use (and checked against use)."""

from __future__ import annotations

import subprocess
import sys

import kopf
import yaml
from knooppunt_operator import main, rbac
from knooppunt_operator.builders import node, revisions, secrets

from tests.operator.harness import fast_config


def test_manifests() -> None:
    cluster_role, binding, role, role_binding = rbac.manifests("knooppunt-system")
    assert cluster_role["kind"] == "ClusterRole" and cluster_role["metadata"]["name"] == (
        "knooppunt-operator"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "knooppunt-operator", "namespace": "knooppunt-system"}
    ]
    assert role["metadata"]["namespace"] == "knooppunt-system"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "patch"],
        }
    ]
    assert role_binding["roleRef"]["name"] == "knooppunt-operator"
    verbs = {v for rule in cluster_role["rules"] for v in rule["verbs"]}
    assert "update" not in verbs and "*" not in verbs and "escalate" not in verbs
    secret_rules = [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "create", "patch", "list", "watch", "delete"],
        }
    ]
    webhook = [r for r in cluster_role["rules"] if r.get("resourceNames")]
    assert webhook == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
            "verbs": ["get", "patch"],
            "resourceNames": ["knooppunt.nl"],
        }
    ]


def test_every_kind_a_builder_makes_can_be_applied() -> None:
    kinds = {
        ("", "serviceaccounts"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "configmaps"),
        ("", "persistentvolumeclaims"),
        ("apps", "deployments"),
        ("", "services"),
        ("policy", "poddisruptionbudgets"),
        ("networking.k8s.io", "networkpolicies"),
        ("", "secrets"),
        ("apps", "controllerrevisions"),
    }
    assert node and revisions and secrets  # the builders whose output these are
    for group, resource in kinds:
        for verb in ("get", "create", "patch"):
            assert rbac.allows(verb, group, resource, namespaced_in_operator_ns=False), (
                group,
                resource,
                verb,
            )


def test_the_node_role_grants_only_what_the_operator_holds() -> None:
    """Creating a Role needs no 'escalate' when the operator holds the same permissions."""
    for verb in ("get", "list", "watch"):
        assert rbac.allows(verb, "knooppunt.nl", "gemeenten", namespaced_in_operator_ns=False)


def test_cli_prints_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "knooppunt_operator.rbac", "--namespace", "ops"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    assert docs[2]["metadata"]["namespace"] == "ops"


def test_handlers_registered_and_the_webhook_only_with_a_server() -> None:
    registry = kopf.OperatorRegistry()
    main.register(registry, fast_config())
    # kopf only watches: event handlers, no change handlers that would keep state on objects.
    assert registry._changing.get_all_handlers() == []
    assert registry._spawning.get_all_handlers() == []
    ids = {h.id for h in registry._watching.get_all_handlers()}
    assert ids == {"knooppunt-event", "connector-event", "gemeente-event", "deployment-event"}
    assert registry._webhooks.get_all_handlers() == []
    with_webhook = kopf.OperatorRegistry()
    main.register(with_webhook, fast_config(webhook_local_port=9443))
    assert sorted(h.id for h in with_webhook._webhooks.get_all_handlers()) == [
        "validate-connector",
        "validate-knooppunt",
    ]


def test_the_operator_watches_only_its_own_secrets_and_config_maps() -> None:
    """list/watch on Secrets cannot be narrowed by RBAC; the watches select the operator's
    own objects on the server (label selector), so no other Secret reaches the operator."""
    import kopf
    from knooppunt_operator import cache, main
    from knooppunt_operator.config import OperatorConfig
    from kopf._cogs.structs.references import Resource

    settings = kopf.OperatorSettings()
    main.configure(settings, OperatorConfig())
    for group, plural in (("", "secrets"), ("", "configmaps"), ("apps", "deployments")):
        selectors = settings.watching.label_selectors.collect(Resource(group, "v1", plural))
        assert list(selectors) == ["app.kubernetes.io/managed-by=knooppunt-operator"]
    assert not list(
        settings.watching.label_selectors.collect(Resource("knooppunt.nl", "v1alpha1", "gemeenten"))
    )
    assert {w.kind.plural for w in cache.WATCHED if not w.managed_only} == {
        "knooppunten",
        "sectorconnectors",
        "gemeenten",
    }
