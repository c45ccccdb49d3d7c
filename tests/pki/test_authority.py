"""The development PKI: CA hierarchy, certificate profiles, renewal, revocation, on-disk store."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node_runtime.security.pki.authority import (
    INTERMEDIATE_CA_NAME,
    ROOT_CA_NAME,
    CertificateAuthority,
    PkiError,
    create_intermediate_ca,
    create_root_ca,
    utcnow,
)
from node_runtime.security.pki.issuing import (
    RevokedEntry,
    build_crl,
    issue_client_certificate,
    issue_server_certificate,
    renew_certificate,
)
from node_runtime.security.pki.store import PkiStore, ensure_dev_pki

OIN_AMSTERDAM = "00000001002564440000"
OIN_UTRECHT = "00000001002220647000"


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return create_root_ca()


@pytest.fixture(scope="module")
def intermediate(root: CertificateAuthority) -> CertificateAuthority:
    return create_intermediate_ca(root)


def ext(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return certificate.extensions.get_extension_for_class(kind)


def attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    return str(name.get_attributes_for_oid(oid)[0].value)


# --------------------------------------------------------------------------- CA hierarchy


def test_root_ca_profile(root: CertificateAuthority) -> None:
    cert = root.certificate
    assert attr(cert.subject, NameOID.COMMON_NAME) == ROOT_CA_NAME
    assert attr(cert.subject, NameOID.COUNTRY_NAME) == "NL"
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)  # self-signed, signature valid
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert isinstance(root.key, ec.EllipticCurvePrivateKey)
    assert isinstance(root.key.curve, ec.SECP256R1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=15 * 365)


def test_intermediate_ca_profile(
    root: CertificateAuthority, intermediate: CertificateAuthority
) -> None:
    cert = intermediate.certificate
    assert attr(cert.subject, NameOID.COMMON_NAME) == INTERMEDIATE_CA_NAME
    assert cert.issuer == root.certificate.subject
    cert.verify_directly_issued_by(root.certificate)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ext(cert, x509.KeyUsage).critical
    root_ski = ext(root.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert cert.not_valid_after_utc <= root.certificate.not_valid_after_utc


# --------------------------------------------------------------------------- leaf profiles


def test_server_certificate_profile(intermediate: CertificateAuthority) -> None:
    issued = issue_server_certificate(
        intermediate, dns_names=["localhost", "Node.Example.NL"], ip_addresses=["127.0.0.1", "::1"]
    )
    cert = issued.certificate
    cert.verify_directly_issued_by(intermediate.certificate)
    assert issued.kind == "server"
    assert issued.chain == (cert, intermediate.certificate)
    assert attr(cert.subject, NameOID.COMMON_NAME) == "localhost"
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "node.example.nl"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not ku.value.key_encipherment  # EC key, ECDHE only
    assert x509.random_serial_number  # serials are random 159-bit numbers
    assert cert.serial_number.bit_length() > 64


def test_organisation_certificate_profile(intermediate: CertificateAuthority) -> None:
    issued = issue_client_certificate(
        intermediate,
        organisation="Gemeente Amsterdam",
        serial_number=OIN_AMSTERDAM,
        common_name="iwmo.amsterdam.nl",
    )
    cert = issued.certificate
    assert issued.kind == "client"
    assert attr(cert.subject, NameOID.COUNTRY_NAME) == "NL"
    assert attr(cert.subject, NameOID.ORGANIZATION_NAME) == "Gemeente Amsterdam"
    assert attr(cert.subject, NameOID.COMMON_NAME) == "iwmo.amsterdam.nl"
    assert attr(cert.subject, NameOID.SERIAL_NUMBER) == OIN_AMSTERDAM
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.SubjectAlternativeName)


def test_rsa_keys_are_supported(intermediate: CertificateAuthority) -> None:
    issued = issue_client_certificate(
        intermediate,
        organisation="Zorgaanbieder B.V.",
        serial_number="00000003123456780000",
        common_name="zorg",
        key_algorithm="rsa-3072",
    )
    assert isinstance(issued.key, rsa.RSAPrivateKey) and issued.key.key_size == 3072
    assert ext(issued.certificate, x509.KeyUsage).value.key_encipherment


def test_explicit_validity_window(intermediate: CertificateAuthority) -> None:
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2020, 6, 1, tzinfo=dt.UTC)
    issued = issue_client_certificate(
        intermediate,
        organisation="Gemeente X",
        serial_number=OIN_UTRECHT,
        common_name="x",
        not_before=start,
        not_after=end,
    )
    assert issued.certificate.not_valid_before_utc == start
    assert issued.certificate.not_valid_after_utc == end
    with pytest.raises(PkiError, match="later than"):
        issue_client_certificate(
            intermediate,
            organisation="Gemeente X",
            serial_number=OIN_UTRECHT,
            common_name="x",
            not_before=end,
            not_after=start,
        )


@pytest.mark.parametrize("bad", ["", "a" * 65, "OIN<script>", "ünïcode"])
def test_serial_number_attribute_is_printable_string(
    intermediate: CertificateAuthority, bad: str
) -> None:
    with pytest.raises(PkiError, match="serialNumber"):
        issue_client_certificate(intermediate, organisation="O", serial_number=bad, common_name="x")


def test_server_certificate_needs_a_name(intermediate: CertificateAuthority) -> None:
    with pytest.raises(PkiError):
        issue_server_certificate(intermediate, dns_names=[])
    with pytest.raises(PkiError, match="invalid DNS name"):
        issue_server_certificate(intermediate, dns_names=["bad name"])


# --------------------------------------------------------------------------- renew / revoke


def test_renew_keeps_subject_and_usage_with_new_serial_and_validity(
    intermediate: CertificateAuthority,
) -> None:
    old = issue_server_certificate(
        intermediate,
        dns_names=["node.example.nl"],
        ip_addresses=["10.0.0.1"],
        not_before=utcnow() - dt.timedelta(days=300),
        not_after=utcnow() + dt.timedelta(days=65),
    )
    renewed = renew_certificate(intermediate, old.certificate, old.key)
    new = renewed.certificate
    assert new.serial_number != old.certificate.serial_number
    assert new.subject == old.certificate.subject
    assert new.not_valid_after_utc > old.certificate.not_valid_after_utc
    assert new.not_valid_before_utc > old.certificate.not_valid_before_utc
    for kind in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.KeyUsage):
        assert ext(new, kind).value == ext(old.certificate, kind).value
    # same length as before
    old_length = old.certificate.not_valid_after_utc - old.certificate.not_valid_before_utc
    new_length = new.not_valid_after_utc - new.not_valid_before_utc
    assert abs(new_length - old_length) < dt.timedelta(seconds=5)
    assert new.public_key() == old.certificate.public_key()  # key kept by default

    rekeyed = renew_certificate(intermediate, new, renewed.key, new_key=True)
    assert rekeyed.certificate.public_key() != new.public_key()
    assert rekeyed.certificate.subject == new.subject


def test_renew_refuses_a_foreign_key(intermediate: CertificateAuthority) -> None:
    a = issue_server_certificate(intermediate, dns_names=["a.example"])
    b = issue_server_certificate(intermediate, dns_names=["b.example"])
    with pytest.raises(PkiError, match="does not belong"):
        renew_certificate(intermediate, a.certificate, b.key)


def test_crl_lists_revoked_serials_signed_by_issuer(intermediate: CertificateAuthority) -> None:
    revoked_at = utcnow().replace(microsecond=0)
    crl = build_crl(
        intermediate,
        [
            RevokedEntry(1234, revoked_at, x509.ReasonFlags.key_compromise),
            RevokedEntry(99, revoked_at),
        ],
        crl_number=7,
    )
    assert crl.issuer == intermediate.certificate.subject
    assert crl.is_signature_valid(intermediate.key.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None and crl.next_update_utc > utcnow()
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    entry = crl.get_revoked_certificate_by_serial_number(1234)
    assert entry is not None and entry.revocation_date_utc == revoked_at
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    plain = crl.get_revoked_certificate_by_serial_number(99)
    assert plain is not None and len(plain.extensions) == 0


# --------------------------------------------------------------------------- on-disk store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def store(tmp_path: Path) -> PkiStore:
    store = PkiStore(tmp_path / "pki")
    assert store.init() is True
    return store


def test_layout_and_permissions(store: PkiStore) -> None:
    store.issue_server("localhost", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    store.issue_client("amsterdam", organisation="Gemeente Amsterdam", oin=OIN_AMSTERDAM)
    d = store.directory
    for key in [
        d / "root/ca.key",
        d / "intermediate/ca.key",
        d / "issued/localhost.key",
        d / "issued/amsterdam.key",
    ]:
        assert mode(key) == 0o600, key
    for directory in [d, d / "root", d / "intermediate", d / "issued", d / "trust"]:
        assert mode(directory) == 0o700, directory
    for public in [
        "root/ca.crt",
        "intermediate/ca.crt",
        "intermediate/crl.pem",
        "intermediate/index.json",
        "issued/localhost.crt",
        "issued/localhost.chain.pem",
        "trust/ca-bundle.pem",
        "trust/crl.pem",
    ]:
        assert (d / public).is_file(), public
    assert not list(d.rglob("*.tmp")), "no temporary files left behind"

    bundle = x509.load_pem_x509_certificates((d / "trust/ca-bundle.pem").read_bytes())
    assert [c.subject for c in bundle] == [
        store.root().certificate.subject,
        store.intermediate().certificate.subject,
    ]
    chain = x509.load_pem_x509_certificates((d / "issued/amsterdam.chain.pem").read_bytes())
    assert chain[0] == store.certificate("amsterdam")
    assert chain[1] == store.intermediate().certificate

    index = json.loads((d / "intermediate/index.json").read_text())
    entry = index["certificates"][1]
    assert entry["name"] == "amsterdam" and entry["kind"] == "client"
    assert f"serialNumber={OIN_AMSTERDAM}" in entry["subject"]
    assert entry["revoked_at"] is None
    assert entry["serial"] == f"{store.certificate('amsterdam').serial_number:X}"
    fingerprint = store.certificate("amsterdam").fingerprint(hashes.SHA256()).hex()
    assert entry["fingerprint_sha256"] == fingerprint


def test_keys_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        store = PkiStore(tmp_path / "open")
        store.init()
        store.issue_client("x", organisation="Gemeente X", oin=OIN_UTRECHT)
    finally:
        os.umask(previous)
    assert mode(store.directory / "issued/x.key") == 0o600
    assert mode(store.directory / "root/ca.key") == 0o600
    assert mode(store.directory / "issued") == 0o700


def test_init_is_idempotent(store: PkiStore) -> None:
    root = store.root_certificate_path.read_bytes()
    key = store.intermediate_key_path.read_bytes()
    assert store.init() is False
    assert store.root_certificate_path.read_bytes() == root
    assert store.intermediate_key_path.read_bytes() == key


def test_store_validates_oin_and_names(store: PkiStore) -> None:
    with pytest.raises(PkiError, match="20 digits"):
        store.issue_client("x", organisation="Gemeente X", oin="12345")
    with pytest.raises(PkiError, match="invalid certificate name"):
        store.issue_client("../evil", organisation="Gemeente X", oin=OIN_UTRECHT)
    store.issue_client("zorg", organisation="Zorg B.V.", organisation_number="AGB-12345678")
    assert attr(store.certificate("zorg").subject, NameOID.SERIAL_NUMBER) == "AGB-12345678"
    with pytest.raises(PkiError, match="exists"):
        store.issue_client("zorg", organisation="Zorg B.V.", organisation_number="AGB-12345678")


def test_store_renew_and_revoke(store: PkiStore) -> None:
    store.issue_client("amsterdam", organisation="Gemeente Amsterdam", oin=OIN_AMSTERDAM)
    first = store.certificate("amsterdam")
    first_key = store.paths("amsterdam").key.read_bytes()
    store.renew("amsterdam")
    second = store.certificate("amsterdam")
    assert second.serial_number != first.serial_number
    assert store.paths("amsterdam").key.read_bytes() == first_key
    store.renew("amsterdam", new_key=True)
    third = store.certificate("amsterdam")
    assert store.paths("amsterdam").key.read_bytes() != first_key
    assert mode(store.paths("amsterdam").key) == 0o600
    assert [e.status() for e in store.entries()] == ["superseded", "superseded", "valid"]

    crl_number = store.crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    entry = store.revoke("amsterdam", reason="keyCompromise")
    assert entry.serial == f"{third.serial_number:X}"
    crl = store.crl()
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > crl_number
    assert crl.get_revoked_certificate_by_serial_number(third.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(second.serial_number) is None
    assert store.crl_path.read_bytes() == store.intermediate_crl_path.read_bytes()
    assert store.current("amsterdam").status() == "revoked"
    with pytest.raises(PkiError, match="was revoked"):
        store.revoke("amsterdam")

    # an older, superseded certificate can be revoked by serial
    store.revoke("amsterdam", serial=f"{first.serial_number:x}", reason="superseded")
    assert store.crl().get_revoked_certificate_by_serial_number(first.serial_number) is not None


def test_replace_supersedes_and_revokes(store: PkiStore) -> None:
    store.issue_server("node", dns_names=["node.example"])
    old = store.certificate("node")
    store.issue_server("node", dns_names=["node.example", "alt.example"], replace=True)
    assert store.certificate("node").serial_number != old.serial_number
    revoked = store.crl().get_revoked_certificate_by_serial_number(old.serial_number)
    assert revoked is not None


def test_ensure_dev_pki_is_idempotent(tmp_path: Path) -> None:
    clients = [("amsterdam", "Gemeente Amsterdam", OIN_AMSTERDAM)]
    first = ensure_dev_pki(tmp_path / "pki", clients=clients)
    snapshot = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
    second = ensure_dev_pki(tmp_path / "pki", clients=clients)
    assert first == second
    after = {p: p.read_bytes() for p in (tmp_path / "pki").rglob("*") if p.is_file()}
    assert after == snapshot

    server = x509.load_pem_x509_certificate(first.server.certificate.read_bytes())
    san = ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    client = x509.load_pem_x509_certificate(first.clients["amsterdam"].certificate.read_bytes())
    assert attr(client.subject, NameOID.SERIAL_NUMBER) == OIN_AMSTERDAM
    assert mode(first.clients["amsterdam"].key) == 0o600


def test_ensure_dev_pki_adds_renews_and_respects_revocation(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ensure_dev_pki(directory, clients=[("a", "Gemeente A", OIN_AMSTERDAM)])
    store = PkiStore(directory)
    a_serial = store.certificate("a").serial_number

    # a new client is added, the existing one untouched
    dev = ensure_dev_pki(
        directory, clients=[("a", "Gemeente A", OIN_AMSTERDAM), ("b", "Gemeente B", OIN_UTRECHT)]
    )
    assert set(dev.clients) == {"a", "b"}
    assert store.certificate("a").serial_number == a_serial

    # a deliberately revoked client stays revoked
    store.revoke("a", reason="privilegeWithdrawn")
    ensure_dev_pki(directory, clients=[("a", "Gemeente A", OIN_AMSTERDAM)])
    assert store.current("a").status() == "revoked"
    assert store.certificate("a").serial_number == a_serial

    # a changed subject gets a new certificate
    ensure_dev_pki(directory, clients=[("b", "Gemeente B-nieuw", OIN_UTRECHT)])
    assert attr(store.certificate("b").subject, NameOID.ORGANIZATION_NAME) == "Gemeente B-nieuw"

    # a certificate close to expiry is renewed
    store.issue_server(
        "localhost",
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1", "::1"],
        not_after=utcnow() + dt.timedelta(days=3),
        replace=True,
    )
    short = store.certificate("localhost").serial_number
    ensure_dev_pki(directory)
    renewed = store.certificate("localhost")
    assert renewed.serial_number != short
    assert renewed.not_valid_after_utc > utcnow() + dt.timedelta(days=300)

    # changed server names → new server certificate
    ensure_dev_pki(directory, dns_names=["localhost", "knooppunt.local"])
    names = ext(store.certificate("localhost"), x509.SubjectAlternativeName).value
    assert "knooppunt.local" in names.get_values_for_type(x509.DNSName)


def test_ensure_dev_pki_refreshes_a_stale_crl(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    ensure_dev_pki(directory)
    store = PkiStore(directory)
    store.refresh_crl(validity=dt.timedelta(hours=1))
    assert store.crl().next_update_utc < utcnow() + dt.timedelta(days=1)  # type: ignore[operator]
    ensure_dev_pki(directory)
    assert store.crl().next_update_utc > utcnow() + dt.timedelta(days=5)  # type: ignore[operator]


def test_ensure_dev_pki_repairs_a_mismatched_key(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    dev = ensure_dev_pki(directory, clients=[("a", "Gemeente A", OIN_AMSTERDAM)])
    other = ensure_dev_pki(tmp_path / "other", clients=[("a", "Gemeente A", OIN_AMSTERDAM)])
    dev.clients["a"].key.write_bytes(other.clients["a"].key.read_bytes())
    ensure_dev_pki(directory, clients=[("a", "Gemeente A", OIN_AMSTERDAM)])
    store = PkiStore(directory)
    assert store.key("a").public_key() == store.certificate("a").public_key()
