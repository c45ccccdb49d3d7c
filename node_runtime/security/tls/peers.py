"""What a server knows about its peers' certificates, one *trust generation* at a time.

A :class:`TrustMaterial` is built from the same files as the TLS context (trust bundle, CRL
file(s), the server's own certificate, the optional issuer-policy file) every time
:class:`~node_runtime.security.tls.contexts.ReloadableServerContext` reloads them, and carries that
reload's ``generation`` number. It answers two questions about a client certificate the
handshake (or an earlier generation) accepted:

* **Is it still good?** (:meth:`TrustMaterial.check`): its issuer is still in the trust
  bundle, it has not expired, and — when CRLs are configured — a current CRL of *its issuing CA*
  is present and does not list it (fail-closed, like OpenSSL's ``VERIFY_CRL_CHECK_LEAF``).
* **Whom may its issuer speak for?** (:class:`IssuerScope`, from :class:`IssuerPolicy`): the
  node's own CA for every organisation registered on the node, administrators included; the
  CAs of the other nodes of the same operator for gemeenten, participants and façades but never
  administrators; any other CA (a gemeente's provided ``ca.crt``, PKIoverheid Private Services)
  only for the subject serialNumbers (OINs) listed for it.

The invariant connections keep (see :mod:`node_runtime.security.tls.uvicorn_protocol`): an identity
established on a TLS connection is used only while the generation it was checked against is the
current one and the moment is before its ``valid_until``; otherwise the certificate is checked
again against the current generation before the next request is served.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from node_runtime.security.tls.certificates import ATTRIBUTE_NAMES, load_crls

log = logging.getLogger("node_runtime.security.tls")
StrPath: TypeAlias = str | os.PathLike[str]


@dataclass(frozen=True)
class IssuerScope:
    """Whom the CA that issued a client certificate may speak for.

    ``speaks_for`` ``None``: any organisation registered on the node; otherwise only these
    subject serialNumbers (OINs). ``administers``: may issue administrator certificates.
    """

    fingerprint: str
    subject: str
    speaks_for: frozenset[str] | None
    administers: bool

    def may_claim(self, serial_number: str | None) -> bool:
        if serial_number is None:
            return False
        return self.speaks_for is None or serial_number in self.speaks_for


@dataclass(frozen=True)
class IssuerPolicy:
    """Which CA (SHA-256 fingerprint of its certificate, lower-case hex) may speak for whom.

    File format (YAML or JSON, ``--tls-issuers`` / ``KNOOPPUNT_TLS_ISSUERS``)::

        node: [<fingerprint>]           # the node's own CA: everyone, administrators included
        nodes: [<fingerprint>, ...]     # the operator's other nodes' CAs: never administrators
        organisations:                  # any other CA: only these OINs
          <fingerprint>: [<OIN>, ...]

    Without a file the node's own CA is the CA that issued its server certificate, and no other
    trusted CA may speak for anyone by serialNumber (a participant pinned by certificate
    fingerprint is still recognised: the fingerprint binds that exact certificate).
    """

    node: frozenset[str]
    nodes: frozenset[str] = frozenset()
    organisations: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def scope(self, issuer: x509.Certificate) -> IssuerScope:
        fp = fingerprint(issuer)
        subject = issuer.subject.rfc4514_string(ATTRIBUTE_NAMES)
        if fp in self.node:
            return IssuerScope(fp, subject, None, True)
        if fp in self.nodes:
            return IssuerScope(fp, subject, None, False)
        return IssuerScope(fp, subject, self.organisations.get(fp, frozenset()), False)


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _fingerprints(values: object, where: str) -> frozenset[str]:
    if values is None:
        return frozenset()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"issuer policy: {where} must be a list of fingerprints")
    return frozenset(v.lower().replace(":", "") for v in values)


def load_issuer_policy(path: StrPath, *, own: Iterable[str] = ()) -> IssuerPolicy:
    """Read an issuer-policy file; ``own`` fingerprints are added to ``node``."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("issuer policy: expected a mapping with node, nodes, organisations")
    unknown = set(data) - {"node", "nodes", "organisations"}
    if unknown:
        raise ValueError(f"issuer policy: unknown keys {sorted(unknown)}")
    organisations_raw = data.get("organisations") or {}
    if not isinstance(organisations_raw, dict):
        raise ValueError("issuer policy: organisations must map fingerprints to OIN lists")
    organisations: dict[str, frozenset[str]] = {}
    for key, oins in organisations_raw.items():
        if not isinstance(oins, list) or not all(isinstance(o, str) for o in oins):
            raise ValueError(f"issuer policy: organisations[{key}] must be a list of OINs")
        organisations[str(key).lower().replace(":", "")] = frozenset(oins)
    return IssuerPolicy(
        node=_fingerprints(data.get("node"), "node") | frozenset(own),
        nodes=_fingerprints(data.get("nodes"), "nodes"),
        organisations=organisations,
    )


@dataclass(frozen=True)
class PeerCheck:
    """Outcome of :meth:`TrustMaterial.check`; ``reason`` is ``None`` exactly when ``ok``."""

    ok: bool
    reason: str | None
    detail: str
    generation: int
    valid_until: dt.datetime | None = None
    scope: IssuerScope | None = None


def _read_pem_certificates(path: StrPath) -> list[x509.Certificate]:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificates(handle.read())


def _directly_issued(leaf: x509.Certificate, issuer: x509.Certificate) -> bool:
    if leaf.issuer != issuer.subject:
        return False
    try:
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class TrustMaterial:
    """One generation of a server's trust: bundle, CRLs, issuer policy (see module docstring)."""

    def __init__(
        self,
        *,
        generation: int,
        trust_bundle: StrPath,
        crl: StrPath | None,
        server_chain: StrPath | None = None,
        issuers: StrPath | None = None,
        trusted_cas_speak: bool = False,
    ) -> None:
        self.generation = generation
        self.cas = _read_pem_certificates(trust_bundle)
        self.check_revocation = crl is not None
        self.crls: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        if crl is not None:
            with open(crl, "rb") as handle:
                for item in load_crls(handle.read()):
                    self.crls.setdefault(item.issuer, []).append(item)
        own: set[str] = set()
        if server_chain is not None:
            chain = _read_pem_certificates(server_chain)
            if chain:
                own.update(fingerprint(ca) for ca in self.cas if _directly_issued(chain[0], ca))
        if issuers is not None and Path(issuers).is_file():
            self.policy = load_issuer_policy(issuers, own=own)
        else:
            if issuers is not None:
                log.warning(
                    "issuer policy file %s missing: only the node's own CA may speak "
                    "for organisations",
                    os.fspath(issuers),
                )
            # A server whose trust bundle is curated for exactly the organisations it serves
            # (the façade: the platform's PKIoverheid bundle) lets every trusted CA speak for
            # them, administrators never; a node binds to its own CA.
            others = (
                frozenset(fingerprint(ca) for ca in self.cas) - own
                if trusted_cas_speak
                else frozenset()
            )
            self.policy = IssuerPolicy(node=frozenset(own), nodes=others)
        self.missing_crls = self._without_crl() if self.check_revocation else []
        for ca in self.missing_crls:
            log.error(
                "no CRL for trusted CA %s in the CRL file: client certificates it issues are "
                "refused (fail-closed) until its CRL is added",
                ca.subject.rfc4514_string(ATTRIBUTE_NAMES),
            )

    def _without_crl(self) -> list[x509.Certificate]:
        """Trusted CAs that may issue client certificates but have no CRL in the CRL file.

        A CA that only issues other CAs of the bundle (a root above an intermediate) needs none:
        revocation is checked for the leaf's issuer only.
        """
        parents = {c.issuer for c in self.cas if c.issuer != c.subject}
        out = []
        for ca in self.cas:
            if ca.subject in parents and ca.subject == ca.issuer:
                continue
            if not self._signed_crls(ca):
                out.append(ca)
        return out

    def _signed_crls(self, issuer: x509.Certificate) -> list[x509.CertificateRevocationList]:
        key = issuer.public_key()
        out = []
        for crl in self.crls.get(issuer.subject, []):
            try:
                if crl.is_signature_valid(key):  # type: ignore[arg-type]
                    out.append(crl)
            except (TypeError, ValueError):
                continue
        return out

    def issuer_of(self, leaf: x509.Certificate) -> x509.Certificate | None:
        for ca in self.cas:
            if _directly_issued(leaf, ca):
                return ca
        return None

    def check(self, der: bytes, now: dt.datetime | None = None) -> PeerCheck:
        """Is the client certificate ``der`` acceptable under this generation?"""
        moment = now or dt.datetime.now(dt.UTC)
        g = self.generation
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return PeerCheck(False, "malformed", "certificate could not be parsed", g)
        issuer = self.issuer_of(leaf)
        if issuer is None:
            return PeerCheck(
                False, "untrusted_issuer", "the certificate's issuing CA is no longer trusted", g
            )
        if moment > leaf.not_valid_after_utc:
            return PeerCheck(False, "expired", "the certificate has expired", g)
        if moment < leaf.not_valid_before_utc:
            return PeerCheck(False, "not_yet_valid", "the certificate is not yet valid", g)
        valid_until = leaf.not_valid_after_utc
        scope = self.policy.scope(issuer)
        if self.check_revocation:
            crls = [c for c in self._signed_crls(issuer) if c.last_update_utc <= moment]
            if not crls:
                return PeerCheck(
                    False,
                    "crl_unavailable",
                    f"no CRL of the issuing CA {scope.subject} is configured",
                    g,
                )
            crl = max(crls, key=lambda c: c.last_update_utc)
            if crl.next_update_utc is not None:
                if crl.next_update_utc < moment:
                    return PeerCheck(False, "crl_expired", f"the CRL of {scope.subject} expired", g)
                valid_until = min(valid_until, crl.next_update_utc)
            if crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None:
                return PeerCheck(False, "revoked", "the certificate has been revoked", g)
        return PeerCheck(True, None, "verified", g, valid_until, scope)
