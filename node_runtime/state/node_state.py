"""The node's configuration as compiled, ready-to-serve state (held by model.reloading)."""

from __future__ import annotations

from dataclasses import dataclass, field

from node_runtime.messages.compiled import CompiledConnector, ConnectorCache
from node_runtime.model.connector import Participant, SectorConnector
from node_runtime.model.gemeente import Gemeente, Subscription
from node_runtime.model.knooppunt import Knooppunt
from node_runtime.model.loading import ResourceSet


class StateError(ValueError):
    """The resources do not describe a servable node."""


@dataclass(frozen=True)
class ParticipantEntry:
    connector: str
    participant: Participant


@dataclass(frozen=True)
class NodeState:
    knooppunt: Knooppunt
    connectors: dict[str, CompiledConnector]
    gemeenten_by_code: dict[str, Gemeente]
    gemeenten_by_oin: dict[str, Gemeente]
    participants_by_serial: dict[str, list[ParticipantEntry]] = field(default_factory=dict)
    participants_by_fingerprint: dict[str, list[ParticipantEntry]] = field(default_factory=dict)
    generation: int = 0

    @property
    def name(self) -> str:
        return self.knooppunt.name

    def subscriptions(self, gemeentecode: str, connector: str, message: str) -> list[Subscription]:
        """The gemeente's subscriptions that entitle it to this message type."""
        gemeente = self.gemeenten_by_code.get(gemeentecode)
        compiled = self.connectors.get(connector)
        if gemeente is None or compiled is None:
            return []
        out = []
        for sub in gemeente.spec.subscriptions:
            if sub.connector != connector:
                continue
            purpose = compiled.purposes.get(sub.purpose)
            if purpose is None or message not in purpose.spec.messages:
                continue
            if sub.messages and message not in sub.messages:
                continue
            out.append(sub)
        return out

    def serves(self, gemeentecode: str) -> bool:
        gemeente = self.gemeenten_by_code.get(gemeentecode)
        return gemeente is not None and any(
            s.connector in self.connectors for s in gemeente.spec.subscriptions
        )


def build_state(
    resources: ResourceSet, *, node: str, cache: ConnectorCache, generation: int = 0
) -> NodeState:
    knooppunt = resources.knooppunten.get(node)
    if knooppunt is None:
        known = ", ".join(sorted(resources.knooppunten)) or "none"
        raise StateError(f"Knooppunt {node!r} not found (found: {known})")
    connectors: dict[str, CompiledConnector] = {}
    for pin in knooppunt.spec.connectors:
        resource: SectorConnector | None = resources.connectors.get(pin.name)
        if resource is None:
            raise StateError(f"Knooppunt {node}: connector {pin.name!r} not found")
        if pin.revision is not None and pin.revision != resource.spec.revision:
            raise StateError(
                f"Knooppunt {node}: connector {pin.name} is pinned to revision {pin.revision} "
                f"but revision {resource.spec.revision} is available"
            )
        connectors[pin.name] = cache.get(resource, resources.origin_of("SectorConnector", pin.name))
    by_code: dict[str, Gemeente] = {}
    by_oin: dict[str, Gemeente] = {}
    for gemeente in resources.gemeenten.values():
        if not any(s.connector in connectors for s in gemeente.spec.subscriptions):
            continue
        code, oin = gemeente.spec.gemeentecode, gemeente.spec.oin
        if code in by_code:
            raise StateError(
                f"gemeentecode {code} used by {by_code[code].name} and {gemeente.name}"
            )
        if oin in by_oin:
            raise StateError(f"OIN {oin} used by {by_oin[oin].name} and {gemeente.name}")
        for sub in gemeente.spec.subscriptions:
            if (
                sub.connector in connectors
                and sub.purpose not in connectors[sub.connector].purposes
            ):
                raise StateError(
                    f"Gemeente {gemeente.name}: purpose {sub.purpose!r} is not declared by "
                    f"connector {sub.connector}"
                )
        by_code[code] = gemeente
        by_oin[oin] = gemeente
    by_serial: dict[str, list[ParticipantEntry]] = {}
    by_fp: dict[str, list[ParticipantEntry]] = {}
    for compiled in connectors.values():
        for participant in compiled.resource.spec.participants:
            entry = ParticipantEntry(compiled.name, participant)
            if participant.certificate.serial_number:
                by_serial.setdefault(participant.certificate.serial_number, []).append(entry)
            if participant.certificate.fingerprint_sha256:
                by_fp.setdefault(participant.certificate.fingerprint_sha256, []).append(entry)
    return NodeState(knooppunt, connectors, by_code, by_oin, by_serial, by_fp, generation)
