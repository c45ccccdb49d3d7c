"""Identifiers for records the intake creates (messages, deliveries, processing-log records,
conversation items)."""

from __future__ import annotations

import os
import time


def time_ordered_uuid() -> str:
    """A version 7 UUID (RFC 9562) in its canonical text form: the Unix time in milliseconds
    (48 bits), then 74 random bits from ``os.urandom``.

    Ids made one after the other sort together, so the unique index of each table they key
    takes them at its right edge: with random (version 4) ids every record of a message went
    to its own random page of the processing log's and the Merkle leaves' id indexes, and a
    commit wrote about a third more pages (decisions/time-ordered-record-ids.md). The id says
    when its record was made, to the millisecond, as the record itself does."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = raw[6] & 0x0F | 0x70  # version 7
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 9562 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
