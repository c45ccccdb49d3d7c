"""Smoke tests of the real control plane used by the operator tests.

They check the behaviour the operator relies on, against real etcd +
kube-apiserver + kube-controller-manager + kube-scheduler + kwok: CRDs and
structural schemas, server-side apply, controllers (Deployments, garbage
collection) and RBAC.  Plain httpx over TLS with client certificates.

They run unchanged against an existing cluster (``$KNOOPPUNT_TEST_KUBECONFIG``): there the
Deployment's pods run a real image and test users get certificates through the
CertificateSigningRequest API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.controlplane import capabilities
from tests.controlplane.capabilities import Capabilities
from tests.controlplane.cluster import ControlPlane, KubeCluster, client_from_kubeconfig, wait_for

pytestmark = pytest.mark.controlplane

GROUP = "smoke.knooppunt.test"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "colour": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None


@pytest.fixture
def http(controlplane: KubeCluster) -> Iterator[httpx.Client]:
    with controlplane.client() as client:
        yield client


def test_apiserver_ready_and_versioned(
    controlplane: KubeCluster, http: httpx.Client, cluster_capabilities: Capabilities
) -> None:
    r = http.get("/readyz", params={"verbose": "1"})
    assert r.status_code == 200, r.text
    version = http.get("/version").json()
    assert version["gitVersion"].startswith("v1."), version
    assert version["major"] == "1"
    # The admin kubeconfig is valid on its own (embedded CA + client cert or token).
    with client_from_kubeconfig(controlplane.kubeconfig) as kc:
        review = kc.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        review.raise_for_status()
        info = review.json()["status"]["userInfo"]
        if cluster_capabilities.local:  # its own PKI: the admin is known exactly
            assert info["username"] == "kubernetes-admin"
            assert "system:masters" in info["groups"]
        assert "system:authenticated" in info["groups"], info
        # The admin may do everything (the suite installs CRDs and cluster RBAC).
        access = kc.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}},
            },
        )
        access.raise_for_status()
        assert access.json()["status"]["allowed"] is True, access.json()["status"]


def test_create_namespace(http: httpx.Client) -> None:
    name = _name("smoke-ns")
    r = http.post(
        "/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    assert r.status_code == 201, r.text
    ns = http.get(f"/api/v1/namespaces/{name}").json()
    assert ns["status"]["phase"] == "Active"
    # The namespace lifecycle runs: deletion finishes (namespace controller).
    http.delete(f"/api/v1/namespaces/{name}").raise_for_status()
    wait_for(
        lambda: http.get(f"/api/v1/namespaces/{name}").status_code == 404,
        timeout=60,
        message=f"namespace {name} to be deleted",
    )


def test_crd_established_and_schema_enforced(
    controlplane: KubeCluster, http: httpx.Client, controlplane_namespace: str
) -> None:
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
    controlplane.apply(WIDGET_CRD, client=http)
    wait_for(
        lambda: _condition(http.get(crd_path).json(), "Established") == "True",
        timeout=30,
        message="CRD Established",
    )
    ns = controlplane_namespace
    base = f"/apis/{GROUP}/v1/namespaces/{ns}/widgets"
    # Discovery of a new group can lag Established by a moment.
    wait_for(lambda: http.get(base).status_code == 200, timeout=30, message="widgets served")

    ok = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "good"},
        "spec": {"size": 3, "colour": "red"},
    }
    r = http.post(base, json=ok)
    assert r.status_code == 201, r.text
    assert http.get(f"{base}/good").json()["spec"] == {"size": 3, "colour": "red"}

    # Structural schema: type, range, enum and required are enforced...
    for bad_spec in ({"size": "big"}, {"size": 99}, {"size": 2, "colour": "green"}, {}):
        bad = {**ok, "metadata": {"name": _name("bad")}, "spec": bad_spec}
        r = http.post(base, json=bad)
        assert r.status_code == 422, (bad_spec, r.status_code, r.text)
        assert r.json()["reason"] == "Invalid"
    # ...unknown fields are pruned, or refused with strict field validation.
    extra = {**ok, "metadata": {"name": "extra"}, "spec": {"size": 1, "bogus": True}}
    r = http.post(base, json=extra, params={"fieldValidation": "Strict"})
    assert r.status_code == 400, r.text
    r = http.post(base, json=extra)
    assert r.status_code == 201, r.text
    assert "bogus" not in r.json()["spec"]

    # The status subresource is separate from the main resource.
    obj = http.get(f"{base}/good").json()
    obj["status"] = {"phase": "Ready"}
    r = http.put(f"{base}/good/status", json=obj)
    assert r.status_code == 200, r.text
    assert http.get(f"{base}/good").json()["status"] == {"phase": "Ready"}


def test_server_side_apply_is_idempotent(
    controlplane: KubeCluster, http: httpx.Client, controlplane_namespace: str
) -> None:
    ns = controlplane_namespace
    path = f"/api/v1/namespaces/{ns}/configmaps/ssa"
    manifest = (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: ssa\n"
        f"  namespace: {ns}\n"
        "data:\n"
        "  key: value\n"
    )
    params = {"fieldManager": "knooppunt-smoke"}
    headers = {"Content-Type": "application/apply-patch+yaml"}

    first = http.patch(path, params=params, headers=headers, content=manifest)
    assert first.status_code == 201, first.text  # created
    second = http.patch(path, params=params, headers=headers, content=manifest)
    assert second.status_code == 200, second.text
    # No change the second time: same resourceVersion, nothing written.
    version = first.json()["metadata"]["resourceVersion"]
    assert second.json()["metadata"]["resourceVersion"] == version
    managers = {m["manager"] for m in second.json()["metadata"]["managedFields"]}
    assert managers == {"knooppunt-smoke"}

    # A different manager touching the same field conflicts unless forced.
    other = manifest.replace("key: value", "key: other")
    r = http.patch(path, params={"fieldManager": "intruder"}, headers=headers, content=other)
    assert r.status_code == 409, r.text
    r = http.patch(
        path, params={"fieldManager": "intruder", "force": "true"}, headers=headers, content=other
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"key": "other"}


def test_deployment_gets_replicaset_and_running_pods(
    http: httpx.Client, controlplane_namespace: str, cluster_capabilities: Capabilities
) -> None:
    ns = controlplane_namespace
    labels = {"app": "smoke"}
    # The kwok node "runs" any image, even one that does not exist; real nodes pull it.
    fake_node = cluster_capabilities.has(capabilities.FAKE_NODE)
    image = "example.invalid/smoke:1" if fake_node else cluster_capabilities.pod_image
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }
    r = http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment)
    assert r.status_code == 201, r.text
    uid = r.json()["metadata"]["uid"]

    def replicasets() -> list[dict[str, Any]]:
        items = http.get(f"/apis/apps/v1/namespaces/{ns}/replicasets").json()["items"]
        return [
            rs
            for rs in items
            if any(o["uid"] == uid for o in rs["metadata"].get("ownerReferences", []))
        ]

    (rs,) = wait_for(replicasets, timeout=60, message="ReplicaSet of the Deployment")
    assert rs["spec"]["replicas"] == 2

    def running_pods() -> list[dict[str, Any]]:
        pods = http.get(f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "app=smoke"})
        items = pods.json()["items"]
        running = [p for p in items if p.get("status", {}).get("phase") == "Running"]
        return running if len(running) == 2 else []

    pods = wait_for(running_pods, timeout=90 if fake_node else 300, message="2 Running pods")
    if fake_node:
        assert all(p["spec"]["nodeName"] == ControlPlane.KWOK_NODE for p in pods)

    def available() -> dict[str, Any] | None:
        d = http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/smoke").json()
        ok = d.get("status", {}).get("availableReplicas") == 2
        return d if ok and _condition(d, "Available") == "True" else None

    wait_for(available, timeout=90, message="Deployment Available")


def test_garbage_collection_deletes_dependents(
    http: httpx.Client, controlplane_namespace: str
) -> None:
    ns = controlplane_namespace
    base = f"/api/v1/namespaces/{ns}/configmaps"
    owner = http.post(
        base, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}
    )
    owner.raise_for_status()
    owner_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.json()["metadata"]["uid"],
    }
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "dependent", "ownerReferences": [owner_ref]},
    }
    http.post(base, json=dependent).raise_for_status()
    http.delete(f"{base}/owner", params={"propagationPolicy": "Background"}).raise_for_status()
    wait_for(
        lambda: http.get(f"{base}/dependent").status_code == 404,
        timeout=60,
        message="garbage collector to delete the dependent",
    )


def test_rbac_restricts_users_and_service_accounts(
    controlplane: KubeCluster, http: httpx.Client, controlplane_namespace: str
) -> None:
    ns = controlplane_namespace
    user = _name("alice")
    kubeconfig = controlplane.kubeconfig_for_user(user, groups=["knooppunt:testers"])
    with client_from_kubeconfig(kubeconfig) as alice:
        # Authenticated (not 401), but RBAC grants nothing yet.
        r = alice.get(f"/api/v1/namespaces/{ns}/configmaps")
        assert r.status_code == 403, r.text
        assert r.json()["reason"] == "Forbidden"

        # Grant read access to configmaps in this namespace only.
        controlplane.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "cm-reader", "namespace": ns},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
                ],
            },
            client=http,
        )
        controlplane.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "cm-reader", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "cm-reader",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
            client=http,
        )
        # The authorizer sees the binding once its informer has it: poll briefly.
        wait_for(
            lambda: alice.get(f"/api/v1/namespaces/{ns}/configmaps").status_code == 200,
            timeout=30,
            message="RoleBinding to take effect",
        )
        assert alice.get("/api/v1/namespaces/default/configmaps").status_code == 403
        r = alice.post(
            f"/api/v1/namespaces/{ns}/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nope"}},
        )
        assert r.status_code == 403, r.text

    # A service account token is authenticated and equally restricted.
    sa_kubeconfig = controlplane.kubeconfig_for_service_account(ns, "robot")
    with client_from_kubeconfig(sa_kubeconfig) as robot:
        review = robot.post(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        review.raise_for_status()
        assert review.json()["status"]["userInfo"]["username"] == (
            f"system:serviceaccount:{ns}:robot"
        )
        assert robot.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403

    # Unauthenticated requests are anonymous and get nothing either.
    with httpx.Client(base_url=controlplane.server, verify=False) as anon:
        assert anon.get(f"/api/v1/namespaces/{ns}/configmaps").status_code in (401, 403)
