"""Gemeente resources from the Kubernetes API: list, then watch, live, without restarts.

On a cluster the operator does not copy tenants into the node's ConfigMap (400 gemeenten would
grow one object toward its size limit and every change would restart pods). The runtime lists
and watches `gemeenten.knooppunt.nl` in its namespace itself, with its service account (RBAC:
get/list/watch), and rebuilds its state on every change.

The API is reached with ``kubernetes_asyncio`` (the client the operator uses too), in a thread
of its own with its own event loop: the in-cluster service account (its token is read again
as the kubelet rotates it) or a kubeconfig (several paths merged as kubectl does, exec
credential plugins run again when their token expires); the watch asks for bookmarks, so a
quiet namespace resumes from a recent resource version instead of re-listing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from node_runtime.model import GROUP, VERSION
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.loading import ResourceError, parse_document

log = logging.getLogger("knooppunt.kubernetes")
PLURAL = "gemeenten"
T = TypeVar("T")
WATCH_SECONDS = 300


@dataclass(frozen=True)
class ApiAccess:
    """Where the credentials come from: a kubeconfig (one path or several, separated by
    ``os.pathsep`` as in ``KUBECONFIG``) or, without one, the in-cluster service account."""

    kubeconfig: str | None = None
    context: str | None = None

    @property
    def source(self) -> str:
        return self.kubeconfig or "in-cluster service account"

    async def configuration(self) -> tuple[Configuration, asyncio.Task[None] | None]:
        """The library's configuration, and the task that renews an exec plugin's token."""
        configuration = Configuration()
        if self.kubeconfig is None:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
            return configuration, None
        loader = await kube_config.load_kube_config(
            config_file=self.kubeconfig,
            context=self.context,
            client_configuration=configuration,
            persist_config=False,
        )
        renew = None
        if loader._user is not None and "exec" in loader._user:
            renew = asyncio.create_task(
                kube_config.refresh_token(loader, configuration, interval=30)
            )
        return configuration, renew


def from_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> ApiAccess:
    """A kubeconfig's context (default: the current one); ``path`` may name several files."""
    return ApiAccess(kubeconfig=os.fspath(path), context=context)


def in_cluster() -> ApiAccess:
    return ApiAccess()


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of this client from synchronous code (a worker thread has no event
    loop; inside one, a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class GemeenteWatch:
    """Keeps a live snapshot of the namespace's Gemeente resources."""

    def __init__(
        self, access: ApiAccess, namespace: str, *, on_change: Callable[[], None] | None = None
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.on_change = on_change
        self._items: dict[str, Gemeente] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.relists = 0

    def snapshot(self) -> dict[str, Gemeente]:
        with self._lock:
            return dict(self._items)

    def start(self, *, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="gemeente-watch", daemon=True)
        self._thread.start()
        if not self._synced.wait(timeout):
            raise RuntimeError(f"could not list Gemeente resources ({self.access.source})")

    def stop(self) -> None:
        self._stop.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def _parse(self, obj: dict[str, Any]) -> Gemeente | None:
        try:
            res = parse_document(obj, where=f"Gemeente {obj['metadata'].get('name')}")
        except ResourceError as exc:
            log.error("invalid Gemeente ignored", extra={"error": str(exc)})
            return None
        return res if isinstance(res, Gemeente) else None

    def _replace(self, items: dict[str, Gemeente]) -> None:
        with self._lock:
            changed = items != self._items
            self._items = items
        if changed and self.on_change is not None:
            self.on_change()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            items = dict(self._items)
        if kind == "DELETED":
            items.pop(name, None)
        else:
            parsed = self._parse(obj)
            if parsed is None:
                items.pop(name, None)
            else:
                items[name] = parsed
        self._replace(items)

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._run())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            loop.close()

    async def _run(self) -> None:
        configuration, renew = await self.access.configuration()
        try:
            async with ApiClient(configuration) as api_client:
                await self._list_and_watch(CustomObjectsApi(api_client))
        finally:
            if renew is not None:
                renew.cancel()

    async def _list_and_watch(self, api: CustomObjectsApi) -> None:
        delay = 0.5
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = await api.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )
                    items = {}
                    for obj in listing.get("items", []):
                        parsed = self._parse(obj)
                        if parsed is not None:
                            items[obj["metadata"]["name"]] = parsed
                    self._replace(items)
                    self._synced.set()
                    self.relists += 1
                    version = listing["metadata"]["resourceVersion"]
                watch = Watch()
                async with watch.stream(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                ) as stream:
                    async for event in stream:
                        kind = event.get("type")
                        obj = event.get("raw_object") or event.get("object") or {}
                        if kind == "ERROR":  # e.g. 410 Gone: the version is too old
                            version = None
                            break
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self._apply(kind, obj)
                        # every event, bookmarks included, moves the version on
                        version = watch.resource_version or version
                delay = 0.5
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                    continue
                log.warning(
                    "Gemeente watch interrupted; retrying",
                    extra={"error": f"{exc.status} {exc.reason}"},
                )
                version = None if exc.status in (401, 403) else version
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                log.warning("Gemeente watch interrupted; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
