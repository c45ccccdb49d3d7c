"""Asking a node how many messages are still undelivered (for deletion finalizers).

The runtime answers ``GET /api/v1/admin/pending?gemeente=<code>`` or ``?connector=<name>``
on its https port with ``{"pending": <count>}``, for administrator certificates only. The
operator presents a short-lived administrator certificate issued by the node's CA (its OIN
is added to the node's administrators in the runtime configuration) and verifies the
node's server certificate against the same CA.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from knooppunt_operator import certificates, kube
from knooppunt_operator.builders.node import HTTPS_PORT


class PendingUnknown(Exception):
    """The node could not say (unreachable, refused); deletion has to wait."""


@dataclass(frozen=True)
class NodeEndpoint:
    """A node to ask, with the CA material needed to talk to it."""

    name: str
    namespace: str
    ca: certificates.CaMaterial

    @property
    def base_url(self) -> str:
        return f"https://{self.name}.{self.namespace}.svc:{HTTPS_PORT}"


class PendingCounter(Protocol):
    async def pending(
        self, node: NodeEndpoint, *, gemeente: str | None = None, connector: str | None = None
    ) -> int: ...


@dataclass
class RuntimeAdminClient:
    """The real client: mutual TLS with a fresh administrator certificate per call."""

    operator_oin: str
    timeout: float = 10.0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    url_for: Callable[[NodeEndpoint], str] = field(default=lambda node: node.base_url)

    def _context(self, node: NodeEndpoint) -> ssl.SSLContext:
        ca = certificates.load_ca(node.ca)
        admin = certificates.issue_admin_client(ca, oin=self.operator_oin, now=self.clock())
        context = ssl.create_default_context(cadata=node.ca.cert_pem.decode())
        with kube.key_files(admin.chain_pem, admin.key_pem) as (cert, key):
            context.load_cert_chain(cert, key)
        return context

    async def pending(
        self, node: NodeEndpoint, *, gemeente: str | None = None, connector: str | None = None
    ) -> int:
        params = {k: v for k, v in (("gemeente", gemeente), ("connector", connector)) if v}
        try:
            async with httpx.AsyncClient(
                verify=self._context(node), timeout=self.timeout
            ) as client:
                response = await client.get(
                    f"{self.url_for(node)}/api/v1/admin/pending", params=params
                )
        except httpx.HTTPError as exc:
            raise PendingUnknown(f"node {node.name} not reachable: {exc}") from exc
        if response.status_code != 200:
            raise PendingUnknown(
                f"node {node.name} answered {response.status_code} to the pending-messages query"
            )
        try:
            return int(response.json()["pending"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PendingUnknown(f"node {node.name} gave an unreadable answer") from exc


@dataclass
class StaticPending:
    """A stand-in for tests and local runs: fixed counts per gemeentecode / connector."""

    gemeenten: dict[str, int] = field(default_factory=dict)
    connectors: dict[str, int] = field(default_factory=dict)
    asked: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    async def pending(
        self, node: NodeEndpoint, *, gemeente: str | None = None, connector: str | None = None
    ) -> int:
        self.asked.append((node.name, gemeente, connector))
        if gemeente is not None:
            return self.gemeenten.get(gemeente, 0)
        return self.connectors.get(connector or "", 0)
