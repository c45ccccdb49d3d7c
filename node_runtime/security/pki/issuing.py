"""Issuing, renewing and revoking end-entity certificates.

Two profiles, after PKIoverheid "private services" certificates as used on Digikoppeling:

* **server**: subject ``C=NL[, O=…], CN=<first DNS name>[, serialNumber=<OIN>]``, SAN with DNS
  names and IP addresses, EKU ``serverAuth``.
* **organisation (client)**: subject ``C=NL, O=<organisation>, CN=<common name>,
  serialNumber=<OIN or other organisation number>``, EKU ``clientAuth``. The subject
  ``serialNumber`` is what identifies the organisation (Digikoppeling: the OIN).

Everything here is pure: keys and certificates in, keys and certificates out. Persistence lives in
:mod:`node_runtime.security.pki.store`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from node_runtime.security.pki.authority import (
    CLOCK_SKEW,
    DEFAULT_KEY_ALGORITHM,
    CertificateAuthority,
    KeyAlgorithm,
    PkiError,
    PrivateKey,
    as_public_key,
    build_name,
    generate_private_key,
    key_algorithm_of,
    signature_hash,
    utcnow,
    validity_window,
)

CertificateKind: TypeAlias = Literal["server", "client"]
IPAddressLike: TypeAlias = str | ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_LEAF_VALIDITY = dt.timedelta(days=365)
DEFAULT_CRL_VALIDITY = dt.timedelta(days=7)

OIN_RE = re.compile(r"^[0-9]{20}$")
# X.520 serialNumber is a PrintableString of at most 64 characters.
_PRINTABLE_RE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]{1,64}$")
_DNS_RE = re.compile(
    r"^(\*\.)?(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

#: CRL reason names accepted by :func:`parse_revocation_reason` (RFC 5280 §5.3.1).
REVOCATION_REASONS: tuple[str, ...] = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


@dataclass(frozen=True)
class IssuedCertificate:
    """An end-entity certificate, its key and the chain to present (leaf first, no root)."""

    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def kind(self) -> CertificateKind:
        return certificate_kind(self.certificate)


@dataclass(frozen=True)
class RevokedEntry:
    serial_number: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags | None = None


def validate_oin(oin: str) -> str:
    """An OIN is exactly 20 digits."""
    if not OIN_RE.fullmatch(oin):
        raise PkiError(f"OIN must be exactly 20 digits, got {oin!r}")
    return oin


def validate_serial_number_attribute(value: str) -> str:
    if not _PRINTABLE_RE.fullmatch(value):
        raise PkiError(
            "subject serialNumber must be 1 to 64 PrintableString characters "
            f"(letters, digits, space and '()+,-./:=?), got {value!r}"
        )
    return value


def parse_revocation_reason(reason: str | None) -> x509.ReasonFlags | None:
    """Map a reason name to :class:`x509.ReasonFlags`; ``unspecified`` means no reason code."""
    if reason is None or reason == "unspecified":
        return None
    if reason not in REVOCATION_REASONS:
        raise PkiError(f"unknown revocation reason {reason!r}; choose one of {REVOCATION_REASONS}")
    return x509.ReasonFlags(reason)


def _key_usage(key: PrivateKey) -> x509.KeyUsage:
    # ECDHE suites only: the leaf key only signs the handshake. RSA keys also get
    # keyEncipherment, as PKIoverheid RSA certificates do, for interoperability.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    issuer: CertificateAuthority,
    *,
    subject: x509.Name,
    key: PrivateKey,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    validity: dt.timedelta,
) -> x509.CertificateBuilder:
    start, end = validity_window(not_before, not_after, validity)
    # A certificate never outlives its issuer.
    end = min(end, issuer.certificate.not_valid_after_utc)
    if end <= start:
        raise PkiError("the issuing CA expires before the requested validity starts")
    public_key = as_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                as_public_key(issuer.key.public_key())
            ),
            critical=False,
        )
    )


def _issue(
    issuer: CertificateAuthority, builder: x509.CertificateBuilder, key: PrivateKey
) -> IssuedCertificate:
    certificate = builder.sign(issuer.key, signature_hash())
    return IssuedCertificate(certificate, key, (certificate, issuer.certificate))


def issue_server_certificate(
    issuer: CertificateAuthority,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[IPAddressLike] = (),
    common_name: str | None = None,
    organisation: str | None = None,
    serial_number: str | None = None,
    key: PrivateKey | None = None,
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_LEAF_VALIDITY,
) -> IssuedCertificate:
    """A TLS server certificate for ``dns_names`` and ``ip_addresses`` (EKU serverAuth)."""
    names = [_validate_dns(n) for n in dns_names]
    ips = [ipaddress.ip_address(ip) if isinstance(ip, str) else ip for ip in ip_addresses]
    if not names and not ips:
        raise PkiError("a server certificate needs at least one DNS name or IP address")
    if serial_number is not None:
        validate_serial_number_attribute(serial_number)
    key = key if key is not None else generate_private_key(key_algorithm)
    subject = build_name(
        common_name=common_name or (names[0] if names else str(ips[0])),
        organisation=organisation,
        serial_number=serial_number,
    )
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    san += [x509.IPAddress(ip) for ip in ips]
    builder = (
        _leaf_builder(
            issuer,
            subject=subject,
            key=key,
            not_before=not_before,
            not_after=not_after,
            validity=validity,
        )
        .add_extension(_key_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
    )
    return _issue(issuer, builder, key)


def issue_client_certificate(
    issuer: CertificateAuthority,
    *,
    organisation: str,
    serial_number: str,
    common_name: str,
    key: PrivateKey | None = None,
    key_algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_LEAF_VALIDITY,
) -> IssuedCertificate:
    """An organisation certificate (EKU clientAuth); ``serial_number`` is the OIN."""
    validate_serial_number_attribute(serial_number)
    key = key if key is not None else generate_private_key(key_algorithm)
    subject = build_name(
        common_name=common_name, organisation=organisation, serial_number=serial_number
    )
    builder = (
        _leaf_builder(
            issuer,
            subject=subject,
            key=key,
            not_before=not_before,
            not_after=not_after,
            validity=validity,
        )
        .add_extension(_key_usage(key), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    return _issue(issuer, builder, key)


def renew_certificate(
    issuer: CertificateAuthority,
    certificate: x509.Certificate,
    key: PrivateKey,
    *,
    new_key: bool = False,
    key_algorithm: KeyAlgorithm | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    validity: dt.timedelta | None = None,
) -> IssuedCertificate:
    """Re-issue ``certificate``: same subject, SAN and key usages; new serial and validity.

    The new validity has the length of the old one unless ``validity`` or explicit bounds are
    given. With ``new_key`` (or a ``key_algorithm``) a fresh key is generated (re-keying).
    """
    if certificate.issuer != issuer.certificate.subject:
        raise PkiError("certificate was not issued by this CA")
    if key_algorithm is not None or new_key:
        key = generate_private_key(key_algorithm or key_algorithm_of(key))
    elif as_public_key(key.public_key()) != certificate.public_key():
        raise PkiError("private key does not belong to the certificate")
    if validity is None:
        # Same length as before; the old window already contains the clock-skew back-dating.
        old = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        validity = max(old - CLOCK_SKEW, dt.timedelta(minutes=1))
    builder = _leaf_builder(
        issuer,
        subject=certificate.subject,
        key=key,
        not_before=not_before,
        not_after=not_after,
        validity=validity,
    )
    skip = {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.KEY_USAGE,
    }
    builder = builder.add_extension(_key_usage(key), critical=True)
    for extension in certificate.extensions:
        if extension.oid not in skip:
            builder = builder.add_extension(extension.value, critical=extension.critical)
    return _issue(issuer, builder, key)


def build_crl(
    issuer: CertificateAuthority,
    revoked: Iterable[RevokedEntry],
    *,
    crl_number: int,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    validity: dt.timedelta = DEFAULT_CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``issuer`` listing ``revoked`` (with CRL number and AKI, RFC 5280)."""
    last = this_update or utcnow() - CLOCK_SKEW
    following = next_update or last + CLOCK_SKEW + validity
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(last)
        .next_update(following)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                as_public_key(issuer.key.public_key())
            ),
            critical=False,
        )
    )
    for entry in revoked:
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial_number)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked_builder = revoked_builder.add_extension(
                x509.CRLReason(entry.reason), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_builder.build())
    return builder.sign(issuer.key, signature_hash())


def certificate_kind(certificate: x509.Certificate) -> CertificateKind:
    """``server`` or ``client`` from the extended key usage."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise PkiError("certificate has no extended key usage") from exc
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return "server"
    if ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        return "client"
    raise PkiError("certificate is neither a TLS server nor a TLS client certificate")


def subject_alternative_names(
    certificate: x509.Certificate,
) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses as strings) from the SAN extension."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(san.get_values_for_type(x509.DNSName)),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


def subject_serial_number(certificate: x509.Certificate) -> str | None:
    attributes = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(attributes[0].value) if attributes else None


def _validate_dns(name: str) -> str:
    if not _DNS_RE.fullmatch(name):
        raise PkiError(f"invalid DNS name {name!r}")
    return name.lower()
