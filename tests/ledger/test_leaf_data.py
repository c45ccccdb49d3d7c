"""The leaf data of a processing-log record stays byte for byte what it was: every stored tree
was built from it, and a gemeente recomputes it from the record the API returns."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from node_runtime.ledger import leaves

_REFERENCE_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def reference_instant(value: datetime | str) -> str:
    """``instant`` as it was before session 7 (da77897)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def reference_leaf_data(row: dict[str, Any]) -> bytes:
    values = [reference_instant(row[c]) if c == "timestamp" else row[c] for c, _ in leaves.FIELDS]
    return _REFERENCE_ENCODER.encode([leaves.VERSION, *values]).encode("utf-8")


def _row(rng: random.Random, timestamp: datetime | str) -> dict[str, Any]:
    texts = [
        "wmo-toewijzing",
        'quote " and backslash \\ inside',
        "line\nbreak\ttab\x00nul\x1funit",
        "niet-ASCII: één café ß → 😀",
        "",
        "x" * 300,
    ]
    row: dict[str, Any] = {c: rng.choice([*texts, None]) for c, _ in leaves.FIELDS}
    row["id"] = f"{rng.getrandbits(128):032x}"
    row["timestamp"] = timestamp
    row["seq"] = rng.randrange(1, 10**9)  # a stored row carries it; it is not hashed
    return row


def _timestamps(rng: random.Random) -> list[datetime | str]:
    base = datetime(2026, 12, 2, 18, 45, 1, 234567, tzinfo=UTC)
    out: list[datetime | str] = []
    for _ in range(50):
        moment = base + timedelta(
            seconds=rng.randrange(-(10**9), 10**9), microseconds=rng.randrange(10**6)
        )
        out += [
            moment,
            moment.replace(microsecond=0),
            moment.replace(tzinfo=None),
            moment.astimezone(timezone(timedelta(hours=1))),
            moment.astimezone(timezone(timedelta(hours=-9, minutes=-30))),
            moment.astimezone(ZoneInfo("Europe/Amsterdam")),
            moment.isoformat(),
            moment.astimezone(timezone(timedelta(hours=2))).isoformat(),
            moment.replace(tzinfo=None).isoformat(),
        ]
    out += [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    return out


def test_leaf_data_is_byte_for_byte_the_reference() -> None:
    rng = random.Random(14)
    for timestamp in _timestamps(rng):
        row = _row(rng, timestamp)
        assert leaves.leaf_data(row) == reference_leaf_data(row), row
        assert leaves.instant(timestamp) == reference_instant(timestamp), timestamp


def test_leaf_hashes_of_known_records_are_unchanged() -> None:
    """A known answer over all those records, computed with leaves.py of da77897."""
    rng = random.Random(7)
    digest = hashlib.sha256()
    for timestamp in _timestamps(rng):
        digest.update(leaves.record_leaf_hash(_row(rng, timestamp)))
    assert digest.hexdigest() == KNOWN_DIGEST


KNOWN_DIGEST = "55dc0e94b37806e622fa7b79c15a0592feaed39dac752afc9326711b376d8cc8"
