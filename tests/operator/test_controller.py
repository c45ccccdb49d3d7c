"""The controller on the API emulator: events only name work; only a leader does it."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
import pytest_asyncio
from knooppunt_operator import kube
from knooppunt_operator.controller import FINALIZER, Controller, Work, fingerprint
from knooppunt_operator.handlers.context import GEMEENTE, KNOOPPUNT, OBSERVE, Context
from knooppunt_operator.runtime_client import StaticPending

from tests.operator import scenarios
from tests.operator.emulator import ApiEmulator
from tests.operator.harness import fast_config

pytestmark = pytest.mark.asyncio
NS = "gemeenten"


class ManualGate:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


@pytest_asyncio.fixture()
async def ctx() -> AsyncIterator[Context]:
    async with ApiEmulator() as emu, kmock.Server(emu):
        async with kube.KubeClient(kube.Credentials(server=str(emu.url).rstrip("/"))) as c:
            context = Context(
                client=c,
                config=fast_config(),
                pending=StaticPending(),
                events=kube.EventRecorder(c),
                gate=ManualGate(),
            )
            yield context


@pytest_asyncio.fixture()
async def leading(ctx: Context) -> AsyncIterator[Controller]:
    """A controller whose replica holds the Lease, one worker, retrying quickly."""
    assert isinstance(ctx.gate, ManualGate)
    ctx.gate.event.set()
    controller = Controller(ctx, workers=1)
    controller.queue.backoff.base = 0.02
    controller.start()
    yield controller
    await controller.stop()


async def create_gemeente(ctx: Context, index: int) -> dict[str, Any]:
    body = scenarios.gemeente_resource(index)
    body["metadata"]["namespace"] = NS
    return await ctx.client.create(kube.GEMEENTE, NS, body)


async def eventually(probe: Any, timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := await probe():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out: {probe}")


async def test_status_and_finalizers_do_not_call_for_a_reconcile() -> None:
    body = scenarios.gemeente_resource(1)
    body["metadata"].update(uid="u1", generation=1)
    same = copy.deepcopy(body)
    same["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    same["metadata"]["finalizers"] = [FINALIZER]
    same["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert fingerprint(same) == fingerprint(body)
    for change in (
        {"generation": 2},
        {"deletionTimestamp": "2026-11-29T10:00:00Z"},
        {"uid": "u2"},
        {"annotations": {"knooppunt.nl/force-delete": "true"}},
        {"labels": {"team": "x"}},
    ):
        changed = copy.deepcopy(body)
        changed["metadata"].update(change)
        assert fingerprint(changed) != fingerprint(body), change


async def test_a_standby_writes_nothing_and_reconciles_everything_it_saw_once_it_leads(
    ctx: Context,
) -> None:
    controller = Controller(ctx, workers=2)
    controller.start()
    try:
        bodies = [await create_gemeente(ctx, i) for i in (1, 2, 3)]
        for body in bodies:
            controller.on_event(GEMEENTE, None, body)
            controller.on_event(GEMEENTE, "MODIFIED", body)  # the same again: no new work
        await asyncio.sleep(0.2)
        assert len(controller.queue) == 3
        for body in bodies:
            now = await ctx.client.get(kube.GEMEENTE, NS, body["metadata"]["name"])
            assert now is not None
            assert now["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]

        assert isinstance(ctx.gate, ManualGate)
        ctx.gate.event.set()  # this replica now holds the Lease

        async def all_reconciled() -> bool:
            for body in bodies:
                now = await ctx.client.get(kube.GEMEENTE, NS, body["metadata"]["name"])
                assert now is not None
                if FINALIZER not in now["metadata"].get("finalizers", []):
                    return False
                if not (now.get("status") or {}).get("conditions"):
                    return False
            return True

        await eventually(all_reconciled)
        # Its own status write comes back as an event: no reconcile for that.
        now = await ctx.client.get(kube.GEMEENTE, NS, "gemeente-0001")
        assert now is not None
        controller.on_event(GEMEENTE, "MODIFIED", now)
        assert len(controller.queue) == 0
        assert controller.subscriptions[(NS, "gemeente-0001")] == {"iwmo-2-1"}
        controller.on_event(GEMEENTE, "DELETED", now)
        assert Work(GEMEENTE, NS, "gemeente-0001") not in controller.seen
        assert (NS, "gemeente-0001") not in controller.subscriptions
    finally:
        await controller.stop()


async def test_deletion_lets_go_of_the_finalizer_when_nothing_is_undelivered(
    ctx: Context,
    leading: Controller,
) -> None:
    body = await create_gemeente(ctx, 7)
    leading.on_event(GEMEENTE, None, body)

    async def finalized() -> dict[str, Any] | None:
        now = await ctx.client.get(kube.GEMEENTE, NS, "gemeente-0007")
        return now if now and FINALIZER in now["metadata"].get("finalizers", []) else None

    await eventually(finalized)
    assert await ctx.client.delete(kube.GEMEENTE, NS, "gemeente-0007")
    deleting = await ctx.client.get(kube.GEMEENTE, NS, "gemeente-0007")
    assert deleting is not None and deleting["metadata"].get("deletionTimestamp")
    leading.on_event(GEMEENTE, "MODIFIED", deleting)

    async def gone() -> bool:
        return await ctx.client.get(kube.GEMEENTE, NS, "gemeente-0007") is None

    await eventually(gone)


async def test_a_failing_reconcile_is_retried_and_reported_once_per_problem(
    ctx: Context,
    leading: Controller,
) -> None:
    body = scenarios.gemeente_resource(8)
    body["metadata"]["namespace"] = NS
    body["spec"]["gemeentecode"] = "12"  # the emulator has no schema: the model refuses it
    created = await ctx.client.create(kube.GEMEENTE, NS, body)
    leading.on_event(GEMEENTE, None, created)
    work = Work(GEMEENTE, NS, "gemeente-0008")

    async def retried() -> bool:
        return leading.queue.failures(work) >= 3

    await eventually(retried)
    warnings = [r for r in ctx.events.recorded if r[0] == "gemeente-0008"]
    assert len(warnings) == 1, warnings
    _name, reason, message = warnings[0]
    assert reason == "ReconcileFailed" and "gemeentecode" in message

    fixed = await ctx.client.merge_patch(
        kube.GEMEENTE, NS, "gemeente-0008", {"spec": {"gemeentecode": "0008"}}
    )
    assert fixed is not None
    leading.on_event(GEMEENTE, "MODIFIED", fixed)

    async def recovered() -> bool:
        return leading.queue.failures(work) == 0 and work not in leading.reported

    await eventually(recovered)


async def drained(controller: Controller) -> set[Work]:
    """Take everything waiting from the queue (as workers would) and name it."""
    keys = set()
    while len(controller.queue):
        key = await controller.queue.get()
        controller.queue.done(key)
        keys.add(key)
    return keys


async def test_a_gemeente_joining_or_leaving_has_its_nodes_counted_again(ctx: Context) -> None:
    controller = Controller(ctx, workers=1)
    node = scenarios.knooppunt_resource()
    node["metadata"].update(namespace=NS, uid="n1", generation=1)
    controller.on_event(KNOOPPUNT, None, node)
    observe = Work(OBSERVE, NS, node["metadata"]["name"])
    assert await drained(controller) == {Work(KNOOPPUNT, NS, observe.name), observe}
    body = scenarios.gemeente_resource(1)
    body["metadata"].update(namespace=NS, uid="g1", generation=1)
    controller.on_event(GEMEENTE, None, body)
    assert await drained(controller) == {Work(GEMEENTE, NS, "gemeente-0001"), observe}
    controller.on_event(GEMEENTE, "MODIFIED", {**body, "status": {"x": 1}})  # same connectors
    assert await drained(controller) == set()
    controller.on_event(GEMEENTE, "DELETED", body)
    assert await drained(controller) == {observe}
