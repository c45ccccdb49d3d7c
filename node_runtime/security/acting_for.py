"""The façade's signed "acting for" assertion: how a node knows which gemeente a façade call is for.

The municipal cloud façade authenticates a gemeente by its client certificate and calls the
nodes with *its own* certificate. It tells a node for which gemeente it acts in the header
``Knooppunt-Acting-For``: a compact JWS (RFC 7515) signed with the private key of the very
certificate the façade presents in the mutual-TLS handshake. A node accepts it only when

* the TLS peer (or, in trusted-proxy mode, the verified forwarded certificate) is a façade: its
  subject serialNumber (OIN) is listed in ``Knooppunt.spec.security.facadeOins``;
* the JWS header names that exact certificate (``x5t#S256``), the algorithm fits its key type
  (ES256/ES384/ES512 for EC keys, PS256 for RSA, EdDSA for Ed25519; never ``none``, never an
  HMAC) and the signature verifies with its public key;
* ``iss`` is the façade's OIN, ``aud`` the node's name, ``iat``/``exp`` make it current and at
  most 60 s long, ``method``/``path`` equal the request's (it cannot be replayed to another
  endpoint), and ``jti`` was not seen before (it cannot be replayed to the same endpoint);
* ``sub`` (the gemeente's OIN) and ``gemeentecode`` name one gemeente served by the node.

A bare header is therefore worthless: without the façade's private key no one can mint one, and
a minted one is useless from any other TLS connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from node_runtime.web.problems import Problem

HEADER = "Knooppunt-Acting-For"
TYP = "knooppunt-acting-for+jwt"
MAX_LIFETIME = 60  # seconds between iat and exp
CLOCK_LEEWAY = 5  # seconds of clock difference tolerated between façade and node
DEFAULT_LIFETIME = 30
MAX_HEADER_LENGTH = 8192

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_OIN = re.compile(r"^[0-9]{20}$")
_GEMEENTECODE = re.compile(r"^[0-9]{4}$")
_JTI = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_EC_ALGORITHMS: dict[str, tuple[str, hashes.HashAlgorithm, int]] = {
    "secp256r1": ("ES256", hashes.SHA256(), 32),
    "secp384r1": ("ES384", hashes.SHA384(), 48),
    "secp521r1": ("ES512", hashes.SHA512(), 66),
}


@dataclass(frozen=True)
class ActingFor:
    """A verified assertion: the façade ``facade_oin`` acts for this gemeente."""

    gemeente_oin: str
    gemeentecode: str
    facade_oin: str
    audience: str
    jti: str
    issued_at: int
    expires_at: int


# --------------------------------------------------------------------------- encoding helpers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def thumbprint(certificate: x509.Certificate | bytes) -> str:
    """``x5t#S256``: base64url SHA-256 of the DER certificate."""
    der = certificate if isinstance(certificate, bytes) else certificate.public_bytes(Encoding.DER)
    return _b64(hashlib.sha256(der).digest())


def _certificate(value: x509.Certificate | bytes) -> x509.Certificate:
    return value if isinstance(value, x509.Certificate) else x509.load_der_x509_certificate(value)


def _serial_number(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = values[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _algorithm(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        entry = _EC_ALGORITHMS.get(public_key.curve.name)
        if entry is None:
            raise ValueError(f"unsupported curve {public_key.curve.name}")
        return entry[0]
    if isinstance(public_key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


def _spki(public_key: Any) -> bytes:
    data: bytes = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return data


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


# --------------------------------------------------------------------------- signing (façade)


class AssertionSigner:
    """Mints assertions with the façade's certificate key (the one it uses for mutual TLS)."""

    def __init__(self, key: SigningKey, certificate: x509.Certificate) -> None:
        if _spki(key.public_key()) != _spki(certificate.public_key()):
            raise ValueError("the signing key does not belong to the certificate")
        issuer = _serial_number(certificate)
        if issuer is None:
            raise ValueError("the façade certificate has no subject serialNumber (OIN)")
        self.key = key
        self.certificate = certificate
        self.issuer = issuer
        self.algorithm = _algorithm(key)
        self._x5t = thumbprint(certificate)

    def sign(
        self,
        *,
        gemeente_oin: str,
        gemeentecode: str,
        audience: str,
        method: str,
        path: str,
        now: float | None = None,
        lifetime: int = DEFAULT_LIFETIME,
        jti: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A compact JWS for one request (``method`` + ``path``) to node ``audience``."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": gemeente_oin,
            "gemeentecode": gemeentecode,
            "aud": audience,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": jti or _b64(secrets.token_bytes(18)),
            "method": method.upper(),
            "path": path,
        }
        if extra:
            claims.update(extra)
        header = {"alg": self.algorithm, "typ": TYP, "x5t#S256": self._x5t}
        signing_input = (_b64(_json(header)) + "." + _b64(_json(claims))).encode("ascii")
        return signing_input.decode("ascii") + "." + _b64(self._signature(signing_input))

    def _signature(self, data: bytes) -> bytes:
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            _name, digest, size = _EC_ALGORITHMS[key.curve.name]
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, _pss(), hashes.SHA256())
        return key.sign(data)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


# --------------------------------------------------------------------------- replay protection


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, expires_at: int, now: float) -> bool:
        """Record (issuer, jti); False when it was used before (within its lifetime)."""
        ...


class ReplayCache:
    """Remembers (issuer, jti) in this process until the assertion expires; a second use is
    refused. Enough for a single replica (SQLite); replicas sharing a database use
    :class:`SharedReplayGuard`, so that an assertion is accepted once per node.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def first_use(self, issuer: str, jti: str, expires_at: int, now: float) -> bool:
        with self._lock:
            if len(self._seen) >= self._max:
                cutoff = now - CLOCK_LEEWAY
                self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}
                if len(self._seen) >= self._max:
                    return False  # fail closed under a flood
            key = (issuer, jti)
            if key in self._seen:
                return False
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)


class AssertionLedger(Protocol):
    def first_assertion_use(
        self, issuer: str, jti: str, expires_at: int, *, purge_before: int | None = None
    ) -> bool: ...


class SharedReplayGuard:
    """Used assertion ids in the node's database, shared by all its replicas; ids whose
    assertion can no longer be accepted anyway are purged now and then."""

    def __init__(self, ledger: AssertionLedger, *, purge_every: float = 60.0) -> None:
        self._ledger = ledger
        self._purge_every = purge_every
        self._last_purge = 0.0
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: int, now: float) -> bool:
        purge_before = None
        with self._lock:
            if now - self._last_purge >= self._purge_every:
                self._last_purge = now
                purge_before = int(now) - CLOCK_LEEWAY - 1  # expired beyond any leeway
        return self._ledger.first_assertion_use(issuer, jti, expires_at, purge_before=purge_before)


# --------------------------------------------------------------------------- verification (node)


def _invalid(reason: str, detail: str) -> Problem:
    return Problem(
        401,
        "assertion-invalid",
        "Acting-for assertion rejected",
        f"The {HEADER} assertion is not acceptable: {detail}.",
        extra={"reason": reason},
    )


def _verify_signature(public_key: object, alg: str, data: bytes, signature: bytes) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        _name, digest, size = _EC_ALGORITHMS[public_key.curve.name]
        if len(signature) != 2 * size:
            raise InvalidSignature
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
    elif isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _pss(), hashes.SHA256())
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, data)
    else:  # pragma: no cover - _algorithm refused it already
        raise InvalidSignature


def _int_claim(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid("claims", f"claim {name!r} must be an integer (seconds since the epoch)")
    return value


def _str_claim(claims: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _invalid("claims", f"claim {name!r} is missing or malformed")
    return value


def verify_assertion(
    header_value: str,
    presenting_cert: x509.Certificate | bytes,
    *,
    node_name: str,
    method: str,
    path: str,
    now: float | None = None,
    replay: ReplayGuard | None = None,
) -> ActingFor:
    """Verify an assertion against the certificate presented on this connection.

    ``presenting_cert``: the verified client certificate (DER or parsed) of the connection —
    the façade's. Raises :class:`Problem` 401 (``assertion-invalid``/``assertion-replayed``).
    The caller checks separately that the presenting certificate is a configured façade.
    """
    moment = time.time() if now is None else now
    if len(header_value) > MAX_HEADER_LENGTH:
        raise _invalid("format", "it is too long")
    parts = header_value.strip().split(".")
    if len(parts) != 3:
        raise _invalid("format", "it is not a compact JWS (header.payload.signature)")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError as exc:
        raise _invalid("format", "it is not valid base64url JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _invalid("format", "header and payload must be JSON objects")
    certificate = _certificate(presenting_cert)
    public_key = certificate.public_key()
    try:
        expected_alg = _algorithm(public_key)
    except ValueError as exc:
        raise _invalid("algorithm", str(exc)) from exc
    if header.get("typ") != TYP:
        raise _invalid("format", f"typ must be {TYP}")
    if header.get("alg") != expected_alg:
        raise _invalid("algorithm", f"alg must be {expected_alg} for the presented certificate")
    if set(header) - {"alg", "typ", "x5t#S256", "kid"}:
        raise _invalid("format", "unexpected JWS header parameters (crit, jku, x5u, ...)")
    if header.get("x5t#S256") != thumbprint(certificate):
        raise _invalid(
            "certificate", "it was not signed for the certificate presented on this connection"
        )
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    try:
        _verify_signature(public_key, expected_alg, signing_input, signature)
    except InvalidSignature as exc:
        raise _invalid(
            "signature", "the signature does not verify with the presented certificate's key"
        ) from exc
    issuer = _str_claim(claims, "iss")
    if issuer != _serial_number(certificate):
        raise _invalid("issuer", "iss is not the presented certificate's OIN")
    if claims.get("aud") != node_name:
        raise _invalid("audience", f"it is not addressed to this node ({node_name})")
    issued_at = _int_claim(claims, "iat")
    expires_at = _int_claim(claims, "exp")
    if not 0 < expires_at - issued_at <= MAX_LIFETIME:
        raise _invalid("lifetime", f"it may be valid for at most {MAX_LIFETIME} seconds")
    if issued_at > moment + CLOCK_LEEWAY:
        raise _invalid("not-yet-valid", "it was issued in the future")
    if moment >= expires_at + CLOCK_LEEWAY:
        raise _invalid("expired", "it has expired")
    if claims.get("method") != method.upper() or claims.get("path") != path:
        raise _invalid("request", "it was issued for another request (method or path)")
    gemeente_oin = _str_claim(claims, "sub", _OIN)
    gemeentecode = _str_claim(claims, "gemeentecode", _GEMEENTECODE)
    jti = _str_claim(claims, "jti", _JTI)
    if replay is not None and not replay.first_use(issuer, jti, expires_at, moment):
        raise Problem(
            401,
            "assertion-replayed",
            "Acting-for assertion replayed",
            f"This {HEADER} assertion (jti) was used before; the façade signs a new "
            "one for every request.",
        )
    return ActingFor(
        gemeente_oin=gemeente_oin,
        gemeentecode=gemeentecode,
        facade_oin=issuer,
        audience=node_name,
        jti=jti,
        issued_at=issued_at,
        expires_at=expires_at,
    )
