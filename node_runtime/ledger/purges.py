"""The record a retention purge of the processing log leaves behind, and how to read it.

A purge deletes a prefix of the log (in commit order) and logs itself: activity `log-purge`,
detail ``{"purgedRecords": n, "throughLeaf": k}``. Verification accepts a missing record only
at or below the `throughLeaf` of a purge record whose own leaf verifies.
"""

from __future__ import annotations

import json

LOG_PURGE = "log-purge"


def purge_detail(count: int, through_leaf: int) -> str:
    return json.dumps({"purgedRecords": count, "throughLeaf": through_leaf}, separators=(",", ":"))


def through_leaf(detail: str | None) -> int | None:
    try:
        value = json.loads(detail or "")
    except ValueError:
        return None
    leaf = value.get("throughLeaf") if isinstance(value, dict) else None
    return leaf if isinstance(leaf, int) and leaf >= 0 else None
