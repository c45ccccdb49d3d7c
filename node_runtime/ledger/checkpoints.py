"""Signed tree heads (checkpoints) of the processing log, signed with the node's key.

The signed text follows the C2SP tlog-checkpoint body: the origin (the node), the tree size,
the base64 root hash, one extension line with the issue time::

    knooppunt.nl/knooppunt-zorg
    1207
    2fxkVvlx3Vtr0WcD2JYbTMTQ6jMeO6b1J+sKLIN6rLM=
    issued 2026-12-02T03:00:00.000000Z

The signature is ECDSA P-256 with SHA-256 or RSA PKCS#1 v1.5 with SHA-256, by the key of the
node's certificate from its PKI (the TLS server certificate by default). Each checkpoint
carries that certificate chain, so a gemeente verifies it with nothing but the CA it already
trusts for the node; an old checkpoint stays verifiable after the certificate is renewed.
"""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from node_runtime.ledger import leaves, merkle

log = logging.getLogger("knooppunt.ledger")

ECDSA = "ecdsa-sha256"
RSA = "rsa-pkcs1-sha256"


class CheckpointError(ValueError):
    """A checkpoint whose signature, certificate or contents do not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    issued_at: datetime
    algorithm: str
    signature: bytes
    certificate: str  # PEM chain, signer first

    def body(self) -> bytes:
        return note_body(self.origin, self.tree_size, self.root_hash, self.issued_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "treeSize": self.tree_size,
            "rootHash": base64.b64encode(self.root_hash).decode(),
            "issuedAt": leaves.instant(self.issued_at),
            "algorithm": self.algorithm,
            "signature": base64.b64encode(self.signature).decode(),
            "note": self.body().decode(),
            "certificate": self.certificate,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            return cls(
                origin=str(data["origin"]),
                tree_size=int(data["treeSize"]),
                root_hash=base64.b64decode(data["rootHash"], validate=True),
                issued_at=datetime.fromisoformat(str(data["issuedAt"])),
                algorithm=str(data["algorithm"]),
                signature=base64.b64decode(data["signature"], validate=True),
                certificate=str(data["certificate"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from exc


def origin_for(node: str) -> str:
    return f"knooppunt.nl/{node}"


def note_body(origin: str, tree_size: int, root_hash: bytes, issued_at: datetime) -> bytes:
    root = base64.b64encode(root_hash).decode()
    return f"{origin}\n{tree_size}\n{root}\nissued {leaves.instant(issued_at)}\n".encode()


class Signer:
    """The node's signing key and certificate chain (PEM files from the node's PKI).

    The files are read again before each signature: on a cluster the operator renews the
    node's certificate in its mounted TLS Secret (and the kubelet swaps key and chain
    together), so a long-running pod signs with the renewed key instead of one whose
    certificate expires. A pair that does not load keeps the previous one (logged).
    """

    def __init__(self, key_path: Path, chain_path: Path) -> None:
        self.key_path = key_path
        self.chain_path = chain_path
        self._lock = threading.Lock()
        self._load(key_path.read_bytes(), chain_path.read_text())

    def _load(self, key_pem: bytes, chain_pem: str) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CheckpointError(f"unsupported signing key type {type(key).__name__}")
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
        raw = serialization.PublicFormat.SubjectPublicKeyInfo
        if chain[0].public_key().public_bytes(
            serialization.Encoding.DER, raw
        ) != key.public_key().public_bytes(serialization.Encoding.DER, raw):
            raise CheckpointError("the signing key does not belong to the first certificate")
        self.key = key
        self.chain_pem = chain_pem
        self.algorithm = ECDSA if isinstance(key, ec.EllipticCurvePrivateKey) else RSA
        self._source = (key_pem, chain_pem)

    def refresh(self) -> bool:
        """Take up a renewed key and certificate; True when they changed and loaded."""
        try:
            source = (self.key_path.read_bytes(), self.chain_path.read_text())
        except OSError as exc:
            log.warning(
                "checkpoint signing key unreadable; keeping the loaded one",
                extra={"error": str(exc)},
            )
            return False
        if source == self._source:
            return False
        try:
            self._load(*source)
        except (ValueError, CheckpointError) as exc:
            log.warning(
                "renewed checkpoint signing key not usable; keeping the loaded one",
                extra={"error": str(exc)},
            )
            return False
        log.info("checkpoint signing key renewed")
        return True

    def sign(
        self, origin: str, tree_size: int, root_hash: bytes, issued_at: datetime
    ) -> Checkpoint:
        body = note_body(origin, tree_size, root_hash, issued_at)
        with self._lock:
            self.refresh()
            key, algorithm, chain_pem = self.key, self.algorithm, self.chain_pem
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
        else:
            signature = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return Checkpoint(origin, tree_size, root_hash, issued_at, algorithm, signature, chain_pem)


def verify(
    checkpoint: Checkpoint,
    *,
    trust: list[x509.Certificate] | None = None,
    at: datetime | None = None,
) -> x509.Certificate:
    """Check the signature against the checkpoint's certificate; with `trust`, also that the
    certificate chains to one of those CAs and was valid when the checkpoint was issued.
    Returns the signer's certificate; raises CheckpointError."""
    try:
        chain = x509.load_pem_x509_certificates(checkpoint.certificate.encode())
    except ValueError as exc:
        raise CheckpointError(f"unreadable certificate: {exc}") from exc
    signer = chain[0]
    key = signer.public_key()
    body = checkpoint.body()
    try:
        if checkpoint.algorithm == ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(checkpoint.signature, body, ec.ECDSA(hashes.SHA256()))
        elif checkpoint.algorithm == RSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(checkpoint.signature, body, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise CheckpointError(f"algorithm {checkpoint.algorithm} does not fit the key")
    except InvalidSignature as exc:
        raise CheckpointError(
            f"bad signature on the checkpoint of size {checkpoint.tree_size}"
        ) from exc
    if len(checkpoint.root_hash) != merkle.HASH_SIZE:
        raise CheckpointError("a root hash has 32 bytes")
    if trust is not None:
        _chain_to(chain, trust, at or checkpoint.issued_at)
    return signer


def _chain_to(chain: list[x509.Certificate], trust: list[x509.Certificate], at: datetime) -> None:
    for cert in chain:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise CheckpointError(
                f"certificate {cert.subject.rfc4514_string()} was not valid at {leaves.instant(at)}"
            )
    anchors = {a.fingerprint(hashes.SHA256()): a for a in trust}
    for i, cert in enumerate(chain):
        if cert.fingerprint(hashes.SHA256()) in anchors:
            return
        for anchor in anchors.values():
            if _issued_by(cert, anchor):
                return
        if i + 1 < len(chain) and not _issued_by(cert, chain[i + 1]):
            raise CheckpointError("the checkpoint's certificate chain is broken")
    raise CheckpointError("the checkpoint's certificate does not chain to a trusted CA")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
