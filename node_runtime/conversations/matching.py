"""Which conversation items an accepted message opens or closes.

For every conversation of the connector in which the message type takes part, each item the
step selects (or the message as a whole) yields one event. The correlation key is a keyed
hash (HMAC-SHA-256 under the node's pseudonymisation key) of the conversation, the gemeente,
the participant and the values the key expressions select: values such as a BSN are never
stored. Items whose key values are all empty are skipped: nothing to correlate.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from lxml import etree

from node_runtime.conversations import calendar
from node_runtime.messages.rules import xpath_text
from node_runtime.model.connector import Conversation, ConversationStep, SectorConnector
from node_runtime.store.records import ConversationEvent


@dataclass(frozen=True)
class _Step:
    conversation: Conversation
    kind: Literal["open", "close"]
    items: etree.XPath | None
    key: list[etree.XPath]


@dataclass(frozen=True)
class Parties:
    sender: str
    recipient: str
    gemeente: str
    participant: str


def _compile(
    step: ConversationStep,
    conversation: Conversation,
    kind: Literal["open", "close"],
    namespaces: dict[str, str],
) -> _Step:
    items = etree.XPath(step.items, namespaces=namespaces) if step.items else None
    return _Step(
        conversation, kind, items, [etree.XPath(k, namespaces=namespaces) for k in step.key]
    )


class Matcher:
    def __init__(
        self, key: bytes, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._key = key
        self.clock = clock
        self._compiled: dict[tuple[str, int, str], list[_Step]] = {}
        self._lock = threading.Lock()

    def _steps(self, connector: SectorConnector, message_type: str) -> list[_Step]:
        cache_key = (connector.name, connector.spec.revision, message_type)
        steps = self._compiled.get(cache_key)
        if steps is None:
            steps = []
            ns = connector.spec.namespaces
            for conversation in connector.spec.conversations:
                if conversation.opener.message == message_type:
                    steps.append(_compile(conversation.opener, conversation, "open", ns))
                steps.extend(
                    _compile(c, conversation, "close", ns)
                    for c in conversation.closers
                    if c.message == message_type
                )
            with self._lock:
                self._compiled[cache_key] = steps
        return steps

    def key_hash(
        self, connector: str, conversation: str, parties: Parties, values: list[str]
    ) -> str:
        data = json.dumps(
            [connector, conversation, parties.gemeente, parties.participant, *values],
            separators=(",", ":"),
        ).encode()
        return hmac.digest(self._key, b"conversation:" + data, "sha256").hex()

    def events(
        self,
        connector: SectorConnector,
        message_type: str,
        root: etree._Element,
        parties: Parties,
        *,
        message_id: str,
        sender_message_id: str,
    ) -> list[ConversationEvent]:
        steps = self._steps(connector, message_type)
        if not steps:
            return []
        at = self.clock()
        out: list[ConversationEvent] = []
        for step in steps:
            selected = step.items(root) if step.items is not None else [root]
            items = (
                [i for i in selected if isinstance(i, etree._Element)]
                if isinstance(selected, list)
                else []
            )
            deadline = step.conversation.deadline
            due = (
                calendar.due(at, working_days=deadline.working_days, hours=deadline.hours)
                if step.kind == "open"
                else None
            )
            for n, item in enumerate(items, start=1):
                values = [xpath_text(k(item)) for k in step.key]
                if not any(values):
                    continue
                out.append(
                    ConversationEvent(
                        kind=step.kind,
                        connector=connector.name,
                        conversation=step.conversation.name,
                        key_hash=self.key_hash(
                            connector.name, step.conversation.name, parties, values
                        ),
                        gemeente=parties.gemeente,
                        participant=parties.participant,
                        sender=parties.sender,
                        recipient=parties.recipient,
                        message_id=message_id,
                        message_type=message_type,
                        sender_message_id=sender_message_id,
                        item=n,
                        at=at,
                        due_at=due,
                    )
                )
        return out
