"""Benchmark: push delivery end to end, SQLite and PostgreSQL, and draining a backlog.

    .venv/bin/python benchmarks/delivery.py [--messages 1000] [--backlog 100000]
                                             [--backends sqlite,postgresql]
                                             [--layout processes|one-process|processes,one-process]
                                             [--clients 4]
                                             [--delivery-worker process|inline]

Prints, per backend (and layout):
  * intake-only rate (messages accepted per second, push workers off),
  * delivered rate end to end (intake → receiver acknowledged, workers on), and their ratio;
  * the time to drain a backlog of --backlog push deliveries after the receiver comes back,
    and the drain rate as a ratio of a plain HTTPS POST loop to the same receiver (the floor:
    the fastest of httpx in threads and aiohttp, in this process and in a process of its own,
    since the node's delivery process has a process of its own too), with the rate of every
    tenth of the backlog (a steady drain keeps them alike), and the CPU time the delivering
    process used per delivery, in all and per tenth;
  * CPU time per message of each process in the intake-only and end-to-end phases, and per
    delivery in the drain: the node process, its delivery process, the receiver, the clients,
    the PostgreSQL server (with ``--layout one-process``: this process, which holds clients,
    node and receiver, the delivery process and the server).

Layouts (``--layout``; a comma-separated list runs each in turn, per backend):

``processes`` (the default) is the deployed shape: senders, node and the gemeente's receiver
are separate machines in deployment, so here each has processes of its own, started with the
spawn context (not fork: the parent runs threads). The node is served in a process of its own
(``start_in_thread`` there), and its delivery process (``knooppunt deliver``, with
``--delivery-worker process``) is that process's child, as deployed. The receiver
(``tests/runtime/receiver``: HTTPS with client certificates, each delivery applied once per
idempotency key) runs in a process of its own and reports how many deliveries it applied over
a pipe. ``--clients`` sender processes (4 by default) each hold one keep-alive mutual-TLS
connection and send their share of the same bodies. This process only starts them, loads the
backlog, runs the floor loops and polls.

``one-process`` is the earlier layout: clients (httpx in 4 threads), node and receiver (a
thread) all in this one interpreter; only the node's delivery process is a process of its own.
The interpreter lock of that one process then serves the intake, the clients and the
receiver's TLS and HTTP for every delivery at once, so delivering while messages arrive takes
CPU from the intake that in deployment is another machine's; end to end / intake then measures
the benchmark's own contention more than the node. Kept to show the difference.

All figures come from the same run on the same machine; only ratios are meaningful.

A "before" measurement: copy this script into another checkout's ``benchmarks/`` and run it
from that checkout's directory (so the node, its delivery process and the receiver import that
checkout). What an older checkout lacks degrades: without the ``delivery_worker`` setting its
node delivers inline, in the node's process.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import yaml
from sqlalchemy import func, insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from node_runtime.api.server import start_in_thread  # noqa: E402
from node_runtime.model.bsn import elfproef  # noqa: E402
from node_runtime.model.loading import load_paths  # noqa: E402
from node_runtime.node.config import Settings  # noqa: E402
from node_runtime.security.pki.development import ensure_for_resources, node_client_name  # noqa: E402
from node_runtime.security.tls.contexts import client_context  # noqa: E402
from node_runtime.store import schema  # noqa: E402
from node_runtime.store.sql import SqlStore, now, sqlite_url  # noqa: E402
from tests.runtime.receiver import start_receiver  # noqa: E402

EXAMPLES = REPO / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"
INTAKE_PATH = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
ROTTERDAM = "0599"
LAYOUTS = ("processes", "one-process")
SPAWN = multiprocessing.get_context("spawn")  # not fork: the parent runs threads


def resources(tmp: Path, endpoint: str) -> Path:
    target = tmp / "resources"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("knooppunt.yaml", "connector.yaml", "gemeenten.yaml"):
        docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
        for d in docs:
            if d["kind"] == "Knooppunt":
                d["spec"]["oin"] = "00000001999000000111"
                d["spec"]["delivery"] = {"concurrencyPerEndpoint": 16, "timeoutSeconds": 10}
            for sub in d["spec"].get("subscriptions", []) or []:
                if (sub.get("delivery") or {}).get("mode") == "push":
                    sub["delivery"]["endpoint"] = endpoint
        (target / name).write_text(yaml.safe_dump_all(docs))
    return target


def bodies(count: int, tag: str) -> tuple[str, list[bytes]]:
    base = next(
        p.read_bytes()
        for p in sorted((EXAMPLES / "messages").glob("wmo305*.xml"))
        if re.search(rb"Ontvanger>" + ROTTERDAM.encode() + rb"<", p.read_bytes())
    )
    agb = re.search(rb"Afzender>(\d+)<", base)
    assert agb
    bsns = [b for b in (str(n) for n in range(999990000, 999999999)) if elfproef(b)][:200]
    out = []
    for i in range(count):  # 200 clients: deliveries of one client keep their order
        body = re.sub(
            rb"(<(\w+:)?Identificatie>)[^<]*(</)",
            rb"\g<1>" + f"{tag}{i:010d}".encode() + rb"\g<3>",
            base,
            count=1,
        )
        out.append(
            re.sub(
                rb"(<(\w+:)?Bsn>)[^<]*(</)",
                rb"\g<1>" + bsns[i % len(bsns)].encode() + rb"\g<3>",
                body,
                count=1,
            )
        )
    return agb.group(1).decode(), out


# --------------------------------------------------------------------------- processes and CPU


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, all its threads (0 once it ended)."""
    if pid == os.getpid():
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(pg) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds the PostgreSQL server used so far: the postmaster, its live children (the
    backends of the node's connections, the WAL writer, autovacuum) and its ended children;
    0 without a server (SQLite works inside the node's processes)."""
    if pg is None:
        return 0.0
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])

    def fields(pid: int) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(postmaster)
    ticks = sum(int(f) for f in own[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(child[1]) == postmaster:  # ppid
                ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time per message (or delivery) of each process taking part in a phase, from named
    readers of CPU seconds so far."""

    def __init__(self, parts: list[tuple[str, Callable[[], float]]]) -> None:
        self.parts = parts
        self.start = [read() for _, read in parts]

    def per_message(self, count: int, unit: str = "message") -> str:
        spent = [
            1000 * (read() - start) / count
            for (_, read), start in zip(self.parts, self.start, strict=True)
        ]
        listed = ", ".join(
            f"{ms:.2f} {name}" for (name, _), ms in zip(self.parts, spent, strict=True)
        )
        return f"{sum(spent):.2f} ms CPU per {unit}: {listed}"


# --------------------------------------------------------------------------- the receiver


def _receive(
    chain: str, key: str, ca_bundle: str, conn: multiprocessing.connection.Connection
) -> None:
    """The gemeente's receiver in a process of its own: applies each delivery once per
    idempotency key (``tests/runtime/receiver``); answers ``count`` with how many it applied
    and stops at ``stop``."""
    # start_receiver reads only the server certificate, its key and the CA bundle
    pki = SimpleNamespace(
        server=SimpleNamespace(chain=Path(chain), key=Path(key)), ca_bundle=Path(ca_bundle)
    )
    receiver, manager = start_receiver(pki)  # type: ignore[arg-type]
    try:
        conn.send(receiver.url)
        while conn.recv() != "stop":
            conn.send(len(receiver.applied))
    finally:
        manager.__exit__(None, None, None)


class Receiver:
    """The receiver, in a process of its own or in a thread of this one."""

    def __init__(self, probe, own_process: bool) -> None:  # type: ignore[no-untyped-def]
        self.thread: Any = None
        if own_process:
            self.pipe, child = SPAWN.Pipe()
            self.process = SPAWN.Process(
                target=_receive,
                args=(str(probe.server.chain), str(probe.server.key), str(probe.ca_bundle), child),
                daemon=True,
            )
            self.process.start()
            self.url: str = self.pipe.recv()
            assert self.process.pid is not None
            self.pid = self.process.pid
        else:
            self.thread, self.manager = start_receiver(probe)
            self.url = self.thread.url
            self.pid = os.getpid()

    def applied(self) -> int:
        """How many deliveries the receiver applied so far (once per idempotency key)."""
        if self.thread is not None:
            return len(self.thread.applied)
        self.pipe.send("count")
        return int(self.pipe.recv())

    def stop(self) -> None:
        if self.thread is not None:
            self.manager.__exit__(None, None, None)
        else:
            self.pipe.send("stop")
            self.process.join(20)


# --------------------------------------------------------------------------- the node


def delivery_up(node) -> int:  # type: ignore[no-untyped-def]
    """Wait until the node's delivery process (if it has one) runs; the delivering pid."""
    supervisor = getattr(node.node, "delivery", None)
    if supervisor is None:
        return os.getpid()
    deadline = time.monotonic() + 300
    while not supervisor.up:
        assert time.monotonic() < deadline, "the delivery process did not come up"
        time.sleep(0.05)
    return int(supervisor.process.pid)


def _serve(settings: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    """The node in a process of its own: sends (port, delivering pid) once it accepts
    connections and its delivery process (if any) runs, stops when told to."""
    node = start_in_thread(Settings(**settings))
    try:
        conn.send((node.port, delivery_up(node)))
        conn.recv()
    finally:
        node.stop()


class Node:
    """A node, in a process of its own or in a thread of this one; ``pid`` is the node's
    process, ``delivery_pid`` the delivering one (the node's own with inline delivery)."""

    def __init__(self, settings: dict[str, Any], own_process: bool) -> None:
        self.running: Any = None
        if own_process:
            self.pipe, child = SPAWN.Pipe()
            self.process = SPAWN.Process(target=_serve, args=(settings, child), daemon=True)
            self.process.start()
            self.port, self.delivery_pid = self.pipe.recv()
            assert self.process.pid is not None
            self.pid = self.process.pid
        else:
            self.running = start_in_thread(Settings(**settings))
            self.port = self.running.port
            self.pid = os.getpid()
            self.delivery_pid = delivery_up(self.running)

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
        else:
            self.pipe.send("stop")
            self.process.join(60)


# --------------------------------------------------------------------------- the senders


def _send(
    conn: multiprocessing.connection.Connection, chain: str, key: str, ca_bundle: str
) -> None:
    """One sender process: per job, one keep-alive mTLS connection for all its bodies; answers
    with the statuses that were not 202."""
    ctx = client_context(Path(chain), Path(key), Path(ca_bundle))
    conn.send("ready")
    while (job := conn.recv()) is not None:
        port, part = job
        conn.send("loaded")
        conn.recv()  # go
        refused: list[str] = []
        c = http.client.HTTPSConnection("localhost", port, timeout=60, context=ctx)
        for body in part:
            c.request("POST", INTAKE_PATH, body=body, headers=XML)
            response = c.getresponse()
            answer = response.read()
            if response.status != 202:
                refused.append(f"{response.status} {answer[:200]!r}")
        c.close()
        conn.send(refused)


class Senders:
    """The clients: ``count`` sender processes of their own, or (``own_process`` false) httpx
    in ``count`` threads of this process, each with one keep-alive mTLS connection."""

    def __init__(self, pki, provider: str, count: int, own_process: bool) -> None:  # type: ignore[no-untyped-def]
        self.paths = pki.clients[provider]
        self.ca_bundle = pki.ca_bundle
        self.count = count
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        if own_process:
            for _ in range(count):
                parent, child = SPAWN.Pipe()
                proc = SPAWN.Process(
                    target=_send,
                    args=(child, str(self.paths.chain), str(self.paths.key), str(self.ca_bundle)),
                    daemon=True,
                )
                proc.start()
                self.pipes.append(parent)
                self.procs.append(proc)
            for pipe in self.pipes:
                assert pipe.recv() == "ready"

    def cpu(self) -> float:
        """CPU seconds of the sender processes so far (0 with threads: they are counted as
        this process)."""
        return sum(process_cpu(p.pid) for p in self.procs)

    def send(self, port: int, batch: list[bytes]) -> tuple[float, float]:
        """Send the batch, a share per client; when the first was sent (``perf_counter``)
        and the seconds it took. Sender processes get their shares before the clock starts."""
        parts = [batch[i :: self.count] for i in range(self.count)]
        if not self.pipes:
            return self._send_in_threads(port, parts)
        for pipe, part in zip(self.pipes, parts, strict=True):
            pipe.send((port, part))
        for pipe in self.pipes:
            assert pipe.recv() == "loaded"
        started = time.perf_counter()
        for pipe in self.pipes:
            pipe.send("go")
        refused = [r for pipe in self.pipes for r in pipe.recv()]
        elapsed = time.perf_counter() - started
        assert not refused, refused[:5]
        return started, elapsed

    def _send_in_threads(self, port: int, parts: list[list[bytes]]) -> tuple[float, float]:
        def worker(part: list[bytes]) -> None:
            with httpx.Client(
                base_url=f"https://localhost:{port}",
                timeout=60,
                verify=client_context(self.paths.chain, self.paths.key, self.ca_bundle),
            ) as c:
                for body in part:
                    r = c.post(INTAKE_PATH, content=body, headers=XML)
                    assert r.status_code == 202, r.text

        started = time.perf_counter()
        with ThreadPoolExecutor(self.count) as ex:
            list(ex.map(worker, parts))
        return started, time.perf_counter() - started

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)


# --------------------------------------------------------------------------- the backlog


def load_backlog(store: SqlStore, count: int, endpoint: str) -> None:
    """Write a backlog of push deliveries straight into the outbox, in large transactions."""
    created = now()
    envelope = json.dumps({"kenmerken": {"ontvanger": ROTTERDAM}, "inhoud": {}}).encode()
    for start in range(0, count, 2000):
        msgs, dels = [], []
        for i in range(start, min(count, start + 2000)):
            mid = str(uuid.uuid4())
            msgs.append(
                {
                    "id": mid,
                    "connector": CONNECTOR,
                    "connector_revision": 1,
                    "message_type": "WMO305",
                    "direction": "toGemeente",
                    "sender": "98000023",
                    "recipient": ROTTERDAM,
                    "sender_message_id": f"BL{i:010d}",
                    "payload_sha256": "0" * 64,
                    "payload": b"",
                    "received_at": created,
                    "trace_id": "0" * 32,
                    "controller": ROTTERDAM,
                    "answer_status": 202,
                    "answer_body": b"",
                    "answer_content_type": "application/xml",
                }
            )
            dels.append(
                {
                    "id": str(uuid.uuid4()),
                    "message_id": mid,
                    "mailbox_kind": "gemeente",
                    "mailbox_id": ROTTERDAM,
                    "connector": CONNECTOR,
                    "message_type": "WMO305",
                    "purpose": "wmo-uitvoering",
                    "legal_basis": "benchmark",
                    "content": envelope,
                    "content_type": "application/json",
                    "subject_refs": "[]",
                    "order_key": f"k{i % 1000}",
                    "delivery_mode": "push",
                    "endpoint": endpoint,
                    "created_at": created,
                    "read_count": 0,
                    "status": "pending",
                    "attempts": 0,
                }
            )
        with store.engine.begin() as conn:
            conn.execute(insert(schema.messages), msgs)
            conn.execute(insert(schema.deliveries), dels)


def unsettled(store: SqlStore) -> int:
    d = schema.deliveries
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(d)
                .where(d.c.delivery_mode == "push", d.c.status != "delivered")
            ).scalar_one()
        )


def drain_deciles(
    store: SqlStore, backlog: int, started: float, worker_pid: int
) -> list[tuple[float, float]]:
    """Wait until the backlog is settled; per tenth of it, the rate and the delivering
    process's CPU time per delivery, so a slowdown towards the end (or the start), and work
    that grows or shrinks with the backlog, are visible, not averaged away."""
    tenths: list[tuple[float, float]] = []
    boundary, last_at, last_cpu, last_done = 1, started, process_cpu(worker_pid), 0
    while True:
        left = unsettled(store)
        at, cpu, done = time.perf_counter(), process_cpu(worker_pid), backlog - left
        if boundary <= 10 and done >= backlog * boundary / 10:
            count = max(done - last_done, 1)
            tenth = (count / max(at - last_at, 1e-6), (cpu - last_cpu) / count * 1000)
            while boundary <= 10 and done >= backlog * boundary / 10:
                tenths.append(tenth)
                print(
                    f"  {boundary * 10:3d} % drained after {at - started:7.1f} s "
                    f"({tenth[0]:.0f} msg/s in this tenth, {tenth[1]:.2f} ms CPU per "
                    "delivery in the delivering process)",
                    flush=True,
                )
                boundary += 1
            last_at, last_cpu, last_done = at, cpu, done
        if not left:
            return tenths
        time.sleep(0.25)


# --------------------------------------------------------------------------- the floor


def _aiohttp_loop(url: str, tls: tuple[str, str, str], count: int, clients: int) -> float:
    """A plain aiohttp POST loop, ``clients`` at a time; its rate."""
    ctx = client_context(Path(tls[0]), Path(tls[1]), Path(tls[2]))

    async def loop() -> None:
        connector = aiohttp.TCPConnector(ssl=ctx, limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(n: int) -> None:
                for _ in range(n):
                    headers = {"idempotency-key": str(uuid.uuid4())}
                    async with session.post(url, data=b"{}", headers=headers) as r:
                        await r.read()

            await asyncio.gather(*(post(count // clients) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(loop())
    return (count // clients * clients) / (time.perf_counter() - started)


def _aiohttp_loop_in_process(out, *args) -> None:  # type: ignore[no-untyped-def]
    cpu = time.process_time()
    rate = _aiohttp_loop(*args)
    out.put((rate, time.process_time() - cpu))


def floor_post_rate(receiver_url: str, pki, count: int = 2000, clients: int = 16) -> float:  # type: ignore[no-untyped-def]
    """The fastest plain POST loop to the receiver (with ``--layout processes`` in its own
    process, as the node's deliveries find it), ``clients`` at a time: httpx in threads and
    aiohttp on one event loop in this process, and aiohttp in a process of its own (the node's
    delivery process has one too); the highest rate is the floor."""
    own = pki.clients[node_client_name(NODE)]
    ctx = client_context(own.chain, own.key, pki.ca_bundle)

    def worker(n: int) -> None:
        with httpx.Client(verify=ctx, timeout=30) as c:
            for _ in range(n):
                key = str(uuid.uuid4())
                c.post(receiver_url, content=b"{}", headers={"idempotency-key": key})

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, [count // clients] * clients))
    threads = (count // clients * clients) / (time.perf_counter() - started)
    tls = (str(own.chain), str(own.key), str(pki.ca_bundle))
    event_loop = _aiohttp_loop(receiver_url, tls, count, clients)
    out = SPAWN.Queue()
    child = SPAWN.Process(
        target=_aiohttp_loop_in_process, args=(out, receiver_url, tls, count, clients)
    )
    child.start()
    own_process, own_cpu = out.get()
    child.join()
    print(
        f"  plain POST loops, {clients} at a time: httpx threads {threads:.1f} msg/s, "
        f"aiohttp {event_loop:.1f} msg/s, aiohttp in a process of its own {own_process:.1f} "
        f"msg/s ({own_cpu / count * 1000:.2f} ms CPU per request there); the floor is the "
        "fastest",
        flush=True,
    )
    return max(threads, event_loop, own_process)


# --------------------------------------------------------------------------- one run


def run_backend(backend: str, layout: str, args: argparse.Namespace, pg) -> None:  # type: ignore[no-untyped-def]
    own = layout == "processes"  # node, receiver and clients in processes of their own
    label = f"{backend}, {layout}"
    server = pg if backend == "postgresql" else None
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        probe = ensure_for_resources(tmp / "pki", load_paths([EXAMPLES]), NODE)
        receiver = Receiver(probe, own_process=own)
        senders = None
        try:
            res_dir = resources(tmp, receiver.url)
            res = load_paths([res_dir])
            pki = ensure_for_resources(tmp / "pki", res, NODE)
            node_cert = pki.clients[node_client_name(NODE)]
            agb, _ = bodies(1, "X")
            provider = next(
                p.name for p in res.connectors[CONNECTOR].spec.participants if agb in p.identifiers
            )
            senders = Senders(pki, provider, args.clients, own_process=own)

            # older checkouts (a "before" run) have no delivery_worker setting: inline only
            worker_mode = (
                {"delivery_worker": args.delivery_worker}
                if "delivery_worker" in Settings.model_fields
                else {}
            )

            def settings(name: str, delivery: bool) -> dict[str, Any]:
                name = f"{name}_{layout.replace('-', '_')}"
                if backend == "postgresql":
                    pg.create_database(name)
                    url = pg.url.rsplit("/", 1)[0] + "/" + name
                else:
                    url = sqlite_url(tmp / f"{name}.db")
                return dict(
                    node=NODE,
                    resources=[res_dir],
                    data_dir=tmp / name,
                    port=0,
                    tls_cert=pki.server.chain,
                    tls_key=pki.server.key,
                    tls_trust=pki.ca_bundle,
                    tls_crl=pki.crl,
                    database_url=url,
                    delivery_cert=node_cert.chain,
                    delivery_key=node_cert.key,
                    delivery_enabled=delivery,
                    **worker_mode,
                )

            def meter(node: Node) -> CpuMeter:
                """Every process of the phase; this one holds clients, node and receiver in
                the one-process layout, and only polls in the other."""
                parts: list[tuple[str, Callable[[], float]]] = []
                if own:
                    parts.append(("node process", lambda: process_cpu(node.pid)))
                else:
                    parts.append(("benchmark process (clients, node, receiver)", time.process_time))
                if node.delivery_pid != node.pid:
                    parts.append(("delivery process", lambda: process_cpu(node.delivery_pid)))
                if own:
                    parts.append(("receiver", lambda: process_cpu(receiver.pid)))
                    parts.append(("clients", senders.cpu))  # type: ignore[union-attr]
                if server is not None:
                    parts.append(("PostgreSQL server", lambda: server_cpu(server)))
                if own:
                    parts.append(("benchmark process (polling)", time.process_time))
                return CpuMeter(parts)

            # 1. intake only
            _, batch = bodies(args.messages, "I")
            node = Node(settings("intake", False), own_process=own)
            cpu = meter(node)
            _, intake_s = senders.send(node.port, batch)
            intake_cpu = cpu.per_message(args.messages)
            node.stop()
            intake_rate = args.messages / intake_s
            # 2. end to end: from the first send until the receiver acknowledged the last
            _, batch = bodies(args.messages, "E")
            before = receiver.applied()
            node = Node(settings("e2e", True), own_process=own)
            cpu = meter(node)
            started, _ = senders.send(node.port, batch)
            while receiver.applied() - before < args.messages:
                time.sleep(0.01)
            e2e_rate = args.messages / (time.perf_counter() - started)
            e2e_cpu = cpu.per_message(args.messages)
            node.stop()
            print(
                f"[{label}] intake only: {intake_rate:8.1f} msg/s; delivered end to end: "
                f"{e2e_rate:8.1f} msg/s; ratio delivered/intake: {e2e_rate / intake_rate:.3f}"
            )
            print(f"[{label}] intake only: {intake_cpu}")
            print(f"[{label}] end to end: {e2e_cpu}")
            # 3. backlog drain after the receiver comes back
            cfg = settings("backlog", True)
            store = SqlStore(cfg["database_url"])
            store.migrate()
            load_backlog(store, args.backlog, receiver.url)
            floor = floor_post_rate(receiver.url, pki)
            node = Node(cfg, own_process=own)
            cpu = meter(node)
            started = time.perf_counter()
            deciles = drain_deciles(store, args.backlog, started, node.delivery_pid)
            drain = time.perf_counter() - started
            drain_cpu = cpu.per_message(args.backlog, "delivery")
            node.stop()
            store.close()
            rate = args.backlog / drain
            print(
                f"[{label}] backlog of {args.backlog}: drained in {drain:.1f} s "
                f"({rate:.1f} msg/s); plain HTTPS POST floor {floor:.1f} msg/s; "
                f"ratio drain/floor: {rate / floor:.3f}"
            )
            inline = "" if node.delivery_pid != node.pid else " (delivery inline, in the node)"
            print(f"[{label}] drain: {drain_cpu}{inline}")
            rates = [r for r, _ in deciles]
            steady = min(rates) / max(rates) if rates and max(rates) else 0.0
            print(
                f"[{label}] drain rate per 10 % of the backlog (msg/s): "
                + " ".join(f"{r:.0f}" for r in rates)
                + f"; slowest/fastest {steady:.2f}"
            )
            print(
                f"[{label}] CPU per delivery per 10 % of the backlog (ms, delivering "
                "process): " + " ".join(f"{c:.2f}" for _, c in deciles)
            )
        finally:
            if senders is not None:
                senders.close()
            receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--layout",
        default="processes",
        help="processes (node, receiver and clients in processes of their own: the deployed "
        "shape) or one-process (all in this interpreter, the earlier layout); a "
        "comma-separated list runs each in turn",
    )
    parser.add_argument("--clients", type=int, default=4, help="sender processes (or threads)")
    parser.add_argument(
        "--delivery-worker",
        default="process",
        choices=["process", "inline"],
        help="push delivery in a process of its own (as deployed) or in the node's process",
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    layouts = args.layout.split(",")
    for layout in layouts:
        if layout not in LAYOUTS:
            parser.error(f"--layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    pg = None
    if "postgresql" in backends:
        from tests.postgresql.server import PostgresServer, find_bin_dir

        pg = PostgresServer(find_bin_dir())
        pg.start()
    try:
        for backend in backends:
            for layout in layouts:
                run_backend(backend, layout, args, pg)
    finally:
        if pg is not None:
            pg.stop()
        print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
