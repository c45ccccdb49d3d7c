"""OpenTelemetry spans over OTLP/HTTP: façade → node → intake steps, and node → push receiver.

A real OTLP/HTTP receiver (tests/otlp_receiver.py: the opentelemetry-proto decoding of the
exports) collects what the façade, the node and an instrumented gemeente endpoint export. In
this product no single message passes both the façade and a push endpoint (the façade carries a
gemeente's messages to the sector; push carries the sector's to a gemeente), so the test follows
one message along each leg, each in one trace started by the caller's ``traceparent``.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from node_runtime.facade import start_facade_in_thread
from node_runtime.observability.telemetry import Telemetry
from node_runtime.security.pki.store import DevPki
from tests.facade.conftest import IWMO, IWMO_MESSAGES, NODE_A, XML, World
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.runtime.receiver import start_receiver

STEPS = {"intake.parse", "intake.validate", "intake.rules", "intake.route", "intake.store"}


def _wait_for(
    otlp: OtlpReceiver, trace_id: str, names: set[str], timeout: float = 30
) -> dict[str, ReceivedSpan]:
    deadline = time.monotonic() + timeout
    while True:
        spans = {s.name: s for s in otlp.trace(trace_id)}
        if names <= set(spans) or time.monotonic() > deadline:
            assert names <= set(spans), f"missing spans {names - set(spans)} of {sorted(spans)}"
            return spans
        time.sleep(0.1)


def _with_push(world: World, endpoint: str) -> None:
    """Rotterdam takes its wmo-uitvoering messages by push at ``endpoint``."""
    path = world.root / "gemeenten.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["spec"]["gemeentecode"] == "0599":
            for sub in doc["spec"]["subscriptions"]:
                if sub["connector"] == IWMO and sub["purpose"] == "wmo-uitvoering":
                    sub["delivery"] = {"mode": "push", "endpoint": endpoint}
    path.write_text(yaml.safe_dump_all(docs))


def _traced(world: World, pki: DevPki, otlp: OtlpReceiver) -> None:
    """Restart node A and the façade exporting spans; node A also pushes."""
    if not pki.store.has("knooppunt-zorg-delivery"):
        pki.store.issue_client(
            "knooppunt-zorg-delivery", organisation="Knooppunt Zorg", oin="00000001999000000112"
        )
    own = pki.store.paths("knooppunt-zorg-delivery")
    world.stop_node(NODE_A)
    world.node_settings[NODE_A] = world.node_settings[NODE_A].model_copy(
        update={
            "otlp_endpoint": otlp.endpoint,
            "delivery_enabled": True,
            # pushes and their spans come from the delivery process, as in production
            "delivery_worker": "process",
            "delivery_cert": own.chain,
            "delivery_key": own.key,
        }
    )
    world.start_node(NODE_A)
    supervisor = world.nodes[NODE_A].node.delivery
    assert supervisor is not None
    deadline = time.monotonic() + 120  # the child imports and builds its state first
    while not supervisor.up:
        assert time.monotonic() < deadline, "the delivery process did not come up"
        time.sleep(0.1)
    world.facade.stop()
    world.facade_settings = world.facade_settings.model_copy(
        update={"otlp_endpoint": otlp.endpoint}
    )
    world.facade = start_facade_in_thread(world.facade_settings)


def test_spans_from_facade_through_node_and_on_to_the_push_receiver(
    world: World, facade_pki: DevPki, tmp_path: Path
) -> None:
    receiver, manager = start_receiver(facade_pki)
    with OtlpReceiver() as otlp:
        receiver.telemetry = Telemetry("gemeente-rotterdam-zaaksysteem", endpoint=otlp.endpoint)
        try:
            _with_push(world, receiver.url)
            _traced(world, facade_pki, otlp)

            # leg 1: Amsterdam's WMO301 through the façade to the node
            t1, caller1 = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
            resp = world.at_facade("gemeente-amsterdam").post(
                f"/api/v1/connectors/{IWMO}/messages",
                content=(IWMO_MESSAGES / "wmo301-amsterdam-anker.xml").read_bytes(),
                headers={**XML, "traceparent": f"00-{t1}-{caller1}-01"},
            )
            assert resp.status_code == 202, resp.text
            spans = _wait_for(otlp, t1, {"POST /api/v1/connectors/{connector}/messages", *STEPS})
            # the façade exports on its own schedule: wait for its span too
            deadline = time.monotonic() + 30
            while not any(s.service == "knooppunt-facade" for s in otlp.trace(t1)):
                assert time.monotonic() < deadline, "no span from the façade"
                time.sleep(0.1)
            by_service: dict[str, list[ReceivedSpan]] = {}
            for s in otlp.trace(t1):
                by_service.setdefault(s.service, []).append(s)
            [facade_span] = by_service["knooppunt-facade"]
            assert facade_span.kind == 2  # OTLP SPAN_KIND_SERVER
            assert facade_span.parent_span_id == caller1
            [node_span] = [s for s in by_service["knooppunt-node"] if s.name.startswith("POST ")]
            assert node_span.parent_span_id == facade_span.span_id  # the façade handed it on
            for step in STEPS:
                assert spans[step].parent_span_id == node_span.span_id, step
            # the answer names the node's span: the caller can follow it
            assert resp.headers["traceparent"] == f"00-{t1}-{node_span.span_id}-01"

            # leg 2: a provider's WMO305 for Rotterdam, pushed to Rotterdam's endpoint
            t2, caller2 = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
            body = (IWMO_MESSAGES / "wmo305-anker-rotterdam.xml").read_bytes()
            resp = world.at_node(NODE_A, "thuiszorg-het-anker").post(
                f"/api/v1/connectors/{IWMO}/messages",
                content=body,
                headers={**XML, "traceparent": f"00-{t2}-{caller2}-01"},
            )
            assert resp.status_code == 202, resp.text
            spans = _wait_for(otlp, t2, {"deliver", "POST /notificaties", *STEPS})
            intake = next(s for s in otlp.trace(t2) if s.name.startswith("POST /api/v1/"))
            assert intake.parent_span_id == caller2
            deliver = spans["deliver"]
            assert deliver.service == "knooppunt-node"
            assert deliver.parent_span_id == intake.span_id  # stored with the delivery
            assert deliver.attributes["knooppunt.gemeente"] == "0599"
            assert deliver.attributes["http.response.status_code"] == 201
            pushed = spans["POST /notificaties"]
            assert pushed.service == "gemeente-rotterdam-zaaksysteem"
            assert pushed.parent_span_id == deliver.span_id

            # the processing log's records of that message are in the same trace
            log = (
                world.at_facade("gemeente-rotterdam")
                .get("/api/v1/gemeenten/0599/processing-log", params={"traceId": t2})
                .json()
            )
            activities = {r["activity"] for r in log["records"]}
            assert {"receive", "deliver"} <= activities
            [delivered] = [r for r in log["records"] if r["activity"] == "deliver"]
            assert delivered["parentSpanId"] == deliver.span_id
            # no personal data in span attributes (no BSN anywhere in what was exported)
            assert not any("bsn" in k.lower() for s in otlp.spans for k in s.attributes)
        finally:
            receiver.telemetry.shutdown()
            manager.__exit__(None, None, None)
