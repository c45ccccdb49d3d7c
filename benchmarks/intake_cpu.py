"""Benchmark: CPU time per accepted message inside the node, without HTTP.

    .venv/bin/python benchmarks/intake_cpu.py [--messages 2000] [--profile]
        [--database-url postgresql://…]

The node is built as ``knooppunt serve`` builds it (``build_node``: the example resources,
SQLite in a temporary directory unless ``--database-url``) and the example WMO305/307/315
messages, each with its own identification, go through ``IntakeService.process`` from one
thread, one after the other: parse, XSD validation, rules, routing with conversion and
doelbinding, the retour, the processing-log records, and the durable commit (group commit
with one writer: one transaction and fsync per message). The figure is CPU time
(``time.process_time``, all threads of this process) per accepted message, so it stays
meaningful on a busy machine where wall-clock figures do not; the fsync wait is not CPU time
and is not in it.

``--compare-with CHECKOUT`` measures this checkout and another one (e.g. ``git worktree add
/tmp/before <rev>``, with this script copied into it), each in a fresh process, alternating
for ``--rounds`` rounds, and prints every round and the median per checkout: on a shared
machine even CPU time per message varies from run to run (caches, frequency), so only the
alternated pair is a fair before/after.

``--without-store`` replaces the store's look-up of an earlier message and its durable write
by stubs (nothing is stored, every message counts as new): the CPU of the pipeline's own work
before the commit (parse, XSD, rules, conversion, doelbinding, envelopes, retour,
processing-log records, conversation events), without the store's share.

``--profile`` runs the same messages once more under cProfile with a CPU clock and prints
where the time goes: per component (inclusive time of the pipeline's steps) and the functions
with the most own time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.intake import messages  # noqa: E402  (the same bodies as the HTTP benchmark)
from node_runtime.model.loading import load_paths  # noqa: E402
from node_runtime.node.assembly import Node, build_node  # noqa: E402
from node_runtime.node.config import Settings  # noqa: E402
from node_runtime.observability.tracing import TraceContext  # noqa: E402
from node_runtime.security.pki.development import ensure_for_resources  # noqa: E402
from node_runtime.state.principals import Principal  # noqa: E402

EXAMPLES = REPO / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"

# (label, file suffix, function name) of the inclusive times reported per component; a
# function missing from a checkout (renamed, or not there yet) is reported as absent. Names
# separated by "|" are alternatives: the first one the profile has is reported.
COMPONENTS = [
    ("whole intake (IntakeService.process)", "pipeline/intake.py", "process"),
    ("parse", "messages/parsing.py", "parse_message"),
    ("XSD validation of the message", "pipeline/validation.py", "validate_schema"),
    ("duplicate pre-check (SELECT)", "store/sql.py", "find_message"),
    ("subject pseudonyms", "pipeline/subjects.py", "subject_refs"),
    ("rules", "pipeline/rule_check.py", "check_rules"),
    ("routing (conversion, doelbinding, envelopes)", "pipeline/routing.py", "route"),
    ("  conversion", "messages/conversion.py", "convert"),
    ("retour (XSLT + its XSD validation)", "pipeline/acceptance.py", "answer"),
    ("conversation events", "pipeline/conversation_events.py", "events"),
    ("processing-log records (built, not stored)", "audit/processing_log.py", "add"),
    ("commit (group commit, transaction)", "store/sql.py", "commit_intake|submit_write"),
    ("  message/delivery/log inserts", "store/sql.py", "_insert_intakes"),
    ("  Merkle leaves", "store/log_tree.py", "append_leaves"),
    ("  conversations", "store/conversations.py", "apply"),
    ("  SQLite COMMIT", "sqlalchemy/engine/base.py", "_commit_impl"),
]


def principals(node: Node) -> dict[str, Principal]:
    """The participant principal of every sender AGB, as the TLS identity would resolve it."""
    state = node.holder.current
    out: dict[str, Principal] = {}
    for compiled in state.connectors.values():
        for participant in compiled.resource.spec.participants:
            principal = Principal(
                kind="participant",
                id=participant.name,
                display_name=participant.display_name,
                identifiers=frozenset(participant.identifiers),
                connectors=frozenset({compiled.name}),
            )
            for ident in participant.identifiers:
                out[ident] = principal
    return out


def run(
    node: Node, batch: list[tuple[str, bytes]], by_agb: dict[str, Principal], threads: int = 1
) -> float:
    """CPU seconds for the batch (all threads); every message must be accepted. With several
    threads, concurrent intakes share group commits as concurrent requests do."""
    state = node.holder.current

    def one(item: tuple[str, bytes]) -> None:
        agb, body = item
        result = node.intake.process(
            state, CONNECTOR, body, by_agb[agb], TraceContext("0" * 31 + "1", None)
        )
        assert result.outcome == "accepted", (result.outcome, result.problem)

    started = time.process_time()
    if threads == 1:
        for item in batch:
            one(item)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, batch))
    return time.process_time() - started


def without_store(node: Node) -> None:
    """Every message is new and its write is not carried out (the names of the thread path
    of this and older checkouts)."""
    store: Any = node.store
    store.find_message = lambda *_args: None
    store.commit_intake = store.submit_write = lambda write: (write.message, True)


def component_table(stats: pstats.Stats, count: int) -> list[str]:
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in raw.values())
    lines = [f"  {'total (profiled)':<46} {total / count * 1000:7.3f} ms/message"]
    for label, suffix, names in COMPONENTS:
        found: list[float] = []
        for name in names.split("|"):  # alternatives (the name in older checkouts first)
            found = [
                ct
                for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items()
                if func == name and file.endswith(suffix)
            ]
            if found:
                break
        value = f"{sum(found) / count * 1000:7.3f} ms" if found else "   absent"
        lines.append(f"  {label:<46} {value}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40, help="functions listed by own time")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument(
        "--threads", type=int, default=1, help="concurrent intakes (they share group commits)"
    )
    parser.add_argument(
        "--without-store",
        action="store_true",
        help="stub the store's look-up and write: the pipeline's own CPU before the commit",
    )
    parser.add_argument("--compare-with", type=Path, default=None, metavar="CHECKOUT")
    parser.add_argument("--rounds", type=int, default=5, help="with --compare-with")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--compare-label", default="other checkout")
    args = parser.parse_args()
    if args.compare_with is not None:
        compare(args)
        return
    threads = "one thread" if args.threads == 1 else f"{args.threads} threads"

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pki = ensure_for_resources(tmp / "pki", load_paths([EXAMPLES]), NODE)
        settings = Settings(
            node=NODE,
            resources=[EXAMPLES],
            data_dir=tmp / "data",
            tls_cert=pki.server.chain,
            tls_key=pki.server.key,
            tls_trust=pki.ca_bundle,
            tls_crl=pki.crl,
            database_url=args.database_url,
            delivery_enabled=False,
        )
        node = build_node(settings, identity=lambda _request: None)
        if args.without_store:
            without_store(node)
        by_agb = principals(node)
        try:
            run(node, messages(args.warmup, "W"), by_agb)
            cpu = run(node, messages(args.messages, "M"), by_agb, args.threads)
            what = "pipeline without the store" if args.without_store else "intake"
            print(
                f"in-process {what}, {args.messages} accepted messages, {threads}: "
                f"{cpu / args.messages * 1000:.3f} ms CPU per message "
                f"({args.messages / cpu:.0f}/s of CPU)"
            )
            if args.profile:
                profiler = cProfile.Profile(time.process_time)
                batch = messages(args.messages, "P")
                profiler.enable()
                run(node, batch, by_agb)
                profiler.disable()
                stats = pstats.Stats(profiler)
                print("\ncProfile (CPU clock), inclusive time per component:")
                print("\n".join(component_table(stats, len(batch))))
                print(f"\ntop {args.top} functions by own time:")
                stats.sort_stats("tottime").print_stats(args.top)
        finally:
            node.store.close()


def compare(args: argparse.Namespace) -> None:
    """Both checkouts, each round in fresh processes, alternating (the order flips per round)."""
    sides = [(args.label, REPO), (args.compare_label, args.compare_with.resolve())]
    figures: dict[str, list[float]] = {label: [] for label, _ in sides}
    for round_no in range(args.rounds):
        for label, checkout in sides if round_no % 2 == 0 else sides[::-1]:
            command = [
                sys.executable,
                str(checkout / "benchmarks" / "intake_cpu.py"),
                "--messages",
                str(args.messages),
                "--warmup",
                str(args.warmup),
            ]
            if args.threads != 1:
                command += ["--threads", str(args.threads)]
            if args.database_url:
                command += ["--database-url", args.database_url]
            if args.without_store:
                command += ["--without-store"]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            found = re.search(r"([0-9.]+) ms CPU per message", out)
            assert found, out
            figures[label].append(float(found.group(1)))
            print(f"  round {round_no + 1} {label:<16} {found.group(1)} ms CPU per message")
    print(
        f"\nin-process {'pipeline without the store' if args.without_store else 'intake'}, "
        f"{args.messages} accepted messages per round, "
        f"{args.threads} thread(s):"
    )
    for label, values in figures.items():
        print(
            f"  {label:<16} median {statistics.median(values):.3f} ms CPU per message "
            f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds)"
        )
    new, old = (statistics.median(figures[label]) for label, _ in sides)
    print(f"  {args.label} / {args.compare_label}: {new / old:.2f}")


if __name__ == "__main__":
    main()
