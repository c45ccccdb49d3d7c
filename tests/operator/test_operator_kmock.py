"""The operator's handlers, run by kopf against the kmock Kubernetes API emulator."""

from __future__ import annotations

import asyncio
import copy
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import kmock
import pytest
import pytest_asyncio
from knooppunt_operator import kube, rbac
from knooppunt_operator.handlers.context import Context
from knooppunt_operator.runtime_client import StaticPending

from tests.operator import scenarios
from tests.operator.emulator import ApiEmulator
from tests.operator.harness import Cluster, fast_config, operator_on, running_operator

NAMESPACE = "zorg"


@dataclass
class Running:
    cluster: Cluster
    ctx: Context
    pending: StaticPending
    emulator: ApiEmulator


@pytest_asyncio.fixture()
async def emulator() -> AsyncIterator[ApiEmulator]:
    async with ApiEmulator() as emu, kmock.Server(emu):
        yield emu


@pytest_asyncio.fixture()
async def running(emulator: ApiEmulator) -> AsyncIterator[Running]:
    pending = StaticPending()
    async with operator_on(str(emulator.url), NAMESPACE, pending=pending) as (cluster, ctx):
        yield Running(cluster, ctx, pending, emulator)
    # Whatever the scenario made the operator do, the generated RBAC allows it.
    config = fast_config()
    for verb, group, resource, namespace in sorted(emulator.access, key=str):
        in_own_namespace = namespace == config.namespace
        assert rbac.allows(verb, group, resource, namespaced_in_operator_ns=in_own_namespace), (
            f"the operator did {verb} {group}/{resource} but knooppunt_operator.rbac does not "
            "allow it"
        )


pytestmark = pytest.mark.asyncio


async def test_create_knooppunt_makes_its_children(running: Running) -> None:
    await scenarios.create_knooppunt_makes_its_children(running.cluster)


async def test_a_node_waits_for_its_connector(running: Running) -> None:
    await scenarios.a_node_waits_for_its_connector(running.cluster)


async def test_conditions_are_written_only_when_they_change(running: Running) -> None:
    await scenarios.conditions_are_written_only_when_they_change(
        running.cluster,
        status_writes=lambda: running.emulator.writes[("knooppunten", scenarios.NODE, "status")],
    )


async def test_database_secret_is_reported(running: Running) -> None:
    await scenarios.database_secret_is_reported(running.cluster)


async def test_connector_change_rolls_the_pods(running: Running) -> None:
    await scenarios.connector_change_rolls_the_pods(running.cluster)


async def test_pinned_node_is_not_restarted_until_promoted(running: Running) -> None:
    await scenarios.pinned_node_is_not_restarted_until_promoted(running.cluster)


async def test_gemeenten_never_touch_the_deployment(running: Running) -> None:
    await scenarios.gemeenten_never_touch_the_deployment(running.cluster)


async def test_provided_certificate_is_trusted_by_the_node(running: Running) -> None:
    await scenarios.provided_certificate_is_trusted_by_the_node(running.cluster)


async def test_two_nodes_carry_each_others_crl(running: Running) -> None:
    await scenarios.two_nodes_carry_each_others_crl(running.cluster)


async def test_failed_rollout_rolls_back(running: Running) -> None:
    await scenarios.failed_rollout_rolls_back(running.cluster)


async def test_invalid_connector_is_never_recorded(running: Running) -> None:
    await scenarios.invalid_connector_is_never_recorded(running.cluster)


async def test_gemeente_deletion_waits_for_undelivered_messages(running: Running) -> None:
    await scenarios.gemeente_deletion_waits_for_undelivered_messages(
        running.cluster, running.pending
    )


async def test_connector_deletion_waits_for_undelivered_messages(running: Running) -> None:
    await scenarios.connector_deletion_waits_for_undelivered_messages(
        running.cluster, running.pending
    )


async def test_deleting_the_knooppunt_removes_its_children(running: Running) -> None:
    await scenarios.deleting_the_knooppunt_removes_its_children(running.cluster)


async def test_one_more_gemeente_is_four_writes_and_no_read(running: Running) -> None:
    """Every read comes from kopf's watches: onboarding a gemeente is its finalizer, its
    certificate, its status and the node's count, nothing else (on the real API server too,
    test_operator_controlplane.py, from the audit log)."""
    cluster, emulator = running.cluster, running.emulator
    await scenarios.ready_node(cluster)
    await cluster.create(scenarios.gemeente_resource(1))
    await cluster.wait_condition(kube.GEMEENTE, "gemeente-0001", "Ready", "True", reason="Served")

    async def counted(n: int) -> bool:
        node = (await cluster.must_get(kube.KNOOPPUNT, scenarios.NODE)).get("status") or {}
        return node.get("gemeenten") == n

    await cluster.eventually(lambda: counted(1), what="counted")
    await asyncio.sleep(1.0)
    before = len(emulator.requests)
    await cluster.create(scenarios.gemeente_resource(2))
    await cluster.wait_condition(kube.GEMEENTE, "gemeente-0002", "Ready", "True", reason="Served")
    await cluster.eventually(lambda: counted(2), what="counted")
    await asyncio.sleep(1.0)  # and nothing more comes (the observe timer runs every 0.3 s)
    assert sorted(emulator.requests[before:]) == [
        "patch gemeenten",
        "patch gemeenten/status",
        "patch knooppunten/status",
        "patch secrets",
    ]


@pytest.mark.slow
async def test_a_node_carries_400_gemeenten(running: Running) -> None:
    """Onboarding 400 gemeenten: 400 certificates, no restart, no object growing with them."""
    await scenarios.gemeenten_never_touch_the_deployment(running.cluster, count=400)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admission_review(obj: dict[str, Any], *, old: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-43b3-a2fa-4e0b5d4f3a3e",
            "kind": {"group": "knooppunt.nl", "version": "v1alpha1", "kind": "SectorConnector"},
            "resource": {
                "group": "knooppunt.nl",
                "version": "v1alpha1",
                "resource": "sectorconnectors",
            },
            "requestKind": {
                "group": "knooppunt.nl",
                "version": "v1alpha1",
                "kind": "SectorConnector",
            },
            "requestResource": {
                "group": "knooppunt.nl",
                "version": "v1alpha1",
                "resource": "sectorconnectors",
            },
            "name": obj["metadata"]["name"],
            "namespace": NAMESPACE,
            "operation": "UPDATE" if old else "CREATE",
            "userInfo": {"username": "platform-team", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": None,
        },
    }


async def test_admission_webhook_refuses_a_broken_connector(emulator: ApiEmulator) -> None:
    """Through kopf's admission server, as the API server would call it."""
    port = free_port()
    credentials = kube.Credentials(server=str(emulator.url).rstrip("/"))
    async with running_operator(credentials, fast_config(webhook_local_port=port)):
        good = scenarios.connector_resource()
        good["metadata"]["namespace"] = NAMESPACE
        broken = copy.deepcopy(good)
        broken["spec"]["purposes"][1]["fields"].append("clienten[].postcode")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):  # kopf starts its admission server once resources are known
                try:
                    await http.get("/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            allowed = (await http.post("/validate-connector", json=admission_review(good))).json()
            refused = (await http.post("/validate-connector", json=admission_review(broken))).json()
            unbumped = copy.deepcopy(good)
            unbumped["spec"]["payloadRetentionDays"] = 7
            stale = (
                await http.post("/validate-connector", json=admission_review(unbumped, old=good))
            ).json()
    assert allowed["response"]["allowed"] is True
    assert refused["response"]["allowed"] is False
    assert refused["response"]["status"] == {
        "code": 422,
        "message": "connector iwmo-2-1 purpose wmo-toewijzing: field 'clienten[].postcode' is "
        "not produced by the conversion of WMO315",
    }
    assert stale["response"]["allowed"] is False
    assert "raise spec.revision" in stale["response"]["status"]["message"]
