"""Who is calling: an organisation identified by its verified certificate, never a header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from node_runtime.model.gemeente import Gemeente
from node_runtime.state import NodeState

PrincipalKind = Literal["gemeente", "participant", "administrator"]


class PeerCertificate(Protocol):
    """What the node needs from a verified client certificate."""

    @property
    def serial_number(self) -> str | None: ...

    @property
    def fingerprint_sha256(self) -> str: ...

    @property
    def common_name(self) -> str | None: ...


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


def resolve(state: NodeState, cert: PeerCertificate) -> Principal | None:
    """Map a verified certificate to a gemeente, a participant or an administrator."""
    serial = cert.serial_number
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
    if serial and serial in state.knooppunt.spec.security.administrators:
        return Principal(
            kind="administrator",
            id=serial,
            display_name=cert.common_name or serial,
            identifiers=frozenset(),
            connectors=frozenset(),
        )
    return None
