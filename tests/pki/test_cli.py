"""``knooppunt pki …`` end to end in a temporary directory, including a real handshake."""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from node_runtime.security.pki.cli import add_pki_commands, main
from node_runtime.security.tls.contexts import server_context
from node_runtime.security.tls.uvicorn_protocol import run_in_thread, tls_config

OIN = "00000001002564440000"
REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["pki", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def pki_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "pki"
    code, out, _ = run(capsys, "init", "--dir", directory)
    assert code == 0 and "created" in out
    return directory


def listing(capsys: pytest.CaptureFixture[str], directory: Path) -> list[dict[str, Any]]:
    code, out, _ = run(capsys, "list", "--dir", directory, "--json")
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_init_creates_the_layout_and_is_idempotent(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in ["root/ca.crt", "intermediate/ca.crt", "trust/ca-bundle.pem", "trust/crl.pem"]:
        assert (pki_dir / path).is_file()
    assert stat.S_IMODE((pki_dir / "root/ca.key").stat().st_mode) == 0o600
    before = (pki_dir / "root/ca.crt").read_bytes()
    code, out, _ = run(capsys, "init", "--dir", pki_dir)
    assert code == 0 and "already present" in out
    assert (pki_dir / "root/ca.crt").read_bytes() == before


def test_issue_renew_revoke_list_crl(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "issue-server", "--dir", pki_dir, "--name", "localhost",
        "--dns", "localhost", "--dns", "node.example.nl", "--ip", "127.0.0.1",
    )  # fmt: skip
    assert code == 0, out
    assert "issued/localhost.chain.pem" in out
    code, out, _ = run(
        capsys,
        "issue-client", "--dir", pki_dir, "--name", "amsterdam",
        "--organisation", "Gemeente Amsterdam", "--oin", OIN, "--days", "30",
    )  # fmt: skip
    assert code == 0, out
    cert = x509.load_pem_x509_certificate((pki_dir / "issued/amsterdam.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == OIN
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "amsterdam"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 30 <= lifetime.days <= 31
    assert stat.S_IMODE((pki_dir / "issued/amsterdam.key").stat().st_mode) == 0o600

    key_before = (pki_dir / "issued/amsterdam.key").read_bytes()
    code, out, _ = run(capsys, "renew", "--dir", pki_dir, "--name", "amsterdam", "--new-key")
    assert code == 0 and "renewed amsterdam" in out
    renewed = x509.load_pem_x509_certificate((pki_dir / "issued/amsterdam.crt").read_bytes())
    assert renewed.serial_number != cert.serial_number
    assert renewed.subject == cert.subject
    assert renewed.not_valid_after_utc >= cert.not_valid_after_utc
    assert (pki_dir / "issued/amsterdam.key").read_bytes() != key_before
    assert stat.S_IMODE((pki_dir / "issued/amsterdam.key").stat().st_mode) == 0o600

    code, out, _ = run(
        capsys, "revoke", "--dir", pki_dir, "--name", "amsterdam", "--reason", "keyCompromise"
    )
    assert code == 0 and "revoked amsterdam" in out
    crl = x509.load_pem_x509_crl((pki_dir / "trust/crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(renewed.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise

    rows = listing(capsys, pki_dir)
    assert [(r["name"], r["kind"], r["status"]) for r in rows] == [
        ("localhost", "server", "valid"),
        ("amsterdam", "client", "superseded"),
        ("amsterdam", "client", "revoked"),
    ]
    code, out, _ = run(capsys, "list", "--dir", pki_dir)
    assert code == 0 and "revoked" in out and "serialNumber=" + OIN in out

    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    code, out, _ = run(capsys, "crl", "--dir", pki_dir, "--days", "2")
    assert code == 0 and "1 revoked" in out
    fresh = x509.load_pem_x509_crl((pki_dir / "trust/crl.pem").read_bytes())
    assert fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
    assert fresh.next_update_utc is not None
    assert (fresh.next_update_utc - fresh.last_update_utc).days == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["issue-client", "--name", "x", "--organisation", "G", "--oin", "123"], "20 digits"),
        (["issue-server", "--name", "s"], "at least one DNS name or IP"),
        (["issue-server", "--name", "s", "--ip", "999.1.1.1"], "does not appear to be an IP"),
        (["issue-server", "--name", "s", "--dns", "a.example", "--oin", "12"], "20 digits"),
        (["renew", "--name", "nobody"], "no certificate named 'nobody'"),
        (["revoke", "--name", "nobody"], "no current certificate"),
        (["issue-client", "--name", "a/b", "--organisation", "G", "--oin", OIN], "invalid"),
    ],
)
def test_errors_are_reported_with_exit_code_1(
    pki_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *args, "--dir", pki_dir)
    assert code == 1
    assert message in err


def test_duplicate_name_needs_replace(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["issue-client", "--dir", pki_dir, "--name", "a", "--organisation", "G", "--oin", OIN]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code == 1 and "exists" in err
    assert run(capsys, *args, "--replace")[0] == 0
    statuses = [r["status"] for r in listing(capsys, pki_dir)]
    assert statuses == ["revoked", "valid"]  # the replaced one is revoked as superseded


def test_commands_before_init_explain_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "issue-client", "--dir", tmp_path / "none", "--name", "a",
        "--organisation", "G", "--oin", OIN,
    )  # fmt: skip
    assert code == 1 and "knooppunt pki init" in err


def test_organisation_number_instead_of_oin(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        capsys, "issue-client", "--dir", pki_dir, "--name", "zorg",
        "--organisation", "Zorg B.V.", "--organisation-number", "AGB 12345678",
        "--common-name", "berichten.zorg.example",
    )  # fmt: skip
    assert code == 0
    cert = x509.load_pem_x509_certificate((pki_dir / "issued/zorg.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "AGB 12345678"
    with pytest.raises(SystemExit):  # argparse: --oin and --organisation-number are exclusive
        main(["pki", "issue-client", "--name", "x", "--organisation", "G", "--oin", OIN,
              "--organisation-number", "1"])  # fmt: skip


def test_rsa_key_algorithm(pki_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(
        capsys, "issue-server", "--dir", pki_dir, "--name", "rsa", "--dns", "localhost",
        "--key-algorithm", "rsa-3072",
    )  # fmt: skip
    assert code == 0
    assert "BEGIN PRIVATE KEY" in (pki_dir / "issued/rsa.key").read_text()


def test_add_pki_commands_wires_into_a_parent_cli(pki_dir: Path) -> None:
    parser = argparse.ArgumentParser(prog="knooppunt")
    subparsers = parser.add_subparsers(dest="command")
    subparsers.add_parser("run")
    add_pki_commands(subparsers)
    args = parser.parse_args(["pki", "list", "--dir", str(pki_dir)])
    assert args.command == "pki" and args.pki_command == "list"
    assert args.func(args) == 0
    bare = parser.parse_args(["pki"])
    assert bare.func(bare) == 2  # prints help


def test_module_entry_point(pki_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "node_runtime.security.pki.cli",
            "pki",
            "list",
            "--dir",
            str(pki_dir),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no certificates issued" in result.stdout


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    identity = scope["state"]["tls_client_identity"]
    body = json.dumps({"oin": identity.oin if identity else None}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_cli_issued_certificates_work_in_a_real_handshake(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init → issue-server → issue-client → handshake OK → revoke → new context → refused."""
    run(capsys, "issue-server", "--dir", pki_dir, "--name", "localhost", "--dns", "localhost")
    run(capsys, "issue-client", "--dir", pki_dir, "--name", "g", "--organisation", "G",
        "--oin", OIN)  # fmt: skip
    chain, key = pki_dir / "issued/localhost.chain.pem", pki_dir / "issued/localhost.key"
    bundle, crl = pki_dir / "trust/ca-bundle.pem", pki_dir / "trust/crl.pem"

    client = ssl.create_default_context(cafile=bundle)
    client.load_cert_chain(pki_dir / "issued/g.chain.pem", pki_dir / "issued/g.key")

    def request(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
                return data

    def serve() -> Any:
        context = server_context(chain, key, bundle, crl)
        return run_in_thread(tls_config(echo, ssl_context=context, port=0, log_level="warning"))

    with serve() as running:
        assert json.loads(request(running.port).split(b"\r\n\r\n", 1)[1]) == {"oin": OIN}

    assert run(capsys, "revoke", "--dir", pki_dir, "--name", "g")[0] == 0
    with serve() as running, pytest.raises(ssl.SSLError, match="CERTIFICATE_REVOKED"):
        request(running.port)
