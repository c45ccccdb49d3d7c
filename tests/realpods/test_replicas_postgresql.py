"""Two real pods on PostgreSQL under load: one pod deleted mid-load, and a connector upgrade
rolled through the pods; every accepted message is stored once and delivered once per
subscription, none is lost or delivered twice."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from knooppunt_operator import kube
from sqlalchemy import create_engine, func, select

from node_runtime.model.loading import load_paths
from node_runtime.security.pki.store import DevPki
from node_runtime.store import schema
from tests.controlplane.cluster import wait_for
from tests.operator.harness import Cluster
from tests.postgresql.server import PostgresServer
from tests.realpods import helpers
from tests.realpods.conftest import RealPods
from tests.reliability.test_crash_safety import valid_bsns
from tests.runtime.helpers import header, replace_first, with_new_id
from tests.runtime.test_intake_e2e import sender_of

pytestmark = [pytest.mark.realpods, pytest.mark.postgresql, pytest.mark.asyncio]

GEMEENTE = "0363"  # Amsterdam pulls its mailbox (no push endpoint to reach)
DSN_SECRET = "knooppunt-zorg-database"


class Load:
    """Senders posting distinct WMO305 messages through the node's Service until stopped; a
    refused connection or a 503 is retried with the same message (the node deduplicates)."""

    def __init__(self, pki: DevPki, address: str, port: int, *, senders: int = 3) -> None:
        resources = load_paths([helpers.EXAMPLES])
        self.base = next(p.read_bytes() for p in sorted(helpers.MESSAGES.glob("wmo305*.xml"))
                         if header(p.read_bytes())["Ontvanger"] == GEMEENTE)
        self.sender = sender_of(resources, header(self.base)["Afzender"])
        self.parties = helpers.Parties(pki, address, port)
        self.bsns = valid_bsns(20)
        self.accepted: dict[str, str] = {}
        self.retries = 0
        self.last_transport_error = ""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(senders)]
        self.run = uuid.uuid4().hex[:6].upper()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)
        self.parties.close()

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)

    async def wait(self, n: int, what: str) -> None:
        try:
            await asyncio.to_thread(wait_for, lambda: self.reached(n), timeout=120,
                                    message=what)
        except TimeoutError as exc:
            raise AssertionError(f"{what}: {exc.__cause__}") from exc

    def reached(self, n: int) -> bool:
        """At least ``n`` accepted; a sender's error fails at once (with what it got)."""
        assert not self.errors, self.errors[:3]
        if not any(t.is_alive() for t in self.threads):
            raise AssertionError("every sender stopped")
        if self.count() < n:
            raise AssertionError(f"{self.count()} accepted, {self.retries} retries, last "
                                 f"transport error: {self.last_transport_error}")
        return True

    def _run(self, worker: int) -> None:
        client = self.parties(self.sender)
        n = 0
        while not self.stop.is_set():
            n += 1
            ident = f"{self.run}{worker}{n:05d}"
            body = replace_first(with_new_id(self.base, ident), "Bsn",
                                 self.bsns[n % len(self.bsns)])
            deadline = time.monotonic() + 120
            while True:
                try:
                    resp = client.post(f"/api/v1/connectors/{helpers.CONNECTOR}/messages",
                                       content=body, headers={"content-type": "application/xml"})
                    if resp.status_code == 202:
                        with self.lock:
                            self.accepted[ident] = resp.headers["knooppunt-message-id"]
                        break
                    if resp.status_code not in (502, 503, 504):
                        self.errors.append(f"{resp.status_code} {resp.text[:300]}")
                        return
                except httpx.TransportError as exc:
                    self.last_transport_error = repr(exc)
                with self.lock:
                    self.retries += 1
                if time.monotonic() > deadline:
                    self.errors.append(f"{ident} not accepted within 120 s")
                    return
                time.sleep(0.2)


@contextmanager
def postgresql_node(rp: RealPods, pg: PostgresServer, ns: str, pki: DevPki) -> Iterator[str]:
    """The example node with two replicas on a fresh database; yields the database's URL."""
    name = f"rp_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    pod_url = url.replace("@127.0.0.1:", f"@{rp.node.ip}:")
    try:
        rp.cp.apply({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": DSN_SECRET, "namespace": ns},
                     "data": {"url": base64.b64encode(pod_url.encode()).decode()}})
        helpers.apply_example(rp, ns, pki, replicas=2, storage={
            "backend": "postgresql", "postgresqlDsnSecret": {"name": DSN_SECRET, "key": "url"}})
        yield url
    finally:
        pg.drop_database(name)


async def two_ready_pods(rp: RealPods, cluster: Cluster) -> list[dict[str, object]]:
    await cluster.wait_condition(kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=420,
                                 interval=1)

    def two() -> list[dict[str, object]]:
        pods = helpers.pods(rp, cluster.namespace)
        return pods if len(pods) == 2 and all(helpers.ready(p) for p in pods) else []

    return await asyncio.to_thread(wait_for, two, timeout=300, interval=1,
                                   message="two ready pods")


def service_address(rp: RealPods, ns: str) -> tuple[str, int]:
    with rp.cp.client() as http:
        svc = http.get(f"/api/v1/namespaces/{ns}/services/{helpers.NODE}").json()
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "https")
    return svc["spec"]["clusterIP"], port


def subscriptions_for_wmo305() -> int:
    resources = load_paths([helpers.EXAMPLES])
    connector = resources.connectors[helpers.CONNECTOR]
    purposes = {p.name: p for p in connector.spec.purposes}
    g = next(g for g in resources.gemeenten.values() if g.spec.gemeentecode == GEMEENTE)
    return len([s for s in g.spec.subscriptions if "WMO305" in purposes[s.purpose].messages
                and (not s.messages or "WMO305" in s.messages)])


def assert_each_accepted_once(load: Load, url: str, pki: DevPki, address: str,
                              port: int) -> None:
    assert not load.errors, load.errors
    accepted = set(load.accepted.values())
    per_message = subscriptions_for_wmo305()
    assert per_message >= 1
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            m, d = schema.messages, schema.deliveries
            stored = {r[0] for r in conn.execute(select(m.c.id))}
            rows = conn.execute(
                select(d.c.message_id, d.c.purpose, func.count()).where(
                    d.c.mailbox_id == GEMEENTE).group_by(d.c.message_id, d.c.purpose)).all()
    finally:
        engine.dispose()
    assert accepted <= stored, f"accepted but not stored: {len(accepted - stored)}"
    assert len(stored) == len(accepted), "stored messages nobody was told were accepted"
    assert all(n == 1 for _, _, n in rows), "a message delivered twice to one purpose"
    delivered: dict[str, int] = {}
    for message_id, _, _ in rows:
        delivered[message_id] = delivered.get(message_id, 0) + 1
    assert {k for k, v in delivered.items() if v == per_message} == accepted

    # And the gemeente pulls exactly that many from its mailbox, through the Service.
    parties = helpers.Parties(pki, address, port)
    try:
        client = parties("gemeente-amsterdam")
        items: list[dict[str, object]] = []
        after: int | None = None
        while True:
            params = {"limit": 500, **({"after": after} if after is not None else {})}
            page = client.get(f"/api/v1/gemeenten/{GEMEENTE}/mailbox", params=params).json()
            items += page["items"]
            after = page.get("nextAfter")
            if after is None:
                break
    finally:
        parties.close()
    assert len(items) == len(accepted) * per_message
    assert len({i["id"] for i in items}) == len(items)


async def test_pod_deleted_mid_load_loses_nothing(
    realpods: RealPods, realpods_postgresql: PostgresServer, tmp_path: Path
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(rp) as ns:
        async with helpers.operator(rp, ns) as cluster:
            with postgresql_node(rp, realpods_postgresql, ns, pki) as url:
                pods = await two_ready_pods(rp, cluster)
                address, port = service_address(rp, ns)
                with Load(pki, address, port) as load:
                    await load.wait(20, "load running")
                    victim = pods[0]["metadata"]["name"]
                    with rp.cp.client() as http:  # as a drain would: graceful
                        http.delete(f"/api/v1/namespaces/{ns}/pods/{victim}").raise_for_status()
                    before = load.count()

                    def replaced() -> bool:
                        now = helpers.pods(rp, ns)
                        names = {p["metadata"]["name"] for p in now}
                        return (victim not in names and len(now) == 2
                                and all(helpers.ready(p) for p in now))

                    await asyncio.to_thread(wait_for, replaced, timeout=300, interval=1,
                                            message="the deleted pod replaced")
                    await load.wait(before + 20, "load after the replacement")
                assert_each_accepted_once(load, url, pki, address, port)


async def test_connector_upgrade_rolls_the_pods_without_losing_a_message(
    realpods: RealPods, realpods_postgresql: PostgresServer, tmp_path: Path
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(rp) as ns:
        async with helpers.operator(rp, ns) as cluster:
            with postgresql_node(rp, realpods_postgresql, ns, pki) as url:
                old = {p["metadata"]["name"] for p in await two_ready_pods(rp, cluster)}
                address, port = service_address(rp, ns)
                with Load(pki, address, port) as load:
                    await load.wait(20, "load running")
                    upgraded = helpers.documents("connector.yaml")[0]
                    upgraded["spec"].update(revision=2, payloadRetentionDays=60)
                    await cluster.patch(kube.SECTOR_CONNECTOR, helpers.CONNECTOR,
                                        {"spec": upgraded["spec"]})

                    async def on_revision_2() -> bool:
                        kp = await cluster.must_get(kube.KNOOPPUNT, helpers.NODE)
                        st = kp.get("status") or {}
                        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
                        return (conds.get("Ready") == "True"
                                and st.get("connectorSummary") == f"{helpers.CONNECTOR}@r2")

                    await cluster.eventually(on_revision_2, timeout=420, interval=1,
                                             what="the node ready on revision 2")
                    new = await two_ready_pods(rp, cluster)
                    assert not old & {p["metadata"]["name"] for p in new}, "pods not rolled"
                    before = load.count()
                    await load.wait(before + 20, "load after the rollout")
                # The new pods serve revision 2.
                parties = helpers.Parties(pki, address, port)
                try:
                    catalogue = parties("gemeente-amsterdam").get("/api/v1/catalogue").json()
                finally:
                    parties.close()
                assert catalogue["connectors"][0]["revision"] == 2
                assert_each_accepted_once(load, url, pki, address, port)
