"""The existing-cluster mode (``$KNOOPPUNT_TEST_KUBECONFIG``), tested against the session's own
control plane standing in for "an existing cluster".

* `ExistingCluster` in-process: kubeconfigs with files, contexts, tokens and exec plugins;
  certificates for test users through the CertificateSigningRequest API; clean-up of exactly
  what the session created.
* The suite itself: a subset of it runs in a ``pytest`` subprocess pointed at this control
  plane's admin kubeconfig. It must pass, skip what an existing cluster cannot do with the
  reason, start no control plane of its own, and leave nothing behind.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from knooppunt_operator import kube

from tests.controlplane import capabilities
from tests.controlplane.capabilities import FAKE_NODE
from tests.controlplane.cluster import ControlPlane, KubeCluster, client_from_kubeconfig
from tests.controlplane.existing import CSR_PATH, ExistingCluster, ExistingClusterError

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
GROUP = "existing.knooppunt.test"
HOLD = f"{GROUP}/hold"

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"gadgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    },
                },
            }
        ],
    },
}


def whoami(http: httpx.Client) -> str:
    review = http.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    review.raise_for_status()
    return str(review.json()["status"]["userInfo"]["username"])


def kubeconfig_with_files(controlplane: KubeCluster, directory: Path) -> Path:
    """The admin's credentials as a kubeconfig the way tools write them: CA, certificate and
    key (or token) in files next to it, and a current-context that points elsewhere."""
    creds = kube.Credentials.from_kubeconfig(controlplane.kubeconfig)
    here: dict[str, Any] = {"server": creds.server}
    if creds.ca_data:
        (directory / "ca.crt").write_bytes(creds.ca_data)
        here["certificate-authority"] = "ca.crt"
    if creds.insecure:
        here["insecure-skip-tls-verify"] = True
    admin: dict[str, Any] = {}
    if creds.client_cert and creds.client_key:
        (directory / "admin.crt").write_bytes(creds.client_cert)
        (directory / "admin.key").write_bytes(creds.client_key)
        admin = {"client-certificate": "admin.crt", "client-key": "admin.key"}
    else:
        (directory / "token").write_text(creds.current_token() or "")
        admin = {"tokenFile": "token"}
    path = directory / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}},
                    {"name": "here", "cluster": here},
                ],
                "users": [
                    {"name": "nobody", "user": {"token": "not-a-token"}},
                    {"name": "admin", "user": admin},
                ],
                "contexts": [
                    {"name": "elsewhere", "context": {"cluster": "nowhere", "user": "nobody"}},
                    {"name": "here", "context": {"cluster": "here", "user": "admin"}},
                ],
                "current-context": "elsewhere",
            }
        )
    )
    return path


# ------------------------------------------------------------------ ExistingCluster itself


def test_a_kubeconfig_with_files_and_contexts_is_flattened(
    controlplane: KubeCluster, tmp_path: Path
) -> None:
    source = kubeconfig_with_files(controlplane, tmp_path)
    unknown = r"no context 'gone' \(contexts: elsewhere, here\)"
    with pytest.raises(ExistingClusterError, match=unknown):
        ExistingCluster(source, context="gone").open()
    with ExistingCluster(source, context="here") as cluster:
        assert cluster.server == controlplane.server
        flat = yaml.safe_load(cluster.kubeconfig.read_text())
        (user,) = [u["user"] for u in flat["users"]]
        assert not {"client-certificate", "client-key", "tokenFile"} & set(user), user
        with (
            controlplane.client() as admin,
            client_from_kubeconfig(cluster.kubeconfig) as kc,
            cluster.client() as http,
        ):
            assert whoami(kc) == whoami(http) == whoami(admin)
        assert cluster.created == []


def test_an_exec_plugin_gives_the_token_and_the_user_must_be_cluster_admin(
    controlplane: KubeCluster, controlplane_namespace: str, tmp_path: Path
) -> None:
    ns = controlplane_namespace
    creds = kube.Credentials.from_kubeconfig(controlplane.kubeconfig)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        textwrap.dedent("""\
        import json, os
        info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
        assert info["kind"] == "ExecCredential" and info["spec"]["interactive"] is False
        print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                          "status": {"token": os.environ["PLUGIN_TOKEN"]}}))
    """)
    )

    def kubeconfig(account: str) -> Path:
        token = controlplane.service_account_token(ns, account)
        cluster: dict[str, Any] = {
            "server": creds.server,
            "insecure-skip-tls-verify": creds.insecure,
        }
        if creds.ca_data:
            cluster["certificate-authority-data"] = base64.b64encode(creds.ca_data).decode()
        path = tmp_path / f"{account}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "c",
                    "clusters": [{"name": "c", "cluster": cluster}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
                    "users": [
                        {
                            "name": account,
                            "user": {
                                "exec": {
                                    "apiVersion": "client.authentication.k8s.io/v1",
                                    "command": sys.executable,
                                    "args": [str(plugin)],
                                    "env": [{"name": "PLUGIN_TOKEN", "value": token}],
                                    "interactiveMode": "Never",
                                }
                            },
                        }
                    ],
                }
            )
        )
        return path

    with pytest.raises(ExistingClusterError, match="needs cluster-admin"):
        ExistingCluster(kubeconfig("nobody")).open()

    binding = f"knooppunt-test-exec-{uuid.uuid4().hex[:6]}"
    controlplane.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "admin", "namespace": ns}],
        }
    )
    try:
        with ExistingCluster(kubeconfig("admin")) as cluster:
            with client_from_kubeconfig(cluster.kubeconfig) as kc:
                assert whoami(kc) == f"system:serviceaccount:{ns}:admin"
    finally:
        with controlplane.client() as http:
            http.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}")


def test_clean_up_removes_what_the_session_created_and_nothing_else(
    controlplane: KubeCluster, controlplane_namespace: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    role = "/apis/rbac.authorization.k8s.io/v1/clusterroles/"
    kept_role: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"knooppunt-test-kept-{suffix}"},
        "rules": [],
    }
    controlplane.apply(kept_role)  # there before the "session"
    crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{GROUP}"
    source = kubeconfig_with_files(controlplane, tmp_path)
    ns = f"knooppunt-test-existing-{suffix}"
    cluster = ExistingCluster(
        source, context="here", finalizer_groups=[GROUP], cleanup_timeout=90
    ).open()
    try:
        with cluster.client() as http:
            http.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            ).raise_for_status()
            cluster.apply(GADGET_CRD, client=http)
            gadgets = f"/apis/{GROUP}/v1/namespaces/{ns}/gadgets"
            deadline = time.monotonic() + 30
            while http.get(gadgets).status_code != 200:
                assert time.monotonic() < deadline, "Gadgets not served"
                time.sleep(0.2)
            # Held by a finalizer that no running controller will ever remove.
            http.post(
                gadgets,
                json={
                    "apiVersion": f"{GROUP}/v1",
                    "kind": "Gadget",
                    "metadata": {"name": "held", "finalizers": [HOLD]},
                },
            ).raise_for_status()
            new_role = {**kept_role, "metadata": {"name": f"knooppunt-test-new-{suffix}"}}
            cluster.apply(new_role, client=http)
            cluster.apply(
                {**kept_role, "metadata": {**kept_role["metadata"], "labels": {"changed": "yes"}}}
            )
            dry_role = {**kept_role, "metadata": {"name": f"knooppunt-test-dry-{suffix}"}}
            dry = http.patch(
                f"{role}knooppunt-test-dry-{suffix}",
                params={"dryRun": "All", "fieldManager": "t"},
                content=yaml.safe_dump(dry_role),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            assert dry.status_code == 201, dry.text
        # A service account in a namespace that was there before: removed on its own.
        cluster.kubeconfig_for_service_account(controlplane_namespace, "visitor")
        # A test user's certificate through a CertificateSigningRequest, deleted at once.
        user = cluster.kubeconfig_for_user(f"gadgeteer-{suffix}", groups=["gadgeteers"])
        with client_from_kubeconfig(user) as gadgeteer:
            assert whoami(gadgeteer) == f"gadgeteer-{suffix}"
            assert gadgeteer.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403
        csrs = [p for p in cluster.created if p.startswith(CSR_PATH)]
        assert len(csrs) == 1
        assert cluster.created == [
            f"/api/v1/namespaces/{ns}",
            crd,
            f"{role}knooppunt-test-new-{suffix}",
            f"/api/v1/namespaces/{controlplane_namespace}/serviceaccounts/visitor",
            csrs[0],
        ]
    finally:
        cluster.close()
    with controlplane.client() as http:
        for path in (
            f"/api/v1/namespaces/{ns}",
            crd,
            f"{role}knooppunt-test-new-{suffix}",
            f"/api/v1/namespaces/{controlplane_namespace}/serviceaccounts/visitor",
            csrs[0],
        ):
            assert http.get(path).status_code == 404, path
        kept = http.get(f"{role}knooppunt-test-kept-{suffix}")
        assert kept.status_code == 200
        assert kept.json()["metadata"]["labels"] == {"changed": "yes"}
        http.delete(f"{role}knooppunt-test-kept-{suffix}")


# ------------------------------------------------------------------------ the suite itself


SUBSET = [
    "tests/controlplane/test_controlplane.py",
    "tests/operator/test_operator_controlplane.py::test_invalid_connector_is_never_recorded",
    "tests/operator/test_operator_controlplane.py::test_gemeenten_never_touch_the_deployment",
    "tests/operator/test_operator_controlplane.py::test_failed_rollout_rolls_back",
    "tests/operator/test_operator_controlplane.py::"
    "test_the_api_server_accepts_the_examples_and_applies_the_cel_rules",
    "tests/operator/test_operator_controlplane.py::"
    "test_the_api_server_calls_the_webhook_and_refuses_a_broken_connector",
    "tests/operator/test_operator_resilience.py::"
    "test_the_operator_killed_mid_reconcile_converges_after_restart",
    "tests/operator/test_operator_resilience.py::"
    "test_two_replicas_never_reconcile_at_the_same_time[SIGTERM]",
]
EXPECTED_SKIPS = {
    "test_failed_rollout_rolls_back": capabilities.WHY_NOT[capabilities.FAKE_NODE],
    "test_two_replicas_never_reconcile_at_the_same_time[SIGTERM]": capabilities.WHY_NOT[
        capabilities.AUDIT_LOG
    ],
}
# What the session may create, and must have removed again.
SNAPSHOT = [
    "/api/v1/namespaces",
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "/api/v1/persistentvolumes",
    CSR_PATH,
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "/api/v1/serviceaccounts",
    "/apis/rbac.authorization.k8s.io/v1/roles",
    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
    "/apis/coordination.k8s.io/v1/leases",
]


def snapshot(controlplane: KubeCluster) -> set[tuple[str, str, str]]:
    found = set()
    with controlplane.client() as http:
        for path in SNAPSHOT:
            r = http.get(path)
            r.raise_for_status()
            for obj in r.json()["items"]:
                meta = obj["metadata"]
                found.add((path.rsplit("/", 1)[1], meta.get("namespace", ""), meta["name"]))
        node = http.get(f"/api/v1/nodes/{ControlPlane.KWOK_NODE}").json()
        found.add(("node-unschedulable", "", str(node["spec"].get("unschedulable", False))))
    return found


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Test name -> (passed | skipped | failed, message)."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("skipped", "failure", "error"):
                outcome = "skipped" if child.tag == "skipped" else "failed"
                message = child.get("message", "") + (child.text or "")[-2000:]
        result[case.get("name", "")] = (outcome, message)
    return result


def run_suite(
    controlplane: KubeCluster, tmp_path: Path, tests: list[str], **extra_env: str
) -> tuple[int, str, dict[str, tuple[str, str]], float]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KNOOPPUNT_TEST_", "PYTEST_"))
    }
    env.update(
        {
            capabilities.KUBECONFIG_ENV: str(controlplane.kubeconfig),
            "CI": "true",  # a control plane that cannot start would fail, not skip...
            "KNOOPPUNT_CONTROLPLANE_BIN": str(tmp_path / "no-binaries"),  # ...and it cannot
            **extra_env,
        }
    )
    junit = tmp_path / "junit.xml"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:logging",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit2",
            *tests,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    return proc.returncode, proc.stdout, outcomes(junit), elapsed


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.cluster_needs(FAKE_NODE)  # kwok runs the Knooppunt's pods for the subprocess
def test_the_suite_runs_against_an_existing_cluster(
    controlplane: KubeCluster, tmp_path: Path
) -> None:
    before = snapshot(controlplane)
    rc, output, results, elapsed = run_suite(
        controlplane,
        tmp_path,
        SUBSET,
        **{capabilities.WEBHOOK_HOST_ENV: "127.0.0.1", capabilities.RUNTIME_PODS_ENV: "1"},
    )
    tail = output[-6000:]
    assert rc == 0, tail
    assert (
        f"knooppunt cluster under test: existing cluster {controlplane.server} "
        f"({capabilities.KUBECONFIG_ENV}={controlplane.kubeconfig}); "
        "without: fake-node, audit-log\n"
    ) in output, tail
    assert "control-plane binaries" not in output, tail
    skipped = {
        name: message for name, (outcome, message) in results.items() if outcome == "skipped"
    }
    assert sorted(skipped) == sorted(EXPECTED_SKIPS), results
    for name, why in EXPECTED_SKIPS.items():
        assert why in skipped[name], (name, skipped[name])
    passed = sorted(name for name, (outcome, _) in results.items() if outcome == "passed")
    assert len(results) == 14 and len(passed) == 12, results
    assert "test_rbac_restricts_users_and_service_accounts" in passed  # through a CSR
    assert "test_the_api_server_calls_the_webhook_and_refuses_a_broken_connector" in passed
    assert "test_gemeenten_never_touch_the_deployment" in passed  # a real rollout
    assert snapshot(controlplane) - before == set(), "the session left objects behind"
    print(
        f"\nexisting-cluster subset: {len(passed)} passed, {len(skipped)} skipped in {elapsed:.0f}s"
    )


@pytest.mark.cluster_needs(FAKE_NODE)
def test_what_an_existing_cluster_cannot_do_is_skipped_with_the_reason(
    controlplane: KubeCluster, tmp_path: Path
) -> None:
    """Without the webhook host and the runtime pods: those tests skip, with how to enable
    them, before any fixture runs (so the cluster is not even touched)."""
    webhook = (
        "tests/operator/test_operator_controlplane.py::"
        "test_the_api_server_calls_the_webhook_and_refuses_a_broken_connector"
    )
    rollout = "tests/operator/test_operator_controlplane.py::test_connector_change_rolls_the_pods"
    rc, output, results, _ = run_suite(controlplane, tmp_path, [webhook, rollout])
    assert rc == 0, output[-3000:]
    assert "without: fake-node, audit-log, webhook-callback, runtime-pods" in output
    webhook_outcome, webhook_reason = results[webhook.rsplit("::", 1)[1]]
    assert webhook_outcome == "skipped"
    assert capabilities.WHY_NOT[capabilities.WEBHOOK_CALLBACK] in webhook_reason
    assert capabilities.WEBHOOK_HOST_ENV in webhook_reason
    rollout_outcome, rollout_reason = results[rollout.rsplit("::", 1)[1]]
    assert rollout_outcome == "skipped"
    assert capabilities.WHY_NOT[capabilities.RUNTIME_PODS] in rollout_reason
    assert capabilities.RUNTIME_PODS_ENV in rollout_reason
