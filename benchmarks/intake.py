"""Benchmark: intake throughput against what the HTTPS stack itself carries, in one run.

    .venv/bin/python benchmarks/intake.py [--clients 4] [--rounds 6] [--slice 4]
        [--open-loop | --no-open-loop] [--connections 64] [--duration 10]
        [--profile docs/benchmarks/intake-profile.txt] [--plots docs/benchmarks]

    (matplotlib and py-spy: ``pip install -e '.[bench]'``; vegeta: tools/vegeta/build.sh)

One node, served in a process of its own, on one mutual-TLS listener. The same client
processes (``--clients``, each with one keep-alive mTLS connection per sender certificate, as
real senders hold them) send, in every round (the order rotating from round to round):

  * ``GET /healthz``                      TLS + HTTP, nothing else: the transport ceiling;
  * ``POST /benchmark/read``               the same bodies to a handler that only reads them
                                           (mounted by this script only): transport + body;
  * ``POST`` to an unknown connector       + caller identity + body read + the refusal (404,
                                           its processing-log row committed);
  * ``POST`` to the iWmo connector         the whole intake, committed (202);

and, in this process while the node idles, the in-process floor (parse + XSD + rules +
conversion). After a calibration round every phase runs about ``--slice`` seconds per round,
so load from elsewhere on a shared machine falls on all phases alike; a phase's rate is all
its requests over all its time. It prints each rate and its ratio to ``GET /healthz`` from the
same run, plus intake/floor. Absolute figures depend on the machine and its load; only ratios
within one run mean something.

Open loop (``--open-loop``, on by default when the Go toolchain or a cached vegeta is there):
vegeta (``tools/vegeta/build.sh``, built from its Go module) with one client certificate and
``--connections`` keep-alive connections first finds the maximum sustained intake rate, then
holds 50 % and 90 % of it for ``--duration`` seconds each and reports p50/p99 latency.

``--plots DIR`` writes PNGs (matplotlib, the ``bench`` extra); ``--profile FILE`` samples the
node process with py-spy (the ``bench`` extra) during one extra refused round and one extra
intake round and writes where its time goes.
"""

from __future__ import annotations

import argparse
import base64
import collections
import csv
import http.client
import io
import json
import multiprocessing
import multiprocessing.connection
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_runtime.messages.compiled import ConnectorCache
from node_runtime.messages.parsing import parse_message
from node_runtime.messages.rules import evaluate
from node_runtime.model.loading import load_paths
from node_runtime.node.config import Settings
from node_runtime.security.pki.development import ensure_for_resources
from node_runtime.security.tls.contexts import client_context
from node_runtime.state.node_state import build_state

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from starlette.requests import Request as StarletteRequest  # noqa: E402
from starlette.responses import Response  # noqa: E402

EXAMPLES = REPO / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"
INTAKE_PATH = f"/api/v1/connectors/{CONNECTOR}/messages"
REFUSED_PATH = "/api/v1/connectors/no-such-connector/messages"
READ_PATH = "/benchmark/read"
PATHS = ["/healthz", READ_PATH, REFUSED_PATH, INTAKE_PATH]
XML = {"content-type": "application/xml"}


# --------------------------------------------------------------------------- messages


def messages(count: int, tag: str) -> list[tuple[str, bytes]]:
    """(sender AGB, body) pairs: the example WMO305/307/315 with unique identifications
    (``tag`` + a number, 12 characters, the standard's maximum)."""
    bases = [p.read_bytes() for p in sorted((EXAMPLES / "messages").glob("wmo3[01][57]*.xml"))]
    out = []
    for i in range(count):
        ident = f"{tag}{i:0{12 - len(tag)}d}".encode()
        body = re.sub(rb"(<(\w+:)?Identificatie>)[^<]*(</)", rb"\g<1>" + ident + rb"\g<3>",
                      bases[i % len(bases)], count=1)
        sender = re.search(rb"<(?:\w+:)?Afzender>(\d+)<", body)
        assert sender
        out.append((sender.group(1).decode(), body))
    return out


def floor_rate(batch: list[tuple[str, bytes]]) -> float:

    res = load_paths([EXAMPLES])
    state = build_state(res, node=NODE, cache=ConnectorCache(config_map_root=Path("/x")))
    connector = state.connectors[CONNECTOR]
    started = time.perf_counter()
    for _sender, body in batch:
        tree = parse_message(body)
        mt = connector.identify(tree.getroot())
        assert mt is not None and mt.schema.validate(tree)
        assert not evaluate(mt.rules, tree.getroot(), is_tenant=lambda c: True,
                            is_participant=lambda p: True)
        assert mt.converter is not None
        mt.converter.convert(tree.getroot())
    return len(batch) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the node process


def _serve(settings: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    """The node in a process of its own, plus a benchmark-only route that only reads bodies."""
    from node_runtime.api.server import build_servers
    from node_runtime.serving.servers import start_background, stop_servers

    _node, servers, _tls = build_servers(Settings(**settings))

    app = servers[0].config.app
    app.add_api_route(READ_PATH, read_only, methods=["POST"], include_in_schema=False)
    thread, port = start_background(servers, name="benchmark-node", default_port=0)
    conn.send(port)
    conn.recv()  # until told to stop
    stop_servers(servers, thread)


async def read_only(request: StarletteRequest) -> Response:
    """The benchmark-only handler: reads the body, answers 204."""
    await request.body()
    return Response(status_code=204)


# --------------------------------------------------------------------------- client processes


Request = tuple[str, str, str, bytes | None]  # (client name, method, path, body)


def _client(conn: multiprocessing.connection.Connection, port: int, ca_bundle: str,
            certs: dict[str, tuple[str, str]]) -> None:
    """One sender process: one keep-alive mTLS connection per sender certificate, reused by
    every phase. Answers each phase with (status counts, latencies in seconds)."""

    contexts = {name: client_context(Path(chain), Path(key), Path(ca_bundle))
                for name, (chain, key) in certs.items()}
    pool: dict[str, http.client.HTTPSConnection] = {}
    conn.send("ready")
    while (job := conn.recv()) is not None:
        statuses: collections.Counter[int] = collections.Counter()
        latencies = []
        for name, method, path, body in job:
            started = time.perf_counter()
            for attempt in (1, 2):
                c = pool.get(name)
                if c is None:
                    c = pool[name] = http.client.HTTPSConnection(
                        "localhost", port, timeout=60, context=contexts[name])
                try:
                    c.request(method, path, body=body, headers=XML if body is not None else {})
                    response = c.getresponse()
                    response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # The server closed an idle keep-alive connection: reconnect once, as
                    # HTTP clients do (a repeated intake is answered as a duplicate anyway).
                    c.close()
                    del pool[name]
                    if attempt == 2:
                        raise
            latencies.append(time.perf_counter() - started)
            statuses[response.status] += 1
        conn.send((dict(statuses), latencies))
    for c in pool.values():
        c.close()


@dataclass
class Phase:
    name: str
    expected: int
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """All counted requests over all their time."""
        return self.requests / self.seconds if self.seconds else 0.0


class Clients:
    def __init__(self, count: int, port: int, ca_bundle: str,
                 certs: dict[str, tuple[str, str]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client, args=(child, port, ca_bundle, certs), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            assert pipe.recv() == "ready"

    def run(self, phase: Phase, requests: list[Request], *, counted: bool = True) -> float:
        parts = [requests[i::len(self.pipes)] for i in range(len(self.pipes))]
        started = time.perf_counter()
        for pipe, part in zip(self.pipes, parts, strict=True):
            pipe.send(part)
        statuses: collections.Counter[int] = collections.Counter()
        latencies: list[float] = []
        for pipe in self.pipes:
            counts, lat = pipe.recv()
            statuses.update(counts)
            latencies += lat
        elapsed = time.perf_counter() - started
        if statuses.get(phase.expected, 0) != len(requests):
            raise SystemExit(f"{phase.name}: expected {len(requests)} x {phase.expected}, "
                             f"got {dict(statuses)}")
        rate = len(requests) / elapsed
        if counted:
            phase.rates.append(rate)
            phase.latencies += latencies
            phase.requests += len(requests)
            phase.seconds += elapsed
        return rate

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)


# --------------------------------------------------------------------------- open loop (vegeta)


def vegeta_binary() -> Path | None:
    script = REPO / "tools" / "vegeta" / "build.sh"
    if subprocess.run(["bash", str(script), "--check"]).returncode != 0 and not (
            shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        return None
    out = subprocess.run(["bash", str(script)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class OpenLoop:
    label: str
    requested: float  # requests/s asked for (0: as fast as possible)
    report: dict[str, Any]
    latencies_ms: list[float]

    @property
    def achieved(self) -> float:
        return float(self.report["throughput"])

    def percentile(self, key: str) -> float:
        return float(self.report["latencies"][key]) / 1e6  # ns → ms


def vegeta_attack(vegeta: Path, tmp: Path, label: str, targets: list[bytes], *, rate: float,
                  duration: int, connections: int, cert: tuple[str, str],
                  ca_bundle: str) -> OpenLoop:
    target_file = tmp / f"targets-{label}.jsonl"
    target_file.write_bytes(b"".join(targets))
    results = tmp / f"results-{label}.bin"
    attack = [str(vegeta), "attack", "-format=json", f"-targets={target_file}",
              f"-duration={duration}s", f"-connections={connections}",
              f"-max-connections={connections}", f"-workers={connections}",
              f"-max-workers={connections}", "-http2=false", "-keepalive=true",
              f"-cert={cert[0]}", f"-key={cert[1]}", f"-root-certs={ca_bundle}",
              "-timeout=60s", f"-rate={int(rate)}/s" if rate else "-rate=0",
              f"-output={results}"]
    subprocess.run(attack, check=True)
    report = json.loads(subprocess.run([str(vegeta), "report", "-type=json", str(results)],
                                       check=True, capture_output=True, text=True).stdout)
    encoded = subprocess.run([str(vegeta), "encode", "--to=csv", str(results)], check=True,
                             capture_output=True, text=True).stdout
    # csv: timestamp, code, latency (ns), bytes out, bytes in, error, body, attack, seq, ...
    lat = [int(row[2]) / 1e6 for row in csv.reader(io.StringIO(encoded)) if row]
    codes = report.get("status_codes", {})
    if set(codes) - {"202"}:
        print(f"  [{label}] status codes {codes}; errors {report.get('errors', [])[:3]}")
    return OpenLoop(label, rate, report, lat)


def vegeta_targets(port: int, bodies: list[bytes]) -> list[bytes]:
    url = f"https://localhost:{port}{INTAKE_PATH}"
    return [json.dumps({"method": "POST", "url": url,
                        "header": {"Content-Type": ["application/xml"]},
                        "body": base64.b64encode(b).decode()}).encode() + b"\n"
            for b in bodies]


def open_loop(vegeta: Path, tmp: Path, port: int, pki: Any, by_agb: dict[str, str],
              args: argparse.Namespace) -> list[OpenLoop]:
    # One client certificate (vegeta takes one): the bodies of one sender.
    pool = messages(60_000, "V")
    sender = pool[0][0]
    bodies = [b for agb, b in pool if agb == sender]
    name = by_agb[sender]
    cert = (str(pki.clients[name].chain), str(pki.clients[name].key))
    used = 0

    def take(n: int) -> list[bytes]:
        nonlocal used
        if used + n > len(bodies):
            raise SystemExit("open loop: not enough distinct messages; lower --duration")
        chunk = bodies[used:used + n]
        used += n
        return vegeta_targets(port, chunk)

    runs = []
    ceiling = vegeta_attack(vegeta, tmp, "max", take(len(bodies) // 3), rate=0,
                            duration=args.duration, connections=args.connections, cert=cert,
                            ca_bundle=str(pki.ca_bundle))
    runs.append(ceiling)
    for share in (0.5, 0.9):
        rate = max(1.0, ceiling.achieved * share)
        runs.append(vegeta_attack(vegeta, tmp, f"{int(share * 100)}%",
                                  take(int(rate * args.duration * 1.1) + 10), rate=rate,
                                  duration=args.duration, connections=args.connections,
                                  cert=cert, ca_bundle=str(pki.ca_bundle)))
    return runs


# --------------------------------------------------------------------------- profile (py-spy)

PROFILE_BUCKETS = [
    ("waiting (event loop select, lock and queue waits)", ("select (selectors.py",
                                                           "wait (threading.py",
                                                           "_worker (concurrent/futures/thread")),
    # (label, substrings of a frame; the first bucket a sample's stack matches wins, leaf first)
    ("SQLite/PostgreSQL execute + commit", ("sqlite3", "psycopg", "do_commit", "do_execute")),
    ("SQLAlchemy (statement building, rows)", ("sqlalchemy/",)),
    ("retour (XSLT + its XSD)", ("retour.py",)),
    ("conversion", ("conversion.py",)),
    ("rules", ("rules.py",)),
    ("XSD validation + parsing", ("_process_type (node_runtime/pipeline/intake.py",
                                  "parsing.py")),
    ("routing + processing-log rows", ("_route (", "processing_log.py", "pseudonyms.py")),
    ("rest of the intake pipeline", ("pipeline/",)),
    ("caller identity", ("deps.py", "principals.py", "identity.py")),
    ("TLS (ssl, sslproto)", ("ssl.py", "sslproto.py")),
    ("HTTP (h11, uvicorn)", ("h11", "uvicorn/")),
    ("framework (Starlette, FastAPI, anyio)", ("starlette/", "fastapi/", "anyio/")),
    ("asyncio event loop", ("asyncio/",)),
]


def summarise_profile(raw: str) -> list[tuple[str, float]]:
    """Share of samples per bucket, from py-spy's raw (collapsed stack) output."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")[::-1]  # leaf first
        total += int(n)
        bucket = "other"
        for frame in frames:
            hit = next((label for label, keys in PROFILE_BUCKETS
                        if any(k in frame for k in keys)), None)
            if hit is not None:
                bucket = hit
                break
        counts[bucket] += int(n)
    return [(label, counts[label] / total) for label, _ in [*PROFILE_BUCKETS, ("other", ())]
            if total and counts[label]]


def top_functions(raw: str, limit: int = 25) -> list[tuple[str, float]]:
    """Leaf functions by share of samples (self time)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        counts[stack.split(";")[-1]] += int(n)
    return [(f, c / total) for f, c in counts.most_common(limit)] if total else []


# --------------------------------------------------------------------------- plots


def plot(directory: Path, phases: list[Phase], floor: float, loops: list[OpenLoop],
         title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    ceiling = phases[0].rate
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [p.name for p in phases]
    rates = [p.rate for p in phases]
    bars = ax.barh(labels[::-1], rates[::-1], color="#4477aa")
    for bar, rate in zip(bars, rates[::-1], strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {rate:.0f}/s  ({rate / ceiling:.2f}x)", va="center", fontsize=9)
    ax.set_xlabel("requests per second (all rounds)")
    ax.set_xlim(0, ceiling * 1.35)
    ax.set_title(f"{title}\nsame clients, same run; in-process floor {floor:.0f}/s")
    fig.tight_layout()
    path = directory / "intake-closed-loop.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    if loops:
        fig, ax = plt.subplots(figsize=(8, 4))
        for run in loops:
            lat = sorted(run.latencies_ms)
            if not lat:
                continue
            ys = [i / len(lat) for i in range(1, len(lat) + 1)]
            ax.plot(lat, ys, label=f"{run.label}: {run.achieved:.0f}/s, "
                                   f"p50 {run.percentile('50th'):.0f} ms, "
                                   f"p99 {run.percentile('99th'):.0f} ms")
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("share of requests")
        ax.set_title(f"{title}\nopen loop (vegeta), full intake, latency distribution")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = directory / "intake-open-loop.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--slice", type=float, default=4.0,
                        help="seconds per phase and round (after calibration)")
    parser.add_argument("--calibrate", type=int, default=200,
                        help="requests per phase in the calibration round")
    parser.add_argument("--profile-requests", type=int, default=600)
    parser.add_argument("--open-loop", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds per open-loop run")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument("--title", default="Knooppunt intake")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()


    floor = floor_rate(messages(1000, "F"))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        res = load_paths([EXAMPLES])
        pki = ensure_for_resources(tmp / "pki", res, NODE)
        settings = dict(node=NODE, resources=[EXAMPLES], data_dir=tmp / "data", port=0,
                        tls_cert=pki.server.chain, tls_key=pki.server.key,
                        tls_trust=pki.ca_bundle, tls_crl=pki.crl,
                        database_url=args.database_url,
                        # intake alone: benchmarks/delivery.py measures push delivery
                        delivery_enabled=False)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        node = ctx.Process(target=_serve, args=(settings, child), daemon=True)
        node.start()
        port = parent.recv()
        by_agb = {ident: p.name for c in res.connectors.values() for p in c.spec.participants
                  for ident in p.identifiers}
        certs = {name: (str(paths.chain), str(paths.key)) for name, paths in pki.clients.items()}
        clients = Clients(args.clients, port, str(pki.ca_bundle), certs)
        phases = [Phase("GET /healthz", 200), Phase("POST body, read only", 204),
                  Phase("POST refused (unknown connector)", 404),
                  Phase("POST full intake (committed)", 202)]
        try:
            # Calibration round (also warm-up, not counted), then rounds in which every phase
            # runs for about --slice seconds: on a shared machine the noise then falls on
            # every phase alike. A phase's rate is all its requests over all its time.
            counts = [args.calibrate] * len(phases)
            for round_no in range(args.rounds + 1):
                batch = messages(max(counts), f"R{round_no}")
                names = [by_agb[agb] for agb, _ in batch]
                # The phase order rotates per round: whatever follows a phase (a checkpoint,
                # a garbage collection after the intake) then falls on every phase alike.
                order = [(i + round_no) % len(phases) for i in range(len(phases))]
                for index in order:
                    phase, path = phases[index], PATHS[index]
                    n = counts[index]
                    plan: list[Request] = [
                        (name, "GET" if path == "/healthz" else "POST", path,
                         None if path == "/healthz" else body)
                        for name, (_, body) in zip(names[:n], batch[:n], strict=True)]
                    rate = clients.run(phase, plan, counted=round_no > 0)
                    counts[index] = max(4 * args.clients, int(rate * args.slice))
                    label = f"round {round_no}" if round_no else "calibration"
                    print(f"  {label}: {phase.name:<34} {rate:8.1f}/s", flush=True)
            profile_lines: list[str] = []
            if args.profile is not None:
                profile_lines = profile_round(node.pid, clients, by_agb, args, tmp)
            loops: list[OpenLoop] = []
            vegeta = vegeta_binary() if args.open_loop is not False else None
            if args.open_loop and vegeta is None:
                raise SystemExit("--open-loop needs the go toolchain to build vegeta")
            if vegeta is not None:
                loops = open_loop(vegeta, tmp, port, pki, by_agb, args)
        finally:
            clients.close()
            parent.send("stop")
            node.join(20)

    ceiling = phases[0].rate
    print()
    print(f"{args.clients} client processes, one keep-alive mTLS connection per sender "
          f"certificate; {args.rounds} rounds of about {args.slice:.0f} s per phase, "
          "phases interleaved; rate = all requests / all time of the phase.")
    print("Every figure from this run on this machine; only the ratios are meaningful.")
    for phase in phases:
        lat = sorted(phase.latencies)
        spread = f"rounds {min(phase.rates):.0f}-{max(phase.rates):.0f}/s"
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        print(f"{phase.name:<34} {phase.rate:8.1f}/s  {phase.rate / ceiling:5.2f}x GET /healthz"
              f"  ({spread}; p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
    full = phases[-1].rate
    print(f"{'in-process floor (parse+XSD+rules+convert)':<34} {floor:8.1f}/s")
    print(f"ratio refused POST / GET /healthz: {phases[2].rate / ceiling:.3f}  (target ≥ 0.8)")
    print(f"ratio full intake / GET /healthz:  {full / ceiling:.3f}  (target ≥ 0.35)")
    print(f"ratio full intake / in-process floor: {full / floor:.3f}")
    if loops:
        print(f"\nOpen loop (vegeta, full intake, {args.connections} connections, one sender "
              f"certificate, {args.duration} s per run):")
        for run in loops:
            asked = f"{run.requested:7.1f}/s" if run.requested else "    max"
            print(f"  {run.label:>4} asked {asked}  achieved {run.achieved:7.1f}/s  "
                  f"p50 {run.percentile('50th'):8.1f} ms  p90 {run.percentile('90th'):8.1f} ms"
                  f"  p99 {run.percentile('99th'):8.1f} ms  success {run.report['success']:.3f}")
    if args.profile is not None:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        args.profile.write_text("\n".join(profile_lines) + "\n")
        print("\n" + "\n".join(profile_lines))
        print(f"(profile written to {args.profile})")
    if args.plots is not None:
        for path in plot(args.plots, phases, floor, loops, args.title):
            print(f"plot: {path}")


def profile_round(pid: int, clients: Clients, by_agb: dict[str, str],
                  args: argparse.Namespace, tmp: Path) -> list[str]:
    """One extra refused round and one extra intake round, py-spy sampling the node process
    (busy threads only: a thread waiting on a lock, the event loop in select are not counted)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    lines = []
    for label, path, expected in (("refused POST (unknown connector)", REFUSED_PATH, 404),
                                  ("full intake", INTAKE_PATH, 202)):
        raw_file = tmp / f"profile-{expected}.txt"
        batch = messages(args.profile_requests, f"P{label[0]}")
        plan: list[Request] = [(by_agb[agb], "POST", path, b) for agb, b in batch]
        spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", "250",
                                "--format", "raw", "--output", str(raw_file), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)
        rate = clients.run(Phase(label, expected), plan)
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        _, err = spy.communicate(timeout=60)
        if not raw_file.exists():
            lines.append(f"py-spy wrote no profile: {err.decode(errors='replace')[-400:]}")
            continue
        raw = raw_file.read_text()
        lines += [f"py-spy, node process, {label}: {args.clients} client processes, "
                  f"{rate:.1f}/s while sampled (250 Hz, busy threads only)",
                  "  where busy samples fall (leaf-most matching frame):"]
        lines += [f"    {share * 100:5.1f} %  {name}" for name, share in summarise_profile(raw)]
        lines += ["  top leaf functions (self time):"]
        lines += [f"    {share * 100:5.1f} %  {name}" for name, share in top_functions(raw, 15)]
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
