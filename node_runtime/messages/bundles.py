"""Locate a connector's bundle of files and read them without escaping it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lxml import etree

from node_runtime.model.connector import BundleSource

BUILTIN_ROOT = Path(str(resources.files("node_runtime"))) / "connectors"


class BundleError(ValueError):
    """A bundle that cannot be used (missing, or a file outside it)."""


def bundle_dir(
    source: BundleSource, *, connector: str, origin: Path | None, config_map_root: Path
) -> Path:
    if source.builtin:
        path = BUILTIN_ROOT / source.builtin
    elif source.path:
        base = origin.parent if origin is not None else Path.cwd()
        path = (base / source.path).resolve()
    else:
        path = config_map_root / connector
    if not path.is_dir():
        raise BundleError(f"connector {connector}: bundle directory {path} does not exist")
    return path.resolve()


def inside(root: Path, relative: str) -> Path:
    """Resolve a bundle-relative path, refusing anything that leaves the bundle."""
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise BundleError(f"{relative!r} lies outside the connector bundle")
    if not candidate.is_file():
        raise BundleError(f"{relative!r} not found in the connector bundle {root}")
    return candidate


class BundleResolver(etree.Resolver):
    """Resolves xs:import/xsl:include only to files inside the bundle; never the network."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self._root = root

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        url = system_url
        if url.startswith("file://"):
            url = url[len("file://") :]
        if "://" in url:
            raise BundleError(f"network reference {system_url!r} refused")
        path = Path(url)
        target = path.resolve() if path.is_absolute() else (self._root / path).resolve()
        if target != self._root and self._root not in target.parents:
            raise BundleError(f"reference {system_url!r} lies outside the connector bundle")
        return self.resolve_filename(str(target), context)


def safe_file_parser(root: Path) -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    parser.resolvers.add(BundleResolver(root))
    return parser
