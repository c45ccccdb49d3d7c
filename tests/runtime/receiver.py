"""A gemeente's push endpoint for tests: HTTPS with client-certificate authentication, applies
each delivery once per idempotency key, and can be told to fail or to be slow."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node_runtime.observability.telemetry import DISABLED, Telemetry
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import server_context
from node_runtime.security.tls.uvicorn_protocol import RunningServer, run_in_thread, tls_config


@dataclass
class Receiver:
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The municipal JSON per delivery (unwrapped from its CloudEvent)."""
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The CloudEvent (structured mode) per delivery, when it came as one."""
    content_types: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0
    fail_next: int = 0
    always_fail: bool = False
    delay: float = 0.0
    client_oins: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: RunningServer | None = None
    # a gemeente system that traces too: its span continues the node's traceparent
    telemetry: Telemetry = DISABLED

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://localhost:{self.server.port}/notificaties"

    async def handle(self, request: Request) -> Response:
        with self.telemetry.span(
            "POST /notificaties", request.headers.get("traceparent"), kind=SpanKind.SERVER
        ):
            return await self._handle(request)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        identity = request.state.tls_client_identity
        with self.lock:
            self.received += 1
            if identity is not None and identity.serial_number:
                self.client_oins.add(identity.serial_number)
            if self.always_fail:
                return Response(status_code=503)
            if self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=503)
            key = request.headers["idempotency-key"]
            if key in self.applied:
                self.duplicates += 1
            else:
                content_type = request.headers.get("content-type", "")
                self.content_types.append(content_type)
                document = json.loads(body)
                if content_type.startswith("application/cloudevents+json"):
                    self.events[key] = document
                    document = document["data"]
                self.applied[key] = document
                self.order.append(key)
        return JSONResponse({"ok": True}, status_code=201)


def start_receiver(pki: DevPki) -> tuple[Receiver, Any]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/notificaties", receiver.handle, methods=["POST"])])
    ctx = server_context(pki.server.chain, pki.server.key, pki.ca_bundle)
    config = tls_config(app, ssl_context=ctx, host="127.0.0.1", port=0, log_config=None)
    manager = run_in_thread(config)
    receiver.server = manager.__enter__()
    return receiver, manager
