"""Two real pods on PostgreSQL under continuous load; one pod is deleted mid-load (as a drain
would: gracefully, through the API). Every message the node accepted is stored once and
delivered once per subscription; none is lost, none delivered twice. The pods' database
connections are TLS, verified against the CA the Knooppunt names (spec.storage.postgresqlTls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from knooppunt_operator import kube

from tests.controlplane.cluster import wait_for
from tests.postgresql.server import PostgresServer
from tests.realpods import helpers
from tests.realpods.conftest import RealPods
from tests.realpods.load import Load, assert_each_accepted_once, pull_mailbox

pytestmark = [pytest.mark.realpods, pytest.mark.postgresql, pytest.mark.asyncio]


async def test_a_pod_deleted_mid_load_loses_nothing_and_delivers_nothing_twice(
    realpods: RealPods, realpods_postgresql: PostgresServer, tmp_path: Path
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(rp) as ns:
        async with helpers.operator(rp, ns) as cluster:
            with helpers.postgresql_node(rp, realpods_postgresql, ns, pki) as url:
                await cluster.wait_condition(
                    kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=420, interval=1
                )
                pods = await asyncio.to_thread(
                    wait_for,
                    lambda: helpers.ready_pods(rp, ns, 2),
                    timeout=300,
                    interval=1,
                    message="two ready pods",
                )
                # the pods reach PostgreSQL over TLS, verified against the CA the Knooppunt
                # names (the server refuses logins without TLS; verify-full refuses others)
                by_tls = await asyncio.to_thread(
                    helpers.database_connections, realpods_postgresql, url
                )
                assert by_tls.get(True, 0) >= 2 and not by_tls.get(False), by_tls
                address, port = helpers.service_address(rp, ns)
                with Load(pki, address, port) as load:
                    await load.wait(20, "load through the Service")
                    victim = pods[0]["metadata"]["name"]
                    with rp.cp.client() as http:  # graceful, as a drain or a rollout would
                        http.delete(f"/api/v1/namespaces/{ns}/pods/{victim}").raise_for_status()

                    def replaced() -> list[dict[str, object]]:
                        now = helpers.ready_pods(rp, ns, 2)
                        return [] if victim in {p["metadata"]["name"] for p in now} else now

                    await asyncio.to_thread(
                        wait_for, replaced, timeout=300, interval=1, message="a replacement pod"
                    )
                    await load.wait(load.count() + 20, "load after the replacement")
                parties = helpers.Parties(pki, address, port)
                try:
                    assert_each_accepted_once(load, url, lambda: pull_mailbox(parties))
                finally:
                    parties.close()
