"""Defect 2 of issue 19: a revoked certificate stops working on a connection that was opened
before the revocation (keep-alive), on the node and on the façade: every request on an open
connection is checked against the current trust generation (real handshakes, one socket)."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from node_runtime.security.tls.contexts import ReloadableServerContext, client_context
from tests.conftest import node_settings
from tests.facade.conftest import World

AMSTERDAM_OIN = "00000001999000363000"


def _connection(port: int, pki: DevPki, name: str) -> http.client.HTTPSConnection:
    paths = pki.store.paths(name)
    ctx = client_context(paths.chain, paths.key, pki.ca_bundle)
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    conn.connect()
    return conn


def _get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _wait_for_new_generation(tls: ReloadableServerContext, before: int) -> None:
    deadline = time.monotonic() + 20
    while tls.generation == before:
        assert time.monotonic() < deadline, "the server never reloaded its TLS material"
        time.sleep(0.05)


def _assert_refused_and_closed(conn: http.client.HTTPSConnection, path: str) -> None:
    status, headers, body = _get(conn, path)
    assert status == 401, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["type"].endswith("/certificate-revoked") and problem["reason"] == "revoked"
    assert headers.get("connection") == "close"
    assert conn.sock is None  # http.client closed its end: the server said Connection: close


def test_revocation_ends_an_open_keep_alive_connection_on_the_node(
    running_node: RunningNode, dev_pki: DevPki
) -> None:
    name = "amsterdam-open-connection"
    if not dev_pki.store.has(name):
        dev_pki.store.issue_client(name, organisation="Gemeente Amsterdam", oin=AMSTERDAM_OIN)
    conn = _connection(running_node.port, dev_pki, name)
    other = _connection(running_node.port, dev_pki, "gemeente-amsterdam")
    try:
        assert _get(conn, "/api/v1/catalogue")[0] == 200
        socket_before = conn.sock
        assert _get(conn, "/api/v1/catalogue")[0] == 200
        assert conn.sock is socket_before  # one connection, kept alive
        before = running_node.tls.generation
        dev_pki.store.revoke(name, reason="keyCompromise")
        _wait_for_new_generation(running_node.tls, before)
        _assert_refused_and_closed(conn, "/api/v1/catalogue")
        # a certificate that is not revoked keeps its open connection
        assert _get(other, "/api/v1/catalogue")[0] == 200
    finally:
        conn.close()
        other.close()


def test_missing_crl_fails_closed_on_open_connections(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki
) -> None:
    """Fail-closed: once the CRL file no longer holds a CRL of the connection's issuing CA,
    the open connection is refused (as new handshakes are)."""
    crl = tmp_path / "crl.pem"
    crl.write_bytes(dev_pki.crl.read_bytes())
    settings = node_settings(resource_dir, tmp_path / "data", dev_pki).model_copy(
        update={"tls_crl": crl}
    )
    running = start_in_thread(settings)
    conn = _connection(running.port, dev_pki, "gemeente-amsterdam")
    try:
        assert _get(conn, "/api/v1/catalogue")[0] == 200
        before = running.tls.generation
        foreign = ensure_dev_pki(tmp_path / "foreign")
        crl.write_bytes(foreign.crl.read_bytes())  # a valid CRL file, of another CA only
        _wait_for_new_generation(running.tls, before)
        status, headers, body = _get(conn, "/api/v1/catalogue")
        assert status == 401, body
        assert json.loads(body)["reason"] == "crl_unavailable"
        assert headers.get("connection") == "close"
    finally:
        conn.close()
        running.stop()


def test_revocation_ends_an_open_connection_at_the_facade(world: World) -> None:
    name = "amsterdam-facade-open"
    pki = world.pki
    if not pki.store.has(name):
        pki.store.issue_client(name, organisation="Gemeente Amsterdam", oin=AMSTERDAM_OIN)
    conn = _connection(world.facade.port, pki, name)
    try:
        assert _get(conn, "/api/v1/gemeenten/0363/mailbox")[0] == 200
        before = world.facade.tls.generation
        pki.store.revoke(name, reason="keyCompromise")
        _wait_for_new_generation(world.facade.tls, before)
        _assert_refused_and_closed(conn, "/api/v1/gemeenten/0363/mailbox")
    finally:
        conn.close()
