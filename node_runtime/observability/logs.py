"""Structured JSON logs that never carry personal data in plain text."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Nine-digit runs (a BSN) are masked wherever they appear, as a last line of defence.
_BSN_LIKE = re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])")
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# json.dumps(..., default=str) builds an encoder per call; one encoder gives the same text.
_encode = json.JSONEncoder(default=str).encode


def redact(text: str) -> str:
    return _BSN_LIKE.sub("*********", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return _encode(out)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
