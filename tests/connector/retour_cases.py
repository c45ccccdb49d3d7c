"""The retour cases of the iWmo examples: the accepted retour of every example message, and
rejected retours with retourcodes on every element of the message in turn (the codes a
stylesheet reports on the Header, a client, a product, or passes up from elsewhere).

tests/connector/data/retours.json holds the SHA-256 of the retours the stylesheets produced
for these cases before they were changed for speed (session 6);
test_retour_stylesheets_output_is_unchanged holds them to it, byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from node_runtime.messages.compiled import CompiledConnector, compile_connector
from node_runtime.messages.parsing import parse_message
from node_runtime.messages.retour import RetourBuilder
from node_runtime.messages.rules import RuleFailure, index_path
from node_runtime.model.loading import load_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "iwmo"
GOLDEN = Path(__file__).parent / "data" / "retours.json"


def connector() -> CompiledConnector:
    resources = load_paths([EXAMPLES / "connector.yaml"])
    (resource,) = resources.connectors.values()
    return compile_connector(
        resource,
        origin=resources.origin_of("SectorConnector", resource.name),
        config_map_root=Path("/nonexistent"),
    )


def _failure(element: etree._Element, code: str) -> RuleFailure:
    return RuleFailure("case", code, "case", element, None, "", index_path(element))


def _spellings(body: bytes) -> Iterator[tuple[str, bytes]]:
    """The same message spelled differently: other prefixes, the message namespace as the
    default namespace, namespaces declared again on inner elements."""
    prefix = re.search(rb"<(wmo3\d\d):Bericht", body)
    assert prefix
    own = prefix.group(1)
    other = re.sub(rb"\b" + own + rb":", b"m:", body)
    other = re.sub(rb"\biwmo:", b"b:", other)
    other = other.replace(b"xmlns:" + own + b"=", b"xmlns:m=").replace(b"xmlns:iwmo=", b"xmlns:b=")
    yield "other prefixes", other
    default = re.sub(rb"(</?)" + own + rb":", rb"\1", body)
    yield "default namespace", default.replace(b"xmlns:" + own + b"=", b"xmlns=")
    uri = re.search(rb'xmlns:iwmo="([^"]+)"', body)
    assert uri
    inner = re.sub(rb"<(iwmo:\w+)>", rb'<\1 xmlns:iwmo="' + uri.group(1) + rb'">', body)
    yield "namespaces declared on inner elements", inner


def retours(compiled: CompiledConnector) -> Iterator[tuple[str, str]]:
    """(case name, SHA-256 of the retour) for every case."""
    for path in sorted((EXAMPLES / "messages").glob("*.xml")):
        body = path.read_bytes()
        mt = compiled.identify(parse_message(body).getroot())
        assert mt is not None and mt.retour is not None
        builder = mt.retour

        def run(
            failures: list[RuleFailure], tree: etree._ElementTree, builder: RetourBuilder = builder
        ) -> str:
            built = builder.build(
                tree, failures, retour_id="KP0000000001", retour_date="2016-12-31"
            )
            return hashlib.sha256(built).hexdigest()

        yield f"{path.stem} accepted", run([], parse_message(body))
        for label, variant in _spellings(body):
            yield f"{path.stem} accepted, {label}", run([], parse_message(variant))
        elements = list(parse_message(body).getroot().iter())
        for n in range(len(elements)):
            tree = parse_message(body)
            element = list(tree.getroot().iter())[n]
            yield f"{path.stem} element {n} 8188", run([_failure(element, "8188")], tree)
        tree = parse_message(body)
        for element in list(tree.getroot().iter()):
            element.insert(0, etree.Comment(" a comment "))
            element.addnext(etree.Comment(" another "))
        yield f"{path.stem} comments in and after every element", run([], tree)
        tree = parse_message(body)
        every = list(tree.getroot().iter())
        failures = [_failure(e, code) for e in every for code in ("0435", "0435", "8376")]
        yield f"{path.stem} every element, repeated codes", run(failures, tree)
