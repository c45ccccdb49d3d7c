"""Façade stack under mocks: restricted pods, limits, labels, TLS pass-through, per environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stacks.components import labels
from stacks.components.facade import Entry, FacadeArgs
from tests.iac.harness import Run
from tests.iac.manifests import manifest

pytestmark = pytest.mark.usefixtures("pulumi_available")


def objects(run: Run, kind: str) -> list[dict[str, Any]]:
    return [manifest(r) for r in run.kubernetes() if r.type.endswith(f":{kind}")]


@pytest.fixture(scope="module")
def facade(runs: dict[tuple[str, str], Run], env: str) -> Run:
    return runs[("facade", env)]


@pytest.fixture(scope="module")
def pod(facade: Run) -> dict[str, Any]:
    [deployment] = objects(facade, "Deployment")
    return dict(deployment["spec"]["template"])


def test_everything_lands_in_the_platform_facade_namespace(facade: Run) -> None:
    for obj in (manifest(r) for r in facade.kubernetes()):
        assert obj["metadata"]["namespace"] == "knooppunt-facade", obj["kind"]


def test_pods_run_restricted_non_root_and_read_only(pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["runAsNonRoot"] is True


def test_requests_and_limits(pod: dict[str, Any], facade: Run) -> None:
    [container] = pod["spec"]["containers"]
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}
    expected = {"dev": "256Mi", "prod": "1Gi"}[facade.stack]
    assert resources["limits"]["memory"] == expected


def test_labels_admit_the_facade_to_the_nodes(pod: dict[str, Any], facade: Run) -> None:
    got = pod["metadata"]["labels"]
    assert got[labels.ACCESS] == labels.ACCESS_FACADE
    assert got[labels.NAME] == labels.FACADE_APP
    assert got[labels.ENVIRONMENT] == facade.stack
    for obj in (manifest(r) for r in facade.kubernetes()):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "knooppunt"


def test_tls_material_comes_from_the_platform(pod: dict[str, Any], facade: Run) -> None:
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret = {"dev": "knooppunt-facade-tls", "prod": "knooppunt-facade-pkio"}[facade.stack]
    assert volumes["tls"]["secret"]["secretName"] == secret
    assert volumes["trust"]["configMap"]["name"] == "knooppunt-trust-bundle"
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KNOOPPUNT_FACADE_TLS_TRUST"] == "/etc/knooppunt/trust/ca.crt"
    # revocation is checked, fail-closed (issue 19, defect 2): the CRLs of the trusted CAs
    assert env["KNOOPPUNT_FACADE_TLS_CRL"] == "/etc/knooppunt/crl/crl.pem"
    assert volumes["crl"]["configMap"]["name"] == "knooppunt-crl"
    assert env["KNOOPPUNT_FACADE_TLS_CERT"].startswith("/etc/knooppunt/tls/")
    assert env["KNOOPPUNT_FACADE_PORT"] == "8443"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["readOnly"] is True


def test_probes_use_the_plain_health_port(pod: dict[str, Any]) -> None:
    [container] = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_development_entry_is_an_ingress_with_tls_passthrough(runs: dict[Any, Run]) -> None:
    run = runs[("facade", "dev")]
    [ingress] = objects(run, "Ingress")
    assert "tls" not in ingress["spec"], "pass-through: the controller must not terminate TLS"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-passthrough"] == "true"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "facade.knooppunt.localtest.me"
    [service] = objects(run, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert not objects(run, "PodDisruptionBudget")  # one replica in development


def test_production_entry_is_a_restricted_load_balancer(runs: dict[Any, Run]) -> None:
    run = runs[("facade", "prod")]
    assert not objects(run, "Ingress")
    [service] = objects(run, "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["10.100.0.0/16"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    [deployment] = objects(run, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    [pdb] = objects(run, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert run.exports["endpoint"].value == "https://facade.knooppunt.nl"


def test_args_refuse_unsafe_settings() -> None:
    with pytest.raises(ValueError, match="at least 2 replicas"):
        FacadeArgs(
            environment="prod", namespace="x", tls_secret="s", trust_config_map="t", replicas=1
        )
    with pytest.raises(ValueError, match="pin the façade image"):
        FacadeArgs(
            environment="dev",
            namespace="x",
            tls_secret="s",
            trust_config_map="t",
            image="ghcr.io/knooppunt/node-runtime",
        )
    with pytest.raises(ValueError, match="needs host and ingressClass"):
        Entry(kind="ingress")
    with pytest.raises(ValueError, match="loadBalancer or ingress"):
        Entry(kind="nodePort")


def test_development_resources_are_a_valid_federation(runs: dict[Any, Run], tmp_path: Path) -> None:
    """The façade's resources load with the typed model, and agree with the platform stack."""
    from node_runtime.model.loading import load_paths

    run = runs[("facade", "dev")]
    [config_map] = objects(run, "ConfigMap")
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    resources = load_paths([tmp_path])
    platform = runs[("platform", "dev")].exports
    docs = yaml.safe_load(
        (Path(__file__).parents[2] / "stacks/facade/resources" / "knooppunt-zorg.yaml").read_text()
    )
    assert (
        docs["spec"]["security"]["tlsSecret"] == platform["nodeTlsSecrets"].value["knooppunt-zorg"]
    )
    assert docs["spec"]["endpoint"] == "https://knooppunt-zorg.knooppunten.svc:8443"
    assert "00000001999000000100" in docs["spec"]["security"]["facadeOins"]
    assert resources  # loaded without errors


def test_container_contract_matches_the_facade_runtime(
    pod: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command and every KNOOPPUNT_FACADE_* variable exist in the façade's runtime."""
    from node_runtime.facade.config import FacadeSettings

    [container] = pod["spec"]["containers"]
    assert container["command"] == ["knooppunt", "facade", "--env"]
    fields = {f"KNOOPPUNT_FACADE_{name.upper()}" for name in FacadeSettings.model_fields}
    assert {e["name"] for e in container["env"]} <= fields
    for item in container["env"]:  # read the way the container reads them
        monkeypatch.setenv(item["name"], item["value"])
    settings = FacadeSettings()
    assert [str(p) for p in settings.resources] == ["/etc/knooppunt/resources"]
    assert settings.port == 8443 and settings.health_port == 8080
