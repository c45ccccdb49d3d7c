"""Intake of one sector message: the node's core job, as one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from node_runtime.audit.processing_log import NODE_PURPOSE, LogBuilder
from node_runtime.conversations.matching import Matcher, Parties
from node_runtime.node.principals import Principal
from node_runtime.node.state import NodeState
from node_runtime.observability.metrics import Metrics
from node_runtime.observability.tracing import TraceContext
from node_runtime.pipeline.compiled import CompiledConnector, CompiledMessageType
from node_runtime.pipeline.conversion import ConversionError
from node_runtime.pipeline.parsing import parse_message
from node_runtime.pipeline.retour import RetourError
from node_runtime.pipeline.rules import RuleFailure, evaluate, xpath_text
from node_runtime.security.pseudonyms import Pseudonymizer
from node_runtime.store.records import (
    ConversationEvent,
    DeliveryRecord,
    IntakeCommit,
    MessageRecord,
)
from node_runtime.store.sql import SqlStore, now
from node_runtime.web.problems import Problem, Violation

log = logging.getLogger("knooppunt.intake")

XML_TYPE = "application/xml"
JSON_TYPE = "application/json"


@dataclass
class IntakeResult:
    status: int
    body: bytes
    content_type: str
    outcome: str
    message_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Header:
    sender: str
    recipient: str
    message_id: str


class IntakeService:
    def __init__(
        self,
        *,
        store: SqlStore,
        pseudonymizer: Pseudonymizer,
        metrics: Metrics,
        max_depth: int = 64,
        public_url: str | None = None,
    ) -> None:
        self.store = store
        self.pseudonymizer = pseudonymizer
        self.metrics = metrics
        self.max_depth = max_depth
        self.public_url = public_url.rstrip("/") if public_url else None
        self.on_commit: Callable[[], None] | None = None
        self.conversations: Matcher | None = None

    # -- entry point -----------------------------------------------------------------------

    def process(
        self,
        state: NodeState,
        connector_name: str,
        body: bytes,
        principal: Principal,
        trace: TraceContext,
    ) -> IntakeResult:
        started = time.perf_counter()
        connector = state.connectors.get(connector_name)
        logs = LogBuilder(trace, principal.actor)
        mt_name = "unknown"
        try:
            if connector is None:
                raise Problem(
                    404,
                    "unknown-connector",
                    "Unknown connector",
                    f"This node serves no connector named {connector_name!r}.",
                    extra={"connectors": sorted(state.connectors)},
                )
            self._authorise_connector(connector, principal)
            tree = parse_message(body, max_depth=self.max_depth)
            mt = connector.identify(tree.getroot())
            if mt is None:
                qname = etree.QName(tree.getroot())
                raise Problem(
                    400,
                    "unknown-message-type",
                    "Unknown message type",
                    f"Connector {connector.name} accepts no message with root "
                    f"{{{qname.namespace}}}{qname.localname}.",
                    [
                        Violation(
                            "message-type",
                            "root element not declared by the connector",
                            line=tree.getroot().sourceline,
                        )
                    ],
                    extra={"accepted": sorted(connector.messages)},
                )
            mt_name = mt.name
            result = self._process_type(state, connector, mt, tree, body, principal, logs)
        except Problem as problem:
            result = self._refuse(
                state, connector, connector_name, mt_name, problem, principal, logs
            )
        elapsed = time.perf_counter() - started
        self.metrics.intake_seconds.labels(
            connector_name if connector else "unknown", mt_name, result.outcome
        ).observe(elapsed)
        result.headers["traceparent"] = trace.traceparent(logs.span_id)
        return result

    # -- authorisation ---------------------------------------------------------------------

    @staticmethod
    def _authorise_connector(connector: CompiledConnector, principal: Principal) -> None:
        if principal.kind == "administrator":
            raise Problem(
                403,
                "not-a-sender",
                "Administrators do not send messages",
                "Management identities may not submit sector messages.",
            )
        if connector.name not in principal.connectors:
            raise Problem(
                403,
                "not-a-participant",
                "Not a participant of this connector",
                f"{principal.display_name} is not registered on connector {connector.name}.",
            )

    @staticmethod
    def _authorise_sender(mt: CompiledMessageType, header: _Header, principal: Principal) -> None:
        expected = "participant" if mt.spec.direction == "toGemeente" else "gemeente"
        if principal.kind != expected:
            raise Problem(
                403,
                "wrong-direction",
                "Message type not allowed for this sender",
                f"{mt.name} is sent by a {expected}, not by a {principal.kind}.",
            )
        if header.sender not in principal.identifiers:
            raise Problem(
                403,
                "sender-mismatch",
                "Header sender is not the authenticated sender",
                f"The message names sender {header.sender!r}, but the client certificate "
                f"belongs to {principal.display_name}, who may send as "
                f"{', '.join(sorted(principal.identifiers))}.",
                [Violation("sender", "Afzender differs from the authenticated identity")],
            )

    # -- the pipeline ----------------------------------------------------------------------

    def _process_type(
        self,
        state: NodeState,
        connector: CompiledConnector,
        mt: CompiledMessageType,
        tree: etree._ElementTree,
        body: bytes,
        principal: Principal,
        logs: LogBuilder,
    ) -> IntakeResult:
        root = tree.getroot()
        with mt.schema_lock:
            valid = mt.schema.validate(tree)
            errors = [] if valid else list(mt.schema.error_log)
        if not valid:
            violations = [
                Violation("xsd", e.message, line=e.line, path=e.path) for e in errors[:50]
            ]
            raise Problem(
                422,
                "schema-invalid",
                "Message does not conform to its schema",
                f"{mt.name} is not valid against {mt.spec.schema_file}: "
                f"{len(errors)} violation(s).",
                violations,
                extra={"retourcode": "0001", "messageType": mt.name},
            )
        header = _Header(
            sender=xpath_text(mt.sender(root)),
            recipient=xpath_text(mt.recipient(root)),
            message_id=xpath_text(mt.message_id(root)),
        )
        self._authorise_sender(mt, header, principal)
        digest = hashlib.sha256(body).hexdigest()
        existing = self.store.find_message(connector.name, header.sender, header.message_id)
        if existing is not None:
            return self._duplicate(existing, digest, mt)

        subjects = self._subjects(mt, root)
        controller = header.recipient if mt.spec.direction == "toGemeente" else header.sender

        def is_tenant(code: str) -> bool:
            if mt.spec.direction == "fromGemeente":  # the gemeente uses this connector
                gemeente = state.gemeenten_by_code.get(code)
                return gemeente is not None and any(
                    s.connector == connector.name for s in gemeente.spec.subscriptions
                )
            return bool(state.subscriptions(code, connector.name, mt.name))

        def is_participant(ident: str) -> bool:
            return ident in connector.participants_by_identifier

        failures = evaluate(mt.rules, root, is_tenant=is_tenant, is_participant=is_participant)
        retour_id = secrets.token_hex(6).upper()
        today = now().date().isoformat()
        if failures:
            return self._reject(
                connector, mt, tree, header, failures, subjects, controller, retour_id, today, logs
            )

        message_id = str(uuid.uuid4())
        base_log: dict[str, Any] = {
            "controller": controller,
            "connector": connector.name,
            "message_type": mt.name,
            "message_id": message_id,
        }
        legal = self._intake_legal_basis(state, connector, mt, header)
        for activity in ("receive", "validate"):
            logs.for_subjects(
                subjects,
                activity=activity,
                purpose=NODE_PURPOSE,
                legal_basis=legal,
                outcome="success",
                **base_log,
            )
        deliveries = self._route(
            state, connector, mt, root, header, message_id, subjects, logs, base_log, legal
        )
        if mt.retour is not None:
            try:
                answer = mt.retour.build(tree, [], retour_id=retour_id, retour_date=today)
            except RetourError as exc:
                log.error(
                    "retour generation failed",
                    extra={"connector": connector.name, "message_type": mt.name},
                )
                raise Problem(
                    500, "retour-failed", "Retour message could not be produced", str(exc)
                ) from exc
            answer_type = XML_TYPE
        else:
            answer = json.dumps({"messageId": message_id, "status": "accepted"}).encode()
            answer_type = JSON_TYPE
        record = MessageRecord(
            id=message_id,
            connector=connector.name,
            connector_revision=connector.revision,
            message_type=mt.name,
            direction=mt.spec.direction,
            sender=header.sender,
            recipient=header.recipient,
            sender_message_id=header.message_id,
            payload_sha256=digest,
            payload=body,
            received_at=now(),
            trace_id=logs.trace.trace_id,
            controller=controller,
            answer_status=202,
            answer_body=answer,
            answer_content_type=answer_type,
        )
        events = self._conversation_events(connector, mt, root, header, controller, message_id)
        stored, created = self.store.commit_intake(
            IntakeCommit(record, deliveries, logs.records, events))
        if not created:
            return self._duplicate(stored, digest, mt)
        if self.on_commit is not None and any(d.delivery_mode == "push" for d in deliveries):
            self.on_commit()
        self.metrics.messages.labels(connector.name, mt.name, controller, "accepted").inc()
        for d in deliveries:
            self.metrics.deliveries.labels(connector.name, d.mailbox_id, d.purpose or "").inc()
        log.info(
            "message accepted",
            extra={
                "connector": connector.name,
                "message_type": mt.name,
                "message_id": message_id,
                "deliveries": len(deliveries),
            },
        )
        return IntakeResult(
            202, answer, answer_type, "accepted", message_id, self._id_headers(message_id)
        )

    def _conversation_events(
        self,
        connector: CompiledConnector,
        mt: CompiledMessageType,
        root: etree._Element,
        header: _Header,
        gemeente: str,
        message_id: str,
    ) -> list[ConversationEvent]:
        if self.conversations is None:
            return []
        participant = header.sender if mt.spec.direction == "toGemeente" else header.recipient
        parties = Parties(header.sender, header.recipient, gemeente, participant)
        return self.conversations.events(connector.resource, mt.name, root, parties,
                                         message_id=message_id,
                                         sender_message_id=header.message_id)

    def _id_headers(self, message_id: str) -> dict[str, str]:
        return {"Knooppunt-Message-Id": message_id, "Location": f"/api/v1/messages/{message_id}"}

    def _subjects(self, mt: CompiledMessageType, root: etree._Element) -> list[str | None]:
        if mt.records is None or mt.subject is None:
            return []
        found = mt.records(root)
        records = found if isinstance(found, list) else []
        refs: list[str | None] = []
        for rec in records:
            if isinstance(rec, etree._Element):
                bsn = xpath_text(mt.subject(rec))
                refs.append(self.pseudonymizer.subject_ref(bsn) if bsn else None)
        return refs

    def _order_key(self, mt: CompiledMessageType, root: etree._Element) -> str | None:
        if mt.records is None or mt.order_key is None:
            return None
        found = mt.records(root)
        if isinstance(found, list) and found and isinstance(found[0], etree._Element):
            value = xpath_text(mt.order_key(found[0]))
            return self.pseudonymizer.order_ref(value) if value else None
        return None

    @staticmethod
    def _intake_legal_basis(
        state: NodeState, connector: CompiledConnector, mt: CompiledMessageType, header: _Header
    ) -> str:
        code = header.recipient if mt.spec.direction == "toGemeente" else header.sender
        gemeente = state.gemeenten_by_code.get(code)
        if gemeente is None:
            return "unknown"
        bases = sorted(
            {s.legal_basis for s in gemeente.spec.subscriptions if s.connector == connector.name}
        )
        return "; ".join(bases) or "unknown"

    def _route(
        self,
        state: NodeState,
        connector: CompiledConnector,
        mt: CompiledMessageType,
        root: etree._Element,
        header: _Header,
        message_id: str,
        subjects: list[str | None],
        logs: LogBuilder,
        base_log: dict[str, Any],
        legal: str,
    ) -> list[DeliveryRecord]:
        created = now()
        order_key = self._order_key(mt, root)
        refs = tuple(s for s in subjects if s)
        if mt.spec.direction == "fromGemeente":
            participant = connector.participants_by_identifier.get(header.recipient)
            if participant is None:  # guarded by a participant rule; never deliver blindly
                raise Problem(
                    422,
                    "unknown-recipient",
                    "Unknown recipient",
                    f"No participant with identifier {header.recipient}.",
                )
            delivery = DeliveryRecord(
                id=str(uuid.uuid4()),
                message_id=message_id,
                mailbox_kind="participant",
                mailbox_id=participant,
                connector=connector.name,
                message_type=mt.name,
                purpose=None,
                legal_basis=legal,
                content=etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                content_type=XML_TYPE,
                subject_refs=refs,
                order_key=order_key,
                created_at=created,
            )
            logs.for_subjects(
                subjects,
                activity="route",
                purpose=NODE_PURPOSE,
                legal_basis=legal,
                outcome="success",
                delivery_id=delivery.id,
                detail=f"to participant {participant}",
                **base_log,
            )
            return [delivery]
        assert mt.converter is not None and mt.spec.notification is not None
        try:
            content = mt.converter.convert(root)
        except ConversionError as exc:
            raise Problem(
                500,
                "conversion-failed",
                "Conversion failed",
                f"The connector's conversion of {mt.name} failed: {exc}",
            ) from exc
        logs.for_subjects(
            subjects,
            activity="convert",
            purpose=NODE_PURPOSE,
            legal_basis=legal,
            outcome="success",
            **base_log,
        )
        subs = state.subscriptions(header.recipient, connector.name, mt.name)
        if not subs:  # guarded by a tenant rule; never accept what cannot be delivered
            raise Problem(
                422,
                "no-subscription",
                "Recipient has no subscription",
                f"Gemeente {header.recipient} takes no {mt.name} from this node.",
            )
        deliveries = []
        notification = mt.spec.notification
        for sub in subs:
            delivery_id = str(uuid.uuid4())
            released = connector.purposes[sub.purpose].filter.apply(content)
            envelope = {
                "kanaal": notification.kanaal,
                "hoofdObject": self._url(f"/api/v1/messages/{message_id}", message_id),
                "resource": notification.resource,
                "resourceUrl": self._url(
                    f"/api/v1/gemeenten/{header.recipient}/mailbox/{delivery_id}", delivery_id
                ),
                "actie": notification.actie,
                "aanmaakdatum": created.isoformat().replace("+00:00", "Z"),
                "kenmerken": {
                    "connector": connector.name,
                    "berichttype": mt.name,
                    "afzender": header.sender,
                    "ontvanger": header.recipient,
                    "doel": sub.purpose,
                    "grondslag": sub.legal_basis,
                },
                "inhoud": released,
            }
            deliveries.append(
                DeliveryRecord(
                    id=delivery_id,
                    message_id=message_id,
                    mailbox_kind="gemeente",
                    mailbox_id=header.recipient,
                    connector=connector.name,
                    message_type=mt.name,
                    purpose=sub.purpose,
                    legal_basis=sub.legal_basis,
                    content=json.dumps(envelope, ensure_ascii=False).encode(),
                    content_type=JSON_TYPE,
                    subject_refs=refs,
                    order_key=order_key,
                    created_at=created,
                    delivery_mode=sub.delivery.mode,
                    endpoint=sub.delivery.endpoint,
                )
            )
            logs.for_subjects(
                subjects,
                activity="route",
                purpose=sub.purpose,
                legal_basis=sub.legal_basis,
                outcome="success",
                delivery_id=delivery_id,
                **base_log,
            )
        return deliveries

    def _url(self, path: str, ident: str) -> str:
        return f"{self.public_url}{path}" if self.public_url else f"urn:uuid:{ident}"

    # -- answers other than acceptance ---------------------------------------------------

    def _duplicate(
        self, existing: MessageRecord, digest: str, mt: CompiledMessageType
    ) -> IntakeResult:
        if existing.payload_sha256 != digest:
            raise Problem(
                409,
                "duplicate-message-id",
                "Message identification already used",
                f"A different {mt.name} with the same sender and BerichtIdentificatie "
                "was accepted before; identifications must be unique per sender.",
                extra={"messageId": existing.id},
            )
        headers = self._id_headers(existing.id)
        headers["Knooppunt-Duplicate"] = "true"
        return IntakeResult(
            existing.answer_status,
            existing.answer_body,
            existing.answer_content_type,
            "duplicate",
            existing.id,
            headers,
        )

    def _reject(
        self,
        connector: CompiledConnector,
        mt: CompiledMessageType,
        tree: etree._ElementTree,
        header: _Header,
        failures: list[RuleFailure],
        subjects: list[str | None],
        controller: str,
        retour_id: str,
        today: str,
        logs: LogBuilder,
    ) -> IntakeResult:
        codes = sorted({f.retourcode for f in failures})
        for code in codes:
            self.metrics.retourcodes.labels(connector.name, code).inc()
        self.metrics.messages.labels(connector.name, mt.name, controller, "rejected").inc()
        logs.for_subjects(
            subjects,
            activity="reject",
            purpose=NODE_PURPOSE,
            legal_basis="not applicable: message rejected",
            outcome="rejected",
            controller=controller,
            connector=connector.name,
            message_type=mt.name,
            detail="retourcodes " + ",".join(codes),
        )
        self.store.write_log(logs.records)
        details = [
            {
                "rule": f.rule,
                "retourcode": f.retourcode,
                "message": f.message,
                "line": f.line,
                "path": f.path,
            }
            for f in failures
        ]
        headers = {"Knooppunt-Retourcodes": ",".join(codes)}
        if mt.retour is not None:
            try:
                body = mt.retour.build(tree, failures, retour_id=retour_id, retour_date=today)
            except RetourError as exc:
                raise Problem(
                    500, "retour-failed", "Retour message could not be produced", str(exc)
                ) from exc
            return IntakeResult(422, body, XML_TYPE, "rejected", None, headers)
        problem = Problem(
            422,
            "rules-violated",
            "Message rejected by business rules",
            f"{mt.name} violates {len(failures)} rule(s).",
            [Violation(f.rule, f"{f.retourcode} {f.message}", f.line, f.path) for f in failures],
            extra={"retourcodes": codes, "rules": details},
        )
        return IntakeResult(
            422,
            json.dumps(problem.body()).encode(),
            "application/problem+json",
            "rejected",
            None,
            headers,
        )

    def _refuse(
        self,
        state: NodeState,
        connector: CompiledConnector | None,
        connector_name: str,
        mt_name: str,
        problem: Problem,
        principal: Principal,
        logs: LogBuilder,
    ) -> IntakeResult:
        self.metrics.refusals.labels(problem.slug).inc()
        controller = f"knooppunt:{state.name}"
        logs.add(
            activity="refuse",
            controller=controller,
            purpose=NODE_PURPOSE,
            legal_basis="not applicable: request refused",
            outcome=problem.slug,
            connector=connector.name if connector else None,
            message_type=None if mt_name == "unknown" else mt_name,
            detail=f"{problem.status} {problem.title}",
        )
        self.store.write_log(logs.records)
        log.info(
            "message refused",
            extra={
                "connector": connector_name,
                "reason": problem.slug,
                "status": problem.status,
                "actor": principal.actor,
            },
        )
        return IntakeResult(
            problem.status,
            json.dumps(problem.body()).encode(),
            "application/problem+json",
            "refused",
            None,
            {},
        )
