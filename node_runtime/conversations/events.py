"""Kubernetes Events about overdue conversations (on a cluster).

When the number of overdue conversation items of a (connector, conversation, gemeente,
sender) grows, the node records a Warning Event `ConversationOverdue` on its Knooppunt
resource, so `kubectl describe knooppunt` and event-based alerting show it. Counts and codes
only: no message contents. The node's Role allows `create` on events (operator builder).
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import Any

import httpx

from node_runtime.conversations.monitor import Labels
from node_runtime.model import GROUP, VERSION
from node_runtime.state.kubernetes_source import SERVICE_ACCOUNT, ApiAccess

log = logging.getLogger("knooppunt.conversations")


def overdue_event(
    node: str, namespace: str, labels: Labels, count: int, *, now: datetime
) -> dict[str, Any]:
    connector, conversation, gemeente, sender, _state = labels
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{node}.conversation-overdue.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Knooppunt",
            "name": node,
            "namespace": namespace,
        },
        "reason": "ConversationOverdue",
        "type": "Warning",
        "message": f"{count} item(s) of conversation {conversation} ({connector}) overdue "
        f"for gemeente {gemeente}, opened by {sender}",
        "source": {"component": "knooppunt-node", "host": socket.gethostname()},
        "reportingComponent": "knooppunt.nl/node",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventSink:
    """Posts an Event for every label set whose overdue count went up."""

    def __init__(self, access: ApiAccess, namespace: str, node: str) -> None:
        self.access = access
        self.namespace = namespace
        self.node = node

    def _headers(self) -> dict[str, str]:
        token = self.access.token
        if token is None and (SERVICE_ACCOUNT / "token").exists():
            token = (SERVICE_ACCOUNT / "token").read_text().strip()
        return {"authorization": f"Bearer {token}"} if token else {}

    def __call__(self, previous: dict[Labels, int], current: dict[Labels, int]) -> None:
        grown = {k: v for k, v in current.items() if v > previous.get(k, 0)}
        if not grown:
            return
        now = datetime.now(UTC)
        with httpx.Client(
            base_url=self.access.server, verify=self.access.ssl_context, timeout=10
        ) as client:
            for labels, count in sorted(grown.items()):
                response = client.post(
                    f"/api/v1/namespaces/{self.namespace}/events",
                    headers=self._headers(),
                    json=overdue_event(self.node, self.namespace, labels, count, now=now),
                )
                if response.status_code >= 300:
                    log.warning(
                        "could not record a ConversationOverdue event",
                        extra={"status": response.status_code},
                    )
