"""W3C trace context: accept `traceparent`, continue it, and hand it on."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    parent_span_id: str | None
    flags: str = "01"
    # The span this process opened for the work (set when OpenTelemetry spans are exported:
    # node_runtime.observability.telemetry); the processing log and `traceparent` then use its id.
    span_id: str | None = None

    def new_span(self) -> str:
        return os.urandom(8).hex()  # what secrets.token_hex(8) returns, without its wrappers

    def traceparent(self, span_id: str) -> str:
        return f"00-{self.trace_id}-{span_id}-{self.flags}"


def from_header(value: str | None) -> TraceContext:
    """Continue a valid incoming trace; start a new one for a missing or invalid header."""
    if value:
        match = _TRACEPARENT.match(value.strip().lower())
        if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
            return TraceContext(match.group(1), match.group(2), match.group(3))
    return TraceContext(secrets.token_hex(16), None)
