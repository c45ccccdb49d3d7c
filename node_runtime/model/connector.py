"""The SectorConnector resource: one sector chain described as data.

A connector names its schema bundle, the message types it accepts, the business rules
(each with the standard's retourcode), the conversion to the municipal JSON representation,
the retour message answering each type, the purposes with the fields each may release
(doelbinding) and the participants (e.g. care providers) that may speak on the chain.
Adding a sector means writing one of these, never code.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from lxml import etree
from pydantic import Field, StringConstraints, model_validator

from node_runtime.model.meta import (
    DNS_LABEL,
    PARTICIPANT_ID_PATTERN,
    RETOURCODE_PATTERN,
    Model,
    Resource,
)

FIELD_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\[\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)*$"
FIELD_PATH_RE = re.compile(FIELD_PATH_PATTERN)


ParticipantId = Annotated[str, StringConstraints(pattern=PARTICIPANT_ID_PATTERN, max_length=64)]


class BundleSource(Model):
    """Where the connector's files (XSDs, stylesheets) come from. Exactly one is set."""

    builtin: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.\-]*$",
        description="A bundle shipped with the runtime image (e.g. iwmo-2.1).",
    )
    config_map: str | None = Field(
        default=None,
        alias="configMap",
        pattern=DNS_LABEL,
        description="A ConfigMap in the connector's namespace holding the bundle's files.",
    )
    path: str | None = Field(
        default=None,
        description="Local mode only: a directory, relative to the resource file.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> BundleSource:
        chosen = [v for v in (self.builtin, self.config_map, self.path) if v]
        if len(chosen) != 1:
            raise ValueError("bundle needs exactly one of builtin, configMap, path")
        return self


class HeaderPaths(Model):
    """XPath 1.0 expressions (from the message root) that locate the routing header."""

    sender: str = Field(description="The sending party's identifier (e.g. Afzender).")
    recipient: str = Field(description="The receiving party's identifier (e.g. Ontvanger).")
    message_id: str = Field(
        alias="messageId",
        description="The sender's message identification; (sender, messageId) is idempotent.",
    )


class Rule(Model):
    """A business rule. The retourcode attaches to each `context` element that fails."""

    name: str = Field(pattern=DNS_LABEL)
    kind: Literal["elfproef", "tenant", "participant", "xpath"] = Field(
        description="elfproef: value passes the BSN 11-proof; tenant: value is the gemeentecode "
        "of a gemeente subscribed to this connector; participant: value is a registered "
        "participant identifier; xpath: the boolean `test` holds."
    )
    context: str = Field(description="XPath from the root selecting the elements checked.")
    value: str | None = Field(
        default=None, description="XPath relative to context (elfproef, tenant, participant)."
    )
    test: str | None = Field(default=None, description="Boolean XPath relative to context.")
    retourcode: str = Field(pattern=RETOURCODE_PATTERN)
    message: str = Field(min_length=1, description="Explanation given with the retourcode.")

    @model_validator(mode="after")
    def _operands(self) -> Rule:
        if self.kind == "xpath" and not self.test:
            raise ValueError(f"rule {self.name}: kind xpath needs test")
        if self.kind != "xpath" and not self.value:
            raise ValueError(f"rule {self.name}: kind {self.kind} needs value")
        return self


class FieldMapping(Model):
    select: str = Field(description="XPath relative to the innermost collection item.")
    type: Literal["string", "integer", "date", "boolean"] = "string"


class Mapping(Model):
    """Declarative XPath → JSON conversion.

    Field paths are dotted names; a segment ending in `[]` is a list whose items are selected
    by the matching entry of `collections`. Each field's XPath is evaluated relative to the
    item of its innermost collection (or the message root). Empty values are omitted.
    """

    collections: dict[str, str] = Field(
        default_factory=dict,
        description="Collection path (ending in []) → XPath selecting its items, relative to "
        "the parent collection's item.",
    )
    fields: dict[str, FieldMapping] = Field(
        description="Field path → how to compute it.",
    )

    @model_validator(mode="after")
    def _paths(self) -> Mapping:
        for path in list(self.collections) + list(self.fields):
            if not FIELD_PATH_RE.match(path):
                raise ValueError(f"invalid field path {path!r}")
        for path in self.collections:
            if not path.endswith("[]"):
                raise ValueError(f"collection path {path!r} must end in []")
        for path in list(self.fields) + list(self.collections):
            parts = path.split(".")
            for i, part in enumerate(parts):
                prefix = ".".join(parts[: i + 1])
                if part.endswith("[]") and prefix not in self.collections:
                    raise ValueError(f"field {path!r}: collection {prefix!r} is not declared")
        return self


class Conversion(Model):
    """How a message becomes the municipal representation. Exactly one of mapping, xslt."""

    mapping: Mapping | None = None
    xslt: str | None = Field(
        default=None,
        description="XSLT 1.0 stylesheet in the bundle producing the XPath 3.1 XML "
        "representation of JSON (namespace http://www.w3.org/2005/xpath-functions).",
    )
    output_fields: list[str] = Field(
        default_factory=list,
        alias="outputFields",
        description="With xslt: the field paths the stylesheet can produce.",
    )

    @model_validator(mode="after")
    def _one(self) -> Conversion:
        if (self.mapping is None) == (self.xslt is None):
            raise ValueError("conversion needs exactly one of mapping, xslt")
        if self.xslt is not None and not self.output_fields:
            raise ValueError("conversion with xslt must list outputFields")
        return self

    def field_paths(self) -> list[str]:
        if self.mapping is not None:
            return list(self.mapping.fields)
        return list(self.output_fields)


class Notification(Model):
    """The VNG Notificaties-style envelope of the municipal representation."""

    kanaal: str = Field(min_length=1)
    resource: str = Field(min_length=1)
    actie: str = Field(default="create", min_length=1)


class RetourSpec(Model):
    message: str = Field(description="Name of the retour message type (e.g. WMO306).")
    stylesheet: str = Field(description="XSLT in the bundle producing the retour message.")
    schema_file: str = Field(alias="schema", description="XSD in the bundle for the retour.")


class MessageType(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=64, description="e.g. WMO305.")
    description: str = ""
    namespace: str = Field(min_length=1, description="Namespace of the root element.")
    root: str = Field(default="Bericht", description="Local name of the root element.")
    schema_file: str = Field(alias="schema", description="Entry XSD in the bundle.")
    direction: Literal["toGemeente", "fromGemeente"] = Field(
        description="toGemeente: a participant sends to a gemeente; fromGemeente: a gemeente "
        "sends to a participant."
    )
    header: HeaderPaths
    records: str | None = Field(
        default=None, description="XPath selecting the records (e.g. Client) of a message."
    )
    subject: str | None = Field(
        default=None, description="XPath, relative to a record, to the data subject's BSN."
    )
    order_key: str | None = Field(
        default=None,
        alias="orderKey",
        description="XPath relative to a record; deliveries sharing a key keep intake order.",
    )
    rules: list[Rule] = Field(default_factory=list, max_length=256)
    conversion: Conversion | None = Field(
        default=None, description="Required for toGemeente messages."
    )
    notification: Notification | None = None
    retour: RetourSpec | None = None

    @model_validator(mode="after")
    def _direction(self) -> MessageType:
        if self.direction == "toGemeente" and (
            self.conversion is None or self.notification is None
        ):
            raise ValueError(f"message {self.name}: toGemeente needs conversion and notification")
        return self


class Purpose(Model):
    """A legal purpose (doelbinding) and the fields it may release."""

    name: str = Field(pattern=DNS_LABEL)
    description: str = Field(min_length=1)
    messages: list[str] = Field(min_length=1, description="Message types this purpose covers.")
    fields: list[str] = Field(
        min_length=1,
        description="Field paths that may be released; a path releases its whole subtree.",
        json_schema_extra={"items": {"type": "string", "pattern": FIELD_PATH_PATTERN}},
    )

    @model_validator(mode="after")
    def _fields(self) -> Purpose:
        for path in self.fields:
            if not FIELD_PATH_RE.match(path):
                raise ValueError(f"purpose {self.name}: invalid field path {path!r}")
        return self


class CertificateMatch(Model):
    """Which verified client certificate speaks for a participant."""

    serial_number: str | None = Field(
        default=None,
        alias="serialNumber",
        description="Subject serialNumber (OIN or other organisation number).",
    )
    fingerprint_sha256: str | None = Field(
        default=None,
        alias="fingerprintSha256",
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the DER certificate, lower-case hex.",
    )

    @model_validator(mode="after")
    def _some(self) -> CertificateMatch:
        if not (self.serial_number or self.fingerprint_sha256):
            raise ValueError("certificate needs serialNumber or fingerprintSha256")
        return self


class Participant(Model):
    """A sector party (e.g. a care provider) and the identifiers it may send as."""

    name: str = Field(pattern=DNS_LABEL)
    display_name: str = Field(alias="displayName", min_length=1)
    identifiers: list[ParticipantId] = Field(
        min_length=1,
        max_length=8,
        description="Identifiers this party may use as sender (iWmo: 8-digit AGB-codes).",
    )
    certificate: CertificateMatch


class ConversationStep(Model):
    """Where a conversation's message is found and how it is correlated."""

    message: str = Field(
        pattern=r"^[A-Za-z0-9_\-]+$", max_length=64, description="Message type (e.g. WMO315)."
    )
    items: str | None = Field(
        default=None,
        description="XPath from the root selecting the items that each open (or close) one "
        "conversation, e.g. the requested products; empty: the message as a whole.",
    )
    key: list[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] = Field(
        min_length=1,
        max_length=8,
        description="XPath expressions relative to an item; their string values, with the "
        "gemeente and the participant, correlate an opener with its closer. Only a keyed hash "
        "of them is stored.",
    )


class Deadline(Model):
    """The term within which a closing message must follow. Exactly one is set."""

    working_days: int | None = Field(
        default=None,
        alias="workingDays",
        ge=1,
        le=365,
        description="Working days on the Dutch calendar (Monday-Friday except national public "
        "holidays); due at the end of the last one, Europe/Amsterdam.",
    )
    hours: float | None = Field(default=None, gt=0, le=8760, description="Hours.")

    @model_validator(mode="after")
    def _one(self) -> Deadline:
        if (self.working_days is None) == (self.hours is None):
            raise ValueError("deadline needs exactly one of workingDays, hours")
        return self


class Conversation(Model):
    """A message that must be answered by another within a term (e.g. a WMO315 request for an
    assignment by a WMO301 assignment within 5 working days)."""

    name: str = Field(pattern=DNS_LABEL)
    description: str = ""
    opener: ConversationStep
    closers: list[ConversationStep] = Field(min_length=1, max_length=8)
    deadline: Deadline


class ShadowRelease(Model):
    """The next release of the standard (its schemas, rules and mappings), run beside the live
    one on every live message without any effect on answers, the store or delivery. The
    differences are counted in the node's metrics and the SectorConnector's status. Promote
    it by moving these fields to the spec and raising `revision` (the Knooppunt's pin keeps
    the rollback)."""

    standard_version: str = Field(alias="standardVersion", min_length=1, description="e.g. 2.2.")
    bundle: BundleSource
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="Prefixes added to (or replacing) the live ones."
    )
    messages: list[MessageType] = Field(min_length=1, max_length=64)


class SectorConnectorSpec(Model):
    standard: str = Field(min_length=1, description="Standard name, e.g. iWmo.")
    standard_version: str = Field(alias="standardVersion", min_length=1, description="e.g. 2.1.")
    revision: int = Field(
        default=1, ge=1, description="Connector revision; raise it for every change of content."
    )
    bundle: BundleSource
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="Prefix → namespace URI for the XPath expressions."
    )
    participant_identifier: str = Field(
        default="agb",
        alias="participantIdentifier",
        description="Kind of identifier participants use (e.g. agb).",
    )
    # Upper bounds keep the CRD's CEL rules inside the API server's cost budget; far above use.
    messages: list[MessageType] = Field(min_length=1, max_length=64)
    purposes: list[Purpose] = Field(default_factory=list, max_length=64)
    participants: list[Participant] = Field(default_factory=list, max_length=5000)
    payload_retention_days: int = Field(
        default=90,
        alias="payloadRetentionDays",
        ge=1,
        description="Delivered payloads are purged after this many days.",
    )
    shadow: ShadowRelease | None = Field(
        default=None, description="Shadow validation of the next release of the standard."
    )
    conversations: list[Conversation] = Field(
        default_factory=list,
        max_length=32,
        description="Conversations whose answer terms the node tracks: an opener must be "
        "followed by one of its closers before the deadline.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SectorConnectorSpec:
        names = [m.name for m in self.messages]
        if len(set(names)) != len(names):
            raise ValueError("message names must be unique")
        keys = [(m.namespace, m.root) for m in self.messages]
        if len(set(keys)) != len(keys):
            raise ValueError("two message types share namespace and root")
        by_name = {m.name: m for m in self.messages}
        for purpose in self.purposes:
            for message in purpose.messages:
                mt = by_name.get(message)
                if mt is None:
                    raise ValueError(f"purpose {purpose.name}: unknown message {message}")
                if mt.conversion is None:
                    raise ValueError(f"purpose {purpose.name}: {message} has no conversion")
        conversation_names = [c.name for c in self.conversations]
        if len(set(conversation_names)) != len(conversation_names):
            raise ValueError("conversation names must be unique")
        for conversation in self.conversations:
            steps = [conversation.opener, *conversation.closers]
            for step in steps:
                if step.message not in by_name:
                    raise ValueError(
                        f"conversation {conversation.name}: unknown message {step.message}"
                    )
            for step in steps:
                for expr in [step.items or ".", *step.key]:
                    try:  # evaluated once on an empty element: finds unknown prefixes
                        etree.XPath(expr, namespaces=self.namespaces)(etree.Element("probe"))
                    except etree.XPathError as exc:
                        raise ValueError(
                            f"conversation {conversation.name}: invalid XPath {expr!r}: {exc}"
                        ) from exc
            if conversation.opener.message in {c.message for c in conversation.closers}:
                raise ValueError(
                    f"conversation {conversation.name}: a message cannot both open and close it"
                )
        seen: set[str] = set()
        for p in self.participants:
            for ident in p.identifiers:
                if self.participant_identifier == "agb" and not re.fullmatch(r"[0-9]{8}", ident):
                    raise ValueError(f"participant {p.name}: {ident!r} is not an 8-digit AGB-code")
                if ident in seen:
                    raise ValueError(f"identifier {ident} belongs to two participants")
                seen.add(ident)
        return self


class SectorConnector(Resource):
    KIND: ClassVar[str] = "SectorConnector"
    PLURAL: ClassVar[str] = "sectorconnectors"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("sc", "connector")

    kind: Literal["SectorConnector"] = "SectorConnector"
    spec: SectorConnectorSpec
