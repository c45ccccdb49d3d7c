"""Two runtime replicas on one PostgreSQL database share intake and delivery safely; one is
SIGKILLed mid-run and the other carries on: nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from node_runtime.model.loading import load_paths
from node_runtime.security.pki.development import ensure_for_resources, node_client_name
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from node_runtime.store import schema
from node_runtime.store.sql import SqlStore
from tests.conftest import CONNECTOR, MESSAGES, NODE, free_port
from tests.reliability.test_crash_safety import Runtime, valid_bsns
from tests.runtime.helpers import header, replace_first, with_new_id
from tests.runtime.receiver import Receiver
from tests.runtime.test_push_delivery import configure

MESSAGES_PER_RUN = 600


@pytest.mark.postgresql
@pytest.mark.slow
def test_two_replicas_one_killed(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, receiver: Receiver, postgresql_url: str
) -> None:
    configure(resource_dir, receiver.url, circuitBreakerThreshold=1000)
    resources = load_paths([resource_dir])
    pki = ensure_for_resources(dev_pki.store.directory, resources, NODE)
    own = pki.clients[node_client_name(NODE)]
    key = tmp_path / "pseudonym.key"
    key.write_text(os.urandom(32).hex())
    os.environ["KNOOPPUNT_PSEUDONYM_KEY_FILE"] = str(key)
    replicas: list[Runtime] = []
    try:
        for i in range(2):
            port = free_port()
            replicas.append(
                Runtime(
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
                        str(tmp_path / f"r{i}"),
                        "--port",
                        str(port),
                        "--database-url",
                        postgresql_url,
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
                    tmp_path / f"replica{i}.log",
                )
            )
        for r in replicas:
            r.start()
        base = next(
            p.read_bytes()
            for p in sorted(MESSAGES.glob("wmo305*.xml"))
            if header(p.read_bytes())["Ontvanger"] == "0599"
        )
        agb = header(base)["Afzender"]
        provider = next(
            p.name
            for p in resources.connectors[CONNECTOR].spec.participants
            if agb in p.identifiers
        )
        bsns = valid_bsns(20)
        bodies = [
            replace_first(with_new_id(base, f"R{i:011d}"), "Bsn", bsns[i % len(bsns)])
            for i in range(MESSAGES_PER_RUN)
        ]
        accepted: dict[str, str] = {}
        lock = threading.Lock()
        paths = pki.clients[provider]
        ctx = client_context(paths.chain, paths.key, pki.ca_bundle)

        def send(part: list[bytes], prefer: int) -> None:
            clients = [
                httpx.Client(base_url=f"https://localhost:{r.port}", verify=ctx, timeout=30)
                for r in replicas
            ]
            for body in part:
                ident = re.search(rb"<(?:\w+:)?Identificatie>([^<]+)<", body)
                assert ident
                target = prefer
                while True:
                    try:
                        resp = clients[target].post(
                            f"/api/v1/connectors/{CONNECTOR}/messages",
                            content=body,
                            headers={"content-type": "application/xml"},
                        )
                    except httpx.TransportError:
                        target = 1 - target  # fail over to the other replica
                        time.sleep(0.05)
                        continue
                    assert resp.status_code == 202, resp.text
                    with lock:
                        accepted[ident.group(1).decode()] = resp.headers["knooppunt-message-id"]
                    break
            for c in clients:
                c.close()

        senders = [threading.Thread(target=send, args=(bodies[i::4], i % 2)) for i in range(4)]
        for t in senders:
            t.start()
        time.sleep(3.0)
        replicas[0].kill()  # mid-run: intake, delivery leases and all
        for t in senders:
            t.join()
        store = SqlStore(postgresql_url)
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
        with store.engine.connect() as conn:
            stored = int(
                conn.execute(select(func.count()).select_from(schema.messages)).scalar_one()
            )
        store.close()
    finally:
        os.environ.pop("KNOOPPUNT_PSEUDONYM_KEY_FILE", None)
        for r in replicas:
            r.stop()
    assert len(accepted) == MESSAGES_PER_RUN
    assert stored == MESSAGES_PER_RUN
    applied = [env["hoofdObject"].removeprefix("urn:uuid:") for env in receiver.applied.values()]
    assert sorted(applied) == sorted(accepted.values())
    assert len(set(applied)) == len(applied)
