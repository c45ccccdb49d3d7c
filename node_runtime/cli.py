"""The `knooppunt` command: serve a node, run the demo, check resources, manage the dev PKI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from node_runtime.node.config import Settings
from node_runtime.observability.logs import configure


def _resources(args: argparse.Namespace) -> list[Path]:
    return [Path(p) for p in args.file]


def _guess_node(paths: list[Path]) -> str:
    from node_runtime.model.loading import load_paths

    names = sorted(load_paths(paths).knooppunten)
    if len(names) != 1:
        raise SystemExit(
            f"--node is required: the files define {len(names)} Knooppunt resources"
            f" ({', '.join(names) or 'none'})"
        )
    return names[0]


def cmd_up(args: argparse.Namespace) -> int:
    from node_runtime.api.server import serve
    from node_runtime.model.loading import load_paths
    from node_runtime.security.pki.development import ensure_for_resources

    configure(args.log_level)
    paths = _resources(args)
    node = args.node or _guess_node(paths)
    data_dir = Path(args.data_dir)
    tls = {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_trust": args.tls_trust,
        "tls_crl": args.tls_crl,
    }
    if not args.tls_cert:
        pki = ensure_for_resources(Path(args.pki_dir), load_paths(paths), node)
        tls = {
            "tls_cert": pki.server.chain,
            "tls_key": pki.server.key,
            "tls_trust": pki.ca_bundle,
            "tls_crl": pki.crl,
        }
        print(
            f"development PKI in {args.pki_dir}: client certificates under "
            f"{Path(args.pki_dir) / 'issued'}",
            file=sys.stderr,
        )
    if args.delivery_cert:
        tls.update(delivery_cert=args.delivery_cert, delivery_key=args.delivery_key)
    elif not args.tls_cert:
        from node_runtime.security.pki.development import node_client_name

        if node_client_name(node) in pki.clients:
            own = pki.clients[node_client_name(node)]
            tls.update(delivery_cert=own.chain, delivery_key=own.key)
    settings = Settings(
        node=node,
        resources=paths,
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        health_port=args.health_port,
        database_url=args.database_url,
        public_url=args.public_url,
        **tls,
    )
    serve(settings)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Production entry point: every setting from KNOOPPUNT_* environment variables."""
    from node_runtime.api.server import serve

    configure(args.log_level)
    serve(Settings())
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """The push delivery worker in a process of its own; `knooppunt serve` starts it."""
    import asyncio
    import uuid

    from node_runtime.node.deliverer import run_delivery

    configure(args.log_level)
    # From the node: its exact settings as JSON on stdin (no secret on a command line).
    settings = (
        Settings.model_validate_json(sys.stdin.buffer.read()) if args.settings_stdin else Settings()
    )
    asyncio.run(
        run_delivery(
            settings,
            owner=args.owner or f"delivery-{uuid.uuid4().hex[:12]}",
            wake_fd=args.wake_fd,
            metrics_socket=args.metrics_socket,
        )
    )
    return 0


DEMO_SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo is a script of the source tree (examples/demo.py), not part of the package."""
    import runpy

    if not DEMO_SCRIPT.is_file():
        raise SystemExit(
            f"the demo needs a source checkout ({DEMO_SCRIPT} not found): "
            "run ./dev demo from a clone of the repository"
        )
    demo = runpy.run_path(str(DEMO_SCRIPT), run_name="knooppunt_demo")
    result: int = demo["run_demo"](
        resources=_resources(args), workdir=Path(args.dir), node=args.node
    )
    return result


def cmd_validate(args: argparse.Namespace) -> int:
    from node_runtime.messages.compiled import ConnectorCache, ConnectorCompileError
    from node_runtime.model.loading import ResourceError, load_paths
    from node_runtime.shadow.release import shadow_resource
    from node_runtime.state.node_state import StateError, build_state

    try:
        resources = load_paths(_resources(args))
        cache = ConnectorCache(config_map_root=Path(args.config_map_root))
        for name in sorted(resources.knooppunten):
            state = build_state(resources, node=name, cache=cache)
            print(
                f"Knooppunt {name}: {len(state.connectors)} connector(s), "
                f"{len(state.gemeenten_by_code)} gemeente(n)"
            )
        shadow_cache = ConnectorCache(config_map_root=Path(args.shadow_config_map_root))
        for name, connector in sorted(resources.connectors.items()):
            origin = resources.origin_of("SectorConnector", name)
            compiled = cache.get(connector, origin)
            print(
                f"SectorConnector {name} r{compiled.revision}: "
                f"{', '.join(compiled.messages)}; purposes {', '.join(compiled.purposes)}"
            )
            shadow = shadow_resource(connector)
            if shadow is not None:  # compiled as the shadow worker will compile it
                try:
                    shadowed = shadow_cache.get(shadow, origin)
                except ConnectorCompileError as exc:
                    raise ConnectorCompileError(f"shadow: {exc}") from exc
                print(f"  shadow {shadow.spec.standard_version}: {', '.join(shadowed.messages)}")
    except (ResourceError, ConnectorCompileError, StateError) as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knooppunt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="serve a node from resource files (local mode)")
    up.add_argument(
        "-f",
        "--file",
        action="append",
        required=True,
        help="resource file or directory (repeatable)",
    )
    up.add_argument("--node", help="Knooppunt name (default: the only one in the files)")
    up.add_argument("--data-dir", default=".knooppunt/data")
    up.add_argument("--database-url", default=None)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8443)
    up.add_argument("--health-port", type=int, default=None)
    up.add_argument("--public-url", default=None)
    up.add_argument(
        "--pki-dir",
        default=".knooppunt/pki",
        help="development PKI used when no --tls-cert is given",
    )
    up.add_argument("--tls-cert", type=Path)
    up.add_argument("--tls-key", type=Path)
    up.add_argument("--tls-trust", type=Path)
    up.add_argument("--tls-crl", type=Path)
    up.add_argument("--delivery-cert", type=Path, help="client certificate for push delivery")
    up.add_argument("--delivery-key", type=Path)
    up.add_argument("--log-level", default="INFO")
    up.set_defaults(func=cmd_up)

    serve_cmd = sub.add_parser(
        "serve", help="serve a node configured by KNOOPPUNT_* variables (container entry point)"
    )
    serve_cmd.add_argument("--log-level", default="INFO")
    serve_cmd.set_defaults(func=cmd_serve)

    deliver = sub.add_parser(
        "deliver",
        help="run push delivery alone (started by `knooppunt serve`; settings as for serve)",
    )
    deliver.add_argument(
        "--settings-stdin", action="store_true", help="read the settings as JSON from stdin"
    )
    deliver.add_argument("--owner", default=None, help="lease owner (kept across restarts)")
    deliver.add_argument("--wake-fd", type=int, default=None, help="pipe: claim at each byte")
    deliver.add_argument("--metrics-socket", type=Path, default=None)
    deliver.add_argument("--log-level", default="INFO")
    deliver.set_defaults(func=cmd_deliver)

    demo = sub.add_parser("demo", help="run the local demo end to end")
    demo.add_argument("-f", "--file", action="append", default=None)
    demo.add_argument("--dir", default=".knooppunt/demo")
    demo.add_argument("--node", default=None)
    demo.set_defaults(func=cmd_demo)

    validate = sub.add_parser("validate", help="check resources and compile connectors")
    validate.add_argument("-f", "--file", action="append", required=True)
    validate.add_argument("--config-map-root", default="/etc/knooppunt/bundles")
    validate.add_argument("--shadow-config-map-root", default="/etc/knooppunt/shadow-bundles")
    validate.set_defaults(func=cmd_validate)

    from node_runtime.facade.cli import add_facade_command
    from node_runtime.ledger.cli import add_log_commands
    from node_runtime.security.pki.cli import add_pki_commands

    add_pki_commands(sub)
    add_facade_command(sub)
    add_log_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "demo" and args.file is None:
        args.file = ["examples/iwmo"]
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
