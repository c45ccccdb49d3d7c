"""Organisation identity from a verified X.509 certificate.

On Digikoppeling an organisation *is* its certificate: gemeenten are identified by the OIN in the
subject ``serialNumber``; other parties by an organisation number there or by the certificate
fingerprint, mapped in configuration. This module turns a certificate into a
:class:`CertificateIdentity` and, for the trusted-proxy mode (a TLS-terminating proxy forwards
the client certificate in a header), verifies such a certificate itself with :class:`ChainVerifier`
/ :func:`verify_chain`: chain to the trust bundle, validity period, extended key usage
``clientAuth`` and revocation against the CRL(s) — the same checks the TLS handshake makes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

if TYPE_CHECKING:
    from node_runtime.security.tls.peers import IssuerScope

StrPath: TypeAlias = str | os.PathLike[str]
CertificateInput: TypeAlias = bytes | str | x509.Certificate | Sequence[x509.Certificate]
RejectionReason: TypeAlias = Literal[
    "malformed",
    "expired",
    "not_yet_valid",
    "untrusted_issuer",
    "wrong_usage",
    "revoked",
    "crl_unavailable",
    "crl_expired",
]

_OIN_RE = re.compile(r"^[0-9]{20}$")
#: Short names for ``rfc4514_string`` that cryptography does not know by itself.
ATTRIBUTE_NAMES = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
}


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a (verified) certificate speaks for.

    ``serial_number`` is the *subject serialNumber attribute* — the OIN or organisation number —
    not the certificate's serial; that one is ``certificate_serial`` (upper-case hex).
    """

    serial_number: str | None
    common_name: str | None
    organisation: str | None
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    subject: str
    certificate_serial: str
    organization_identifier: str | None = None
    country: str | None = None
    issuer_scope: IssuerScope | None = None
    """Whom the issuing CA may speak for (set by the server from its issuer policy; ``None``
    where no policy applies)."""

    @property
    def oin(self) -> str | None:
        """The OIN when the subject serialNumber is one (exactly 20 digits)."""
        if self.serial_number is not None and _OIN_RE.fullmatch(self.serial_number):
            return self.serial_number
        return None


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return None
    value = values[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def identity_from_certificate(certificate: x509.Certificate) -> CertificateIdentity:
    subject = certificate.subject
    return CertificateIdentity(
        serial_number=_attribute(subject, NameOID.SERIAL_NUMBER),
        common_name=_attribute(subject, NameOID.COMMON_NAME),
        organisation=_attribute(subject, NameOID.ORGANIZATION_NAME),
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issuer=certificate.issuer.rfc4514_string(ATTRIBUTE_NAMES),
        subject=subject.rfc4514_string(ATTRIBUTE_NAMES),
        certificate_serial=f"{certificate.serial_number:X}",
        organization_identifier=_attribute(subject, NameOID.ORGANIZATION_IDENTIFIER),
        country=_attribute(subject, NameOID.COUNTRY_NAME),
    )


def identity_from_der(der: bytes) -> CertificateIdentity:
    """Identity of a DER certificate, e.g. ``ssl_object.getpeercert(binary_form=True)``.

    This does *not* verify anything: use it for certificates the TLS handshake already
    verified; forwarded certificates go through :func:`verify_chain`.
    """
    return identity_from_certificate(x509.load_der_x509_certificate(der))


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Certificates from DER, PEM (one or more), URL-escaped PEM (nginx
    ``$ssl_client_escaped_cert``) or bare base64 DER (as some proxies forward them).

    Raises ``ValueError`` when nothing parses.
    """
    if isinstance(data, bytes):
        if data[:1] == b"\x30":
            return [x509.load_der_x509_certificate(data)]
        text = data.decode("ascii", "strict")
    else:
        text = data
    text = text.strip().strip('"')
    if "BEGIN" in text and re.search(r"%[0-9A-Fa-f]{2}", text):
        text = urllib.parse.unquote(text)  # URL-escaped PEM
    if "-----BEGIN" in text:
        # Some proxies fold the PEM onto one line with spaces or tabs instead of newlines.
        text = re.sub(
            r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----",
            lambda m: (
                "-----BEGIN CERTIFICATE-----\n"
                + re.sub(r"\s+", "\n", m.group(1).strip())
                + "\n-----END CERTIFICATE-----"
            ),
            text,
            flags=re.DOTALL,
        )
        certificates = x509.load_pem_x509_certificates(text.encode("ascii"))
        if not certificates:
            raise ValueError("no certificate in PEM input")
        return certificates
    try:
        der = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except binascii.Error as exc:
        raise ValueError("input is neither PEM, DER nor base64 DER") from exc
    return [x509.load_der_x509_certificate(der)]


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN" not in data:
        return [x509.load_der_x509_crl(data)]
    blocks = re.findall(
        rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", data, flags=re.DOTALL
    )
    return [x509.load_pem_x509_crl(block) for block in blocks]


@dataclass(frozen=True)
class ChainVerification:
    """Outcome of :func:`verify_chain`. ``reason`` is ``None`` exactly when ``ok``."""

    ok: bool
    reason: RejectionReason | None
    detail: str
    identity: CertificateIdentity | None = None
    chain: tuple[x509.Certificate, ...] = ()


def _rejected(
    reason: RejectionReason, detail: str, identity: CertificateIdentity | None = None
) -> ChainVerification:
    return ChainVerification(ok=False, reason=reason, detail=detail, identity=identity)


class ChainVerifier:
    """Verifies client certificates against a trust bundle and CRLs, like the TLS server does.

    Self-issued certificates in the bundle are the trust anchors; other bundle certificates are
    available as intermediates (as OpenSSL treats a CA file without ``PARTIAL_CHAIN``). When
    CRLs are configured, a current CRL signed by the leaf's issuer must be present (fail closed,
    like ``VERIFY_CRL_CHECK_LEAF``). Build it once and reuse it: parsing is the costly part.
    """

    def __init__(
        self,
        trust_bundle: StrPath | bytes | Sequence[x509.Certificate],
        crl: StrPath
        | bytes
        | Sequence[StrPath]
        | Sequence[x509.CertificateRevocationList]
        | None = None,
    ) -> None:
        certificates = _read_certificates(trust_bundle)
        self.anchors = [c for c in certificates if c.subject == c.issuer]
        self.bundle_intermediates = [c for c in certificates if c.subject != c.issuer]
        if not self.anchors:
            raise ValueError("trust bundle contains no self-signed root certificate")
        self.crls = _read_crls(crl)
        self.check_revocation = crl is not None
        self._store = Store(self.anchors)
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            # Organisation certificates identify by subject, not by subjectAltName.
            x509.SubjectAlternativeName,
            Criticality.AGNOSTIC,
            None,
        )
        self._builder = PolicyBuilder().extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )

    def verify(
        self, certificate: CertificateInput, now: dt.datetime | None = None
    ) -> ChainVerification:
        """Verify a forwarded client certificate (leaf first, optional intermediates after)."""
        moment = _utc(now)
        try:
            presented = _presented(certificate)
        except ValueError as exc:
            return _rejected("malformed", f"certificate could not be parsed: {exc}")
        leaf, extra = presented[0], presented[1:]
        identity = identity_from_certificate(leaf)
        if moment > leaf.not_valid_after_utc:
            return _rejected(
                "expired",
                f"certificate expired at {leaf.not_valid_after_utc.isoformat()}",
                identity,
            )
        if moment < leaf.not_valid_before_utc:
            return _rejected(
                "not_yet_valid",
                f"certificate is not valid before {leaf.not_valid_before_utc.isoformat()}",
                identity,
            )
        try:
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
            return _rejected(
                "wrong_usage", "certificate is not valid for TLS client auth", identity
            )
        verifier = self._builder.store(self._store).time(moment).build_client_verifier()
        try:
            verified = verifier.verify(leaf, [*extra, *self.bundle_intermediates])
        except VerificationError as exc:
            return _rejected("untrusted_issuer", f"no valid chain to a trusted CA: {exc}", identity)
        chain = tuple(verified.chain)
        if self.check_revocation and len(chain) > 1:
            problem = self._revocation(leaf, chain[1], moment, identity)
            if problem is not None:
                return problem
        return ChainVerification(
            ok=True, reason=None, detail="verified", identity=identity, chain=chain
        )

    def _revocation(
        self,
        leaf: x509.Certificate,
        issuer: x509.Certificate,
        moment: dt.datetime,
        identity: CertificateIdentity,
    ) -> ChainVerification | None:
        public_key = issuer.public_key()
        candidates = [
            crl
            for crl in self.crls
            if crl.issuer == issuer.subject
            and isinstance(public_key, _CRL_KEY_TYPES)
            and crl.is_signature_valid(public_key)
        ]
        if not candidates:
            return _rejected(
                "crl_unavailable",
                f"no CRL signed by {issuer.subject.rfc4514_string(ATTRIBUTE_NAMES)}",
                identity,
            )
        crl = max(candidates, key=lambda c: c.last_update_utc)
        if crl.last_update_utc > moment:
            return _rejected("crl_unavailable", "the CRL is not yet valid", identity)
        if crl.next_update_utc is not None and crl.next_update_utc < moment:
            return _rejected(
                "crl_expired", f"the CRL expired at {crl.next_update_utc.isoformat()}", identity
            )
        entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
        if entry is not None:
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = "unspecified"
            return _rejected(
                "revoked",
                f"certificate was revoked at {entry.revocation_date_utc.isoformat()} ({reason})",
                identity,
            )
        return None


def verify_chain(
    certificate: CertificateInput,
    trust_bundle: StrPath | bytes | Sequence[x509.Certificate],
    crl: StrPath | bytes | Sequence[StrPath] | Sequence[x509.CertificateRevocationList] | None,
    now: dt.datetime | None = None,
) -> ChainVerification:
    """One-shot :class:`ChainVerifier` (``crl=None`` skips revocation checking)."""
    return ChainVerifier(trust_bundle, crl).verify(certificate, now)


# --------------------------------------------------------------------------- helpers

_CRL_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    dsa.DSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)


def _presented(certificate: CertificateInput) -> list[x509.Certificate]:
    if isinstance(certificate, x509.Certificate):
        return [certificate]
    if isinstance(certificate, bytes | str):
        return load_certificates(certificate)
    certificates = list(certificate)
    if not certificates:
        raise ValueError("no certificate given")
    return certificates


def _read_certificates(
    source: StrPath | bytes | Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    if isinstance(source, bytes):
        return x509.load_pem_x509_certificates(source)
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return x509.load_pem_x509_certificates(handle.read())
    return list(source)


def _read_crls(
    source: StrPath | bytes | Sequence[StrPath] | Sequence[x509.CertificateRevocationList] | None,
) -> list[x509.CertificateRevocationList]:
    if source is None:
        return []
    if isinstance(source, bytes):
        return load_crls(source)
    items: Iterable[StrPath | x509.CertificateRevocationList] = (
        [source] if isinstance(source, str | os.PathLike) else source
    )
    crls: list[x509.CertificateRevocationList] = []
    for item in items:
        if isinstance(item, x509.CertificateRevocationList):
            crls.append(item)
        else:
            with open(item, "rb") as handle:
                crls.extend(load_crls(handle.read()))
    return crls
