"""Pipeline failures that map onto RFC 9457 problem details or retour messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from node_runtime.web.statuses import PROBLEM_STATUS, ProblemKind


@dataclass(frozen=True)
class Violation:
    """One concrete thing wrong with a message: which rule, where, and what."""

    rule: str
    message: str
    line: int | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        if self.path is not None:
            out["path"] = self.path
        return out


@dataclass
class Problem(Exception):
    """A refusal answered with problem details (transport-level or authorisation)."""

    status: int
    slug: str
    title: str
    detail: str
    violations: list[Violation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        kind: ProblemKind,
        slug: str,
        title: str,
        detail: str,
        violations: list[Violation] | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ) -> Problem:
        """A problem named by what went wrong; its status comes from :mod:`web.statuses`."""
        return cls(PROBLEM_STATUS[kind], slug, title, detail, violations or [], extra or {})

    def __str__(self) -> str:
        return f"{self.status} {self.slug}: {self.detail}"

    def body(self, *, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f"https://knooppunt.nl/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        if self.violations:
            out["errors"] = [v.as_dict() for v in self.violations]
        out.update(self.extra)
        return out
