"""How the shadow's outcome differs from the live one, in paths and codes, never values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from node_runtime.shadow.evaluation import Outcome

Kind = Literal["would-be-rejected", "would-be-accepted", "other-retourcodes", "different-fields"]


@dataclass(frozen=True)
class Difference:
    kind: Kind
    message_type: str
    retourcodes: tuple[tuple[str, str], ...] = ()  # the shadow's (code, element path)
    live_retourcodes: tuple[tuple[str, str], ...] = ()
    missing_fields: tuple[str, ...] = ()  # live fields the shadow does not produce
    added_fields: tuple[str, ...] = ()  # shadow fields live does not produce
    changed_fields: tuple[str, ...] = ()  # same path, other value (the value is not kept)


def compare(live: Outcome, shadow: Outcome) -> Difference | None:
    mt = live.message_type
    if live.accepted and not shadow.accepted:
        return Difference("would-be-rejected", mt, retourcodes=shadow.retourcodes)
    if not live.accepted and shadow.accepted:
        return Difference("would-be-accepted", mt, live_retourcodes=live.retourcodes)
    if not live.accepted:
        if live.retourcodes != shadow.retourcodes:
            return Difference(
                "other-retourcodes",
                mt,
                retourcodes=shadow.retourcodes,
                live_retourcodes=live.retourcodes,
            )
        return None
    missing = _paths(set(live.fields) - set(shadow.fields))
    added = _paths(set(shadow.fields) - set(live.fields))
    changed = _paths(
        {p for p in set(live.fields) & set(shadow.fields) if live.fields[p] != shadow.fields[p]}
    )
    if missing or added or changed:
        return Difference(
            "different-fields",
            mt,
            missing_fields=missing,
            added_fields=added,
            changed_fields=changed,
        )
    return None


def _paths(paths: set[str]) -> tuple[str, ...]:
    """Field paths with list positions folded: producten[0].code and [1] → producten[].code."""
    return tuple(sorted({re.sub(r"\[\d+\]", "[]", p) for p in paths}))
