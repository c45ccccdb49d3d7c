"""Conversion of a sector message into the municipal JSON representation.

Two declarative forms: an XPath → JSON mapping, or an XSLT 1.0 stylesheet that emits the
XPath 3.1 XML representation of JSON (`fn:map`, `fn:array`, `fn:string`, ...).
"""

from __future__ import annotations

import re
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


def _put(target: dict[str, Any], parents: tuple[str, ...], key: str, value: Any) -> None:
    node = target
    for part in parents:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConversionError(f"field path conflict at {part!r}")
        node = nxt
    node[key] = value


def _typed(raw: str, kind: str) -> Any:
    if kind == "integer":
        try:
            return int(raw)
        except ValueError as exc:
            raise ConversionError(f"{raw!r} is not an integer") from exc
    if kind == "boolean":
        return raw.strip().lower() in ("1", "true", "j", "ja", "y", "yes")
    return raw


def _text(element: etree._Element) -> str:
    """The string value of one element, as :func:`xpath_text` gives it for ``[element]``."""
    if not len(element):
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()


class _Trie:
    """The child steps of a scope's simple paths, merged: one walk over the scope's subtree
    finds what each path selects (fields: the first node in document order; collections:
    every node, in document order), instead of one XPath evaluation per path."""

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.fields: list[int] = []
        self.collections: list[int] = []

    def add(
        self, tags: tuple[str, ...], *, field: int | None = None, collection: int | None = None
    ) -> None:
        node = self
        for tag in tags:
            node = node.children.setdefault(tag, _Trie())
        if field is not None:
            node.fields.append(field)
        if collection is not None:
            node.collections.append(collection)

    def walk(
        self,
        element: etree._Element,
        first: list[etree._Element | None],
        items: list[list[etree._Element]],
    ) -> None:
        """Pre-order over the matching children: document order (a comment's tag is not a
        string, so it matches no step)."""
        children = self.children
        for child in element:
            node = children.get(child.tag)
            if node is None:
                continue
            for index in node.fields:
                if first[index] is None:
                    first[index] = child
            for index in node.collections:
                items[index].append(child)
            if node.children:
                node.walk(child, first, items)


# A relative XPath of plain child steps with (prefixed) names: 'a:B/a:C'. Anything else
# (predicates, axes, functions, '//', '.', '*', attributes, whitespace) is evaluated by XPath.
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_STEP = re.compile(rf"(?:({_NAME}):)?({_NAME})")
# Unprefixed words XPath also knows as operators or node types: left to XPath, to be safe.
_WORDS = frozenset({"and", "or", "div", "mod", "node", "text", "comment", "processing-instruction"})


def child_steps(expr: str, namespaces: dict[str, str]) -> tuple[str, ...] | None:
    """The element tags (Clark notation) of ``expr`` when it is a path of plain child steps
    whose prefixes are declared; otherwise None."""
    tags: list[str] = []
    for step in expr.split("/"):
        match = _STEP.fullmatch(step)
        if match is None:
            return None
        prefix, local = match.groups()
        if prefix is None:
            if local in _WORDS:
                return None
            tags.append(local)  # XPath 1.0: an unprefixed name is in no namespace
        elif namespaces.get(prefix) and not set("{}") & set(namespaces[prefix]):
            tags.append(f"{{{namespaces[prefix]}}}{local}")
        else:
            return None
    return tuple(tags)


@dataclass(frozen=True)
class _Field:
    parents: tuple[str, ...]
    key: str
    type: str
    select: etree.XPath
    steps: int | None  # index into the scope's walk results, or None: evaluated by XPath


@dataclass(frozen=True)
class _Collection:
    path: str
    parents: tuple[str, ...]
    key: str
    select: etree.XPath
    steps: int | None


@dataclass
class _Scope:
    fields: list[_Field]
    collections: list[_Collection]
    trie: _Trie
    walked_fields: int = 0
    walked_collections: int = 0


class MappingConverter:
    """Compiled once per connector revision; convert() is pure and thread-safe.

    Per scope (the message, or one item of a collection) the paths that are plain child
    steps are found in one walk over the scope's children; other paths are XPath
    evaluations. The result is the same as evaluating every path with XPath (first node's
    string value for a field, every element in document order for a collection)."""

    def __init__(self, mapping: Mapping, namespaces: dict[str, str]) -> None:
        colls = sorted(mapping.collections)
        self._scopes: dict[str, _Scope] = {}

        def scope(name: str) -> _Scope:
            return self._scopes.setdefault(name, _Scope([], [], _Trie()))

        for path, spec in mapping.fields.items():
            owner = _innermost(path, colls)
            parts = _relative(path, owner)
            select = etree.XPath(spec.select, namespaces=namespaces)
            target = scope(owner)
            tags = child_steps(spec.select, namespaces)
            index = None
            if tags is not None:
                index = target.walked_fields
                target.walked_fields += 1
                target.trie.add(tags, field=index)
            target.fields.append(
                _Field(tuple(parts[:-1]), parts[-1].removesuffix("[]"), spec.type, select, index)
            )
        for path in colls:
            parent = _innermost(path, [c for c in colls if c != path])
            parts = _relative(path, parent)
            expr = mapping.collections[path]
            select = etree.XPath(expr, namespaces=namespaces)
            target = scope(parent)
            tags = child_steps(expr, namespaces)
            index = None
            if tags is not None:
                index = target.walked_collections
                target.walked_collections += 1
                target.trie.add(tags, collection=index)
            target.collections.append(
                _Collection(path, tuple(parts[:-1]), parts[-1].removesuffix("[]"), select, index)
            )

    def _build(self, element: etree._Element, scope_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        scope = self._scopes.get(scope_name)
        if scope is None:
            return out
        first: list[etree._Element | None] = [None] * scope.walked_fields
        items: list[list[etree._Element]] = [[] for _ in range(scope.walked_collections)]
        if scope.trie.children:
            scope.trie.walk(element, first, items)
        for f in scope.fields:
            if f.steps is None:
                raw = xpath_text(f.select(element))
            else:
                node = first[f.steps]
                raw = "" if node is None else _text(node)
            if raw != "":
                _put(out, f.parents, f.key, _typed(raw, f.type))
        for coll in scope.collections:
            if coll.steps is None:
                found = coll.select(element)
                selected = (
                    [e for e in found if isinstance(e, etree._Element)]
                    if isinstance(found, list)
                    else []
                )
            else:
                selected = items[coll.steps]
            if selected:
                _put(
                    out, coll.parents, coll.key, [self._build(item, coll.path) for item in selected]
                )
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
