"""Defect 4 of issue 19: ``/metrics`` carries per-gemeente figures, so on the mutual-TLS port it
answers an administrator certificate only; the plain health port (cluster-internal) keeps it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki
from tests.conftest import ADMIN_CERT, PartyFactory, free_port, node_settings


def test_metrics_on_the_tls_port_only_for_an_administrator(
    party: PartyFactory, dev_pki: DevPki
) -> None:
    if not dev_pki.store.has("stranger-metrics"):
        dev_pki.store.issue_client(
            "stranger-metrics", organisation="Onbekende organisatie", oin="00000001999000777001"
        )
    for name in ("stranger-metrics", "gemeente-amsterdam", "zorggroep-de-linde"):
        resp = party(name).get("/metrics")
        assert resp.status_code == 403, (name, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert "knooppunt_" not in resp.text
    admin = party(ADMIN_CERT).get("/metrics")
    assert admin.status_code == 200
    assert "knooppunt_mailbox_pending" in admin.text


@pytest.fixture()
def with_health_port(
    tmp_path: Path, resource_dir: Path, dev_pki: DevPki
) -> Iterator[tuple[RunningNode, int]]:
    port = free_port()
    running = start_in_thread(
        node_settings(resource_dir, tmp_path / "data", dev_pki, health_port=port)
    )
    try:
        yield running, port
    finally:
        running.stop()


def test_metrics_stay_on_the_plain_health_port(with_health_port: tuple[RunningNode, int]) -> None:
    _running, port = with_health_port
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200 and "knooppunt_mailbox_pending" in resp.text
