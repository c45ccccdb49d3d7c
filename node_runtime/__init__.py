"""Knooppunt node runtime: intake, validation, conversion, routing, doelbinding, mailbox."""

from __future__ import annotations


def _version() -> str:
    """The version has one home, [project] version in pyproject.toml: the installed package's
    metadata, or the file itself when running from a source tree that is not installed."""
    from importlib import metadata

    try:
        return metadata.version("knooppunt")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        with pyproject.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])


__version__ = _version()
