"""Push delivery: mTLS to the gemeente's endpoint, retries, dead letters, replay, ordering."""

from __future__ import annotations

import itertools
import re
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.jobs.breakers import CircuitBreakers
from node_runtime.jobs.delivery import DeliveryWorker, backoff
from node_runtime.model.knooppunt import DeliverySpec
from node_runtime.model.loading import load_paths
from node_runtime.observability.metrics import Metrics
from node_runtime.security.pki.development import ensure_for_resources, node_client_name
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, MESSAGES, NODE, node_settings
from tests.runtime.helpers import header, replace_first, with_new_id
from tests.runtime.receiver import Receiver

URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
NODE_OIN = "00000001999000000111"
ADMIN_OIN = "00000001999000000999"
ROTTERDAM = "0599"


def configure(resource_dir: Path, endpoint: str, **delivery: Any) -> None:
    kp = yaml.safe_load((resource_dir / "knooppunt.yaml").read_text())
    kp["spec"]["oin"] = NODE_OIN
    kp["spec"]["delivery"] = {
        "initialBackoffSeconds": 0.05,
        "maxBackoffSeconds": 0.2,
        "timeoutSeconds": 3,
        **delivery,
    }
    kp["spec"].setdefault("security", {})["administrators"] = [ADMIN_OIN]
    (resource_dir / "knooppunt.yaml").write_text(yaml.safe_dump(kp))
    docs = list(yaml.safe_load_all((resource_dir / "gemeenten.yaml").read_text()))
    for doc in docs:
        for sub in doc["spec"]["subscriptions"]:
            if sub.get("delivery", {}).get("mode") == "push":
                sub["delivery"]["endpoint"] = endpoint
    (resource_dir / "gemeenten.yaml").write_text(yaml.safe_dump_all(docs))


Start = Callable[..., tuple[RunningNode, DevPki]]
# in the node's process, and from the delivery process `knooppunt serve` runs in production
WORKERS = pytest.mark.parametrize("worker", ["inline", "process"])


@pytest.fixture()
def push_node(
    tmp_path: Path, resource_dir: Path, receiver: Receiver, dev_pki: DevPki
) -> Iterator[Start]:
    started: list[RunningNode] = []

    def start(
        worker: str = "inline", database_url: str | None = None, **delivery: Any
    ) -> tuple[RunningNode, DevPki]:
        """A node pushing to the receiver; ``worker="process"``: from its delivery process."""
        configure(resource_dir, receiver.url, **delivery)
        # the receiver's PKI: the node trusts its server certificate and vice versa
        pki = ensure_for_resources(dev_pki.store.directory, load_paths([resource_dir]), NODE)
        if not pki.store.has("admin"):
            pki.store.issue_client("admin", organisation="Beheer", oin=ADMIN_OIN)
        node_cert = pki.clients[node_client_name(NODE)]
        settings = node_settings(
            resource_dir,
            tmp_path / "data",
            pki,
            delivery_cert=node_cert.chain,
            delivery_key=node_cert.key,
            delivery_worker=worker,
            database_url=database_url,
        )
        running = start_in_thread(settings)
        started.append(running)
        if running.node.delivery is not None:  # wait for the child's imports and state
            assert _wait(
                lambda: running.node.delivery is not None and running.node.delivery.up, 120
            )
        return running, pki

    yield start
    for r in started:
        r.stop()


def _client(running: RunningNode, pki: DevPki, name: str) -> httpx.Client:
    paths = pki.store.paths(name)
    return httpx.Client(
        base_url=f"https://localhost:{running.port}",
        timeout=30,
        verify=client_context(paths.chain, paths.key, pki.ca_bundle),
    )


def _rotterdam_message(kind: str = "wmo305") -> bytes:
    for path in sorted(MESSAGES.glob(f"{kind}*.xml")):
        if header(path.read_bytes())["Ontvanger"] == ROTTERDAM:
            return path.read_bytes()
    raise AssertionError("no Rotterdam example")


def _provider(body: bytes) -> str:
    agb = header(body)["Afzender"]
    res = load_paths([Path(MESSAGES).parent])
    return next(p.name for p in res.connectors[CONNECTOR].spec.participants if agb in p.identifiers)


def _wait(predicate: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@WORKERS
def test_push_reaches_the_endpoint_over_mtls_once(
    push_node: Start, receiver: Receiver, worker: str
) -> None:
    running, pki = push_node(worker)
    body = _rotterdam_message()
    with _client(running, pki, _provider(body)) as c:
        assert c.post(URL, content=body, headers=XML).status_code == 202
    assert _wait(lambda: len(receiver.applied) == 1)
    key, envelope = next(iter(receiver.applied.items()))
    assert envelope["kenmerken"]["ontvanger"] == ROTTERDAM
    assert envelope["kenmerken"]["doel"] == "wmo-uitvoering"
    assert receiver.client_oins == {NODE_OIN}
    with _client(running, pki, "gemeente-rotterdam") as g:
        # delivered push messages leave the mailbox; the pull subscription's stays
        def settled() -> bool:
            items = g.get(f"/api/v1/gemeenten/{ROTTERDAM}/mailbox").json()["items"]
            return key not in [i["id"] for i in items] and len(items) == 1

        assert _wait(settled)
        log = g.get(
            f"/api/v1/gemeenten/{ROTTERDAM}/processing-log", params={"activity": "deliver"}
        ).json()["records"]
        assert log and all(r["deliveryId"] == key for r in log)
    time.sleep(0.5)
    assert receiver.received == 1 and receiver.duplicates == 0
    with _client(running, pki, "admin") as admin:
        metrics = admin.get("/metrics").text
    # one delivery's intake-to-2xx time observed; its circuit is closed
    assert 'knooppunt_delivery_latency_seconds_count{gemeente="0599"} 1.0' in metrics
    assert 'knooppunt_delivery_circuit_open{gemeente="0599"} 0.0' in metrics


@WORKERS
def test_retry_then_dead_letter_then_replay(
    push_node: Start, receiver: Receiver, worker: str
) -> None:
    receiver.always_fail = True
    running, pki = push_node(worker, maxAttempts=3, circuitBreakerThreshold=100)
    body = _rotterdam_message()
    with _client(running, pki, _provider(body)) as c:
        assert c.post(URL, content=body, headers=XML).status_code == 202
    with _client(running, pki, "admin") as admin:
        assert _wait(lambda: len(admin.get("/api/v1/admin/dead-letters").json()["items"]) == 1)
        dead = admin.get("/api/v1/admin/dead-letters").json()["items"][0]
        assert dead["attempts"] == 3 and dead["lastError"] == "HTTP 503"
        assert receiver.received == 3
        metrics = admin.get("/metrics").text
        assert 'knooppunt_outbox_deliveries{status="dead"} 1.0' in metrics
        assert 'knooppunt_push_attempts_total{gemeente="0599",result="dead"} 1.0' in metrics
        # a dead letter is unacknowledged: it keeps the push stream's backlog age growing
        age = re.search(r'knooppunt_backlog_oldest_age_seconds\{mailbox="0599"\} (\S+)', metrics)
        assert age is not None and float(age.group(1)) > 0
        # never deleted by failure: the content is still there and replayable
        assert admin.post("/api/v1/admin/dead-letters/replay", json={}).status_code == 400
        receiver.always_fail = False
        replayed = admin.post(
            "/api/v1/admin/dead-letters/replay", json={"ids": [dead["id"]]}
        ).json()
        assert replayed == {"replayed": 1}
        assert _wait(lambda: dead["id"] in receiver.applied)
        assert admin.get("/api/v1/admin/dead-letters").json()["items"] == []


@WORKERS
def test_an_open_circuit_is_reported_until_a_delivery_succeeds(
    push_node: Start, receiver: Receiver, worker: str
) -> None:
    receiver.always_fail = True
    running, pki = push_node(
        worker,
        circuitBreakerThreshold=1,
        circuitBreakerCooldownSeconds=0.5,
        maxAttempts=50,
        initialBackoffSeconds=0.1,
        maxBackoffSeconds=0.5,
    )
    body = _rotterdam_message()
    with _client(running, pki, _provider(body)) as c:
        assert c.post(URL, content=body, headers=XML).status_code == 202
    with _client(running, pki, "admin") as admin:

        def circuit(value: str) -> bool:
            return (
                f'knooppunt_delivery_circuit_open{{gemeente="0599"}} {value}'
                in admin.get("/metrics").text
            )

        assert _wait(lambda: circuit("1.0"))
        receiver.always_fail = False
        assert _wait(lambda: len(receiver.applied) == 1, timeout=60)
        assert _wait(lambda: circuit("0.0"))


def test_a_stop_never_overtakes_its_start(push_node: Start, receiver: Receiver) -> None:
    receiver.fail_next = 3
    running, pki = push_node(circuitBreakerThreshold=100)
    start = _rotterdam_message("wmo305")
    provider = _provider(start)
    bsn = start.split(b"Bsn>")[1].split(b"<")[0].decode()
    agb = header(start)["Afzender"]
    stop = next(p.read_bytes() for p in sorted(MESSAGES.glob("wmo307*.xml")))
    stop = replace_first(with_new_id(stop, "STOP-1"), "Ontvanger", ROTTERDAM)
    stop = replace_first(replace_first(stop, "Afzender", agb), "Bsn", bsn)
    stop = stop.replace(b">" + header(stop)["Afzender"].encode() + b"<", b">" + agb.encode() + b"<")
    stop = replace_first_all(stop, "Aanbieder", agb)
    with _client(running, pki, provider) as c:
        assert c.post(URL, content=start, headers=XML).status_code == 202
        resp = c.post(URL, content=stop, headers=XML)
        assert resp.status_code == 202, resp.text
    assert _wait(lambda: len(receiver.order) >= 2)
    kinds = [
        receiver.applied[k]["kenmerken"]["berichttype"]
        for k in receiver.order
        if receiver.applied[k]["kenmerken"]["doel"] == "wmo-uitvoering"
    ]
    assert kinds == ["WMO305", "WMO307"]


def replace_first_all(xml: bytes, element: str, value: str) -> bytes:
    import re

    return re.sub(
        rb"(<(\w+:)?" + element.encode() + rb">)[^<]*(</)",
        rb"\g<1>" + value.encode() + rb"\g<3>",
        xml,
    )


def test_one_dead_endpoint_does_not_block_the_others() -> None:
    clock = [0.0]
    breakers = CircuitBreakers(threshold=lambda: 3, cooldown=lambda: 10.0, clock=lambda: clock[0])
    for _ in range(2):
        assert not breakers.failure("https://dead")
    assert breakers.failure("https://dead")
    assert breakers.state("https://dead") == "open"
    assert breakers.open_endpoints() == ["https://dead"]
    assert breakers.state("https://alive") == "closed"
    clock[0] = 10.5
    assert breakers.state("https://dead") == "half-open"
    assert breakers.failure("https://dead")  # the trial failed: open again
    assert breakers.state("https://dead") == "open"
    clock[0] = 21.0
    breakers.success("https://dead")
    assert breakers.state("https://dead") == "closed"


def test_backoff_is_exponential_with_full_jitter() -> None:
    spec = DeliverySpec.model_validate({"initialBackoffSeconds": 1, "maxBackoffSeconds": 60})
    assert backoff(0, spec, rand=lambda: 1.0) == 1.0
    assert backoff(3, spec, rand=lambda: 1.0) == 8.0
    assert backoff(20, spec, rand=lambda: 1.0) == 60.0
    assert backoff(3, spec, rand=lambda: 0.5) == 4.0
    assert backoff(3, spec, rand=lambda: 0.0) == 0.05


def test_proxies_come_from_the_environment_once_per_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    worker = DeliveryWorker(
        outbox=None,  # type: ignore[arg-type]
        spec=DeliverySpec,
        client_ssl=ssl.create_default_context(),
        metrics=Metrics(),
        node_name=lambda: NODE,
    )
    proxy, auth = worker._proxy("https://gemeente.example/notificaties")
    assert str(proxy) == "http://proxy.example:3128" and auth is None
    assert worker._proxy("https://localhost:8443/notificaties") == (None, None)
    monkeypatch.delenv("HTTPS_PROXY")  # looked up once: the first answer stays
    assert str(worker._proxy("https://gemeente.example/notificaties")[0]).endswith(":3128")


class _CountingOutbox:
    """An outbox with nothing due that notes when each claim starts and ends."""

    def __init__(self) -> None:
        self.claims: list[tuple[float, float]] = []

    def ensure_statistics(self) -> bool:
        return False

    def claim(self, **_kw: Any) -> list[Any]:
        started = time.monotonic()
        time.sleep(0.001)
        self.claims.append((started, time.monotonic()))
        return []


def _worker_on(outbox: _CountingOutbox, **options: Any) -> DeliveryWorker:
    """A delivery worker on a counting outbox (nothing is ever due)."""
    return DeliveryWorker(
        outbox=outbox,  # type: ignore[arg-type]
        spec=DeliverySpec,
        client_ssl=ssl.create_default_context(),
        metrics=Metrics(),
        node_name=lambda: NODE,
        **options,
    )


def test_wake_ups_in_quick_succession_share_a_claim() -> None:
    """Every intake commit wakes the worker; a claim starts no sooner than claim_gap after
    the previous one ended, so the wake-ups meanwhile share the next claim."""
    import asyncio

    outbox = _CountingOutbox()
    worker = _worker_on(outbox, claim_gap=0.05)

    async def scenario() -> int:
        running = asyncio.create_task(worker.run())
        wakes = 0
        for _ in range(100):  # an intake commit every 3 ms for 0.3 s
            await asyncio.sleep(0.003)
            worker.wake()
            wakes += 1
        await worker.stop()
        await running
        return wakes

    wakes = asyncio.run(scenario())
    assert 2 <= len(outbox.claims) < wakes
    for (_, ended), (started, _) in zip(outbox.claims, outbox.claims[1:], strict=False):
        assert started - ended >= 0.05


class _SettlingOutbox(_CountingOutbox):
    """Nothing due; notes each settlement round, and whether it claimed too."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[tuple[float, float, list[str], bool]] = []

    def settle_and_claim(self, settled: list[tuple[str, Any]], claim: Any) -> tuple[int, list[Any]]:
        started = time.monotonic()
        time.sleep(0.001)
        self.rounds.append((started, time.monotonic(), [i for i, _ in settled], claim is not None))
        return len(settled), []


def test_while_successes_arrive_their_settlements_claim() -> None:
    """Answers arriving every few milliseconds are settled in rounds, and each round's
    transaction claims too: no claim of its own meanwhile, never two claims at once, every
    success settled once."""
    import asyncio

    outbox = _SettlingOutbox()
    worker = _worker_on(outbox, poll_interval=5.0)

    async def scenario() -> tuple[list[str], float]:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)  # the first claim, at start
        flowing = time.monotonic()
        ids, waiting = [], []
        for n in range(60):  # an answer every 4 ms
            await asyncio.sleep(0.004)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            ids.append(f"d{n}")
            waiting.append(done)
            await worker._settle.put((ids[-1], [], done))
        await asyncio.gather(*waiting)
        await worker.stop()
        await running
        return ids, flowing

    ids, flowing = asyncio.run(scenario())
    assert sorted(i for *_, settled, _c in outbox.rounds for i in settled) == sorted(ids)
    assert 1 < len(outbox.rounds) < len(ids)
    assert sum(claimed for *_, claimed in outbox.rounds) >= len(outbox.rounds) - 1
    assert [c for c in outbox.claims if c[0] >= flowing] == []
    claiming = sorted(
        list(outbox.claims) + [(s, e) for s, e, _i, claimed in outbox.rounds if claimed]
    )
    for (_, ended), (started, _) in itertools.pairwise(claiming):
        assert started >= ended
