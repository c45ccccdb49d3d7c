"""The envelope a gemeente receives, modelled on the VNG Notificaties API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from node_runtime.model.connector import Notification
from node_runtime.pipeline.context import Header


def link(public_url: str | None, path: str, ident: str) -> str:
    """An absolute URL on the node when it knows its public URL, else a URN."""
    return f"{public_url}{path}" if public_url else f"urn:uuid:{ident}"


def notification(
    *,
    notification: Notification,
    public_url: str | None,
    connector: str,
    message_type: str,
    header: Header,
    message_id: str,
    delivery_id: str,
    purpose: str,
    legal_basis: str,
    created: datetime,
    released: Any,
) -> dict[str, Any]:
    return {
        "kanaal": notification.kanaal,
        "hoofdObject": link(public_url, f"/api/v1/messages/{message_id}", message_id),
        "resource": notification.resource,
        "resourceUrl": link(
            public_url, f"/api/v1/gemeenten/{header.recipient}/mailbox/{delivery_id}", delivery_id
        ),
        "actie": notification.actie,
        "aanmaakdatum": created.isoformat().replace("+00:00", "Z"),
        "kenmerken": {
            "connector": connector,
            "berichttype": message_type,
            "afzender": header.sender,
            "ontvanger": header.recipient,
            "doel": purpose,
            "grondslag": legal_basis,
        },
        "inhoud": released,
    }
