"""Run the operator against an API server and drive scenarios through the API only.

Everything goes through :class:`knooppunt_operator.kube.KubeClient`, so a scenario takes a
base URL and credentials and runs the same against the kmock emulator (these tests) or a
real kube-apiserver (the control-plane suite): build ``Credentials`` for that server, start
:func:`running_operator`, call the scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf
from knooppunt_operator import kube, main
from knooppunt_operator.config import OperatorConfig
from knooppunt_operator.handlers.context import Context
from knooppunt_operator.runtime_client import PendingCounter, StaticPending

T = TypeVar("T")


def fast_config(**overrides: Any) -> OperatorConfig:
    """Short intervals and deadlines so scenarios finish in seconds."""
    values: dict[str, Any] = {
        "namespace": "knooppunt-system",
        "leader_election": False,
        "rollout_deadline_seconds": 2,
        "observe_interval": 0.3,
        "pending_retry_seconds": 0.3,
    }
    values.update(overrides)
    return OperatorConfig(**values)


@dataclass
class Cluster:
    """The scenario's view of the API server."""

    client: kube.KubeClient
    namespace: str
    rollout_driver: Callable[[Cluster, str, bool], Awaitable[None]] | None = None
    """How a rollout becomes ready or not. Default: report it in the Deployment's status, as
    the emulator has no Deployment controller; on a real cluster pass a driver that waits for
    the real pods (and breaks the image to make one fail)."""

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(obj))
        body["metadata"]["namespace"] = self.namespace
        return await self.client.create(kube.kind_of(body), self.namespace, body)

    async def get(self, kind: kube.Kind, name: str) -> dict[str, Any] | None:
        return await self.client.get(kind, self.namespace, name)

    async def must_get(self, kind: kube.Kind, name: str) -> dict[str, Any]:
        obj = await self.get(kind, name)
        assert obj is not None, f"{kind.kind} {name} does not exist"
        return obj

    async def patch(
        self, kind: kube.Kind, name: str, patch: Mapping[str, Any], subresource: str | None = None
    ) -> dict[str, Any] | None:
        return await self.client.merge_patch(
            kind, self.namespace, name, patch, subresource=subresource
        )

    async def delete(self, kind: kube.Kind, name: str) -> bool:
        return await self.client.delete(kind, self.namespace, name)

    async def list(self, kind: kube.Kind, **labels: str) -> list[dict[str, Any]]:
        return await self.client.list(kind, self.namespace, labels=labels or None)

    async def eventually(
        self,
        probe: Callable[[], Awaitable[T]],
        *,
        timeout: float = 15.0,
        what: str = "",
        interval: float = 0.05,
    ) -> T:
        """Poll until ``probe`` returns something truthy; fail with the last value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await probe()
            if last:
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"timed out waiting for {what or probe}: last value {last!r}")

    async def condition(self, kind: kube.Kind, name: str, type_: str) -> dict[str, Any] | None:
        obj = await self.get(kind, name)
        for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    async def wait_condition(
        self,
        kind: kube.Kind,
        name: str,
        type_: str,
        status: str,
        *,
        reason: str | None = None,
        timeout: float = 15.0,
        interval: float = 0.05,
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            cond = await self.condition(kind, name, type_)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return cond
            return None

        return await self.eventually(
            probe,
            timeout=timeout,
            interval=interval,
            what=f"{kind.kind} {name} {type_}={status} ({reason})",
        )

    async def set_rollout(self, name: str, *, ready: bool) -> None:
        """Make the Deployment's current template roll out, ready or not."""
        if self.rollout_driver is not None:
            await self.rollout_driver(self, name, ready)
            return
        await self.report_rollout(name, ready=ready)

    async def report_rollout(self, name: str, *, ready: bool) -> dict[str, Any]:
        """Play the Deployment controller: write the rollout into the Deployment's status."""
        deployment = await self.must_get(kube.DEPLOYMENT, name)
        replicas = int(deployment["spec"].get("replicas", 1))
        generation = int(deployment["metadata"].get("generation") or 1)
        available = replicas if ready else 0
        status = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if ready else "ReplicaSetUpdated",
                }
            ],
        }
        patched = await self.patch(kube.DEPLOYMENT, name, {"status": status}, subresource="status")
        assert patched is not None
        return patched


@contextlib.asynccontextmanager
async def running_operator(
    credentials: kube.Credentials,
    config: OperatorConfig,
    *,
    pending: PendingCounter | None = None,
    namespaces: list[str] | None = None,
) -> AsyncIterator[Context]:
    """The operator, as ``kopf run`` would start it, in its own thread and event loop.

    Cluster-wide (``--all-namespaces``) unless ``namespaces`` are given.

    (kopf cancels every task of its loop that it did not start when it stops, so it gets a
    loop of its own, as in a real process.)
    """
    registry = kopf.OperatorRegistry()
    main.register(registry, config, credentials=credentials)
    client = kube.KubeClient(credentials)
    ctx = Context(
        client=client,
        config=config,
        pending=pending or StaticPending(),
        events=kube.EventRecorder(client),
    )
    settings = kopf.OperatorSettings()
    settings.networking.error_backoffs = [0.1, 0.2, 0.5]
    stop = threading.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def operate() -> None:
        try:
            await kopf.operator(
                registry=registry,
                settings=settings,
                clusterwide=not namespaces,
                namespaces=namespaces or (),
                standalone=True,
                memo=kopf.Memo(ctx=ctx),
                stop_flag=stop,
                ready_flag=ready,
            )
        finally:
            await client.aclose()

    def run() -> None:
        try:
            asyncio.run(operate())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 20)
    if failure:
        raise failure[0]
    try:
        yield ctx
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "the operator did not stop"
        if failure:
            raise failure[0]


@contextlib.asynccontextmanager
async def operator_on(
    server: str,
    namespace: str,
    *,
    token: str | None = None,
    ca_data: bytes | None = None,
    client_cert: bytes | None = None,
    client_key: bytes | None = None,
    config: OperatorConfig | None = None,
    pending: PendingCounter | None = None,
) -> AsyncIterator[tuple[Cluster, Context]]:
    """Scenarios against any API server: a base URL and credentials in, a running operator and
    a :class:`Cluster` for the scenario out."""
    credentials = kube.Credentials(
        server=server.rstrip("/"),
        token=token,
        ca_data=ca_data,
        client_cert=client_cert,
        client_key=client_key,
    )
    async with (
        running_operator(credentials, config or fast_config(), pending=pending) as ctx,
        kube.KubeClient(credentials, user_agent="knooppunt-tests") as client,
    ):
        yield Cluster(client, namespace), ctx
