"""Connector validation: what the admission webhook refuses, and why (one precise sentence)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from knooppunt_operator import webhook

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "node_runtime" / "connectors" / "iwmo-2.1"


@pytest.fixture()
def connector() -> dict[str, Any]:
    doc = next(yaml.safe_load_all((REPO / "examples/iwmo/connector.yaml").read_text()))
    doc["metadata"]["namespace"] = "zorg"
    return dict(doc)


def bundle_config_map() -> dict[str, Any]:
    data = {}
    for path in BUILTIN.rglob("*"):
        if path.is_file() and path.suffix in (".xsd", ".xsl"):
            data[str(path.relative_to(BUILTIN)).replace("/", "__")] = path.read_text()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "iwmo-bundle"},
        "data": data,
    }


def test_the_example_connector_is_valid(connector: dict[str, Any]) -> None:
    assert webhook.validate_connector(connector) == []


def test_purpose_field_missing_from_the_conversion(connector: dict[str, Any]) -> None:
    connector["spec"]["purposes"][0]["fields"].append("clienten[].onbekend")
    assert webhook.validate_connector(connector) == [
        "connector iwmo-2-1 purpose wmo-uitvoering: field 'clienten[].onbekend' is not produced "
        "by the conversion of WMO305, WMO307, WMO315"
    ]


def test_schema_that_does_not_exist(connector: dict[str, Any]) -> None:
    connector["spec"]["messages"][1]["schema"] = "wmo305-v3.xsd"
    [problem] = webhook.validate_connector(connector)
    assert problem.startswith(
        "connector iwmo-2-1 message WMO305: schema 'wmo305-v3.xsd' does not compile"
    )


def test_conversion_that_does_not_compile(connector: dict[str, Any]) -> None:
    fields = connector["spec"]["messages"][1]["conversion"]["mapping"]["fields"]
    fields["clienten[].bsn"] = {"select": "wmo305:Bsn[["}
    assert webhook.validate_connector(connector) == [
        "connector iwmo-2-1 message WMO305: mapping has an invalid XPath: Invalid expression"
    ]


def test_model_rules_are_reported_with_their_place(connector: dict[str, Any]) -> None:
    del connector["spec"]["messages"][0]["rules"][3]["test"]
    assert webhook.validate_connector(connector) == [
        "spec.messages.0.rules.3: rule client-uniek: kind xpath needs test"
    ]
    connector["spec"]["bundle"] = {}
    assert "spec.bundle: bundle needs exactly one of builtin, configMap, path" in (
        webhook.validate_connector(connector)
    )


def test_local_bundle_paths_are_refused_on_a_cluster(connector: dict[str, Any]) -> None:
    connector["spec"]["bundle"] = {"path": "../../etc"}
    assert webhook.validate_connector(connector) == [
        "spec.bundle.path: a bundle path is for local mode only; on a cluster use builtin or "
        "configMap"
    ]


def test_config_map_bundle(connector: dict[str, Any]) -> None:
    connector["spec"]["bundle"] = {"configMap": "iwmo-bundle"}
    config_map = bundle_config_map()
    assert "retour__wmo306.xsl" in config_map["data"]
    assert webhook.validate_connector(connector, config_map=config_map) == []
    assert webhook.validate_connector(connector, config_map=None) == [
        "spec.bundle.configMap: ConfigMap 'iwmo-bundle' not found in the namespace of connector "
        "iwmo-2-1"
    ]
    broken = copy.deepcopy(config_map)
    del broken["data"]["retour__wmo306.xsl"]
    [problem] = webhook.validate_connector(connector, config_map=broken)
    assert "stylesheet 'retour/wmo306.xsl' does not compile" in problem
    escaping = copy.deepcopy(config_map)
    escaping["data"]["..__evil.xsd"] = "<x/>"
    assert webhook.validate_connector(connector, config_map=escaping) == [
        "spec.bundle.configMap: bundle key '..__evil.xsd' does not map to a path inside the bundle"
    ]


def test_a_change_needs_a_new_revision(connector: dict[str, Any]) -> None:
    changed = copy.deepcopy(connector)
    changed["spec"]["payloadRetentionDays"] = 30
    assert webhook.validate_connector(changed, old=connector) == [
        "spec.revision: the connector's content changed but spec.revision is still 1; raise "
        "spec.revision for every change (nodes pin revisions)"
    ]
    changed["spec"]["revision"] = 2
    assert webhook.validate_connector(changed, old=connector) == []
    relabelled = copy.deepcopy(connector)
    relabelled["metadata"]["labels"]["team"] = "zorg"
    assert webhook.validate_connector(relabelled, old=connector) == []


def test_a_shadow_release_is_checked_as_the_runtime_will_compile_it(
    connector: dict[str, Any],
) -> None:
    """The shadow's bundle must exist and its schemas, rules and mapping compile; a problem
    names spec.shadow, and the live part is judged on its own."""
    messages = copy.deepcopy(connector["spec"]["messages"])
    connector["spec"]["shadow"] = {
        "standardVersion": "2.2-concept",
        "bundle": {"configMap": "iwmo-2-2-bundle"},
        "messages": messages,
    }
    config_map = bundle_config_map()
    assert webhook.validate_connector(connector, shadow_config_map=config_map) == []
    assert webhook.validate_connector(connector, shadow_config_map=None) == [
        "spec.shadow.bundle.configMap: ConfigMap 'iwmo-2-2-bundle' not found in the namespace "
        "of connector iwmo-2-1"
    ]
    escaping = copy.deepcopy(config_map)
    escaping["data"]["..__evil.xsd"] = "<x/>"
    assert webhook.validate_connector(connector, shadow_config_map=escaping) == [
        "spec.shadow.bundle.configMap: bundle key '..__evil.xsd' does not map to a path inside "
        "the bundle"
    ]
    messages[1]["schema"] = "wmo305-v3.xsd"
    [problem] = webhook.validate_connector(connector, shadow_config_map=config_map)
    assert problem.startswith(
        "spec.shadow: connector iwmo-2-1 message WMO305: schema 'wmo305-v3.xsd' does not compile"
    )
    connector["spec"]["shadow"]["bundle"] = {"path": "next"}
    assert webhook.validate_connector(connector) == [
        "spec.shadow.bundle.path: a bundle path is for local mode only; on a cluster use builtin "
        "or configMap"
    ]


# ------------------------------------------------------------------ Knooppunt: PostgreSQL TLS


def _knooppunt(tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Knooppunt",
        "metadata": {"name": "kp", "namespace": "zorg"},
        "spec": {
            "displayName": "Knooppunt Zorg",
            "connectors": [{"name": "iwmo-2-1"}],
            "storage": {
                "backend": "postgresql",
                "postgresqlDsnSecret": {"name": "pg", "key": "dsn"},
                "postgresqlTls": tls,
            },
        },
    }


def _ca_pem() -> str:
    from knooppunt_operator import certificates

    ca = certificates.load_ca(certificates.create_node_ca("pg", "database"))
    return certificates.pem_cert(ca.certificate).decode()


def test_knooppunt_postgresql_tls_objects_must_exist_and_hold_pem() -> None:
    import base64

    body = _knooppunt({"ca": {"configMap": "pg-ca"}, "clientCertificate": {"secret": "pg-client"}})
    assert webhook.postgresql_tls_refs(body) == [("ConfigMap", "pg-ca"), ("Secret", "pg-client")]
    missing = webhook.validate_knooppunt(body, referenced={})
    assert missing == [
        "spec.storage.postgresqlTls.ca.configMap: ConfigMap 'pg-ca' not found in the "
        "namespace of Knooppunt kp",
        "spec.storage.postgresqlTls.clientCertificate.secret: Secret 'pg-client' not found in "
        "the namespace of Knooppunt kp",
    ]
    ca_map = {"kind": "ConfigMap", "data": {"ca.crt": _ca_pem()}}
    no_key = {"kind": "Secret", "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}
    problems = webhook.validate_knooppunt(
        body,
        referenced={("ConfigMap", "pg-ca"): ca_map, ("Secret", "pg-client"): no_key},
    )
    assert problems == [
        "spec.storage.postgresqlTls.clientCertificate.secret: key 'tls.crt' of Secret "
        "'pg-client' holds no PEM certificate",
        "spec.storage.postgresqlTls.clientCertificate.secret: Secret 'pg-client' has no key "
        "'tls.key'",
    ]
    good_client = {
        "kind": "Secret",
        "data": {
            "tls.crt": base64.b64encode(_ca_pem().encode()).decode(),
            "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n...").decode(),
        },
    }
    assert (
        webhook.validate_knooppunt(
            body,
            referenced={("ConfigMap", "pg-ca"): ca_map, ("Secret", "pg-client"): good_client},
        )
        == []
    )


def test_knooppunt_with_a_weaker_sslmode_next_to_a_ca_is_refused() -> None:
    body = _knooppunt({"ca": {"secret": "pg-ca"}, "sslMode": "verify-ca"})
    [problem] = webhook.validate_knooppunt(body, referenced={})
    assert "sslMode verify-ca is weaker than verify-full while a CA is given" in problem
