"""The operator's Helm chart: helm lint, helm template, and what the rendered objects say."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.iac.helm import CHART

RULES = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module")
def default(helm: Any) -> list[dict[str, Any]]:
    return list(helm.template())


@pytest.fixture(scope="module")
def container(default: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = of_kind(default, "Deployment")
    [found] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


def test_lint_strict(helm: Any) -> None:
    result = helm.run("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_lint_strict_with_watched_namespaces(helm: Any, tmp_path: Any) -> None:
    values = helm.values_file({"watchNamespaces": ["a", "b"], "webhook": {"enabled": False}})
    helm.run("lint", "--strict", str(CHART), "--values", str(values))


def test_renders_the_expected_objects(default: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in default)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Secret",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "ValidatingWebhookConfiguration",
            "Lease",
        ]
    )
    for doc in default:
        if doc["kind"] not in (
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration",
        ):
            assert doc["metadata"]["namespace"] == "knooppunt-system", doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "knooppunt-operator"


def test_crds_come_with_the_chart(helm: Any) -> None:
    docs = helm.template(include_crds=True)
    assert {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")} == {
        "knooppunten.knooppunt.nl",
        "sectorconnectors.knooppunt.nl",
        "gemeenten.knooppunt.nl",
    }


def test_two_replicas_with_leader_election(
    default: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    [deployment] = of_kind(default, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e for e in container["env"]}
    assert env["KNOOPPUNT_OPERATOR_LEADER_ELECTION"]["value"] == "true"
    assert (
        env["KNOOPPUNT_OPERATOR_IDENTITY"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    )
    assert (
        env["KNOOPPUNT_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.namespace"
    )
    assert container["command"][:4] == ["kopf", "run", "-m", "knooppunt_operator.main"]
    assert "--all-namespaces" in container["command"]
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    [pdb] = of_kind(default, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_operator_config_env_names_exist(container: dict[str, Any]) -> None:
    """Every KNOOPPUNT_OPERATOR_* variable the chart sets is a field of OperatorConfig."""
    from knooppunt_operator.config import OperatorConfig

    fields = {f"KNOOPPUNT_OPERATOR_{name.upper()}" for name in OperatorConfig.model_fields}
    unknown = {e["name"] for e in container["env"]} - fields
    # The metrics port is requested from the operator (see docs/deploy.md, "Metrics").
    assert unknown <= {"KNOOPPUNT_OPERATOR_METRICS_PORT"}, unknown


def test_restricted_non_root_read_only_with_limits(
    default: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    [deployment] = of_kind(default, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_webhook_service_certificate_and_mount(
    default: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(default, "Service")}
    webhook = services["knooppunt-operator-webhook"]
    assert webhook["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    metrics = services["knooppunt-operator-metrics"]
    assert {p["name"] for p in metrics["spec"]["ports"]} == {"metrics", "health"}

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KNOOPPUNT_OPERATOR_WEBHOOK_SERVICE"] == "knooppunt-operator-webhook"
    cert_dir = env["KNOOPPUNT_OPERATOR_WEBHOOK_CERT_DIR"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {cert_dir}

    [secret] = of_kind(default, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "knooppunt-operator-webhook.knooppunt-system.svc" in names.get_values_for_type(
        x509.DNSName
    )
    assert b"PRIVATE KEY" in data["tls.key"]


def test_rbac_is_the_generated_least_privilege(default: list[dict[str, Any]]) -> None:
    roles = {r["metadata"]["name"]: r["rules"] for r in of_kind(default, "ClusterRole")}
    assert roles == {"knooppunt-operator": RULES["namespaced"]}
    # The chart installs the webhook configuration and the Lease itself: the operator may not
    # touch webhook configurations at all, nor create Leases.
    assert RULES["clusterScoped"] == []
    assert not any(r["apiGroups"] == ["admissionregistration.k8s.io"] for r in RULES["namespaced"])
    [role] = of_kind(default, "Role")
    assert role["rules"] == RULES["operatorNamespace"]
    everything = [*roles.values(), role["rules"]]
    for rules in everything:
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert "*" not in rule["apiGroups"]
    [lease_rule] = [r for r in role["rules"] if "leases" in r["resources"]]
    assert "create" not in lease_rule["verbs"]
    bindings = of_kind(default, "ClusterRoleBinding")
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "knooppunt-operator",
                "namespace": "knooppunt-system",
            }
        ]


def test_watched_namespaces_get_role_bindings_not_cluster_rights(helm: Any) -> None:
    docs = helm.template({"watchNamespaces": ["gemeenten-a", "gemeenten-b"]})
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-watch")]
    assert {b["metadata"]["namespace"] for b in bindings} == {"gemeenten-a", "gemeenten-b"}
    assert all(b["roleRef"]["name"] == "knooppunt-operator" for b in bindings)
    assert not of_kind(docs, "ClusterRoleBinding")
    [config] = of_kind(docs, "ValidatingWebhookConfiguration")
    assert len(config["webhooks"]) == 2
    for webhook in config["webhooks"]:
        assert webhook["namespaceSelector"]["matchExpressions"] == [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["gemeenten-a", "gemeenten-b"],
            }
        ]
    [deployment] = of_kind(docs, "Deployment")
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--namespace=gemeenten-a" in command and "--all-namespaces" not in command


def test_webhook_can_be_switched_off_or_given_a_certificate(helm: Any) -> None:
    docs = helm.template({"webhook": {"enabled": False}})
    assert not of_kind(docs, "Secret")
    assert [s["metadata"]["name"] for s in of_kind(docs, "Service")] == [
        "knooppunt-operator-metrics"
    ]
    [deployment] = of_kind(docs, "Deployment")
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KNOOPPUNT_OPERATOR_WEBHOOK_SERVICE" not in env

    assert not of_kind(docs, "ValidatingWebhookConfiguration")

    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    existing = {"existingSecret": "from-cert-manager", "caBundle": ca}
    docs = helm.template({"webhook": {"enabled": True, "certificate": existing}})
    assert not of_kind(docs, "Secret")
    [deployment] = of_kind(docs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == "from-cert-manager"
    [config] = of_kind(docs, "ValidatingWebhookConfiguration")
    assert all(hook["clientConfig"]["caBundle"] == ca for hook in config["webhooks"])

    # Without a CA to trust the API server would refuse every connector: refused at install,
    # unless cert-manager's cainjector fills it in.
    error = helm.run(
        *helm.template_args(
            {"webhook": {"enabled": True, "certificate": {"existingSecret": "from-cert-manager"}}},
            "knooppunt-system",
            "kp",
            [],
        ),
        check=False,
    ).stderr
    assert "set webhook.certificate.caBundle" in error
    injected = {
        "enabled": True,
        "certificate": {"existingSecret": "from-cert-manager"},
        "annotations": {"cert-manager.io/inject-ca-from": "knooppunt-system/webhook"},
    }
    [config] = of_kind(helm.template({"webhook": injected}), "ValidatingWebhookConfiguration")
    assert all("caBundle" not in hook["clientConfig"] for hook in config["webhooks"])
    assert config["metadata"]["annotations"] == injected["annotations"]


def test_webhook_configuration_is_the_one_kopf_would_register(
    default: list[dict[str, Any]],
) -> None:
    """The chart's ValidatingWebhookConfiguration routes to the operator's handler exactly as
    kopf's managed mode (used outside the chart) would; the CA is the chart's."""
    import kopf
    from knooppunt_operator.config import OperatorConfig
    from knooppunt_operator.main import PREFIX, register
    from kopf._cogs.structs import references
    from kopf._core.engines.admission import build_webhooks

    registry = kopf.OperatorRegistry()
    register(registry, OperatorConfig(webhook_local_port=1))
    [config] = of_kind(default, "ValidatingWebhookConfiguration")
    charts = {hook["name"]: hook for hook in config["webhooks"]}
    service = dict(charts["validate-connector.knooppunt.nl"]["clientConfig"]["service"])
    kopfs = {
        hook["name"]: hook
        for hook in build_webhooks(
            registry._webhooks.get_all_handlers(),
            resources=[
                references.Resource("knooppunt.nl", "v1alpha1", plural, namespaced=True)
                for plural in ("knooppunten", "sectorconnectors")
            ],
            name_suffix=PREFIX,
            client_config={"service": {**service, "path": ""}},
        )
    }
    # Every admission handler the operator registers is routed by the chart, and nothing else.
    assert (
        set(charts)
        == set(kopfs)
        == {
            "validate-knooppunt.knooppunt.nl",
            "validate-connector.knooppunt.nl",
        }
    )
    assert service == {
        "name": "knooppunt-operator-webhook",
        "namespace": "knooppunt-system",
        "port": 443,
        "path": "/validate-connector",
    }
    for name, chart in charts.items():
        kopf_hook = kopfs[name]
        assert chart["clientConfig"]["service"] == kopf_hook["clientConfig"]["service"]
        for rule, expected in zip(chart["rules"], kopf_hook["rules"], strict=True):
            assert {k: v for k, v in rule.items() if k != "scope"} == {
                k: v for k, v in expected.items() if k != "scope"
            }
        assert chart["failurePolicy"] == kopf_hook["failurePolicy"] == "Fail"
        assert chart["sideEffects"] == kopf_hook["sideEffects"]
    chart = charts["validate-connector.knooppunt.nl"]
    [secret] = of_kind(default, "Secret")
    assert chart["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    [deployment] = of_kind(default, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KNOOPPUNT_OPERATOR_WEBHOOK_MANAGED"] == "false"
    assert env["KNOOPPUNT_OPERATOR_LEASE_CREATE"] == "false"
    [lease] = of_kind(default, "Lease")
    assert lease["metadata"]["name"] == env["KNOOPPUNT_OPERATOR_LEASE_NAME"]
    assert "spec" not in lease


def test_tracing_default_reaches_the_operator(helm: Any) -> None:
    """tracing.otlpEndpoint becomes the operator's default for the node pods."""
    from knooppunt_operator.config import OperatorConfig

    [deployment] = of_kind(
        helm.template({"tracing": {"otlpEndpoint": "http://otel-collector.monitoring.svc:4318"}}),
        "Deployment",
    )
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KNOOPPUNT_OPERATOR_OTLP_ENDPOINT"] == "http://otel-collector.monitoring.svc:4318"
    assert "otlp_endpoint" in OperatorConfig.model_fields


def test_image_tag_and_digest(helm: Any) -> None:
    def image(tag: str) -> str:
        [deployment] = of_kind(
            helm.template({"image": {"repository": "r.example/op", "tag": tag}}), "Deployment"
        )
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    digest = "sha256:" + "a" * 64
    assert image("1.2.3") == "r.example/op:1.2.3"
    assert image(f"1.2.3@{digest}") == f"r.example/op:1.2.3@{digest}"
    assert image(digest) == f"r.example/op@{digest}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": "2"}, "/replicaCount"),
        ({"imagee": {}}, "additional properties 'imagee'"),
        (
            {"image": {"repository": "ghcr.io/knooppunt/operator", "tag": "latest tag"}},
            "/image/tag",
        ),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"resources": {"limits": None}}, "missing property 'limits'"),  # null removes it
        (
            {
                "resources": {
                    "requests": {"cpu": "lots", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                }
            },
            "/resources/requests/cpu",
        ),
        ({"logLevel": "trace"}, "/logLevel"),
        ({"operatorOin": "123"}, "/operatorOin"),
        ({"webhook": {"enabled": True, "port": 80}}, "/webhook/port"),
        ({"webhook": {"enabled": True, "failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
        ({"extraEnv": [{"name": "PATH", "value": "/tmp"}]}, "/extraEnv/0/name"),
        ({"tracing": {"otlpEndpoint": "otel-collector:4318"}}, "/tracing/otlpEndpoint"),
    ],
)
def test_bad_values_fail_at_install(helm: Any, values: dict[str, Any], message: str) -> None:
    error = helm.template_error(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error
