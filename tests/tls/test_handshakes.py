"""Mutual TLS with real certificates and real handshakes against a real uvicorn server.

The PKI is built with the dev PKI store; the server is uvicorn with our SSL context and
``TLSH11Protocol``; clients are ``ssl`` sockets and httpx. Every rejection is asserted on the
TLS alert the server sent, so a test cannot pass because of some unrelated connection error.

TLS 1.3 note: a TLS 1.3 client considers its handshake finished before the server has checked
the client certificate; the server's alert therefore surfaces on the client's first read. The
server-side handshake fails all the same, and the application is never reached.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from fastapi import FastAPI, Request

from node_runtime.security.pki.authority import create_intermediate_ca, create_root_ca, utcnow
from node_runtime.security.pki.issuing import RevokedEntry, build_crl, issue_client_certificate
from node_runtime.security.pki.store import IssuedPaths, PkiStore, atomic_write, write_private_key
from node_runtime.security.tls.certificates import (
    ChainVerifier,
    identity_from_der,
    load_certificates,
    verify_chain,
)
from node_runtime.security.tls.contexts import (
    TLS12_CIPHERS,
    ReloadableServerContext,
    client_context,
    describe,
    server_context,
)
from node_runtime.security.tls.uvicorn_protocol import (
    RejectedHandshake,
    RunningServer,
    TLSH11Protocol,
    client_identity,
    run_in_thread,
    tls_config,
)

OIN_AMSTERDAM = "00000001002564440000"
OIN_UTRECHT = "00000001002220647000"
TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}
DAY = dt.timedelta(days=1)


# --------------------------------------------------------------------------- PKI fixture


@dataclass
class Pki:
    store: PkiStore
    server: IssuedPaths
    rsa_server: IssuedPaths
    valid: IssuedPaths
    expired: IssuedPaths
    future: IssuedPaths
    revoked: IssuedPaths
    foreign: IssuedPaths
    server_as_client: IssuedPaths
    foreign_bundle: Path

    @property
    def bundle(self) -> Path:
        return self.store.ca_bundle_path

    @property
    def crl(self) -> Path:
        return self.store.crl_path


def _write_foreign(directory: Path) -> tuple[IssuedPaths, Path]:
    """A look-alike PKI (same names!) whose root the node does not trust."""
    directory.mkdir(mode=0o700)
    root = create_root_ca()
    intermediate = create_intermediate_ca(root)
    issued = issue_client_certificate(
        intermediate,
        organisation="Gemeente Amsterdam",
        serial_number=OIN_AMSTERDAM,
        common_name="x",
    )
    paths = IssuedPaths(directory / "f.crt", directory / "f.key", directory / "f.chain.pem")
    pem = serialization.Encoding.PEM
    write_private_key(paths.key, issued.key)
    atomic_write(paths.certificate, issued.certificate.public_bytes(pem), mode=0o644)
    atomic_write(paths.chain, b"".join(c.public_bytes(pem) for c in issued.chain), mode=0o644)
    bundle = directory / "bundle.pem"
    bundle.write_bytes(
        root.certificate.public_bytes(pem) + intermediate.certificate.public_bytes(pem)
    )
    return paths, bundle


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("tls")
    store = PkiStore(base / "pki")
    store.init()
    now = utcnow()
    server = store.issue_server("localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    rsa_server = store.issue_server(
        "rsa-localhost",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        key_algorithm="rsa-3072",
    )
    valid = store.issue_client(
        "amsterdam", organisation="Gemeente Amsterdam", oin=OIN_AMSTERDAM, common_name="iwmo"
    )
    expired = store.issue_client(
        "expired",
        organisation="Gemeente Utrecht",
        oin=OIN_UTRECHT,
        not_before=now - 30 * DAY,
        not_after=now - DAY,
    )
    future = store.issue_client(
        "future",
        organisation="Gemeente Utrecht",
        oin=OIN_UTRECHT,
        not_before=now + DAY,
        not_after=now + 30 * DAY,
    )
    revoked = store.issue_client("revoked", organisation="Gemeente Utrecht", oin=OIN_UTRECHT)
    store.revoke("revoked", reason="keyCompromise")
    server_as_client = store.issue_server("other-server", dns_names=["other.example"])
    foreign, foreign_bundle = _write_foreign(base / "foreign")
    return Pki(
        store,
        server,
        rsa_server,
        valid,
        expired,
        future,
        revoked,
        foreign,
        server_as_client,
        foreign_bundle,
    )


# --------------------------------------------------------------------------- server fixture


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Lifespan state is copied into every request; an application value under a TLS key must
    # never survive as if it came from the handshake.
    yield {"greeting": "hallo", "tls_client_cert_der": b"spoofed", "tls_client_identity": "x"}


app = FastAPI(lifespan=lifespan)


@app.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    der = request.state.tls_client_cert_der
    identity = client_identity(request.state)
    return {
        "greeting": request.state.greeting,
        "has_der": der is not None,
        "der_matches_identity": der is not None
        and identity is not None
        and identity_from_der(der) == identity,
        "oin": identity.oin if identity else None,
        "organisation": identity.organisation if identity else None,
        "common_name": identity.common_name if identity else None,
        "fingerprint": identity.fingerprint_sha256 if identity else None,
        "tls_version": request.state.tls_version,
        "tls_cipher": request.state.tls_cipher,
        "scheme": request.url.scheme,
    }


#: Server-side record of refused handshakes, by the client's port.
REJECTIONS: dict[int, RejectedHandshake] = {}


def record(rejection: RejectedHandshake) -> None:
    if rejection.peer is not None:
        REJECTIONS[rejection.peer[1]] = rejection


def start(context: ssl.SSLContext | ReloadableServerContext) -> Any:
    config = tls_config(
        app,
        ssl_context=context,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        on_rejected=record,
    )
    return run_in_thread(config)


@pytest.fixture(scope="module")
def reloadable(pki: Pki) -> ReloadableServerContext:
    return ReloadableServerContext(
        lambda: server_context(pki.server.chain, pki.server.key, pki.bundle, pki.crl)
    )


@pytest.fixture(scope="module")
def server(reloadable: ReloadableServerContext) -> Iterator[RunningServer]:
    with start(reloadable) as running:
        yield running


# --------------------------------------------------------------------------- client helpers


def client(
    pki: Pki,
    paths: IssuedPaths | None,
    *,
    version: ssl.TLSVersion | None = None,
    bundle: Path | None = None,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(bundle or pki.bundle)
    if paths is not None:
        context.load_cert_chain(paths.chain, paths.key)
    if version is not None:
        context.maximum_version = version
    return context


def _exchange(context: ssl.SSLContext, raw: socket.socket, host: str) -> dict[str, Any]:
    with context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    result: dict[str, Any] = json.loads(body)
    return result


def get(context: ssl.SSLContext, server: RunningServer, host: str = "localhost") -> dict[str, Any]:
    """A complete HTTP/1.1 exchange over a raw TLS socket; returns the JSON body."""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        return _exchange(context, raw, host)


@dataclass
class Refusal:
    alert: str  # what the client got: the TLS alert the server sent
    server: RejectedHandshake  # what the server recorded

    @property
    def verify_message(self) -> str | None:
        return self.server.verify_message


def rejected(context: ssl.SSLContext, server: RunningServer) -> Refusal:
    """Attempt an exchange that must fail in the TLS handshake."""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        port = raw.getsockname()[1]
        with pytest.raises(ssl.SSLError) as failure:
            _exchange(context, raw, "localhost")
    server_side = REJECTIONS.pop(port, None)
    assert server_side is not None, f"server recorded no rejection ({failure.value})"
    return Refusal(str(failure.value), server_side)


VERSIONS = pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"]
)


# --------------------------------------------------------------------------- accepted


def test_valid_client_certificate_reaches_the_app_with_its_oin(
    pki: Pki, server: RunningServer
) -> None:
    body = get(client(pki, pki.valid), server)
    assert body["oin"] == OIN_AMSTERDAM
    assert body["organisation"] == "Gemeente Amsterdam"
    assert body["common_name"] == "iwmo"
    assert body["has_der"] and body["der_matches_identity"]
    cert = x509.load_pem_x509_certificate(pki.valid.certificate.read_bytes())
    assert body["fingerprint"] == cert.fingerprint(hashes.SHA256()).hex()
    assert body["greeting"] == "hallo"  # lifespan state still reaches the request
    assert body["scheme"] == "https"


def test_httpx_client_with_our_client_context(pki: Pki, server: RunningServer) -> None:
    context = client_context(pki.valid.chain, pki.valid.key, pki.bundle, pki.crl)
    with httpx.Client(verify=context, base_url=f"https://localhost:{server.port}") as http:
        response = http.get("/whoami")
    assert response.status_code == 200
    assert response.json()["oin"] == OIN_AMSTERDAM


def test_tls13_is_negotiated_by_default(pki: Pki, server: RunningServer) -> None:
    body = get(client(pki, pki.valid), server)
    assert body["tls_version"] == "TLSv1.3"
    assert body["tls_cipher"] in TLS13_SUITES


def test_tls12_client_gets_an_ecdhe_aead_suite(pki: Pki, server: RunningServer) -> None:
    body = get(client(pki, pki.valid, version=ssl.TLSVersion.TLSv1_2), server)
    assert body["tls_version"] == "TLSv1.2"
    assert body["tls_cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384"  # server preference


def test_rsa_server_certificate_uses_ecdhe_rsa(pki: Pki) -> None:
    context = server_context(pki.rsa_server.chain, pki.rsa_server.key, pki.bundle, pki.crl)
    with start(context) as running:
        body = get(client(pki, pki.valid, version=ssl.TLSVersion.TLSv1_2), running)
        assert body["tls_cipher"] == "ECDHE-RSA-AES256-GCM-SHA384"
        assert get(client(pki, pki.valid), running)["tls_version"] == "TLSv1.3"


# --------------------------------------------------------------------------- rejected


@VERSIONS
def test_no_client_certificate_fails_the_handshake(
    pki: Pki, server: RunningServer, version: ssl.TLSVersion
) -> None:
    refusal = rejected(client(pki, None, version=version), server)
    tls13 = version is ssl.TLSVersion.TLSv1_3
    assert ("CERTIFICATE_REQUIRED" if tls13 else "HANDSHAKE_FAILURE") in refusal.alert
    assert refusal.server.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert refusal.server.certificate_problem


@VERSIONS
def test_expired_client_certificate_fails_the_handshake(
    pki: Pki, server: RunningServer, version: ssl.TLSVersion
) -> None:
    refusal = rejected(client(pki, pki.expired, version=version), server)
    assert "CERTIFICATE_EXPIRED" in refusal.alert
    assert refusal.verify_message == "certificate has expired"


@VERSIONS
def test_not_yet_valid_client_certificate_fails_the_handshake(
    pki: Pki, server: RunningServer, version: ssl.TLSVersion
) -> None:
    refusal = rejected(client(pki, pki.future, version=version), server)
    assert "BAD_CERTIFICATE" in refusal.alert  # OpenSSL's alert for X509_V_ERR_CERT_NOT_YET_VALID
    assert refusal.verify_message == "certificate is not yet valid"


@VERSIONS
def test_certificate_from_untrusted_ca_fails_the_handshake(
    pki: Pki, server: RunningServer, version: ssl.TLSVersion
) -> None:
    # same CA names, organisation and OIN as the real one; a different root
    refusal = rejected(client(pki, pki.foreign, version=version), server)
    assert "UNKNOWN_CA" in refusal.alert
    assert refusal.verify_message == "unable to get local issuer certificate"


@VERSIONS
def test_revoked_client_certificate_fails_the_handshake(
    pki: Pki, server: RunningServer, version: ssl.TLSVersion
) -> None:
    refusal = rejected(client(pki, pki.revoked, version=version), server)
    assert "CERTIFICATE_REVOKED" in refusal.alert
    assert refusal.verify_message == "certificate revoked"


def test_server_certificate_cannot_be_used_as_client_certificate(
    pki: Pki, server: RunningServer
) -> None:
    refusal = rejected(client(pki, pki.server_as_client), server)
    assert "UNSUPPORTED_CERTIFICATE" in refusal.alert
    # (the wording differs between OpenSSL versions)
    assert refusal.verify_message in {
        "unsuitable certificate purpose",
        "unsupported certificate purpose",
    }


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls11_only_client_is_refused(pki: Pki, server: RunningServer) -> None:
    context = client(pki, pki.valid)
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # make the client really offer TLS 1.1
    refusal = rejected(context, server)
    assert "PROTOCOL_VERSION" in refusal.alert  # the server answered with protocol_version
    assert refusal.server.reason == "UNSUPPORTED_PROTOCOL"
    assert not refusal.server.certificate_problem


@pytest.mark.parametrize(
    "ciphers",
    [
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA",  # CBC
        "AES128-GCM-SHA256:AES256-GCM-SHA384",  # static RSA key exchange
        "DHE-RSA-AES128-GCM-SHA256",  # finite-field DHE
    ],
    ids=["cbc", "rsa-kx", "dhe"],
)
def test_tls12_client_without_ncsc_suites_is_refused(
    pki: Pki, server: RunningServer, ciphers: str
) -> None:
    context = client(pki, pki.valid, version=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(ciphers)
    refusal = rejected(context, server)
    assert "HANDSHAKE_FAILURE" in refusal.alert
    assert refusal.server.reason == "NO_SHARED_CIPHER"


def test_server_survives_rejections(pki: Pki, server: RunningServer) -> None:
    for paths in (None, pki.expired, pki.foreign, pki.revoked):
        rejected(client(pki, paths), server)
    assert get(client(pki, pki.valid), server)["oin"] == OIN_AMSTERDAM


def test_client_context_checks_the_server_hostname(pki: Pki, server: RunningServer) -> None:
    context = client_context(pki.valid.chain, pki.valid.key, pki.bundle)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        get(context, server, host="wrong.example")


def test_client_context_rejects_an_untrusted_server(pki: Pki, server: RunningServer) -> None:
    context = client_context(pki.foreign.chain, pki.foreign.key, pki.foreign_bundle)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        get(context, server)


# --------------------------------------------------------------------------- revocation at runtime


def test_revocation_takes_effect_after_crl_reload(
    pki: Pki, server: RunningServer, reloadable: ReloadableServerContext
) -> None:
    paths = pki.store.issue_client("to-revoke", organisation="Gemeente Utrecht", oin=OIN_UTRECHT)
    context = client(pki, paths)
    assert get(context, server)["oin"] == OIN_UTRECHT

    pki.store.revoke("to-revoke", reason="keyCompromise")
    # A context reads the CRL once: until it is reloaded the old CRL applies.
    assert get(context, server)["oin"] == OIN_UTRECHT

    reloadable.reload()  # the running server now uses a context with the new CRL
    assert rejected(context, server).verify_message == "certificate revoked"
    assert get(client(pki, pki.valid), server)["oin"] == OIN_AMSTERDAM

    # and so does a freshly built server context on a new server
    fresh = server_context(pki.server.chain, pki.server.key, pki.bundle, pki.crl)
    with start(fresh) as running:
        assert rejected(context, running).verify_message == "certificate revoked"
        assert get(client(pki, pki.valid), running)["oin"] == OIN_AMSTERDAM


def test_uvicorn_native_tls_with_sni_reloadable_context(pki: Pki, tmp_path: Path) -> None:
    """TLSH11Protocol also works when uvicorn/asyncio terminate TLS themselves
    (``ssl_context_factory``); ReloadableServerContext then swaps contexts in the SNI callback.
    asyncio (CPython < 3.15) sends no alert on failure: the client just sees the close."""
    store = PkiStore(tmp_path / "pki")
    store.init()
    srv = store.issue_server("localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    cli = store.issue_client("g", organisation="Gemeente G", oin=OIN_UTRECHT)
    holder = ReloadableServerContext(
        lambda: server_context(srv.chain, srv.key, store.ca_bundle_path, store.crl_path)
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=TLSH11Protocol,
        ssl_context_factory=lambda _config, _default: holder.context,
    )
    context = client(pki, None, bundle=store.ca_bundle_path)
    context.load_cert_chain(cli.chain, cli.key)
    with run_in_thread(config) as running:
        body = get(context, running)
        assert body["oin"] == OIN_UTRECHT and body["tls_version"] == "TLSv1.3"
        store.revoke("g")
        assert get(context, running)["oin"] == OIN_UTRECHT  # old CRL until reloaded
        holder.reload()
        with pytest.raises((ssl.SSLError, AssertionError, ConnectionError)):
            get(context, running)


def test_expired_crl_fails_closed(pki: Pki, tmp_path: Path) -> None:
    intermediate = pki.store.intermediate()
    stale = build_crl(
        intermediate,
        [],
        crl_number=10_000,
        this_update=utcnow() - 10 * DAY,
        next_update=utcnow() - DAY,
    )
    crl = tmp_path / "stale-crl.pem"
    crl.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    context = server_context(pki.server.chain, pki.server.key, pki.bundle, crl)
    with start(context) as running:
        # fail closed: a stale CRL means no client gets in until the CRL is refreshed
        assert rejected(client(pki, pki.valid), running).verify_message == "CRL has expired"


# --------------------------------------------------------------------------- optional client cert


def test_optional_client_certificate_mode_never_shows_app_values(pki: Pki) -> None:
    context = server_context(
        pki.server.chain, pki.server.key, pki.bundle, pki.crl, require_client_cert=False
    )
    with start(context) as running:
        anonymous = get(client(pki, None), running)
        assert anonymous["has_der"] is False  # not b"spoofed" from the lifespan state
        assert anonymous["oin"] is None
        assert get(client(pki, pki.valid), running)["oin"] == OIN_AMSTERDAM
        # a certificate that is sent is still verified
        assert rejected(client(pki, pki.revoked), running).verify_message == "certificate revoked"


# --------------------------------------------------------------------------- context settings


def test_server_context_settings(pki: Pki) -> None:
    context = server_context(pki.server.chain, pki.server.key, pki.bundle, pki.crl)
    settings = describe(context)
    assert settings["minimum_version"] == "TLSv1_2"
    assert settings["verify_mode"] == "CERT_REQUIRED"
    assert settings["no_renegotiation"] and settings["no_compression"]
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    ciphers = settings["ciphers"]
    assert isinstance(ciphers, list)
    tls12 = [c for c in ciphers if not c.startswith("TLS_")]
    assert tls12 == list(TLS12_CIPHERS)
    assert all("GCM" in c or "CHACHA20" in c for c in ciphers)
    assert all(c.startswith("ECDHE-") for c in tls12)
    no_crl = server_context(pki.server.chain, pki.server.key, pki.bundle)
    assert not no_crl.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_client_context_settings(pki: Pki) -> None:
    context = client_context(pki.valid.chain, pki.valid.key, pki.bundle)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="both"):
        client_context(pki.valid.chain, None, pki.bundle)


# --------------------------------------------------------------------------- verify_chain


def pem(paths: IssuedPaths, *, chain: bool = False) -> bytes:
    return (paths.chain if chain else paths.certificate).read_bytes()


def test_verify_chain_accepts_a_valid_certificate(pki: Pki) -> None:
    result = verify_chain(pem(pki.valid), pki.bundle, pki.crl)
    assert result.ok and result.reason is None
    assert result.identity is not None and result.identity.oin == OIN_AMSTERDAM
    assert [c.subject for c in result.chain][1:] == [
        pki.store.intermediate().certificate.subject,
        pki.store.root().certificate.subject,
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("expired", "expired"),
        ("future", "not_yet_valid"),
        ("foreign", "untrusted_issuer"),
        ("revoked", "revoked"),
        ("server_as_client", "wrong_usage"),
    ],
)
def test_verify_chain_rejections(pki: Pki, name: str, reason: str) -> None:
    paths: IssuedPaths = getattr(pki, name)
    result = verify_chain(pem(paths), pki.bundle, pki.crl)
    assert not result.ok
    assert result.reason == reason, result.detail
    assert result.detail
    assert result.identity is not None  # who tried, for the audit log


def test_verify_chain_revocation_detail(pki: Pki) -> None:
    result = verify_chain(pem(pki.revoked), pki.bundle, pki.crl)
    assert "keyCompromise" in result.detail


def test_verify_chain_with_intermediate_presented_and_root_only_trusted(
    pki: Pki, tmp_path: Path
) -> None:
    root_only = tmp_path / "root.pem"
    root_only.write_bytes(pki.store.root_certificate_path.read_bytes())
    assert verify_chain(pem(pki.valid, chain=True), root_only, pki.crl).ok
    missing = verify_chain(pem(pki.valid), root_only, pki.crl)
    assert missing.reason == "untrusted_issuer"


def test_verify_chain_crl_problems_fail_closed(pki: Pki) -> None:
    foreign_crl = build_crl(create_intermediate_ca(create_root_ca()), [], crl_number=1)
    result = verify_chain(pem(pki.valid), pki.bundle, [foreign_crl])
    assert result.reason == "crl_unavailable"

    stale = build_crl(
        pki.store.intermediate(),
        [],
        crl_number=1,
        this_update=utcnow() - 10 * DAY,
        next_update=utcnow() - DAY,
    )
    assert verify_chain(pem(pki.valid), pki.bundle, [stale]).reason == "crl_expired"
    # without CRLs configured there is no revocation check at all
    assert verify_chain(pem(pki.revoked), pki.bundle, None).ok


def test_verify_chain_uses_the_newest_crl(pki: Pki) -> None:
    intermediate = pki.store.intermediate()
    serial = x509.load_pem_x509_certificate(pem(pki.valid)).serial_number
    old = build_crl(intermediate, [], crl_number=1, this_update=utcnow() - DAY)
    new = build_crl(intermediate, [RevokedEntry(serial, utcnow())], crl_number=2)
    assert verify_chain(pem(pki.valid), pki.bundle, [new, old]).reason == "revoked"


def test_verify_chain_at_a_given_time(pki: Pki) -> None:
    verifier = ChainVerifier(pki.bundle, pki.crl)
    assert verifier.verify(pem(pki.future), now=utcnow() + 2 * DAY).ok
    assert verifier.verify(pem(pki.future), now=utcnow()).reason == "not_yet_valid"
    assert verifier.verify(pem(pki.valid), now=utcnow() + 3650 * DAY).reason == "expired"


def test_verify_chain_accepts_proxy_encodings(pki: Pki) -> None:
    verifier = ChainVerifier(pki.bundle, pki.crl)
    leaf_pem = pem(pki.valid).decode()
    cert = x509.load_pem_x509_certificate(pem(pki.valid))
    der = cert.public_bytes(serialization.Encoding.DER)
    forms: list[bytes | str] = [
        der,  # raw DER
        leaf_pem,  # PEM text
        urllib.parse.quote(leaf_pem),  # nginx $ssl_client_escaped_cert
        base64.b64encode(der).decode(),  # Traefik / bare base64 DER
        leaf_pem.replace("\n", " "),  # PEM folded onto one header line
    ]
    for form in forms:
        result = verifier.verify(form)
        assert result.ok, (form[:40], result.detail)
        assert result.identity is not None and result.identity.oin == OIN_AMSTERDAM


@pytest.mark.parametrize("garbage", [b"", "not a certificate", b"\x30\x03\x02\x01\x00", "%%%"])
def test_verify_chain_malformed_input(pki: Pki, garbage: bytes | str) -> None:
    result = verify_chain(garbage, pki.bundle, pki.crl)
    assert result.reason == "malformed"


def test_load_certificates_reads_a_chain(pki: Pki) -> None:
    assert len(load_certificates(pem(pki.valid, chain=True))) == 2
