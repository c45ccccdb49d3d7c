"""Read the same Kubernetes-style YAML a platform team would `kubectl apply`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from node_runtime.model import KINDS
from node_runtime.model.connector import SectorConnector
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt
from node_runtime.model.meta import API_VERSION, Resource


class ResourceError(ValueError):
    """A resource file that cannot be used; the message names file, document and field."""


@dataclass(frozen=True)
class Sourced:
    """A resource and the file it was read from (for resolving relative bundle paths)."""

    resource: Resource
    origin: Path | None


@dataclass
class ResourceSet:
    knooppunten: dict[str, Knooppunt] = field(default_factory=dict)
    connectors: dict[str, SectorConnector] = field(default_factory=dict)
    gemeenten: dict[str, Gemeente] = field(default_factory=dict)
    origins: dict[tuple[str, str], Path] = field(default_factory=dict)

    def add(self, item: Sourced) -> None:
        res = item.resource
        target: dict[str, Any]
        if isinstance(res, Knooppunt):  # one dict per kind, keyed by name
            target = self.knooppunten
        elif isinstance(res, SectorConnector):
            target = self.connectors
        elif isinstance(res, Gemeente):
            target = self.gemeenten
        else:  # pragma: no cover - KINDS is closed
            raise ResourceError(f"unsupported kind {res.kind}")
        if res.name in target:
            raise ResourceError(f"duplicate {res.kind} {res.name!r}")
        target[res.name] = res  # type: ignore[assignment]
        if item.origin is not None:
            self.origins[(res.kind, res.name)] = item.origin

    def origin_of(self, kind: str, name: str) -> Path | None:
        return self.origins.get((kind, name))


def parse_document(doc: Any, *, where: str) -> Resource | None:
    """Turn one YAML document into a typed resource; None for foreign kinds (ignored)."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ResourceError(f"{where}: a resource must be a mapping")
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION or kind not in KINDS:
        return None
    try:
        return KINDS[kind].model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        name = (doc.get("metadata") or {}).get("name", "?")
        raise ResourceError(f"{where}: {kind} {name!r} is invalid: {problems}") from exc


def _yaml_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # A mounted ConfigMap holds each file twice: `name` and `..<timestamp>/name`
            # (behind the `..data` link). Only the visible names count.
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in (".yaml", ".yml")
                    and not any(part.startswith("..") for part in p.relative_to(path).parts)
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ResourceError(f"{path}: no such file or directory")
    return files


def load_paths(paths: Iterable[Path]) -> ResourceSet:
    """Load every knooppunt.nl resource from the given files and directories."""
    result = ResourceSet()
    for file in _yaml_files(paths):
        try:
            docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            raise ResourceError(f"{file}: not valid YAML: {exc}") from exc
        for index, doc in enumerate(docs):
            res = parse_document(doc, where=f"{file} (document {index + 1})")
            if res is not None:
                result.add(Sourced(res, file.resolve()))
    return result
