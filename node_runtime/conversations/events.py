"""Kubernetes Events about overdue conversations (on a cluster).

When the number of overdue conversation items of a (connector, conversation, gemeente,
sender) grows, the node records a Warning Event `ConversationOverdue` on its Knooppunt
resource, so `kubectl describe knooppunt` and event-based alerting show it. Counts and codes
only: no message contents. The node's Role allows `create` on events (operator builder).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from node_runtime.conversations.monitor import Labels
from node_runtime.model import GROUP, VERSION
from node_runtime.state.kubernetes_source import ApiAccess

log = logging.getLogger("knooppunt.conversations")


def overdue_event(
    node: str,
    namespace: str,
    labels: Labels,
    count: int,
    *,
    now: datetime,
    uid: str | None = None,
) -> dict[str, Any]:
    """The Event; with the Knooppunt's ``uid`` (kubectl describe selects events by uid)."""
    connector, conversation, gemeente, sender, _state = labels
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Knooppunt",
        "name": node,
        "namespace": namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{node}.conversation-overdue.", "namespace": namespace},
        "involvedObject": involved,
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

    def __init__(
        self, access: ApiAccess, namespace: str, node: str, *, uid: str | None = None
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.node = node
        self.uid = uid

    def __call__(self, previous: dict[Labels, int], current: dict[Labels, int]) -> None:
        grown = {k: v for k, v in current.items() if v > previous.get(k, 0)}
        if not grown:
            return
        _run(self._post(grown, datetime.now(UTC)))

    async def _post(self, grown: dict[Labels, int], now: datetime) -> None:
        """With the runtime's Kubernetes client (kubernetes_asyncio, the same credentials as
        the Gemeente watch)."""
        configuration, renew = await self.access.configuration()
        try:
            async with ApiClient(configuration) as api:
                core = CoreV1Api(api)
                for labels, count in sorted(grown.items()):
                    event = overdue_event(
                        self.node, self.namespace, labels, count, now=now, uid=self.uid
                    )
                    try:
                        await core.create_namespaced_event(  # the JSON form is accepted
                            self.namespace, cast(Any, event), _request_timeout=10
                        )
                    except ApiException as exc:
                        log.warning(
                            "could not record a ConversationOverdue event",
                            extra={"status": exc.status},
                        )
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        log.warning(
                            "could not record a ConversationOverdue event",
                            extra={"error": str(exc)},
                        )
        finally:
            if renew is not None:
                renew.cancel()


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """The monitor calls from a worker thread (no event loop there); elsewhere, a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()
