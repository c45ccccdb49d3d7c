"""Prometheus metrics: per connector, message type, gemeente and outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class _Forwarded(Collector):
    """The families of another source (a registry, or a process's exposition), collected
    as part of this registry."""

    def __init__(self, source: Callable[[], Iterable[Metric]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source()

    def describe(self) -> Iterable[Metric]:
        return ()  # names may change with the source: no duplicate check at registration


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Labelled children of the per-request metrics, looked up once per label set
        # (prometheus_client's ``labels()`` validates and locks on every call).
        self._refused: dict[str, Counter] = {}
        self._intake_seconds: dict[tuple[str, str, str], Histogram] = {}
        # The push delivery worker's own metrics live in a registry of their own. With the
        # worker in this process they are part of ``registry``; with a delivery process
        # (node_runtime.node.supervisor) that process's figures take their place
        # (``delivery_source``), so one /metrics shows the node's and its delivery's figures.
        self.delivery_registry = CollectorRegistry()
        self.delivery_source: Callable[[], Iterable[Metric]] = self.delivery_registry.collect
        self.registry.register(_Forwarded(lambda: self.delivery_source()))
        self.messages = Counter(
            "knooppunt_messages",
            "Messages received, by connector, message type, gemeente and outcome.",
            ["connector", "message_type", "gemeente", "outcome"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "knooppunt_intake_duration_seconds",
            "Time from complete request body to answer, by connector, type and outcome.",
            ["connector", "message_type", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.refusals = Counter(
            "knooppunt_refusals",
            "Requests refused with problem details, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.retourcodes = Counter(
            "knooppunt_retourcodes",
            "Retourcodes given to rejected records, by connector and code.",
            ["connector", "retourcode"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "knooppunt_deliveries",
            "Deliveries queued for mailboxes, by connector, gemeente/participant and purpose.",
            ["connector", "mailbox", "purpose"],
            registry=self.registry,
        )
        self.mailbox_reads = Counter(
            "knooppunt_mailbox_reads",
            "Mailbox fetches and acknowledgements.",
            ["mailbox", "action"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "knooppunt_mailbox_pending",
            "Unacknowledged deliveries per mailbox.",
            ["mailbox"],
            registry=self.registry,
        )
        self.push_attempts = Counter(
            "knooppunt_push_attempts",
            "Push delivery attempts by gemeente and result (delivered, retry, dead).",
            ["gemeente", "result"],
            registry=self.delivery_registry,
        )
        self.outbox = Gauge(
            "knooppunt_outbox_deliveries",
            "Push deliveries by status (pending, delivered, dead); alert on dead > 0.",
            ["status"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "knooppunt_delivery_circuit_open",
            "1 while this worker's circuit to a gemeente's push endpoint is open (or half-open).",
            ["gemeente"],
            registry=self.delivery_registry,
        )
        self.delivery_latency = Histogram(
            "knooppunt_delivery_latency_seconds",
            "Time from intake (delivery queued) to the gemeente endpoint's 2xx, per gemeente.",
            ["gemeente"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.delivery_registry,
        )
        self.backlog_age = Gauge(
            "knooppunt_backlog_oldest_age_seconds",
            "Age of the oldest unacknowledged delivery per mailbox (pull) or push stream.",
            ["mailbox"],
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "knooppunt_certificate_expiry_timestamp_seconds",
            "notAfter of the node's own certificates (server, delivery) as a Unix timestamp.",
            ["certificate"],
            registry=self.registry,
        )
        self.config_generation = Gauge(
            "knooppunt_config_generation",
            "Generation of the resource configuration in force.",
            registry=self.registry,
        )
        self.config_errors = Counter(
            "knooppunt_config_reload_errors",
            "Resource reloads refused because the new configuration was invalid.",
            registry=self.registry,
        )

    def count_refusal(self, reason: str) -> None:
        """One request refused with problem details (``reason``: the problem's slug)."""
        child = self._refused.get(reason)
        if child is None:
            child = self._refused[reason] = self.refusals.labels(reason)
        child.inc()

    def observe_intake(
        self, connector: str, message_type: str, outcome: str, seconds: float
    ) -> None:
        """How long one intake took from its complete body to its answer."""
        key = (connector, message_type, outcome)
        child = self._intake_seconds.get(key)
        if child is None:
            child = self._intake_seconds[key] = self.intake_seconds.labels(*key)
        child.observe(seconds)
