"""Builders are pure: assert the exact objects they return for a known resource."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from knooppunt_operator.builders import meta, node, revisions, secrets
from knooppunt_operator.builders.revisions import ConnectorRevision
from knooppunt_operator.config import OperatorConfig

from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt

NS = "zorg"
OWNER = {
    "apiVersion": "knooppunt.nl/v1alpha1",
    "kind": "Knooppunt",
    "name": "kp",
    "uid": "uid-kp",
    "controller": True,
    "blockOwnerDeletion": True,
}
SELECTOR = {"app.kubernetes.io/name": "knooppunt", "app.kubernetes.io/instance": "kp"}
LABELS = {
    **SELECTOR,
    "app.kubernetes.io/component": "runtime",
    "app.kubernetes.io/part-of": "knooppunt",
    "app.kubernetes.io/managed-by": "knooppunt-operator",
    "knooppunt.nl/knooppunt": "kp",
}


def metadata(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": NS, "labels": labels or LABELS, "ownerReferences": [OWNER]}


def make_kp(**spec: Any) -> Knooppunt:
    return Knooppunt.model_validate(
        {
            "apiVersion": "knooppunt.nl/v1alpha1",
            "kind": "Knooppunt",
            "metadata": {
                "name": "kp",
                "namespace": NS,
                "uid": "uid-kp",
                "generation": 3,
                "labels": {"team": "zorg"},
            },
            "spec": {"displayName": "Knooppunt Zorg", "connectors": [{"name": "iwmo-2-1"}], **spec},
        }
    )


CONNECTOR_DOC = {
    "apiVersion": "knooppunt.nl/v1alpha1",
    "kind": "SectorConnector",
    "metadata": {"name": "iwmo-2-1"},
    "spec": {
        "standard": "iWmo",
        "standardVersion": "2.1",
        "revision": 2,
        "bundle": {"configMap": "iwmo-bundle"},
    },
}
REVISION = ConnectorRevision(
    "iwmo-2-1", 2, CONNECTOR_DOC, "iwmo-2-1-bundle-r2", ("retour__wmo306.xsl", "wmo305.xsd")
)


@pytest.fixture()
def config() -> OperatorConfig:
    return OperatorConfig(namespace="knooppunt-system")


def test_service_account_role_and_binding() -> None:
    kp = make_kp()
    assert node.service_account(kp) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata("kp"),
        "automountServiceAccountToken": False,
    }
    assert node.role(kp) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata("kp-runtime"),
        "rules": [
            {
                "apiGroups": ["knooppunt.nl"],
                "resources": ["gemeenten"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {
                "apiGroups": ["knooppunt.nl"],
                "resources": ["sectorconnectors/status"],
                "verbs": ["patch"],
            },
        ],
    }
    assert node.role_binding(kp) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata("kp-runtime"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kp-runtime"},
        "subjects": [{"kind": "ServiceAccount", "name": "kp", "namespace": NS}],
    }


def test_resources_config_map_holds_knooppunt_and_pinned_connectors() -> None:
    kp = make_kp(replicas=3, security={"administrators": ["00000001999000000001"]})
    cm = node.resources_config_map(kp, [REVISION], operator_oin="00000000000000000001")
    assert cm == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("kp-resources"),
        "data": {
            "knooppunt.yaml": yaml.safe_dump(
                {
                    "apiVersion": "knooppunt.nl/v1alpha1",
                    "kind": "Knooppunt",
                    "metadata": {"name": "kp", "labels": {"team": "zorg"}},
                    "spec": {
                        "displayName": "Knooppunt Zorg",
                        "connectors": [{"name": "iwmo-2-1"}],
                        "security": {
                            "administrators": ["00000001999000000001", "00000000000000000001"]
                        },
                    },
                },
                sort_keys=False,
                allow_unicode=True,
                width=100,
            ),
            "connector-iwmo-2-1.yaml": yaml.safe_dump(
                CONNECTOR_DOC, sort_keys=False, allow_unicode=True, width=100
            ),
        },
    }


def test_config_hash_ignores_replicas_but_not_connector_revisions() -> None:
    one = node.resources_data(make_kp(replicas=1), [REVISION], operator_oin="0" * 20)
    three = node.resources_data(make_kp(replicas=3), [REVISION], operator_oin="0" * 20)
    assert node.config_hash(one) == node.config_hash(three)
    newer = ConnectorRevision(
        "iwmo-2-1",
        3,
        {
            **CONNECTOR_DOC,
            "spec": {**CONNECTOR_DOC["spec"], "revision": 3, "standardVersion": "2.2"},
        },
    )
    changed = node.resources_data(make_kp(replicas=1), [newer], operator_oin="0" * 20)
    assert node.config_hash(changed) != node.config_hash(one)


def test_pod_template_and_deployment_postgresql(config: OperatorConfig) -> None:
    kp = make_kp(
        replicas=3,
        image="registry.example/knooppunt:1.2.3",
        storage={"backend": "postgresql", "postgresqlDsnSecret": {"name": "pg", "key": "dsn"}},
    )
    template = node.pod_template(
        kp,
        config_hash="abc",
        connectors=[REVISION],
        tls_secret="kp-tls",
        tls_managed=True,
        config=config,
    )
    probe = {
        "httpGet": {"path": "/healthz", "port": "metrics", "scheme": "HTTP"},
        "timeoutSeconds": 2,
    }
    assert template == {
        "metadata": {"labels": LABELS, "annotations": {"knooppunt.nl/config-hash": "abc"}},
        "spec": {
            "serviceAccountName": "kp",
            "automountServiceAccountToken": True,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": SELECTOR},
                    "matchLabelKeys": ["pod-template-hash"],
                },
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": SELECTOR},
                    "matchLabelKeys": ["pod-template-hash"],
                },
            ],
            "containers": [
                {
                    "name": "knooppunt",
                    "image": "registry.example/knooppunt:1.2.3",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["knooppunt", "serve"],
                    "env": [
                        {"name": "KNOOPPUNT_NODE", "value": "kp"},
                        {"name": "KNOOPPUNT_NODE_UID", "value": "uid-kp"},
                        {
                            "name": "KNOOPPUNT_NAMESPACE",
                            "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
                            },
                        },
                        {"name": "KNOOPPUNT_RESOURCES", "value": '["/etc/knooppunt/resources"]'},
                        {"name": "KNOOPPUNT_GEMEENTEN_SOURCE", "value": "kubernetes"},
                        {"name": "KNOOPPUNT_DATA_DIR", "value": "/var/lib/knooppunt"},
                        {"name": "KNOOPPUNT_HOST", "value": "0.0.0.0"},
                        {"name": "KNOOPPUNT_PORT", "value": "8443"},
                        {"name": "KNOOPPUNT_HEALTH_PORT", "value": "8080"},
                        {"name": "KNOOPPUNT_TLS_CERT", "value": "/etc/knooppunt/tls/tls.crt"},
                        {"name": "KNOOPPUNT_TLS_KEY", "value": "/etc/knooppunt/tls/tls.key"},
                        {"name": "KNOOPPUNT_TLS_TRUST", "value": "/etc/knooppunt/tls/ca.crt"},
                        {"name": "KNOOPPUNT_TLS_CRL", "value": "/etc/knooppunt/tls/crl.pem"},
                        {
                            "name": "KNOOPPUNT_TLS_ISSUERS",
                            "value": "/etc/knooppunt/tls/issuers.json",
                        },
                        {
                            "name": "KNOOPPUNT_PSEUDONYM_KEY_FILE",
                            "value": "/etc/knooppunt/pseudonym/key",
                        },
                        {"name": "KNOOPPUNT_CONFIG_MAP_ROOT", "value": "/etc/knooppunt/bundles"},
                        {
                            "name": "KNOOPPUNT_SHADOW_CONFIG_MAP_ROOT",
                            "value": "/etc/knooppunt/shadow-bundles",
                        },
                        {"name": "KNOOPPUNT_DELIVERY_WORKER", "value": "process"},
                        {
                            "name": "KNOOPPUNT_DATABASE_URL",
                            "valueFrom": {"secretKeyRef": {"name": "pg", "key": "dsn"}},
                        },
                    ],
                    "ports": [
                        {"name": "https", "containerPort": 8443, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
                    ],
                    "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 90},
                    "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                    "readinessProbe": {
                        **probe,
                        "httpGet": {**probe["httpGet"], "path": "/readyz"},
                        "periodSeconds": 5,
                        "failureThreshold": 2,
                    },
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "2", "memory": "768Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": [
                        {
                            "name": "resources",
                            "mountPath": "/etc/knooppunt/resources",
                            "readOnly": True,
                        },
                        {"name": "tls", "mountPath": "/etc/knooppunt/tls", "readOnly": True},
                        {
                            "name": "pseudonym",
                            "mountPath": "/etc/knooppunt/pseudonym",
                            "readOnly": True,
                        },
                        {"name": "data", "mountPath": "/var/lib/knooppunt"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {
                            "name": "bundle-f54ef6afa0",
                            "mountPath": "/etc/knooppunt/bundles/iwmo-2-1",
                            "readOnly": True,
                        },
                    ],
                }
            ],
            "volumes": [
                {"name": "resources", "configMap": {"name": "kp-resources"}},
                {"name": "tls", "secret": {"secretName": "kp-tls", "defaultMode": 0o440}},
                {
                    "name": "pseudonym",
                    "secret": {"secretName": "kp-pseudonym", "defaultMode": 0o440},
                },
                {"name": "data", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                {
                    "name": "bundle-f54ef6afa0",
                    "configMap": {
                        "name": "iwmo-2-1-bundle-r2",
                        "items": [
                            {"key": "retour__wmo306.xsl", "path": "retour/wmo306.xsl"},
                            {"key": "wmo305.xsd", "path": "wmo305.xsd"},
                        ],
                    },
                },
            ],
        },
    }
    assert node.deployment(kp, template=template, config=config) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("kp"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": SELECTOR},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 600,
            "template": template,
        },
    }


def test_sqlite_node_runs_one_replica_on_its_volume(config: OperatorConfig) -> None:
    kp = make_kp(replicas=2)
    template = node.pod_template(
        kp, config_hash="h", connectors=[], tls_secret="kp-tls", tls_managed=True, config=config
    )
    assert template["spec"]["volumes"][3] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "kp-data"},
    }
    deployment = node.deployment(kp, template=template, config=config)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert node.data_volume_claim(kp, size="2Gi") == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata("kp-data"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    assert (
        node.data_volume_claim(
            make_kp(
                storage={
                    "backend": "postgresql",
                    "postgresqlDsnSecret": {"name": "pg", "key": "dsn"},
                }
            ),
            size="2Gi",
        )
        is None
    )


def test_provided_tls_secret_is_mounted_with_crl_and_issuer_policy(config: OperatorConfig) -> None:
    kp = make_kp(security={"tlsSecret": "pkioverheid"})
    template = node.pod_template(
        kp,
        config_hash="h",
        connectors=[],
        tls_secret="pkioverheid",
        tls_managed=False,
        config=config,
    )
    env = {e["name"] for e in template["spec"]["containers"][0]["env"]}
    assert {"KNOOPPUNT_TLS_CRL", "KNOOPPUNT_TLS_ISSUERS"} <= env  # fail-closed: always a CRL
    assert template["spec"]["volumes"][1]["secret"]["secretName"] == "pkioverheid"


def test_otlp_endpoint_from_the_spec_or_the_operator_default(config: OperatorConfig) -> None:
    """spec.tracing.otlpEndpoint wins; the operator's setting is the default; else none."""

    def endpoint(kp: Knooppunt, cfg: OperatorConfig) -> str | None:
        template = node.pod_template(
            kp, config_hash="h", connectors=[], tls_secret="kp-tls", tls_managed=True, config=cfg
        )
        env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
        return env.get("OTEL_EXPORTER_OTLP_ENDPOINT")

    default = config.model_copy(update={"otlp_endpoint": "http://collector.monitoring:4318"})
    own = make_kp(tracing={"otlpEndpoint": "https://traces.gemeente.example"})
    assert endpoint(make_kp(), config) is None
    assert endpoint(make_kp(), default) == "http://collector.monitoring:4318"
    assert endpoint(own, config) == "https://traces.gemeente.example"
    assert endpoint(own, default) == "https://traces.gemeente.example"
    with pytest.raises(ValueError, match="otlpEndpoint"):
        make_kp(tracing={"otlpEndpoint": "collector:4318"})


def test_service_pdb_and_network_policy() -> None:
    kp = make_kp()
    assert node.service(kp) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("kp"),
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [
                {"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"},
                {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    assert node.pod_disruption_budget(kp) == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata("kp"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": SELECTOR},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    assert node.network_policy(kp, operator_namespace="knooppunt-system") == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata("kp"),
        "spec": {
            "podSelector": {"matchLabels": SELECTOR},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {
                                "matchExpressions": [
                                    {
                                        "key": "knooppunt.nl/access",
                                        "operator": "In",
                                        "values": ["facade", "sector"],
                                    }
                                ]
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 8443}],
                },
                {
                    "from": [
                        {
                            "namespaceSelector": {},
                            "podSelector": {"matchLabels": {"knooppunt.nl/access": "monitoring"}},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 8080}],
                },
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "knooppunt-system"}
                            },
                            "podSelector": {
                                "matchLabels": {"app.kubernetes.io/name": "knooppunt-operator"}
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 8443}],
                },
            ],
        },
    }


def test_secrets() -> None:
    kp = make_kp()
    assert secrets.ca_secret(kp, cert_pem=b"CERT", key_pem=b"KEY", revoked="[]") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata("kp-ca", {**LABELS, "app.kubernetes.io/component": "ca"}),
        "type": "Opaque",
        "data": {"ca.crt": "Q0VSVA==", "ca.key": "S0VZ", "revoked.json": "W10="},
    }
    assert secrets.tls_secret(kp, chain_pem=b"C", key_pem=b"K", trust_pem=b"T", crl_pem=b"R") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata("kp-tls", {**LABELS, "app.kubernetes.io/component": "tls"}),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Qw==", "tls.key": "Sw==", "ca.crt": "VA==", "crl.pem": "Ug=="},
    }
    assert secrets.pseudonym_secret(kp, key_hex="ab" * 32)["data"] == {
        "key": secrets.b64("ab" * 32)
    }
    gemeente = Gemeente.model_validate(
        {
            "apiVersion": "knooppunt.nl/v1alpha1",
            "kind": "Gemeente",
            "metadata": {"name": "gemeente-utrecht", "namespace": NS, "uid": "uid-g"},
            "spec": {
                "gemeentecode": "0344",
                "oin": "00000001999000344000",
                "displayName": "Gemeente Utrecht",
            },
        }
    )
    assert secrets.client_tls_secret(
        gemeente, node="kp", chain_pem=b"C", key_pem=b"K", ca_pem=b"A"
    ) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "gemeente-utrecht-client-tls",
            "namespace": NS,
            "labels": {
                "app.kubernetes.io/part-of": "knooppunt",
                "app.kubernetes.io/managed-by": "knooppunt-operator",
                "app.kubernetes.io/component": "client-certificate",
                "knooppunt.nl/gemeente": "gemeente-utrecht",
                "knooppunt.nl/knooppunt": "kp",
            },
            "ownerReferences": [
                {
                    "apiVersion": "knooppunt.nl/v1alpha1",
                    "kind": "Gemeente",
                    "name": "gemeente-utrecht",
                    "uid": "uid-g",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Qw==", "tls.key": "Sw==", "ca.crt": "QQ=="},
    }


def test_connector_revision_and_bundle_snapshot() -> None:
    connector = {
        **CONNECTOR_DOC,
        "metadata": {
            "name": "iwmo-2-1",
            "namespace": NS,
            "uid": "uid-c",
            "generation": 4,
            "resourceVersion": "77",
            "labels": {"knooppunt.nl/standard": "iwmo"},
        },
        "status": {"revision": 1},
    }
    owner = {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "SectorConnector",
        "name": "iwmo-2-1",
        "uid": "uid-c",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = {
        "app.kubernetes.io/part-of": "knooppunt",
        "app.kubernetes.io/managed-by": "knooppunt-operator",
        "knooppunt.nl/connector": "iwmo-2-1",
        "knooppunt.nl/revision": "2",
    }
    source = {"data": {"wmo305.xsd": "<xs:schema/>"}, "binaryData": {"logo.png": "AAEC"}}
    assert revisions.bundle_snapshot(connector, source) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "iwmo-2-1-bundle-r2",
            "namespace": NS,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "immutable": True,
        "data": {"wmo305.xsd": "<xs:schema/>"},
        "binaryData": {"logo.png": "AAEC"},
    }
    record = revisions.controller_revision(
        connector,
        bundle_config_map="iwmo-2-1-bundle-r2",
        bundle_keys=revisions.bundle_keys_of(source),
    )
    assert record == {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "iwmo-2-1-r2",
            "namespace": NS,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "revision": 2,
        "data": {
            "connector": {
                "apiVersion": "knooppunt.nl/v1alpha1",
                "kind": "SectorConnector",
                "metadata": {"name": "iwmo-2-1", "labels": {"knooppunt.nl/standard": "iwmo"}},
                "spec": CONNECTOR_DOC["spec"],
            },
            "bundle": {"configMap": "iwmo-2-1-bundle-r2", "keys": ["logo.png", "wmo305.xsd"]},
        },
    }
    parsed = revisions.parse_controller_revision(json.loads(json.dumps(record)))
    assert parsed == ConnectorRevision(
        "iwmo-2-1", 2, {}, "iwmo-2-1-bundle-r2", ("logo.png", "wmo305.xsd")
    )
    assert parsed.standard_version == "2.1"
    assert revisions.same_content(parsed, connector)


def test_a_shadow_bundle_is_snapshotted_recorded_and_mounted_beside_the_live_one(
    config: OperatorConfig,
) -> None:
    """spec.shadow.bundle.configMap travels as the live bundle does: an immutable snapshot per
    revision, named in the ControllerRevision, mounted under /etc/knooppunt/shadow-bundles."""
    spec = {
        **CONNECTOR_DOC["spec"],  # type: ignore[dict-item]
        "shadow": {
            "standardVersion": "2.2",
            "bundle": {"configMap": "iwmo-2-2-bundle"},
            "messages": [],
        },
    }
    connector = {
        **CONNECTOR_DOC,
        "metadata": {"name": "iwmo-2-1", "namespace": NS, "uid": "uid-c"},
        "spec": spec,
    }
    assert revisions.shadow_bundle_config_map_name(connector) == "iwmo-2-2-bundle"
    assert revisions.shadow_bundle_config_map_name(CONNECTOR_DOC) is None
    source = {"data": {"wmo305.xsd": "<xs:schema/>", "retour__wmo306.xsl": "<xsl/>"}}
    snapshot = revisions.bundle_snapshot(connector, source, shadow=True)
    assert snapshot["metadata"]["name"] == "iwmo-2-1-shadow-bundle-r2"
    assert snapshot["immutable"] is True and snapshot["data"] == source["data"]
    assert snapshot["metadata"]["labels"]["knooppunt.nl/revision"] == "2"
    record = revisions.controller_revision(
        connector,
        bundle_config_map="iwmo-2-1-bundle-r2",
        bundle_keys=("wmo305.xsd",),
        shadow_bundle_config_map="iwmo-2-1-shadow-bundle-r2",
        shadow_bundle_keys=revisions.bundle_keys_of(source),
    )
    assert record["data"]["shadowBundle"] == {
        "configMap": "iwmo-2-1-shadow-bundle-r2",
        "keys": ["retour__wmo306.xsl", "wmo305.xsd"],
    }
    parsed = revisions.parse_controller_revision(json.loads(json.dumps(record)))
    assert parsed.shadow_bundle_config_map == "iwmo-2-1-shadow-bundle-r2"
    assert parsed.shadow_bundle_keys == ("retour__wmo306.xsl", "wmo305.xsd")

    template = node.pod_template(
        make_kp(),
        config_hash="h",
        connectors=[parsed],
        tls_secret="kp-tls",
        tls_managed=True,
        config=config,
    )
    spec_ = template["spec"]
    assert spec_["volumes"][-2:] == [
        {
            "name": "bundle-f54ef6afa0",
            "configMap": {
                "name": "iwmo-2-1-bundle-r2",
                "items": [{"key": "wmo305.xsd", "path": "wmo305.xsd"}],
            },
        },
        {
            "name": "shadow-bundle-f54ef6afa0",
            "configMap": {
                "name": "iwmo-2-1-shadow-bundle-r2",
                "items": [
                    {"key": "retour__wmo306.xsl", "path": "retour/wmo306.xsl"},
                    {"key": "wmo305.xsd", "path": "wmo305.xsd"},
                ],
            },
        },
    ]
    container = spec_["containers"][0]
    assert container["volumeMounts"][-2:] == [
        {
            "name": "bundle-f54ef6afa0",
            "mountPath": "/etc/knooppunt/bundles/iwmo-2-1",
            "readOnly": True,
        },
        {
            "name": "shadow-bundle-f54ef6afa0",
            "mountPath": "/etc/knooppunt/shadow-bundles/iwmo-2-1",
            "readOnly": True,
        },
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KNOOPPUNT_SHADOW_CONFIG_MAP_ROOT"] == "/etc/knooppunt/shadow-bundles"
    # promoted (no shadow in the revision): no shadow volume, and the template changes
    promoted = node.pod_template(
        make_kp(),
        config_hash="h",
        connectors=[REVISION],
        tls_secret="kp-tls",
        tls_managed=True,
        config=config,
    )
    assert not [v for v in promoted["spec"]["volumes"] if v["name"].startswith("shadow-")]


def test_bundle_keys_map_to_paths_inside_the_bundle() -> None:
    assert revisions.bundle_path("retour__wmo306.xsl") == "retour/wmo306.xsl"
    assert revisions.bundle_key_problem("retour__wmo306.xsl") is None
    assert revisions.bundle_key_problem("..__etc__passwd") is not None
    assert revisions.bundle_key_problem("a____b") is not None


def test_owner_reference_needs_a_uid() -> None:
    with pytest.raises(ValueError, match="no uid"):
        meta.owner_reference({"kind": "Knooppunt", "metadata": {"name": "x"}})


def test_image_version() -> None:
    assert node.image_version("ghcr.io/knooppunt/node-runtime:0.1.0") == "0.1.0"
    assert node.image_version("registry:5000/knooppunt") == "latest"
    assert node.image_version("knooppunt@sha256:0123456789abcdef0123") == "sha256:0123456789ab"


PG_STORAGE = {"backend": "postgresql", "postgresqlDsnSecret": {"name": "pg", "key": "dsn"}}


def _template(kp: Knooppunt, config: OperatorConfig) -> dict[str, Any]:
    return node.pod_template(
        kp,
        config_hash="abc",
        connectors=[REVISION],
        tls_secret="kp-tls",
        tls_managed=True,
        config=config,
    )


def test_postgresql_tls_mounts_the_ca_and_client_certificate_read_only(
    config: OperatorConfig,
) -> None:
    kp = make_kp(
        storage={
            **PG_STORAGE,
            "postgresqlTls": {
                "ca": {"secret": "pg-ca"},
                "clientCertificate": {"secret": "pg-client", "certKey": "c", "keyKey": "k"},
            },
        }
    )
    spec = _template(kp, config)["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "postgresql-tls"]
    assert volume == {
        "name": "postgresql-tls",
        "projected": {
            "sources": [
                {"secret": {"name": "pg-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "secret": {
                        "name": "pg-client",
                        "items": [
                            {"key": "c", "path": "client.crt"},
                            {"key": "k", "path": "client.key"},
                        ],
                    }
                },
            ],
            "defaultMode": 0o440,
        },
    }
    container = spec["containers"][0]
    assert {
        "name": "postgresql-tls",
        "mountPath": "/etc/knooppunt/postgresql",
        "readOnly": True,
    } in container["volumeMounts"]
    env = [e for e in container["env"] if e["name"].startswith("KNOOPPUNT_DATABASE_")]
    assert env[1:] == [
        {"name": "KNOOPPUNT_DATABASE_SSLMODE", "value": "verify-full"},
        {"name": "KNOOPPUNT_DATABASE_CA", "value": "/etc/knooppunt/postgresql/ca.crt"},
        {"name": "KNOOPPUNT_DATABASE_CLIENT_CERT", "value": "/etc/knooppunt/postgresql/client.crt"},
        {"name": "KNOOPPUNT_DATABASE_CLIENT_KEY", "value": "/etc/knooppunt/postgresql/client.key"},
    ]


def test_postgresql_without_tls_mounts_nothing_and_a_ca_change_rolls_the_pods(
    config: OperatorConfig,
) -> None:
    plain = _template(make_kp(storage=PG_STORAGE), config)
    assert all(v["name"] != "postgresql-tls" for v in plain["spec"]["volumes"])
    assert not any(
        e["name"] == "KNOOPPUNT_DATABASE_CA" for e in plain["spec"]["containers"][0]["env"]
    )
    with_ca = _template(
        make_kp(storage={**PG_STORAGE, "postgresqlTls": {"ca": {"configMap": "pg-ca"}}}), config
    )
    assert node.template_hash(with_ca) != node.template_hash(plain)


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (
            {**PG_STORAGE, "postgresqlTls": {"ca": {"secret": "a"}, "sslMode": "require"}},
            "weaker than verify-full while a CA is given",
        ),
        ({**PG_STORAGE, "postgresqlTls": {}}, "sslMode verify-full needs postgresqlTls.ca"),
        (
            {**PG_STORAGE, "postgresqlTls": {"ca": {"secret": "a", "configMap": "b"}}},
            "exactly one of secret, configMap",
        ),
        (
            {"backend": "sqlite", "postgresqlTls": {"ca": {"secret": "a"}}},
            "for backend postgresql only",
        ),
        (
            {
                **PG_STORAGE,
                "postgresqlTls": {"sslMode": "require", "clientCertificate": {"secret": "c"}},
            },
            "clientCertificate needs postgresqlTls.ca",
        ),
    ],
)
def test_postgresql_tls_model_refuses_weak_or_incomplete_settings(
    storage: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_kp(storage=storage)
