"""On a cluster every node writes its shadow report into the SectorConnector's status
(`status.shadow.<node>`), so `kubectl get sectorconnector -o yaml` shows what the next release
would do. A JSON merge patch touches only the node's own entry; the operator's conditions and
revisions stay as they are. An entry is removed when its connector no longer has a shadow."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from node_runtime.model import GROUP, VERSION
from node_runtime.state.kubernetes_source import SERVICE_ACCOUNT, ApiAccess

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

    def _headers(self) -> dict[str, str]:
        token = self.access.token
        if token is None and (SERVICE_ACCOUNT / "token").exists():
            token = (SERVICE_ACCOUNT / "token").read_text().strip()
        headers = {"content-type": "application/merge-patch+json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def write(self) -> int:
        """Patch every connector whose report changed; returns the number of patches."""
        reports = self.reports()
        patches = 0
        with httpx.Client(
            base_url=self.access.server, verify=self.access.ssl_context, timeout=10
        ) as client:
            for connector in self.connectors():
                report = reports.get(connector)
                content = (
                    None if report is None else {k: v for k, v in report.items() if v is not None}
                )
                if connector not in self._written and content is None:
                    self._written[connector] = None  # nothing of ours to remove, we assume
                if self._written.get(connector, "unset") == content:
                    continue
                entry = (
                    None
                    if content is None
                    else {**content, "updatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                )
                response = client.patch(
                    f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/sectorconnectors/"
                    f"{connector}/status",
                    headers=self._headers(),
                    json={"status": {"shadow": {self.node: entry}}},
                )
                if response.status_code >= 300:
                    log.warning(
                        "could not write the shadow report to the SectorConnector",
                        extra={"connector": connector, "status": response.status_code},
                    )
                    continue
                self._written[connector] = content
                patches += 1
        return patches

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.write)
            except Exception:
                log.exception("shadow status update failed")
