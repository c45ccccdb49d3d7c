"""Prometheus metrics of the operator (served when ``KNOOPPUNT_OPERATOR_METRICS_PORT`` is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

APPLIED = Counter(
    "knooppunt_operator_applied_total",
    "Objects the apply primitive handled, by kind and result.",
    ["kind", "result"],
)
ROLLBACKS = Counter(
    "knooppunt_operator_rollbacks_total",
    "Rollouts rolled back to the last good connector revisions.",
    ["namespace", "knooppunt"],
)
REJECTED = Counter(
    "knooppunt_operator_connectors_rejected_total",
    "SectorConnector revisions refused by validation (webhook or controller).",
    ["namespace", "connector"],
)
RECONCILES = Counter(
    "knooppunt_operator_reconciles_total",
    "Work items the leader's workers processed, by kind of work and result "
    "(success, retry, failed, error).",
    ["work", "result"],
)
RECONCILE_SECONDS = Histogram(
    "knooppunt_operator_reconcile_seconds",
    "How long one work item took, by kind of work.",
    ["work"],
)
QUEUE_DEPTH = Gauge(
    "knooppunt_operator_workqueue_depth", "Work items waiting for a worker (not delayed ones)."
)
LEADER = Gauge("knooppunt_operator_leader", "1 while this replica holds the leader Lease.")


def serve(port: int) -> None:
    start_http_server(port)
