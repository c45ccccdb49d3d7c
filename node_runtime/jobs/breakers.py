"""A circuit breaker per receiving endpoint: one dead gemeente does not slow the others."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None


class CircuitBreakers:
    def __init__(
        self,
        *,
        threshold: Callable[[], int],
        cooldown: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, endpoint: str) -> State:
        c = self._circuits.get(endpoint)
        if c is None or c.opened_at is None:
            return "closed"
        if self._clock() - c.opened_at >= self._cooldown():
            return "half-open"
        return "open"

    def success(self, endpoint: str) -> None:
        self._circuits.pop(endpoint, None)

    def failure(self, endpoint: str) -> bool:
        """Count a failure; True when this failure (re)opens the circuit."""
        c = self._circuits.setdefault(endpoint, _Circuit())
        c.failures += 1
        if c.opened_at is not None:  # a failed half-open trial: open again
            c.opened_at = self._clock()
            return True
        if c.failures >= self._threshold():
            c.opened_at = self._clock()
            return True
        return False

    def open_endpoints(self) -> list[str]:
        return [e for e in self._circuits if self.state(e) == "open"]

    def half_open_endpoints(self) -> list[str]:
        return [e for e in self._circuits if self.state(e) == "half-open"]
