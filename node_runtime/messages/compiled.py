"""A connector compiled once per revision: schemas, XPaths, conversions, stylesheets."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from node_runtime.messages.bundles import BundleError, bundle_dir, inside, safe_file_parser
from node_runtime.messages.conversion import MappingConverter, XsltConverter
from node_runtime.messages.doelbinding import FieldFilter
from node_runtime.messages.retour import RetourBuilder
from node_runtime.messages.rules import CompiledRule, compile_rule
from node_runtime.model.connector import MessageType, Purpose, SectorConnector


class ConnectorCompileError(ValueError):
    """A connector that cannot be served; the message says which part and why."""


Converter = MappingConverter | XsltConverter


@dataclass(frozen=True)
class CompiledMessageType:
    spec: MessageType
    schema: etree.XMLSchema
    sender: etree.XPath
    recipient: etree.XPath
    message_id: etree.XPath
    records: etree.XPath | None
    subject: etree.XPath | None
    order_key: etree.XPath | None
    rules: tuple[CompiledRule, ...]
    converter: Converter | None
    retour: RetourBuilder | None
    schema_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class CompiledPurpose:
    spec: Purpose
    filter: FieldFilter


@dataclass(frozen=True)
class CompiledConnector:
    resource: SectorConnector
    bundle: Path
    messages: dict[str, CompiledMessageType]
    by_root: dict[tuple[str, str], CompiledMessageType]
    purposes: dict[str, CompiledPurpose]
    participants_by_identifier: dict[str, str]

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def revision(self) -> int:
        return self.resource.spec.revision

    def identify(self, root: etree._Element) -> CompiledMessageType | None:
        qname = etree.QName(root)
        return self.by_root.get((qname.namespace or "", qname.localname))


def _xpath(expr: str, namespaces: dict[str, str], where: str) -> etree.XPath:
    try:
        return etree.XPath(expr, namespaces=namespaces)
    except etree.XPathSyntaxError as exc:
        raise ConnectorCompileError(f"{where}: invalid XPath {expr!r}: {exc}") from exc


def _schema(root: Path, relative: str, where: str) -> etree.XMLSchema:
    try:
        path = inside(root, relative)
        doc = etree.parse(str(path), safe_file_parser(root))
        return etree.XMLSchema(doc)
    except (BundleError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
        raise ConnectorCompileError(
            f"{where}: schema {relative!r} does not compile: {exc}"
        ) from exc


def _xslt(root: Path, relative: str, where: str) -> etree.XSLT:
    try:
        path = inside(root, relative)
        doc = etree.parse(str(path), safe_file_parser(root))
        access = etree.XSLTAccessControl.DENY_ALL
        return etree.XSLT(doc, access_control=access)
    except (BundleError, etree.XSLTParseError, etree.XMLSyntaxError) as exc:
        raise ConnectorCompileError(
            f"{where}: stylesheet {relative!r} does not compile: {exc}"
        ) from exc


def _message(connector: SectorConnector, mt: MessageType, root: Path) -> CompiledMessageType:
    ns = dict(connector.spec.namespaces)
    where = f"connector {connector.name} message {mt.name}"
    try:
        rules = tuple(compile_rule(r, ns) for r in mt.rules)
    except etree.XPathSyntaxError as exc:
        raise ConnectorCompileError(f"{where}: a rule has an invalid XPath: {exc}") from exc
    converter: Converter | None = None
    if mt.conversion is not None:
        if mt.conversion.mapping is not None:
            try:
                converter = MappingConverter(mt.conversion.mapping, ns)
            except etree.XPathSyntaxError as exc:
                raise ConnectorCompileError(
                    f"{where}: mapping has an invalid XPath: {exc}"
                ) from exc
        else:
            assert mt.conversion.xslt is not None
            converter = XsltConverter(_xslt(root, mt.conversion.xslt, where))
    retour = None
    if mt.retour is not None:
        retour = RetourBuilder(
            message=mt.retour.message,
            stylesheet=_xslt(root, mt.retour.stylesheet, where),
            schema=_schema(root, mt.retour.schema_file, where),
        )

    def opt(expr: str | None) -> etree.XPath | None:
        return _xpath(expr, ns, where) if expr else None

    return CompiledMessageType(
        spec=mt,
        schema=_schema(root, mt.schema_file, where),
        sender=_xpath(mt.header.sender, ns, where),
        recipient=_xpath(mt.header.recipient, ns, where),
        message_id=_xpath(mt.header.message_id, ns, where),
        records=opt(mt.records),
        subject=opt(mt.subject),
        order_key=opt(mt.order_key),
        rules=rules,
        converter=converter,
        retour=retour,
    )


def compile_connector(
    connector: SectorConnector, *, origin: Path | None = None, config_map_root: Path
) -> CompiledConnector:
    try:
        root = bundle_dir(
            connector.spec.bundle,
            connector=connector.name,
            origin=origin,
            config_map_root=config_map_root,
        )
    except BundleError as exc:
        raise ConnectorCompileError(str(exc)) from exc
    messages = {mt.name: _message(connector, mt, root) for mt in connector.spec.messages}
    by_root = {(m.spec.namespace, m.spec.root): m for m in messages.values()}
    purposes: dict[str, CompiledPurpose] = {}
    for purpose in connector.spec.purposes:
        available: set[str] = set()
        for name in purpose.messages:
            conv = messages[name].spec.conversion
            assert conv is not None
            available |= set(conv.field_paths())
        for path in purpose.fields:
            if not any(a == path or a.startswith(path + ".") for a in available):
                raise ConnectorCompileError(
                    f"connector {connector.name} purpose {purpose.name}: field {path!r} is not "
                    f"produced by the conversion of {', '.join(purpose.messages)}"
                )
        purposes[purpose.name] = CompiledPurpose(purpose, FieldFilter(purpose.fields))
    participants = {ident: p.name for p in connector.spec.participants for ident in p.identifiers}
    return CompiledConnector(connector, root, messages, by_root, purposes, participants)


class ConnectorCache:
    """Compiles each (connector, revision, spec) once; later lookups reuse the result."""

    def __init__(self, *, config_map_root: Path) -> None:
        self._root = config_map_root
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int, str], CompiledConnector] = {}
        self.compilations = 0

    def get(self, connector: SectorConnector, origin: Path | None) -> CompiledConnector:
        key = (connector.name, connector.spec.revision, connector.spec.model_dump_json())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            compiled = compile_connector(connector, origin=origin, config_map_root=self._root)
            self.compilations += 1
            self._cache[key] = compiled
            return compiled
