"""End to end over mutual TLS: every example accepted, routed and filtered; hostile refused."""

from __future__ import annotations

import json

import pytest

from node_runtime.api.server import RunningNode
from node_runtime.messages.doelbinding import paths_of
from node_runtime.model.loading import ResourceSet
from tests.conftest import CONNECTOR, MESSAGES, PartyFactory
from tests.runtime.helpers import (
    bsns,
    header,
    invalid_bsn,
    replace_first,
    retour_schema,
    retourcodes,
    with_new_id,
)

URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
RETOUR = {"WMO301": "WMO302", "WMO305": "WMO306", "WMO307": "WMO308", "WMO315": "WMO316"}


def sender_of(resources: ResourceSet, identifier: str) -> str:
    for c in resources.connectors.values():
        for p in c.spec.participants:
            if identifier in p.identifiers:
                return p.name
    for g in resources.gemeenten.values():
        if g.spec.gemeentecode == identifier:
            return g.name
    raise AssertionError(f"no party for {identifier}")


def gemeente_name(resources: ResourceSet, code: str) -> str:
    return next(g.name for g in resources.gemeenten.values() if g.spec.gemeentecode == code)


def allowed(purpose_fields: list[str], path: str) -> bool:
    return any(
        path == f or path.startswith(f + ".") or f.startswith(path + ".") for f in purpose_fields
    )


def test_every_example_reaches_exactly_the_right_mailbox(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    connector = example_resources.connectors[CONNECTOR]
    purposes = {p.name: p for p in connector.spec.purposes}
    expected: dict[str, int] = {}
    messages = sorted(MESSAGES.glob("*.xml"))
    assert len(messages) >= 8
    for path in messages:
        body = path.read_bytes()
        head = header(body)
        resp = party(sender_of(example_resources, head["Afzender"])).post(
            URL, content=body, headers=XML
        )
        assert resp.status_code == 202, resp.text
        assert resp.headers["knooppunt-outcome"] == "accepted"
        assert resp.headers["knooppunt-message-id"]
        codes = retourcodes(resp.content)
        assert codes and set(codes) == {"0200"}
        mt = "WMO" + {"414": "301", "418": "305", "420": "307", "444": "315"}[head["BerichtCode"]]
        from lxml import etree

        assert retour_schema(RETOUR[mt]).validate(etree.fromstring(resp.content))
        if mt != "WMO301":
            g = example_resources.gemeenten[gemeente_name(example_resources, head["Ontvanger"])]
            subs = [
                s
                for s in g.spec.subscriptions
                if mt in purposes[s.purpose].messages and (not s.messages or mt in s.messages)
            ]
            expected[head["Ontvanger"]] = expected.get(head["Ontvanger"], 0) + len(subs)

    for g in example_resources.gemeenten.values():
        code = g.spec.gemeentecode
        client = party(g.name)
        items = client.get(f"/api/v1/gemeenten/{code}/mailbox").json()["items"]
        assert len(items) == expected.get(code, 0), code
        for item in items:
            doc = client.get(f"/api/v1/gemeenten/{code}/mailbox/{item['id']}").json()
            assert doc["kenmerken"]["ontvanger"] == code
            assert doc["kenmerken"]["doel"] == item["purpose"]
            fields = purposes[item["purpose"]].fields
            released = paths_of(doc["inhoud"])
            assert released, "nothing released"
            leaked = [p for p in released if not allowed(fields, p)]
            assert not leaked, f"{item['purpose']} released {leaked}"
            if not any(f.endswith("bsn") for f in fields):
                assert "bsn" not in json.dumps(doc["inhoud"]).lower()

    # WMO301 toewijzingen wait in the providers' mailboxes as the standard XML.
    for path in sorted(MESSAGES.glob("wmo301*.xml")):
        head = header(path.read_bytes())
        provider = sender_of(example_resources, head["Ontvanger"])
        items = party(provider).get(f"/api/v1/participants/{provider}/mailbox").json()["items"]
        assert any(i["messageType"] == "WMO301" for i in items)


def _first(kind: str) -> bytes:
    return sorted(MESSAGES.glob(f"{kind}*.xml"))[0].read_bytes()


def _send_first_305(party: PartyFactory, resources: ResourceSet, body: bytes):  # type: ignore[no-untyped-def]
    head = header(_first("wmo305"))
    return party(sender_of(resources, head["Afzender"])).post(URL, content=body, headers=XML)


def test_resend_is_idempotent(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = _first("wmo305")
    first = _send_first_305(party, example_resources, body)
    again = _send_first_305(party, example_resources, body)
    assert first.status_code == again.status_code == 202
    assert again.headers["knooppunt-duplicate"] == "true"
    assert again.content == first.content
    assert again.headers["knooppunt-message-id"] == first.headers["knooppunt-message-id"]
    rows = running_node.node.store.count_rows()
    assert rows["messages"] == 1
    changed = replace_first(body, "Begindatum", "2099-01-01")
    conflict = _send_first_305(party, example_resources, changed)
    assert conflict.status_code == 409
    assert conflict.json()["type"].endswith("/duplicate-message-id")
    assert running_node.node.store.count_rows()["deliveries"] == rows["deliveries"]


def _assert_nothing_stored(running_node: RunningNode) -> None:
    rows = running_node.node.store.count_rows()
    assert rows["messages"] == 0
    assert rows["deliveries"] == 0


def test_bsn_failing_elfproef_gets_0435_retour(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = replace_first(with_new_id(_first("wmo305"), "T-BSN-1"), "Bsn", invalid_bsn())
    resp = _send_first_305(party, example_resources, body)
    assert resp.status_code == 422
    assert resp.headers["knooppunt-outcome"] == "rejected"
    assert "0435" in retourcodes(resp.content)
    from lxml import etree

    assert retour_schema("WMO306").validate(etree.fromstring(resp.content))
    _assert_nothing_stored(running_node)


def test_unknown_recipient_gets_0018(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = replace_first(with_new_id(_first("wmo305"), "T-GEM-1"), "Ontvanger", "9999")
    resp = _send_first_305(party, example_resources, body)
    assert resp.status_code == 422
    assert "0018" in retourcodes(resp.content)
    _assert_nothing_stored(running_node)


HOSTILE = {
    "truncated": (lambda b: b[: len(b) // 2], 400, "not-well-formed"),
    "not-xml": (lambda b: b"this is not xml", 400, "not-well-formed"),
    "xxe": (
        lambda b: (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
        ),
        400,
        "dtd-forbidden",
    ),
    "billion-laughs": (
        lambda b: (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;">'
            b"]><l>&c;</l>"
        ),
        400,
        "dtd-forbidden",
    ),
    "unknown-type": (lambda b: b"<Bericht xmlns='urn:x'/>", 400, "unknown-message-type"),
    "xsd-invalid": (
        lambda b: replace_first(with_new_id(b, "T-XSD-1"), "Geslacht", "7"),
        422,
        "schema-invalid",
    ),
    "deep": (lambda b: b"<a>" * 200 + b"</a>" * 200, 400, "too-deep"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_refused_and_leaves_no_trace(
    case: str, running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    make, status, slug = HOSTILE[case]
    resp = _send_first_305(party, example_resources, make(_first("wmo305")))
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["type"].endswith("/" + slug)
    assert problem["status"] == status and problem["detail"]
    if slug in ("not-well-formed", "schema-invalid"):
        assert problem["errors"][0]["line"] >= 1
    _assert_nothing_stored(running_node)
    # the node keeps serving
    ok = _send_first_305(party, example_resources, _first("wmo305"))
    assert ok.status_code == 202


def test_schema_violation_names_rule_path_and_line(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = replace_first(with_new_id(_first("wmo305"), "T-XSD-2"), "Geslacht", "7")
    problem = _send_first_305(party, example_resources, body).json()
    assert problem["retourcode"] == "0001"
    err = problem["errors"][0]
    assert err["rule"] == "xsd" and "Geslacht" in err["message"] and "Geslacht" in err["path"]


def test_wrong_content_type_and_oversized_body(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    head = header(_first("wmo305"))
    client = party(sender_of(example_resources, head["Afzender"]))
    resp = client.post(URL, content=_first("wmo305"), headers={"content-type": "application/json"})
    assert resp.status_code == 415
    assert resp.json()["type"].endswith("/unsupported-media-type")

    limit = running_node.node.holder.current.knooppunt.spec.limits.max_message_bytes

    def chunks():  # type: ignore[no-untyped-def]
        yield b"<a>"
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b"</a>"

    # streamed without Content-Length: refused while streaming
    resp = client.post(URL, content=chunks(), headers=XML)
    assert resp.status_code == 413
    assert resp.json()["maxBytes"] == limit
    _assert_nothing_stored(running_node)


def test_spoofed_afzender_is_refused(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = _first("wmo305")
    real = sender_of(example_resources, header(body)["Afzender"])
    other = next(
        p.name for p in example_resources.connectors[CONNECTOR].spec.participants if p.name != real
    )
    resp = party(other).post(URL, content=body, headers=XML)
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/sender-mismatch")
    _assert_nothing_stored(running_node)
    gemeente = next(iter(example_resources.gemeenten.values())).name
    resp = party(gemeente).post(URL, content=body, headers=XML)
    assert resp.status_code == 403
    _assert_nothing_stored(running_node)


def test_unknown_connector(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    head = header(_first("wmo305"))
    resp = party(sender_of(example_resources, head["Afzender"])).post(
        "/api/v1/connectors/ijw-3-0/messages", content=_first("wmo305"), headers=XML
    )
    assert resp.status_code in (403, 404)
    assert resp.headers["content-type"].startswith("application/problem+json")
    _assert_nothing_stored(running_node)


def test_no_bsn_in_processing_log(
    running_node: RunningNode, party: PartyFactory, example_resources: ResourceSet
) -> None:
    body = _first("wmo305")
    assert _send_first_305(party, example_resources, body).status_code == 202
    from sqlalchemy import select

    from node_runtime.store import schema

    with running_node.node.store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(schema.processing_log))]
    assert rows
    text = repr(rows)
    for bsn in bsns(body):
        assert bsn not in text
    refs = {r[11] for r in rows}
    assert all(ref is None or len(ref) == 64 for ref in refs)
