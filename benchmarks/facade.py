"""Benchmark: the façade's overhead as a ratio of calling the nodes directly, in the same run.

    .venv/bin/python benchmarks/facade.py [--messages 60] [--rounds 200]

Two knooppunten (iWmo 2.1 and the test sector vroegsignalering) and the façade run on loopback
over mutual TLS, as in tests/facade. Amsterdam has messages on both nodes. Each round does, with
kept-alive connections, the same work two ways, interleaved:

* list: the façade's aggregated mailbox (one call, both nodes concurrently) vs listing the two
  nodes' mailboxes directly one after the other;
* fetch: one message through the façade vs the same message from its node;
* ack: acknowledging a message through the façade vs directly (distinct messages, same node).

The nodes and the façade each run in their own process (as deployed); ``--threads`` keeps them
as threads of the benchmark process, where they compete for one GIL.

Only the ratios are meaningful (façade / direct; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from node_runtime.facade.config import FacadeSettings  # noqa: E402
from node_runtime.model.loading import load_paths  # noqa: E402
from node_runtime.node.config import Settings  # noqa: E402
from node_runtime.security.pki.store import ensure_dev_pki  # noqa: E402
from tests.facade.conftest import (  # noqa: E402
    EXAMPLES,
    FACADE_OIN,
    GEMEENTEN,
    IWMO,
    IWMO_MESSAGES,
    LATE,
    NODE_A,
    NODE_B,
    VS,
    VS_DIR,
    VS_MESSAGES,
    XML,
    World,
    build_world,
)

MAILBOX = "/api/v1/gemeenten/0363/mailbox"


def _pki(directory: Path):  # type: ignore[no-untyped-def]
    resources = load_paths([EXAMPLES / "connector.yaml", VS_DIR / "connector.yaml"])
    clients = [(g.name, g.display, g.oin) for g in (*GEMEENTEN, LATE)]
    for connector in resources.connectors.values():
        for p in connector.spec.participants:
            assert p.certificate.serial_number
            clients.append((p.name, p.display_name, p.certificate.serial_number))
    clients.append(("facade", "Gemeentelijke cloud façade", FACADE_OIN))
    return ensure_dev_pki(directory, clients=clients)


def _serve_node(settings: Settings) -> None:
    from node_runtime.api.server import serve
    from node_runtime.observability.logs import configure

    configure("WARNING")
    serve(settings)


def _serve_facade(settings: FacadeSettings) -> None:
    from node_runtime.facade.server import serve_facade
    from node_runtime.observability.logs import configure

    configure("WARNING")
    serve_facade(settings)


def _wait_ready(world: World, port: int) -> None:
    client = world._client(port, "gemeente-amsterdam", timeout=2)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.1)


def _separate_processes(world: World) -> list[mp.process.BaseProcess]:
    """Move the nodes and the façade out of this process: one process each, as deployed."""
    world.facade.stop()
    for name in list(world.nodes):
        world.stop_node(name)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_serve_node, args=(s,), daemon=True)
        for s in world.node_settings.values()
    ]
    procs.append(ctx.Process(target=_serve_facade, args=(world.facade_settings,), daemon=True))
    for proc in procs:
        proc.start()
    for port in (*world.ports.values(), world.facade_settings.port):
        _wait_ready(world, port)
    world.facade.port = world.facade_settings.port
    return procs


def _with_id(body: bytes, new_id: str) -> bytes:
    return re.sub(
        rb"(<(\w+:)?Identificatie>)[^<]*(</)",
        rb"\g<1>" + new_id.encode() + rb"\g<3>",
        body,
        count=1,
    )


def _fill(world: World, count: int) -> None:
    wmo = (IWMO_MESSAGES / "wmo305-linde-amsterdam.xml").read_bytes()
    vs = (VS_MESSAGES / "vs01-onshuis-amsterdam.xml").read_bytes()
    linde = world.at_node(NODE_A, "zorggroep-de-linde")
    onshuis = world.at_node(NODE_B, "woningcorporatie-ons-huis")
    for i in range(count):
        r1 = linde.post(
            f"/api/v1/connectors/{IWMO}/messages",
            content=_with_id(wmo, f"BENCH{i:07d}"),
            headers=XML,
        )
        r2 = onshuis.post(
            f"/api/v1/connectors/{VS}/messages", content=_with_id(vs, f"BENCH{i:07d}"), headers=XML
        )
        assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)


def _timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages", type=int, default=60, help="messages per node for Amsterdam (default 60)"
    )
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--threads",
        action="store_true",
        help="keep nodes and façade as threads of this process (one GIL)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = build_world(root, _pki(root / "pki"), node_timeout=10)
        procs: list[mp.process.BaseProcess] = []
        try:
            if not args.threads:
                procs = _separate_processes(world)
            _fill(world, args.messages)
            via = world.at_facade("gemeente-amsterdam")
            direct = {n: world.at_node(n, "gemeente-amsterdam") for n in (NODE_A, NODE_B)}
            items = via.get(MAILBOX, params={"limit": 500}).json()["items"]
            on_a = [i for i in items if i["node"] == NODE_A]
            assert len(on_a) >= 4, "not enough messages on the iWmo node"
            # warm up every connection
            for client in (via, *direct.values()):
                client.get(MAILBOX)

            times: dict[str, list[float]] = {
                k: []
                for k in (
                    "list-facade",
                    "list-direct",
                    "fetch-facade",
                    "fetch-direct",
                    "ack-facade",
                    "ack-direct",
                )
            }
            ackable = [i for i in on_a]
            for r in range(args.rounds):
                item = on_a[r % len(on_a)]

                def list_facade() -> None:
                    assert via.get(MAILBOX, params={"limit": 100}).status_code == 200

                def list_direct() -> None:
                    for client in direct.values():
                        assert client.get(MAILBOX, params={"limit": 100}).status_code == 200

                def fetch_facade(item: dict[str, str] = item) -> None:
                    assert via.get(f"{MAILBOX}/{item['id']}").status_code == 200

                def fetch_direct(item: dict[str, str] = item) -> None:
                    assert direct[NODE_A].get(f"{MAILBOX}/{item['nodeItemId']}").status_code == 200

                pairs = [("list", list_facade, list_direct), ("fetch", fetch_facade, fetch_direct)]
                if len(ackable) >= 2:
                    a, b = ackable.pop(), ackable.pop()

                    def ack_facade(a: dict[str, str] = a) -> None:
                        assert via.post(f"{MAILBOX}/{a['id']}/ack").status_code == 204

                    def ack_direct(b: dict[str, str] = b) -> None:
                        assert (
                            direct[NODE_A].post(f"{MAILBOX}/{b['nodeItemId']}/ack").status_code
                            == 204
                        )

                    pairs.append(("ack", ack_facade, ack_direct))
                for name, f_fn, d_fn in pairs:
                    first, second = (f_fn, d_fn) if r % 2 == 0 else (d_fn, f_fn)
                    t1, t2 = _timed(first), _timed(second)
                    f_t, d_t = (t1, t2) if r % 2 == 0 else (t2, t1)
                    times[f"{name}-facade"].append(f_t)
                    times[f"{name}-direct"].append(d_t)
        finally:
            world.close()
            if procs:
                for proc in procs:
                    proc.terminate()
                    proc.join(10)
            else:
                world.facade.stop()
                for running in list(world.nodes.values()):
                    running.stop()

    mode = "one thread each in this process" if args.threads else "one process each"
    print(
        f"façade overhead, {args.rounds} rounds, {args.messages} messages per node, "
        f"nodes and façade {mode} (median ms; ratio = façade / direct)"
    )
    ratios = []
    for name, what in (
        ("list", "mailbox list (façade: 1 call over 2 nodes; direct: 2 calls)"),
        ("fetch", "fetch one message"),
        ("ack", "acknowledge one message"),
    ):
        f_times, d_times = times[f"{name}-facade"], times[f"{name}-direct"]
        if not f_times:
            continue
        f_med, d_med = statistics.median(f_times), statistics.median(d_times)
        ratio = f_med / d_med
        ratios.append(ratio)
        print(
            f"  {name:6s} façade {f_med * 1000:7.2f}  direct {d_med * 1000:7.2f}  "
            f"ratio {ratio:5.2f}   {what}  (n={len(f_times)})"
        )
    total_f = sum(statistics.median(times[f"{n}-facade"]) for n in ("list", "fetch"))
    total_d = sum(statistics.median(times[f"{n}-direct"]) for n in ("list", "fetch"))
    print(f"  list + fetch: façade/direct ratio {total_f / total_d:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
