"""On a cluster every node writes its shadow report into the SectorConnector's status
(`status.shadow.<node>`), so `kubectl get sectorconnector -o yaml` shows what the next release
would do. A JSON merge patch touches only the node's own entry; the operator's conditions and
revisions stay as they are. An entry is removed when its connector no longer has a shadow
(also by a pod that starts after the promotion: it removes its predecessor's entry once)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from node_runtime.model import GROUP, VERSION
from node_runtime.state.kubernetes_source import ApiAccess, run_sync

log = logging.getLogger("knooppunt.shadow")


class StatusWriter:
    def __init__(
        self,
        access: ApiAccess,
        namespace: str,
        node: str,
        *,
        reports: Callable[[], dict[str, dict[str, Any]]],
        connectors: Callable[[], list[str]],
        interval: float = 30.0,
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.node = node
        self.reports = reports
        self.connectors = connectors
        self.interval = interval
        self._written: dict[str, dict[str, Any] | None] = {}

    def write(self) -> int:
        """Patch every connector whose report changed; returns the number of patches."""
        result: int = run_sync(self._write())
        return result

    async def _write(self) -> int:
        """With the runtime's Kubernetes client (kubernetes_asyncio, the watch's credentials)."""
        reports = self.reports()
        patches = 0
        configuration, renew = await self.access.configuration()
        try:
            async with ApiClient(configuration) as api_client:
                api = CustomObjectsApi(api_client)
                for connector in self.connectors():
                    report = reports.get(connector)
                    content = (
                        None
                        if report is None
                        else {k: v for k, v in report.items() if v is not None}
                    )
                    # Unknown until written once: a pod started after a promotion (the shadow
                    # gone) removes the entry its predecessor left (a null is a no-op there).
                    if connector in self._written and self._written[connector] == content:
                        continue
                    entry = (
                        None
                        if content is None
                        else {
                            **content,
                            "updatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    )
                    try:
                        await api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                            GROUP,
                            VERSION,
                            self.namespace,
                            "sectorconnectors",
                            connector,
                            {"status": {"shadow": {self.node: entry}}},
                            _content_type="application/merge-patch+json",
                            _request_timeout=10,
                        )
                    except ApiException as exc:
                        if content is None and exc.status == 404:
                            self._written[connector] = None  # no connector: nothing to remove
                            continue
                        log.warning(
                            "could not write the shadow report to the SectorConnector",
                            extra={"connector": connector, "status": exc.status},
                        )
                        continue
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        log.warning(
                            "could not write the shadow report to the SectorConnector",
                            extra={"connector": connector, "status": getattr(exc, "status", None)},
                        )
                        continue
                    self._written[connector] = content
                    patches += 1
        finally:
            if renew is not None:
                renew.cancel()
        return patches

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.write)
            except Exception:
                log.exception("shadow status update failed")
