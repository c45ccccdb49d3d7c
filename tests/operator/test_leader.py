"""Leader election over a coordination.k8s.io Lease: one replica reconciles at a time."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio
from knooppunt_operator import kube, leader

from tests.operator.emulator import ApiEmulator

pytestmark = pytest.mark.asyncio
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest_asyncio.fixture()
async def client() -> AsyncIterator[kube.KubeClient]:
    async with ApiEmulator() as emu, kmock.Server(emu):
        async with kube.KubeClient(kube.Credentials(server=str(emu.url).rstrip("/"))) as c:
            yield c


def elector(
    client: kube.KubeClient, identity: str, clock: Clock, *, skew: float = 0.0
) -> leader.LeaseElector:
    """An elector whose wall clock is ``skew`` seconds off; its monotonic clock follows the
    test's clock (time passes equally everywhere)."""
    return leader.LeaseElector(
        client,
        "knooppunt-system",
        identity=identity,
        clock=lambda: clock() + dt.timedelta(seconds=skew),
        monotonic=lambda: clock().timestamp(),
        lease_seconds=15,
        renew_seconds=0.05,
    )


async def leading(
    client: kube.KubeClient, clock: Clock
) -> tuple[leader.LeaseElector, asyncio.Event]:
    """pod-a, started and leading; the event is set when it gives up leadership."""
    lost = asyncio.Event()
    a = elector(client, "pod-a", clock)
    a.on_lost = lost.set
    a.start()
    await asyncio.wait_for(a.wait(), 5)
    return a, lost


async def test_one_holder_at_a_time(client: kube.KubeClient) -> None:
    clock = Clock()
    a, b = elector(client, "pod-a", clock), elector(client, "pod-b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now += dt.timedelta(seconds=10)
    assert await a.try_acquire_or_renew(), "the holder renews"
    clock.now += dt.timedelta(seconds=10)
    assert not await b.try_acquire_or_renew(), "renewed 10 s ago: still held"
    clock.now += dt.timedelta(seconds=20)
    assert await b.try_acquire_or_renew(), "expired: taken over"
    lease = await client.get(kube.LEASE, "knooppunt-system", "knooppunt-operator")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "pod-b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 15


async def test_release_hands_over_at_once(client: kube.KubeClient) -> None:
    clock = Clock()
    a, b = elector(client, "pod-a", clock), elector(client, "pod-b", clock)
    a.start()
    await asyncio.wait_for(a.wait(), 5)
    assert a.is_leader
    await a.stop()
    assert not a.is_leader
    assert await b.try_acquire_or_renew()


async def test_a_stale_write_loses(client: kube.KubeClient) -> None:
    clock = Clock()
    a = elector(client, "pod-a", clock)
    assert await a.try_acquire_or_renew()
    lease = await client.get(kube.LEASE, "knooppunt-system", "knooppunt-operator")
    assert lease is not None
    await client.merge_patch(
        kube.LEASE,
        "knooppunt-system",
        "knooppunt-operator",
        {"spec": {"renewTime": "2026-03-01T09:00:01.000000Z"}},
    )
    with pytest.raises(kube.Conflict):
        await client.merge_patch(
            kube.LEASE,
            "knooppunt-system",
            "knooppunt-operator",
            {
                "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                "spec": {"holderIdentity": "pod-b"},
            },
        )


async def test_losing_the_lease_stops_the_replica(client: kube.KubeClient) -> None:
    clock = Clock()
    a, lost = await leading(client, clock)
    # Someone else holds it now (e.g. after a network partition outlasted the lease).
    await client.merge_patch(
        kube.LEASE, "knooppunt-system", "knooppunt-operator", {"spec": {"holderIdentity": "pod-b"}}
    )
    await asyncio.wait_for(lost.wait(), 5)
    assert not a.is_leader
    await a.stop()


async def test_a_lease_installed_with_the_operator_is_never_recreated(
    client: kube.KubeClient,
) -> None:
    """The chart installs the Lease (create=False): while it is absent nobody leads, a Lease
    without a spec (as the chart writes it) is taken, and its removal (an uninstall) stops
    the leader instead of bringing the Lease back."""
    clock = Clock()
    a = elector(client, "pod-a", clock)
    a.create = False
    lost = asyncio.Event()
    a.on_lost = lost.set
    assert not await a.try_acquire_or_renew()
    assert await client.get(kube.LEASE, "knooppunt-system", "knooppunt-operator") is None
    await client.create(
        kube.LEASE,
        "knooppunt-system",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "knooppunt-operator", "namespace": "knooppunt-system"},
        },
    )
    a.start()
    await asyncio.wait_for(a.wait(), 5)
    await client.delete(kube.LEASE, "knooppunt-system", "knooppunt-operator")
    await asyncio.wait_for(lost.wait(), 5)
    assert not a.is_leader
    await a.stop()
    assert await client.get(kube.LEASE, "knooppunt-system", "knooppunt-operator") is None


async def test_a_standby_with_a_fast_clock_still_waits_a_whole_lease(
    client: kube.KubeClient,
) -> None:
    """Expiry is judged by how long the standby itself has seen the record unchanged, not by
    comparing the holder's renewTime with the standby's wall clock."""
    clock = Clock()
    a = elector(client, "pod-a", clock)
    b = elector(client, "pod-b", clock, skew=3600)  # an hour ahead: renewTime looks stale
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now += dt.timedelta(seconds=14)
    assert not await b.try_acquire_or_renew(), "unchanged for 14 s of a 15 s lease"
    clock.now += dt.timedelta(seconds=2)
    assert await b.try_acquire_or_renew(), "unchanged for 16 s: free"


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_runs_out(
    client: kube.KubeClient,
) -> None:
    clock = Clock()
    a, lost = await leading(client, clock)
    assert a.renew_deadline == 10

    async def unreachable() -> bool:
        raise kube.ApiError(0, "ClientConnectorError", "API server unreachable")

    a.try_acquire_or_renew = unreachable  # type: ignore[method-assign]
    clock.now += dt.timedelta(seconds=9)
    await asyncio.sleep(0.2)
    assert a.is_leader and not lost.is_set(), "within the renew deadline: still leading"
    clock.now += dt.timedelta(seconds=2)  # 11 s without renewal: past the deadline (10 s)
    await asyncio.wait_for(lost.wait(), 5)
    assert not a.is_leader  # stepped down while the lease (15 s) still protects the others
    await a.stop()


async def test_timings_must_leave_room_for_the_others() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        leader.LeaseElector(
            None,
            "ns",
            lease_seconds=15,
            renew_seconds=2,  # type: ignore[arg-type]
            renew_deadline=15,
        )


async def test_always_leader_gate() -> None:
    gate = leader.AlwaysLeader()
    await gate.wait()
    assert gate.is_leader
