"""OpenTelemetry spans for requests, intake steps and deliveries, exported over OTLP/HTTP.

Off by default: without an OTLP endpoint the hooks cost one ``if`` each and the W3C trace
context is carried as before (:mod:`node_runtime.tracing`). With an endpoint
(``KNOOPPUNT_OTLP_ENDPOINT``, e.g. ``http://otel-collector:4318``) each component (node, façade)
gets its own ``TracerProvider`` named by ``service.name``, so one process can hold both.

Parents are passed explicitly as :class:`~node_runtime.tracing.TraceContext` (trace id and the
span this process opened), never through context variables: intake steps run in worker
threads and group commits, where an implicit "current span" would be the wrong one. The
processing log's ``traceId``/``spanId`` are the exported spans' ids, so a record leads to
its trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace as otel
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node_runtime.observability.tracing import TraceContext, from_header

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

Attributes = Mapping[str, str | int | float | bool]


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP: a base endpoint gets the signal path ``/v1/traces`` (as the SDK's env does)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


class Telemetry:
    """The tracer of one component; disabled (no spans at all) without an endpoint."""

    def __init__(
        self, service: str, *, endpoint: str | None = None, attributes: Attributes | None = None
    ) -> None:
        self.service = service
        self._provider: TracerProvider | None = None
        self._tracer: otel.Tracer | None = None
        if endpoint:
            # the SDK and exporter are loaded only when spans are exported
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            resource = Resource.create({"service.name": service, **(attributes or {})})
            self._provider = TracerProvider(resource=resource)
            self._provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=traces_url(endpoint)), schedule_delay_millis=1000
                )
            )
            self._tracer = self._provider.get_tracer("knooppunt")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def shutdown(self) -> None:
        """Export what is buffered, then stop (at the component's shutdown)."""
        if self._provider is not None:
            self._provider.shutdown()

    def flush(self, timeout_millis: int = 5000) -> None:
        if self._provider is not None:
            self._provider.force_flush(timeout_millis)

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        parent: TraceContext | str | None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
    ) -> Iterator[ActiveSpan]:
        """A span continuing ``parent`` (a TraceContext or a ``traceparent`` header value).

        Yields the span; its ``trace`` is the TraceContext to carry on, whose ``span_id`` is
        the new span's (hand it on in ``traceparent``, give it to the processing log).
        Disabled, ``trace`` is the parent as it would be without tracing.
        """
        trace = parent if isinstance(parent, TraceContext) else from_header(parent)
        if self._tracer is None:
            yield ActiveSpan(trace, None)
            return
        context = None  # no parent: a new trace (its id is the span's, not the stand-in's)
        parent_span = trace.span_id or trace.parent_span_id
        if parent_span is not None:
            remote = SpanContext(
                trace_id=int(trace.trace_id, 16),
                span_id=int(parent_span, 16),
                is_remote=trace.span_id is None,
                trace_flags=TraceFlags(int(trace.flags, 16)),
            )
            context = otel.set_span_in_context(NonRecordingSpan(remote))
        span = self._tracer.start_span(
            name, context=context, kind=kind, attributes=dict(attributes or {})
        )
        ctx = span.get_span_context()
        active = ActiveSpan(
            TraceContext(
                format(ctx.trace_id, "032x"),
                parent_span,
                format(int(ctx.trace_flags), "02x"),
                span_id=format(ctx.span_id, "016x"),
            ),
            span,
        )
        try:
            yield active
        except BaseException as exc:
            span.record_exception(exc)
            active.error(type(exc).__name__)
            raise
        finally:
            span.end()

    def step(
        self, name: str, trace: TraceContext, **attributes: str | int | None
    ) -> contextlib.AbstractContextManager[ActiveSpan]:
        """An intake or delivery step: a child of the span ``trace`` carries."""
        if self._tracer is None:
            return contextlib.nullcontext(ActiveSpan(trace, None))
        return self.span(
            name, trace, attributes={k: v for k, v in attributes.items() if v is not None}
        )


class ActiveSpan:
    """An open span (or none, when tracing is off): what hooks may say about it."""

    __slots__ = ("_span", "trace")

    def __init__(self, trace: TraceContext, span: otel.Span | None) -> None:
        self.trace = trace
        self._span = span

    @property
    def traceparent(self) -> str:
        """The W3C header naming this span (or the carried context when tracing is off)."""
        return self.trace.traceparent(self.trace.span_id or self.trace.new_span())

    def rename(self, name: str) -> None:
        if self._span is not None:
            self._span.update_name(name)

    def set(self, key: str, value: str | int | float | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def error(self, description: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, description))


DISABLED = Telemetry("disabled")


class ServerSpans:
    """ASGI middleware: one server span per HTTP request, continuing the caller's trace.

    The request's ``traceparent`` header is replaced by this span's, so whatever the app hands
    on (the façade's calls to the nodes) is a child of it. Named ``METHOD /route/{template}``
    once the router has matched (no identifiers in span names).
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.telemetry.enabled:
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"traceparent"]
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), None
        )
        method = scope["method"]
        with self.telemetry.span(method, incoming, kind=SpanKind.SERVER) as span:
            inner: Scope = {
                **scope,
                "headers": [*headers, (b"traceparent", span.traceparent.encode())],
            }

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set("http.response.status_code", int(message["status"]))
                    if int(message["status"]) >= 500:
                        span.error(f"HTTP {message['status']}")
                await send(message)

            try:
                await self.app(inner, receive, sending)
            finally:
                route = getattr(inner.get("route"), "path", None)
                span.rename(f"{method} {route}" if route else method)
