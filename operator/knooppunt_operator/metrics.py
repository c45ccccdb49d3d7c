"""Prometheus metrics of the operator (served when ``KNOOPPUNT_OPERATOR_METRICS_PORT`` is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

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
LEADER = Gauge("knooppunt_operator_leader", "1 while this replica holds the leader Lease.")


def serve(port: int) -> None:
    start_http_server(port)
