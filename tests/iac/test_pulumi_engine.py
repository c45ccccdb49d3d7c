"""The three stacks applied by the real Pulumi engine against the test control plane.

The CLI, the Python language host and the kubernetes provider are the ones
tools/pulumi/build.sh builds; the backend is a fresh local one (file://) with a passphrase
secrets provider. In order, on one cluster:

1. a broken platform config (an unknown gemeentecode, an invalid CIDR) fails ``pulumi up``
   with its message and nothing is created;
2. ``pulumi up`` of platform, operator and façade, each reading the platform's outputs through
   a StackReference, each followed by ``pulumi preview --expect-no-changes``;
3. a config change (one more CIDR in a gemeente's policy, one more gemeente policy, more
   replicas for operator and façade) is, by the engine's own plan, an update in place (same
   object UID afterwards), never a replacement;
4. a NetworkPolicy changed behind Pulumi's back: ``pulumi refresh`` sees the drift, the next
   ``up`` puts the declared rule back;
5. ``pulumi destroy`` of all three leaves none of the objects they created.

The tests depend on each other's cluster state and run in file order (one module).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.controlplane.cluster import KubeCluster
from tests.iac.conftest import unavailable
from tests.iac.engine import (
    BUILD,
    PROJECTS,
    Engine,
    built,
    example_config,
    steps,
    urn_name,
    urn_type,
)
from tests.iac.engine import platform_config as shared_platform_config
from tests.iac.harness import REPO

pytestmark = [
    pytest.mark.pulumi_engine,
    pytest.mark.controlplane,
    pytest.mark.usefixtures("pulumi_available"),
    pytest.mark.timeout(1800),
]

SFX = uuid.uuid4().hex[:5]
NS = {"operator": f"kp{SFX}-system", "facade": f"kp{SFX}-facade", "nodes": f"kp{SFX}-nodes"}
RELEASE = f"knooppunt-operator-{SFX}"  # contains the chart name: objects named exactly so
REPLACING = {"replace", "create-replacement", "delete-replaced", "delete"}
CREATED: dict[str, Counter[str]] = {}  # project → kind → count (reported at the end)


def platform_config() -> dict[str, Any]:
    config = shared_platform_config(NS)
    config["network"]["gemeenteClientCidrs"] = {"0363": ["192.0.2.0/26"]}
    return config


def operator_config() -> dict[str, Any]:
    return {**example_config("operator"), "releaseName": RELEASE, "replicas": 2}


def facade_config() -> dict[str, Any]:
    config = example_config("facade")
    # No ingress controller in the test cluster: the Ingress never gets an address, so the
    # provider must not wait for one (kwok runs the pods; the Deployment is awaited).
    config["entry"] = {**config["entry"], "annotations": {"pulumi.com/skipAwait": "true"}}
    return config


@pytest.fixture(scope="module")
def engine(controlplane: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if not built():
        unavailable(f"the Pulumi engine is not built: run {BUILD.relative_to(REPO)}")
    eng = Engine(tmp_path_factory.mktemp("pulumi-engine"), controlplane.kubeconfig)
    eng.init("platform", config=platform_config())
    eng.init("operator", config=operator_config())
    eng.init("facade", config=facade_config())
    yield eng
    for project in ("facade", "operator", "platform"):  # after a failure: leave no debris
        if any(r["type"].startswith("kubernetes:") for r in eng.resources(project)):
            eng.run(project, "destroy", "--yes", "--skip-preview", check=False)


@pytest.fixture(scope="module")
def http(controlplane: KubeCluster) -> Iterator[httpx.Client]:
    with controlplane.client() as client:
        yield client


def get(
    http: httpx.Client,
    cp: KubeCluster,
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str,
) -> dict[str, Any] | None:
    r = http.get(cp.resource_path(api_version, kind, namespace, name))
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


def kubernetes_resources(eng: Engine, project: str) -> list[dict[str, Any]]:
    return [
        r
        for r in eng.resources(project)
        if r["type"].startswith("kubernetes:") and not r["type"].startswith("pulumi:")
    ]


def kinds(resources: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["type"].rsplit(":", 1)[-1] for r in resources)


# ------------------------------------------------------------------------- 1. broken config


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("gemeenteClientCidrs", {"9999": ["198.51.100.0/24"]}, "unknown gemeentecode '9999'"),
        ("facadeClientCidrs", ["10.0.0.0/33"], "'10.0.0.0/33' is not a valid CIDR"),
    ],
)
def test_broken_config_fails_up_before_anything_is_created(
    engine: Engine,
    http: httpx.Client,
    controlplane: KubeCluster,
    setting: str,
    value: Any,
    message: str,
) -> None:
    config = platform_config()
    config["network"][setting] = value
    engine.set_config("platform", config)
    try:
        # --skip-preview: the program's own check must stop it, not a preview gate.
        result = engine.run("platform", "up", "--yes", "--skip-preview", check=False)
    finally:
        engine.set_config("platform", platform_config())
    assert result.returncode != 0, result
    assert message in result.output, result
    assert "invalid configuration of stack dev" in result.output, result
    assert "Traceback" not in result.output, "a clear message, not a stack trace"
    assert kubernetes_resources(engine, "platform") == []
    for ns in NS.values():
        assert get(http, controlplane, "v1", "Namespace", None, ns) is None


# ------------------------------------------------------------- 2. up, then a no-change preview


def test_platform_up_then_no_changes(
    engine: Engine, http: httpx.Client, controlplane: KubeCluster
) -> None:
    engine.run("platform", "up", "--yes")
    engine.run("platform", "preview", "--expect-no-changes")
    resources = kubernetes_resources(engine, "platform")
    CREATED["platform"] = kinds(resources)
    assert CREATED["platform"]["Namespace"] == 3
    for ns in NS.values():
        live = get(http, controlplane, "v1", "Namespace", None, ns)
        assert live is not None
        assert live["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    policy = get(
        http,
        controlplane,
        "networking.k8s.io/v1",
        "NetworkPolicy",
        NS["facade"],
        "facade-from-gemeente-0363",
    )
    assert policy is not None
    assert policy["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "192.0.2.0/26"}}]
    secret = get(http, controlplane, "v1", "Secret", NS["facade"], "knooppunt-facade-tls")
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    outputs = engine.outputs("platform")
    assert outputs["namespaces"]["facade"] == NS["facade"]
    assert outputs["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in json.dumps(outputs)


def test_operator_up_reads_the_platform_stack_then_no_changes(
    engine: Engine, http: httpx.Client, controlplane: KubeCluster
) -> None:
    engine.run("operator", "up", "--yes")
    engine.run("operator", "preview", "--expect-no-changes")
    outputs = engine.outputs("operator")
    assert outputs["namespace"] == NS["operator"]  # from the platform's outputs
    assert outputs["releaseStatus"] == "deployed"
    deployment = get(http, controlplane, "apps/v1", "Deployment", NS["operator"], RELEASE)
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    CREATED["operator"] = kinds(kubernetes_resources(engine, "operator"))
    CREATED["operator (Helm release)"] = Counter(
        o["kind"] for o in release_objects(http, controlplane)
    )


def test_facade_up_reads_the_platform_stack_then_no_changes(
    engine: Engine, http: httpx.Client, controlplane: KubeCluster
) -> None:
    engine.run("facade", "up", "--yes")
    engine.run("facade", "preview", "--expect-no-changes")
    platform = engine.outputs("platform")
    deployment = get(http, controlplane, "apps/v1", "Deployment", NS["facade"], "knooppunt-facade")
    assert deployment is not None
    assert deployment["status"].get("readyReplicas") == 1  # awaited by the provider
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == platform["facadeTlsSecret"]
    assert volumes["trust"]["configMap"]["name"] == platform["trustBundleConfigMap"]
    assert engine.outputs("facade")["endpoint"] == "https://facade.knooppunt.localtest.me"
    CREATED["facade"] = kinds(kubernetes_resources(engine, "facade"))


# --------------------------------------------------------------- 3. a change: update in place


def test_config_change_is_an_update_in_place(
    engine: Engine, http: httpx.Client, controlplane: KubeCluster
) -> None:
    def uid(api_version: str, kind: str, ns: str, name: str) -> str:
        live = get(http, controlplane, api_version, kind, ns, name)
        assert live is not None, f"{kind} {ns}/{name}"
        return str(live["metadata"]["uid"])

    policy = ("networking.k8s.io/v1", "NetworkPolicy", NS["facade"], "facade-from-gemeente-0363")
    facade = ("apps/v1", "Deployment", NS["facade"], "knooppunt-facade")
    operator = ("apps/v1", "Deployment", NS["operator"], RELEASE)
    before = {what: uid(*what) for what in (policy, facade, operator)}

    platform = platform_config()
    platform["network"]["gemeenteClientCidrs"] = {
        "0363": ["192.0.2.0/26", "192.0.2.64/26"],  # one more range for Amsterdam
        "0599": ["198.51.100.0/24"],  # one more gemeente policy: Rotterdam
    }
    engine.set_config("platform", platform)
    plan = steps(engine.run("platform", "preview", "--json").json())
    ops = {(urn_type(u), urn_name(u)): op for u, op in plan.items()}
    assert ops == {
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            f"network-{NS['facade']}-facade-from-gemeente-0363",
        ): "update",
        (
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            f"network-{NS['facade']}-facade-from-gemeente-0599",
        ): "create",
    }, plan
    engine.run("platform", "up", "--yes")

    engine.set_config("facade", {**facade_config(), "replicas": 2})
    plan = steps(engine.run("facade", "preview", "--json").json())
    ops = {urn_type(u): op for u, op in plan.items()}
    assert ops == {
        "kubernetes:apps/v1:Deployment": "update",
        "kubernetes:policy/v1:PodDisruptionBudget": "create",
    }, plan
    engine.run("facade", "up", "--yes")

    engine.set_config("operator", {**operator_config(), "replicas": 3})
    plan = steps(engine.run("operator", "preview", "--json").json())
    assert {urn_type(u): op for u, op in plan.items()} == {
        "kubernetes:helm.sh/v3:Release": "update"
    }, plan
    engine.run("operator", "up", "--yes")

    for project in ("platform", "operator", "facade"):
        engine.run(project, "preview", "--expect-no-changes")
    assert {what: uid(*what) for what in before} == before, "updated in place, same objects"
    live = get(http, controlplane, *policy)
    assert live is not None
    assert [p["ipBlock"]["cidr"] for p in live["spec"]["ingress"][0]["from"]] == [
        "192.0.2.0/26",
        "192.0.2.64/26",
    ]
    assert (get(http, controlplane, *facade) or {})["spec"]["replicas"] == 2
    assert (get(http, controlplane, *operator) or {})["spec"]["replicas"] == 3
    assert not REPLACING & set(plan.values())


# ------------------------------------------------------------------------ 4. drift, refresh


def test_refresh_detects_a_change_behind_pulumis_back(
    engine: Engine, http: httpx.Client, controlplane: KubeCluster
) -> None:
    path = controlplane.resource_path(
        "networking.k8s.io/v1", "NetworkPolicy", NS["facade"], "facade-from-gemeente-0599"
    )
    widened = {
        "spec": {
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                    "ports": [{"protocol": "TCP", "port": 8443}],
                }
            ]
        }
    }
    r = http.patch(
        path, content=json.dumps(widened), headers={"Content-Type": "application/merge-patch+json"}
    )
    r.raise_for_status()

    drift = engine.run("platform", "refresh", "--preview-only", "--expect-no-changes", check=False)
    assert drift.returncode != 0, drift
    assert "facade-from-gemeente-0599" in drift.output, drift
    engine.run("platform", "refresh", "--yes")
    plan = steps(engine.run("platform", "preview", "--json").json())
    assert {urn_name(u): op for u, op in plan.items()} == {
        f"network-{NS['facade']}-facade-from-gemeente-0599": "update"
    }, plan
    engine.run("platform", "up", "--yes")
    live = get(
        http,
        controlplane,
        "networking.k8s.io/v1",
        "NetworkPolicy",
        NS["facade"],
        "facade-from-gemeente-0599",
    )
    assert live is not None
    assert live["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    engine.run("platform", "preview", "--expect-no-changes")


# ------------------------------------------------------------------------------ 5. destroy


def release_objects(http: httpx.Client, cp: KubeCluster) -> list[dict[str, Any]]:
    """The objects of the operator's Helm release, from Helm's own record (the release
    Secret: base64, gzip, JSON with the rendered manifest), CRDs and that Secret included."""
    r = http.get(
        f"/api/v1/namespaces/{NS['operator']}/secrets",
        params={"labelSelector": f"owner=helm,name={RELEASE}"},
    )
    r.raise_for_status()
    latest = max(r.json()["items"], key=lambda s: int(s["metadata"]["labels"]["version"]))
    blob = base64.b64decode(base64.b64decode(latest["data"]["release"]))
    release = json.loads(gzip.decompress(blob))
    docs = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    for crd in release["chart"].get("files") or []:  # crds/ are kept in the chart's files
        if crd["name"].startswith("crds/"):
            docs += [d for d in yaml.safe_load_all(base64.b64decode(crd["data"])) if d]
    for d in docs:
        if d["kind"] != "CustomResourceDefinition" and "namespace" not in d["metadata"]:
            scoped = cp.resource_path(d["apiVersion"], d["kind"], NS["operator"], "x")
            if f"/namespaces/{NS['operator']}/" in scoped:
                d["metadata"]["namespace"] = NS["operator"]
    record = {"apiVersion": "v1", "kind": "Secret", "metadata": latest["metadata"]}
    return [*docs, record]


def test_destroy_leaves_nothing_of_theirs(
    engine: Engine,
    http: httpx.Client,
    controlplane: KubeCluster,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made: list[tuple[str, str, str | None, str]] = []
    for project in PROJECTS:
        for r in kubernetes_resources(engine, project):
            if r["type"] == "kubernetes:helm.sh/v3:Release":
                continue
            out = r.get("outputs") or {}
            meta = out.get("metadata") or {}
            made.append((out["apiVersion"], out["kind"], meta.get("namespace"), meta["name"]))
    crds = []
    for o in release_objects(http, controlplane):
        if o["kind"] == "CustomResourceDefinition":
            crds.append(o["metadata"]["name"])
        else:
            made.append(
                (o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
            )
    assert len(made) > 20
    # every kind the three stacks create is in the list checked below
    kinds_made = Counter(kind for _, kind, _, _ in made)
    assert set(kinds_made) >= {
        "Namespace",
        "NetworkPolicy",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "ServiceAccount",
        "Ingress",
        "PodDisruptionBudget",
        "ClusterRole",  # bound per watched namespace: the stack sets watchNamespaces
        "Role",
        "RoleBinding",
        "Lease",  # the chart's own leader-election Lease and webhook configuration
        "ValidatingWebhookConfiguration",
    }, kinds_made

    for project in ("facade", "operator", "platform"):
        engine.run(project, "destroy", "--yes")
        assert kubernetes_resources(engine, project) == []

    left = [m for m in made if get(http, controlplane, *m) is not None]
    assert left == [], f"left behind: {left}"
    # Helm never deletes the CRDs of a chart's crds/ (that would delete every Knooppunt and
    # Gemeente in the cluster): they stay, deliberately, as with `helm uninstall`.
    assert sorted(crds) == [
        "gemeenten.knooppunt.nl",
        "knooppunten.knooppunt.nl",
        "sectorconnectors.knooppunt.nl",
    ]
    for crd in crds:
        assert (
            get(
                http, controlplane, "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, crd
            )
            is not None
        )
    with capsys.disabled():
        print(f"\nobjects destroyed: {len(made)}; kept by Helm's policy: CRDs {sorted(crds)}")
        for project, counts in CREATED.items():
            print(f"  {project}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
