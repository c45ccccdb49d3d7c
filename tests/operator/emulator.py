"""kmock's KubernetesEmulator with the API-server behaviour the operator relies on.

kmock keeps objects as plain merged dicts. The operator's scenarios also need what a real
API server does (and what kmock's docs invite us to add by subclassing):

* ``metadata``: uid, resourceVersion, generation (bumped on spec changes), creationTimestamp,
  ``generateName``;
* server-side apply (``application/apply-patch+yaml``): create when missing, otherwise the
  applied configuration replaces what the (single) field manager owned;
* the status subresource: writes to the object ignore ``status``, writes to ``/status``
  change only ``status``;
* optimistic concurrency: a merge patch naming ``metadata.resourceVersion`` fails with 409
  when it is stale; a failing JSON-patch ``test`` gives 422;
* garbage collection through ownerReferences (background cascading deletion).

Every request of the operator (kopf's and its own client's) is recorded as (verb, group,
resource, namespace) for the RBAC coverage check.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import aiobus, dicts, enums, k8s, rendering
from knooppunt_operator.status import merge_diff

STATUS_SUBRESOURCE = {
    ("knooppunt.nl", "knooppunten"),
    ("knooppunt.nl", "sectorconnectors"),
    ("knooppunt.nl", "gemeenten"),
    ("apps", "deployments"),
}
NO_GENERATION = {
    ("", "configmaps"),
    ("", "secrets"),
    ("", "events"),
    ("coordination.k8s.io", "leases"),
    ("", "serviceaccounts"),
}

# (group, version, plural) → (kind, namespaced, subresources)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, tuple[str, ...]]] = {
    ("knooppunt.nl", "v1alpha1", "knooppunten"): ("Knooppunt", True, ("status",)),
    ("knooppunt.nl", "v1alpha1", "sectorconnectors"): ("SectorConnector", True, ("status",)),
    ("knooppunt.nl", "v1alpha1", "gemeenten"): ("Gemeente", True, ("status",)),
    ("apps", "v1", "deployments"): ("Deployment", True, ("status",)),
    ("apps", "v1", "controllerrevisions"): ("ControllerRevision", True, ()),
    ("", "v1", "configmaps"): ("ConfigMap", True, ()),
    ("", "v1", "secrets"): ("Secret", True, ()),
    ("", "v1", "services"): ("Service", True, ()),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True, ()),
    ("", "v1", "persistentvolumeclaims"): ("PersistentVolumeClaim", True, ()),
    ("", "v1", "events"): ("Event", True, ()),
    ("", "v1", "namespaces"): ("Namespace", False, ()),
    ("policy", "v1", "poddisruptionbudgets"): ("PodDisruptionBudget", True, ()),
    ("networking.k8s.io", "v1", "networkpolicies"): ("NetworkPolicy", True, ()),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", True, ()),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", True, ()),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True, ()),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): (
        "CustomResourceDefinition",
        False,
        (),
    ),
}
VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}

_SERVER_META = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "managedFields",
)


@attrs.mutable(weakref_slot=True)
class RecordingBus(aiobus.Bus[Any]):
    """A bus that also keeps its events, numbered like resourceVersions, for watch resumes."""

    owner: Any = None
    history: list[tuple[int, Any]] = attrs.field(factory=list)

    async def put(self, *items: Any) -> None:
        for item in items:
            seq = int(self.owner._bump()) if self.owner is not None else 0
            self.history.append((seq, item))
        await super().put(*items)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _verb(request: rendering.Request) -> str:
    action = request.action
    if action == enums.action.WATCH:
        return "watch"
    if action == enums.action.LIST:
        return "list"
    if action == enums.action.FETCH:
        return "get"
    if action == enums.action.CREATE:
        return "create"
    if action == enums.action.DELETE:
        return "delete"
    return "patch"


@attrs.define(kw_only=True)
class ApiEmulator(kmock.KubernetesEmulator):
    _seq: int = attrs.field(default=0, init=False)
    access: set[tuple[str, str, str, str | None]] = attrs.field(factory=set, init=False)
    writes: collections.Counter[tuple[str, str, str | None]] = attrs.field(
        factory=collections.Counter, init=False
    )
    requests: list[str] = attrs.field(factory=list, init=False)
    """The operator's own requests (not kopf's watches), as ``verb resource[/sub]``."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(lambda: RecordingBus(owner=self))
        for (group, version, plural), (kind, namespaced, subs) in RESOURCES.items():
            key = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=set(subs)
            )

    # ------------------------------------------------------------------------ watch

    async def _serve_list(self, request: rendering.Request) -> Any:
        result = await super()._serve_list(request)
        result["metadata"]["resourceVersion"] = str(self._seq)
        return result

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        """Watch from a resourceVersion like the API server: no event lost, none replayed."""
        yield b""
        assert request.resource is not None
        bus = self._buses[request.resource]
        since = request.params.get("resourceVersion", "")
        async with self._lock:
            marker = await bus.mark()
            if since.isdigit():
                events = [event for seq, event in bus.history if seq > int(since)]
            else:
                objs = self._KubernetesEmulator__get_objs(  # type: ignore[attr-defined]
                    request, strict=False
                )
                events = [{"type": "ADDED", "object": o.raw} for o in objs if not o.deleted]
        try:
            for event in events:
                if self._watched(request, event):
                    yield event
            async for event in bus.stream(since=marker):
                if self._watched(request, event):
                    yield event
        finally:
            await bus.unmark(marker)

    @staticmethod
    def _watched(request: rendering.Request, event: dict[str, Any]) -> bool:
        meta = (event.get("object") or {}).get("metadata") or {}
        return (request.namespace is None or meta.get("namespace") == request.namespace) and (
            request.name is None or meta.get("name") == request.name
        )

    # ----------------------------------------------------------------------- helpers

    def _key(self, request: rendering.Request, name: str | None = None) -> Any:
        return (request.resource, request.namespace, name or request.name)

    def _current(self, key: Any) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _bump(self) -> str:
        self._seq += 1
        return str(self._seq)

    @staticmethod
    def _gr(request: rendering.Request) -> tuple[str, str]:
        res = request.resource
        return (res.group or "", res.plural or "") if res is not None else ("", "")

    # ------------------------------------------------------------------------ handle

    async def _handle(self, request: rendering.Request) -> Any:
        # kmock matches a request by scanning every request it has seen so far; keep only the
        # recent ones so a long scenario (hundreds of gemeenten) stays linear.
        del self._requests[:-1]
        for payload in self._payloads:
            recorded = getattr(payload, "_requests", None)
            if isinstance(recorded, list):
                del recorded[:]
        if request.resource is None:
            return await super()._handle(request)
        group, plural = self._gr(request)
        sub = request.subresource
        agent = request.headers.get("User-Agent", "")
        if agent.startswith(("knooppunt-operator", "kopf")) and plural:  # not discovery
            self.access.add(
                (_verb(request), group, plural + (f"/{sub}" if sub else ""), request.namespace)
            )
            if request.action == enums.action.UPDATE:
                self.writes[(plural, request.name or "", sub)] += 1
            if agent.startswith("knooppunt-operator"):
                self.requests.append(f"{_verb(request)} {plural}" + (f"/{sub}" if sub else ""))
        if request.action == enums.action.CREATE:
            request = self._prepare_create(request)
        elif request.action == enums.action.UPDATE:
            request = self._prepare_update(request)
        deleting = request.action == enums.action.DELETE or (
            request.action == enums.action.UPDATE
            and ((self._current(self._key(request)) or {}).get("metadata") or {}).get(
                "deletionTimestamp"
            )
        )
        response = await super()._handle(request)
        if deleting:
            await self._collect_garbage()
        return response

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        key = self._key(request)  # a dictionary lookup instead of kmock's scan of all objects
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                return self._objects[key].raw
        raise k8s.KubernetesObjectNotFoundError()

    def _prepare_create(self, request: rendering.Request) -> rendering.Request:
        data = copy.deepcopy(request.data or {})
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        for key in _SERVER_META:
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._bump()
        meta["creationTimestamp"] = _now()
        if self._gr(request) not in NO_GENERATION:
            meta["generation"] = 1
        if self._gr(request) in STATUS_SUBRESOURCE:
            data.pop("status", None)
        return _replace(request, data=data)

    def _prepare_update(self, request: rendering.Request) -> rendering.Request:
        key = self._key(request)
        current = self._current(key)
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if current is None:
            if content_type == "application/apply-patch+yaml":
                return self._prepare_create(
                    _replace(request, action=enums.action.CREATE, method=enums.method.POST)
                )
            raise k8s.KubernetesObjectNotFoundError()
        data = request.data
        if content_type == "application/json-patch+json":
            try:
                result = jsonpatch.apply_patch(current, data, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise k8s.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        elif content_type == "application/apply-patch+yaml":
            result = self._applied(current, data or {})
        else:
            wanted = ((data or {}).get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
                raise k8s.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message="the object has been modified; please apply your changes to the "
                    "latest version and try again",
                )
            result = dicts.merge_patch_dict(current, data or {})
            result = copy.deepcopy(dict(result))
        result = self._subresource_rules(request, current, result)
        meta = result.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp", "generation", "name", "namespace"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        if (
            self._gr(request) not in NO_GENERATION
            and request.subresource is None
            and _spec_of(current) != _spec_of(result)
        ):
            meta["generation"] = int(current["metadata"].get("generation") or 0) + 1
        if result == current:
            return _replace(request, data={})
        meta["resourceVersion"] = self._bump()
        return _replace(request, data=merge_diff(current, result))

    @staticmethod
    def _applied(current: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply by the only field manager: its configuration replaces its fields."""
        result = copy.deepcopy(applied)
        meta = result.setdefault("metadata", {})
        for field in _SERVER_META:
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
        for field in ("finalizers",):
            if field in current["metadata"] and field not in meta:
                meta[field] = current["metadata"][field]
        if "status" in current:
            result["status"] = current["status"]
        return result

    def _subresource_rules(
        self, request: rendering.Request, current: dict[str, Any], result: dict[str, Any]
    ) -> dict[str, Any]:
        if self._gr(request) not in STATUS_SUBRESOURCE:
            return result
        if request.subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in result:
                merged["status"] = result["status"]
            else:
                merged.pop("status", None)
            return merged
        if "status" in current:
            result["status"] = current["status"]
        else:
            result.pop("status", None)
        return result

    async def _collect_garbage(self) -> None:
        """Delete (or mark for deletion) objects whose owners are all gone."""
        while True:
            async with self._lock:
                live = {
                    (obj.raw.get("metadata") or {}).get("uid")
                    for obj in self._objects.values()
                    if not obj.deleted
                }
                orphans = []
                for key, obj in self._objects.items():
                    if obj.deleted:
                        continue
                    owners = (obj.raw.get("metadata") or {}).get("ownerReferences") or []
                    if owners and not any(o.get("uid") in live for o in owners):
                        orphans.append((key, obj))
                if not orphans:
                    return
                for (resource, _ns, _name), obj in orphans:
                    meta = obj.raw.get("metadata") or {}
                    if meta.get("finalizers"):
                        if not meta.get("deletionTimestamp"):
                            obj.patch(
                                {
                                    "metadata": {
                                        "deletionTimestamp": _now(),
                                        "resourceVersion": self._bump(),
                                    }
                                }
                            )
                            await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                        continue
                    raw = obj.raw
                    obj.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
                if all(
                    (o.raw.get("metadata") or {}).get("finalizers")
                    for _k, o in orphans
                    if not o.deleted
                ):
                    return


def _replace(request: rendering.Request, **changes: Any) -> rendering.Request:
    """Change the parsed request in place: kmock matches reactions by request identity."""
    for name, value in changes.items():
        object.__setattr__(request, name, value)
    return request


def _spec_of(obj: dict[str, Any]) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
