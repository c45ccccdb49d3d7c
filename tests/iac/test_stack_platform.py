"""Platform / PKI stack under mocks: Pod Security, default deny, TLS settings, no key leaks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stacks.components import labels, network, pki
from tests.iac.harness import DYNAMIC, Run, fake_cert, run_stack
from tests.iac.manifests import is_secret, manifest, secret_paths

pytestmark = pytest.mark.usefixtures("pulumi_available")


def k8s(run: Run, kind: str) -> list[dict[str, Any]]:
    return [manifest(r) for r in run.kubernetes() if r.type.endswith(f":{kind}")]


def plain_strings(value: Any) -> list[str]:
    """Strings in the inputs that are not wrapped as secrets."""
    if is_secret(value):
        return []
    if isinstance(value, dict):
        return [s for v in value.values() for s in plain_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def platform(runs: dict[tuple[str, str], Run], env: str) -> Run:
    return runs[("platform", env)]


def test_namespaces_enforce_audit_and_warn_restricted(platform: Run) -> None:
    namespaces = k8s(platform, "Namespace")
    assert {n["metadata"]["name"] for n in namespaces} == {
        "knooppunt-system",
        "knooppunt-facade",
        "knooppunten",
    }
    for ns in namespaces:
        got = ns["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert got[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert got[f"pod-security.kubernetes.io/{mode}-version"]
        assert got[labels.ROLE] in ("operator", "facade", "nodes")
        assert got["app.kubernetes.io/part-of"] == "knooppunt"
        assert got[labels.ENVIRONMENT] == platform.stack


def test_every_namespace_denies_all_traffic_by_default(platform: Run) -> None:
    policies = k8s(platform, "NetworkPolicy")
    for ns in ("knooppunt-system", "knooppunt-facade", "knooppunten"):
        [deny] = [
            p
            for p in policies
            if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == "default-deny-all"
        ]
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_every_allow_names_its_peers_and_ports(platform: Run) -> None:
    for policy in k8s(platform, "NetworkPolicy"):
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']} admits every source"
            assert rule.get("ports"), f"{policy['metadata']['name']} admits every port"
        for rule in spec.get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']} allows every destination"
            assert rule.get("ports"), f"{policy['metadata']['name']} allows every port"


def test_a_policy_changed_by_hand_is_put_back_by_the_next_up(platform: Run) -> None:
    # The provider forces its server-side apply over another field manager's edit.
    for policy in k8s(platform, "NetworkPolicy"):
        assert policy["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}


def test_production_opens_no_address_to_the_whole_internet(runs: dict[Any, Run]) -> None:
    for policy in k8s(runs[("platform", "prod")], "NetworkPolicy"):
        text = repr(policy["spec"])
        assert "0.0.0.0/0" not in text, policy["metadata"]["name"]


def _policy(run: Run, ns: str, name: str) -> dict[str, Any]:
    [found] = [
        p
        for p in k8s(run, "NetworkPolicy")
        if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == name
    ]
    return found["spec"]


def test_explicit_allows_between_facade_nodes_and_operator(platform: Run) -> None:
    def ns_of(peer: dict[str, Any]) -> str:
        return str(peer["namespaceSelector"]["matchLabels"][labels.NAMESPACE_NAME])

    spec = _policy(platform, "knooppunten", "nodes-from-facade")
    assert spec["podSelector"] == {"matchLabels": {labels.NAME: "knooppunt"}}
    [rule] = spec["ingress"]
    [peer] = rule["from"]
    assert ns_of(peer) == "knooppunt-facade"
    assert peer["podSelector"] == {"matchLabels": {labels.ACCESS: "facade"}}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}]

    [rule] = _policy(platform, "knooppunten", "nodes-from-operator")["ingress"]
    assert ns_of(rule["from"][0]) == "knooppunt-system"
    assert rule["from"][0]["podSelector"] == {"matchLabels": {labels.NAME: "knooppunt-operator"}}

    [rule] = _policy(platform, "knooppunt-facade", "facade-to-nodes")["egress"]
    assert rule["to"][0]["podSelector"] == {"matchLabels": {labels.NAME: "knooppunt"}}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8443}]

    webhook = _policy(platform, "knooppunt-system", "operator-webhook-from-api-server")
    assert webhook["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9443}]
    assert all("ipBlock" in p for p in webhook["ingress"][0]["from"])


def test_labels_agree_with_the_operator() -> None:
    """The operator's per-node policies and the chart select pods by the same labels."""
    from knooppunt_operator.builders import meta, node

    assert meta.MANAGED_BY == labels.OPERATOR_APP
    assert meta.ACCESS_LABEL == labels.ACCESS
    assert meta.selector_labels("x")[labels.NAME] == labels.NODE_APP
    assert labels.ACCESS_FACADE in node.ACCESS_HTTPS
    assert node.HTTPS_PORT == network.HTTPS_PORT


def test_trust_bundle_in_every_namespace(platform: Run) -> None:
    maps = [
        m for m in k8s(platform, "ConfigMap") if m["metadata"]["name"] == "knooppunt-trust-bundle"
    ]
    assert {m["metadata"]["namespace"] for m in maps} == {
        "knooppunt-system",
        "knooppunt-facade",
        "knooppunten",
    }
    for m in maps:
        assert pki.certificates(m["data"]["ca.crt"])


def test_development_crl_in_every_namespace(runs: dict[Any, Run]) -> None:
    """The façade checks revocation fail-closed: the development CA publishes its CRL."""
    run = runs[("platform", "dev")]
    maps = [m for m in k8s(run, "ConfigMap") if m["metadata"]["name"] == pki.CRL_CONFIG_MAP]
    assert {m["metadata"]["namespace"] for m in maps} == {
        "knooppunt-system",
        "knooppunt-facade",
        "knooppunten",
    }
    [bundle] = [
        m for m in k8s(run, "ConfigMap") if m["metadata"]["name"] == "knooppunt-trust-bundle"
    ][:1]
    [ca] = pki.certificates(bundle["data"]["ca.crt"])
    for m in maps:
        crl = x509.load_pem_x509_crl(m["data"]["crl.pem"].encode())
        assert crl.issuer == ca.subject
        assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- TLS (dev)


def _certificates(run: Run) -> dict[str, dict[str, Any]]:
    """The development CA and certificates (dynamic resources) by name: their inputs."""
    return {r.name: r.inputs for r in run.of_type(DYNAMIC)}


def test_development_ca_settings(runs: dict[Any, Run]) -> None:
    certs = _certificates(runs[("platform", "dev")])
    ca = certs["federation-ca"]
    assert ca["kind"] == "ca"
    assert ca["curve"] == "P384"
    assert ca["common_name"].endswith("CA (dev)")
    assert 0 < ca["early_renewal_hours"] < ca["validity_hours"]
    assert all(
        c["kind"] == "leaf" and c["curve"] == "P256"
        for name, c in certs.items()
        if name != "federation-ca"
    )


def test_development_leaves_carry_oin_and_the_right_usages(runs: dict[Any, Run]) -> None:
    certs = _certificates(runs[("platform", "dev")])
    facade = certs["federation-facade-cert"]
    assert facade["serial_number"] == "00000001999000000100"
    assert "knooppunt-facade.knooppunt-facade.svc" in facade["dns_names"]
    assert facade["usage"] == "both"
    node = certs["federation-knooppunt-zorg-cert"]
    assert "knooppunt-zorg.knooppunten.svc" in node["dns_names"]
    assert node["usage"] == "server"
    amsterdam = certs["federation-gemeente-amsterdam-cert"]
    assert amsterdam["serial_number"] == "00000001999000363000"
    assert amsterdam["usage"] == "client"
    for name, cert in certs.items():
        if name == "federation-ca":
            continue
        assert cert["validity_hours"] <= 90 * 24
        assert 0 < cert["early_renewal_hours"] < cert["validity_hours"]
        assert is_secret(cert["ca_key_pem"]), name


def test_development_certificates_are_what_the_provider_issues(runs: dict[Any, Run]) -> None:
    """The provider's own create ran (under mocks): the Secret's chain verifies against the
    CA, with the OIN in the subject and the extended key usages of its role."""
    run = runs[("platform", "dev")]
    secrets = {
        manifest(s)["metadata"]["name"]: manifest(s)["stringData"]
        for s in run.kubernetes()
        if s.type == "kubernetes:core/v1:Secret"
    }
    body = secrets["knooppunt-facade-tls"]
    leaf, ca = x509.load_pem_x509_certificates(body["tls.crt"].encode())
    assert ca.subject == leaf.issuer
    ca.public_key().verify(
        leaf.signature,
        leaf.tbs_certificate_bytes,  # type: ignore[call-arg]
        ec.ECDSA(leaf.signature_hash_algorithm),
    )  # type: ignore[arg-type]
    serial = leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert [a.value for a in serial] == ["00000001999000000100"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_tls_secrets_carry_the_key_only_as_a_secret(runs: dict[Any, Run]) -> None:
    run = runs[("platform", "dev")]
    secrets = [r for r in run.kubernetes() if r.type == "kubernetes:core/v1:Secret"]
    assert {manifest(s)["metadata"]["name"] for s in secrets} == {
        "knooppunt-facade-tls",
        "knooppunt-zorg-federation-tls",
        "gemeente-amsterdam-client-tls",
        "gemeente-rotterdam-client-tls",
    }
    for secret in secrets:
        assert secret.inputs["type"] == "kubernetes.io/tls"
        assert secret_paths(secret.inputs) == [".stringData"]
        body = manifest(secret)["stringData"]
        assert set(body) == {"tls.crt", "tls.key", "ca.crt"}
        assert "PRIVATE KEY" in body["tls.key"]


def test_no_private_key_outside_a_secret(runs: dict[Any, Run], env: str) -> None:
    for project in ("platform", "operator", "facade"):
        run = runs[(project, env)]
        for resource in run.resources:
            for text in plain_strings(resource.inputs):
                assert "PRIVATE KEY" not in text, f"{resource.type} {resource.name}"
        for key, export in run.exports.items():
            assert "PRIVATE KEY" not in repr(export.value), f"export {key}"


def test_exports_are_public_facts(runs: dict[Any, Run], env: str) -> None:
    run = runs[("platform", env)]
    assert set(run.exports) == {
        "environment",
        "namespaces",
        "trustBundleConfigMap",
        "caCertificate",
        "caFingerprints",
        "facadeTlsSecret",
        "nodeTlsSecrets",
        "gemeenteClientSecrets",
    }
    assert pki.certificates(run.exports["caCertificate"].value)
    assert all(len(f) == 64 for f in run.exports["caFingerprints"].value)


# ------------------------------------------------------------------------- external (prod)


def test_production_makes_no_key_and_trusts_the_pinned_bundle(
    runs: dict[Any, Run], ca_bundle: tuple[Path, str]
) -> None:
    run = runs[("platform", "prod")]
    assert not [r for r in run.resources if r.type.startswith("tls:")]
    assert not k8s(run, "Secret")
    assert run.exports["caFingerprints"].value == [ca_bundle[1]]
    assert run.exports["facadeTlsSecret"].value == "knooppunt-facade-pkio"
    for m in k8s(run, "ConfigMap"):
        assert m["data"]["ca.crt"] == ca_bundle[0].read_text()


def test_production_refuses_a_bundle_that_differs_from_the_pins(
    pulumi_available: None, ca_bundle: tuple[Path, str]
) -> None:
    from tests.iac.conftest import platform_config

    overrides = platform_config("prod", ca_bundle)
    overrides["knooppunt-platform:pki"]["caFingerprints"] = ["00" * 32]
    # A pulumi.RunError: `pulumi up` shows the message alone, no traceback.
    with pytest.raises(Exception, match="invalid configuration of stack prod: CA bundle") as err:
        run_stack("platform", "prod", overrides=overrides)
    assert type(err.value).__name__ == "RunError"


def test_production_bundle_must_exist_and_hold_ca_certificates(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"docs/deploy\.md"):
        pki.read_bundle(tmp_path / "missing.crt")
    with pytest.raises(ValueError, match="not a CA certificate"):
        pki.check_bundle(fake_cert("leaf", ca=False), ())
    with pytest.raises(ValueError, match="not a PEM certificate bundle"):
        pki.check_bundle("garbage", ())
    with pytest.raises(ValueError, match="issues no certificates"):
        pki.PlatformPkiArgs(
            environment="prod",
            namespaces={"x": "x"},
            mode="external",
            external_bundle_pem=fake_cert("ca"),
            leaves=(pki.LeafSpec("a", "x", "a", ("a",)),),
        )
    with pytest.raises(ValueError, match="20 digits"):
        pki.LeafSpec("a", "x", "a", ("a",), oin="123")
    with pytest.raises(ValueError, match="not the number 1999000000100: quote it"):
        pki.LeafSpec("a", "x", "a", ("a",), oin=1999000000100)  # type: ignore[arg-type]
