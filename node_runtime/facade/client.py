"""Calls from the façade to the nodes: mutual TLS with the façade's own certificate, a fresh
signed acting-for assertion per request, per-node time bounds and concurrent fan-out."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from node_runtime.facade.state import NodeEntry
from node_runtime.model.gemeente import Gemeente
from node_runtime.security.acting_for import HEADER, AssertionSigner

log = logging.getLogger("knooppunt.facade.client")

NodeStatus = Literal["ok", "unavailable", "timeout", "error"]


@dataclass(frozen=True)
class NodeOutcome:
    """What one node answered (or why it did not)."""

    node: str
    status: NodeStatus
    detail: str | None
    response: httpx.Response | None
    elapsed_ms: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def json(self) -> Any:
        assert self.response is not None
        return self.response.json()

    def describe(self, **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "detail": self.detail,
            "elapsedMs": round(self.elapsed_ms, 1),
        }
        if self.response is not None:
            out["httpStatus"] = self.response.status_code
        out.update(extra)
        return out


def _problem_slug(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return f"HTTP {response.status_code} {body['type'].rsplit('/', 1)[-1]}"
    return f"HTTP {response.status_code}"


class NodeClient:
    """One pooled HTTPS client for all nodes; create and close it on the event loop."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        signer: AssertionSigner,
        *,
        timeout: float,
        submit_timeout: float,
        assertion_lifetime: int = 30,
        max_connections_per_node: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.signer = signer
        self.timeout = timeout
        self.submit_timeout = submit_timeout
        self.assertion_lifetime = assertion_lifetime
        self._client = httpx.AsyncClient(
            verify=ssl_context,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections_per_node * 8,
                max_keepalive_connections=max_connections_per_node * 4,
            ),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        node: NodeEntry,
        gemeente: Gemeente,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One call to ``node`` acting for ``gemeente``, bounded in total by ``timeout``."""
        url = node.url(path)
        bound = self.timeout if timeout is None else timeout
        assertion = self.signer.sign(
            gemeente_oin=gemeente.spec.oin,
            gemeentecode=gemeente.spec.gemeentecode,
            audience=node.name,
            method=method,
            path=urlsplit(url).path,
            lifetime=self.assertion_lifetime,
        )
        request_headers = {HEADER: assertion, **(headers or {})}
        request = self._client.build_request(
            method,
            url,
            params=params,
            content=content,
            headers=request_headers,
            timeout=httpx.Timeout(bound),
        )
        return await asyncio.wait_for(self._client.send(request), bound)

    async def attempt(
        self,
        node: NodeEntry,
        gemeente: Gemeente,
        method: str,
        path: str,
        *,
        accept: Callable[[httpx.Response], bool] = lambda r: r.is_success,
        **kwargs: Any,
    ) -> NodeOutcome:
        """Like :meth:`send`, but never raises: the outcome says what happened."""
        started = time.perf_counter()

        def outcome(
            status: NodeStatus, detail: str | None, response: httpx.Response | None = None
        ) -> NodeOutcome:
            elapsed = (time.perf_counter() - started) * 1000
            if status != "ok":
                log.warning(
                    "node call failed",
                    extra={"node": node.name, "status": status, "detail": detail, "path": path},
                )
            return NodeOutcome(node.name, status, detail, response, elapsed)

        try:
            response = await self.send(node, gemeente, method, path, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            bound = kwargs.get("timeout") or self.timeout
            return outcome("timeout", f"no answer within {bound:g} s")
        except httpx.TransportError as exc:
            return outcome(
                "unavailable", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            )
        if accept(response):
            return outcome("ok", None, response)
        return outcome("error", _problem_slug(response), response)

    async def fan_out(
        self,
        nodes: list[NodeEntry],
        call: Callable[[NodeEntry], Awaitable[NodeOutcome]],
    ) -> dict[str, NodeOutcome]:
        """Run ``call`` for every node concurrently; each is bounded by its own timeout."""
        results = await asyncio.gather(*(call(n) for n in nodes))
        return {r.node: r for r in results}
