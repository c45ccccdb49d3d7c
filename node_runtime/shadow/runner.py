"""The shadow worker: live messages are queued after their answer is decided, evaluated by the
live and the shadow revision in a background thread, and the differences counted.

A full queue drops the message (counted), never slows or blocks an intake. A shadow that
cannot be compiled is reported and left alone; the live connector is never affected.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from node_runtime.messages.compiled import CompiledConnector, ConnectorCache
from node_runtime.shadow.differences import Difference, compare
from node_runtime.shadow.evaluation import evaluate_message
from node_runtime.shadow.release import shadow_resource
from node_runtime.state.node_state import NodeState
from node_runtime.store import shadow as shadow_store
from node_runtime.store.sql import SqlStore

log = logging.getLogger("knooppunt.shadow")

MAX_EXAMPLES = 10


def example(diff: Difference) -> dict[str, Any]:
    out: dict[str, Any] = {"messageType": diff.message_type, "kind": diff.kind}
    if diff.retourcodes:
        out["retourcodes"] = [{"code": c, "path": p} for c, p in diff.retourcodes]
    if diff.live_retourcodes:
        out["liveRetourcodes"] = [{"code": c, "path": p} for c, p in diff.live_retourcodes]
    for key, value in (
        ("missingFields", diff.missing_fields),
        ("addedFields", diff.added_fields),
        ("changedFields", diff.changed_fields),
    ):
        if value:
            out[key] = list(value)
    return out


@dataclass(frozen=True)
class _Job:
    state: NodeState
    connector: str
    body: bytes


class ShadowRunner:
    def __init__(
        self,
        *,
        store: SqlStore,
        registry: CollectorRegistry,
        config_map_root: Path,
        origin: Callable[[str], Path | None],
        max_queue: int = 1000,
    ) -> None:
        self.store = store
        self._cache = ConnectorCache(config_map_root=config_map_root)
        self._origin = origin
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._errors: dict[str, str] = {}  # shadow key → why it does not compile
        self.evaluated = Counter(
            "knooppunt_shadow_messages",
            "Live messages also evaluated by the shadow release.",
            ["connector", "message_type"],
            registry=registry,
        )
        self.differing = Counter(
            "knooppunt_shadow_differences",
            "Messages the shadow release would treat differently, by message type and kind "
            "(would-be-rejected, would-be-accepted, other-retourcodes, different-fields).",
            ["connector", "message_type", "kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "knooppunt_shadow_dropped",
            "Messages not shadowed because the queue was full.",
            ["connector"],
            registry=registry,
        )

    # -- request path: never blocks ---------------------------------------------------------

    def submit(self, state: NodeState, connector: str, body: bytes) -> None:
        compiled = state.connectors.get(connector)
        if compiled is None or compiled.resource.spec.shadow is None:
            return
        try:
            self._queue.put_nowait(_Job(state, connector, body))
        except queue.Full:
            self.dropped.labels(connector).inc()

    # -- the worker ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued message is evaluated (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        if not done.wait(timeout):
            raise TimeoutError("shadow queue not drained")

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._evaluate(job)
            except Exception:
                log.exception("shadow evaluation failed")
            finally:
                self._queue.task_done()

    @staticmethod
    def shadow_key(live: CompiledConnector) -> str:
        shadow = live.resource.spec.shadow
        assert shadow is not None
        data = f"{live.revision}:{shadow.model_dump_json()}".encode()
        return hashlib.sha256(data).hexdigest()

    def _shadow(self, live: CompiledConnector) -> CompiledConnector | None:
        resource = shadow_resource(live.resource)
        assert resource is not None
        key = self.shadow_key(live)
        try:
            compiled = self._cache.get(resource, self._origin(live.name))
        except Exception as exc:  # noqa: BLE001 - reported, never raised into live traffic
            with self._lock:
                if key not in self._errors:
                    log.error(
                        "shadow release cannot be compiled",
                        extra={"connector": live.name, "error": str(exc)},
                    )
                self._errors[key] = str(exc)
            return None
        return compiled

    def _evaluate(self, job: _Job) -> None:
        live = job.state.connectors.get(job.connector)
        if live is None or live.resource.spec.shadow is None:
            return
        shadow = self._shadow(live)
        if shadow is None:
            return
        depth = job.state.knooppunt.spec.limits.max_xml_depth
        live_outcome = evaluate_message(live, job.state, job.body, max_depth=depth)
        if live_outcome is None:
            return
        shadow_outcome = evaluate_message(shadow, job.state, job.body, max_depth=depth)
        mt = live_outcome.message_type
        if shadow_outcome is None:
            diff: Difference | None = Difference(
                "would-be-rejected", mt, retourcodes=(("unknown-message-type", "/"),)
            )
        else:
            diff = compare(live_outcome, shadow_outcome)
        shadow_store.record(
            self.store,
            live.name,
            self.shadow_key(live),
            mt,
            None if diff is None else diff.kind,
            None if diff is None else example(diff),
            max_examples=MAX_EXAMPLES,
        )
        self.evaluated.labels(live.name, mt).inc()
        if diff is not None:
            self.differing.labels(live.name, mt, diff.kind).inc()

    def snapshot(self, state: NodeState) -> dict[str, Any]:
        """Per connector with a shadow: its release, the counts and examples of every replica
        on this database, and a compile error if there is one."""
        out: dict[str, Any] = {}
        for name, live in sorted(state.connectors.items()):
            shadow = live.resource.spec.shadow
            if shadow is None:
                continue
            self._shadow(live)
            key = self.shadow_key(live)
            with self._lock:
                error = self._errors.get(key)
            out[name] = {
                "standardVersion": shadow.standard_version,
                "error": error,
                **shadow_store.report(self.store, name, key),
            }
        return out
