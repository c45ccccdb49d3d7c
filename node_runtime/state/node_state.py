"""The node's configuration as compiled, ready-to-serve state, swapped atomically on change."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from node_runtime.messages.compiled import CompiledConnector, ConnectorCache
from node_runtime.model.connector import Participant, SectorConnector
from node_runtime.model.gemeente import Gemeente, Subscription
from node_runtime.model.knooppunt import Knooppunt
from node_runtime.model.loading import ResourceSet

S = TypeVar("S")


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


class StateHolder(Generic[S]):
    """Holds the current compiled state; reload() swaps it atomically, keeping the old on error.

    `build(resources, generation)` turns the loaded resources into the state (a node's, or the
    façade's).
    """

    def __init__(
        self,
        loader: Callable[[], ResourceSet],
        build: Callable[[ResourceSet, int], S],
        *,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self._loader = loader
        self._build = build
        self._lock = threading.Lock()
        self._on_error = on_error
        self._generation = 0
        self._state = build(loader(), 0)

    @property
    def current(self) -> S:
        return self._state

    def reload(self) -> bool:
        """Rebuild from the source. Returns True when a new state is in force."""
        with self._lock:
            try:
                state = self._build(self._loader(), self._generation + 1)
            except Exception as exc:  # noqa: BLE001 - keep serving the last good state
                if self._on_error is not None:
                    self._on_error(exc)
                return False
            self._generation += 1
            self._state = state
            return True


async def watch_files(
    paths: list[Path],
    *,
    interval: float,
    holder: StateHolder[Any],
    ticks: list[Callable[[], None]],
    on_reloaded: Callable[[int], None],
) -> None:
    """Every interval: run the ticks, and reload the holder when a resource file changed."""
    fingerprint = files_fingerprint(paths)
    while True:
        await asyncio.sleep(interval)
        for tick in list(ticks):
            await asyncio.to_thread(tick)
        try:
            current = files_fingerprint(paths)
        except OSError:
            continue
        if current != fingerprint:
            fingerprint = current
            if await asyncio.to_thread(holder.reload):
                on_reloaded(holder.current.generation)


def files_fingerprint(paths: list[Path]) -> tuple[tuple[str, float, int], ...]:
    """A cheap change detector for local resource files (path, mtime, size)."""
    out: list[tuple[str, float, int]] = []
    for path in paths:
        files = (sorted(p for p in path.rglob("*")
                        if not any(part.startswith("..") for part in p.relative_to(path).parts))
                 if path.is_dir() else [path])
        for f in files:
            if f.is_file() and f.suffix in (".yaml", ".yml"):
                st = f.stat()
                out.append((str(f), st.st_mtime, st.st_size))
    return tuple(out)
