"""pytest plugin: a real Kubernetes control plane for `@pytest.mark.controlplane` tests.

Register it once (tests/conftest.py):  ``pytest_plugins = ["tests.controlplane.fixtures"]``

Fixtures:
    controlplane            session-scoped `ControlPlane` (etcd, kube-apiserver,
                            kube-controller-manager, kube-scheduler, kwok node); its
                            audit log records every write and read (not watch) by a
                            service account of the ``knooppunt-system`` namespace (the
                            operator's).  With
                            ``$KNOOPPUNT_TEST_KUBECONFIG`` set: an `ExistingCluster`
                            instead (nothing is started; see existing.py)
    controlplane_namespace  a fresh namespace per test, deleted afterwards
    cluster_capabilities    what the cluster under test can do (capabilities.py)

Marker ``@pytest.mark.cluster_needs(<capability>, ...)``: skip the test, with the reason,
on a cluster without those capabilities (an existing cluster; never the local plane).

The binaries are never built here.  They are looked up in
``$KNOOPPUNT_CONTROLPLANE_BIN`` or in the cache dir that
``tests/controlplane/build.sh --bin-dir`` names.  If they are missing, the
test fails when ``$CI`` is set (CI must build them first) and is skipped
otherwise, with a hint to run ``tests/controlplane/build.sh``.  An existing cluster that
cannot be used (unreadable kubeconfig, unreachable, not cluster-admin) is always an error.

Tests that use the `controlplane` fixture get the `controlplane` marker
automatically, so ``-m "not controlplane"`` deselects them; mark them
explicitly anyway for readability.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from knooppunt_operator import kube

from tests.controlplane import capabilities
from tests.controlplane.cluster import (
    OPTIONAL_BINARIES,
    REQUIRED_BINARIES,
    ControlPlane,
    KubeCluster,
)
from tests.controlplane.existing import ExistingCluster, ExistingClusterError

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BIN_ENV = "KNOOPPUNT_CONTROLPLANE_BIN"
OPERATOR_NAMESPACE = "knooppunt-system"
OPERATOR_ACCOUNTS = f"system:serviceaccounts:{OPERATOR_NAMESPACE}"
OPERATOR_LEASE = "knooppunt-operator"  # the chart's default Lease
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # What the operator's service accounts change: tests tell who wrote what, and when.
        {
            "level": "Metadata",
            "userGroups": [OPERATOR_ACCOUNTS],
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
        },
        # ... and what they read (not the long-running watches): the request count of a
        # one-gemeente change (tests/operator/test_operator_controlplane.py).
        {"level": "Metadata", "userGroups": [OPERATOR_ACCOUNTS], "verbs": ["get", "list"]},
        {"level": "None"},
    ],
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def controlplane_bin_dir() -> Path:
    """Where the binaries are expected (does not check that they exist)."""
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--bin-dir"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return Path(out.stdout.strip())


def missing_binaries(bin_dir: Path, *, kwok: bool = True) -> list[str]:
    wanted = list(REQUIRED_BINARIES) + (list(OPTIONAL_BINARIES) if kwok else [])
    return [b for b in wanted if not os.access(bin_dir / b, os.X_OK)]


def _unavailable(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message} (CI is set: the control plane is required here)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster_capabilities() -> capabilities.Capabilities:
    return capabilities.from_environment()


@pytest.fixture(scope="session")
def controlplane() -> Iterator[KubeCluster]:
    """The cluster the session runs against, admin access via `.client()` / `.kubeconfig`:
    a local control plane started for the session, or the existing cluster that
    ``$KNOOPPUNT_TEST_KUBECONFIG`` names."""
    target = capabilities.target()
    if target is not None:
        with ExistingCluster(target.kubeconfig, context=target.context) as cluster:
            _refuse_a_running_operator(cluster)
            yield cluster
        return
    try:
        bin_dir = controlplane_bin_dir()
    except (OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"cannot locate control-plane binaries: {exc}")
    missing = missing_binaries(bin_dir)
    if missing:
        _unavailable(
            f"control-plane binaries missing in {bin_dir}: {', '.join(missing)}; "
            f"run {BUILD_SCRIPT.relative_to(HERE.parent.parent)} (or set {BIN_ENV})"
        )
    cp = ControlPlane(bin_dir, audit_policy=AUDIT_POLICY)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


def _refuse_a_running_operator(cluster: ExistingCluster) -> None:
    """The tests run their own operator: one already installed would reconcile the tests'
    resources too, and the tests would overwrite its CRDs and RBAC."""
    with cluster.client(track=False) as http:
        r = http.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/{OPERATOR_LEASE}"
        )
    holder = (r.json().get("spec") or {}).get("holderIdentity") if r.status_code == 200 else None
    if holder:
        raise ExistingClusterError(
            f"a Knooppunt operator already runs on {cluster.server} (Lease "
            f"{OPERATOR_NAMESPACE}/{OPERATOR_LEASE} held by {holder}); run the tests against "
            "a cluster without it"
        )


@pytest.fixture
def controlplane_namespace(
    controlplane: KubeCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A new namespace named after the test; deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 't'}-{uuid.uuid4().hex[:6]}"
    with controlplane.client() as http:
        http.post(
            "/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        ).raise_for_status()
    try:
        yield name
    finally:
        with controlplane.client() as http:
            http.delete(f"/api/v1/namespaces/{name}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "controlplane: needs the real Kubernetes control plane (tests/controlplane)"
    )
    config.addinivalue_line(
        "markers",
        "cluster_needs(*capabilities): skipped, with the reason, on a cluster without these "
        "capabilities (an existing cluster; tests/controlplane/capabilities.py)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    target = capabilities.target()
    if target is None:
        return "knooppunt cluster under test: local control plane (tests/controlplane)"
    try:
        server = kube.Credentials.from_kubeconfig(target.kubeconfig, target.context).server
    except Exception as exc:  # reported again, as an error, by the fixture
        server = f"<unreadable: {exc}>"
    missing = capabilities.from_environment().missing
    return (
        f"knooppunt cluster under test: existing cluster {server} "
        f"({capabilities.KUBECONFIG_ENV}={target.kubeconfig}"
        f"{f', context {target.context}' if target.context else ''}); "
        f"without: {', '.join(missing) or 'nothing'}"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    needed = tuple(name for mark in item.iter_markers("cluster_needs") for name in mark.args)
    if not needed:
        return
    reasons = capabilities.from_environment().why_not(needed)
    if reasons:
        pytest.skip("existing cluster: " + "; ".join(reasons))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "controlplane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.controlplane)
