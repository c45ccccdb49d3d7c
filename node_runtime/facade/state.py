"""What the façade knows: the nodes (Knooppunt resources with an endpoint), their connectors
and every gemeente with its subscriptions — read from the same resource files as the nodes and
swapped atomically when they change."""

from __future__ import annotations

from dataclasses import dataclass, field

from node_runtime.model.connector import SectorConnector
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt
from node_runtime.model.loading import ResourceSet


class FacadeStateError(ValueError):
    """The resources do not describe a servable façade."""


@dataclass(frozen=True)
class NodeEntry:
    """A node the façade can reach."""

    name: str
    display_name: str
    endpoint: str
    connectors: tuple[str, ...]
    max_message_bytes: int
    knooppunt: Knooppunt

    def url(self, path: str) -> str:
        return self.endpoint.rstrip("/") + path


@dataclass(frozen=True)
class FacadeState:
    nodes: dict[str, NodeEntry]
    connectors: dict[str, SectorConnector]
    gemeenten_by_oin: dict[str, Gemeente]
    gemeenten_by_code: dict[str, Gemeente]
    nodes_by_connector: dict[str, tuple[str, ...]] = field(default_factory=dict)
    generation: int = 0

    def nodes_for(self, gemeente: Gemeente) -> list[NodeEntry]:
        """The nodes serving at least one of the gemeente's subscriptions (name order)."""
        wanted = {s.connector for s in gemeente.spec.subscriptions}
        return [n for _, n in sorted(self.nodes.items()) if wanted & set(n.connectors)]

    def nodes_serving_connector(self, connector: str) -> list[NodeEntry]:
        return [self.nodes[name] for name in self.nodes_by_connector.get(connector, ())]


def build_facade_state(resources: ResourceSet, *, generation: int = 0) -> FacadeState:
    nodes: dict[str, NodeEntry] = {}
    by_connector: dict[str, list[str]] = {}
    for name, knooppunt in sorted(resources.knooppunten.items()):
        spec = knooppunt.spec
        if not spec.endpoint:
            continue
        pinned = []
        for pin in spec.connectors:
            connector = resources.connectors.get(pin.name)
            if connector is None:
                raise FacadeStateError(f"Knooppunt {name}: connector {pin.name!r} not found")
            if pin.revision is not None and pin.revision != connector.spec.revision:
                raise FacadeStateError(
                    f"Knooppunt {name}: connector {pin.name} is pinned to revision "
                    f"{pin.revision} but revision {connector.spec.revision} is available"
                )
            pinned.append(pin.name)
            by_connector.setdefault(pin.name, []).append(name)
        nodes[name] = NodeEntry(
            name=name,
            display_name=spec.display_name,
            endpoint=spec.endpoint,
            connectors=tuple(pinned),
            max_message_bytes=spec.limits.max_message_bytes,
            knooppunt=knooppunt,
        )
    by_oin: dict[str, Gemeente] = {}
    by_code: dict[str, Gemeente] = {}
    for gemeente in resources.gemeenten.values():
        code, oin = gemeente.spec.gemeentecode, gemeente.spec.oin
        if code in by_code:
            raise FacadeStateError(
                f"gemeentecode {code} used by {by_code[code].name} and {gemeente.name}"
            )
        if oin in by_oin:
            raise FacadeStateError(f"OIN {oin} used by {by_oin[oin].name} and {gemeente.name}")
        by_code[code] = gemeente
        by_oin[oin] = gemeente
    return FacadeState(
        nodes=nodes,
        connectors=dict(resources.connectors),
        gemeenten_by_oin=by_oin,
        gemeenten_by_code=by_code,
        nodes_by_connector={k: tuple(v) for k, v in by_connector.items()},
        generation=generation,
    )
