"""Defects 1 and 5 of issue 19, over real handshakes with two trusted CAs.

1. A node that trusts several CAs checks each client certificate against the CRL of *its*
   issuing CA: with every CA's CRL present, certificates of both CAs are accepted; when one CA's
   CRL is missing its certificates are refused (fail-closed) and the log says which CA lacks one.
5. Identity is bound to the issuing CA: a foreign-but-trusted CA (e.g. the one in a gemeente's
   provided ``ca.crt``) speaks only for the OINs it is bound to, never for another gemeente and
   never for the administrator; the node's own CA speaks for everyone registered.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import ADMIN_CERT, ADMIN_OIN, node_settings

AMSTERDAM_OIN = "00000001999000363000"
UTRECHT_OIN = "00000001999000344000"


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A second CA (think: the CA in a gemeente's provided ca.crt), trusted by the node."""
    return ensure_dev_pki(
        tmp_path_factory.mktemp("foreign-ca"),
        clients=[
            ("utrecht-b", "Gemeente Utrecht", UTRECHT_OIN),
            ("amsterdam-b", "Gemeente Amsterdam (vervalst)", AMSTERDAM_OIN),
            ("admin-b", "Beheer (vervalst)", ADMIN_OIN),
        ],
    )


def _foreign_ca_fingerprint(foreign: DevPki) -> str:
    return foreign.store.intermediate().certificate.fingerprint(hashes.SHA256()).hex()


def _start(
    tmp_path: Path,
    resource_dir: Path,
    dev_pki: DevPki,
    foreign: DevPki,
    *,
    crls: list[Path],
    issuers: dict[str, object] | None,
    proxies: list[str] | None = None,
) -> RunningNode:
    trust = tmp_path / "trust.pem"
    trust.write_bytes(dev_pki.ca_bundle.read_bytes() + foreign.ca_bundle.read_bytes())
    crl = tmp_path / "crl.pem"
    crl.write_bytes(b"".join(p.read_bytes() for p in crls))
    update: dict[str, object] = {"tls_trust": trust, "tls_crl": crl}
    if issuers is not None:
        policy = tmp_path / "issuers.yaml"
        policy.write_text(yaml.safe_dump(issuers))
        update["tls_issuers"] = policy
    if proxies is not None:
        doc = yaml.safe_load((resource_dir / "knooppunt.yaml").read_text())
        doc["spec"]["security"]["trustedProxies"] = [{"address": a} for a in proxies]
        (resource_dir / "knooppunt.yaml").write_text(yaml.safe_dump(doc))
    settings = node_settings(resource_dir, tmp_path / "data", dev_pki).model_copy(update=update)
    return start_in_thread(settings)


def _client(port: int, pki: DevPki, name: str | None, server_pki: DevPki) -> httpx.Client:
    if name is None:
        ctx = ssl.create_default_context(cafile=str(server_pki.ca_bundle))
    else:
        paths = pki.store.paths(name)
        ctx = client_context(paths.chain, paths.key, server_pki.ca_bundle)
    return httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=10)


def _catalogue(port: int, pki: DevPki, name: str, server_pki: DevPki) -> httpx.Response:
    with _client(port, pki, name, server_pki) as client:
        return client.get("/api/v1/catalogue")


@pytest.fixture()
def two_cas(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, foreign: DevPki
) -> Iterator[RunningNode]:
    """Both CAs trusted, both CRLs present; the foreign CA bound to Utrecht's OIN only."""
    running = _start(
        tmp_path,
        resource_dir,
        dev_pki,
        foreign,
        crls=[dev_pki.crl, foreign.crl],
        issuers={"organisations": {_foreign_ca_fingerprint(foreign): [UTRECHT_OIN]}},
    )
    try:
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------- defect 1


def test_two_trusted_cas_with_their_crls_accept_both(
    two_cas: RunningNode, dev_pki: DevPki, foreign: DevPki
) -> None:
    own = _catalogue(two_cas.port, dev_pki, "gemeente-amsterdam", dev_pki)
    assert own.status_code == 200 and own.json()["principal"]["id"] == "0363"
    other = _catalogue(two_cas.port, foreign, "utrecht-b", dev_pki)
    assert other.status_code == 200, other.text
    assert other.json()["principal"]["id"] == "0344"


def test_a_trusted_ca_without_its_crl_is_refused_with_a_clear_message(
    tmp_path: Path,
    resource_dir: Path,
    dev_pki: DevPki,
    foreign: DevPki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="node_runtime.security.tls")
    running = _start(
        tmp_path,
        resource_dir,
        dev_pki,
        foreign,
        crls=[dev_pki.crl],
        issuers={"organisations": {_foreign_ca_fingerprint(foreign): [UTRECHT_OIN]}},
    )
    try:
        foreign_ca = foreign.store.intermediate().certificate.subject.rfc4514_string()
        # at start: which trusted CA has no CRL, and what that means
        assert any(
            "no CRL for trusted CA" in r.getMessage()
            and foreign_ca in r.getMessage()
            and r.levelno == logging.ERROR
            for r in caplog.records
        )
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            _catalogue(running.port, foreign, "utrecht-b", dev_pki)
        refusals = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
        assert any("no CRL for the issuing CA" in m and foreign_ca in m for m in refusals), refusals
        # the node's own CA still works
        assert _catalogue(running.port, dev_pki, "gemeente-amsterdam", dev_pki).status_code == 200
    finally:
        running.stop()


# ------------------------------------------------------------------------------- defect 5


def test_a_foreign_trusted_ca_cannot_speak_for_another_gemeente(
    two_cas: RunningNode, dev_pki: DevPki, foreign: DevPki
) -> None:
    forged = _catalogue(two_cas.port, foreign, "amsterdam-b", dev_pki)
    assert forged.status_code == 403, forged.text
    problem = forged.json()
    assert problem["type"].endswith("/issuer-not-allowed")
    assert AMSTERDAM_OIN in problem["detail"]
    with _client(two_cas.port, foreign, "amsterdam-b", dev_pki) as c:
        assert c.get("/api/v1/gemeenten/0363/mailbox").status_code == 403


def test_the_administrator_only_from_the_node_ca(
    two_cas: RunningNode, dev_pki: DevPki, foreign: DevPki
) -> None:
    with _client(two_cas.port, foreign, "admin-b", dev_pki) as forged:
        resp = forged.get("/api/v1/admin/pending")
        assert resp.status_code == 403
        assert resp.json()["type"].endswith("/issuer-not-allowed")
        assert forged.get("/metrics").status_code == 403
    with _client(two_cas.port, dev_pki, ADMIN_CERT, dev_pki) as real:
        assert real.get("/api/v1/admin/pending").status_code == 200


def test_without_a_policy_only_the_node_ca_speaks_for_organisations(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, foreign: DevPki
) -> None:
    running = _start(
        tmp_path, resource_dir, dev_pki, foreign, crls=[dev_pki.crl, foreign.crl], issuers=None
    )
    try:
        resp = _catalogue(running.port, foreign, "utrecht-b", dev_pki)
        assert resp.status_code == 403 and resp.json()["type"].endswith("/issuer-not-allowed")
        assert _catalogue(running.port, dev_pki, "gemeente-utrecht", dev_pki).status_code == 200
    finally:
        running.stop()


def test_another_nodes_ca_speaks_for_gemeenten_but_not_for_the_administrator(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, foreign: DevPki
) -> None:
    running = _start(
        tmp_path,
        resource_dir,
        dev_pki,
        foreign,
        crls=[dev_pki.crl, foreign.crl],
        issuers={"nodes": [_foreign_ca_fingerprint(foreign)]},
    )
    try:
        resp = _catalogue(running.port, foreign, "amsterdam-b", dev_pki)
        assert resp.status_code == 200 and resp.json()["principal"]["id"] == "0363"
        with _client(running.port, foreign, "admin-b", dev_pki) as admin:
            assert admin.get("/api/v1/admin/pending").json()["type"].endswith("/issuer-not-allowed")
    finally:
        running.stop()


def test_a_forwarded_certificate_is_bound_to_its_issuer_too(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, foreign: DevPki
) -> None:
    running = _start(
        tmp_path,
        resource_dir,
        dev_pki,
        foreign,
        crls=[dev_pki.crl, foreign.crl],
        issuers={"organisations": {_foreign_ca_fingerprint(foreign): [UTRECHT_OIN]}},
        proxies=["127.0.0.1"],
    )
    try:
        with _client(running.port, dev_pki, None, dev_pki) as proxy:
            forged = foreign.store.paths("amsterdam-b").certificate.read_text()
            resp = proxy.get("/api/v1/catalogue", headers={"x-ssl-client-cert": quote(forged)})
            assert resp.status_code == 403, resp.text
            assert json.loads(resp.text)["type"].endswith("/issuer-not-allowed")
            bound = foreign.store.paths("utrecht-b").certificate.read_text()
            resp = proxy.get("/api/v1/catalogue", headers={"x-ssl-client-cert": quote(bound)})
            assert resp.status_code == 200 and resp.json()["principal"]["id"] == "0344"
    finally:
        running.stop()


def test_the_facade_default_lets_its_curated_bundle_speak_but_never_administer(
    tmp_path: Path, dev_pki: DevPki, foreign: DevPki
) -> None:
    """The façade trusts only the platform's curated bundle: without a policy file every CA in
    it may speak for gemeenten (none may administer); a node binds to its own CA."""
    from node_runtime.security.tls.peers import TrustMaterial

    trust = tmp_path / "trust.pem"
    trust.write_bytes(dev_pki.ca_bundle.read_bytes() + foreign.ca_bundle.read_bytes())
    der = foreign.store.certificate("utrecht-b").public_bytes(serialization.Encoding.DER)
    for speak, expected in ((True, None), (False, frozenset())):
        material = TrustMaterial(
            generation=1,
            trust_bundle=trust,
            crl=None,
            server_chain=dev_pki.server.chain,
            trusted_cas_speak=speak,
        )
        check = material.check(der)
        assert check.ok and check.scope is not None
        assert check.scope.speaks_for == expected
        assert not check.scope.administers
