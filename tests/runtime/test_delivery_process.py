"""The delivery process (docs/decisions/delivery-process.md): the node starts it, restarts it
when it dies, stops it with the node; readiness and /metrics include it; a delivery process
killed in the middle of its pushes applies nothing twice, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from node_runtime.api.server import RunningNode
from node_runtime.model.loading import load_paths
from node_runtime.node.config import Settings
from node_runtime.node.supervisor import DeliverySupervisor
from node_runtime.observability.metrics import Metrics
from node_runtime.security.pki.development import ensure_for_resources, node_client_name
from node_runtime.security.pki.store import DevPki
from node_runtime.store import schema
from tests.conftest import NODE, free_port
from tests.runtime.helpers import replace_first, with_new_id
from tests.runtime.receiver import Receiver
from tests.runtime.test_push_delivery import (
    URL,
    XML,
    Start,
    _client,
    _provider,
    _rotterdam_message,
    _wait,
    configure,
)
from tests.runtime.test_push_delivery import push_node as _push_node

push_node = _push_node  # the fixture, shared


def _supervisor(running: RunningNode) -> DeliverySupervisor:
    supervisor = running.node.delivery
    assert supervisor is not None and running.node.worker is None
    return supervisor


def _child_pid(supervisor: DeliverySupervisor) -> int:
    # generous: on a loaded machine the child's imports and state take a while
    assert _wait(lambda: supervisor.up, timeout=120)
    assert supervisor.process is not None
    return supervisor.process.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped) counts as gone
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _send(running: RunningNode, pki: DevPki, count: int, tag: str) -> None:
    base = _rotterdam_message()
    with _client(running, pki, _provider(base)) as c:
        for i in range(count):
            body = replace_first(with_new_id(base, f"{tag}{i:08d}"), "Bsn", "999993653")
            assert c.post(URL, content=body, headers=XML).status_code == 202


def test_the_node_starts_its_delivery_process_and_shows_it(
    push_node: Start, receiver: Receiver
) -> None:
    running, pki = push_node("process")
    supervisor = _supervisor(running)
    pid = _child_pid(supervisor)
    assert pid != os.getpid()
    _send(running, pki, 2, "S")
    assert _wait(lambda: len(receiver.applied) == 2)
    delivered = 'knooppunt_push_attempts_total{gemeente="0599",result="delivered"} 2.0'
    with _client(running, pki, "admin") as admin:
        ready = admin.get("/readyz")
        assert ready.status_code == 200 and ready.json()["delivery"] == "running"
        # counted once settled, which follows the receiver's answer by up to a settle window
        assert _wait(lambda: delivered in admin.get("/metrics").text)
        metrics = admin.get("/metrics").text
    # the child's own figures, under the node's /metrics, once each
    assert "knooppunt_delivery_process_up 1.0" in metrics
    assert metrics.count("# TYPE knooppunt_push_attempts_total counter") == 1


def test_a_dead_delivery_process_is_restarted_and_readiness_shows_the_gap(
    push_node: Start, receiver: Receiver
) -> None:
    running, pki = push_node("process")
    supervisor = _supervisor(running)
    first = _child_pid(supervisor)
    supervisor.first_pause = 2.0  # long enough to see the gap
    os.kill(first, signal.SIGKILL)
    with _client(running, pki, "admin") as admin:
        assert _wait(lambda: admin.get("/readyz").status_code == 503)
        assert admin.get("/readyz").json()["delivery"] == "down"
        assert "knooppunt_delivery_process_up 0.0" in admin.get("/metrics").text
        assert _wait(lambda: admin.get("/readyz").status_code == 200, timeout=120)
        metrics = admin.get("/metrics").text
    assert supervisor.restarts == 1
    assert "knooppunt_delivery_process_restarts_total 1.0" in metrics
    second = _child_pid(supervisor)
    assert second != first and not _alive(first)
    _send(running, pki, 1, "R")  # the new process delivers
    assert _wait(lambda: len(receiver.applied) == 1)


def test_stopping_the_node_stops_its_delivery_process(push_node: Start, receiver: Receiver) -> None:
    running, _pki = push_node("process")
    supervisor = _supervisor(running)
    pid = _child_pid(supervisor)
    running.stop()
    assert _wait(lambda: not _alive(pid), timeout=15)
    assert supervisor.process is not None and supervisor.process.returncode == 0  # not killed
    assert not supervisor.socket_path.parent.exists()


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c", "sigkill"])
def test_sigterm_or_ctrl_c_to_the_node_process_stops_both_processes(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, receiver: Receiver, how: str
) -> None:
    """SIGTERM to the node (as the kubelet sends), or SIGINT to its process group (as a
    terminal's Ctrl-C does): the node stops its delivery process, which is not restarted.
    SIGKILL to the node: the delivery process sees its wake pipe close and stops, and removes
    its socket directory."""
    configure(resource_dir, receiver.url)
    pki = ensure_for_resources(dev_pki.store.directory, load_paths([resource_dir]), NODE)
    own = pki.clients[node_client_name(NODE)]
    port, health = free_port(), free_port()
    # `knooppunt up` builds the same node as `knooppunt serve` (delivery in a process)
    args = [sys.executable, "-m", "node_runtime.cli", "up", "-f", str(resource_dir)]
    args += ["--node", NODE, "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    args += ["--health-port", str(health), "--tls-cert", str(pki.server.chain)]
    args += ["--tls-key", str(pki.server.key), "--tls-trust", str(pki.ca_bundle)]
    args += ["--tls-crl", str(pki.crl), "--delivery-cert", str(own.chain)]
    args += ["--delivery-key", str(own.key), "--log-level", "WARNING"]
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        node = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{health}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        assert _wait(ready, timeout=180), log.read_text()[-3000:]
        children = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and _parent_of(int(p)) == node.pid and _alive(int(p))
        ]
        assert len(children) == 1, children
        assert "deliver" in Path(f"/proc/{children[0]}/cmdline").read_text()
        cmdline = Path(f"/proc/{children[0]}/cmdline").read_text().split("\0")
        socket_dir = Path(cmdline[cmdline.index("--metrics-socket") + 1]).parent
        assert socket_dir.is_dir()
        if how == "sigkill":
            node.kill()
            node.wait(30)
            assert _wait(lambda: not _alive(children[0]), timeout=20)
            assert not socket_dir.exists()
            return
        if how == "sigterm":
            node.send_signal(signal.SIGTERM)
        else:
            os.killpg(node.pid, signal.SIGINT)
        # uvicorn shuts down gracefully, then ends by the signal it caught
        assert node.wait(30) in (0, -signal.SIGTERM, -signal.SIGINT), log.read_text()[-3000:]
        assert _wait(lambda: not _alive(children[0]), timeout=5)
        text = log.read_text()
        assert "killing it" not in text  # the child stopped on its SIGTERM
        assert "starting it again" not in text
        assert not socket_dir.exists()
    finally:
        if node.poll() is None:
            node.kill()


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_delivery_process_killed_mid_batch_applies_nothing_twice(
    push_node: Start, receiver: Receiver, request: pytest.FixtureRequest, backend: str
) -> None:
    url = request.getfixturevalue("postgresql_url") if backend == "postgresql" else None
    count = 40
    receiver.delay = 0.5  # pushes are in flight when the process dies
    running, pki = push_node("process", database_url=url, concurrencyPerEndpoint=4)
    supervisor = _supervisor(running)
    first = _child_pid(supervisor)
    _send(running, pki, count, "K")
    assert _wait(lambda: receiver.received >= 6)
    os.kill(first, signal.SIGKILL)
    assert _wait(lambda: len(receiver.applied) == count, timeout=60)
    assert supervisor.restarts == 1
    store = running.node.store
    d, log = schema.deliveries, schema.processing_log

    def settled() -> bool:
        with store.engine.connect() as conn:
            statuses = dict(
                conn.execute(
                    select(d.c.status, func.count())
                    .where(d.c.delivery_mode == "push")
                    .group_by(d.c.status)
                ).all()
            )
        return statuses == {"delivered": count}

    assert _wait(settled)
    with store.engine.connect() as conn:
        delivered_records = conn.execute(
            select(log.c.delivery_id, func.count())
            .where(log.c.activity == "deliver", log.c.outcome == "success")
            .group_by(log.c.delivery_id)
        ).all()
        subjects = {
            i: len(json.loads(refs))
            for i, refs in conn.execute(select(d.c.id, d.c.subject_refs)).all()
        }
    # each delivery applied once by the receiver, settled once by the node (one processing
    # log record per data subject, not two)
    assert len(delivered_records) == count
    assert all(n == subjects[i] >= 1 for i, n in delivered_records)
    assert set(receiver.applied) == {i for i, _ in delivered_records}


def _bare(command: list[str], **timing: float) -> DeliverySupervisor:
    return DeliverySupervisor(
        Settings(node=NODE, resources=[]), metrics=Metrics(), command=command, **timing
    )


def test_a_stop_while_the_delivery_process_starts_leaves_none_behind() -> None:
    supervisor = _bare([sys.executable, "-c", "import time; time.sleep(60)"])

    async def scenario() -> None:
        running = asyncio.create_task(supervisor.run())
        await asyncio.sleep(0)  # run() is starting the process
        await supervisor.stop()
        await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert supervisor.process is not None and supervisor.process.returncode is not None
    assert not supervisor.up


def test_a_delivery_process_that_keeps_dying_is_restarted_with_growing_pauses() -> None:
    supervisor = _bare(
        [sys.executable, "-c", "raise SystemExit(3)"], first_pause=0.05, longest_pause=0.2
    )

    async def scenario() -> None:
        running = asyncio.create_task(supervisor.run())
        while supervisor.restarts < 4:
            await asyncio.sleep(0.05)
        await supervisor.stop()
        await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert supervisor.restarts >= 4 and not supervisor.up
    assert supervisor.process is not None and supervisor.process.returncode == 3
