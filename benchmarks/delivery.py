"""Benchmark: push delivery end to end, SQLite and PostgreSQL, and draining a backlog.

    .venv/bin/python benchmarks/delivery.py [--messages 1000] [--backlog 100000]
                                             [--backends sqlite,postgresql]
                                             [--delivery-worker process|inline]

Prints, per backend:
  * intake-only rate (messages accepted per second, push workers off),
  * delivered rate end to end (intake → receiver acknowledged, workers on), and their ratio;
  * the time to drain a backlog of --backlog push deliveries after the receiver comes back,
    and the drain rate as a ratio of a plain HTTPS POST loop to the same receiver (the floor:
    the fastest of httpx in threads and aiohttp, in this process and in a process of its own,
    since the node's delivery process has a process of its own too), with the rate of every
    tenth of the backlog (a steady drain keeps them alike), and the CPU time the delivering
    process used per delivery, in all and per tenth;
  * CPU time per message of each process in the intake-only and end-to-end phases (this
    process, the delivery process, the PostgreSQL server).
The receiver runs in a thread of this process, as the node does; with --delivery-worker
process (the default, as deployed) the node's delivery process is a child of this one.
All figures come from the same run on the same machine; only ratios are meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
ROTTERDAM = "0599"


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


def send_all(port: int, pki, provider: str, batch: list[bytes], clients: int = 4) -> float:  # type: ignore[no-untyped-def]
    paths = pki.clients[provider]

    def worker(part: list[bytes]) -> None:
        with httpx.Client(
            base_url=f"https://localhost:{port}",
            timeout=60,
            verify=client_context(paths.chain, paths.key, pki.ca_bundle),
        ) as c:
            for body in part:
                r = c.post(
                    f"/api/v1/connectors/{CONNECTOR}/messages",
                    content=body,
                    headers={"content-type": "application/xml"},
                )
                assert r.status_code == 202, r.text

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, [batch[i::clients] for i in range(clients)]))
    return time.perf_counter() - started


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
    """The fastest plain POST loop to the receiver, ``clients`` at a time: httpx in threads
    and aiohttp on one event loop in this process, and aiohttp in a process of its own (the
    node's delivery process has one too); the highest rate is the floor."""
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
    spawn = multiprocessing.get_context("spawn")  # not fork: this process runs threads
    out = spawn.Queue()
    child = spawn.Process(
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


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, all its threads."""
    if pid == os.getpid():
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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
    """CPU time per message of each process taking part in a phase: this one (the clients'
    threads, the node's intake and API, the receiver), the delivery process, the database
    server."""

    def __init__(self, pg, worker_pid: int | None) -> None:  # type: ignore[no-untyped-def]
        self.pg, self.worker_pid = pg, worker_pid
        self.start = self._read()

    def _read(self) -> tuple[float, float, float]:
        worker = (
            process_cpu(self.worker_pid)
            if self.worker_pid is not None and self.worker_pid != os.getpid()
            else 0.0
        )
        return time.process_time(), worker, server_cpu(self.pg)

    def per_message(self, count: int) -> str:
        end = self._read()
        own, worker, server = (1000 * (b - a) / count for a, b in zip(self.start, end, strict=True))
        parts = [f"{own:.2f} benchmark process (clients, node, receiver)"]
        if self.worker_pid is not None and self.worker_pid != os.getpid():
            parts.append(f"{worker:.2f} delivery process")
        if self.pg is not None:
            parts.append(f"{server:.2f} PostgreSQL server")
        return f"{own + worker + server:.2f} ms CPU per message: " + ", ".join(parts)


def run_backend(backend: str, args: argparse.Namespace, pg) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        probe = ensure_for_resources(tmp / "pki", load_paths([EXAMPLES]), NODE)
        receiver, manager = start_receiver(probe)
        try:
            res_dir = resources(tmp, receiver.url)
            res = load_paths([res_dir])
            pki = ensure_for_resources(tmp / "pki", res, NODE)
            own = pki.clients[node_client_name(NODE)]
            agb, _ = bodies(1, "X")
            provider = next(
                p.name for p in res.connectors[CONNECTOR].spec.participants if agb in p.identifiers
            )

            # older checkouts (a "before" run) have no delivery_worker setting: inline only
            worker_mode = (
                {"delivery_worker": args.delivery_worker}
                if "delivery_worker" in Settings.model_fields
                else {}
            )

            def settings(name: str, delivery: bool) -> Settings:
                if backend == "postgresql":
                    pg.create_database(name)
                    url = pg.url.rsplit("/", 1)[0] + "/" + name
                else:
                    url = sqlite_url(tmp / f"{name}.db")
                return Settings(
                    node=NODE,
                    resources=[res_dir],
                    data_dir=tmp / name,
                    port=0,
                    tls_cert=pki.server.chain,
                    tls_key=pki.server.key,
                    tls_trust=pki.ca_bundle,
                    tls_crl=pki.crl,
                    database_url=url,
                    delivery_cert=own.chain,
                    delivery_key=own.key,
                    delivery_enabled=delivery,
                    **worker_mode,
                )

            # 1. intake only
            _, batch = bodies(args.messages, "I")
            node = start_in_thread(settings("intake", False))
            meter = CpuMeter(pg if backend == "postgresql" else None, None)
            intake_s = send_all(node.port, pki, provider, batch)
            intake_cpu = meter.per_message(args.messages)
            node.stop()
            intake_rate = args.messages / intake_s
            # 2. end to end: from the first send until the receiver acknowledged the last
            _, batch = bodies(args.messages, "E")
            before = len(receiver.applied)
            node = start_in_thread(settings("e2e", True))
            meter = CpuMeter(pg if backend == "postgresql" else None, delivery_up(node))
            started = time.perf_counter()
            send_all(node.port, pki, provider, batch)
            while len(receiver.applied) - before < args.messages:
                time.sleep(0.01)
            e2e_rate = args.messages / (time.perf_counter() - started)
            e2e_cpu = meter.per_message(args.messages)
            node.stop()
            print(
                f"[{backend}] intake only: {intake_rate:8.1f} msg/s; delivered end to end: "
                f"{e2e_rate:8.1f} msg/s; ratio delivered/intake: {e2e_rate / intake_rate:.3f}"
            )
            print(f"[{backend}] intake only: {intake_cpu}")
            print(f"[{backend}] end to end: {e2e_cpu}")
            # 3. backlog drain after the receiver comes back
            cfg = settings("backlog", True)
            store = SqlStore(cfg.database_url or "")
            store.migrate()
            load_backlog(store, args.backlog, receiver.url)
            floor = floor_post_rate(receiver.url, pki)
            node = start_in_thread(cfg)
            worker_pid = delivery_up(node)
            cpu_before, own_before = process_cpu(worker_pid), time.process_time()
            started = time.perf_counter()
            deciles = drain_deciles(store, args.backlog, started, worker_pid)
            drain = time.perf_counter() - started
            worker_cpu = process_cpu(worker_pid) - cpu_before
            own_cpu = time.process_time() - own_before
            node.stop()
            store.close()
            rate = args.backlog / drain
            print(
                f"[{backend}] backlog of {args.backlog}: drained in {drain:.1f} s "
                f"({rate:.1f} msg/s); plain HTTPS POST floor {floor:.1f} msg/s; "
                f"ratio drain/floor: {rate / floor:.3f}"
            )
            where = "delivery process" if worker_pid != os.getpid() else "node process (inline)"
            print(
                f"[{backend}] CPU per delivery: {worker_cpu / args.backlog * 1000:.2f} ms in the "
                f"{where}; {own_cpu / args.backlog * 1000:.2f} ms in the benchmark process "
                "(receiver, node, polling)"
            )
            rates = [r for r, _ in deciles]
            steady = min(rates) / max(rates) if rates and max(rates) else 0.0
            print(
                f"[{backend}] drain rate per 10 % of the backlog (msg/s): "
                + " ".join(f"{r:.0f}" for r in rates)
                + f"; slowest/fastest {steady:.2f}"
            )
            print(
                f"[{backend}] CPU per delivery per 10 % of the backlog (ms, delivering "
                "process): " + " ".join(f"{c:.2f}" for _, c in deciles)
            )
        finally:
            manager.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--delivery-worker",
        default="process",
        choices=["process", "inline"],
        help="push delivery in a process of its own (as deployed) or in the node's process",
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    pg = None
    if "postgresql" in backends:
        from tests.postgresql.server import PostgresServer, find_bin_dir

        pg = PostgresServer(find_bin_dir())
        pg.start()
    try:
        for backend in backends:
            run_backend(backend, args, pg)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
