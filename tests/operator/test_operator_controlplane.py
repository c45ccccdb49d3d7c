"""The same operator scenarios against a real control plane (tests/controlplane).

Real etcd, kube-apiserver (the generated CRDs with their CEL rules, server-side apply, RBAC),
kube-controller-manager (Deployment controller, garbage collector, PV binding),
kube-scheduler and a kwok node. The operator runs as a service account bound to exactly the
RBAC that ``knooppunt_operator.rbac`` generates, so a missing permission fails here.

Rollouts: the kwok node starts cordoned, so new pods stay Pending (not ready) until a
scenario says a rollout may succeed; then the node is opened until the Deployment has rolled
out, and closed again.

On an existing cluster (``$KNOOPPUNT_TEST_KUBECONFIG``) nothing is cordoned: a rollout is the
Deployment's real one, which the driver waits for (``runtime-pods``: the runtime image must
run there), and a rollout cannot be made to fail on purpose (``fake-node``). A
PersistentVolume for the node's claim is only made when the cluster has no default
StorageClass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from knooppunt_operator import certificates, kube, rbac, status
from knooppunt_operator.handlers.context import Context
from knooppunt_operator.runtime_client import StaticPending

from tests.controlplane.capabilities import (
    AUDIT_LOG,
    FAKE_NODE,
    RUNTIME_PODS,
    WEBHOOK_CALLBACK,
    Capabilities,
)
from tests.controlplane.cluster import ControlPlane, KubeCluster
from tests.operator import scenarios
from tests.operator.harness import Cluster, fast_config, running_operator

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "knooppunt-system"


def install_operator(controlplane: KubeCluster) -> Path:
    """CRDs installed; the operator's namespace and service account with the generated RBAC;
    returns that account's kubeconfig."""
    controlplane.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    )
    for path in sorted((REPO / "crds").glob("knooppunt.nl_*.yaml")):
        controlplane.apply(yaml.safe_load(path.read_text()))
    for manifest in rbac.manifests(OPERATOR_NAMESPACE):
        controlplane.apply(manifest)
    deadline = time.monotonic() + 30
    with controlplane.client() as http:
        while time.monotonic() < deadline:
            if http.get("/apis/knooppunt.nl/v1alpha1/gemeenten").status_code == 200:
                break
            time.sleep(0.2)
    return controlplane.kubeconfig_for_service_account(OPERATOR_NAMESPACE, "knooppunt-operator")


@pytest.fixture(scope="module")
def operator_credentials(controlplane: KubeCluster) -> kube.Credentials:
    """CRDs installed; the operator's service account with the generated RBAC."""
    return kube.Credentials.from_kubeconfig(install_operator(controlplane))


@pytest.fixture()
def cordoned(controlplane: KubeCluster, cluster_capabilities: Capabilities) -> Iterator[None]:
    with rollouts_held(controlplane, cluster_capabilities):
        yield


@contextlib.contextmanager
def rollouts_held(controlplane: KubeCluster, capabilities: Capabilities) -> Iterator[None]:
    """The kwok node cordoned: new pods stay Pending until the rollout driver lets them run.
    (An existing cluster's nodes are left alone: its rollouts run by themselves.)"""
    if not capabilities.has(FAKE_NODE):
        yield
        return
    set_schedulable(controlplane, False)
    try:
        yield
    finally:
        set_schedulable(controlplane, True)


def set_schedulable(controlplane: KubeCluster, schedulable: bool) -> None:
    with controlplane.client() as http:
        http.patch(
            f"/api/v1/nodes/{ControlPlane.KWOK_NODE}",
            json={"spec": {"unschedulable": not schedulable}},
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()


def data_volume(namespace: str) -> dict[str, Any]:
    """A PersistentVolume for the SQLite node's claim (the cluster has no provisioner)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-data"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/knooppunt-{namespace}"},
            "claimRef": {"namespace": namespace, "name": f"{scenarios.NODE}-data"},
        },
    }


def has_default_storage_class(controlplane: KubeCluster) -> bool:
    with controlplane.client() as http:
        r = http.get("/apis/storage.k8s.io/v1/storageclasses")
        r.raise_for_status()
    return any(
        (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
        for sc in r.json()["items"]
    )


@contextlib.contextmanager
def node_data_volume(controlplane: KubeCluster, namespace: str) -> Iterator[None]:
    """`data_volume` for the test's namespace, unless a default StorageClass provisions one
    (the local control plane has none); deleted afterwards."""
    if has_default_storage_class(controlplane):
        yield
        return
    controlplane.apply(data_volume(namespace))
    try:
        yield
    finally:
        with controlplane.client() as http:
            http.delete(f"/api/v1/persistentvolumes/{namespace}-data")


RolloutDriver = Callable[[Cluster, str, bool], Awaitable[None]]


def rollout_driver(controlplane: KubeCluster, capabilities: Capabilities) -> RolloutDriver:
    """How `Cluster.set_rollout` makes a rollout succeed (or not) on a real API server."""
    fake_node = capabilities.has(FAKE_NODE)

    async def drive(cluster: Cluster, name: str, ready: bool) -> None:
        if not ready:
            # The node is cordoned: new pods stay Pending. A real cluster cannot be made to.
            assert fake_node, "a rollout can only be held back on the local control plane"
            return
        if fake_node:
            await asyncio.to_thread(set_schedulable, controlplane, True)
        try:

            async def rolled_out() -> bool:
                deployment = await cluster.must_get(kube.DEPLOYMENT, name)
                return status.rollout_state(deployment).complete

            await cluster.eventually(
                rolled_out,
                timeout=60 if fake_node else 300,
                interval=0.2,
                what=f"Deployment {name} rolled out",
            )
        finally:
            if fake_node:
                await asyncio.to_thread(set_schedulable, controlplane, False)

    return drive


class Running:
    def __init__(self, cluster: Cluster, ctx: Context, pending: StaticPending) -> None:
        self.cluster, self.ctx, self.pending = cluster, ctx, pending


@pytest_asyncio.fixture()
async def running(
    controlplane: KubeCluster,
    controlplane_namespace: str,
    operator_credentials: kube.Credentials,
    cluster_capabilities: Capabilities,
    cordoned: None,
) -> AsyncIterator[Running]:
    admin = kube.Credentials.from_kubeconfig(controlplane.kubeconfig)
    pending = StaticPending()
    # Held rollouts fail fast; real ones (existing cluster) get the time their pods need.
    deadline = 3 if cluster_capabilities.has(FAKE_NODE) else 300
    config = fast_config(namespace=OPERATOR_NAMESPACE, rollout_deadline_seconds=deadline)
    with node_data_volume(controlplane, controlplane_namespace):
        async with (
            running_operator(
                operator_credentials, config, pending=pending, namespaces=[controlplane_namespace]
            ) as ctx,
            kube.KubeClient(admin, user_agent="knooppunt-tests") as client,
        ):
            cluster = Cluster(
                client,
                controlplane_namespace,
                rollout_driver=rollout_driver(controlplane, cluster_capabilities),
            )
            yield Running(cluster, ctx, pending)


@pytest.mark.asyncio
# It checks the state before the first rollout (Ready=False): only a held one stays there.
@pytest.mark.cluster_needs(RUNTIME_PODS, FAKE_NODE)
async def test_create_knooppunt_makes_its_children(running: Running) -> None:
    await scenarios.create_knooppunt_makes_its_children(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_a_node_waits_for_its_connector(running: Running) -> None:
    await scenarios.a_node_waits_for_its_connector(running.cluster)


@pytest.mark.asyncio
# It checks the state in the middle of the rollout (RollingOut): only a held one stays there.
@pytest.mark.cluster_needs(RUNTIME_PODS, FAKE_NODE)
async def test_connector_change_rolls_the_pods(running: Running) -> None:
    await scenarios.connector_change_rolls_the_pods(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_tracing_endpoint_reaches_the_pods(running: Running) -> None:
    await scenarios.tracing_endpoint_reaches_the_pods(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_pinned_node_is_not_restarted_until_promoted(running: Running) -> None:
    await scenarios.pinned_node_is_not_restarted_until_promoted(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_gemeenten_never_touch_the_deployment(running: Running) -> None:
    await scenarios.gemeenten_never_touch_the_deployment(running.cluster)


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_a_node_carries_400_gemeenten(running: Running) -> None:
    """400 gemeenten on the real API server: 400 certificates, no pod restart, no object
    growing with them (the scale the issue asks for, asserted, not only benchmarked)."""
    await scenarios.gemeenten_never_touch_the_deployment(running.cluster, count=400)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_postgresql_tls_reaches_the_pods(running: Running) -> None:
    await scenarios.postgresql_tls_reaches_the_pods(running.cluster)


@pytest.mark.asyncio
# The DSN is made up: only a kwok node "runs" pods that could never reach the database.
@pytest.mark.cluster_needs(FAKE_NODE)
async def test_database_secret_is_reported(running: Running) -> None:
    await scenarios.database_secret_is_reported(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_provided_certificate_is_trusted_by_the_node(running: Running) -> None:
    await scenarios.provided_certificate_is_trusted_by_the_node(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS, FAKE_NODE)
async def test_failed_rollout_rolls_back(running: Running) -> None:
    await scenarios.failed_rollout_rolls_back(running.cluster)


@pytest.mark.asyncio
async def test_invalid_connector_is_never_recorded(running: Running) -> None:
    await scenarios.invalid_connector_is_never_recorded(running.cluster)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_gemeente_deletion_waits_for_undelivered_messages(running: Running) -> None:
    await scenarios.gemeente_deletion_waits_for_undelivered_messages(
        running.cluster, running.pending
    )


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_connector_deletion_waits_for_undelivered_messages(running: Running) -> None:
    await scenarios.connector_deletion_waits_for_undelivered_messages(
        running.cluster, running.pending
    )


@pytest.mark.asyncio
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_deleting_the_knooppunt_removes_its_children(running: Running) -> None:
    await scenarios.deleting_the_knooppunt_removes_its_children(running.cluster)


OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:knooppunt-operator"


def operator_requests(controlplane: KubeCluster, since: int, namespace: str) -> list[str]:
    """The operator's requests (watches aside) in ``namespace`` or cluster-wide, from the API
    server's audit log, as ``verb resource[/subresource]``."""
    assert controlplane.audit_log is not None
    with controlplane.audit_log.open("rb") as log:
        log.seek(since)
        lines = log.read().splitlines()
    out = []
    for line in lines:
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (event.get("user") or {}).get("username") != OPERATOR_USER:
            continue
        if event.get("verb") == "watch" or ref.get("namespace") not in (namespace, None):
            continue
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        out.append(f"{event['verb']} {ref.get('resource')}{sub}")
    return out


async def audit_quiet(controlplane: KubeCluster, quiet: float = 2.0) -> int:
    """Wait until the API server has logged no request of the operator's (its Lease aside)
    for ``quiet`` seconds; the log's size then."""
    assert controlplane.audit_log is not None
    log = controlplane.audit_log
    size, since = log.stat().st_size, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = log.stat().st_size
        if now == size:
            if time.monotonic() - since >= quiet:
                return size
            continue
        with log.open("rb") as f:
            f.seek(size)
            lines = f.read(now - size).splitlines()
        size = now
        if any(
            ((json.loads(line).get("objectRef") or {}).get("resource")) != "leases"
            for line in lines
            if line.strip()
        ):
            since = time.monotonic()
    raise AssertionError("the operator did not go quiet")


@pytest.mark.asyncio
@pytest.mark.timeout(300)
@pytest.mark.cluster_needs(RUNTIME_PODS, AUDIT_LOG)
async def test_one_more_gemeente_costs_the_same_few_requests_at_any_scale(
    running: Running, controlplane: KubeCluster
) -> None:
    """Onboarding one gemeente costs at most 4 API requests, all writes (the operator's
    finalizer, the client certificate, the gemeente's status, the node's count), whether the
    node serves 2 gemeenten or 25: every read comes from what kopf watches, and nothing that
    did not change is written. Counted from the API server's audit log."""
    cluster = running.cluster
    await scenarios.ready_node(cluster)
    counts: dict[int, collections.Counter[str]] = {}
    created = 0
    for total in (2, 25):
        while created < total - 1:
            created += 1
            await cluster.create(scenarios.gemeente_resource(created))
        await cluster.wait_condition(
            kube.GEMEENTE, f"gemeente-{created:04d}", "Ready", "True", reason="Served", timeout=60
        )

        async def counted(n: int) -> bool:
            node = (await cluster.must_get(kube.KNOOPPUNT, scenarios.NODE)).get("status") or {}
            return node.get("gemeenten") == n

        await cluster.eventually(lambda n=created: counted(n), timeout=30, what="counted")
        mark = await audit_quiet(controlplane)
        created += 1
        await cluster.create(scenarios.gemeente_resource(created))
        await cluster.wait_condition(
            kube.GEMEENTE, f"gemeente-{created:04d}", "Ready", "True", reason="Served", timeout=30
        )
        await cluster.eventually(lambda n=created: counted(n), timeout=30, what="counted")
        await audit_quiet(controlplane)
        counts[total] = collections.Counter(
            operator_requests(controlplane, mark, cluster.namespace)
        )
    small, large = counts[2], counts[25]
    assert sum(large.values()) == sum(small.values()) <= 4, counts
    assert not [r for r in large if r.startswith(("get ", "list "))], counts
    assert large == collections.Counter(
        {
            "patch gemeenten": 1,
            "patch secrets": 1,
            "patch gemeenten/status": 1,
            "patch knooppunten/status": 1,
        }
    ), large


def test_the_api_server_accepts_the_examples_and_applies_the_cel_rules(
    controlplane: KubeCluster, controlplane_namespace: str, operator_credentials: kube.Credentials
) -> None:
    """The generated CRDs on a real API server: examples pass, cross-field rules refuse."""
    for name in ("connector.yaml", "knooppunt.yaml", "gemeenten.yaml"):
        for doc in yaml.safe_load_all((REPO / "examples" / "iwmo" / name).read_text()):
            if doc:
                doc["metadata"]["namespace"] = controlplane_namespace
                controlplane.apply(doc)
    stored = controlplane.apply(
        {
            **scenarios.gemeente_resource(7),
            "metadata": {"name": "gemeente-0007", "namespace": controlplane_namespace},
        }
    )
    assert stored["spec"]["subscriptions"][0]["delivery"] == {
        "mode": "pull",
        "envelope": "cloudevents",
    }, "defaults"
    assert stored["spec"]["certificate"] == {"issue": True}

    def refused(doc: dict[str, Any]) -> str:
        doc["metadata"]["namespace"] = controlplane_namespace
        with pytest.raises(httpx.HTTPStatusError) as failure:
            controlplane.apply(doc)
        assert failure.value.response.status_code == 422
        return str(failure.value.response.json()["message"])

    push = scenarios.gemeente_resource(8)
    push["spec"]["subscriptions"][0]["delivery"] = {"mode": "push"}
    assert "push delivery needs an endpoint" in refused(push)
    bad_oin = scenarios.gemeente_resource(9)
    bad_oin["spec"]["oin"] = "123"
    assert "spec.oin" in refused(bad_oin)
    two_bundles = scenarios.connector_resource()
    two_bundles["spec"]["bundle"] = {"builtin": "iwmo-2.1", "configMap": "x"}
    assert "bundle needs exactly one of builtin, configMap, path" in refused(two_bundles)
    bad_agb = scenarios.connector_resource()
    bad_agb["spec"]["participants"][0]["identifiers"] = ["9800001"]
    assert "8-digit AGB-code" in refused(bad_agb)
    long_name = scenarios.knooppunt_resource()
    long_name["metadata"]["name"] = "k" * 51
    assert "at most 50 characters" in refused(long_name)


WEBHOOK_CONFIGURATION = (
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/knooppunt.nl"
)
WEBHOOK_CONFIGURATIONS = [
    WEBHOOK_CONFIGURATION,
    WEBHOOK_CONFIGURATION.replace(
        "/validatingwebhookconfigurations/", "/mutatingwebhookconfigurations/"
    ),
]


@pytest.fixture()
def webhook_configurations_removed(controlplane: KubeCluster) -> Iterator[None]:
    """kopf leaves its Validating- and MutatingWebhookConfiguration behind (without
    webhooks): remove those the test made."""
    with controlplane.client() as http:
        new = [path for path in WEBHOOK_CONFIGURATIONS if http.get(path).status_code == 404]
    yield
    with controlplane.client() as http:
        for path in new:
            http.delete(path)


@pytest.mark.asyncio
@pytest.mark.cluster_needs(WEBHOOK_CALLBACK)
async def test_the_api_server_calls_the_webhook_and_refuses_a_broken_connector(
    controlplane: KubeCluster,
    controlplane_namespace: str,
    operator_credentials: kube.Credentials,
    cluster_capabilities: Capabilities,
    webhook_configurations_removed: None,
) -> None:
    """kubectl-apply a broken connector: the API server asks the operator and says why not."""
    host = cluster_capabilities.webhook_host
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    config = fast_config(namespace=OPERATOR_NAMESPACE, webhook_url_host=host, webhook_port=port)
    async with running_operator(operator_credentials, config, namespaces=[controlplane_namespace]):

        def registered() -> bool:
            with controlplane.client() as http:
                r = http.get(WEBHOOK_CONFIGURATION)
                return r.status_code == 200 and bool(r.json().get("webhooks"))

        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(registered):
            assert time.monotonic() < deadline, "the operator did not register its webhook"
            await asyncio.sleep(0.2)
        broken = scenarios.connector_resource()
        broken["metadata"]["namespace"] = controlplane_namespace
        broken["spec"]["purposes"][1]["fields"].append("clienten[].postcode")
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await asyncio.to_thread(controlplane.apply, broken)
        message = refused.value.response.json()["message"]
        assert 'admission webhook "validate-connector.knooppunt.nl" denied the request' in message
        assert (
            "connector iwmo-2-1 purpose wmo-toewijzing: field 'clienten[].postcode' is not "
            "produced by the conversion of WMO315"
        ) in message
        good = scenarios.connector_resource()
        good["metadata"]["namespace"] = controlplane_namespace
        await asyncio.to_thread(controlplane.apply, good)
        changed = scenarios.connector_resource(payloadRetentionDays=30)
        changed["metadata"]["namespace"] = controlplane_namespace
        with pytest.raises(httpx.HTTPStatusError) as unbumped:
            await asyncio.to_thread(controlplane.apply, changed)
        assert "raise spec.revision" in unbumped.value.response.json()["message"]

        # a Knooppunt naming PostgreSQL TLS material that is not there is refused, with why
        storage = {
            "backend": "postgresql",
            "postgresqlDsnSecret": {"name": "pg-dsn", "key": "url"},
            "postgresqlTls": {"ca": {"secret": "pg-ca"}},
        }
        node = scenarios.knooppunt_resource(storage=storage)
        node["metadata"]["namespace"] = controlplane_namespace
        with pytest.raises(httpx.HTTPStatusError) as no_ca:
            await asyncio.to_thread(controlplane.apply, node)
        message = no_ca.value.response.json()["message"]
        assert 'admission webhook "validate-knooppunt.knooppunt.nl" denied the request' in message
        assert "spec.storage.postgresqlTls.ca.secret: Secret 'pg-ca' not found" in message
        not_pem = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-ca", "namespace": controlplane_namespace},
            "stringData": {"ca.crt": "not a certificate"},
        }
        await asyncio.to_thread(controlplane.apply, not_pem)
        with pytest.raises(httpx.HTTPStatusError) as bad_ca:
            await asyncio.to_thread(controlplane.apply, node)
        assert (
            "key 'ca.crt' of Secret 'pg-ca' holds no PEM certificate"
            in (bad_ca.value.response.json()["message"])
        )
        ca = certificates.load_ca(certificates.create_node_ca("pg", "database"))
        good_ca = {
            **not_pem,
            "stringData": {"ca.crt": certificates.pem_cert(ca.certificate).decode()},
        }
        await asyncio.to_thread(controlplane.apply, good_ca)
        await asyncio.to_thread(controlplane.apply, node)  # now admitted
        weaker = copy.deepcopy(node)
        weaker["spec"]["storage"]["postgresqlTls"]["sslMode"] = "require"
        with pytest.raises(httpx.HTTPStatusError) as downgrade:
            await asyncio.to_thread(controlplane.apply, weaker)
        assert (
            "weaker than verify-full while a CA is given"
            in (downgrade.value.response.json()["message"])
        )
    with controlplane.client() as http:  # kopf takes its (non-persistent) webhook back out
        config_after = http.get(WEBHOOK_CONFIGURATION).json()
    assert not config_after.get("webhooks")
