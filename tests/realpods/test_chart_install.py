"""`helm install` of charts/knooppunt-operator with the operator image built from this tree, on
the real node: two operator pods, one holds the Lease, the API server calls the webhook through
the chart's Service, a Knooppunt applied afterwards runs as a real pod; `helm upgrade` rolls the
operator; after the custom resources are deleted, `helm uninstall` leaves nothing behind.

"Nothing behind" is checked against the whole API: every listable resource of every API group
is listed before the install, at the peak (chart + operator + node running) and after the
uninstall. Everything that appeared in between (the kinds are named in the assertion) must be
gone; the CRDs stay (Helm's policy for crds/, docs/deploy.md "Uninstalling").
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from knooppunt_operator import kube

from tests.controlplane.cluster import wait_for
from tests.iac.helm import CHART, Helm, helm_path
from tests.operator.harness import Cluster
from tests.realpods import helpers
from tests.realpods.conftest import RealPods, _unavailable

pytestmark = [pytest.mark.realpods]

RELEASE = "kp-chart"
RELEASE_NS = "knooppunt-chart"
LEASE = "knooppunt-operator"
CRD_DEFAULT_IMAGE = "ghcr.io/knooppunt/node-runtime:0.1.0"
GROUP_VERSION = "knooppunt.nl/v1alpha1"
# Churn the cluster makes by itself, not objects anything owns: Events expire (--event-ttl).
NOT_OBJECTS = {"events", "componentstatuses"}
# What Kubernetes puts into every namespace (deleted with it).
NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}

Key = tuple[str, str, str]  # (kind, namespace, name)


def _helm(rp: RealPods, home: Path) -> Helm:
    binary = helm_path()
    if not binary.is_file():
        _unavailable(f"helm is missing at {binary}: run tools/helm/build.sh")
    home.mkdir(parents=True, exist_ok=True)
    helm = Helm(binary, home)
    helm.env["KUBECONFIG"] = str(rp.cp.kubeconfig)
    return helm


def _collections(http: httpx.Client) -> Iterator[tuple[str, str]]:
    """(kind, collection path) of every resource the API server can list, in every group."""
    versions = ["/api/v1"]
    for group in http.get("/apis").json()["groups"]:
        versions.append(f"/apis/{group['preferredVersion']['groupVersion']}")
    for base in versions:
        for resource in http.get(base).json()["resources"]:
            name = resource["name"]
            if "/" in name or name in NOT_OBJECTS or "list" not in resource.get("verbs", []):
                continue
            yield resource["kind"], f"{base}/{name}"


def _answered(r: httpx.Response) -> httpx.Response | None:
    """The response, or None while the API server asks to come back (429: a CRD it has just
    learnt, or priority and fairness under load)."""
    if r.status_code in (429, 503):
        return None
    r.raise_for_status()
    return r


def snapshot(rp: RealPods) -> dict[Key, str]:
    """Every object in the cluster (all namespaces) → its uid."""
    out: dict[Key, str] = {}
    with rp.cp.client() as http:
        for kind, path in _collections(http):
            r = wait_for(
                lambda path=path: _answered(http.get(path)),
                timeout=60,
                interval=1,
                message=f"GET {path}",
            )
            for item in r.json()["items"]:
                meta = item["metadata"]
                out[(kind, meta.get("namespace", ""), meta["name"])] = meta["uid"]
    return out


# The worker node's own heartbeat Lease (the kubelet's, whenever it first renews).
NODE_HEARTBEATS = "kube-node-lease"


def appeared(before: dict[Key, str], now: dict[Key, str]) -> set[Key]:
    return {k for k, uid in now.items() if before.get(k) != uid and k[1] != NODE_HEARTBEATS}


def _release_pods(rp: RealPods) -> list[dict[str, Any]]:
    with rp.cp.client() as http:
        r = http.get(
            f"/api/v1/namespaces/{RELEASE_NS}/pods",
            params={"labelSelector": f"app.kubernetes.io/instance={RELEASE}"},
        )
        r.raise_for_status()
    return list(r.json()["items"])


def _ready_operator_pods(rp: RealPods, count: int) -> list[dict[str, Any]]:
    every = _release_pods(rp)
    ready = [p for p in every if helpers.ready(p) and not p["metadata"].get("deletionTimestamp")]
    return ready if len(ready) == count == len(every) else []


def _get(rp: RealPods, path: str) -> httpx.Response:
    with rp.cp.client() as http:
        return http.get(path)


def _lease_holder(rp: RealPods) -> str | None:
    r = _get(rp, f"/apis/coordination.k8s.io/v1/namespaces/{RELEASE_NS}/leases/{LEASE}")
    return r.json().get("spec", {}).get("holderIdentity") if r.status_code == 200 else None


def _upgrade_args(helm: Helm, command: str, values: dict[str, Any]) -> list[str]:
    return [
        command,
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE_NS,
        "--values",
        str(helm.values_file(values)),
        "--wait",
        "--timeout",
        "8m",
    ]


def _refused_by_webhook(rp: RealPods, ns: str) -> str:
    """Apply a connector whose purpose releases a field the standard lacks: the API server
    must ask the webhook (through the chart's Service) and refuse it."""
    broken = copy.deepcopy(helpers.documents("connector.yaml")[0])
    broken["metadata"]["namespace"] = ns
    broken["metadata"]["name"] = "iwmo-broken"
    broken["spec"]["purposes"][0]["fields"].append("clienten[].onbekend")
    path = rp.cp.resource_path(GROUP_VERSION, "SectorConnector", ns, "iwmo-broken")
    with rp.cp.client() as http:
        r = http.patch(
            path,
            params={"fieldManager": "realpods", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
            json=broken,
        )
    assert r.status_code != 200, "the broken connector was admitted"
    return str(r.json().get("message", "")) if "admission webhook" in r.text else ""


def _delete_custom_resources(rp: RealPods, ns: str) -> None:
    """The custom resources go while the operator runs (the gemeenten and connectors carry its
    finalizer). The Knooppunt first, unlike docs/deploy.md's order: before letting a gemeente
    go the operator asks its nodes for undelivered messages at `<node>.<namespace>.svc`, and
    this test cluster has no cluster DNS, so with the node still there that question would
    never be answered. With the node gone there is no one to ask."""
    with rp.cp.client() as http:
        path = rp.cp.resource_path(GROUP_VERSION, "Knooppunt", ns, helpers.NODE)
        http.delete(path)
        wait_for(
            lambda: http.get(path).status_code == 404 and not helpers.pods(rp, ns),
            timeout=180,
            interval=1,
            message="the Knooppunt and its pods gone",
        )
        for kind in ("Gemeente", "SectorConnector"):
            base = rp.cp.resource_path(GROUP_VERSION, kind, ns, "x").rsplit("/", 1)[0]
            http.delete(base)  # the whole collection
            wait_for(
                lambda base=base: not http.get(base).json()["items"],
                timeout=180,
                interval=1,
                message=f"every {kind} deleted (the operator lets go of its finalizer)",
            )


def _namespace_gone(rp: RealPods, name: str) -> None:
    with rp.cp.client() as http:
        http.delete(f"/api/v1/namespaces/{name}")
        wait_for(
            lambda: http.get(f"/api/v1/namespaces/{name}").status_code == 404,
            timeout=180,
            interval=1,
            message=f"namespace {name} deleted",
        )


def test_chart_installs_runs_upgrades_and_uninstalls(realpods: RealPods, tmp_path: Path) -> None:
    rp = realpods
    helm = _helm(rp, tmp_path / "helm")
    repository, tag = rp.images.operator.rsplit(":", 1)
    pki = helpers.dev_pki(tmp_path / "pki")
    before = snapshot(rp)
    crds = {k: v for k, v in before.items() if k[0] == "CustomResourceDefinition"}
    assert {k[2] for k in crds} >= {
        "knooppunten.knooppunt.nl",
        "sectorconnectors.knooppunt.nl",
        "gemeenten.knooppunt.nl",
    }

    with helpers.namespace(rp) as ns, helpers.sqlite_volume(rp, ns):
        values: dict[str, Any] = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "watchNamespaces": [ns],
            "logLevel": "info",
        }
        installed = False
        try:
            helm.run(*_upgrade_args(helm, "install", values), "--create-namespace", timeout=600)
            installed = True
            pods = wait_for(
                lambda: _ready_operator_pods(rp, 2),
                timeout=300,
                interval=1,
                message="two ready operator pods",
            )
            names = {p["metadata"]["name"] for p in pods}
            assert all(p["spec"]["nodeName"] == rp.node.name for p in pods)
            assert {p["spec"]["containers"][0]["image"] for p in pods} == {rp.images.operator}

            leader = wait_for(
                lambda: _lease_holder(rp), timeout=120, interval=1, message="the Lease held"
            )
            assert leader in names

            # The webhook configuration is the chart's; the API server calls the pods through
            # the chart's Service (every replica serves it).
            config = _get(
                rp,
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                f"{RELEASE}-knooppunt-operator",
            ).json()
            assert config["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            assert config["webhooks"][0]["clientConfig"]["service"]["namespace"] == RELEASE_NS
            message = wait_for(
                lambda: _refused_by_webhook(rp, ns),
                timeout=120,
                interval=2,
                message="the webhook's refusal",
            )
            assert "onbekend" in message

            # A Knooppunt applied afterwards ends as a running node pod.
            helpers.apply_example(rp, ns, pki)
            wait_for(
                lambda: any(helpers.ready(p) for p in helpers.pods(rp, ns)),
                timeout=420,
                interval=2,
                message="the node's pod ready",
            )

            async def knooppunt_ready() -> None:
                admin = kube.Credentials.from_kubeconfig(rp.cp.kubeconfig)
                async with kube.KubeClient(admin) as client:
                    await Cluster(client, ns).wait_condition(
                        kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=180, interval=1
                    )

            asyncio.run(knooppunt_ready())
            peak = snapshot(rp)

            # helm upgrade with a changed value rolls the operator's pods; the Lease, the
            # webhook configuration and the certificate stay the release's.
            values["logLevel"] = "debug"
            helm.run(*_upgrade_args(helm, "upgrade", values), timeout=600)
            new = wait_for(
                lambda: _ready_operator_pods(rp, 2),
                timeout=300,
                interval=1,
                message="two ready operator pods after the upgrade",
            )
            assert not names & {p["metadata"]["name"] for p in new}
            assert all("--verbose" in p["spec"]["containers"][0]["command"] for p in new)
            wait_for(
                lambda: _lease_holder(rp) in {p["metadata"]["name"] for p in new},
                timeout=120,
                interval=1,
                message="a new pod holds the Lease",
            )
            assert wait_for(lambda: _refused_by_webhook(rp, ns), timeout=120, interval=2)

            _delete_custom_resources(rp, ns)
        finally:
            if installed:
                helm.run(
                    "uninstall",
                    RELEASE,
                    "--namespace",
                    RELEASE_NS,
                    "--wait",
                    "--timeout",
                    "5m",
                    timeout=400,
                )

        # The release namespace holds nothing but what Kubernetes puts into every namespace
        # (Helm never deletes a namespace, not even one --create-namespace made), once the
        # operator's pods have stopped (their grace period outlasts `helm uninstall --wait`).
        def left() -> set[tuple[str, str]]:
            everything = snapshot(rp)
            return {(k, name) for k, namespace, name in everything if namespace == RELEASE_NS}

        wait_for(
            lambda: left() <= NAMESPACE_DEFAULTS,
            timeout=120,
            interval=2,
            message="the release namespace emptied",
        )
        assert left() <= NAMESPACE_DEFAULTS, sorted(left() - NAMESPACE_DEFAULTS)
    _namespace_gone(rp, RELEASE_NS)
    _namespace_gone(rp, ns)

    created = appeared(before, peak)
    kinds = {k[0] for k in created}
    # What the chart installs and what the operator made at runtime (the node's objects, the
    # Lease's holder); each of these kinds must have appeared, and nothing may remain.
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "ClusterRole",  # bound per watched namespace (RoleBinding): watchNamespaces is set
        "Role",
        "RoleBinding",
        "Service",
        "EndpointSlice",
        "Deployment",
        "ReplicaSet",
        "Pod",
        "PodDisruptionBudget",
        "ValidatingWebhookConfiguration",
        "Lease",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Knooppunt",
        "SectorConnector",
        "Gemeente",
    }, sorted(kinds)

    def remaining() -> list[Key]:
        return sorted(appeared(before, snapshot(rp)))

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not remaining(), timeout=120, interval=2, message="no strays")
    assert remaining() == []
    # CRDs stay, the same objects as before the install (docs/deploy.md, "Uninstalling").
    after = snapshot(rp)
    assert {k: after.get(k) for k in crds} == crds
