"""Push deliveries as CloudEvents (NL GOV profile) by default, the plain envelope on request:
over real mutual TLS to a gemeente's endpoint, parsed back with the ``cloudevents`` package."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cloudevents.core.bindings import http

from tests.runtime.receiver import Receiver
from tests.runtime.test_push_delivery import (
    NODE_OIN,
    ROTTERDAM,
    URL,
    XML,
    Start,
    _client,
    _provider,
    _rotterdam_message,
    _wait,
    push_node,
)

__all__ = ["push_node"]  # the fixture


def test_push_is_a_cloudevent_by_default(push_node: Start, receiver: Receiver) -> None:
    running, pki = push_node()
    body = _rotterdam_message()
    with _client(running, pki, _provider(body)) as c:
        resp = c.post(URL, content=body, headers=XML)
        assert resp.status_code == 202
    message_id = resp.headers["knooppunt-message-id"]
    assert _wait(lambda: len(receiver.events) == 1)
    assert receiver.content_types == ["application/cloudevents+json"]
    key, raw = next(iter(receiver.events.items()))
    event = http.from_structured_event(
        http.HTTPMessage({"content-type": "application/cloudevents+json"}, json.dumps(raw).encode())
    )
    assert event.get_specversion() == "1.0"
    assert event.get_id() == key  # the delivery id: stable across retries
    assert event.get_source() == f"urn:nld:oin:{NODE_OIN}:systeem:knooppunt-zorg"
    assert event.get_type() == "nl.knooppunt.iwmo-2-1.wmo305"
    assert event.get_subject() == message_id  # never personal data
    assert event.get_datacontenttype() == "application/json"
    assert event.get_extension("purpose") == "wmo-uitvoering"
    assert event.get_extension("legalbasis")
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["kenmerken"]["ontvanger"] == ROTTERDAM


def test_plain_envelope_stays_available(
    push_node: Start, receiver: Receiver, resource_dir: Path
) -> None:
    docs = list(yaml.safe_load_all((resource_dir / "gemeenten.yaml").read_text()))
    for doc in docs:
        for sub in doc["spec"]["subscriptions"]:
            if sub.get("delivery", {}).get("mode") == "push":
                sub["delivery"]["envelope"] = "plain"
    (resource_dir / "gemeenten.yaml").write_text(yaml.safe_dump_all(docs))
    running, pki = push_node()
    body = _rotterdam_message()
    with _client(running, pki, _provider(body)) as c:
        assert c.post(URL, content=body, headers=XML).status_code == 202
    assert _wait(lambda: len(receiver.applied) == 1)
    assert receiver.events == {}
    assert receiver.content_types[0].startswith("application/json")
    assert next(iter(receiver.applied.values()))["kenmerken"]["ontvanger"] == ROTTERDAM
