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
  * ``POST /benchmark/identified``         + the caller identity as the intake resolves it and
                                           the body read with the intake's limit (also mounted
                                           by this script): the intake's front matter;
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
import functools
import http.client
import importlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from starlette.requests import Request as StarletteRequest  # noqa: E402
from starlette.responses import Response  # noqa: E402

from node_runtime.model.loading import load_paths  # noqa: E402


def _first(*names: str) -> Any:
    """The first importable ``module:attribute``: this checkout's layout first, then the one
    before node_runtime was arranged in rooms (a ``--compare-with`` checkout may be older)."""
    for name in names:
        module, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError:
            continue
    raise ImportError(f"none of {names}")


NodeDep = _first("node_runtime.api.deps:NodeDep", "node_runtime.deps:NodeDep")
PrincipalDep = _first("node_runtime.api.deps:PrincipalDep", "node_runtime.deps:PrincipalDep")
read_body = _first("node_runtime.web.bodies:read_body", "node_runtime.routes.messages:read_body")

EXAMPLES = REPO / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"
INTAKE_PATH = f"/api/v1/connectors/{CONNECTOR}/messages"
REFUSED_PATH = "/api/v1/connectors/no-such-connector/messages"
READ_PATH = "/benchmark/read"
IDENTIFIED_PATH = "/benchmark/identified"
PATHS = ["/healthz", READ_PATH, IDENTIFIED_PATH, REFUSED_PATH, INTAKE_PATH]
XML = {"content-type": "application/xml"}


# --------------------------------------------------------------------------- messages


def messages(count: int, tag: str) -> list[tuple[str, bytes]]:
    """(sender AGB, body) pairs: the example WMO305/307/315 with unique identifications
    (``tag`` + a number, 12 characters, the standard's maximum)."""
    bases = [p.read_bytes() for p in sorted((EXAMPLES / "messages").glob("wmo3[01][57]*.xml"))]
    out = []
    for i in range(count):
        ident = f"{tag}{i:0{12 - len(tag)}d}".encode()
        body = re.sub(
            rb"(<(\w+:)?Identificatie>)[^<]*(</)",
            rb"\g<1>" + ident + rb"\g<3>",
            bases[i % len(bases)],
            count=1,
        )
        sender = re.search(rb"<(?:\w+:)?Afzender>(\d+)<", body)
        assert sender
        out.append((sender.group(1).decode(), body))
    return out


def floor_rate(batch: list[tuple[str, bytes]]) -> float:
    connector_cache = _first(
        "node_runtime.messages.compiled:ConnectorCache",
        "node_runtime.pipeline.compiled:ConnectorCache",
    )
    parse_message = _first(
        "node_runtime.messages.parsing:parse_message", "node_runtime.pipeline.parsing:parse_message"
    )
    evaluate = _first(
        "node_runtime.messages.rules:evaluate", "node_runtime.pipeline.rules:evaluate"
    )
    build_state = _first(
        "node_runtime.state.node_state:build_state", "node_runtime.state:build_state"
    )

    res = load_paths([EXAMPLES])
    state = build_state(res, node=NODE, cache=connector_cache(config_map_root=Path("/x")))
    connector = state.connectors[CONNECTOR]
    started = time.perf_counter()
    for _sender, body in batch:
        tree = parse_message(body)
        mt = connector.identify(tree.getroot())
        assert mt is not None and mt.schema.validate(tree)
        assert not evaluate(
            mt.rules, tree.getroot(), is_tenant=lambda c: True, is_participant=lambda p: True
        )
        assert mt.converter is not None
        mt.converter.convert(tree.getroot())
    return len(batch) / (time.perf_counter() - started)


# --------------------------------------------------------------------------- the node process


def _serve(settings: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    """The node in a process of its own, plus a benchmark-only route that only reads bodies."""
    settings_class = _first("node_runtime.node.config:Settings", "node_runtime.config:Settings")
    build_servers = _first(
        "node_runtime.api.server:build_servers", "node_runtime.server:build_servers"
    )
    start_background = _first(
        "node_runtime.serving.servers:start_background", "node_runtime.serving:start_background"
    )
    stop_servers = _first(
        "node_runtime.serving.servers:stop_servers", "node_runtime.serving:stop_servers"
    )

    # an older checkout may know fewer settings
    known = {k: v for k, v in settings.items() if k in settings_class.model_fields}
    known["resources"] = [EXAMPLES]  # this checkout's own resources (the same organisations)
    _node, servers, _tls = build_servers(settings_class(**known))
    reuse_port = settings.get("_reuse_port")
    if reuse_port:  # one of several worker processes on one port (SO_REUSEPORT)
        sock = reuse_port_socket(servers[0].config.host, reuse_port)
        sock.listen(2048)
        servers[0].serve = functools.partial(servers[0].serve, sockets=[sock])  # type: ignore[method-assign]

    app = servers[0].config.app
    app.add_api_route(READ_PATH, read_only, methods=["POST"], include_in_schema=False)
    app.add_api_route(IDENTIFIED_PATH, identified, methods=["POST"], include_in_schema=False)
    thread, port = start_background(servers, name="benchmark-node", default_port=0)
    conn.send(port)
    conn.recv()  # until told to stop
    stop_servers(servers, thread)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (proto 0 would leave Nagle on: 40 ms delayed-ACK stalls on every small answer)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def read_only(request: StarletteRequest) -> Response:
    """Benchmark-only handler: reads the body, answers 204."""
    await request.body()
    return Response(status_code=204)


async def identified(request: StarletteRequest, principal: PrincipalDep, node: NodeDep) -> Response:
    """Benchmark-only handler: the intake's front matter (caller identity as the intake
    resolves it, the body read with the intake's limit), then 204 and nothing stored."""
    await read_body(request, node.holder.current.knooppunt.spec.limits.max_message_bytes)
    return Response(status_code=204)


# --------------------------------------------------------------------------- client processes


Request = tuple[str, str, str, bytes | None]  # (client name, method, path, body)


def _client(
    conn: multiprocessing.connection.Connection,
    port: int,
    ca_bundle: str,
    certs: dict[str, tuple[str, str]],
) -> None:
    """One sender process: one keep-alive mTLS connection per sender certificate, reused by
    every phase. Answers each phase with (status counts, latencies in seconds)."""
    client_context = _first(
        "node_runtime.security.tls.contexts:client_context",
        "node_runtime.tls.contexts:client_context",
    )

    contexts = {
        name: client_context(Path(chain), Path(key), Path(ca_bundle))
        for name, (chain, key) in certs.items()
    }
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
                        "localhost", port, timeout=60, context=contexts[name]
                    )
                try:
                    c.request(method, path, body=body, headers=XML if body is not None else {})
                    response = c.getresponse()
                    response.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionError, ssl.SSLEOFError):
                    # The server closed an idle keep-alive connection (its idle timeout): the
                    # client reconnects once, as HTTP clients do (a repeated intake would be
                    # answered as a duplicate anyway).
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
    node_cpu: float = 0.0  # CPU seconds of the node process (all threads) in counted rounds
    client_cpu: float = 0.0  # the same of all client processes

    @property
    def rate(self) -> float:
        """All counted requests over all their time."""
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_ms(self) -> tuple[float, float]:
        """(node, clients) CPU milliseconds per request."""
        n = self.requests or 1
        return self.node_cpu / n * 1000, self.client_cpu / n * 1000


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 where unavailable)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    def __init__(
        self, count: int, port: int, ca_bundle: str, certs: dict[str, tuple[str, str]]
    ) -> None:
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

    node_pid: int | None = None

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.node_pid), sum(cpu_seconds(p.pid) for p in self.procs)

    def run(self, phase: Phase, requests: list[Request], *, counted: bool = True) -> float:
        parts = [requests[i :: len(self.pipes)] for i in range(len(self.pipes))]
        node_before, clients_before = self.cpu()
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
        node_after, clients_after = self.cpu()
        if statuses.get(phase.expected, 0) != len(requests):
            raise SystemExit(
                f"{phase.name}: expected {len(requests)} x {phase.expected}, got {dict(statuses)}"
            )
        rate = len(requests) / elapsed
        if counted:
            phase.rates.append(rate)
            phase.latencies += latencies
            phase.requests += len(requests)
            phase.seconds += elapsed
            phase.node_cpu += node_after - node_before
            phase.client_cpu += clients_after - clients_before
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
        shutil.which("go") or Path("/usr/local/go/bin/go").exists()
    ):
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


def vegeta_attack(
    vegeta: Path,
    tmp: Path,
    label: str,
    targets: list[bytes],
    *,
    rate: float,
    duration: int,
    connections: int,
    cert: tuple[str, str],
    ca_bundle: str,
) -> OpenLoop:
    target_file = tmp / f"targets-{label}.jsonl"
    target_file.write_bytes(b"".join(targets))
    results = tmp / f"results-{label}.bin"
    attack = [
        str(vegeta),
        "attack",
        "-format=json",
        f"-targets={target_file}",
        f"-duration={duration}s",
        f"-connections={connections}",
        f"-max-connections={connections}",
        f"-workers={connections}",
        f"-max-workers={connections}",
        "-http2=false",
        "-keepalive=true",
        f"-cert={cert[0]}",
        f"-key={cert[1]}",
        f"-root-certs={ca_bundle}",
        "-timeout=60s",
        f"-rate={int(rate)}/s" if rate else "-rate=0",
        f"-output={results}",
    ]
    subprocess.run(attack, check=True)
    report = json.loads(
        subprocess.run(
            [str(vegeta), "report", "-type=json", str(results)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    encoded = subprocess.run(
        [str(vegeta), "encode", "--to=csv", str(results)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # csv: timestamp, code, latency (ns), bytes out, bytes in, error, body, attack, seq, ...
    lat = [int(row[2]) / 1e6 for row in csv.reader(io.StringIO(encoded)) if row]
    codes = report.get("status_codes", {})
    if set(codes) - {"202"}:
        print(f"  [{label}] status codes {codes}; errors {report.get('errors', [])[:3]}")
    return OpenLoop(label, rate, report, lat)


def vegeta_targets(port: int, bodies: list[bytes]) -> list[bytes]:
    url = f"https://localhost:{port}{INTAKE_PATH}"
    return [
        json.dumps(
            {
                "method": "POST",
                "url": url,
                "header": {"Content-Type": ["application/xml"]},
                "body": base64.b64encode(b).decode(),
            }
        ).encode()
        + b"\n"
        for b in bodies
    ]


def open_loop(
    vegeta: Path,
    tmp: Path,
    target: Target,
    pki: Any,
    by_agb: dict[str, str],
    args: argparse.Namespace,
    *,
    tag: str,
) -> list[OpenLoop]:
    # One client certificate (vegeta takes one): the bodies of one sender.
    port = target.port
    pool = messages(60_000, tag)
    sender = pool[0][0]
    bodies = [b for agb, b in pool if agb == sender]
    name = by_agb[sender]
    cert = (str(pki.clients[name].chain), str(pki.clients[name].key))
    used = 0

    def take(n: int) -> list[bytes]:
        nonlocal used
        if used + n > len(bodies):
            raise SystemExit("open loop: not enough distinct messages; lower --duration")
        chunk = bodies[used : used + n]
        used += n
        return vegeta_targets(port, chunk)

    runs = []
    ceiling = vegeta_attack(
        vegeta,
        tmp,
        f"{tag}-max",
        take(len(bodies) // 3),
        rate=0,
        duration=args.duration,
        connections=args.connections,
        cert=cert,
        ca_bundle=str(pki.ca_bundle),
    )
    runs.append(ceiling)
    for share in (0.5, 0.9):
        rate = max(1.0, ceiling.achieved * share)
        runs.append(
            vegeta_attack(
                vegeta,
                tmp,
                f"{tag}-{int(share * 100)}%",
                take(int(rate * args.duration * 1.1) + 10),
                rate=rate,
                duration=args.duration,
                connections=args.connections,
                cert=cert,
                ca_bundle=str(pki.ca_bundle),
            )
        )
    return runs


# --------------------------------------------------------------------------- profile (py-spy)

PROFILE_BUCKETS = [
    (
        "waiting (event loop select, lock and queue waits)",
        ("select (selectors.py", "wait (threading.py", "_worker (concurrent/futures/thread"),
    ),
    # (label, substrings of a frame; the first bucket a sample's stack matches wins, leaf first)
    ("SQLite/PostgreSQL execute + commit", ("sqlite3", "psycopg", "do_commit", "do_execute")),
    ("SQLAlchemy (statement building, rows)", ("sqlalchemy/",)),
    ("retour (XSLT + its XSD)", ("retour.py",)),
    ("conversion", ("conversion.py",)),
    ("rules", ("rules.py",)),
    ("XSD validation + parsing", ("_process_type (node_runtime/pipeline/intake.py", "parsing.py")),
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
            hit = next(
                (label for label, keys in PROFILE_BUCKETS if any(k in frame for k in keys)), None
            )
            if hit is not None:
                bucket = hit
                break
        counts[bucket] += int(n)
    return [
        (label, counts[label] / total)
        for label, _ in [*PROFILE_BUCKETS, ("other", ())]
        if total and counts[label]
    ]


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


def plot(directory: Path, targets: list[Target], floor: float, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [p.name for p in targets[0].phases][::-1]
    height = 0.8 / len(targets)
    colours = ["#4477aa", "#cc6677", "#228833"]
    for t_index, target in enumerate(targets):
        ceiling = target.phases[0].rate
        ratios = [p.rate / ceiling for p in target.phases][::-1]
        rates = [p.rate for p in target.phases][::-1]
        ys = [i + (t_index - (len(targets) - 1) / 2) * height for i in range(len(names))]
        bars = ax.barh(ys, ratios, height=height, color=colours[t_index % 3], label=target.label)
        for bar, ratio, rate in zip(bars, ratios, rates, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {ratio:.2f}x ({rate:.0f}/s)",
                va="center",
                fontsize=8,
            )
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("rate as a share of GET /healthz in the same run")
    ax.set_xlim(0, 1.45)
    ax.axvline(1.0, color="grey", lw=0.5)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{title}\nsame clients, same run; in-process floor {floor:.0f}/s", fontsize=10)
    fig.tight_layout()
    path = directory / "intake-closed-loop.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    loops = [(t.label, run) for t in targets for run in t.loops]
    if loops:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for label, run in loops:
            lat = sorted(run.latencies_ms)
            if not lat:
                continue
            ys = [i / len(lat) for i in range(1, len(lat) + 1)]
            ax.plot(
                lat,
                ys,
                label=f"{label} {run.label.split('-', 1)[1]}: "
                f"{run.achieved:.0f}/s, "
                f"p50 {run.percentile('50th'):.0f} ms, "
                f"p99 {run.percentile('99th'):.0f} ms",
            )
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("share of requests")
        ax.set_title(f"{title}\nopen loop (vegeta), full intake, latency distribution", fontsize=10)
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="node processes serving this checkout on one port (SO_REUSEPORT), one database",
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--slice", type=float, default=4.0, help="seconds per phase and round (after calibration)"
    )
    parser.add_argument(
        "--calibrate", type=int, default=200, help="requests per phase in the calibration round"
    )
    parser.add_argument("--profile-requests", type=int, default=600)
    parser.add_argument("--open-loop", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10, help="seconds per open-loop run")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument(
        "--profile-raw",
        type=Path,
        default=None,
        help="also keep py-spy's raw stacks here (for flame graphs or inclusive shares)",
    )
    parser.add_argument("--plots", type=Path, default=None)
    parser.add_argument("--title", default="Knooppunt intake")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also serve a node from another checkout (e.g. `git worktree add "
        "/tmp/before <rev>`; it needs this version of the script) and "
        "measure both, interleaved, in the same run",
    )
    parser.add_argument("--compare-label", default="other checkout")
    parser.add_argument("--serve-node", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_node is not None:
        serve_node(args.serve_node)
        return

    settings_class = _first("node_runtime.node.config:Settings", "node_runtime.config:Settings")
    ensure_for_resources = _first(
        "node_runtime.security.pki.development:ensure_for_resources",
        "node_runtime.devpki:ensure_for_resources",
    )

    floor = floor_rate(messages(1000, "F"))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        res = load_paths([EXAMPLES])
        pki = ensure_for_resources(tmp / "pki", res, NODE)
        by_agb = {
            ident: p.name
            for c in res.connectors.values()
            for p in c.spec.participants
            for ident in p.identifiers
        }
        certs = {name: (str(paths.chain), str(paths.key)) for name, paths in pki.clients.items()}
        targets: list[Target] = []

        def settings(name: str) -> dict[str, Any]:
            values: dict[str, Any] = dict(
                node=NODE,
                resources=[str(EXAMPLES)],
                data_dir=str(tmp / name),
                port=0,
                tls_cert=str(pki.server.chain),
                tls_key=str(pki.server.key),
                tls_trust=str(pki.ca_bundle),
                tls_crl=str(pki.crl),
                database_url=args.database_url,
                # intake alone: benchmarks/delivery.py measures push delivery
                delivery_enabled=False,
            )
            if "max_connections_per_client" in settings_class.model_fields:
                # vegeta's connections and the closed-loop clients' share one certificate;
                # the default cap (64 per client) would refuse some
                values["max_connections_per_client"] = args.connections + 4 * args.clients
            return values

        try:
            targets.append(Target.in_process(args.label, settings("data-0"), args.workers))
            if args.compare_with is not None:
                targets.append(
                    Target.other_checkout(args.compare_label, args.compare_with, settings("data-1"))
                )
            for target in targets:
                target.clients = Clients(args.clients, target.port, str(pki.ca_bundle), certs)
                target.clients.node_pid = target.pid  # the first node process of --workers
            # Calibration round (also warm-up, not counted), then rounds in which every phase
            # runs for about --slice seconds: on a shared machine the noise then falls on
            # every phase (and every node compared) alike. A phase's rate is all its
            # requests over all its time.
            for round_no in range(args.rounds + 1):
                for t_index, target in enumerate(targets[:: 1 if round_no % 2 else -1]):
                    run_round(target, round_no, f"{t_index}{round_no}", by_agb, args)
            for target in targets:
                if args.profile is not None:
                    target.profile_lines = profile_round(target, by_agb, args, tmp)
            vegeta = vegeta_binary() if args.open_loop is not False else None
            if args.open_loop and vegeta is None:
                raise SystemExit("--open-loop needs the go toolchain to build vegeta")
            if vegeta is not None:
                for t_index, target in enumerate(targets):
                    target.loops = open_loop(
                        vegeta, tmp, target, pki, by_agb, args, tag=f"V{t_index}"
                    )
        finally:
            for target in targets:
                target.stop()

    print()
    print(
        f"{args.clients} client processes, one keep-alive mTLS connection per sender "
        f"certificate; {args.rounds} rounds of about {args.slice:.0f} s per phase, "
        "phases (and nodes) interleaved; rate = all requests / all time of the phase."
    )
    print("Every figure from this run on this machine; only the ratios are meaningful.")
    print(f"{'in-process floor (parse+XSD+rules+convert)':<36} {floor:8.1f}/s")
    for target in targets:
        report(target, floor, args)
    if len(targets) == 2:
        new, old = targets
        print(f"\n{new.label} against {old.label}, same run (ratio of the ratios to GET /healthz):")
        for p_new, p_old in zip(new.phases[1:], old.phases[1:], strict=True):
            a = p_new.rate / new.phases[0].rate
            b = p_old.rate / old.phases[0].rate
            print(f"  {p_new.name:<36} {b:5.3f} -> {a:5.3f}  ({a / b:4.2f}x)")
    if args.profile is not None:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        lines = [line for t in targets for line in [f"== {t.label}", *t.profile_lines]]
        args.profile.write_text("\n".join(lines) + "\n")
        print("\n" + "\n".join(lines))
        print(f"(profile written to {args.profile})")
    if args.plots is not None:
        for path in plot(args.plots, targets, floor, args.title):
            print(f"plot: {path}")


@dataclass
class Target:
    """One node under test, its client processes and its results."""

    label: str
    port: int
    pid: int
    stop_node: Any
    clients: Clients | None = None
    phases: list[Phase] = field(
        default_factory=lambda: [
            Phase("GET /healthz", 200),
            Phase("POST body, read only", 204),
            Phase("POST identity + body, nothing else", 204),
            Phase("POST refused (unknown connector)", 404),
            Phase("POST full intake (committed)", 202),
        ]
    )
    counts: list[int] = field(default_factory=list)
    loops: list[OpenLoop] = field(default_factory=list)
    profile_lines: list[str] = field(default_factory=list)

    @classmethod
    def in_process(cls, label: str, settings: dict[str, Any], workers: int = 1) -> Target:
        """The node in a process of its own; with ``workers`` > 1, that many node processes
        on one port (SO_REUSEPORT: the kernel spreads connections) and one database."""
        ctx = multiprocessing.get_context("spawn")
        reserved = None
        if workers > 1:
            reserved = reuse_port_socket("127.0.0.1", 0)  # holds the port, never listens
            settings = {**settings, "_reuse_port": reserved.getsockname()[1]}
        pipes, nodes = [], []
        for _ in range(workers):  # one after the other: the first creates the keys
            parent, child = ctx.Pipe()
            node = ctx.Process(target=_serve, args=(settings, child), daemon=True)
            node.start()
            port = parent.recv()
            pipes.append(parent)
            nodes.append(node)

        def stop() -> None:
            for parent, node in zip(pipes, nodes, strict=True):
                parent.send("stop")
                node.join(20)
            if reserved is not None:
                reserved.close()

        assert nodes[0].pid is not None
        return cls(label, port, nodes[0].pid, stop)

    @classmethod
    def other_checkout(cls, label: str, checkout: Path, settings: dict[str, Any]) -> Target:
        """A node from another checkout (e.g. the revision before a change), served by that
        checkout's copy of this script (``--serve-node``) on its own code."""
        proc = subprocess.Popen(
            [
                sys.executable,
                str(checkout / "benchmarks" / "intake.py"),
                "--serve-node",
                json.dumps(settings),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        port, pid = (int(v) for v in proc.stdout.readline().split())
        stdin = proc.stdin

        def stop() -> None:
            stdin.close()
            proc.wait(30)

        return cls(label, port, pid, stop)

    def stop(self) -> None:
        if self.clients is not None:
            self.clients.close()
        self.stop_node()


def run_round(
    target: Target, round_no: int, tag: str, by_agb: dict[str, str], args: argparse.Namespace
) -> None:
    assert target.clients is not None
    if not target.counts:
        target.counts = [args.calibrate] * len(target.phases)
    batch = messages(max(target.counts), f"R{tag}")
    names = [by_agb[agb] for agb, _ in batch]
    # The phase order rotates per round: whatever follows a phase (a checkpoint, a garbage
    # collection after the intake) then falls on every phase alike.
    phases = len(target.phases)
    for index in [(i + round_no) % phases for i in range(phases)]:
        phase, path = target.phases[index], PATHS[index]
        n = target.counts[index]
        plan: list[Request] = [
            (
                name,
                "GET" if path == "/healthz" else "POST",
                path,
                None if path == "/healthz" else body,
            )
            for name, (_, body) in zip(names[:n], batch[:n], strict=True)
        ]
        rate = target.clients.run(phase, plan, counted=round_no > 0)
        target.counts[index] = max(4 * args.clients, int(rate * args.slice))
        label = f"round {round_no}" if round_no else "calibration"
        print(f"  [{target.label}] {label}: {phase.name:<36} {rate:8.1f}/s", flush=True)


def report(target: Target, floor: float, args: argparse.Namespace) -> None:
    phases = target.phases
    ceiling = phases[0].rate
    print(f"\n[{target.label}]")
    for phase in phases:
        lat = sorted(phase.latencies)
        spread = f"rounds {min(phase.rates):.0f}-{max(phase.rates):.0f}/s"
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        node_ms, client_ms = phase.cpu_ms()
        print(
            f"{phase.name:<36} {phase.rate:8.1f}/s  {phase.rate / ceiling:5.2f}x GET /healthz"
            f"  ({spread}; p50 {p50:.1f} ms, p99 {p99:.1f} ms; CPU per request: node "
            f"{node_ms:.2f} ms, clients {client_ms:.2f} ms)"
        )
    full = phases[-1].rate
    print(f"ratio identity + body / GET /healthz: {phases[2].rate / ceiling:.3f}")
    print(f"ratio refused POST / GET /healthz:    {phases[3].rate / ceiling:.3f}  (target ≥ 0.8)")
    print(f"ratio full intake / GET /healthz:     {full / ceiling:.3f}  (target ≥ 0.35)")
    print(f"ratio full intake / in-process floor: {full / floor:.3f}")
    if target.loops:
        print(
            f"open loop (vegeta, full intake, {args.connections} connections, one sender "
            f"certificate, {args.duration} s per run):"
        )
        for run in target.loops:
            asked = f"{run.requested:7.1f}/s" if run.requested else "    max"
            print(
                f"  {run.label:>4} asked {asked}  achieved {run.achieved:7.1f}/s  "
                f"p50 {run.percentile('50th'):8.1f} ms  p90 {run.percentile('90th'):8.1f} ms"
                f"  p99 {run.percentile('99th'):8.1f} ms  success {run.report['success']:.3f}"
            )


def serve_node(settings_json: str) -> None:
    """``--serve-node``: serve one node, print its port, stop when stdin closes."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    node = ctx.Process(target=_serve, args=(json.loads(settings_json), child), daemon=True)
    node.start()
    port = parent.recv()
    print(port, node.pid, flush=True)
    sys.stdin.read()
    parent.send("stop")
    node.join(20)


def profile_round(
    target: Target, by_agb: dict[str, str], args: argparse.Namespace, tmp: Path
) -> list[str]:
    """One extra refused round and one extra intake round, py-spy sampling the node process
    (``--gil``: only the thread holding the interpreter lock is sampled, so the shares are
    shares of the Python work; a thread blocked in an fsync or in select is not counted)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    lines = []
    for label, path, expected in (
        ("refused POST (unknown connector)", REFUSED_PATH, 404),
        ("full intake", INTAKE_PATH, 202),
    ):
        raw_file = tmp / f"profile-{target.port}-{expected}.txt"
        batch = messages(args.profile_requests, f"P{target.port}{label[0]}")
        plan: list[Request] = [(by_agb[agb], "POST", path, b) for agb, b in batch]
        assert target.clients is not None
        clients = target.clients
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(target.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(raw_file),
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)
        rate = clients.run(Phase(label, expected), plan)
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        _, err = spy.communicate(timeout=60)
        if not raw_file.exists():
            lines.append(f"py-spy wrote no profile: {err.decode(errors='replace')[-400:]}")
            continue
        raw = raw_file.read_text()
        if args.profile_raw is not None:
            args.profile_raw.mkdir(parents=True, exist_ok=True)
            shutil.copy(
                raw_file, args.profile_raw / f"{target.label}-{expected}.raw".replace(" ", "_")
            )
        lines += [
            f"py-spy, node process, {label}: {args.clients} client processes, "
            f"{rate:.1f}/s while sampled (250 Hz, the thread holding the interpreter lock)",
            "  where the samples fall (leaf-most matching frame):",
        ]
        lines += [f"    {share * 100:5.1f} %  {name}" for name, share in summarise_profile(raw)]
        lines += ["  top leaf functions (self time):"]
        lines += [f"    {share * 100:5.1f} %  {name}" for name, share in top_functions(raw, 15)]
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
