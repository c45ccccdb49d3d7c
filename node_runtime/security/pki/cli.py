"""``knooppunt pki …``: manage the development PKI.

Wire into a top-level argparse CLI with :func:`add_pki_commands`; every sub-command sets
``func`` on the namespace to a handler ``(argparse.Namespace) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from node_runtime.security.pki.authority import (
    DEFAULT_KEY_ALGORITHM,
    KEY_ALGORITHMS,
    PkiError,
    utcnow,
)
from node_runtime.security.pki.issuing import REVOCATION_REASONS, validate_oin
from node_runtime.security.pki.store import DEFAULT_PKI_DIR, IssuedPaths, PkiStore


def add_pki_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pki`` and its sub-commands on a top-level ``subparsers`` object."""
    pki = subparsers.add_parser(
        "pki",
        help="development PKI modelled on PKIoverheid (CAs, server and organisation certificates)",
        description="Development PKI modelled on PKIoverheid private services. Not for "
        "production: there, trust the real PKIoverheid CA bundle instead.",
    )
    pki.set_defaults(func=_help(pki))
    commands = pki.add_subparsers(dest="pki_command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--dir",
            type=Path,
            default=DEFAULT_PKI_DIR,
            help=f"PKI directory (default: {DEFAULT_PKI_DIR})",
        )
        return parser

    init = command("init", "create the root and intermediate CA, trust bundle and CRL if missing")
    _key_algorithm_option(init)
    init.set_defaults(func=_init)

    server = command("issue-server", "issue a TLS server certificate (EKU serverAuth)")
    server.add_argument("--name", required=True, help="handle, e.g. 'localhost' or 'node-1'")
    server.add_argument("--dns", action="append", default=[], help="DNS name (repeatable)")
    server.add_argument("--ip", action="append", default=[], help="IP address (repeatable)")
    server.add_argument("--organisation", help="subject O (optional)")
    server.add_argument("--oin", help="subject serialNumber of the operating organisation")
    _issue_options(server)
    server.set_defaults(func=_issue_server)

    client = command(
        "issue-client", "issue an organisation certificate (EKU clientAuth, OIN in serialNumber)"
    )
    client.add_argument("--name", required=True, help="handle, e.g. 'gemeente-0363'")
    client.add_argument("--organisation", required=True, help="subject O, e.g. 'Gemeente X'")
    number = client.add_mutually_exclusive_group(required=True)
    number.add_argument("--oin", help="20-digit OIN (subject serialNumber)")
    number.add_argument(
        "--organisation-number",
        help="other organisation number for parties without an OIN (subject serialNumber)",
    )
    client.add_argument("--common-name", help="subject CN (default: --name)")
    _issue_options(client)
    client.set_defaults(func=_issue_client)

    renew = command("renew", "re-issue a certificate: same subject, new serial and validity")
    renew.add_argument("--name", required=True)
    renew.add_argument("--new-key", action="store_true", help="generate a new key pair")
    renew.add_argument("--days", type=int, help="validity in days (default: as before)")
    renew.set_defaults(func=_renew)

    revoke = command("revoke", "revoke a certificate and regenerate the CRL")
    revoke.add_argument("--name", required=True)
    revoke.add_argument("--reason", choices=REVOCATION_REASONS, default="unspecified")
    revoke.add_argument("--serial", help="revoke this (hex) serial instead of the current one")
    revoke.set_defaults(func=_revoke)

    crl = command("crl", "re-sign the CRL (new number and nextUpdate)")
    crl.add_argument("--days", type=int, default=7, help="CRL validity in days (default 7)")
    crl.set_defaults(func=_crl)

    listing = command("list", "list issued certificates")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_list)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``main(["pki", "init", "--dir", ...])``."""
    parser = argparse.ArgumentParser(prog="knooppunt")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_pki_commands(subparsers)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


# --------------------------------------------------------------------------- handlers


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _key_algorithm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-algorithm",
        choices=KEY_ALGORITHMS,
        default=DEFAULT_KEY_ALGORITHM,
        help=f"key type (default {DEFAULT_KEY_ALGORITHM})",
    )


def _issue_options(parser: argparse.ArgumentParser) -> None:
    _key_algorithm_option(parser)
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace an existing certificate of this name (the old one is revoked: superseded)",
    )


def _validity(days: int) -> dt.timedelta:
    if days < 1:
        raise PkiError("--days must be at least 1")
    return dt.timedelta(days=days)


def _print_paths(store: PkiStore, name: str, paths: IssuedPaths) -> None:
    entry = store.current(name)
    print(f"{entry.kind} certificate {name}: serial {entry.serial}, valid until {entry.not_after}")
    print(f"  subject     {entry.subject}")
    print(f"  certificate {paths.certificate}")
    print(f"  chain       {paths.chain}")
    print(f"  key         {paths.key}")


def _fail(error: Exception) -> int:
    print(f"knooppunt pki: error: {error}", file=sys.stderr)
    return 1


def _init(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        created = store.init(key_algorithm=args.key_algorithm)
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    print(f"{'created' if created else 'already present'}: PKI in {store.directory}")
    print(f"  trust bundle {store.ca_bundle_path}")
    print(f"  CRL          {store.crl_path}")
    return 0


def _issue_server(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        if args.oin is not None:
            validate_oin(args.oin)
        paths = store.issue_server(
            args.name,
            dns_names=args.dns,
            ip_addresses=args.ip,
            organisation=args.organisation,
            serial_number=args.oin,
            key_algorithm=args.key_algorithm,
            validity=_validity(args.days),
            replace=args.replace,
        )
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    _print_paths(store, args.name, paths)
    return 0


def _issue_client(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        paths = store.issue_client(
            args.name,
            organisation=args.organisation,
            oin=args.oin,
            organisation_number=args.organisation_number,
            common_name=args.common_name,
            key_algorithm=args.key_algorithm,
            validity=_validity(args.days),
            replace=args.replace,
        )
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    _print_paths(store, args.name, paths)
    return 0


def _renew(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        previous = store.current(args.name).serial
        paths = store.renew(
            args.name,
            new_key=args.new_key,
            validity=_validity(args.days) if args.days is not None else None,
        )
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    print(f"renewed {args.name} (previous serial {previous}, not revoked)")
    _print_paths(store, args.name, paths)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        entry = store.revoke(args.name, reason=args.reason, serial=args.serial)
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    print(f"revoked {entry.name} serial {entry.serial} ({entry.revocation_reason or 'no reason'})")
    print(f"  CRL regenerated: {store.crl_path}")
    return 0


def _crl(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        path = store.refresh_crl(validity=_validity(args.days))
        crl = store.crl()
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    next_update = crl.next_update_utc.isoformat() if crl.next_update_utc else "-"
    print(f"CRL {path}: {len(crl)} revoked, next update {next_update}")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = PkiStore(args.dir)
    try:
        entries = store.entries()
    except (PkiError, OSError, ValueError) as error:
        return _fail(error)
    now = utcnow()
    if args.json:
        rows = [{**vars(e), "status": e.status(now)} for e in entries]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print(f"no certificates issued in {store.directory}")
        return 0
    print(f"{'NAME':<24} {'KIND':<6} {'STATUS':<13} {'NOT AFTER':<25} {'SERIAL':<40} SUBJECT")
    for e in entries:
        print(
            f"{e.name:<24} {e.kind:<6} {e.status(now):<13} {e.not_after:<25} "
            f"{e.serial:<40} {e.subject}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
