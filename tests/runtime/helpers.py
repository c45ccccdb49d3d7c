"""Helpers for runtime tests: read headers and retourcodes, make message variants."""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

from node_runtime.model.bsn import elfproef

CONNECTOR_DIR = Path(__file__).resolve().parents[2] / "node_runtime" / "connectors" / "iwmo-2.1"


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def header(xml: bytes) -> dict[str, str]:
    root = etree.fromstring(xml)
    head = root[0]
    out = {local(e): (e.text or "") for e in head.iter() if isinstance(e.tag, str)}
    return out


def retourcodes(xml: bytes) -> list[str]:
    root = etree.fromstring(xml)
    return [
        e.text or "" for e in root.iter() if isinstance(e.tag, str) and local(e) == "RetourCode"
    ]


def retour_schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CONNECTOR_DIR / f"{name.lower()}.xsd")))


def bsns(xml: bytes) -> list[str]:
    root = etree.fromstring(xml)
    return [e.text or "" for e in root.iter() if isinstance(e.tag, str) and local(e) == "Bsn"]


def with_new_id(xml: bytes, new_id: str) -> bytes:
    return re.sub(
        rb"(<(\w+:)?Identificatie>)[^<]*(</)", rb"\g<1>" + new_id.encode() + rb"\g<3>", xml, count=1
    )


def replace_first(xml: bytes, element: str, value: str) -> bytes:
    pattern = rb"(<(\w+:)?" + element.encode() + rb">)[^<]*(</)"
    out, n = re.subn(pattern, rb"\g<1>" + value.encode() + rb"\g<3>", xml, count=1)
    assert n == 1, f"no {element} in message"
    return out


def invalid_bsn() -> str:
    for n in range(123456780, 123456800):
        if not elfproef(str(n)):
            return str(n)
    raise AssertionError("unreachable")
