"""The operator as real processes against the real control plane: killed, restarted, doubled.

Each replica is a ``kopf run -m knooppunt_operator.main`` subprocess with the operator's
service account (the generated RBAC), leader election on a Lease of its own per test, and
Prometheus metrics on a free port (so a test can ask a replica whether it leads and how many
objects it applied). A replica is stopped with SIGKILL (no clean-up, the Lease is not
released) or SIGTERM (kopf shuts down and the Lease is given back).

On an existing cluster (``$KNOOPPUNT_TEST_KUBECONFIG``) the restart test needs the runtime's
pods to run there (``runtime-pods``); the two-replica test reads the API server's audit log,
which only the local control plane offers (``audit-log``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from knooppunt_operator import kube
from knooppunt_operator.builders.secrets import unb64

from tests.controlplane.capabilities import AUDIT_LOG, RUNTIME_PODS, Capabilities
from tests.controlplane.cluster import ControlPlane, KubeCluster
from tests.operator import scenarios
from tests.operator.harness import Cluster
from tests.operator.scenarios import CONNECTOR, NODE
from tests.operator.test_operator_controlplane import (
    OPERATOR_NAMESPACE,
    REPO,
    audit_quiet,
    install_operator,
    node_data_volume,
    rollout_driver,
    rollouts_held,
)

pytestmark = pytest.mark.controlplane

KOPF_STATE = re.compile(r"knooppunt\.nl/((knooppunt|connector|gemeente)-|last-handled)")
FINALIZER = "knooppunt.nl/finalizer"
MANAGED = {"app.kubernetes.io/managed-by": "knooppunt-operator"}
GEMEENTEN = 3
NODE_CHILDREN = [
    (kube.SERVICE_ACCOUNT, NODE),
    (kube.ROLE, f"{NODE}-runtime"),
    (kube.ROLE_BINDING, f"{NODE}-runtime"),
    (kube.CONFIG_MAP, f"{NODE}-resources"),
    (kube.SECRET, f"{NODE}-ca"),
    (kube.SECRET, f"{NODE}-tls"),
    (kube.SECRET, f"{NODE}-pseudonym"),
    (kube.DEPLOYMENT, NODE),
    (kube.SERVICE, NODE),
    (kube.POD_DISRUPTION_BUDGET, NODE),
    (kube.NETWORK_POLICY, NODE),
    (kube.PERSISTENT_VOLUME_CLAIM, f"{NODE}-data"),
]
# Kinds the operator creates; listed by its managed-by label to find strays.
MANAGED_KINDS = sorted({kind for kind, _ in NODE_CHILDREN}, key=lambda k: k.kind)


# ----------------------------------------------------------------------------- replicas


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Replica:
    """One operator process."""

    identity: str
    popen: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up handlers, the Lease stays taken until it expires."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM: kopf stops, the cleanup handler gives the Lease back."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.identity} did not stop on SIGTERM") from None

    def metrics(self) -> dict[str, float]:
        """The replica's Prometheus samples (name with labels -> value); {} if unreachable."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line.startswith("knooppunt_operator_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def applied(self) -> float:
        return sum(
            v
            for k, v in self.metrics().items()
            if k.startswith("knooppunt_operator_applied_total{")
        )

    def reconciled(self) -> float:
        return sum(
            v
            for k, v in self.metrics().items()
            if k.startswith("knooppunt_operator_reconciles_total{")
        )

    def leads(self) -> bool | None:
        value = self.metrics().get("knooppunt_operator_leader")
        return None if value is None else value == 1.0


@dataclass
class Replicas:
    kubeconfig: Path
    namespace: str
    lease: str
    logs: Path
    started: list[Replica] = field(default_factory=list)

    def start(self, identity: str, kubeconfig: Path | None = None, **settings: str) -> Replica:
        """A replica; ``settings`` override KNOOPPUNT_OPERATOR_* (e.g. LEASE_SECONDS="30")."""
        port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "KNOOPPUNT_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "KNOOPPUNT_OPERATOR_IDENTITY": identity,
            "KNOOPPUNT_OPERATOR_LEADER_ELECTION": "true",
            "KNOOPPUNT_OPERATOR_LEASE_NAME": self.lease,
            "KNOOPPUNT_OPERATOR_LEASE_SECONDS": "3",
            "KNOOPPUNT_OPERATOR_RENEW_SECONDS": "0.5",
            # The tests drive the rollouts; no rollback of a rollout left pending on purpose.
            "KNOOPPUNT_OPERATOR_ROLLOUT_DEADLINE_SECONDS": "300",
            "KNOOPPUNT_OPERATOR_OBSERVE_INTERVAL": "0.3",
            "KNOOPPUNT_OPERATOR_PENDING_RETRY_SECONDS": "0.3",
            "KNOOPPUNT_OPERATOR_METRICS_PORT": str(port),
            **{f"KNOOPPUNT_OPERATOR_{key}": value for key, value in settings.items()},
        }
        for key in ("KNOOPPUNT_OPERATOR_KUBE_URL", "KUBERNETES_SERVICE_HOST"):
            env.pop(key, None)
        log = self.logs / f"operator-{identity}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kopf",
                    "run",
                    "--standalone",
                    "--verbose",
                    "--namespace",
                    self.namespace,
                    "-m",
                    "knooppunt_operator.main",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        replica = Replica(identity, popen, port, log)
        self.started.append(replica)
        return replica

    async def wait_up(self, replica: Replica, timeout: float = 30) -> None:
        """Until its metrics endpoint answers (started after the login and start-up)."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(replica.metrics):
            assert replica.alive(), f"{replica.identity} exited:\n{self.tail(replica)}"
            assert time.monotonic() < deadline, f"{replica.identity} did not start"
            await asyncio.sleep(0.1)

    def tail(self, replica: Replica, lines: int = 40) -> str:
        text = replica.log.read_text(errors="replace") if replica.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for replica in self.started:
            replica.kill()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def operator_kubeconfig(controlplane: KubeCluster) -> Path:
    """CRDs installed; a kubeconfig of the operator's service account with the generated RBAC."""
    return install_operator(controlplane)


@dataclass
class Setup:
    cluster: Cluster
    replicas: Replicas
    admin: kube.KubeClient

    async def lease(self) -> dict[str, Any] | None:
        return await self.admin.get(kube.LEASE, OPERATOR_NAMESPACE, self.replicas.lease)

    async def holder(self) -> str | None:
        return ((await self.lease() or {}).get("spec") or {}).get("holderIdentity")

    def logs(self) -> str:
        return "\n".join(
            f"----- {r.identity} (rc={r.popen.poll()}) -----\n{self.replicas.tail(r)}"
            for r in self.replicas.started
        )


@pytest_asyncio.fixture()
async def setup(
    controlplane: KubeCluster,
    controlplane_namespace: str,
    operator_kubeconfig: Path,
    cluster_capabilities: Capabilities,
    tmp_path: Path,
) -> AsyncIterator[Setup]:
    admin_credentials = kube.Credentials.from_kubeconfig(controlplane.kubeconfig)
    replicas = Replicas(
        operator_kubeconfig,
        controlplane_namespace,
        f"knooppunt-operator-{uuid.uuid4().hex[:8]}",
        tmp_path,
    )
    # New pods stay Pending until a rollout may succeed (local control plane).
    with (
        rollouts_held(controlplane, cluster_capabilities),
        node_data_volume(controlplane, controlplane_namespace),
    ):
        try:
            async with kube.KubeClient(admin_credentials, user_agent="knooppunt-tests") as admin:
                cluster = Cluster(
                    admin,
                    controlplane_namespace,
                    rollout_driver=rollout_driver(controlplane, cluster_capabilities),
                )
                yield Setup(cluster, replicas, admin)
        finally:
            replicas.stop_all()
            with controlplane.client() as http:
                http.delete(
                    f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}"
                    f"/leases/{replicas.lease}"
                )


@contextlib.contextmanager
def logs_on_failure(setup: Setup) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print(setup.logs())  # shown by pytest with the failure
        raise


# ----------------------------------------------------------------------------- checks


async def create_resources(cluster: Cluster) -> None:
    await cluster.create(scenarios.connector_resource())
    await cluster.create(scenarios.knooppunt_resource())
    for index in range(1, GEMEENTEN + 1):
        await cluster.create(scenarios.gemeente_resource(index))


async def converged(cluster: Cluster, gemeenten: int = GEMEENTEN) -> None:
    """What an uninterrupted run ends with (cf. scenarios.create_knooppunt_makes_its_children
    and scenarios.gemeenten_never_touch_the_deployment)."""
    await cluster.wait_condition(
        kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True", reason="Recorded", timeout=30
    )
    await cluster.eventually(
        lambda: cluster.get(kube.DEPLOYMENT, NODE), timeout=30, what="Deployment"
    )
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Ready", "True", reason="Available", timeout=30
    )
    await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Progressing", "False", reason="RolloutComplete"
    )
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Degraded", "False")
    for index in range(1, gemeenten + 1):
        name = f"gemeente-{index:04d}"
        await cluster.wait_condition(
            kube.GEMEENTE, name, "Ready", "True", reason="Served", timeout=30
        )
        status = (await cluster.must_get(kube.GEMEENTE, name))["status"]
        assert status["nodes"] == [NODE], name
        assert status["certificate"]["issuer"] == NODE, name

    async def counted() -> bool:
        status = (await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}
        return status.get("gemeenten") == gemeenten and status.get("availableReplicas") == 1

    await cluster.eventually(counted, timeout=15, what=f"{gemeenten} gemeenten counted")
    await cluster.eventually(
        lambda: no_kopf_state(cluster),
        timeout=30,
        what="no kopf state, the operator's finalizers in place",
    )
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["connectorSummary"] == "iwmo-2-1@r1"
    assert status["lastGood"]["revisions"] == {CONNECTOR: 1}
    connector = await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR)
    assert connector["status"]["revision"] == 1 and connector["status"]["revisions"] == [1]


async def no_kopf_state(cluster: Cluster) -> bool:
    """kopf only watches: no progress or diff-base annotations, no kopf finalizer; the
    operator's own finalizer on exactly the Gemeenten and SectorConnectors."""
    for kind in (kube.KNOOPPUNT, kube.SECTOR_CONNECTOR, kube.GEMEENTE):
        for obj in await cluster.list(kind):
            annotations = obj["metadata"].get("annotations") or {}
            if any(KOPF_STATE.match(key) for key in annotations):
                return False
            finalizers = obj["metadata"].get("finalizers") or []
            if finalizers != ([] if kind is kube.KNOOPPUNT else [FINALIZER]):
                return False
    return True


async def no_strays(cluster: Cluster, gemeenten: int = GEMEENTEN) -> None:
    """Exactly the expected children, each owned (as controller) by its one live owner."""
    kp = await cluster.must_get(kube.KNOOPPUNT, NODE)
    owners = {("Knooppunt", NODE): kp["metadata"]["uid"]}
    for index in range(1, gemeenten + 1):
        g = await cluster.must_get(kube.GEMEENTE, f"gemeente-{index:04d}")
        owners[("Gemeente", g["metadata"]["name"])] = g["metadata"]["uid"]
    expected = {(kind.kind, name): ("Knooppunt", NODE) for kind, name in NODE_CHILDREN}
    for index in range(1, gemeenten + 1):
        name = f"gemeente-{index:04d}"
        expected[("Secret", f"{name}-client-tls")] = ("Gemeente", name)

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in MANAGED_KINDS:
        for obj in await cluster.list(kind, **MANAGED):
            found[(kind.kind, obj["metadata"]["name"])] = obj
    assert sorted(found) == sorted(expected), "managed objects differ from an uninterrupted run"
    for key, obj in found.items():
        refs = obj["metadata"].get("ownerReferences") or []
        owner_kind, owner_name = expected[key]
        assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in refs] == [
            (owner_kind, owner_name, owners[(owner_kind, owner_name)], True)
        ], key

    # One recorded connector revision; one ReplicaSet (one pod template) for the node.
    revisions = await cluster.list(kube.CONTROLLER_REVISION)
    assert len(revisions) == 1, [r["metadata"]["name"] for r in revisions]
    replica_sets = await cluster.client.list(
        kube.Kind("apps/v1", "ReplicaSet", "replicasets"), cluster.namespace
    )
    assert len(replica_sets) == 1, [r["metadata"]["name"] for r in replica_sets]

    # The node kept one CA: its serving and client certificates trust the CA that is stored.
    ca = (await cluster.must_get(kube.SECRET, f"{NODE}-ca"))["data"]["ca.crt"]
    tls = (await cluster.must_get(kube.SECRET, f"{NODE}-tls"))["data"]["ca.crt"]
    assert (unb64({"c": ca}, "c") or b"?") in (unb64({"t": tls}, "t") or b"")
    for index in range(1, gemeenten + 1):
        client = await cluster.must_get(kube.SECRET, f"gemeente-{index:04d}-client-tls")
        assert client["data"]["ca.crt"] == ca


@pytest.mark.asyncio
@pytest.mark.timeout(120)
@pytest.mark.cluster_needs(RUNTIME_PODS)
async def test_the_operator_killed_mid_reconcile_converges_after_restart(setup: Setup) -> None:
    cluster, replicas = setup.cluster, setup.replicas
    with logs_on_failure(setup):
        first = replicas.start("replica-a")
        await replicas.wait_up(first)
        await cluster.eventually(lambda: setup.holder(), what="replica-a leads", timeout=15)
        assert await setup.holder() == "replica-a"
        await create_resources(cluster)

        async def first_child() -> list[str]:
            present = []
            for kind, name in NODE_CHILDREN:
                if await cluster.get(kind, name) is not None:
                    present.append(f"{kind.kind}/{name}")
            return present

        partial = await cluster.eventually(
            first_child, timeout=30, interval=0.01, what="the first child object"
        )
        first.kill()  # SIGKILL mid-reconcile: no clean-up, the Lease is not given back
        assert first.popen.returncode == -signal.SIGKILL
        ready = await cluster.condition(kube.KNOOPPUNT, NODE, "Ready")
        assert not ready or ready["status"] != "True", "killed too late: the node was Ready"
        assert len(partial) < len(NODE_CHILDREN), f"killed too late: {partial}"
        assert await setup.holder() == "replica-a", "a killed replica does not release"

        second = replicas.start("replica-b")
        await replicas.wait_up(second)
        # replica-b waits for replica-a's Lease to expire (3 s), then takes over.
        await cluster.eventually(
            lambda: _is(setup.holder(), "replica-b"), timeout=20, what="replica-b takes the Lease"
        )
        await converged(cluster)
        await no_strays(cluster)
        lease = await setup.lease()
        assert lease is not None and lease["spec"]["leaseTransitions"] == 1
        assert second.alive() and second.leads() is True and second.applied() > 0


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


# ----------------------------------------------------------------------------- two replicas


def replica_kubeconfig(controlplane: KubeCluster, account: str) -> Path:
    """A service account of its own for one replica, bound to the operator's generated roles,
    so that the API server's audit log tells the replicas apart."""
    subjects = [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NAMESPACE}]
    for kind, namespace in (("ClusterRole", None), ("Role", OPERATOR_NAMESPACE)):
        metadata: dict[str, Any] = {"name": account}
        if namespace:
            metadata["namespace"] = namespace
        controlplane.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": f"{kind}Binding",
                "metadata": metadata,
                "subjects": subjects,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": kind,
                    "name": "knooppunt-operator",
                },
            }
        )
    return controlplane.kubeconfig_for_service_account(OPERATOR_NAMESPACE, account)


def user_of(account: str) -> str:
    return f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}"


READS = ("get", "list", "watch")


def audit_offset(controlplane: KubeCluster) -> int:
    assert controlplane.audit_log is not None
    return controlplane.audit_log.stat().st_size if controlplane.audit_log.exists() else 0


def operator_writes(controlplane: KubeCluster, since: int, namespace: str) -> list[dict[str, Any]]:
    """Writes by the operator's accounts to the test's namespace or to knooppunt.nl resources
    anywhere, from the API server's audit log (the Lease in the operator's namespace aside)."""
    assert controlplane.audit_log is not None
    with controlplane.audit_log.open("rb") as log:
        log.seek(since)
        lines = log.read().splitlines()
    writes = []
    for line in lines:
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "leases" or event.get("verb") in READS:
            continue
        if ref.get("namespace") == namespace or ref.get("apiGroup") == "knooppunt.nl":
            writes.append(event)
    return writes


def moment(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def by_user(writes: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(e["user"]["username"] for e in writes)


@pytest.mark.asyncio
@pytest.mark.timeout(180)
@pytest.mark.cluster_needs(AUDIT_LOG, RUNTIME_PODS)
@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
async def test_two_replicas_never_reconcile_at_the_same_time(
    stop: str, setup: Setup, controlplane: KubeCluster
) -> None:
    """Both replicas watch everything from the start; the API server's own audit log shows
    that only the Lease holder ever writes, and that after a hand-over the new leader's first
    write comes after the old leader's last."""
    cluster, replicas = setup.cluster, setup.replicas
    accounts = {"replica-a": "knooppunt-operator-a", "replica-b": "knooppunt-operator-b"}
    kubeconfigs = {name: replica_kubeconfig(controlplane, sa) for name, sa in accounts.items()}
    mark = audit_offset(controlplane)
    with logs_on_failure(setup):
        started = {name: replicas.start(name, kubeconfigs[name]) for name in accounts}
        for replica in started.values():
            await replicas.wait_up(replica)
        holder = await cluster.eventually(setup.holder, timeout=15, what="a leader")
        (standby_name,) = set(accounts) - {holder}
        leader, standby = started[holder], started[standby_name]

        await create_resources(cluster)
        await converged(cluster)
        await no_strays(cluster)
        assert leader.leads() is True and standby.leads() is False
        assert leader.reconciled() > 0 and leader.applied() > 0
        assert standby.reconciled() == 0 and standby.applied() == 0
        writers = by_user(operator_writes(controlplane, mark, cluster.namespace))
        assert writers[user_of(accounts[holder])] > 0, writers
        assert writers[user_of(accounts[standby_name])] == 0, (
            f"the standby wrote while {holder} led: {writers}"
        )

        # Hand-over: the leader stops cleanly and gives the Lease back (SIGTERM), or dies
        # without a word (SIGKILL: the standby waits until the Lease record has stood still
        # for a whole lease); the standby, which has watched everything all along, takes over
        # and serves one more gemeente.
        handover = audit_offset(controlplane)
        if stop == "SIGTERM":
            assert leader.terminate() == 0
        else:
            leader.kill()
        await cluster.eventually(
            lambda: _is(setup.holder(), standby_name),
            timeout=20,
            what=f"{standby_name} takes the Lease",
        )
        await cluster.create(scenarios.gemeente_resource(GEMEENTEN + 1))
        await cluster.wait_condition(
            kube.GEMEENTE,
            f"gemeente-{GEMEENTEN + 1:04d}",
            "Ready",
            "True",
            reason="Served",
            timeout=30,
        )

        async def counted() -> bool:
            node_status = (await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}
            return node_status.get("gemeenten") == GEMEENTEN + 1

        await cluster.eventually(counted, timeout=15, what="the new gemeente counted")
        await cluster.eventually(
            lambda: no_kopf_state(cluster),
            timeout=15,
            what="no kopf state, the operator's finalizers in place",
        )
        await no_strays(cluster, GEMEENTEN + 1)
        assert standby.leads() is True and standby.reconciled() > 0

        writes = operator_writes(controlplane, mark, cluster.namespace)
        old = [e for e in writes if e["user"]["username"] == user_of(accounts[holder])]
        new = [e for e in writes if e["user"]["username"] == user_of(accounts[standby_name])]
        assert old and new, by_user(writes)
        last_old = max(moment(e["stageTimestamp"]) for e in old)
        first_new = min(moment(e["requestReceivedTimestamp"]) for e in new)
        assert last_old < first_new, (
            f"{standby_name} wrote at {first_new} before {holder} had stopped ({last_old})"
        )
        after = by_user(operator_writes(controlplane, handover, cluster.namespace))
        assert set(after) == {user_of(accounts[standby_name])}, after
        lease = await setup.lease()
        assert lease is not None and lease["spec"]["leaseTransitions"] == 1


# ----------------------------------------------------------------------------- lost watches


@pytest.mark.asyncio
@pytest.mark.timeout(420)
@pytest.mark.cluster_needs(AUDIT_LOG, RUNTIME_PODS)
async def test_a_restarted_api_server_costs_no_writes(
    setup: Setup, controlplane: KubeCluster
) -> None:
    """The API server restarts mid-run: every watch of the operator is cut. kopf resumes or
    lists again; the operator's cache is whole again and nothing it re-reads calls for a
    write (only the node's status may follow its Deployment, whose pods the outage may have
    touched); a gemeente added afterwards costs its four writes and no more."""
    assert isinstance(controlplane, ControlPlane)
    cluster, replicas = setup.cluster, setup.replicas
    with logs_on_failure(setup):
        # A lease long enough to outlast the restart (a leader that cannot renew in time
        # steps down and exits, by design: that is the other tests' business).
        replica = replicas.start("replica-a", LEASE_SECONDS="300", RENEW_SECONDS="1")
        await replicas.wait_up(replica)
        await cluster.eventually(
            lambda: _is(setup.holder(), "replica-a"), timeout=15, what="replica-a leads"
        )
        await create_resources(cluster)
        await converged(cluster)
        reconciled = replica.reconciled()
        mark = audit_offset(controlplane)

        # In this thread: the new API server dies with the thread that starts it.
        controlplane.restart_apiserver(2.0)
        # The Lease renewals fail while the server is down; the replica keeps its lease.
        await cluster.eventually(
            lambda: _is(setup.holder(), "replica-a"),
            timeout=60,
            what="replica-a leads after the restart",
        )
        assert replica.alive(), replicas.tail(replica)
        quiet = await audit_quiet(controlplane)  # kopf has listed / resumed every watch
        after_restart = by_kind(operator_writes(controlplane, mark, cluster.namespace))
        after_restart.pop("patch knooppunten/status", None)
        assert after_restart == collections.Counter(), (
            f"writes after the restart, before any change: {after_restart}"
        )

        name = f"gemeente-{GEMEENTEN + 1:04d}"
        await cluster.create(scenarios.gemeente_resource(GEMEENTEN + 1))
        await cluster.wait_condition(
            kube.GEMEENTE, name, "Ready", "True", reason="Served", timeout=60
        )

        async def counted() -> bool:
            node_status = (await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}
            return node_status.get("gemeenten") == GEMEENTEN + 1

        await cluster.eventually(counted, timeout=30, what="the new gemeente counted")
        await no_strays(cluster, GEMEENTEN + 1)
        await audit_quiet(controlplane)
        writes = by_kind(operator_writes(controlplane, quiet, cluster.namespace))
        assert writes.pop("patch knooppunten/status", 0) >= 1, writes  # the count
        assert writes == collections.Counter(
            {"patch gemeenten": 1, "patch secrets": 1, "patch gemeenten/status": 1}
        ), writes
        assert replica.reconciled() > reconciled


def by_kind(writes: list[dict[str, Any]]) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for event in writes:
        ref = event.get("objectRef") or {}
        sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
        out[f"{event['verb']} {ref.get('resource')}{sub}"] += 1
    return out
