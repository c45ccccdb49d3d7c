"""Random identifiers for records the intake creates (processing-log records, deliveries)."""

from __future__ import annotations

import os


def random_uuid() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())``:
    the same 122 random bits from ``os.urandom``, without building a ``uuid.UUID``."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
