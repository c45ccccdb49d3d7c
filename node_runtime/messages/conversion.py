"""Conversion of a sector message into the municipal JSON representation.

Two declarative forms: an XPath → JSON mapping, or an XSLT 1.0 stylesheet that emits the
XPath 3.1 XML representation of JSON (`fn:map`, `fn:array`, `fn:string`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lxml import etree

from node_runtime.messages.rules import xpath_text
from node_runtime.model.connector import Mapping

FN_NS = "http://www.w3.org/2005/xpath-functions"


class ConversionError(RuntimeError):
    """The connector's conversion failed on a message that passed validation."""


def _innermost(path: str, collections: list[str]) -> str:
    best = ""
    for coll in collections:
        if path.startswith(coll + ".") and len(coll) > len(best):
            best = coll
    return best


def _relative(path: str, prefix: str) -> list[str]:
    rest = path[len(prefix) + 1 :] if prefix else path
    return rest.split(".")


def _put(target: dict[str, Any], parts: list[str], value: Any) -> None:
    node = target
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConversionError(f"field path conflict at {part!r}")
        node = nxt
    node[parts[-1].removesuffix("[]")] = value


def _typed(raw: str, kind: str) -> Any:
    if kind == "integer":
        try:
            return int(raw)
        except ValueError as exc:
            raise ConversionError(f"{raw!r} is not an integer") from exc
    if kind == "boolean":
        return raw.strip().lower() in ("1", "true", "j", "ja", "y", "yes")
    return raw


@dataclass(frozen=True)
class _Field:
    parts: list[str]
    select: etree.XPath
    type: str


@dataclass(frozen=True)
class _Collection:
    parts: list[str]
    select: etree.XPath


class MappingConverter:
    """Compiled once per connector revision; convert() is pure and thread-safe."""

    def __init__(self, mapping: Mapping, namespaces: dict[str, str]) -> None:
        colls = sorted(mapping.collections)
        self._fields: dict[str, list[_Field]] = {}
        self._children: dict[str, list[tuple[str, _Collection]]] = {}
        for path, spec in mapping.fields.items():
            owner = _innermost(path, colls)
            self._fields.setdefault(owner, []).append(
                _Field(
                    _relative(path, owner),
                    etree.XPath(spec.select, namespaces=namespaces),
                    spec.type,
                )
            )
        for path in colls:
            parent = _innermost(path, [c for c in colls if c != path])
            self._children.setdefault(parent, []).append(
                (
                    path,
                    _Collection(
                        _relative(path, parent),
                        etree.XPath(mapping.collections[path], namespaces=namespaces),
                    ),
                )
            )

    def _build(self, element: etree._Element, scope: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self._fields.get(scope, []):
            raw = xpath_text(f.select(element))
            if raw != "":
                _put(out, f.parts, _typed(raw, f.type))
        for path, coll in self._children.get(scope, []):
            found = coll.select(element)
            items = (
                [e for e in found if isinstance(e, etree._Element)]
                if isinstance(found, list)
                else []
            )
            if items:
                _put(out, coll.parts, [self._build(item, path) for item in items])
        return out

    def convert(self, root: etree._Element) -> dict[str, Any]:
        return self._build(root, "")


def json_from_xml(node: etree._Element) -> Any:
    """Turn the XPath 3.1 XML representation of JSON into Python values."""
    tag = etree.QName(node).localname if etree.QName(node).namespace == FN_NS else None
    if tag == "map":
        out: dict[str, Any] = {}
        for child in node:
            if not isinstance(child.tag, str):
                continue
            key = child.get("key")
            if key is None:
                raise ConversionError("map entry without key")
            out[key] = json_from_xml(child)
        return out
    if tag == "array":
        return [json_from_xml(c) for c in node if isinstance(c.tag, str)]
    text = (node.text or "").strip()
    if tag == "string":
        return text
    if tag == "number":
        try:
            number = float(text)
        except ValueError as exc:
            raise ConversionError(f"not a number: {text!r}") from exc
        return int(number) if number.is_integer() else number
    if tag == "boolean":
        return text in ("true", "1")
    if tag == "null":
        return None
    raise ConversionError(f"unexpected element {node.tag!r} in JSON XML output")


class XsltConverter:
    def __init__(self, stylesheet: etree.XSLT) -> None:
        self._xslt = stylesheet

    def convert(self, root: etree._Element) -> dict[str, Any]:
        try:
            result = self._xslt(root)
        except etree.XSLTApplyError as exc:
            raise ConversionError(f"stylesheet failed: {exc}") from exc
        out_root = result.getroot()
        if out_root is None:
            raise ConversionError("stylesheet produced no output")
        value = json_from_xml(out_root)
        if not isinstance(value, dict):
            raise ConversionError("stylesheet output must be a JSON object")
        return value
