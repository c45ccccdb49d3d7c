"""Unit tests of the pipeline's pure parts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from node_runtime.audit.identifiers import time_ordered_uuid
from node_runtime.conversations.matching import Matcher, Parties
from node_runtime.messages.conversion import MappingConverter, XsltConverter, json_from_xml
from node_runtime.messages.doelbinding import FieldFilter, paths_of
from node_runtime.messages.parsing import parse_message
from node_runtime.model.bsn import elfproef
from node_runtime.model.connector import Mapping
from node_runtime.observability.tracing import from_header
from node_runtime.security.pseudonyms import Pseudonymizer
from node_runtime.web.problems import Problem


def _reference_elfproef(v: str) -> bool:
    if len(v) != 9 or not v.isdigit() or set(v) == {"0"}:
        return False
    total = sum(int(v[i]) * (9 - i) for i in range(8)) - int(v[8])
    return total % 11 == 0


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_elfproef_matches_definition(value: str) -> None:
    assert elfproef(value) == _reference_elfproef(value)


def test_elfproef_known_values() -> None:
    assert elfproef("999990019")
    assert not elfproef("123456789")
    assert not elfproef("00000000")
    assert not elfproef("000000000")
    assert not elfproef("99999001a")


def test_field_filter_keeps_only_allowed_paths() -> None:
    content = {
        "afzender": "1",
        "clienten": [
            {
                "bsn": "999990019",
                "naam": {"geslachtsnaam": "X"},
                "producten": [{"code": "A", "begindatum": "2020-01-01"}],
            },
        ],
    }
    out = FieldFilter(["clienten[].producten[].code", "afzender"]).apply(content)
    assert out == {"afzender": "1", "clienten": [{"producten": [{"code": "A"}]}]}
    assert FieldFilter(["clienten[].naam"]).apply(content) == {
        "clienten": [{"naam": {"geslachtsnaam": "X"}}]
    }
    assert FieldFilter(["ontvanger"]).apply(content) == {}
    assert paths_of(out) == {
        "afzender",
        "clienten[]",
        "clienten[].producten[]",
        "clienten[].producten[].code",
    }


NS = {"m": "urn:m"}
DOC = etree.fromstring(
    b"<m:R xmlns:m='urn:m'><m:H><m:Id>7</m:Id></m:H><m:C><m:B>1</m:B><m:P><m:D>2020</m:D></m:P>"
    b"<m:P><m:D>2021</m:D></m:P></m:C><m:C><m:B>2</m:B></m:C></m:R>"
)


def test_mapping_converter_builds_nested_json() -> None:
    mapping = Mapping.model_validate(
        {
            "collections": {"c[]": "m:C", "c[].p[]": "m:P"},
            "fields": {
                "id": {"select": "m:H/m:Id", "type": "integer"},
                "c[].b": {"select": "m:B"},
                "c[].p[].d": {"select": "m:D"},
                "c[].x.y": {"select": "m:Missing"},
            },
        }
    )
    out = MappingConverter(mapping, NS).convert(DOC)
    assert out == {"id": 7, "c": [{"b": "1", "p": [{"d": "2020"}, {"d": "2021"}]}, {"b": "2"}]}


def test_mapping_rejects_undeclared_collection() -> None:
    with pytest.raises(ValueError, match="not declared"):
        Mapping.model_validate({"fields": {"c[].b": {"select": "m:B"}}})


def test_xslt_converter_reads_json_xml() -> None:
    xslt = etree.XSLT(
        etree.fromstring(b"""
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
  xmlns:m="urn:m" xmlns:fn="http://www.w3.org/2005/xpath-functions">
 <xsl:template match="/">
  <fn:map><fn:number key="id"><xsl:value-of select="/m:R/m:H/m:Id"/></fn:number>
   <fn:array key="c"><xsl:for-each select="/m:R/m:C">
     <fn:map><fn:string key="b"><xsl:value-of select="m:B"/></fn:string>
     <fn:boolean key="t">true</fn:boolean><fn:null key="n"/></fn:map>
   </xsl:for-each></fn:array></fn:map>
 </xsl:template></xsl:stylesheet>""")
    )
    out = XsltConverter(xslt).convert(DOC)
    assert out == {
        "id": 7,
        "c": [{"b": "1", "t": True, "n": None}, {"b": "2", "t": True, "n": None}],
    }
    with pytest.raises(Exception, match="unexpected element"):
        json_from_xml(etree.fromstring(b"<x/>"))


@pytest.mark.parametrize(
    "body,slug",
    [
        (b"", "empty-body"),
        (b"<a><b></a>", "not-well-formed"),
        (b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>", "dtd-forbidden"),
        (
            b"<?xml version='1.0'?>\n<!DOCTYPE a SYSTEM 'http://example.org/a.dtd'><a/>",
            "dtd-forbidden",
        ),
        (b"<a><?pi data?></a>", "xml-construct-forbidden"),
        (b"<a>" * 70 + b"</a>" * 70, "too-deep"),
    ],
)
def test_parser_refuses(body: bytes, slug: str) -> None:
    with pytest.raises(Problem) as info:
        parse_message(body, max_depth=64)
    assert info.value.slug == slug


def test_pseudonyms_are_keyed_and_stable() -> None:
    a = Pseudonymizer(b"k" * 32)
    b = Pseudonymizer(b"j" * 32)
    assert a.subject_ref("999990019") == a.subject_ref("999990019")
    assert a.subject_ref("999990019") != b.subject_ref("999990019")
    assert "999990019" not in a.subject_ref("999990019")
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_pseudonyms_keep_their_values() -> None:
    """Stored references must match across versions: HMAC-SHA-256 of the prefixed value
    (values computed with hmac.new before the one-shot hmac.digest was used)."""
    a = Pseudonymizer(b"k" * 32)
    assert a.subject_ref(" 999990019 ") == (
        "429fefe03d2552a256b16d8915a981be69c1f22486f807a519832623e84ddf3e"
    )
    assert a.order_ref("999990019") == "5a5aa7edc99b639b86a07ccb3c76b87e"


def test_traceparent_is_continued_or_started() -> None:
    t = from_header("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert t.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert t.parent_span_id == "b7ad6b7169203331"
    fresh = from_header("garbage")
    assert len(fresh.trace_id) == 32 and fresh.parent_span_id is None
    assert from_header(None).trace_id != fresh.trace_id


def test_the_node_reads_the_sdks_otlp_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The operator sets OTEL_EXPORTER_OTLP_ENDPOINT on node pods; KNOOPPUNT_OTLP_ENDPOINT wins."""
    from node_runtime.node.config import Settings

    monkeypatch.delenv("KNOOPPUNT_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.monitoring:4318")
    settings = Settings(node="kp", resources=[tmp_path], data_dir=tmp_path)
    assert settings.otlp_endpoint == "http://collector.monitoring:4318"
    monkeypatch.setenv("KNOOPPUNT_OTLP_ENDPOINT", "http://own:4318")
    assert Settings(node="kp", resources=[tmp_path], data_dir=tmp_path).otlp_endpoint == (
        "http://own:4318"
    )


def test_record_ids_are_canonical_version_7_uuids_in_time_order() -> None:
    seen = set()
    before = time.time_ns() // 1_000_000
    texts = [time_ordered_uuid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix time in ms
        seen.add(text)
    assert len(seen) == 2000
    # made one after the other, they sort by the millisecond they were made in
    assert [t[:13] for t in texts] == sorted(t[:13] for t in texts)


def test_conversation_key_hash_keeps_its_value() -> None:
    """Open conversations are matched on stored hashes: the value must not change."""
    matcher = Matcher(b"k" * 32)
    parties = Parties("98000011", "0363", "0363", "98000011")
    assert matcher.key_hash(
        "iwmo-2-1", "verzoek-om-toewijzing", parties, ["999990019", "REF1"]
    ) == ("2f04f326f16cee9d297f6fea34479254e2cc2dd03cffebbf621ce67afec419af")
