"""The virtual register: the current care per citizen, derived from iWmo conversation messages.

From the iWmo (and iJw) messages delivered to a gemeente under one purpose: a verzoek om
toewijzing (WMO315/JW315) requests a product, a start-zorg message (WMO305/JW305) starts it, a
stop-zorg message (WMO307/JW307) ends it. One row per assignment (toewijzingnummer, or provider,
product code and beschikking when there is none), the latest message winning, each row listing
the messages it came from. Only the fields the purpose released reach this code: the register
can show no more than the gemeente's subscription already receives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from node_runtime.store.records import DeliveryRecord

ROLES = {
    "WMO315": "request",
    "JW315": "request",
    "WMO305": "start",
    "JW305": "start",
    "WMO307": "stop",
    "JW307": "stop",
}
# a purpose may feed the register only when it releases the citizen's BSN and what identifies
# an assignment's product, provider and period
NEEDED_FIELDS = (
    "clienten[].bsn",
    "clienten[].producten[].code",
    "clienten[].producten[].aanbieder",
    "clienten[].producten[].begindatum",
    "clienten[].producten[].einddatum",
)


@dataclass
class Source:
    message_id: str
    delivery_id: str
    message_type: str
    dagtekening: str | None


@dataclass
class Assignment:
    key: str
    provider: str | None = None
    product_code: str | None = None
    category: str | None = None
    assignment_number: str | None = None
    decision_number: str | None = None
    requested: str | None = None
    assigned_from: str | None = None
    started: str | None = None
    stopped: str | None = None
    end_reason: str | None = None
    status: str = "aangevraagd"
    sources: list[Source] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "productCode": self.product_code,
            "category": self.category,
            "assignmentNumber": self.assignment_number,
            "decisionNumber": self.decision_number,
            "requested": self.requested,
            "assignedFrom": self.assigned_from,
            "started": self.started,
            "stopped": self.stopped,
            "endReason": self.end_reason,
            "status": self.status,
            "sources": [
                {
                    "messageId": s.message_id,
                    "deliveryId": s.delivery_id,
                    "messageType": s.message_type,
                    "dagtekening": s.dagtekening,
                }
                for s in self.sources
            ],
        }


def _covers(released: str, path: str) -> bool:
    """A released path releases its whole subtree."""
    return path == released or path.startswith((released + ".", released + "[]"))


def releases_identity(fields: Iterable[str]) -> bool:
    """Does a purpose's field list release what the register needs (BSN and products)?"""
    listed = list(fields)
    return all(any(_covers(f, need) for f in listed) for need in NEEDED_FIELDS)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def derive(deliveries: Iterable[DeliveryRecord], bsn: str) -> list[Assignment]:
    rows: dict[str, Assignment] = {}
    for d in deliveries:
        role = ROLES.get(d.message_type)
        if role is None or not d.content:
            continue
        try:
            content = json.loads(d.content)["inhoud"]
        except (ValueError, KeyError, TypeError):
            continue
        dagtekening = _text(content.get("dagtekening"))
        for client in content.get("clienten") or []:
            if str(client.get("bsn")) != bsn:
                continue
            for product in client.get("producten") or []:
                number = _text(product.get("toewijzingNummer"))
                key = number or "|".join(
                    str(product.get(k)) for k in ("aanbieder", "code", "beschikkingNummer")
                )
                row = rows.setdefault(key, Assignment(key=key))
                row.provider = _text(product.get("aanbieder")) or row.provider
                row.product_code = _text(product.get("code")) or row.product_code
                row.category = _text(product.get("categorie")) or row.category
                row.assignment_number = number or row.assignment_number
                row.decision_number = _text(product.get("beschikkingNummer")) or row.decision_number
                row.assigned_from = (
                    _text(product.get("toewijzingIngangsdatum")) or row.assigned_from
                )
                if role == "request":
                    row.requested = dagtekening
                elif role == "start":
                    row.started = _text(product.get("begindatum")) or row.started
                    row.status = "actief" if row.stopped is None else row.status
                else:
                    row.started = _text(product.get("begindatum")) or row.started
                    row.stopped = _text(product.get("einddatum"))
                    row.end_reason = _text(product.get("redenBeeindiging"))
                    row.status = "beëindigd"
                row.sources.append(Source(d.message_id, d.id, d.message_type, dagtekening))
    return sorted(rows.values(), key=lambda r: (r.status != "actief", r.started or "", r.key))
