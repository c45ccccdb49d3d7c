"""Caller resolution: cached per certificate, but never across a configuration change."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from node_runtime.messages.compiled import ConnectorCache
from node_runtime.model.loading import load_paths
from node_runtime.security.tls.peers import IssuerScope
from node_runtime.state.node_state import NodeState, build_state
from node_runtime.state.principals import PrincipalCache, resolve
from tests.conftest import EXAMPLES, NODE


@dataclass(frozen=True)
class Cert:
    serial_number: str | None
    fingerprint_sha256: str
    common_name: str | None = None
    issuer_scope: IssuerScope | None = None


def _state(directory: Path, *, drop_participant: str | None = None) -> NodeState:
    shutil.copytree(EXAMPLES, directory, dirs_exist_ok=True)
    if drop_participant is not None:
        docs = list(yaml.safe_load_all((directory / "connector.yaml").read_text()))
        for doc in docs:
            if doc and doc["kind"] == "SectorConnector":
                doc["spec"]["participants"] = [
                    p for p in doc["spec"]["participants"] if p["name"] != drop_participant
                ]
        (directory / "connector.yaml").write_text(yaml.safe_dump_all(docs))
    cache = ConnectorCache(config_map_root=directory / "none")
    return build_state(load_paths([directory]), node=NODE, cache=cache)


def test_cached_principal_equals_resolve_and_follows_a_new_state(tmp_path: Path) -> None:
    before = _state(tmp_path / "a")
    connector = next(iter(before.connectors.values()))
    participant = next(iter(connector.participants_by_identifier.values()))
    serial = next(
        s
        for s, entries in before.participants_by_serial.items()
        if entries[0].participant.name == participant
    )
    cert = Cert(serial, "ab" * 32)
    cache = PrincipalCache()

    first = cache.resolve(before, cert)
    assert first is not None and first == resolve(before, cert)
    assert first.kind == "participant" and first.id == participant
    assert cache.resolve(before, cert) is first  # served from the cache

    # The participant is removed from the connector: the next state no longer knows it.
    after = _state(tmp_path / "b", drop_participant=participant)
    assert resolve(after, cert) is None
    assert cache.resolve(after, cert) is None
    # A gemeente's certificate resolves as before, from the new state.
    gemeente = next(iter(after.gemeenten_by_oin.values()))
    principal = cache.resolve(after, Cert(gemeente.spec.oin, "cd" * 32))
    assert principal is not None and principal.kind == "gemeente"


def test_the_cache_stays_bounded(tmp_path: Path) -> None:
    state = _state(tmp_path / "a")
    cache = PrincipalCache(limit=3)
    for i in range(10):
        assert cache.resolve(state, Cert(None, f"{i:064x}")) is None
    assert len(cache._entries) <= 3


def test_the_issuing_cas_scope_is_part_of_the_key(tmp_path: Path) -> None:
    """Same certificate, but a new trust generation no longer lets its CA speak for the
    organisation: the cache must not answer from the old scope."""
    state = _state(tmp_path / "a")
    gemeente = next(iter(state.gemeenten_by_oin.values()))
    anyone = IssuerScope("ca", "CN=CA", None, administers=False)
    others = IssuerScope("ca", "CN=CA", frozenset({"00000000000000000000"}), administers=False)
    cache = PrincipalCache()
    allowed = cache.resolve(state, Cert(gemeente.spec.oin, "ef" * 32, issuer_scope=anyone))
    assert allowed is not None and allowed.kind == "gemeente"
    assert cache.resolve(state, Cert(gemeente.spec.oin, "ef" * 32, issuer_scope=others)) is None
