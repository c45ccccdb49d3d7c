"""The delivery worker: claims due push deliveries and hands them to gemeente endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from opentelemetry.trace import SpanKind
from yarl import URL

from node_runtime.audit.processing_log import LogBuilder
from node_runtime.jobs import envelopes
from node_runtime.jobs.breakers import CircuitBreakers
from node_runtime.model.knooppunt import DeliverySpec
from node_runtime.observability.metrics import Metrics
from node_runtime.observability.telemetry import DISABLED, ActiveSpan, Telemetry
from node_runtime.store.outbox import ClaimRequest, Outbox
from node_runtime.store.records import DeliveryRecord, LogRecord
from node_runtime.store.sql import now

log = logging.getLogger("knooppunt.delivery")


def backoff(attempt: int, spec: DeliverySpec, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^attempt)]."""
    ceiling = min(spec.max_backoff_seconds, spec.initial_backoff_seconds * (2 ** min(attempt, 30)))
    return float(max(0.05, ceiling * rand()))


def _claim_arguments(request: ClaimRequest) -> dict[str, Any]:
    return {
        "owner": request.owner,
        "limit": request.limit,
        "lease": request.lease,
        "exclude_endpoints": list(request.exclude_endpoints),
        "room": request.room,
    }


class DeliveryWorker:
    def __init__(
        self,
        *,
        outbox: Outbox,
        spec: Callable[[], DeliverySpec],
        client_ssl: ssl.SSLContext,
        metrics: Metrics,
        node_name: Callable[[], str],
        envelope: Callable[[DeliveryRecord], envelopes.Envelope] = lambda _d: "plain",
        node_oin: Callable[[], str | None] = lambda: None,
        poll_interval: float = 0.5,
        max_inflight: int = 64,
        owner: str | None = None,
        claim_gap: float = 0.02,
        settle_window: float = 0.02,
    ) -> None:
        """``owner``: the lease owner of this worker's claims (default: a fresh one); a
        delivery process keeps its supervisor's across restarts (see :meth:`run`).

        ``claim_gap``: a claim starts at least this long after the previous one ended, and
        ``settle_window``: successes that arrive within it are settled in one transaction.
        Both trade at most that much latency per delivery for fewer transactions: while
        messages arrive, every intake commit and every settlement would otherwise cause a
        claim of its own, each a transaction (on PostgreSQL also a turn at the server, whose
        cores intake needs), and most of them found one delivery or none."""
        self.outbox = outbox
        self.spec = spec
        self.metrics = metrics
        self.node_name = node_name
        self.envelope = envelope
        self.node_oin = node_oin
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.poll_interval = poll_interval
        self.max_inflight = max_inflight
        self.claim_gap = claim_gap
        self.settle_window = settle_window
        self._claimed_at = 0.0  # when the last claim ended (monotonic)
        self._claiming = False  # a claim is under way (on its own or in a settlement)
        self._settling = False  # successes are being gathered or settled
        self.breakers = CircuitBreakers(
            threshold=lambda: self.spec().circuit_breaker_threshold,
            cooldown=lambda: self.spec().circuit_breaker_cooldown_seconds,
        )
        self._ssl = client_ssl
        self._inflight: Counter[str] = Counter()
        self._slots: dict[str, str] = {}  # delivery id → endpoint, while its request runs
        # leased, not yet started: per endpoint, oldest first (see _fill)
        self._ready: dict[str, deque[DeliveryRecord]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._news = True  # deliveries may have been committed since the last claim
        self._idle: tuple[frozenset[str], float] | None = None  # the last empty claim
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settle: asyncio.Queue[tuple[str, list[LogRecord], asyncio.Future[None]]] = (
            asyncio.Queue()
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, tuple[URL | None, aiohttp.BasicAuth | None]] = {}
        self.telemetry: Telemetry = DISABLED

    # -- lifecycle -------------------------------------------------------------------------

    def wake(self) -> None:
        """Thread-safe: new deliveries were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        self._news = True
        self._wake.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        # aiohttp rather than httpx here: per push about a quarter of the CPU (httpcore's pool
        # re-checks every idle connection's socket on each request), which is what bounds a
        # backlog drain. No cookies kept. Proxies from the environment as before, but looked
        # up once per endpoint (_proxy): with trust_env aiohttp reads the environment and
        # ~/.netrc in two executor jobs on every request.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=256),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        try:
            if await asyncio.to_thread(self.outbox.ensure_statistics):
                log.info("analysed the deliveries: the database had no statistics of them")
        except Exception as exc:  # noqa: BLE001 - claims work without; only slower
            log.warning("could not analyse the deliveries", extra={"error": str(exc)})
        settler = asyncio.create_task(self._settler())
        try:
            while not self._stopping:
                self._wake.clear()  # before the claim: a wake during it is not lost
                if not await self._fill():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            await self._drain()
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
            await self._session.close()

    async def _settler(self, most: int = 256) -> None:
        """Group commit: settle the successes that arrive together in one transaction, and
        claim in it too (:meth:`Outbox.settle_and_claim`) unless a claim is under way or the
        last one ended less than ``claim_gap`` ago: while deliveries flow, one transaction
        (on SQLite one turn at the single writer, one fsync) per window instead of a
        settlement and a claim each."""
        while True:
            first = await self._settle.get()
            self._settling = True
            try:
                batch = [first]
                await asyncio.sleep(self.settle_window)
                while not self._settle.empty() and len(batch) < most:
                    batch.append(self._settle.get_nowait())
                # the streams of the deliveries settled now may have their next one due
                self._news = True
                request = None
                if (
                    not self._claiming
                    and not self._stopping
                    and time.monotonic() - self._claimed_at >= self.claim_gap
                ):
                    request = self._claim_request()
                if request is not None:
                    self._claiming = True
                try:
                    _settled, leased = await asyncio.to_thread(
                        self.outbox.settle_and_claim,
                        [(i, logs) for i, logs, _ in batch],
                        request,
                    )
                except Exception as exc:  # noqa: BLE001 - each waiter learns of the failure
                    self._news = True  # what the claim would have found is still due
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                finally:
                    if request is not None:
                        self._claiming = False
            finally:
                self._settling = False
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            if request is not None:
                self._claimed(request, leased)
            self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _drain(self, grace: float = 5.0) -> None:
        for endpoint in list(self._ready):  # never started: back to the pool at once
            await self._give_back(endpoint)
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()  # its lease runs out; another attempt will follow
        # a settlement under way when we began to stop may have claimed more meanwhile
        for endpoint in list(self._ready):
            await self._give_back(endpoint)

    # -- claiming --------------------------------------------------------------------------

    async def _fill(self) -> int:
        """Lease due deliveries ahead of the free slots, so that a slot freed by an answer
        takes the next leased delivery at once (:meth:`_start_ready`) instead of waiting for
        a claim (on SQLite a durable transaction). Per endpoint at most twice its
        ``concurrencyPerEndpoint`` is held (in flight or ready); one, when its circuit is
        half open; none while it is open. An endpoint is claimed for again once a quarter of
        that is free. Only stream heads are claimed (:meth:`Outbox.claim`), so holding more
        never lets a delivery overtake an earlier one of its stream. Claims are paced
        (``claim_gap``): the wake-ups of several intake commits and settlements share one.
        While successes wait to be settled, the settlement's transaction claims too
        (:meth:`_settler`), and this does not."""
        pause = self.claim_gap - (time.monotonic() - self._claimed_at)
        if pause > 0:
            await asyncio.sleep(pause)
            if self._stopping:
                return 0
        if self._claiming or self._settling:
            return 0  # the claim under way, or the coming settlement's, will do
        request = self._claim_request()
        if request is None:
            return 0
        self._claiming = True
        try:
            batch = await asyncio.to_thread(self.outbox.claim, **_claim_arguments(request))
        except BaseException:
            self._news = True  # what it would have found is still due
            raise
        finally:
            self._claiming = False
        self._claimed(request, batch)
        return len(batch)

    def _claim_request(self) -> ClaimRequest | None:
        """What a claim now should ask for; None when none is wanted (no room, or the last
        claim came back empty and nothing has changed since). Clears ``_news``."""
        ready_total = sum(len(q) for q in self._ready.values())
        capacity = 2 * self.max_inflight - len(self._tasks) - ready_total
        if capacity <= 0:
            return None
        spec = self.spec()
        target = 2 * spec.concurrency_per_endpoint
        held = Counter(self._inflight)
        for endpoint, queue in self._ready.items():
            held[endpoint] += len(queue)
        exclude = set(self.breakers.open_endpoints())
        half_open = set(self.breakers.half_open_endpoints())
        exclude |= {e for e in half_open if held[e] >= 1}
        step = max(1, target // 4)
        exclude |= {e for e, n in held.items() if target - n < step}
        # A claim that came back empty is not repeated while nothing new was committed, no
        # endpoint left the exclusions and the poll interval has not passed: an answer frees
        # a slot every few milliseconds, and each claim is a transaction.
        if self._idle is not None and not self._news:
            excluded, at = self._idle
            if excluded <= exclude and time.monotonic() - at < self.poll_interval:
                return None

        def room(endpoint: str) -> int:
            most = 1 if endpoint in half_open else target
            return most - held.get(endpoint, 0)

        self._news = False
        return ClaimRequest(
            owner=self.owner,
            # no endpoint takes more than ``target``: selecting (on PostgreSQL: locking) more
            # rows than that would only give most of them back
            limit=min(capacity, target),
            # a ready delivery may wait for a slot up to one request's time before its own
            lease=timedelta(seconds=2 * spec.timeout_seconds + 10),
            exclude_endpoints=tuple(sorted(exclude)),
            room=room,
        )

    def _claimed(self, request: ClaimRequest, batch: list[DeliveryRecord]) -> None:
        """Take in what a claim leased: ready to start, oldest first per endpoint."""
        self._claimed_at = time.monotonic()
        self._idle = None if batch else (frozenset(request.exclude_endpoints), self._claimed_at)
        for delivery in batch:
            self._ready.setdefault(delivery.endpoint or "", deque()).append(delivery)
        for endpoint in {d.endpoint or "" for d in batch}:
            self._start_ready(endpoint)

    def _start_ready(self, endpoint: str) -> None:
        """Start the endpoint's ready deliveries in its free slots: at most
        concurrencyPerEndpoint in flight (one trial when its circuit is half open; none while
        it is open: they go back to the pool), so no more connections than that either."""
        queue = self._ready.get(endpoint)
        if not queue or self._stopping:  # stopping: _drain gives them back
            return
        state = self.breakers.state(endpoint)
        if state == "open":
            task = asyncio.create_task(self._give_back(endpoint))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        most = 1 if state == "half-open" else self.spec().concurrency_per_endpoint
        while queue and self._inflight[endpoint] < most and len(self._tasks) < self.max_inflight:
            delivery = queue.popleft()
            self._inflight[endpoint] += 1
            self._slots[delivery.id] = endpoint
            task = asyncio.create_task(self._attempt(delivery))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, delivery_id=delivery.id))
        if not queue:
            del self._ready[endpoint]

    async def _give_back(self, endpoint: str) -> None:
        """Release the endpoint's ready deliveries, untried (its circuit opened, or we stop)."""
        queue = self._ready.pop(endpoint, None)
        if queue:
            ids = [d.id for d in queue]
            await asyncio.to_thread(self.outbox.release_many, ids, owner=self.owner)
            self._news = True  # they are due again (another worker may take them)

    def _free_slot(self, delivery_id: str) -> None:
        """The endpoint's slot of a delivery, freed once its request is answered (its
        settlement may still be on the way: the endpoint is no longer busy with it, and the
        stream's next delivery waits for the settlement in the outbox, not for the slot)."""
        endpoint = self._slots.pop(delivery_id, None)
        if endpoint is None:
            return
        self._inflight[endpoint] -= 1
        if self._inflight[endpoint] <= 0:
            del self._inflight[endpoint]
        self._start_ready(endpoint)
        self._wake.set()

    def _finished(self, task: asyncio.Task[None], *, delivery_id: str) -> None:
        self._tasks.discard(task)
        self._free_slot(delivery_id)
        for endpoint in list(self._ready):  # a task slot is free too
            self._start_ready(endpoint)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", extra={"error": str(task.exception())})

    # -- one attempt -----------------------------------------------------------------------

    def _proxy(self, endpoint: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy (and its credentials) the environment names for ``endpoint``, if any
        (``HTTPS_PROXY``, ``NO_PROXY``; proxy credentials also from ~/.netrc), as aiohttp's
        ``trust_env`` would find it; looked up once per endpoint."""
        found = self._proxies.get(endpoint)
        if found is None:
            try:
                found = get_env_proxy_for_url(URL(endpoint))
            except LookupError:
                found = (None, None)
            self._proxies[endpoint] = found
        return found

    async def _attempt(self, d: DeliveryRecord) -> None:
        with self.telemetry.span(
            "deliver",
            d.traceparent,
            kind=SpanKind.CLIENT,
            attributes={
                "knooppunt.delivery_id": d.id,
                "knooppunt.gemeente": d.mailbox_id,
                "knooppunt.message_type": d.message_type,
            },
        ) as span:
            await self._attempt_in(d, span)

    async def _attempt_in(self, d: DeliveryRecord, span: ActiveSpan) -> None:
        assert self._session is not None and d.endpoint
        spec = self.spec()
        # the message's trace (from its intake), continued by this attempt
        logs = LogBuilder(span.trace, f"knooppunt:{self.node_name()}")
        error: str | None = None
        content, content_type = envelopes.wrap(
            d, self.envelope(d), node=self.node_name(), oin=self.node_oin()
        )
        proxy, proxy_auth = self._proxy(d.endpoint)
        try:
            async with self._session.post(
                d.endpoint,
                data=content,
                timeout=aiohttp.ClientTimeout(total=spec.timeout_seconds),
                allow_redirects=False,
                proxy=proxy,
                proxy_auth=proxy_auth,
                headers={
                    "content-type": content_type,
                    "idempotency-key": d.id,
                    "knooppunt-delivery-id": d.id,
                    "knooppunt-message-id": d.message_id,
                    "traceparent": span.trace.traceparent(logs.span_id),
                },
            ) as resp:
                await resp.read()  # the whole answer: the connection is then reused
                status = resp.status
            span.set("http.response.status_code", status)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        self._free_slot(d.id)
        if error is not None:
            span.error(error)
        common = {
            "controller": d.mailbox_id,
            "purpose": d.purpose or "gegevenslogistiek",
            "legal_basis": d.legal_basis or "unknown",
            "connector": d.connector,
            "message_type": d.message_type,
            "message_id": d.message_id,
            "delivery_id": d.id,
        }
        if error is None:
            self.breakers.success(d.endpoint)
            logs.for_subjects(list(d.subject_refs), activity="deliver", outcome="success", **common)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._settle.put((d.id, logs.records, done))
            await done
            self.metrics.push_attempts.labels(d.mailbox_id, "delivered").inc()
            self.metrics.circuit_open.labels(d.mailbox_id).set(0)
            self.metrics.delivery_latency.labels(d.mailbox_id).observe(
                max(0.0, (now() - d.created_at).total_seconds())
            )
            return
        if self.breakers.failure(d.endpoint):
            self.metrics.circuit_open.labels(d.mailbox_id).set(1)
            log.warning("circuit opened", extra={"gemeente": d.mailbox_id})
        attempts = await asyncio.to_thread(self.outbox.attempts, d.id) + 1
        created = d.created_at
        too_old = (now() - created).total_seconds() > spec.max_age_seconds
        if attempts >= spec.max_attempts or too_old:
            logs.for_subjects(
                list(d.subject_refs), activity="dead-letter", outcome="dead", detail=error, **common
            )
            await asyncio.to_thread(
                self.outbox.failed, d.id, error=error, retry_at=None, log=logs.records
            )
            self.metrics.push_attempts.labels(d.mailbox_id, "dead").inc()
            log.warning(
                "delivery dead-lettered",
                extra={"delivery_id": d.id, "gemeente": d.mailbox_id, "attempts": attempts},
            )
            return
        retry_at = now() + timedelta(seconds=backoff(attempts, spec))
        await asyncio.to_thread(self.outbox.failed, d.id, error=error, retry_at=retry_at)
        self.metrics.push_attempts.labels(d.mailbox_id, "retry").inc()
