"""The acting-for assertion in isolation: signing, verification, algorithm binding, replay."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from node_runtime.security.acting_for import (
    CLOCK_LEEWAY,
    MAX_LIFETIME,
    AssertionSigner,
    ReplayCache,
    SharedReplayGuard,
    SigningKey,
    _unb64,
    verify_assertion,
)
from node_runtime.web.problems import Problem

FACADE_OIN = "00000001999000000777"
AMSTERDAM = ("00000001999000363000", "0363")
PATH = "/api/v1/gemeenten/0363/mailbox"


def _cert(key: SigningKey, oin: str = FACADE_OIN) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "facade"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, oin),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


KEYS = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


def _sign(signer: AssertionSigner, **kwargs: object) -> str:
    args: dict[str, object] = {
        "gemeente_oin": AMSTERDAM[0],
        "gemeentecode": AMSTERDAM[1],
        "audience": "knooppunt-zorg",
        "method": "GET",
        "path": PATH,
    }
    args.update(kwargs)
    return signer.sign(**args)  # type: ignore[arg-type]


def _verify(token: str, cert: x509.Certificate, **kwargs: object) -> object:
    args: dict[str, object] = {"node_name": "knooppunt-zorg", "method": "GET", "path": PATH}
    args.update(kwargs)
    return verify_assertion(token, cert, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_round_trip_per_key_type(alg: str) -> None:
    key = KEYS[alg]()
    cert = _cert(key)
    signer = AssertionSigner(key, cert)
    assert signer.algorithm == alg
    token = _sign(signer)
    header = json.loads(_unb64(token.split(".")[0]))
    assert header["alg"] == alg and header["typ"] == "knooppunt-acting-for+jwt"
    acting = _verify(token, cert)
    assert acting.gemeente_oin == AMSTERDAM[0]  # type: ignore[attr-defined]
    assert acting.facade_oin == FACADE_OIN  # type: ignore[attr-defined]
    # DER works as well as a parsed certificate
    from cryptography.hazmat.primitives.serialization import Encoding

    _verify(_sign(signer), cert.public_bytes(Encoding.DER))


def test_claims_and_limits() -> None:
    key = KEYS["ES256"]()
    cert = _cert(key)
    signer = AssertionSigner(key, cert)
    claims = json.loads(_unb64(_sign(signer).split(".")[1]))
    assert set(claims) == {
        "iss",
        "sub",
        "gemeentecode",
        "aud",
        "iat",
        "exp",
        "jti",
        "method",
        "path",
    }
    assert 0 < claims["exp"] - claims["iat"] <= MAX_LIFETIME
    now = time.time()
    with pytest.raises(Problem) as expired:
        _verify(_sign(signer, now=now - 100, lifetime=30), cert, now=now)
    assert expired.value.extra["reason"] == "expired"
    with pytest.raises(Problem) as long_lived:
        _verify(_sign(signer, lifetime=MAX_LIFETIME + 1), cert)
    assert long_lived.value.extra["reason"] == "lifetime"


def test_key_must_match_certificate_and_carry_an_oin() -> None:
    key, other = KEYS["ES256"](), KEYS["ES256"]()
    with pytest.raises(ValueError, match="does not belong"):
        AssertionSigner(key, _cert(other))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-oin")])
    now = dt.datetime.now(dt.UTC)
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="serialNumber"):
        AssertionSigner(key, bare)


def test_same_key_other_certificate_is_refused() -> None:
    """The assertion names the exact certificate (x5t#S256), not just the key."""
    key = KEYS["ES256"]()
    first, second = _cert(key), _cert(key)
    token = _sign(AssertionSigner(key, first))
    with pytest.raises(Problem) as refused:
        _verify(token, second)
    assert refused.value.extra["reason"] == "certificate"


def test_replay_cache() -> None:
    key = KEYS["ES256"]()
    cert = _cert(key)
    signer = AssertionSigner(key, cert)
    cache = ReplayCache()
    token = _sign(signer)
    _verify(token, cert, replay=cache)
    with pytest.raises(Problem) as replayed:
        _verify(token, cert, replay=cache)
    assert replayed.value.slug == "assertion-replayed"
    _verify(_sign(signer), cert, replay=cache)  # a fresh one is fine
    small = ReplayCache(max_entries=2)
    now = time.time()
    assert small.first_use("i", "a", int(now) - 60, now)
    assert small.first_use("i", "b", int(now) + 60, now)
    assert small.first_use("i", "c", int(now) + 60, now)  # the expired entry made room
    assert not small.first_use("i", "d", int(now) + 60, now)  # full of live entries: closed


def test_the_shared_guard_records_every_use_and_purges_now_and_then() -> None:
    calls: list[tuple[str, str, int, int | None]] = []

    class Ledger:
        def first_assertion_use(
            self, issuer: str, jti: str, expires_at: int, *, purge_before: int | None = None
        ) -> bool:
            calls.append((issuer, jti, expires_at, purge_before))
            return jti != "used"

    guard = SharedReplayGuard(Ledger(), purge_every=60)
    assert guard.first_use("i", "a", 1060, 1000.0)
    assert not guard.first_use("i", "used", 1060, 1010.0)
    assert guard.first_use("i", "b", 1130, 1070.0)
    purges = [c[3] for c in calls]
    # The first call and the first one 60 s later purge ids expired beyond the leeway.
    assert purges == [1000 - CLOCK_LEEWAY - 1, None, 1070 - CLOCK_LEEWAY - 1]


def test_nodes_on_a_shared_database_keep_used_ids_there() -> None:
    from types import SimpleNamespace

    from node_runtime.api import deps

    for dialect, kind in (("postgresql", SharedReplayGuard), ("sqlite", ReplayCache)):
        request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace()))
        node = SimpleNamespace(store=SimpleNamespace(dialect=dialect))
        guard = deps._replay_guard(request, node)  # type: ignore[arg-type]
        assert isinstance(guard, kind)
        assert deps._replay_guard(request, node) is guard  # type: ignore[arg-type]
