"""Defect 3 of issue 19: idle, header and body deadlines and a per-client connection cap, on
real sockets after a real mutual-TLS handshake. The node runs with short configured deadlines;
the tests assert that the *server* closes the connection (EOF), never how fast."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, node_settings

#: Far longer than the configured deadlines: a server that never closes fails the test.
GIVE_UP = 30.0


def _running(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, **limits: float
) -> Iterator[RunningNode]:
    settings = node_settings(resource_dir, tmp_path / "data", dev_pki).model_copy(update=limits)
    running = start_in_thread(settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def strict_node(tmp_path: Path, resource_dir: Path, dev_pki: DevPki) -> Iterator[RunningNode]:
    yield from _running(
        tmp_path,
        resource_dir,
        dev_pki,
        idle_timeout=0.5,
        header_timeout=0.5,
        body_timeout=0.5,
        max_connections_per_client=3,
    )


@pytest.fixture()
def capped_node(tmp_path: Path, resource_dir: Path, dev_pki: DevPki) -> Iterator[RunningNode]:
    """The cap alone: the held connections must outlive the time it takes to open them all,
    which a 0.5 s idle deadline does not guarantee on a loaded machine."""
    yield from _running(
        tmp_path, resource_dir, dev_pki, idle_timeout=GIVE_UP, max_connections_per_client=3
    )


def _open(port: int, pki: DevPki, name: str = "gemeente-amsterdam") -> ssl.SSLSocket:
    paths = pki.store.paths(name)
    ctx = client_context(paths.chain, paths.key, pki.ca_bundle)
    raw = socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.settimeout(GIVE_UP)
    return tls


def _read_until_closed(sock: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes; raises TimeoutError if it never does."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            return data
        if not chunk:
            return data
        data += chunk


def test_an_idle_connection_is_closed(strict_node: RunningNode, dev_pki: DevPki) -> None:
    with _open(strict_node.port, dev_pki) as sock:
        assert _read_until_closed(sock) == b""  # never sent a byte: closed without an answer


def test_an_idle_keep_alive_connection_is_closed_after_its_response(
    strict_node: RunningNode, dev_pki: DevPki
) -> None:
    with _open(strict_node.port, dev_pki) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        data = _read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.count(b"HTTP/1.1 ") == 1


def test_slow_headers_are_answered_408_and_closed(
    strict_node: RunningNode, dev_pki: DevPki
) -> None:
    with _open(strict_node.port, dev_pki) as sock:
        sock.sendall(b"GET /api/v1/catalogue HTTP/1.1\r\nhost: localhost\r\n")  # never ends
        stop = threading.Event()

        def trickle() -> None:  # keep sending header bytes, slowly, like slowloris
            while not stop.wait(0.2):
                try:
                    sock.sendall(b"x-a: b\r\n")
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            data = _read_until_closed(sock)
        finally:
            stop.set()
            sender.join(5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert b"application/problem+json" in data and b"request-timeout" in data


def test_a_one_byte_per_tick_body_is_answered_408_and_closed(
    strict_node: RunningNode, dev_pki: DevPki
) -> None:
    with _open(strict_node.port, dev_pki, "zorggroep-de-linde") as sock:
        sock.sendall(
            f"POST /api/v1/connectors/{CONNECTOR}/messages HTTP/1.1\r\n"
            "host: localhost\r\ncontent-type: application/xml\r\n"
            "content-length: 100000\r\n\r\n".encode()
        )
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(0.1):
                try:
                    sock.sendall(b"<")
                except OSError:
                    return

        sender = threading.Thread(target=drip, daemon=True)
        sender.start()
        try:
            data = _read_until_closed(sock)
        finally:
            stop.set()
            sender.join(5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert strict_node.node.store.count_rows()["messages"] == 0


def test_connections_per_client_are_capped(capped_node: RunningNode, dev_pki: DevPki) -> None:
    held = [_open(capped_node.port, dev_pki) for _ in range(3)]
    try:
        for sock in held:  # the three are served
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with _open(capped_node.port, dev_pki) as fourth:
            data = _read_until_closed(fourth)
        assert data.startswith(b"HTTP/1.1 429 "), data[:200]
        assert b"too-many-connections" in data
        # another client is not affected by Amsterdam's connections
        with _open(capped_node.port, dev_pki, "gemeente-utrecht") as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            assert other.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in held:
            sock.close()
