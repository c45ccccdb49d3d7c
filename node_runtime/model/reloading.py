"""A live configuration: state built from the resources, rebuilt when they change.

Shared by the node (its compiled state) and the façade (its routing table); an invalid change is
refused and the last good state stays in force.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from node_runtime.model.loading import ResourceSet

S = TypeVar("S")


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
        files = (
            sorted(
                p
                for p in path.rglob("*")
                if not any(part.startswith("..") for part in p.relative_to(path).parts)
            )
            if path.is_dir()
            else [path]
        )
        for f in files:
            if f.is_file() and f.suffix in (".yaml", ".yml"):
                st = f.stat()
                out.append((str(f), st.st_mtime, st.st_size))
    return tuple(out)
