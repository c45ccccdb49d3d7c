"""Identity and authorisation over real TLS handshakes against a running node."""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, MESSAGES, node_settings

URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
ADMIN_OIN = "00000001999000000999"
AMSTERDAM_OIN = "00000001999000363000"


def _with_admin(resource_dir: Path, *, proxies: list[str] | None = None) -> None:
    path = resource_dir / "knooppunt.yaml"
    doc = yaml.safe_load(path.read_text())
    security = doc["spec"].setdefault("security", {})
    security["administrators"] = [ADMIN_OIN]
    if proxies is not None:
        security["trustedProxies"] = [{"address": a} for a in proxies]
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture()
def secured(tmp_path: Path, resource_dir: Path, dev_pki: DevPki) -> Iterator[RunningNode]:
    _with_admin(resource_dir)
    store = dev_pki.store
    if not store.has("admin-test"):
        store.issue_client("admin-test", organisation="Knooppunt beheer", oin=ADMIN_OIN)
    running = start_in_thread(node_settings(resource_dir, tmp_path / "data", dev_pki))
    try:
        yield running
    finally:
        running.stop()


def _client(port: int, pki: DevPki, name: str | None, *, trust: Path | None = None) -> httpx.Client:
    if name is None:
        ctx = ssl.create_default_context(cafile=str(trust or pki.ca_bundle))
    else:
        paths = pki.store.paths(name)
        ctx = client_context(paths.chain, paths.key, trust or pki.ca_bundle)
    return httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=10)


def _handshake_refused(client: httpx.Client) -> bool:
    try:
        client.get("/api/v1/catalogue")
    except (httpx.TransportError, ssl.SSLError):
        return True
    finally:
        client.close()
    return False


def _issue(pki: DevPki, name: str, oin: str, **validity: dt.datetime) -> None:
    if not pki.store.has(name):
        pki.store.issue_client(name, organisation=f"Test {name}", oin=oin, **validity)


def test_valid_certificate_gets_through(secured: RunningNode, dev_pki: DevPki) -> None:
    with _client(secured.port, dev_pki, "gemeente-amsterdam") as c:
        assert c.get("/api/v1/catalogue").json()["principal"]["id"] == "0363"


def test_no_client_certificate_fails_the_handshake(secured: RunningNode, dev_pki: DevPki) -> None:
    assert _handshake_refused(_client(secured.port, dev_pki, None))


def test_expired_and_not_yet_valid_fail_the_handshake(
    secured: RunningNode, dev_pki: DevPki
) -> None:
    now = dt.datetime.now(dt.UTC)
    _issue(
        dev_pki,
        "amsterdam-expired",
        AMSTERDAM_OIN,
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    _issue(
        dev_pki,
        "amsterdam-future",
        AMSTERDAM_OIN,
        not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=30),
    )
    assert _handshake_refused(_client(secured.port, dev_pki, "amsterdam-expired"))
    assert _handshake_refused(_client(secured.port, dev_pki, "amsterdam-future"))


def test_untrusted_ca_fails_the_handshake(
    secured: RunningNode, dev_pki: DevPki, tmp_path: Path
) -> None:
    foreign = ensure_dev_pki(
        tmp_path / "foreign", clients=[("gemeente-amsterdam", "Gemeente Amsterdam", AMSTERDAM_OIN)]
    )
    # same OIN, but issued by a CA the node does not trust
    paths = foreign.clients["gemeente-amsterdam"]
    ctx = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
    client = httpx.Client(base_url=f"https://localhost:{secured.port}", verify=ctx, timeout=10)
    assert _handshake_refused(client)


def test_revoked_certificate_fails_the_handshake(secured: RunningNode, dev_pki: DevPki) -> None:
    _issue(dev_pki, "amsterdam-to-revoke", AMSTERDAM_OIN)
    with _client(secured.port, dev_pki, "amsterdam-to-revoke") as c:
        assert c.get("/api/v1/catalogue").status_code == 200
    dev_pki.store.revoke("amsterdam-to-revoke", reason="keyCompromise")
    deadline = time.monotonic() + 10
    refused = False
    while time.monotonic() < deadline and not refused:
        time.sleep(0.3)  # the node reloads its TLS context when the CRL file changes
        refused = _handshake_refused(_client(secured.port, dev_pki, "amsterdam-to-revoke"))
    assert refused
    with _client(secured.port, dev_pki, "gemeente-amsterdam") as c:
        assert c.get("/api/v1/catalogue").status_code == 200


def test_valid_but_unregistered_organisation_gets_403_and_a_log_record(
    secured: RunningNode, dev_pki: DevPki
) -> None:
    _issue(dev_pki, "stranger", "00000001999000777000")
    body = sorted(MESSAGES.glob("wmo305*.xml"))[0].read_bytes()
    with _client(secured.port, dev_pki, "stranger") as c:
        resp = c.post(URL, content=body, headers=XML)
    assert resp.status_code == 403
    problem = resp.json()
    assert problem["type"].endswith("/unknown-organisation")
    assert "00000001999000777000" in problem["detail"]
    assert secured.node.store.count_rows()["messages"] == 0
    with _client(secured.port, dev_pki, "admin-test") as admin:
        records = admin.get("/api/v1/admin/processing-log", params={"activity": "refuse"}).json()[
            "records"
        ]
    assert any(r["outcome"] == "unknown-organisation" for r in records)


def test_gemeente_cannot_send_as_another_gemeente(secured: RunningNode, dev_pki: DevPki) -> None:
    body = sorted(MESSAGES.glob("wmo301*.xml"))[0].read_bytes()
    sender = yaml.safe_load("x: '" + body.split(b"Afzender>")[1].split(b"<")[0].decode() + "'")
    other = "gemeente-utrecht" if sender["x"] != "0344" else "gemeente-rotterdam"
    with _client(secured.port, dev_pki, other) as c:
        resp = c.post(URL, content=body, headers=XML)
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/sender-mismatch")
    assert secured.node.store.count_rows()["messages"] == 0


def test_management_needs_an_administrator(secured: RunningNode, dev_pki: DevPki) -> None:
    with _client(secured.port, dev_pki, "gemeente-amsterdam") as c:
        resp = c.get("/api/v1/admin/pending")
        assert resp.status_code == 403
        assert resp.json()["type"].endswith("/not-an-administrator")
    with _client(secured.port, dev_pki, "admin-test") as admin:
        assert admin.get("/api/v1/admin/pending").json()["pending"] == 0
        # an administrator reads no gemeente's personal data
        assert admin.get("/api/v1/gemeenten/0363/mailbox").status_code == 403
        assert admin.post(URL, content=b"<x/>", headers=XML).status_code == 403


@pytest.mark.parametrize("proxy_address,expect", [("127.0.0.1", 200), ("10.9.9.9/32", 403)])
def test_trusted_proxy_mode(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, proxy_address: str, expect: int
) -> None:
    _with_admin(resource_dir, proxies=[proxy_address])
    running = start_in_thread(node_settings(resource_dir, tmp_path / "data", dev_pki))
    try:
        pem = dev_pki.store.paths("gemeente-amsterdam").certificate.read_text()
        with _client(running.port, dev_pki, None) as proxy:  # the proxy has no client cert
            assert proxy.get("/api/v1/catalogue").status_code == 401
            resp = proxy.get("/api/v1/catalogue", headers={"x-ssl-client-cert": quote(pem)})
            assert resp.status_code == expect, resp.text
            if expect == 200:
                assert resp.json()["principal"]["id"] == "0363"
                foreign = ensure_dev_pki(
                    tmp_path / "foreign",
                    clients=[("gemeente-amsterdam", "Gemeente Amsterdam", AMSTERDAM_OIN)],
                )
                forged = foreign.clients["gemeente-amsterdam"].certificate.read_text()
                bad = proxy.get("/api/v1/catalogue", headers={"x-ssl-client-cert": quote(forged)})
                assert bad.status_code == 401
                assert bad.json()["type"].endswith("/forwarded-certificate-rejected")
            else:
                assert resp.json()["type"].endswith("/untrusted-proxy")
    finally:
        running.stop()


def test_tls_settings_follow_ncsc(secured: RunningNode, dev_pki: DevPki) -> None:
    paths = dev_pki.store.paths("gemeente-amsterdam")
    ctx = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    client = httpx.Client(base_url=f"https://localhost:{secured.port}", verify=ctx, timeout=10)
    assert _handshake_refused(client)
    import socket

    ctx13 = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
    with (
        socket.create_connection(("127.0.0.1", secured.port)) as raw,
        ctx13.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
