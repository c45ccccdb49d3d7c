"""`knooppunt facade`: serve the municipal cloud façade in front of the knooppunten.

    knooppunt facade -f examples/iwmo/ --port 9443            # local mode, development PKI
    knooppunt facade --env                                      # KNOOPPUNT_FACADE_* (container)

Wire it into the main parser with :func:`add_facade_command`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: The façade's fictional OIN in the development PKI (list it in each node's facadeOins).
DEV_FACADE_OIN = "00000001999000000777"
DEV_FACADE_CERT = "facade"


def cmd_facade(args: argparse.Namespace) -> int:
    from node_runtime.facade.config import FacadeSettings
    from node_runtime.facade.server import serve_facade
    from node_runtime.observability.logs import configure

    configure(args.log_level)
    if args.env or not args.file:
        serve_facade(FacadeSettings())
        return 0
    paths = [Path(p) for p in args.file]
    options: dict[str, Any] = {
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_trust": args.tls_trust,
        "tls_crl": args.tls_crl,
        "client_cert": args.client_cert,
        "client_key": args.client_key,
        "node_trust": args.node_trust,
    }
    if not args.tls_cert or not args.client_cert:
        from node_runtime.model.loading import load_paths
        from node_runtime.security.pki.development import organisations
        from node_runtime.security.pki.store import ensure_dev_pki

        resources = load_paths(paths)
        clients = [(DEV_FACADE_CERT, "Gemeentelijke cloud façade", args.facade_oin)]
        for node in sorted(resources.knooppunten):
            clients += organisations(resources, node)
        pki = ensure_dev_pki(Path(args.pki_dir), clients=list(dict.fromkeys(clients)))
        own = pki.clients[DEV_FACADE_CERT]
        options.update(
            tls_cert=args.tls_cert or pki.server.chain,
            tls_key=args.tls_key or pki.server.key,
            tls_trust=args.tls_trust or pki.ca_bundle,
            tls_crl=args.tls_crl or pki.crl,
            client_cert=args.client_cert or own.chain,
            client_key=args.client_key or own.key,
        )
        unlisted = [
            name
            for name, k in sorted(resources.knooppunten.items())
            if k.spec.endpoint and args.facade_oin not in k.spec.security.facade_oins
        ]
        print(
            f"development PKI in {args.pki_dir}; façade certificate OIN {args.facade_oin}",
            file=sys.stderr,
        )
        if unlisted:
            print(
                f"note: list {args.facade_oin} in spec.security.facadeOins of "
                f"{', '.join(unlisted)}, or those nodes refuse the façade",
                file=sys.stderr,
            )
    settings = FacadeSettings(
        resources=paths,
        host=args.host,
        port=args.port,
        health_port=args.health_port,
        node_timeout=args.node_timeout,
        **options,
    )
    serve_facade(settings)
    return 0


def add_facade_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register `facade` on the `knooppunt` command's subparsers."""
    facade = subparsers.add_parser(
        "facade",
        help="serve the municipal cloud façade (one interface across knooppunten)",
        description="Serve the façade over mutual TLS. It reads the same resources as the "
        "nodes (Knooppunt resources with spec.endpoint, SectorConnectors, Gemeenten) and "
        "follows them live.",
    )
    facade.add_argument(
        "-f",
        "--file",
        action="append",
        default=None,
        help="resource file or directory (repeatable)",
    )
    facade.add_argument(
        "--env", action="store_true", help="take every setting from KNOOPPUNT_FACADE_* variables"
    )
    facade.add_argument("--host", default="127.0.0.1")
    facade.add_argument("--port", type=int, default=9443)
    facade.add_argument("--health-port", type=int, default=None)
    facade.add_argument(
        "--node-timeout",
        type=float,
        default=3.0,
        help="seconds each node gets in an aggregated call",
    )
    facade.add_argument(
        "--pki-dir",
        default=".knooppunt/pki",
        help="development PKI used when no --tls-cert/--client-cert is given",
    )
    facade.add_argument(
        "--facade-oin", default=DEV_FACADE_OIN, help="OIN of the development façade certificate"
    )
    facade.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM)")
    facade.add_argument("--tls-key", type=Path)
    facade.add_argument("--tls-trust", type=Path, help="CAs of gemeente client certificates")
    facade.add_argument("--tls-crl", type=Path)
    facade.add_argument(
        "--client-cert",
        type=Path,
        help="the façade's organisation certificate, presented to the nodes",
    )
    facade.add_argument("--client-key", type=Path)
    facade.add_argument(
        "--node-trust",
        type=Path,
        help="CAs of the nodes' server certificates (default --tls-trust)",
    )
    facade.add_argument("--log-level", default="INFO")
    facade.set_defaults(func=cmd_facade)
    return facade  # type: ignore[no-any-return]
