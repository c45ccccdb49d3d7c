"""Answers put together from several nodes: opaque per-node cursors and one merged page."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from node_runtime.facade.client import NodeOutcome
from node_runtime.web.problems import Problem

Item = dict[str, Any]


def decode_cursor(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise Problem.of(
            "invalid",
            "invalid-cursor",
            "Invalid cursor",
            "Pass nextAfter from the previous page unchanged.",
        ) from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str)
        and (
            isinstance(v, str)
            or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63)
        )
        for k, v in data.items()
    ):
        raise Problem.of(
            "invalid",
            "invalid-cursor",
            "Invalid cursor",
            "Pass nextAfter from the previous page unchanged.",
        )
    return data


def encode_cursor(cursor: dict[str, Any]) -> str:
    raw = json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def moment(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min


def json_list(outcome: NodeOutcome, key: str) -> tuple[list[Item], Any]:
    """(items, nextAfter) of an ok node answer; raises ValueError on a malformed one."""
    body = outcome.json()
    if not isinstance(body, dict) or not isinstance(body.get(key), list):
        raise ValueError(f"answer has no {key} list")
    return [i for i in body[key] if isinstance(i, dict)], body.get("nextAfter")


@dataclass
class MergedPage:
    items: list[Item]
    next_after: str | None
    complete: bool
    reports: dict[str, dict[str, Any]]


def merge(
    outcomes: dict[str, NodeOutcome],
    *,
    key: str,
    time_field: str,
    cursor: dict[str, Any],
    limit: int,
    tiebreak: Callable[[int, Item], int],
    position: Callable[[Item], Any],
    present: Callable[[str, Item], Item],
) -> MergedPage:
    """One page of at most ``limit`` items from every node's page, oldest first.

    Items are ordered by ``time_field``, then node name, then ``tiebreak(index, item)``; the
    cursor remembers per node the ``position`` of the last item taken from it. A node whose
    answer is malformed counts as an error, so the page says it is incomplete.
    """
    merged: list[tuple[datetime, str, int, Item]] = []
    reports: dict[str, dict[str, Any]] = {}
    more = False
    for name, outcome in outcomes.items():
        if outcome.ok:
            try:
                items, next_after = json_list(outcome, key)
            except ValueError as exc:
                outcome = NodeOutcome(
                    name, "error", f"malformed answer: {exc}", None, outcome.elapsed_ms
                )
            else:
                more = more or next_after is not None
                merged.extend(
                    (moment(item.get(time_field)), name, tiebreak(i, item), item)
                    for i, item in enumerate(items)
                )
        reports[name] = outcome.describe()
        if outcome.ok:
            reports[name]["count"] = 0
    merged.sort(key=lambda t: (t[0], t[1], t[2]))
    page, rest = merged[:limit], merged[limit:]
    new_cursor = dict(cursor)
    out: list[Item] = []
    for _moment, name, _order, item in page:
        new_cursor[name] = position(item)
        out.append(present(name, item))
        reports[name]["count"] += 1
    complete = all(r["status"] == "ok" for r in reports.values())
    return MergedPage(out, encode_cursor(new_cursor) if (more or rest) else None, complete, reports)
