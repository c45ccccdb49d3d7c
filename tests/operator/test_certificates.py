"""Node CA, server and client certificates, renewal and revocation."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from knooppunt_operator import certificates

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
OIN = "00000001999000344000"


def test_node_ca_issues_server_and_client_certificates() -> None:
    material = certificates.create_node_ca("knooppunt-zorg", "zorg", now=NOW)
    ca = certificates.load_ca(material)
    server = certificates.issue_node_server(ca, "knooppunt-zorg", "zorg", days=90, now=NOW)
    info = certificates.leaf_info(server.chain_pem)
    assert info.issuer == "Knooppunt knooppunt-zorg CA"
    assert set(info.dns_names) == {
        "knooppunt-zorg",
        "knooppunt-zorg.zorg",
        "knooppunt-zorg.zorg.svc",
        "knooppunt-zorg.zorg.svc.cluster.local",
    }
    assert len(x509.load_pem_x509_certificates(server.chain_pem)) == 2

    client = certificates.issue_gemeente_client(
        ca,
        oin=OIN,
        organisation="Gemeente Utrecht",
        common_name="gemeente-utrecht",
        days=365,
        now=NOW,
    )
    assert certificates.leaf_info(client.chain_pem).subject_serial_number == OIN
    assert (
        certificates.renewal_reason(
            client.chain_pem, ca=ca, now=NOW, renew_before=dt.timedelta(days=30), serial_number=OIN
        )
        is None
    )


def test_renewal_reasons() -> None:
    ca = certificates.load_ca(certificates.create_node_ca("kp", "ns", now=NOW))
    other = certificates.load_ca(certificates.create_node_ca("other", "ns", now=NOW))
    leaf = certificates.issue_gemeente_client(
        ca, oin=OIN, organisation="G", common_name="g", days=40, now=NOW
    )
    reason = certificates.renewal_reason
    window = dt.timedelta(days=30)
    assert reason(None, ca=ca, now=NOW, renew_before=window) == "missing"
    assert reason(b"garbage", ca=ca, now=NOW, renew_before=window) == "unreadable"
    assert reason(leaf.chain_pem, ca=other, now=NOW, renew_before=window) == (
        "issued by another CA"
    )
    assert reason(
        leaf.chain_pem, ca=ca, now=NOW + dt.timedelta(days=15), renew_before=window
    ).startswith("expires")
    assert (
        reason(
            leaf.chain_pem,
            ca=ca,
            now=NOW,
            renew_before=window,
            serial_number="00000001999000999000",
        )
        == "OIN changed"
    )
    server = certificates.issue_node_server(ca, "kp", "ns", days=90, now=NOW)
    assert (
        reason(
            server.chain_pem,
            ca=ca,
            now=NOW,
            renew_before=window,
            dns_names=certificates.node_dns_names("kp", "other-ns"),
        )
        == "DNS names changed"
    )


def test_revocation_and_crl() -> None:
    ca = certificates.load_ca(certificates.create_node_ca("kp", "ns", now=NOW))
    leaf = certificates.issue_gemeente_client(
        ca, oin=OIN, organisation="G", common_name="g", days=365, now=NOW
    )
    revoked = certificates.revoke([], leaf.chain_pem, now=NOW)
    assert certificates.revoke(revoked, leaf.chain_pem, now=NOW) == revoked  # once
    assert revoked[0].subject == OIN
    assert certificates.parse_revoked(certificates.dump_revoked(revoked)) == revoked
    crl = certificates.build_crl_pem(ca, revoked, number=7, now=NOW)
    parsed = x509.load_pem_x509_crl(crl)
    serial = certificates.leaf_info(leaf.chain_pem).serial
    assert parsed.get_revoked_certificate_by_serial_number(serial) is not None
    assert certificates.crl_number(crl) == 7
    assert certificates.crl_is_current(crl, ca, revoked, now=NOW)
    assert not certificates.crl_is_current(crl, ca, [], now=NOW)
    assert not certificates.crl_is_current(crl, ca, revoked, now=NOW + dt.timedelta(days=6))
    later = NOW + dt.timedelta(days=400)
    assert certificates.prune_expired(revoked, now=later) == []


def test_trust_bundle_deduplicates() -> None:
    one = certificates.create_node_ca("a", "ns", now=NOW)
    two = certificates.create_node_ca("b", "ns", now=NOW)
    bundle = certificates.trust_bundle([one.cert_pem, two.cert_pem + one.cert_pem, b""])
    assert len(x509.load_pem_x509_certificates(bundle)) == 2
