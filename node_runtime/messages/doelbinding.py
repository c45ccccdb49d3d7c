"""Purpose binding: release only the field paths a purpose allows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class FieldFilter:
    """Keeps a field when its path, or an ancestor's path, is allowed."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(allowed)
        ancestors: set[str] = set()
        for path in self._allowed:
            parts = path.split(".")
            for i in range(1, len(parts)):
                ancestors.add(".".join(parts[:i]))
        self._ancestors = frozenset(ancestors)

    def apply(self, content: dict[str, Any]) -> dict[str, Any]:
        return self._object(content, "")

    def _object(self, obj: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in obj.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, list):
                path += "[]"
            if path in self._allowed:
                out[key] = value
            elif path in self._ancestors:
                kept = self._descend(value, path)
                if kept not in ({}, []):
                    out[key] = kept
        return out

    def _descend(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return self._object(value, path)
        if isinstance(value, list):
            items = [self._object(v, path) for v in value if isinstance(v, dict)]
            return [i for i in items if i]
        return {}


def paths_of(content: Any, prefix: str = "") -> set[str]:
    """Every field path present in a converted document (for tests and validation)."""
    found: set[str] = set()
    if isinstance(content, dict):
        for key, value in content.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(value, list):
                path += "[]"
            found.add(path)
            found |= paths_of(value, path)
    elif isinstance(content, list):
        for item in content:
            found |= paths_of(item, prefix)
    return found
