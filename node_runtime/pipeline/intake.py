"""Intake of one sector message, the node's core job: the steps in order, as one transaction.

Each step is a module of this package and works on one :class:`MessageContext`:

    identification.find_connector → authorisation.authorise_connector → parsing.parse_message
    → identification.identify_message_type → validation.validate_schema
    → identification.read_header → authorisation.authorise_sender → idempotency.replay
    → subjects → rule_check.check_rules (→ rejection.reject) → legal_basis
    → routing.route (envelopes, purpose filter) → acceptance.commit (conversation_events)

A :class:`~node_runtime.web.problems.Problem` raised by any step ends in refusal.refuse.
The steps never call the store themselves: the look-up of an earlier message and the durable
writes are returned as :mod:`~node_runtime.pipeline.pending` steps, which ``process`` (from a
thread) and ``process_async`` (from the event loop) carry out.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from node_runtime.audit.identifiers import time_ordered_uuid
from node_runtime.audit.processing_log import NODE_PURPOSE, LogBuilder
from node_runtime.conversations.matching import Matcher
from node_runtime.messages.parsing import parse_message
from node_runtime.observability.metrics import Metrics
from node_runtime.observability.telemetry import DISABLED, Telemetry
from node_runtime.observability.tracing import TraceContext
from node_runtime.pipeline import (
    acceptance,
    authorisation,
    idempotency,
    identification,
    legal_basis,
    refusal,
    rejection,
    routing,
    rule_check,
    subjects,
    validation,
)
from node_runtime.pipeline.context import MessageContext
from node_runtime.pipeline.outcomes import IntakeResult
from node_runtime.pipeline.pending import PendingLookup, PendingWrite, Step
from node_runtime.security.pseudonyms import Pseudonymizer
from node_runtime.shadow.runner import ShadowRunner
from node_runtime.state.node_state import NodeState
from node_runtime.state.principals import Principal
from node_runtime.store.records import IntakeCommit, MessageRecord
from node_runtime.store.sql import SqlStore, now
from node_runtime.web.problems import Problem

__all__ = ["IntakeResult", "IntakeService"]


class IntakeService:
    def __init__(
        self,
        *,
        store: SqlStore,
        pseudonymizer: Pseudonymizer,
        metrics: Metrics,
        max_depth: int = 64,
        public_url: str | None = None,
        on_commit: Callable[[], None] | None = None,
        conversations: Matcher | None = None,
        shadow: ShadowRunner | None = None,
    ) -> None:
        """``on_commit`` is called after a commit that created push deliveries;
        ``conversations`` finds the conversation events of an accepted message; ``shadow``
        gets every decided message for shadow validation (queued, never waited for)."""
        self.store = store
        self.pseudonymizer = pseudonymizer
        self.metrics = metrics
        self.max_depth = max_depth
        self.public_url = public_url.rstrip("/") if public_url else None
        self.on_commit = on_commit
        self.conversations = conversations
        self.shadow = shadow
        self.telemetry: Telemetry = DISABLED

    def process(
        self,
        state: NodeState,
        connector_name: str,
        body: bytes,
        principal: Principal,
        trace: TraceContext,
    ) -> IntakeResult:
        """The intake of one message from a thread: the store's reads and the durable write
        block this thread (concurrent threads share group commits)."""
        started = time.perf_counter()
        ctx = self._context(state, connector_name, body, principal, trace)
        step = self._start(ctx)
        while not isinstance(step, IntakeResult):
            if isinstance(step, PendingLookup):
                existing = self.store.find_message(
                    step.connector, step.sender, step.sender_message_id
                )
                step = self._resume(ctx, step.then, existing)
            else:
                with self._store_step(ctx, step):
                    outcome = self.store.submit_write(step.write)
                step = self._resume(ctx, step.then, outcome)
        return self._finish(ctx, started, trace, step)

    async def process_async(
        self,
        state: NodeState,
        connector_name: str,
        body: bytes,
        principal: Principal,
        trace: TraceContext,
    ) -> IntakeResult:
        """The same intake from the event loop: the pipeline's own work runs on the loop
        (no hand-over to a thread and back per message); the durable write joins the store's
        group commit, which takes every write that waits meanwhile and keeps the loop free
        while the disk or the database works (SqlStore.submit_write_async). A refusal's
        record is committed behind its answer (PendingWrite.answer_waits)."""
        started = time.perf_counter()
        ctx = self._context(state, connector_name, body, principal, trace)
        step = self._start(ctx)
        while not isinstance(step, IntakeResult):
            if isinstance(step, PendingLookup):
                existing = await self.store.find_message_async(
                    step.connector, step.sender, step.sender_message_id
                )
                step = self._resume(ctx, step.then, existing)
            elif not step.answer_waits:
                await self.store.write_behind(step.write)
                step = self._resume(ctx, step.then, None)
            else:
                with self._store_step(ctx, step):
                    outcome = await self.store.submit_write_async(step.write)
                step = self._resume(ctx, step.then, outcome)
        return self._finish(ctx, started, trace, step)

    # -- the steps ------------------------------------------------------------------------

    def _context(
        self,
        state: NodeState,
        connector_name: str,
        body: bytes,
        principal: Principal,
        trace: TraceContext,
    ) -> MessageContext:
        return MessageContext(
            state, connector_name, body, principal, LogBuilder(trace, principal.actor)
        )

    def _start(self, ctx: MessageContext) -> Step:
        try:
            return self._front(ctx)
        except Problem as problem:
            return refusal.refuse(ctx, problem, metrics=self.metrics)

    def _resume(self, ctx: MessageContext, then: Callable[[Any], Step], value: object) -> Step:
        try:
            return then(value)
        except Problem as problem:
            return refusal.refuse(ctx, problem, metrics=self.metrics)

    def _store_step(
        self, ctx: MessageContext, step: PendingWrite
    ) -> AbstractContextManager[object]:
        if isinstance(step.write, IntakeCommit):
            deliveries = len(step.write.deliveries)
            return self.telemetry.step("intake.store", ctx.logs.trace, deliveries=deliveries)
        return contextlib.nullcontext()

    def _finish(
        self, ctx: MessageContext, started: float, trace: TraceContext, result: IntakeResult
    ) -> IntakeResult:
        connector_name = ctx.connector_name
        self.metrics.observe_intake(
            connector_name if ctx.connector else "unknown",
            ctx.message_type_name,
            result.outcome,
            time.perf_counter() - started,
        )
        result.headers["traceparent"] = trace.traceparent(ctx.logs.span_id)
        if self.shadow is not None and (
            result.outcome in ("accepted", "rejected")
            or (result.problem is not None and result.problem.slug == "schema-invalid")
        ):
            self.shadow.submit(ctx.state, connector_name, ctx.body)  # queued: never waits
        return result

    def _front(self, ctx: MessageContext) -> Step:
        """Up to the look-up of an earlier message under the same identification."""
        identification.find_connector(ctx)
        authorisation.authorise_connector(ctx.compiled, ctx.principal)
        step, trace = self.telemetry.step, ctx.logs.trace
        with step("intake.parse", trace, connector=ctx.connector_name):
            ctx.tree = parse_message(ctx.body, max_depth=self.max_depth)
            identification.identify_message_type(ctx)
        with step("intake.validate", trace, message_type=ctx.message_type_name):
            validation.validate_schema(ctx)
        identification.read_header(ctx)
        authorisation.authorise_sender(ctx.mt, ctx.head, ctx.principal)

        ctx.digest = hashlib.sha256(ctx.body).hexdigest()
        head = ctx.head
        return PendingLookup(
            ctx.compiled.name,
            head.sender,
            head.message_id,
            functools.partial(self._judge, ctx),
        )

    def _judge(self, ctx: MessageContext, existing: MessageRecord | None) -> Step:
        """A message not seen before: rules, then rejection or routing and acceptance."""
        if existing is not None:
            return idempotency.replay(existing, ctx.digest, ctx.mt)
        step, trace = self.telemetry.step, ctx.logs.trace
        ctx.subjects = subjects.subject_refs(ctx.mt, ctx.root, self.pseudonymizer)
        with step("intake.rules", trace, message_type=ctx.message_type_name):
            failures = rule_check.check_rules(ctx)
        ctx.retour_id = secrets.token_hex(6).upper()
        ctx.today = now().date().isoformat()
        if failures:
            return rejection.reject(ctx, failures, metrics=self.metrics)

        ctx.message_id = time_ordered_uuid()
        ctx.legal_basis = legal_basis.for_intake(ctx)
        for activity in ("receive", "validate"):
            ctx.logs.for_subjects(
                ctx.subjects,
                activity=activity,
                purpose=NODE_PURPOSE,
                legal_basis=ctx.legal_basis,
                outcome="success",
                **ctx.log_fields(),
            )
        with step("intake.route", trace, message_type=ctx.message_type_name):
            deliveries = routing.route(
                ctx,
                order_key=subjects.order_ref(ctx.mt, ctx.root, self.pseudonymizer),
                public_url=self.public_url,
            )
        return acceptance.commit(
            ctx,
            deliveries,
            metrics=self.metrics,
            on_commit=self.on_commit,
            conversations=self.conversations,
        )
