"""Certificate authorities of the development PKI.

The hierarchy mirrors PKIoverheid's private (non-browser) tree, which is what Digikoppeling
uses between government organisations::

    Staat der Nederlanden Private Root CA - G1          Knooppunt Dev Root CA - G1
      └─ Staat der Nederlanden Private Services CA - G1    └─ Knooppunt Dev Private Services CA - G1
           └─ (TSP issuing CA) └─ server / organisation       └─ server / organisation certificates

We collapse PKIoverheid's three levels below the root into one issuing CA: the root has
``pathLenConstraint`` 1, the intermediate 0 (it may only issue end-entity certificates).

Key algorithm
-------------
The default is **ECDSA on P-256** with SHA-256. The NCSC TLS guidelines (2021) rate ECDSA over
P-256 "good", like RSA ≥ 3072; P-256 keys are generated in microseconds instead of the seconds
an RSA-3072 key takes (the demo and the test-suite mint dozens), handshakes are cheaper, and the
certificates are small. Real PKIoverheid certificates are mostly RSA, so ``rsa-3072`` is
supported everywhere as well and the TLS layer accepts both ECDHE-ECDSA and ECDHE-RSA suites.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

KeyAlgorithm: TypeAlias = Literal["ec-p256", "rsa-3072"]
KEY_ALGORITHMS: tuple[KeyAlgorithm, ...] = get_args(KeyAlgorithm)
DEFAULT_KEY_ALGORITHM: KeyAlgorithm = "ec-p256"

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

DEV_PKI_ORGANISATION = "Knooppunt Ontwikkel-PKI"
ROOT_CA_NAME = "Knooppunt Dev Root CA - G1"
INTERMEDIATE_CA_NAME = "Knooppunt Dev Private Services CA - G1"

ROOT_VALIDITY = dt.timedelta(days=20 * 365)
INTERMEDIATE_VALIDITY = dt.timedelta(days=10 * 365)
#: Back-dating of ``notBefore`` so that peers with a slightly slow clock accept fresh certificates.
CLOCK_SKEW = dt.timedelta(minutes=5)


class PkiError(Exception):
    """A PKI operation could not be carried out (bad input, missing CA, unknown name, …)."""


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate together with its private key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def common_name(self) -> str:
        return common_name_of(self.certificate.subject) or self.certificate.subject.rfc4514_string()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def generate_private_key(algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM) -> PrivateKey:
    """A fresh private key of the given algorithm."""
    if algorithm == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise PkiError(f"unsupported key algorithm {algorithm!r}; choose one of {KEY_ALGORITHMS}")


def key_algorithm_of(key: PrivateKey | PublicKey) -> KeyAlgorithm:
    """The :data:`KeyAlgorithm` of an existing key (used when renewing with a new key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ec-p256"
        raise PkiError(f"unsupported curve {key.curve.name}")
    if key.key_size == 3072:
        return "rsa-3072"
    raise PkiError(f"unsupported RSA key size {key.key_size}")


def as_private_key(key: object) -> PrivateKey:
    """Narrow a loaded key to the key types this PKI issues."""
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise PkiError(f"unsupported private key type {type(key).__name__}")


def as_public_key(key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return key
    raise PkiError(f"unsupported public key type {type(key).__name__}")


def signature_hash() -> hashes.SHA256:
    """SHA-256 for both key types (PKIoverheid and NCSC: SHA-2 family)."""
    return hashes.SHA256()


def common_name_of(name: x509.Name) -> str | None:
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else None


def build_name(
    *,
    common_name: str,
    organisation: str | None = None,
    serial_number: str | None = None,
    country: str = "NL",
) -> x509.Name:
    """A subject in PKIoverheid order: C, O, CN, serialNumber."""
    if not common_name or len(common_name) > 64:
        raise PkiError("common name must be 1 to 64 characters")
    if organisation is not None and not 0 < len(organisation) <= 64:
        raise PkiError("organisation must be 1 to 64 characters")
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if serial_number is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attributes)


def validity_window(
    not_before: dt.datetime | None, not_after: dt.datetime | None, default: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    """Resolve explicit or default validity; naive datetimes are taken as UTC."""
    start = _aware(not_before) if not_before is not None else utcnow() - CLOCK_SKEW
    end = _aware(not_after) if not_after is not None else start + CLOCK_SKEW + default
    if end <= start:
        raise PkiError(f"not_after ({end.isoformat()}) must be later than not_before")
    return start, end


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _ca_extensions(
    builder: x509.CertificateBuilder,
    *,
    public_key: PublicKey,
    path_length: int,
    issuer_public_key: PublicKey,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    )


def create_root_ca(
    *,
    common_name: str = ROOT_CA_NAME,
    organisation: str = DEV_PKI_ORGANISATION,
    key: PrivateKey | None = None,
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertificateAuthority:
    """A self-signed root CA (pathLenConstraint 1)."""
    key = key if key is not None else generate_private_key(key_algorithm)
    start, end = validity_window(not_before, not_after, ROOT_VALIDITY)
    name = build_name(common_name=common_name, organisation=organisation)
    public_key = as_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    builder = _ca_extensions(
        builder, public_key=public_key, path_length=1, issuer_public_key=public_key
    )
    return CertificateAuthority(builder.sign(key, signature_hash()), key)


def create_intermediate_ca(
    root: CertificateAuthority,
    *,
    common_name: str = INTERMEDIATE_CA_NAME,
    organisation: str = DEV_PKI_ORGANISATION,
    key: PrivateKey | None = None,
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertificateAuthority:
    """The issuing CA ('private services'), signed by ``root`` (pathLenConstraint 0)."""
    key = key if key is not None else generate_private_key(key_algorithm)
    start, end = validity_window(not_before, not_after, INTERMEDIATE_VALIDITY)
    if end > root.certificate.not_valid_after_utc:
        end = root.certificate.not_valid_after_utc
    public_key = as_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(build_name(common_name=common_name, organisation=organisation))
        .issuer_name(root.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    builder = _ca_extensions(
        builder,
        public_key=public_key,
        path_length=0,
        issuer_public_key=as_public_key(root.key.public_key()),
    )
    return CertificateAuthority(builder.sign(root.key, signature_hash()), key)


def certificate_chain_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)
