"""Connector revisions rolled through real pods under continuous load (two replicas on
PostgreSQL, so the node serves throughout a rolling update):

- revision 2 rolls both pods to the new revision; every message accepted before, during and
  after the roll is in the mailbox exactly once;
- revision 3 is broken where only the real runtime can tell: it names a builtin bundle that
  the operator's release knows but the node's image does not ship (an operator upgraded ahead
  of the runtime image). The new pod's runtime refuses to start, the rollout misses its
  deadline, the operator rolls back to revision 2, and the old pods keep serving: the load
  never stops being accepted.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from knooppunt_operator import kube

from node_runtime.messages import bundles
from node_runtime.security.pki.store import DevPki
from tests.controlplane.cluster import wait_for
from tests.operator.harness import Cluster
from tests.postgresql.server import PostgresServer
from tests.realpods import helpers
from tests.realpods.conftest import RealPods
from tests.realpods.load import Load, assert_each_accepted_once, pull_mailbox

pytestmark = [pytest.mark.realpods, pytest.mark.postgresql, pytest.mark.asyncio]

#: Long enough for two real pods to roll on a busy 2-core machine, short enough to wait for.
ROLLOUT_DEADLINE = 120
UNSHIPPED_BUNDLE = "iwmo-2.1-next"


def connector(**spec: Any) -> dict[str, Any]:
    doc = helpers.documents("connector.yaml")[0]
    doc["spec"].update(spec)
    return doc


async def on_revision(cluster: Cluster, revision: int) -> bool:
    kp = await cluster.must_get(kube.KNOOPPUNT, helpers.NODE)
    st = kp.get("status") or {}
    conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
    return conds.get("Ready") == "True" and st.get("connectorSummary") == (
        f"{helpers.CONNECTOR}@r{revision}"
    )


def revision_served(pod: dict[str, Any], pki: DevPki) -> int:
    """The connector revision one pod serves, asked of that pod itself."""
    parties = helpers.Parties(pki, pod["status"]["podIP"])
    try:
        r = parties("gemeente-amsterdam").get("/api/v1/catalogue")
        assert r.status_code == 200, r.text
        [served] = r.json()["connectors"]
        return int(served["revision"])
    finally:
        parties.close()


def refused(rp: RealPods, ns: str) -> str:
    """The container log lines that name the unshipped bundle (empty: none yet)."""
    logs = rp.node.pod_logs(ns, lines=400)
    return "\n".join(line for line in logs.splitlines() if UNSHIPPED_BUNDLE in line)


@pytest.fixture
def operator_release_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator (in this test process) knows one more builtin bundle than the image."""
    root = tmp_path / "builtin"
    shutil.copytree(bundles.BUILTIN_ROOT, root)
    shutil.copytree(bundles.BUILTIN_ROOT / "iwmo-2.1", root / UNSHIPPED_BUNDLE)
    monkeypatch.setattr(bundles, "BUILTIN_ROOT", root)


async def test_connector_upgrade_rolls_the_real_pods_and_a_broken_revision_is_rolled_back(
    realpods: RealPods,
    realpods_postgresql: PostgresServer,
    tmp_path: Path,
    operator_release_ahead: None,
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(rp) as ns:
        async with helpers.operator(rp, ns, rollout_deadline_seconds=ROLLOUT_DEADLINE) as cluster:
            with helpers.postgresql_node(rp, realpods_postgresql, ns, pki) as url:
                await cluster.eventually(
                    lambda: on_revision(cluster, 1), timeout=420, interval=1, what="revision 1"
                )
                first = await asyncio.to_thread(
                    wait_for,
                    lambda: helpers.ready_pods(rp, ns, 2),
                    timeout=300,
                    interval=1,
                    message="two ready pods",
                )
                address, port = helpers.service_address(rp, ns)
                with Load(pki, address, port) as load:
                    await load.wait(20, "load through the Service")

                    # Revision 2: rolled through both pods while the load goes on.
                    await cluster.patch(
                        kube.SECTOR_CONNECTOR,
                        helpers.CONNECTOR,
                        {"spec": connector(revision=2, payloadRetentionDays=60)["spec"]},
                    )
                    await cluster.eventually(
                        lambda: on_revision(cluster, 2),
                        timeout=ROLLOUT_DEADLINE + 60,
                        interval=1,
                        what="both pods on revision 2",
                    )
                    second = await asyncio.to_thread(
                        wait_for,
                        lambda: helpers.ready_pods(rp, ns, 2),
                        timeout=120,
                        interval=1,
                        message="two ready pods on revision 2",
                    )
                    names = {p["metadata"]["name"] for p in second}
                    assert not names & {p["metadata"]["name"] for p in first}, "not rolled"
                    assert [revision_served(p, pki) for p in second] == [2, 2]
                    await load.wait(load.count() + 20, "load after the roll to revision 2")

                    # Revision 3: valid for the operator, refused by the runtime in the image.
                    await cluster.patch(
                        kube.SECTOR_CONNECTOR,
                        helpers.CONNECTOR,
                        {
                            "spec": connector(revision=3, bundle={"builtin": UNSHIPPED_BUNDLE})[
                                "spec"
                            ]
                        },
                    )
                    # The new pod really ran the image, and its runtime said why it refuses.
                    refusal = await asyncio.to_thread(
                        wait_for,
                        lambda: refused(rp, ns),
                        timeout=ROLLOUT_DEADLINE,
                        interval=1,
                        message="the runtime's refusal in the new pod's log",
                    )
                    assert "does not exist" in refusal, refusal
                    degraded = await cluster.wait_condition(
                        kube.KNOOPPUNT,
                        helpers.NODE,
                        "Degraded",
                        "True",
                        reason="RolledBack",
                        timeout=ROLLOUT_DEADLINE + 120,
                        interval=1,
                    )
                    assert (
                        "revision 3 of connector iwmo-2-1 did not become ready"
                        in (degraded["message"])
                    )
                    assert "rolled back to revision 2" in degraded["message"]

                    await cluster.eventually(
                        lambda: on_revision(cluster, 2),
                        timeout=ROLLOUT_DEADLINE,
                        interval=1,
                        what="back on revision 2",
                    )
                    after = await asyncio.to_thread(
                        wait_for,
                        lambda: helpers.ready_pods(rp, ns, 2),
                        timeout=120,
                        interval=1,
                        message="two ready pods after the rollback",
                    )
                    # The old pods kept serving: never replaced, never restarted.
                    assert {p["metadata"]["name"] for p in after} == names
                    assert all(
                        p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in after
                    )
                    assert [revision_served(p, pki) for p in after] == [2, 2]
                    await load.wait(load.count() + 20, "load after the rollback")
                    status = (await cluster.must_get(kube.KNOOPPUNT, helpers.NODE))["status"]
                    assert status["failedRollout"]["revisions"] == {helpers.CONNECTOR: 3}
                parties = helpers.Parties(pki, address, port)
                try:
                    assert_each_accepted_once(load, url, lambda: pull_mailbox(parties))
                finally:
                    parties.close()
