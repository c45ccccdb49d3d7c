"""Pseudonymised subject references: a keyed hash of the BSN, never the BSN itself."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the pseudonymisation key must be at least 32 bytes")
        self._key = key

    # hmac.digest: the one-shot HMAC (computed in C), the same value as hmac.new(...).digest()

    def subject_ref(self, bsn: str) -> str:
        return hmac.digest(self._key, b"bsn:" + bsn.strip().encode(), "sha256").hex()

    def order_ref(self, value: str) -> str:
        return hmac.digest(self._key, b"order:" + value.strip().encode(), "sha256").hex()[:32]


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, or create one (0600) for local mode."""
    if path.exists():
        key = path.read_bytes().strip()
        return bytes.fromhex(key.decode()) if len(key) == 64 else key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.hex().encode())
    return key
