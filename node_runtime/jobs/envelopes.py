"""How a push delivery is wrapped for the gemeente's endpoint.

``cloudevents`` (the default for subscriptions): a CloudEvent 1.0 in structured mode
(``application/cloudevents+json``) following the NL GOV profile for CloudEvents (Logius):

* ``source``: the node as a URN with the operating organisation's OIN,
  ``urn:nld:oin:<OIN>:systeem:<node>`` (without an OIN: ``urn:nld:knooppunt:<node>``);
* ``type``: reverse-DNS, ``nl.knooppunt.<connector>.<message type>`` (e.g.
  ``nl.knooppunt.iwmo-2-1.wmo305``);
* ``id``: the delivery id, stable across retries (a receiver deduplicates on it, as on the
  ``Idempotency-Key`` header); ``time``: when the node accepted the message;
* ``subject``: the message id, never personal data (the profile forbids it there);
* ``datacontenttype`` and ``data``: the purpose-filtered municipal JSON, unchanged;
* ``sequence`` / ``sequencetype`` (``Integer``): the mailbox sequence number where known;
* ``purpose`` and ``legalbasis`` extensions: the doelbinding the data was released under.

``plain``: the municipal JSON as the body, as before CloudEvents (kept for endpoints built for
it); the same ids travel in the headers either way.
"""

from __future__ import annotations

import json
from typing import Literal

from cloudevents.core.bindings import http
from cloudevents.core.v1.event import CloudEvent

from node_runtime.store.records import DeliveryRecord

Envelope = Literal["cloudevents", "plain"]
CLOUDEVENTS_JSON = "application/cloudevents+json"


def source(node: str, oin: str | None) -> str:
    return f"urn:nld:oin:{oin}:systeem:{node}" if oin else f"urn:nld:knooppunt:{node}"


def event_type(connector: str, message_type: str) -> str:
    return f"nl.knooppunt.{connector}.{message_type.lower()}"


def wrap(d: DeliveryRecord, envelope: Envelope, *, node: str, oin: str | None) -> tuple[bytes, str]:
    """(body, content type) of delivery ``d`` in ``envelope``."""
    if envelope == "plain":
        return d.content, d.content_type
    attributes: dict[str, object] = {
        "id": d.id,
        "source": source(node, oin),
        "type": event_type(d.connector, d.message_type),
        "time": d.created_at,
        "subject": d.message_id,
        "datacontenttype": d.content_type,
    }
    if d.seq is not None:
        attributes["sequence"] = str(d.seq)
        attributes["sequencetype"] = "Integer"
    if d.purpose:
        attributes["purpose"] = d.purpose
    if d.legal_basis:
        attributes["legalbasis"] = d.legal_basis
    data: dict[str, object] | bytes
    if d.content_type.split(";")[0].strip().endswith("json"):
        data = json.loads(d.content)
    else:
        data = d.content  # sent as data_base64
    message = http.to_structured_event(CloudEvent(attributes, data))
    return message.body, CLOUDEVENTS_JSON
