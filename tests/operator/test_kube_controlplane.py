"""The one Kubernetes client (kubernetes_asyncio) against the real API server: an exec
credential plugin and a KUBECONFIG of several paths, for the operator's client, kopf's login
and the runtime's Gemeente watch."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from knooppunt_operator import kube

from node_runtime.state.kubernetes_source import GemeenteWatch, from_kubeconfig
from tests.conftest import REPO
from tests.controlplane.cluster import KubeCluster

pytestmark = pytest.mark.controlplane

PLUGIN = """\
import datetime, json, pathlib, sys
token_file, runs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
    "status": {"token": token_file.read_text().strip(),
               "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


def split_kubeconfig(cluster: KubeCluster, namespace: str, tmp_path: Path) -> tuple[str, Path]:
    """KUBECONFIG ``a:b``: ``a`` names the cluster and the current context, ``b`` the user,
    whose token comes from an exec plugin (as with EKS, GKE or AKS); the plugin counts its
    runs in the returned file."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    name = "plugin-user"
    token = cluster.service_account_token(namespace, name, expiration_seconds=3600)
    (tmp_path / "token").write_text(token)
    (tmp_path / "plugin.py").write_text(PLUGIN)
    runs = tmp_path / "runs"
    first = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "split",
        "clusters": [{"name": "split-cluster", "cluster": admin["clusters"][0]["cluster"]}],
        "contexts": [
            {
                "name": "split",
                "context": {
                    "cluster": "split-cluster",
                    "user": "exec-user",
                    "namespace": namespace,
                },
            }
        ],
    }
    second = {
        "apiVersion": "v1",
        "kind": "Config",
        "users": [
            {
                "name": "exec-user",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": [str(tmp_path / "plugin.py"), str(tmp_path / "token"), str(runs)],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }
    for file, content in (("a.yaml", first), ("b.yaml", second)):
        (tmp_path / file).write_text(yaml.safe_dump(content))
    with cluster.client() as http:
        for obj in (
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "read-gemeenten", "namespace": namespace},
                "rules": [
                    {
                        "apiGroups": ["knooppunt.nl"],
                        "resources": ["gemeenten"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "read-gemeenten", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-gemeenten",
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ):
            kind = "roles" if obj["kind"] == "Role" else "rolebindings"
            http.post(
                f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{kind}", json=obj
            ).raise_for_status()
    paths = os.pathsep.join(str(tmp_path / f) for f in ("a.yaml", "missing.yaml", "b.yaml"))
    return paths, runs


def install_crds(cluster: KubeCluster) -> None:
    for path in sorted((REPO / "crds").glob("knooppunt.nl_*.yaml")):
        cluster.apply(yaml.safe_load(path.read_text()))


def wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def gemeente(namespace: str, index: int) -> dict[str, Any]:
    code = f"{index:04d}"
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Gemeente",
        "metadata": {"name": f"gemeente-{code}", "namespace": namespace},
        "spec": {
            "gemeentecode": code,
            "oin": f"00000001{index:012d}",
            "displayName": f"Gemeente {code}",
            "subscriptions": [
                {
                    "connector": "iwmo-2-1",
                    "purpose": "wmo-toewijzing",
                    "legalBasis": "Wmo 2015 art. 5.1.1",
                }
            ],
        },
    }


def test_operator_client_with_exec_plugin_and_several_kubeconfig_paths(
    controlplane: KubeCluster, controlplane_namespace: str, tmp_path: Path
) -> None:
    namespace = controlplane_namespace
    install_crds(controlplane)
    controlplane.apply(gemeente(namespace, 1))
    paths, runs = split_kubeconfig(controlplane, namespace, tmp_path)
    creds = kube.Credentials.from_env({"KUBECONFIG": paths})
    assert creds.default_namespace == namespace

    async def use() -> tuple[list[str], str, Any]:
        async with kube.KubeClient(creds) as client:
            names = [g["metadata"]["name"] for g in await client.list(kube.GEMEENTE, namespace)]
            review = await client.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
            await asyncio.sleep(1.5)  # the plugin's token has expired by now
            again = await client.get(kube.GEMEENTE, namespace, "gemeente-0001")
            assert again is not None
        connection = await kube.kopf_connection(creds)
        return names, review["status"]["userInfo"]["username"], connection

    names, user, connection = asyncio.run(use())
    assert names == ["gemeente-0001"]
    assert user == f"system:serviceaccount:{namespace}:plugin-user"
    assert int(runs.read_text()) >= 3, "the plugin ran again once its token expired"
    assert connection.token == (tmp_path / "token").read_text().strip()
    assert connection.server == creds.server


def test_runtime_watch_with_exec_plugin_and_several_kubeconfig_paths(
    controlplane: KubeCluster, controlplane_namespace: str, tmp_path: Path
) -> None:
    namespace = controlplane_namespace
    install_crds(controlplane)
    controlplane.apply(gemeente(namespace, 1))
    paths, runs = split_kubeconfig(controlplane, namespace, tmp_path)
    watch = GemeenteWatch(from_kubeconfig(paths), namespace)
    watch.start()
    try:
        assert set(watch.snapshot()) == {"gemeente-0001"}
        controlplane.apply(gemeente(namespace, 2))
        assert wait(lambda: set(watch.snapshot()) == {"gemeente-0001", "gemeente-0002"})
        assert int(runs.read_text()) >= 1
        assert watch.relists == 1, "watched on, not listed again"
    finally:
        watch.stop()
