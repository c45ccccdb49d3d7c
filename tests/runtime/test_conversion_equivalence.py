"""The mapping conversion gives the same JSON as evaluating each path with XPath.

The converter finds plain child-step paths in one walk per scope (messages/conversion.py);
these tests hold it to the output of the engine it replaced: the JSON of every example
message recorded before the change (data/conversion/), and a copy of the old per-path XPath
engine on many variants of those messages (elements removed, repeated, emptied, given
children or comments).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from node_runtime.messages.compiled import CompiledMessageType, compile_connector
from node_runtime.messages.conversion import ConversionError, MappingConverter, child_steps
from node_runtime.messages.parsing import parse_message
from node_runtime.messages.rules import xpath_text
from node_runtime.model.connector import Mapping
from node_runtime.model.loading import load_paths

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "data" / "conversion"
CONNECTORS = [REPO / "examples" / "iwmo", REPO / "tests" / "facade" / "data" / "vroegsignalering"]


def _examples() -> Iterator[tuple[Path, CompiledMessageType, etree._Element]]:
    for directory in CONNECTORS:
        resources = load_paths([directory / "connector.yaml"])
        (connector,) = resources.connectors.values()
        compiled = compile_connector(
            connector,
            origin=resources.origin_of("SectorConnector", connector.name),
            config_map_root=Path("/nonexistent"),
        )
        for path in sorted((directory / "messages").glob("*.xml")):
            root = parse_message(path.read_bytes()).getroot()
            mt = compiled.identify(root)
            if mt is not None and isinstance(mt.converter, MappingConverter):
                yield path, mt, root


EXAMPLES = list(_examples())


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1) + "\n"


def test_every_converted_example_has_a_recorded_output() -> None:
    assert len(EXAMPLES) == 9
    assert sorted(p.stem for p, _, _ in EXAMPLES) == sorted(p.stem for p in GOLDEN.glob("*.json"))


@pytest.mark.parametrize("path,mt,root", EXAMPLES, ids=[p.stem for p, _, _ in EXAMPLES])
def test_example_converts_byte_for_byte_as_before(
    path: Path, mt: CompiledMessageType, root: etree._Element
) -> None:
    assert mt.converter is not None
    assert _dump(mt.converter.convert(root)) == (GOLDEN / f"{path.stem}.json").read_text()


# -- the engine the walk replaced: one XPath evaluation per path and scope --------------------


def _reference(mapping: Mapping, namespaces: dict[str, str], root: etree._Element) -> Any:
    colls = sorted(mapping.collections)

    def innermost(path: str, candidates: list[str]) -> str:
        best = ""
        for coll in candidates:
            if path.startswith(coll + ".") and len(coll) > len(best):
                best = coll
        return best

    def relative(path: str, prefix: str) -> list[str]:
        return (path[len(prefix) + 1 :] if prefix else path).split(".")

    def put(target: dict[str, Any], parts: list[str], value: Any) -> None:
        node = target
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConversionError(f"field path conflict at {part!r}")
            node = nxt
        node[parts[-1].removesuffix("[]")] = value

    def typed(raw: str, kind: str) -> Any:
        if kind == "integer":
            try:
                return int(raw)
            except ValueError as exc:
                raise ConversionError(f"{raw!r} is not an integer") from exc
        if kind == "boolean":
            return raw.strip().lower() in ("1", "true", "j", "ja", "y", "yes")
        return raw

    def build(element: etree._Element, scope: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, spec in mapping.fields.items():
            if innermost(path, colls) != scope:
                continue
            raw = xpath_text(etree.XPath(spec.select, namespaces=namespaces)(element))
            if raw != "":
                put(out, relative(path, scope), typed(raw, spec.type))
        for path in colls:
            if innermost(path, [c for c in colls if c != path]) != scope:
                continue
            found = etree.XPath(mapping.collections[path], namespaces=namespaces)(element)
            items = [e for e in found if isinstance(e, etree._Element)]
            if items:
                put(out, relative(path, scope), [build(item, path) for item in items])
        return out

    return build(root, "")


def _outcome(convert: Callable[[etree._Element], Any], doc: etree._Element) -> str:
    try:
        return _dump(convert(doc))
    except ConversionError as exc:
        return f"ConversionError: {exc}"


def _variants(root: etree._Element) -> Iterator[tuple[str, etree._Element]]:
    """The message itself, and per element: removed, repeated, emptied, with a child element
    in front of its text, with comments around and inside it."""
    yield "as is", root
    count = sum(1 for _ in root.iter())
    for n in range(1, count):

        def at(doc: etree._Element, n: int = n) -> etree._Element:
            return list(doc.iter())[n]

        doc = copy.deepcopy(root)
        target = at(doc)
        parent = target.getparent()
        assert parent is not None
        parent.remove(target)
        yield f"{n} removed", doc

        doc = copy.deepcopy(root)
        target = at(doc)
        target.addnext(copy.deepcopy(target))
        yield f"{n} repeated", doc

        doc = copy.deepcopy(root)
        target = at(doc)
        twin = copy.deepcopy(target)
        for child in list(twin):
            twin.remove(child)
        twin.text = "  x\u00a0 "
        target.addprevious(twin)
        yield f"{n} repeated before, other text", doc

        doc = copy.deepcopy(root)
        target = at(doc)
        for child in list(target):
            target.remove(child)
        target.text = None
        yield f"{n} emptied", doc

        doc = copy.deepcopy(root)
        target = at(doc)
        extra = etree.SubElement(target, target.tag)
        extra.text = " 12 "
        extra.tail = "3 "
        yield f"{n} child element", doc

        doc = copy.deepcopy(root)
        target = at(doc)
        target.addprevious(etree.Comment("c"))
        target.insert(0, etree.Comment("d"))
        target[0].tail = " 4"
        yield f"{n} comments", doc


@pytest.mark.parametrize("path,mt,root", EXAMPLES, ids=[p.stem for p, _, _ in EXAMPLES])
def test_walk_equals_per_path_xpath_on_variants(
    path: Path, mt: CompiledMessageType, root: etree._Element
) -> None:
    converter = mt.converter
    assert converter is not None and mt.spec.conversion is not None
    mapping = mt.spec.conversion.mapping
    assert mapping is not None
    ns = _namespaces_of(path)
    checked = 0
    for label, doc in _variants(root):
        expected = _outcome(lambda d: _reference(mapping, ns, d), doc)
        assert _outcome(converter.convert, doc) == expected, label
        checked += 1
    assert checked > 50


def _namespaces_of(path: Path) -> dict[str, str]:
    resources = load_paths([path.parent.parent / "connector.yaml"])
    (connector,) = resources.connectors.values()
    return dict(connector.spec.namespaces)


def test_paths_beyond_plain_steps_are_still_xpath() -> None:
    ns = {"m": "urn:m", "e": ""}
    assert child_steps("m:A/m:B", ns) == ("{urn:m}A", "{urn:m}B")
    assert child_steps("A", ns) == ("A",)
    for expr in (
        "m:A[1]",
        "m:A//m:B",
        "./m:A",
        "../m:A",
        "m:*",
        "@m:a",
        "m:A/text()",
        "string(m:A)",
        "m:A | m:B",
        "x:A",
        "e:A",
        "m:A /m:B",
        "/m:A",
        "child::m:A",
        "div",
        "m:A/text",
    ):
        assert child_steps(expr, ns) is None, expr
    mapping = Mapping.model_validate(
        {
            "collections": {"c[]": "m:C[m:B]", "d[]": "m:C"},
            "fields": {
                "first": {"select": "m:C[2]/m:B"},
                "count": {"select": "count(m:C)", "type": "integer"},
                "c[].b": {"select": "m:B"},
                "c[].p": {"select": "m:P/m:D"},
                "d[].all": {"select": "m:P[last()]/m:D"},
            },
        }
    )
    doc = etree.fromstring(
        b"<m:R xmlns:m='urn:m'><m:C><m:B>1</m:B><m:P><m:D>2020</m:D></m:P>"
        b"<m:P><m:D>2021</m:D></m:P></m:C><m:C><m:B>2</m:B></m:C><m:C/></m:R>"
    )
    out = MappingConverter(mapping, {"m": "urn:m"}).convert(doc)
    assert out == _reference(mapping, {"m": "urn:m"}, doc)
    assert out == {
        "first": "2",
        "count": 3,
        "c": [{"b": "1", "p": "2020"}, {"b": "2"}],
        "d": [{"all": "2021"}, {}, {}],
    }
