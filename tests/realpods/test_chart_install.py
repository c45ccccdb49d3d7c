"""`helm install` of charts/knooppunt-operator with the operator image built from this tree, on
the real node: two operator pods, one holds the Lease, the API server calls the webhook through
the chart's Service, a Knooppunt applied afterwards runs as a real pod; `helm upgrade` rolls the
operator, `helm uninstall` leaves nothing of the release behind.
"""

from __future__ import annotations

import asyncio
import copy
import time
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
CRD_DEFAULT_IMAGE = "ghcr.io/knooppunt/node-runtime:0.1.0"


def _helm(rp: RealPods, home: Path) -> Helm:
    binary = helm_path()
    if not binary.is_file():
        _unavailable(f"helm is missing at {binary}: run tools/helm/build.sh")
    home.mkdir(parents=True, exist_ok=True)
    helm = Helm(binary, home)
    helm.env["KUBECONFIG"] = str(rp.cp.kubeconfig)
    return helm


def _release_pods(rp: RealPods) -> list[dict[str, Any]]:
    with rp.cp.client() as http:
        r = http.get(
            f"/api/v1/namespaces/{RELEASE_NS}/pods",
            params={"labelSelector": f"app.kubernetes.io/instance={RELEASE}"},
        )
        r.raise_for_status()
    return list(r.json()["items"])


def _ready_operator_pods(rp: RealPods, count: int) -> list[dict[str, Any]]:
    pods = [
        p
        for p in _release_pods(rp)
        if helpers.ready(p) and not p["metadata"].get("deletionTimestamp")
    ]
    return pods if len(pods) == count and len(_release_pods(rp)) == count else []


def _get(rp: RealPods, path: str) -> httpx.Response:
    with rp.cp.client() as http:
        return http.get(path)


def _leftovers(rp: RealPods) -> list[str]:
    selector = {"labelSelector": f"app.kubernetes.io/instance={RELEASE}"}
    paths = [
        f"/api/v1/namespaces/{RELEASE_NS}/pods",
        f"/api/v1/namespaces/{RELEASE_NS}/services",
        f"/api/v1/namespaces/{RELEASE_NS}/secrets",
        f"/api/v1/namespaces/{RELEASE_NS}/serviceaccounts",
        f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments",
        f"/apis/apps/v1/namespaces/{RELEASE_NS}/replicasets",
        f"/apis/policy/v1/namespaces/{RELEASE_NS}/poddisruptionbudgets",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{RELEASE_NS}/roles",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{RELEASE_NS}/rolebindings",
    ]
    out = []
    with rp.cp.client() as http:
        for path in paths:
            r = http.get(path, params=selector)
            r.raise_for_status()
            out += [f"{path}/{i['metadata']['name']}" for i in r.json()["items"]]
    return out


def test_chart_installs_runs_upgrades_and_uninstalls(realpods: RealPods, tmp_path: Path) -> None:
    rp = realpods
    helm = _helm(rp, tmp_path / "helm")
    repository, tag = rp.images.operator.rsplit(":", 1)
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(rp) as ns, helpers.sqlite_volume(rp, ns):
        values = {
            "image": {"repository": repository, "tag": tag},
            "watchNamespaces": [ns],
            "logLevel": "info",
        }
        helm.run(
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--create-namespace",
            "--values",
            str(helm.values_file(values)),
            "--wait",
            "--timeout",
            "8m",
        )
        try:
            pods = wait_for(
                lambda: _ready_operator_pods(rp, 2),
                timeout=300,
                interval=1,
                message="two ready operator pods",
            )
            names = {p["metadata"]["name"] for p in pods}
            assert all(p["spec"]["nodeName"] == rp.node.name for p in pods)
            assert {p["spec"]["containers"][0]["image"] for p in pods} == {rp.images.operator}

            def holder() -> str | None:
                r = _get(
                    rp,
                    f"/apis/coordination.k8s.io/v1/namespaces/{RELEASE_NS}/leases/"
                    "knooppunt-operator",
                )
                return r.json()["spec"].get("holderIdentity") if r.status_code == 200 else None

            leader = wait_for(holder, timeout=120, interval=1, message="the Lease held")
            assert leader in names

            # The webhook: the API server calls the operator pods through the chart's Service
            # and refuses a connector whose purpose releases a field the standard lacks.
            def webhook_registered() -> bool:
                r = _get(
                    rp, "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
                )
                return any(
                    w["clientConfig"].get("service", {}).get("namespace") == RELEASE_NS
                    for c in r.json()["items"]
                    for w in c.get("webhooks") or []
                )

            wait_for(webhook_registered, timeout=120, interval=1, message="webhook registered")
            broken = copy.deepcopy(helpers.documents("connector.yaml")[0])
            broken["metadata"]["namespace"] = ns
            broken["spec"]["purposes"][0]["fields"].append("clienten[].onbekend")
            path = rp.cp.resource_path(
                "knooppunt.nl/v1alpha1", "SectorConnector", ns, broken["metadata"]["name"]
            )

            def refused() -> str:
                with rp.cp.client() as http:
                    r = http.patch(
                        path,
                        params={"fieldManager": "t", "force": "true"},
                        headers={"Content-Type": "application/apply-patch+yaml"},
                        json=broken,
                    )
                assert r.status_code != 200, "the broken connector was admitted"
                return str(r.json().get("message", "")) if "admission webhook" in r.text else ""

            message = wait_for(refused, timeout=120, interval=2, message="webhook refusal")
            assert "onbekend" in message

            # A Knooppunt applied afterwards ends as a running node pod (CRD-default image).
            spec: dict[str, Any] = {}
            if rp.images.node_runtime != CRD_DEFAULT_IMAGE:
                spec["image"] = rp.images.node_runtime
            helpers.apply_example(rp, ns, pki, **spec)
            if not spec:
                kp = (
                    rp.cp.client()
                    .get(
                        rp.cp.resource_path("knooppunt.nl/v1alpha1", "Knooppunt", ns, helpers.NODE)
                    )
                    .json()
                )
                assert kp["spec"]["image"] == CRD_DEFAULT_IMAGE == rp.images.node_runtime

            def node_pod_ready() -> bool:
                return any(helpers.ready(p) for p in helpers.pods(rp, ns))

            wait_for(node_pod_ready, timeout=420, interval=2, message="the node's pod ready")

            async def knooppunt_ready() -> None:
                admin = kube.Credentials.from_kubeconfig(rp.cp.kubeconfig)
                async with kube.KubeClient(admin) as client:
                    await Cluster(client, ns).wait_condition(
                        kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=120, interval=1
                    )

            asyncio.run(knooppunt_ready())

            # helm upgrade with a changed value rolls the operator's pods.
            values["logLevel"] = "debug"
            helm.run(
                "upgrade",
                RELEASE,
                str(CHART),
                "--namespace",
                RELEASE_NS,
                "--values",
                str(helm.values_file(values)),
                "--wait",
                "--timeout",
                "8m",
            )
            new = wait_for(
                lambda: _ready_operator_pods(rp, 2),
                timeout=300,
                interval=1,
                message="two ready operator pods after the upgrade",
            )
            assert not names & {p["metadata"]["name"] for p in new}
            assert all("--verbose" in p["spec"]["containers"][0]["command"] for p in new)
        finally:
            # Resources first (their finalizers need the operator), then the release.
            with rp.cp.client() as http:
                http.delete(
                    rp.cp.resource_path("knooppunt.nl/v1alpha1", "Knooppunt", ns, helpers.NODE)
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and helpers.pods(rp, ns):
                time.sleep(1)
            helm.run(
                "uninstall",
                RELEASE,
                "--namespace",
                RELEASE_NS,
                "--wait",
                "--timeout",
                "5m",
                check=False,
            )

        assert (
            wait_for(
                lambda: not _leftovers(rp) or None,
                timeout=120,
                interval=1,
                message=f"nothing left of the release: {_leftovers(rp)}",
            )
            is None
            or True
        )
        assert _leftovers(rp) == []
        # Documented (docs/deploy.md, Uninstalling): the webhook configuration is registered
        # by the operator, not by Helm, and is deleted by hand.
        with rp.cp.client() as http:
            http.delete(
                "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/knooppunt.nl"
            )
            http.delete(f"/api/v1/namespaces/{RELEASE_NS}")
