"""Whose data a message carries, as pseudonyms: subject references and the ordering key."""

from __future__ import annotations

from lxml import etree

from node_runtime.messages.compiled import CompiledMessageType
from node_runtime.messages.rules import xpath_text
from node_runtime.security.pseudonyms import Pseudonymizer


def subject_refs(
    mt: CompiledMessageType, root: etree._Element, pseudonymizer: Pseudonymizer
) -> list[str | None]:
    """One pseudonymised reference per record of the message (the BSN never leaves here)."""
    if mt.records is None or mt.subject is None:
        return []
    found = mt.records(root)
    records = found if isinstance(found, list) else []
    refs: list[str | None] = []
    for rec in records:
        if isinstance(rec, etree._Element):
            bsn = xpath_text(mt.subject(rec))
            refs.append(pseudonymizer.subject_ref(bsn) if bsn else None)
    return refs


def order_ref(
    mt: CompiledMessageType, root: etree._Element, pseudonymizer: Pseudonymizer
) -> str | None:
    """The key that keeps one client's messages in order in a mailbox (pseudonymised)."""
    if mt.records is None or mt.order_key is None:
        return None
    found = mt.records(root)
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        value = xpath_text(mt.order_key(found[0]))
        return pseudonymizer.order_ref(value) if value else None
    return None
