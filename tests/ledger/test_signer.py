"""The checkpoint signer follows a renewed node certificate: on a cluster the operator renews
the node's TLS Secret in place (pods are not restarted), so a pod that runs longer than its
certificate must sign with the renewed key, never with one whose certificate expired."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from node_runtime.ledger.checkpoints import Signer, verify
from node_runtime.security.pki.store import DevPki


def _replace(target: Path, source: Path) -> None:
    """As the kubelet updates a mounted Secret: the new content appears at once."""
    tmp = target.with_suffix(".new")
    shutil.copy(source, tmp)
    os.replace(tmp, target)


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_a_renewed_key_and_certificate_are_taken_up_without_a_restart(
    dev_pki: DevPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, chain = tmp_path / "tls.key", tmp_path / "tls.crt"
    shutil.copy(dev_pki.server.key, key)
    shutil.copy(dev_pki.server.chain, chain)
    trust = x509.load_pem_x509_certificates(dev_pki.ca_bundle.read_bytes())
    signer = Signer(key, chain)
    root = bytes(32)
    first = signer.sign("knooppunt.nl/test", 1, root, datetime.now(UTC))
    assert verify(first, trust=trust) == _leaf(dev_pki.server.chain)

    renewed = dev_pki.store.issue_server(f"renewed-{uuid.uuid4().hex[:8]}", dns_names=["localhost"])
    _replace(key, renewed.key)
    _replace(chain, renewed.chain)
    second = signer.sign("knooppunt.nl/test", 2, root, datetime.now(UTC))
    assert verify(second, trust=trust) == _leaf(renewed.chain)
    assert verify(first, trust=trust) == _leaf(dev_pki.server.chain)  # old ones stay valid

    # half a pair (a key that does not belong to the certificate): the loaded pair signs on
    _replace(key, dev_pki.server.key)
    with caplog.at_level(logging.WARNING, logger="knooppunt.ledger"):
        third = signer.sign("knooppunt.nl/test", 3, root, datetime.now(UTC))
    assert verify(third, trust=trust) == _leaf(renewed.chain)
    assert "renewed checkpoint signing key not usable" in caplog.text
