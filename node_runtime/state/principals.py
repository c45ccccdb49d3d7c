"""Who is calling: an organisation identified by its verified certificate, never a header."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from node_runtime.model.gemeente import Gemeente
from node_runtime.security.callers import PeerCertificate, claimed_serial, may_administer
from node_runtime.state.node_state import NodeState

PrincipalKind = Literal["gemeente", "participant", "administrator"]


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: str
    display_name: str
    identifiers: frozenset[str]
    connectors: frozenset[str]
    via: str | None = None
    """Set when a municipal cloud façade acts for the organisation (``facade:<OIN>``)."""

    @property
    def actor(self) -> str:
        """How the principal appears in the processing log (no personal data)."""
        if self.via:
            return f"{self.kind}:{self.id} via {self.via}"
        return f"{self.kind}:{self.id}"


def _gemeente_principal(gemeente: Gemeente, *, via: str | None = None) -> Principal:
    return Principal(
        kind="gemeente",
        id=gemeente.spec.gemeentecode,
        display_name=gemeente.spec.display_name,
        identifiers=frozenset({gemeente.spec.gemeentecode}),
        connectors=frozenset(s.connector for s in gemeente.spec.subscriptions),
        via=via,
    )


def resolve_acting_for(
    state: NodeState, *, gemeente_oin: str, gemeentecode: str, facade_oin: str
) -> Principal | None:
    """The gemeente a verified façade assertion names, if this node serves it.

    OIN and gemeentecode must both belong to the same gemeente of this node.
    """
    gemeente = state.gemeenten_by_oin.get(gemeente_oin)
    if gemeente is None or gemeente.spec.gemeentecode != gemeentecode:
        return None
    return _gemeente_principal(gemeente, via=f"facade:{facade_oin}")


def issuer_refusal(state: NodeState, cert: PeerCertificate) -> str | None:
    """Why an otherwise known organisation is not recognised: its issuing CA may not speak
    for it (``None`` when that is not the reason)."""
    serial = cert.serial_number
    scope = getattr(cert, "issuer_scope", None)
    if not serial or scope is None:
        return None
    known = (
        serial in state.gemeenten_by_oin
        or serial in state.participants_by_serial
        or serial in state.knooppunt.spec.security.administrators
        or serial in state.knooppunt.spec.security.facade_oins
    )
    if not known:
        return None
    if not scope.may_claim(serial):
        return (
            f"The certificate carries serialNumber {serial}, but its issuing CA "
            f"({scope.subject}) is not allowed to speak for that organisation on this node."
        )
    if serial in state.knooppunt.spec.security.administrators and not scope.administers:
        return (
            f"Administrator certificates are accepted only from the node's own CA; this one "
            f"was issued by {scope.subject}."
        )
    return None


def resolve(state: NodeState, cert: PeerCertificate) -> Principal | None:
    """Map a verified certificate to a gemeente, a participant or an administrator.

    Identity is bound to the issuing CA: the subject serialNumber counts only when the CA that
    issued the certificate may speak for it (:func:`claimed_serial`); administrators only from
    the node's own CA. A participant registered by certificate fingerprint is that exact
    certificate, whoever issued it.
    """
    serial = claimed_serial(cert)
    if serial:
        gemeente = state.gemeenten_by_oin.get(serial)
        if gemeente is not None:
            return _gemeente_principal(gemeente)
    entries = list(state.participants_by_fingerprint.get(cert.fingerprint_sha256, []))
    if serial:
        entries += state.participants_by_serial.get(serial, [])
    if entries:
        first = entries[0].participant
        same = [e for e in entries if e.participant.name == first.name]
        return Principal(
            kind="participant",
            id=first.name,
            display_name=first.display_name,
            identifiers=frozenset(i for e in same for i in e.participant.identifiers),
            connectors=frozenset(e.connector for e in same),
        )
    if serial and serial in state.knooppunt.spec.security.administrators and may_administer(cert):
        return Principal(
            kind="administrator",
            id=serial,
            display_name=cert.common_name or serial,
            identifiers=frozenset(),
            connectors=frozenset(),
        )
    return None


class PrincipalCache:
    """:func:`resolve` remembered per certificate fingerprint, for one :class:`NodeState`.

    Who a certificate speaks for depends only on the certificate, the scope of its issuing CA
    in the current trust generation and the configuration, so an entry is keyed by fingerprint
    and issuer scope and is valid while the state it was resolved under is the current one; a
    new state (a reloaded configuration, a gemeente added or removed) starts an empty cache.
    Whether the certificate may still be used at all (revoked, expired, issuer no longer
    trusted) is not decided here: the TLS listener checks that on every request, against the
    current trust generation, before the application sees it.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._state: NodeState | None = None
        self._entries: dict[tuple[str, object], Principal | None] = {}

    def resolve(self, state: NodeState, cert: PeerCertificate) -> Principal | None:
        key = (cert.fingerprint_sha256, getattr(cert, "issuer_scope", None))
        with self._lock:
            if self._state is state and key in self._entries:
                return self._entries[key]
        principal = resolve(state, cert)
        with self._lock:
            if self._state is not state:
                self._state = state
                self._entries = {}
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[key] = principal
        return principal
