"""The retention job: runs periodically in every replica (purges are idempotent)."""

from __future__ import annotations

import logging
from datetime import datetime

from node_runtime.audit.processing_log import NODE_PURPOSE, LogBuilder
from node_runtime.ledger.purges import LOG_PURGE, purge_detail
from node_runtime.observability.tracing import from_header
from node_runtime.state.node_state import NodeState
from node_runtime.store.records import LogRecord
from node_runtime.store.retention import PurgedDelivery, PurgeRule, Retention
from node_runtime.store.sql import SqlStore

log = logging.getLogger("knooppunt.retention")


def rules_for(state: NodeState) -> list[PurgeRule]:
    rules: list[PurgeRule] = []
    for name, compiled in state.connectors.items():
        rules.append(PurgeRule(name, None, compiled.resource.spec.payload_retention_days))
        for code, gemeente in state.gemeenten_by_code.items():
            days = gemeente.spec.payload_retention_days
            if days is not None and any(s.connector == name for s in gemeente.spec.subscriptions):
                rules.append(PurgeRule(name, code, days))
    return rules


def run_retention(state: NodeState, store: SqlStore, *, now: datetime) -> dict[str, int]:
    retention = Retention(store)
    actor = f"knooppunt:{state.name}"

    def log_for(item: PurgedDelivery) -> list[LogRecord]:
        builder = LogBuilder(from_header(None), actor)
        builder.for_subjects(
            list(item.subject_refs),
            activity="purge",
            controller=item.mailbox_id,
            purpose=item.purpose or "gegevenslogistiek",
            legal_basis=item.legal_basis or "unknown",
            outcome="success",
            connector=item.connector,
            message_type=item.message_type,
            message_id=item.message_id,
            delivery_id=item.id,
            detail="payload purged after its retention period",
        )
        return builder.records

    purged = retention.purge_deliveries(rules_for(state), now=now, log_for=log_for)
    payloads = retention.purge_message_payloads(
        {n: c.resource.spec.payload_retention_days for n, c in state.connectors.items()}, now=now
    )

    def log_purge(count: int, through_leaf: int) -> list[LogRecord]:
        builder = LogBuilder(from_header(None), actor)
        builder.add(
            activity=LOG_PURGE,
            controller=actor,
            purpose=NODE_PURPOSE,
            legal_basis="retention period of the processing log",
            outcome="success",
            detail=purge_detail(count, through_leaf),
        )
        return builder.records

    log_records = retention.purge_log(
        days=state.knooppunt.spec.processing_log.retention_days, now=now, log_for=log_purge
    )
    result = {"deliveries": len(purged), "payloads": payloads, "logRecords": log_records}
    if any(result.values()):
        log.info("retention purge", extra=result)
    return result
