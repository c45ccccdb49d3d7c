"""Crash safety: SIGKILL the runtime again and again under load; nothing acknowledged is lost,
nothing is applied twice by a receiver that honours the idempotency key."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from node_runtime.model.bsn import elfproef
from node_runtime.model.loading import load_paths
from node_runtime.security.pki.development import ensure_for_resources, node_client_name
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from node_runtime.store import schema
from node_runtime.store.sql import SqlStore, sqlite_url
from tests.conftest import CONNECTOR, MESSAGES, NODE, SQLITE_FILE, free_port
from tests.runtime.helpers import header, replace_first, with_new_id
from tests.runtime.receiver import Receiver
from tests.runtime.test_push_delivery import configure

ROTTERDAM = "0599"
MESSAGE_COUNT = int(os.environ.get("KNOOPPUNT_CRASH_MESSAGES", "2000"))
SENDERS = 6


def valid_bsns(n: int) -> list[str]:
    out, candidate = [], 999990000
    while len(out) < n:
        candidate += 1
        if elfproef(str(candidate)):
            out.append(str(candidate))
    return out


class Runtime:
    """The node as a real OS process (`knooppunt up`), killable with SIGKILL."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.args, self.port, self.log = args, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()[-3000:]
                time.sleep(0.05)
        raise AssertionError("runtime did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.mark.slow
def test_sigkill_under_load_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, receiver: Receiver
) -> None:
    configure(resource_dir, receiver.url, circuitBreakerThreshold=1000)
    resources = load_paths([resource_dir])
    pki = ensure_for_resources(dev_pki.store.directory, resources, NODE)
    own = pki.clients[node_client_name(NODE)]
    port = free_port()
    data = tmp_path / "data"
    runtime = Runtime(
        [
            sys.executable,
            "-m",
            "node_runtime.cli",
            "up",
            "-f",
            str(resource_dir),
            "--node",
            NODE,
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--tls-cert",
            str(pki.server.chain),
            "--tls-key",
            str(pki.server.key),
            "--tls-trust",
            str(pki.ca_bundle),
            "--tls-crl",
            str(pki.crl),
            "--delivery-cert",
            str(own.chain),
            "--delivery-key",
            str(own.key),
            "--log-level",
            "WARNING",
        ],
        port,
        tmp_path / "runtime.log",
    )

    base = next(
        p.read_bytes()
        for p in sorted(MESSAGES.glob("wmo305*.xml"))
        if header(p.read_bytes())["Ontvanger"] == ROTTERDAM
    )
    agb = header(base)["Afzender"]
    provider = next(
        p.name for p in resources.connectors[CONNECTOR].spec.participants if agb in p.identifiers
    )
    bsns = valid_bsns(25)
    bodies = [
        replace_first(with_new_id(base, f"K{i:011d}"), "Bsn", bsns[i % len(bsns)])
        for i in range(MESSAGE_COUNT)
    ]
    accepted: dict[str, str] = {}  # sender identification -> node message id
    lock = threading.Lock()
    done = threading.Event()
    paths = pki.clients[provider]

    def send(part: list[bytes]) -> None:
        client = httpx.Client(
            base_url=f"https://localhost:{port}",
            timeout=30,
            verify=client_context(paths.chain, paths.key, pki.ca_bundle),
        )
        for body in part:
            ident = re.search(rb"<(?:\w+:)?Identificatie>([^<]+)<", body)
            assert ident
            while True:
                try:
                    resp = client.post(
                        f"/api/v1/connectors/{CONNECTOR}/messages",
                        content=body,
                        headers={"content-type": "application/xml"},
                    )
                except httpx.TransportError:
                    time.sleep(0.05)  # no answer: the sender must send again
                    continue
                assert resp.status_code == 202, resp.text
                with lock:
                    accepted[ident.group(1).decode()] = resp.headers["knooppunt-message-id"]
                break
        client.close()

    runtime.start()
    try:
        senders = [
            threading.Thread(target=send, args=(bodies[i::SENDERS],)) for i in range(SENDERS)
        ]
        for t in senders:
            t.start()

        def killer() -> None:
            rng = random.Random(4711)
            while not done.is_set():
                time.sleep(rng.uniform(1.0, 3.0))
                if done.is_set():
                    break
                runtime.kill()
                time.sleep(rng.uniform(0.0, 0.3))
                runtime.start()

        k = threading.Thread(target=killer)
        k.start()
        for t in senders:
            t.join()
        done.set()
        k.join()
        # one more kill after the load, in the middle of the delivery backlog
        runtime.kill()
        runtime.start()
        store = SqlStore(sqlite_url(data / SQLITE_FILE))
        d = schema.deliveries

        def unsettled() -> int:
            with store.engine.connect() as conn:
                return int(
                    conn.execute(
                        select(func.count())
                        .select_from(d)
                        .where(d.c.delivery_mode == "push", d.c.status != "delivered")
                    ).scalar_one()
                )

        deadline = time.monotonic() + 180
        while unsettled() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert unsettled() == 0
    finally:
        runtime.stop()

    assert runtime.kills >= 3
    assert len(accepted) == MESSAGE_COUNT
    with store.engine.connect() as conn:
        stored = int(conn.execute(select(func.count()).select_from(schema.messages)).scalar_one())
        pushed = int(
            conn.execute(
                select(func.count()).select_from(d).where(d.c.delivery_mode == "push")
            ).scalar_one()
        )
    store.close()
    assert stored == MESSAGE_COUNT, "an intake retry created a second message"
    assert pushed == MESSAGE_COUNT, "one push delivery per message and subscription"
    applied_messages = [
        env["hoofdObject"].removeprefix("urn:uuid:") for env in receiver.applied.values()
    ]
    assert sorted(applied_messages) == sorted(accepted.values()), "lost or doubled"
    assert len(set(applied_messages)) == len(applied_messages)
    print(
        f"\n{MESSAGE_COUNT} messages, {runtime.kills} SIGKILLs, "
        f"{receiver.received} push requests, {receiver.duplicates} redeliveries dropped by "
        f"idempotency key, 0 lost, 0 applied twice"
    )
