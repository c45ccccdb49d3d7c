"""The iWmo 2.1 connector as data: schemas, examples, rules, mapping, purposes, retours.

Everything here is checked with lxml against the real iWmo 2.1 XSDs; nothing depends on the
node runtime, so a broken connector, example or stylesheet fails here first.
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from node_runtime.model.connector import Mapping, MessageType, Rule, SectorConnector
from node_runtime.model.loading import ResourceSet, load_paths

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "node_runtime" / "connectors" / "iwmo-2.1"
EXAMPLES = REPO / "examples" / "iwmo"
MESSAGES = EXAMPLES / "messages"
SHARED_STANDARD = REPO.parent / "shared" / "standards" / "iwmo-2.1"
CONNECTOR = "iwmo-2-1"
KP_NS = "urn:knooppunt:retour"
XS_NS = "http://www.w3.org/2001/XMLSchema"
XSDS = [
    "basisschema.xsd",
    *(f"wmo{n}.xsd" for n in (301, 302, 305, 306, 307, 308, 315, 316)),
]
EXAMPLE_FILES = sorted(MESSAGES.glob("*.xml"))
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@functools.cache
def resources() -> ResourceSet:
    return load_paths([EXAMPLES])


def connector() -> SectorConnector:
    return resources().connectors[CONNECTOR]


def ns() -> dict[str, str]:
    return dict(connector().spec.namespaces)


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(BUNDLE / name)))


@functools.cache
def stylesheet(name: str) -> etree.XSLT:
    return etree.XSLT(etree.parse(str(BUNDLE / name)))


def xpath(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=ns())


def parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), etree.XMLParser(remove_blank_text=True))


def message_type(doc: etree._ElementTree) -> MessageType:
    qname = etree.QName(doc.getroot())
    for mt in connector().spec.messages:
        if mt.namespace == qname.namespace and mt.root == qname.localname:
            return mt
    raise AssertionError(f"no message type for root {qname}")


def examples_of(name: str) -> list[Path]:
    return [p for p in EXAMPLE_FILES if message_type(parse(p)).name == name]


def text_of(result: object) -> str:
    """String value of an XPath result, as the runtime takes it (first node)."""
    if isinstance(result, list):
        if not result:
            return ""
        first = result[0]
        if isinstance(first, etree._Element):
            return "".join(first.itertext()).strip()
        return str(first).strip()
    return str(result).strip()


def elfproef(value: str) -> bool:
    if len(value) != 9 or not value.isdigit() or value == "000000000":
        return False
    digits = [int(c) for c in value]
    total = sum(d * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True)) - digits[8]
    return total % 11 == 0


def tenants() -> set[str]:
    return {
        g.spec.gemeentecode
        for g in resources().gemeenten.values()
        if any(s.connector == CONNECTOR for s in g.spec.subscriptions)
    }


def participant_ids() -> set[str]:
    return {i for p in connector().spec.participants for i in p.identifiers}


def failing(rule: Rule, root: etree._Element) -> list[etree._Element]:
    """The context elements on which `rule` fails (a tiny, independent rule engine)."""
    contexts = [c for c in xpath(rule.context)(root) if isinstance(c, etree._Element)]
    bad = []
    for ctx in contexts:
        if rule.kind == "xpath":
            assert rule.test is not None
            ok = bool(xpath(rule.test)(ctx))
        else:
            assert rule.value is not None
            value = text_of(xpath(rule.value)(ctx))
            if rule.kind == "elfproef":
                ok = elfproef(value)
            elif rule.kind == "tenant":
                ok = value in tenants()
            else:
                ok = value in participant_ids()
        if not ok:
            bad.append(ctx)
    return bad


def position(element: etree._Element) -> tuple[int, ...]:
    """Positional path (index among element siblings, from the root) of an element."""
    steps: list[int] = []
    node = element
    while (parent := node.getparent()) is not None:
        siblings = [c for c in parent if isinstance(c.tag, str)]
        steps.append(siblings.index(node))
        node = parent
    return tuple(reversed(steps))


def at(root: etree._Element, pos: tuple[int, ...]) -> etree._Element:
    node = root
    for index in pos:
        node = [c for c in node if isinstance(c.tag, str)][index]
    return node


def add_code(element: etree._Element, code: str) -> None:
    etree.SubElement(element, f"{{{KP_NS}}}RetourCode").text = code


def run_retour(mt: MessageType, doc: etree._ElementTree, default: str) -> etree._ElementTree:
    assert mt.retour is not None
    result = stylesheet(mt.retour.stylesheet)(
        doc,
        **{
            "retour-id": etree.XSLT.strparam("KP-R-000001"),
            "retour-date": etree.XSLT.strparam("2016-12-31"),
            "default-code": etree.XSLT.strparam(default),
        },
    )
    assert result.getroot() is not None, "retour stylesheet produced nothing"
    retour_schema = schema(mt.retour.schema_file)
    assert retour_schema.validate(result), (
        f"{mt.retour.message} invalid: {retour_schema.error_log.filter_from_errors()[:3]}"
    )
    return result


def codes_by_carrier(retour: etree._ElementTree) -> dict[tuple[int, ...], list[str]]:
    """Every element that carries RetourCodes, by position, with its codes."""
    out: dict[tuple[int, ...], list[str]] = {}
    for el in retour.getroot().iter():
        if not isinstance(el.tag, str):
            continue
        holders = [
            c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == "RetourCodes"
        ]
        if holders:
            assert len(holders) == 1
            out[position(el)] = [(c.text or "") for c in holders[0]]
    return out


def innermost(path: str, collections: list[str]) -> str:
    owners = [c for c in collections if path.startswith(c + ".")]
    return max(owners, key=len) if owners else ""


def mapped_values(mapping: Mapping, root: etree._Element) -> dict[str, list[str]]:
    """Field path → raw values over all items (a tiny, independent mapping engine)."""
    colls = list(mapping.collections)

    @functools.cache
    def items(coll: str) -> tuple[etree._Element, ...]:
        parent = innermost(coll, [c for c in colls if c != coll])
        parents = (root,) if parent == "" else items(parent)
        sel = xpath(mapping.collections[coll])
        return tuple(e for p in parents for e in sel(p) if isinstance(e, etree._Element))

    out: dict[str, list[str]] = {}
    for field, spec in mapping.fields.items():
        owner = innermost(field, colls)
        contexts = (root,) if owner == "" else items(owner)
        sel = xpath(spec.select)
        out[field] = [v for v in (text_of(sel(c)) for c in contexts) if v]
    for coll in colls:
        out[coll] = [str(len(items(coll)))] if items(coll) else []
    return out


def covers(purpose_path: str, field_path: str) -> bool:
    return field_path == purpose_path or field_path.startswith(purpose_path + ".")


def retour_code_enumeration() -> set[str]:
    base = etree.parse(str(BUNDLE / "basisschema.xsd"))
    return set(
        base.xpath(
            "//xs:simpleType[@name='LDT_RetourCode']//xs:enumeration/@value",
            namespaces={"xs": XS_NS},
        )
    )


# ------------------------------------------------------------------------------------------
# bundle and resources
# ------------------------------------------------------------------------------------------


def test_bundle_holds_the_unchanged_xsds() -> None:
    for name in XSDS:
        assert (BUNDLE / name).is_file(), name
        schema(name)  # compiles, imports resolve inside the bundle
        if SHARED_STANDARD.is_dir():
            assert (BUNDLE / name).read_bytes() == (SHARED_STANDARD / name).read_bytes(), name


def test_resources_load_and_reference_each_other() -> None:
    res = resources()
    assert set(res.connectors) == {CONNECTOR}
    spec = connector().spec
    assert (spec.standard, spec.standard_version, spec.revision) == ("iWmo", "2.1", 1)
    assert spec.bundle.builtin == "iwmo-2.1"
    assert {m.name for m in spec.messages} == {"WMO301", "WMO305", "WMO307", "WMO315"}
    node = res.knooppunten["knooppunt-zorg"]
    assert [c.name for c in node.spec.connectors] == [CONNECTOR]
    assert node.spec.replicas == 1 and node.spec.storage.backend == "sqlite"
    assert len(spec.participants) >= 3


def test_gemeenten_subscribe_to_declared_purposes() -> None:
    purposes = {p.name: p for p in connector().spec.purposes}
    gemeenten = list(resources().gemeenten.values())
    assert len(gemeenten) == 4
    assert len({g.spec.gemeentecode for g in gemeenten}) == 4
    assert len({g.spec.oin for g in gemeenten}) == 4
    for g in gemeenten:
        assert g.spec.subscriptions, g.name
        for sub in g.spec.subscriptions:
            assert sub.connector == CONNECTOR
            assert sub.purpose in purposes, f"{g.name}: unknown purpose {sub.purpose}"
            assert set(sub.messages) <= set(purposes[sub.purpose].messages), g.name
            assert "Wmo 2015" in sub.legal_basis
    chosen = [{s.purpose for s in g.spec.subscriptions} for g in gemeenten]
    assert any(len(c) >= 2 for c in chosen)
    assert {"wmo-beleidsinformatie"} in chosen


def test_declared_files_exist_and_compile() -> None:
    for mt in connector().spec.messages:
        schema(mt.schema_file)
        assert mt.retour is not None, f"{mt.name} has no retour"
        schema(mt.retour.schema_file)
        stylesheet(mt.retour.stylesheet)


def test_every_xpath_compiles() -> None:
    for mt in connector().spec.messages:
        exprs = [mt.header.sender, mt.header.recipient, mt.header.message_id]
        exprs += [e for e in (mt.records, mt.subject, mt.order_key) if e]
        for rule in mt.rules:
            exprs += [e for e in (rule.context, rule.value, rule.test) if e]
        if mt.conversion is not None and mt.conversion.mapping is not None:
            exprs += list(mt.conversion.mapping.collections.values())
            exprs += [f.select for f in mt.conversion.mapping.fields.values()]
        for expr in exprs:
            try:
                xpath(expr)
            except etree.XPathSyntaxError as exc:  # pragma: no cover - failure path
                pytest.fail(f"{mt.name}: {expr!r} does not compile: {exc}")


def test_rules_use_real_retourcodes() -> None:
    known = retour_code_enumeration()
    kinds = set()
    for mt in connector().spec.messages:
        for rule in mt.rules:
            assert rule.retourcode in known, f"{mt.name}/{rule.name}: {rule.retourcode}"
            kinds.add((mt.name, rule.kind))
        assert (mt.name, "elfproef") in kinds
        want = "tenant" if mt.direction == "toGemeente" else "participant"
        assert (mt.name, want) in kinds, f"{mt.name} lacks a {want} rule"


# ------------------------------------------------------------------------------------------
# example messages
# ------------------------------------------------------------------------------------------


def test_enough_examples() -> None:
    for name in ("WMO301", "WMO305", "WMO307", "WMO315"):
        assert len(examples_of(name)) >= 2, name
    multi = [
        p
        for p in EXAMPLE_FILES
        if len(parse(p).getroot().xpath("*[local-name()='Clienten']/*[local-name()='Client']")) >= 2
    ]
    assert len(multi) >= 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    doc = parse(path)
    mt = message_type(doc)
    xsd = schema(mt.schema_file)
    assert xsd.validate(doc), xsd.error_log.filter_from_errors()[:3]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_routing_header(path: Path) -> None:
    doc = parse(path)
    root = doc.getroot()
    mt = message_type(doc)
    sender, recipient, message_id = (
        text_of(xpath(e)(root))
        for e in (mt.header.sender, mt.header.recipient, mt.header.message_id)
    )
    assert message_id
    if mt.direction == "toGemeente":
        assert sender in participant_ids() and recipient in tenants()
    else:
        assert sender in tenants() and recipient in participant_ids()
    assert mt.records and mt.subject and mt.order_key
    records = xpath(mt.records)(root)
    assert records
    for record in records:
        assert elfproef(text_of(xpath(mt.subject)(record)))
        assert text_of(xpath(mt.order_key)(record))


def test_message_ids_unique_per_sender() -> None:
    seen: set[tuple[str, str]] = set()
    for path in EXAMPLE_FILES:
        doc = parse(path)
        mt = message_type(doc)
        key = (
            text_of(xpath(mt.header.sender)(doc.getroot())),
            text_of(xpath(mt.header.message_id)(doc.getroot())),
        )
        assert key not in seen, f"{path.name}: duplicate {key}"
        seen.add(key)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_passes_every_rule(path: Path) -> None:
    doc = parse(path)
    mt = message_type(doc)
    for rule in mt.rules:
        contexts = xpath(rule.context)(doc.getroot())
        assert contexts, f"{rule.name}: context selects nothing in {path.name}"
        bad = failing(rule, doc.getroot())
        assert not bad, f"{path.name}: rule {rule.name} fails at {[position(b) for b in bad]}"


# Breaking each xpath rule: (message, rule) → mutation. A new xpath rule needs an entry here.
Mutation = Callable[[etree._Element], bool]


def set_first(expr: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> bool:
        found = xpath(expr)(root)
        if not found:
            return False
        found[0].text = value
        return True

    return mutate


def duplicate_first_client(root: etree._Element) -> bool:
    clients = root.xpath("*[local-name()='Clienten']/*[local-name()='Client']")
    clients[0].addnext(copy.deepcopy(clients[0]))
    return True


BREAKERS: dict[tuple[str, str], Mutation] = {
    ("WMO301", "client-uniek"): duplicate_first_client,
    ("WMO301", "beschikking-einddatum-na-ingangsdatum"): set_first(
        "//wmo301:Beschikking/wmo301:Einddatum", "2000-01-01"
    ),
    ("WMO301", "beschikt-product-einddatum-na-ingangsdatum"): set_first(
        "//wmo301:BeschiktProduct/wmo301:Einddatum", "2000-01-01"
    ),
    ("WMO301", "toegewezen-product-einddatum-na-ingangsdatum"): set_first(
        "//wmo301:ToegewezenProduct/wmo301:Einddatum", "2000-01-01"
    ),
    ("WMO301", "toegewezen-aanbieder-is-ontvanger"): set_first(
        "//wmo301:ToegewezenProduct/wmo301:Aanbieder", "98000035"
    ),
    ("WMO305", "client-uniek"): duplicate_first_client,
    ("WMO305", "aanbieder-is-afzender"): set_first(
        "//wmo305:StartProduct/wmo305:Aanbieder", "98000099"
    ),
    ("WMO305", "begindatum-niet-voor-toewijzing"): set_first(
        "//wmo305:StartProduct/wmo305:ToewijzingIngangsdatum", "2099-01-01"
    ),
    ("WMO307", "client-uniek"): duplicate_first_client,
    ("WMO307", "aanbieder-is-afzender"): set_first(
        "//wmo307:StopProduct/wmo307:Aanbieder", "98000099"
    ),
    ("WMO307", "einddatum-niet-voor-begindatum"): set_first(
        "//wmo307:StopProduct/wmo307:Einddatum", "2000-01-01"
    ),
    ("WMO307", "begindatum-niet-voor-toewijzing"): set_first(
        "//wmo307:StopProduct/wmo307:ToewijzingIngangsdatum", "2099-01-01"
    ),
    ("WMO315", "client-uniek"): duplicate_first_client,
    ("WMO315", "aanbieder-is-afzender"): set_first(
        "//wmo315:Producten/wmo315:Product/wmo315:Aanbieder", "98000099"
    ),
    ("WMO315", "toewijzing-einddatum-niet-voor-ingangsdatum"): set_first(
        "//wmo315:Producten/wmo315:Product/wmo315:ToewijzingEinddatum", "2000-01-01"
    ),
}
VALUE_BREAKERS = {"elfproef": "123456789", "tenant": "9999", "participant": "00000000"}


def breaking_cases() -> list[tuple[str, str]]:
    return [(mt.name, rule.name) for mt in connector().spec.messages for rule in mt.rules]


@pytest.mark.parametrize("case", breaking_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_rule_rejects_broken_example_and_retour_reports_it(case: tuple[str, str]) -> None:
    message, rule_name = case
    mt = next(m for m in connector().spec.messages if m.name == message)
    rule = next(r for r in mt.rules if r.name == rule_name)
    broken_any = False
    for path in examples_of(message):
        doc = parse(path)
        root = doc.getroot()
        if rule.kind == "xpath":
            assert (message, rule.name) in BREAKERS, f"add a breaking mutation for {case}"
            if not BREAKERS[(message, rule.name)](root):
                continue
        else:
            assert rule.value is not None
            ctx = xpath(rule.context)(root)[0]
            xpath(rule.value)(ctx)[0].text = VALUE_BREAKERS[rule.kind]
        broken_any = True
        # The schema still accepts it: only the rule catches it.
        assert schema(mt.schema_file).validate(doc), f"{case} mutation breaks the XSD instead"
        bad = failing(rule, root)
        assert bad, f"{case}: rule does not reject the broken {path.name}"
        # The node's retour path: annotate a copy, run the stylesheet (rejected → 0233).
        annotated = copy.deepcopy(doc)
        for element in bad:
            add_code(at(annotated.getroot(), position(element)), rule.retourcode)
        carriers = codes_by_carrier(run_retour(mt, annotated, "0233"))
        reported = [pos for pos, codes in carriers.items() if rule.retourcode in codes]
        assert reported, f"{case}: {rule.retourcode} missing from the retour"
        for element in bad:
            pos = position(element)
            owner = max((p for p in carriers if pos[: len(p)] == p), key=len)
            assert rule.retourcode in carriers[owner], f"{case}: code not on {owner}"
    assert broken_any, f"no example of {message} exercises {rule_name}"


# ------------------------------------------------------------------------------------------
# conversion and purposes
# ------------------------------------------------------------------------------------------


def converted_messages() -> list[MessageType]:
    return [m for m in connector().spec.messages if m.conversion is not None]


def test_to_gemeente_messages_convert_and_notify() -> None:
    resources_seen = set()
    for mt in connector().spec.messages:
        if mt.direction == "toGemeente":
            assert mt.conversion is not None and mt.conversion.mapping is not None
            assert mt.notification is not None and mt.notification.kanaal == "iwmo"
            resources_seen.add(mt.notification.resource)
    assert resources_seen == {"startzorg", "stopzorg", "verzoektoewijzing"}


@pytest.mark.parametrize("mt", converted_messages(), ids=lambda m: m.name)
def test_every_mapped_field_selects_data(mt: MessageType) -> None:
    mapping = mapping_of(mt)
    found: dict[str, list[str]] = {path: [] for path in [*mapping.fields, *mapping.collections]}
    for path in examples_of(mt.name):
        for field, values in mapped_values(mapping, parse(path).getroot()).items():
            found[field] += values
    empty = sorted(f for f, v in found.items() if not v)
    assert not empty, f"{mt.name}: these never select anything in the examples: {empty}"
    for field, spec in mapping.fields.items():
        for value in found[field]:
            if spec.type == "integer":
                int(value)
            elif spec.type == "date":
                assert DATE_RE.match(value), (field, value)
            elif spec.type == "boolean":
                assert value in ("1", "2"), (field, value)
    for field in ("berichtIdentificatie", "dagtekening", "afzender", "clienten[].bsn"):
        assert field in mapping.fields, f"{mt.name} does not map {field}"


def mapping_of(mt: MessageType) -> Mapping:
    assert mt.conversion is not None and mt.conversion.mapping is not None, mt.name
    return mt.conversion.mapping


def test_purpose_fields_are_mapped() -> None:
    by_name = {m.name: m for m in connector().spec.messages}
    for purpose in connector().spec.purposes:
        mappings = [mapping_of(by_name[name]) for name in purpose.messages]
        mapped = {p for m in mappings for p in m.fields}
        for field in purpose.fields:
            assert any(covers(field, m) for m in mapped), f"{purpose.name}: {field} is not mapped"
        for name, mapping in zip(purpose.messages, mappings, strict=True):
            assert any(covers(f, m) for f in purpose.fields for m in mapping.fields), (
                f"{purpose.name} releases nothing of {name}"
            )


def released(purpose_name: str) -> set[str]:
    purpose = next(p for p in connector().spec.purposes if p.name == purpose_name)
    by_name = {m.name: m for m in connector().spec.messages}
    return {
        m
        for name in purpose.messages
        for m in mapping_of(by_name[name]).fields
        if any(covers(f, m) for f in purpose.fields)
    }


def test_purposes_are_distinct() -> None:
    names = [p.name for p in connector().spec.purposes]
    assert len(names) >= 3
    assert {"wmo-uitvoering", "wmo-beleidsinformatie", "wmo-toewijzing"} <= set(names)
    sets = [frozenset(released(n)) for n in names]
    assert len(set(sets)) == len(sets), "two purposes release the same fields"
    toewijzing = next(p for p in connector().spec.purposes if p.name == "wmo-toewijzing")
    assert toewijzing.messages == ["WMO315"]


IDENTIFYING = {
    "bsn",
    "naam",
    "geboortedatum",
    "geboortedatumGebruik",
    "beschikkingNummer",
    "toewijzingNummer",
    "referentieAanbieder",
    "berichtIdentificatie",
}


@pytest.mark.parametrize(
    ("purpose", "forbidden"),
    [
        ("wmo-beleidsinformatie", IDENTIFYING | {"geslacht"}),
        ("wmo-rechtmatigheid", {"naam", "geboortedatum", "geslacht", "verwijzer"}),
        ("wmo-toewijzing", {"geslacht", "statusAanlevering"}),
    ],
)
def test_purpose_minimises_data(purpose: str, forbidden: set[str]) -> None:
    for path in released(purpose):
        segments = {s.removesuffix("[]") for s in path.split(".")}
        assert not segments & forbidden, f"{purpose} releases {path}"


def test_uitvoering_identifies_the_client() -> None:
    fields = released("wmo-uitvoering")
    for need in (
        "clienten[].bsn",
        "clienten[].naam.geslachtsnaam",
        "clienten[].geboortedatum",
        "clienten[].producten[].categorie",
        "clienten[].producten[].begindatum",
    ):
        assert need in fields


# ------------------------------------------------------------------------------------------
# retour stylesheets
# ------------------------------------------------------------------------------------------


def retour_bericht_code(mt: MessageType) -> str:
    assert mt.retour is not None
    xsd = etree.parse(str(BUNDLE / mt.retour.schema_file))
    values = xsd.xpath(
        "//xs:complexType[@name='Header']//xs:element[@name='BerichtCode']//xs:pattern/@value",
        namespaces={"xs": XS_NS},
    )
    assert len(values) == 1
    return str(values[0])


def header_value(root: etree._Element, local: str) -> str:
    return text_of(root.xpath(f"*[local-name()='Header']/*[local-name()='{local}']"))


CODES = ["0435", "0018", "8188", "0383", "8376", "8222"]


@pytest.mark.parametrize("default", ["0200", "0233"])
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_retour_without_codes(path: Path, default: str) -> None:
    doc = parse(path)
    mt = message_type(doc)
    assert mt.retour is not None
    retour = run_retour(mt, doc, default)
    root = retour.getroot()
    assert etree.QName(root).namespace == schema_namespace(mt.retour.schema_file)
    assert header_value(root, "BerichtCode") == retour_bericht_code(mt)
    assert header_value(root, "IdentificatieRetour") == "KP-R-000001"
    assert header_value(root, "DagtekeningRetour") == "2016-12-31"
    for local in (
        "BerichtVersie",
        "BerichtSubversie",
        "Afzender",
        "Ontvanger",
        "BerichtIdentificatie",
    ):
        assert header_value(root, local) == header_value(doc.getroot(), local), local
    assert no_knooppunt_namespace(retour)
    carriers = codes_by_carrier(retour)
    assert (0,) in carriers, "the Header has no RetourCodes"
    assert all(codes == [default] for codes in carriers.values())
    # Every record survives, in order, with its data.
    original_bsns = doc.getroot().xpath("//*[local-name()='Client']/*[local-name()='Bsn']/text()")
    retour_bsns = root.xpath("//*[local-name()='Client']/*[local-name()='Bsn']/text()")
    assert original_bsns == retour_bsns
    assert count_data(doc.getroot()) == count_data(root) - extra_retour_elements(carriers)


@pytest.mark.parametrize("default", ["0200", "0233"])
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_retour_carries_injected_codes(path: Path, default: str) -> None:
    doc = parse(path)
    mt = message_type(doc)
    carriers = list(codes_by_carrier(run_retour(mt, doc, default)))
    annotated = copy.deepcopy(doc)
    root = annotated.getroot()
    expected: dict[tuple[int, ...], set[str]] = {}
    cycle = itertools.cycle(CODES)
    for pos in carriers:
        if pos == (0,):
            continue
        code = next(cycle)
        add_code(at(root, pos), code)
        expected[pos] = {code}
    # The Header: two codes and a repeat (reported once); the root's code goes to the Header.
    add_code(at(root, (0,)), "0018")
    add_code(at(root, (0,)), "0001")
    add_code(at(root, (0,)), "0018")
    add_code(root, "8028")
    expected[(0,)] = {"0018", "0001", "8028"}
    # A code on a field (Bsn) is reported on its record (Client).
    first_client = root.xpath("*[local-name()='Clienten']/*[local-name()='Client']")[0]
    add_code(first_client[0], "0435")
    client_pos = position(first_client)
    expected[client_pos] = expected.get(client_pos, set()) | {"0435"}

    retour = run_retour(mt, annotated, default)
    assert no_knooppunt_namespace(retour)
    got = codes_by_carrier(retour)
    assert set(got) == set(carriers)
    for pos, codes in got.items():
        assert len(codes) == len(set(codes)), f"duplicate codes at {pos}: {codes}"
        assert set(codes) == expected.get(pos, {default}), pos


def schema_namespace(name: str) -> str:
    return str(etree.parse(str(BUNDLE / name)).getroot().get("targetNamespace"))


def no_knooppunt_namespace(doc: etree._ElementTree) -> bool:
    for el in doc.getroot().iter():
        if not isinstance(el.tag, str):
            continue
        if etree.QName(el).namespace == KP_NS or KP_NS in el.nsmap.values():
            return False
    return True


def count_data(root: etree._Element) -> int:
    return sum(1 for el in root.iter() if isinstance(el.tag, str))


def extra_retour_elements(carriers: dict[tuple[int, ...], list[str]]) -> int:
    # RetourCodes + RetourCode per carrier, plus IdentificatieRetour and DagtekeningRetour.
    return sum(1 + len(codes) for codes in carriers.values()) + 2
