"""Benchmark: accepted messages per second through the full pipeline over HTTPS (mutual TLS),
as a ratio against the floor of the same messages parsed + validated + converted in-process.

    .venv/bin/python benchmarks/intake.py [--messages 2000] [--clients 4]

Both rates are measured in the same run on the same machine; only their ratio is meaningful.
The clients run in processes of their own, as real senders would.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import socket
import tempfile
import time
from pathlib import Path

import httpx

from node_runtime.config import Settings
from node_runtime.devpki import ensure_for_resources
from node_runtime.model.loading import load_paths
from node_runtime.pipeline.compiled import ConnectorCache
from node_runtime.pipeline.parsing import parse_message
from node_runtime.pipeline.rules import evaluate
from node_runtime.server import start_in_thread
from node_runtime.state import build_state
from node_runtime.tls.contexts import client_context

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"


def messages(count: int) -> list[tuple[str, bytes]]:
    """(sender AGB, body) pairs: the example WMO305/307/315 with unique identifications."""
    bases = [p.read_bytes() for p in sorted((EXAMPLES / "messages").glob("wmo3[01][57]*.xml"))]
    out = []
    for i in range(count):
        body = re.sub(rb"(<(\w+:)?Identificatie>)[^<]*(</)",
                      rb"\g<1>" + f"B{i:011d}".encode() + rb"\g<3>", bases[i % len(bases)],
                      count=1)
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


def _warm(_: int) -> None:
    """Import httpx and build nothing else, so process start-up is not timed."""


def _send_all(job: tuple[str, str, dict[str, tuple[str, str]], dict[str, str],
                         list[tuple[str, bytes]]]) -> int:
    base_url, ca_bundle, clients_of, by_agb, part = job
    pool: dict[str, httpx.Client] = {}
    ok = 0
    for sender, body in part:
        name = by_agb[sender]
        if name not in pool:
            chain, key = clients_of[name]
            pool[name] = httpx.Client(base_url=base_url, timeout=60,
                                      verify=client_context(Path(chain), Path(key),
                                                            Path(ca_bundle)))
        resp = pool[name].post(f"/api/v1/connectors/{CONNECTOR}/messages", content=body,
                               headers={"content-type": "application/xml"})
        ok += resp.status_code == 202
    for c in pool.values():
        c.close()
    return ok


def http_rate(batch: list[tuple[str, bytes]], clients: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        res = load_paths([EXAMPLES])
        pki = ensure_for_resources(Path(tmp) / "pki", res, NODE)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        settings = Settings(node=NODE, resources=[EXAMPLES], data_dir=Path(tmp) / "data",
                            port=port, tls_cert=pki.server.chain, tls_key=pki.server.key,
                            tls_trust=pki.ca_bundle, tls_crl=pki.crl)
        running = start_in_thread(settings)
        by_agb = {ident: p.name for c in res.connectors.values() for p in c.spec.participants
                  for ident in p.identifiers}
        try:
            clients_of = {name: (str(paths.chain), str(paths.key)) for name, paths in
                          pki.clients.items()}
            jobs = [(f"https://localhost:{running.port}", str(pki.ca_bundle), clients_of, by_agb,
                     batch[i::clients]) for i in range(clients)]
            # Clients in processes of their own, as real senders are: they do not share the
            # server's interpreter lock.
            with multiprocessing.get_context("spawn").Pool(clients) as pool:
                pool.map(_warm, range(clients))
                started = time.perf_counter()
                accepted = sum(pool.map(_send_all, jobs))
                elapsed = time.perf_counter() - started
            assert accepted == len(batch), f"only {accepted} of {len(batch)} accepted"
            return accepted / elapsed
        finally:
            running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    batch = messages(args.messages)
    floor = floor_rate(batch)
    full = http_rate(batch, args.clients)
    print(f"floor (parse+XSD+rules+convert in-process): {floor:8.1f} msg/s")
    print(f"full pipeline over mTLS HTTP, committed:    {full:8.1f} msg/s "
          f"({args.clients} clients, {args.messages} messages)")
    print(f"ratio full/floor: {full / floor:.3f}")


if __name__ == "__main__":
    main()
