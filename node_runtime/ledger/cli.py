"""`knooppunt log verify`: check the tamper-evident processing log of a node.

Against a data directory (the node's SQLite file) or a database URL, the tree is recomputed
here, from the rows; against a running node, the node does it and answers (administrator
certificate required). Exit status 0: intact; 1: a record was altered, deleted, inserted or
reordered (the first one is named); 2: verification could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _trust(path: Path | None) -> Any:
    if path is None:
        return None
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())


def _sqlite_file(data_dir: Path) -> Path:
    """The node's SQLite file in its data directory (spec.storage.sqlitePath; by default
    knooppunt.db): the default name, else the one database file there."""
    default = data_dir / "knooppunt.db"
    if default.is_file():
        return default
    found = sorted(p for p in data_dir.glob("*.db") if p.is_file())
    if len(found) != 1:
        raise SystemExit(
            f"no node database in {data_dir}"
            if not found
            else f"several databases in {data_dir}: {', '.join(p.name for p in found)}; "
            "pass --database-url"
        )
    return found[0]


def _local(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, inspect

    from node_runtime.ledger.verification import verify
    from node_runtime.store.database_tls import DatabaseTls, DatabaseTlsError
    from node_runtime.store.sql import normalise_url, sqlite_url

    connect_args: dict[str, str] = {}
    if args.database_url:
        url = normalise_url(args.database_url)
        try:  # the node's own policy: with a CA, verify-full and nothing weaker
            connect_args = DatabaseTls(ca=args.database_ca).connect_args(url)
        except DatabaseTlsError as exc:
            raise SystemExit(str(exc)) from exc
    else:
        url = sqlite_url(_sqlite_file(Path(args.data_dir)))
    engine = create_engine(url, connect_args=connect_args)
    try:
        if "log_leaves" not in inspect(engine).get_table_names():
            raise SystemExit(
                "this database has no processing-log tree (start a node of this "
                "version once to migrate it)"
            )
        return verify(engine, trust=_trust(args.trust)).to_json() | {"source": "local"}
    finally:
        engine.dispose()


def _remote(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from node_runtime.security.tls.contexts import client_context

    if not (args.cert and args.key and args.trust):
        raise SystemExit(
            "--url needs --cert and --key (an administrator certificate) and "
            "--trust (the node's CA bundle)"
        )
    ctx = client_context(args.cert, args.key, args.trust)
    with httpx.Client(base_url=args.url, verify=ctx, timeout=args.timeout) as client:
        response = client.post("/api/v1/admin/processing-log/verify")
    if response.status_code != 200:
        raise SystemExit(f"the node answered {response.status_code}: {response.text[:500]}")
    result: dict[str, Any] = response.json()
    return result | {"source": args.url}


def _text(result: dict[str, Any]) -> str:
    head = (
        f"{result['leaves']} leaves, {result['records']} records, "
        f"{result['checkpoints']} signed checkpoints, root {result['rootHash']}"
    )
    if result.get("purgedThroughLeaf") is not None:
        head += f"; records of leaves 0..{result['purgedThroughLeaf']} purged by retention"
    if result["ok"]:
        return f"OK: {head}"
    lines = [f"FAILED: {head}"]
    lines += [f"  {f['kind']}: {f['message']}" for f in result["findings"]]
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        result = _remote(args) if args.url else _local(args)
    except SystemExit as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else _text(result))
    return 0 if result["ok"] else 1


def add_log_commands(sub: Any) -> None:
    log = sub.add_parser("log", help="the tamper-evident processing log")
    log_sub = log.add_subparsers(dest="log_command", required=True)
    verify = log_sub.add_parser(
        "verify",
        help="recompute the processing log's Merkle tree; exit 1 naming the first "
        "altered, deleted, inserted or reordered record",
    )
    verify.add_argument(
        "--data-dir", default=".knooppunt/data", help="the node's data directory (SQLite)"
    )
    verify.add_argument("--database-url", default=None, help="PostgreSQL URL instead")
    verify.add_argument(
        "--database-ca",
        type=Path,
        default=None,
        help="CA of the PostgreSQL server (PEM): TLS with sslmode verify-full",
    )
    verify.add_argument("--url", default=None, help="a running node's base URL instead")
    verify.add_argument("--cert", type=Path, help="administrator certificate (with --url)")
    verify.add_argument("--key", type=Path, help="its private key")
    verify.add_argument(
        "--trust",
        type=Path,
        help="CA bundle: the node's server certificate "
        "(--url) and the checkpoints' signer must chain to it",
    )
    verify.add_argument("--timeout", type=float, default=300.0)
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.set_defaults(func=cmd_verify)
