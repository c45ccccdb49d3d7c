"""TLS material for nodes and gemeenten, built on the runtime's development PKI.

Every Knooppunt gets its own CA (kept in the ``<node>-ca`` Secret, never mounted in a pod).
It issues the node's server certificate, each gemeente's client certificate (OIN in the
subject ``serialNumber``, as PKIoverheid certificates carry it), short-lived administrator
certificates the operator uses to ask a node about undelivered messages, and the CRL that
lists revoked gemeente certificates. Everything here is a pure function of its inputs and
the clock passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from node_runtime.security.pki.authority import CertificateAuthority, as_private_key, create_root_ca
from node_runtime.security.pki.issuing import (
    RevokedEntry,
    build_crl,
    issue_client_certificate,
    issue_server_certificate,
)

CA_ORGANISATION = "Knooppunt"


@dataclass(frozen=True)
class CaMaterial:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class LeafMaterial:
    chain_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class LeafInfo:
    serial: int
    not_after: dt.datetime
    subject_serial_number: str | None
    issuer: str
    dns_names: tuple[str, ...]

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


def _fit(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: object) -> bytes:
    return as_private_key(key).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_node_ca(node: str, namespace: str, *, now: dt.datetime | None = None) -> CaMaterial:
    """A fresh CA for one node (ECDSA P-256, 20 years, path length 1)."""
    authority = create_root_ca(
        common_name=_fit(f"Knooppunt {node} CA"),
        organisation=_fit(f"{CA_ORGANISATION} {namespace}"),
        not_before=now - dt.timedelta(minutes=5) if now else None,
    )
    return CaMaterial(pem_cert(authority.certificate), pem_key(authority.key))


def load_ca(material: CaMaterial) -> CertificateAuthority:
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    key = serialization.load_pem_private_key(material.key_pem, password=None)
    return CertificateAuthority(cert, as_private_key(key))


def node_dns_names(name: str, namespace: str) -> list[str]:
    return [
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    ]


def _chain(leaf: x509.Certificate, ca: CertificateAuthority) -> bytes:
    return pem_cert(leaf) + pem_cert(ca.certificate)


def issue_node_server(
    ca: CertificateAuthority, name: str, namespace: str, *, days: int, now: dt.datetime
) -> LeafMaterial:
    issued = issue_server_certificate(
        ca,
        dns_names=node_dns_names(name, namespace),
        organisation=_fit(f"{CA_ORGANISATION} {namespace}"),
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=days),
    )
    return LeafMaterial(_chain(issued.certificate, ca), pem_key(issued.key))


def issue_gemeente_client(
    ca: CertificateAuthority,
    *,
    oin: str,
    organisation: str,
    common_name: str,
    days: int,
    now: dt.datetime,
) -> LeafMaterial:
    issued = issue_client_certificate(
        ca,
        organisation=_fit(organisation),
        serial_number=oin,
        common_name=_fit(common_name),
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=days),
    )
    return LeafMaterial(_chain(issued.certificate, ca), pem_key(issued.key))


def issue_admin_client(
    ca: CertificateAuthority, *, oin: str, now: dt.datetime, minutes: int = 10
) -> LeafMaterial:
    """A short-lived administrator certificate for the operator's calls to a node."""
    issued = issue_client_certificate(
        ca,
        organisation=CA_ORGANISATION,
        serial_number=oin,
        common_name="knooppunt-operator",
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(minutes=minutes),
    )
    return LeafMaterial(_chain(issued.certificate, ca), pem_key(issued.key))


def first_certificate(chain_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain_pem)[0]


def leaf_info(chain_pem: bytes) -> LeafInfo:
    cert = first_certificate(chain_pem)
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return LeafInfo(
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        subject_serial_number=str(serials[0].value) if serials else None,
        issuer=str(issuer[0].value) if issuer else cert.issuer.rfc4514_string(),
        dns_names=names,
    )


def renewal_reason(
    chain_pem: bytes | None,
    *,
    ca: CertificateAuthority,
    now: dt.datetime,
    renew_before: dt.timedelta,
    dns_names: Sequence[str] | None = None,
    serial_number: str | None = None,
) -> str | None:
    """Why a leaf must be (re)issued, or ``None`` when the existing one is fine."""
    if not chain_pem:
        return "missing"
    try:
        cert = first_certificate(chain_pem)
    except ValueError:
        return "unreadable"
    if cert.issuer != ca.certificate.subject:
        return "issued by another CA"
    try:
        cert.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the node's CA"
    info = leaf_info(chain_pem)
    if info.not_after - now <= renew_before:
        return f"expires {info.not_after:%Y-%m-%d}"
    if dns_names is not None and sorted(info.dns_names) != sorted(n.lower() for n in dns_names):
        return "DNS names changed"
    if serial_number is not None and info.subject_serial_number != serial_number:
        return "OIN changed"
    return None


def fingerprint(cert_pem: bytes) -> str:
    return hashlib.sha256(
        first_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    ).hexdigest()


def trust_bundle(pems: Iterable[bytes]) -> bytes:
    """Certificates from several PEM blobs, each once, in first-seen order."""
    seen: set[bytes] = set()
    out = b""
    for blob in pems:
        if not blob:
            continue
        for cert in x509.load_pem_x509_certificates(blob):
            der = cert.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                out += pem_cert(cert)
    return out


# ------------------------------------------------------------------------------- revocation


@dataclass(frozen=True)
class Revoked:
    """A revoked gemeente certificate; kept in the CA Secret until it would have expired."""

    serial: str
    revoked_at: str
    not_after: str
    subject: str = ""


def parse_revoked(text: str | bytes | None) -> list[Revoked]:
    if not text:
        return []
    return [Revoked(**item) for item in json.loads(text)]


def dump_revoked(entries: Iterable[Revoked]) -> str:
    ordered = sorted(entries, key=lambda r: (r.revoked_at, r.serial))
    return json.dumps([asdict(r) for r in ordered], separators=(",", ":"))


def revoke(entries: Sequence[Revoked], chain_pem: bytes, *, now: dt.datetime) -> list[Revoked]:
    info = leaf_info(chain_pem)
    serial = info.serial_hex
    if any(r.serial == serial for r in entries):
        return list(entries)
    return [
        *entries,
        Revoked(
            serial=serial,
            revoked_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            not_after=info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            subject=info.subject_serial_number or "",
        ),
    ]


def prune_expired(entries: Sequence[Revoked], *, now: dt.datetime) -> list[Revoked]:
    """Drop entries of certificates that have expired anyway (keeps the CRL small)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [r for r in entries if r.not_after > stamp]


def build_crl_pem(
    ca: CertificateAuthority,
    entries: Sequence[Revoked],
    *,
    number: int,
    now: dt.datetime,
    validity: dt.timedelta = dt.timedelta(days=7),
) -> bytes:
    revoked = [
        RevokedEntry(
            serial_number=int(r.serial, 16),
            revoked_at=dt.datetime.strptime(r.revoked_at, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC
            ),
        )
        for r in entries
    ]
    crl = build_crl(
        ca,
        revoked,
        crl_number=number,
        this_update=now - dt.timedelta(minutes=5),
        next_update=now + validity,
    )
    return crl.public_bytes(serialization.Encoding.PEM)


def crl_is_current(
    crl_pem: bytes | None,
    ca: CertificateAuthority,
    entries: Sequence[Revoked],
    *,
    now: dt.datetime,
    refresh_before: dt.timedelta = dt.timedelta(days=2),
) -> bool:
    """The CRL is signed by ``ca``, lists exactly ``entries`` and is not about to expire."""
    if not crl_pem:
        return False
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError:
        return False
    if crl.issuer != ca.certificate.subject or not crl.is_signature_valid(
        ca.certificate.public_key()  # type: ignore[arg-type]
    ):
        return False
    next_update = crl.next_update_utc
    if next_update is None or next_update - now <= refresh_before:
        return False
    listed = {format(r.serial_number, "x") for r in crl}
    return listed == {r.serial for r in entries}


def crl_number(crl_pem: bytes | None) -> int:
    if not crl_pem:
        return 0
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except (ValueError, x509.ExtensionNotFound):
        return 0


# ------------------------------------------------------------------- several trusted CAs


def crls_signed_by(crl_pems: bytes | None, ca_pem: bytes) -> list[bytes]:
    """The CRLs in ``crl_pems`` (PEM, one or more) that ``ca_pem``'s CA signed."""
    if not crl_pems:
        return []
    cas = x509.load_pem_x509_certificates(ca_pem)
    out = []
    for block in re.findall(
        rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", crl_pems, flags=re.DOTALL
    ):
        try:
            crl = x509.load_pem_x509_crl(block)
        except ValueError:
            continue
        for ca in cas:
            try:
                if crl.issuer == ca.subject and crl.is_signature_valid(
                    ca.public_key()  # type: ignore[arg-type]
                ):
                    out.append(crl.public_bytes(serialization.Encoding.PEM))
                    break
            except (ValueError, TypeError):
                continue
    return out


def crl_bundle(blobs: Iterable[bytes]) -> bytes:
    """CRLs from several PEM blobs, each once, in first-seen order (the node's ``crl.pem``:
    one CRL per trusted CA that issues client certificates)."""
    seen: set[bytes] = set()
    out = b""
    for blob in blobs:
        for block in re.findall(
            rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", blob or b"", flags=re.DOTALL
        ):
            if block not in seen:
                seen.add(block)
                out += block + b"\n"
    return out


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the first certificate in ``ca_pem`` (the issuer policy's key)."""
    return first_certificate(ca_pem).fingerprint(hashes.SHA256()).hex()


def issuer_policy_json(
    *, own: bytes, nodes: Iterable[bytes], organisations: Mapping[bytes, Iterable[str]]
) -> bytes:
    """The node's ``issuers.json`` (see ``node_runtime.tls.peers.IssuerPolicy``): its own CA
    speaks for everyone, the other nodes' CAs for everyone but the administrator, a provided
    ``ca.crt`` only for the OINs of the gemeenten that provided it."""
    own_fp = ca_fingerprint(own)
    node_fps = sorted({ca_fingerprint(n) for n in nodes} - {own_fp})
    bound: dict[str, set[str]] = {}
    for ca_pem, oins in organisations.items():
        for cert in x509.load_pem_x509_certificates(ca_pem):
            fp = cert.fingerprint(hashes.SHA256()).hex()
            if fp != own_fp and fp not in node_fps:
                bound.setdefault(fp, set()).update(oins)
    document = {
        "node": [own_fp],
        "nodes": node_fps,
        "organisations": {fp: sorted(o) for fp, o in sorted(bound.items())},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
