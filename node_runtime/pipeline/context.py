"""One message on its way through the intake: everything the steps learn about it, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from node_runtime.audit.processing_log import LogBuilder
from node_runtime.messages.compiled import CompiledConnector, CompiledMessageType
from node_runtime.state.node_state import NodeState
from node_runtime.state.principals import Principal
from node_runtime.store.records import LogRecord


@dataclass(frozen=True)
class Header:
    """The standard's message header: who sends, to whom, under which identification."""

    sender: str
    recipient: str
    message_id: str


@dataclass
class MessageContext:
    """Filled in step by step; a step reads what earlier steps found and adds its own part."""

    state: NodeState
    connector_name: str
    body: bytes
    principal: Principal
    logs: LogBuilder
    connector: CompiledConnector | None = None
    message_type: CompiledMessageType | None = None
    tree: etree._ElementTree | None = None
    header: Header | None = None
    digest: str = ""
    subjects: list[str | None] = field(default_factory=list)
    controller: str = ""
    legal_basis: str = "unknown"
    message_id: str = ""
    retour_id: str = ""
    today: str = ""
    logs_written: int = 0
    """How many of ``logs.records`` a write has taken already (a refusal after a rejection
    writes only its own record)."""

    def unwritten_logs(self) -> tuple[LogRecord, ...]:
        """The log records no write has taken yet; from now on they count as taken."""
        records = tuple(self.logs.records[self.logs_written :])
        self.logs_written = len(self.logs.records)
        return records

    # -- what a step may take for granted once an earlier step has run ----------------------

    @property
    def mt(self) -> CompiledMessageType:
        assert self.message_type is not None, "identification runs first"
        return self.message_type

    @property
    def compiled(self) -> CompiledConnector:
        assert self.connector is not None, "the connector is looked up first"
        return self.connector

    @property
    def root(self) -> etree._Element:
        assert self.tree is not None, "parsing runs first"
        return self.tree.getroot()

    @property
    def head(self) -> Header:
        assert self.header is not None, "the header is read after validation"
        return self.header

    @property
    def message_type_name(self) -> str:
        return self.message_type.name if self.message_type is not None else "unknown"

    def log_fields(self) -> dict[str, Any]:
        """The fields every processing-log record of an accepted message carries."""
        return {
            "controller": self.controller,
            "connector": self.compiled.name,
            "message_type": self.mt.name,
            "message_id": self.message_id,
        }
