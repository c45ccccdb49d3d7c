"""Every Kubernetes object the stacks and the chart declare, server-side dry-run applied.

Against the real control plane (tests/controlplane): server-side apply with
``dryRun=All`` and ``fieldValidation=Strict``, so an unknown field, a wrong type or an
apiVersion the API server does not serve fails here. Warnings fail too, which catches pod
templates that Pod Security ``restricted`` would refuse (the API server warns about
Deployments in an enforcing namespace).

What exists for real: the CRDs (from the chart's crds/) and the platform's namespaces
(with their Pod Security labels), because namespaced objects and custom resources can only
be dry-run into them. The namespaces get a per-run suffix so nothing collides with other
tests sharing the control plane; everything else is exactly what the programs declare.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.controlplane.cluster import KubeCluster, wait_for
from tests.iac.conftest import platform_config, platform_outputs
from tests.iac.harness import REPO, STACKS, Run, load_config, run_stack
from tests.iac.manifests import manifest, plain

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("pulumi_available")]

FIELD_MANAGER = "knooppunt-iac-dry-run"
SUFFIX = uuid.uuid4().hex[:5]
COVERED: Counter[str] = Counter()


class Applier:
    def __init__(self, cp: KubeCluster, http: httpx.Client) -> None:
        self.cp = cp
        self.http = http

    def apply(self, obj: dict[str, Any], *, source: str, dry_run: bool = True) -> None:
        meta = obj["metadata"]
        try:
            path = self.cp.resource_path(
                obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]
            )
        except (KeyError, httpx.HTTPStatusError) as exc:
            raise AssertionError(f"{source}: {exc} (apiVersion or kind not served)") from exc
        params = {"fieldManager": FIELD_MANAGER, "force": "true", "fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        r = self.http.patch(
            path,
            params=params,
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        what = f"{source}: {obj['kind']} {meta.get('namespace', '')}/{meta['name']}"
        assert r.status_code < 400, f"{what} refused: {r.status_code} {r.text}"
        warnings = r.headers.get_list("warning")
        assert not warnings, f"{what} drew warnings: {warnings}"
        if dry_run:
            COVERED[source] += 1

    def apply_all(self, objects: list[dict[str, Any]], *, source: str) -> None:
        assert objects, f"{source}: nothing to apply"
        for obj in objects:
            self.apply(obj, source=source)


def renamed(name: str) -> str:
    return f"{name}-{SUFFIX}"[:63]


def platform_overrides(stack: str, bundle: tuple[Path, str]) -> dict[str, Any]:
    overrides = platform_config(stack, bundle)
    _, config = load_config(STACKS / "platform", stack)
    ns = json.loads(config["knooppunt-platform:namespaces"])
    ns = {
        **ns,
        "operator": renamed(ns["operator"]),
        "facade": renamed(ns["facade"]),
        "nodes": [renamed(n) for n in ns["nodes"]],
    }
    pki = overrides.get("knooppunt-platform:pki") or json.loads(config["knooppunt-platform:pki"])
    for node in pki.get("nodes", []):
        node["namespace"] = renamed(node["namespace"])
    return {**overrides, "knooppunt-platform:namespaces": ns, "knooppunt-platform:pki": pki}


@pytest.fixture(scope="module")
def applier(controlplane: KubeCluster) -> Iterator[Applier]:
    with controlplane.client() as http:
        yield Applier(controlplane, http)
    print("\ndry-run coverage:", dict(COVERED))


@pytest.fixture(scope="module")
def crds(applier: Applier, helm: Any) -> list[str]:
    """The chart's CRDs for real (custom resources are validated against them)."""
    docs = [d for d in helm.template(include_crds=True) if d["kind"] == "CustomResourceDefinition"]
    for crd in docs:
        applier.apply(crd, source="chart CRDs (installed)", dry_run=False)
    http = applier.http
    for crd in docs:
        wait_for(
            lambda c=crd: any(
                cond["type"] == "Established" and cond["status"] == "True"
                for cond in http.get(
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                    f"{c['metadata']['name']}"
                )
                .json()
                .get("status", {})
                .get("conditions", [])
            ),
            timeout=60,
            message=f"CRD {crd['metadata']['name']} established",
        )
    applier.cp.forget_discovery()
    return [d["metadata"]["name"] for d in docs]


@pytest.fixture(scope="module")
def stacks(pulumi_available: None, ca_bundle: tuple[Path, str]) -> dict[tuple[str, str], Run]:
    out: dict[tuple[str, str], Run] = {}
    for stack in ("dev", "prod"):
        platform = run_stack("platform", stack, overrides=platform_overrides(stack, ca_bundle))
        out[("platform", stack)] = platform
        refs = {f"organization/knooppunt-platform/{stack}": platform_outputs(platform)}
        for project in ("operator", "facade"):
            out[(project, stack)] = run_stack(project, stack, stack_outputs=refs)
    return out


@pytest.fixture(scope="module")
def namespaces(applier: Applier, stacks: dict[tuple[str, str], Run]) -> Iterator[dict[str, str]]:
    """The platform's namespaces, dry-run and then created for real (dev and prod alike)."""
    made: dict[str, str] = {}
    for stack in ("dev", "prod"):
        for resource in stacks[("platform", stack)].of_type("kubernetes:core/v1:Namespace"):
            obj = manifest(resource)
            applier.apply(obj, source=f"platform/{stack}")
            applier.apply(obj, source="platform namespaces (created)", dry_run=False)
            made[obj["metadata"]["name"]] = stack
    yield made
    for name in made:  # unique names: deleting them races with nobody
        applier.http.delete(f"/api/v1/namespaces/{name}")


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize("project", ["platform", "facade"])
def test_stack_objects_dry_run(
    applier: Applier,
    namespaces: dict[str, str],
    stacks: dict[tuple[str, str], Run],
    project: str,
    stack: str,
) -> None:
    objects = [
        manifest(r)
        for r in stacks[(project, stack)].kubernetes()
        if r.type != "kubernetes:core/v1:Namespace"
    ]
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        assert ns is None or ns in namespaces, f"{obj['kind']} in unknown namespace {ns}"
    applier.apply_all(objects, source=f"{project}/{stack}")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_operator_release_objects_dry_run(
    applier: Applier,
    crds: list[str],
    namespaces: dict[str, str],
    stacks: dict[tuple[str, str], Run],
    helm: Any,
    stack: str,
) -> None:
    """The operator stack declares a Helm release: render its chart with the release's own
    values and namespace, CRDs included, and dry-run every object."""
    [release] = stacks[("operator", stack)].of_type("kubernetes:helm.sh/v3:Release")
    inputs = plain(release.inputs)
    assert inputs["namespace"] in namespaces
    docs = helm.template(
        inputs["values"], namespace=inputs["namespace"], release=inputs["name"], include_crds=True
    )
    applier.apply_all(docs, source=f"operator/{stack} (chart)")


@pytest.mark.parametrize("variant", ["defaults", "watch-namespaces", "no-webhook"])
def test_chart_variants_dry_run(
    applier: Applier, namespaces: dict[str, str], helm: Any, variant: str
) -> None:
    operator_ns = next(n for n in namespaces if n.startswith("knooppunt-system"))
    nodes_ns = next(n for n in namespaces if n.startswith("knooppunten"))
    values = {
        "defaults": None,
        "watch-namespaces": {"watchNamespaces": [nodes_ns], "replicaCount": 3},
        "no-webhook": {
            "webhook": {"enabled": False},
            "metrics": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
        },
    }[variant]
    docs = helm.template(values, namespace=operator_ns, release=f"kp-{variant}")
    applier.apply_all(docs, source=f"chart ({variant})")


def test_first_resources_dry_run(
    applier: Applier, crds: list[str], namespaces: dict[str, str]
) -> None:
    """What docs/deploy.md applies first: the Knooppunt, its SectorConnector, the Gemeenten."""
    nodes_ns = next(n for n in namespaces if n.startswith("knooppunten"))
    files = [
        STACKS / "facade" / "resources" / "knooppunt-zorg.yaml",
        REPO / "examples" / "iwmo" / "connector.yaml",
        REPO / "examples" / "iwmo" / "gemeenten.yaml",
    ]
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = nodes_ns
    assert {d["kind"] for d in docs} == {"Knooppunt", "SectorConnector", "Gemeente"}
    applier.apply_all(docs, source="first resources")


def test_a_broken_object_is_refused(applier: Applier, namespaces: dict[str, str]) -> None:
    """The check has teeth: an unknown field, an unserved apiVersion and a pod that
    Pod Security restricted would refuse all fail."""
    nodes_ns = next(n for n in namespaces if n.startswith("knooppunten"))
    bad_field = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": nodes_ns},
        "spec": {"podSelector": {}, "policyType": ["Ingress"]},
    }
    with pytest.raises(AssertionError, match="field not declared in schema"):
        applier.apply(bad_field, source="negative")
    old_api = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "bad", "namespace": nodes_ns},
        "spec": {},
    }
    with pytest.raises(AssertionError, match="not served"):
        applier.apply(old_api, source="negative")
    root = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": nodes_ns},
        "spec": {
            "selector": {"matchLabels": {"app": "bad"}},
            "template": {
                "metadata": {"labels": {"app": "bad"}},
                "spec": {"containers": [{"name": "c", "image": "x:1"}]},
            },
        },
    }
    with pytest.raises(AssertionError, match="violate PodSecurity"):
        applier.apply(root, source="negative")
    COVERED.pop("negative", None)
