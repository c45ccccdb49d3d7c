"""What the node logs about its own serving: the truth about each listener, once; a client
that goes away mid-body is one line, not two error tracebacks."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_runtime.api.server import start_in_thread
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, node_settings


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def uvicorn_records(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Records]:
    """The lines uvicorn's logger emits, caught on that logger itself: whatever earlier tests
    in the same process did to the root logger, propagation or levels does not hide them."""
    handler = _Records()
    logger = logging.getLogger("uvicorn.error")
    previous_disable = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logging.disable(previous_disable)


def _messages(caplog: pytest.LogCaptureFixture | _Records) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_listeners_are_logged_as_what_they_are(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, uvicorn_records: _Records
) -> None:
    settings = node_settings(resource_dir, tmp_path / "data", dev_pki)
    settings.health_port = _free_port()
    running = start_in_thread(settings)
    running.stop()
    messages = _messages(uvicorn_records)
    running_lines = [m for m in messages if m.startswith("Uvicorn running on")]
    assert not any(f"http://127.0.0.1:{running.port}" in m for m in running_lines), messages
    assert any(
        f"https://127.0.0.1:{running.port}" in m and "mutual TLS" in m for m in running_lines
    ), messages
    assert any(f"http://127.0.0.1:{settings.health_port}" in m for m in running_lines), messages
    assert sum(m.startswith("Started server process") for m in messages) == 1, messages


def test_client_gone_mid_body_is_one_line_without_traceback(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    running = start_in_thread(node_settings(resource_dir, tmp_path / "data", dev_pki))
    try:
        paths = dev_pki.store.paths("zorggroep-de-linde")
        ctx = client_context(paths.chain, paths.key, dev_pki.ca_bundle)
        with (
            socket.create_connection(("127.0.0.1", running.port)) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(
                f"POST /api/v1/connectors/{CONNECTOR}/messages HTTP/1.1\r\n"
                "Host: localhost\r\nContent-Type: application/xml\r\n"
                "Content-Length: 100000\r\n\r\n<partial>".encode()
            )
            time.sleep(0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            "disconnected" in m for m in _messages(caplog)
        ):
            time.sleep(0.1)
    finally:
        running.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1, _messages(caplog)
    assert gone[0].levelno in (logging.INFO, logging.WARNING)
    assert gone[0].exc_info is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
