"""What the reconcilers read: objects as kopf's watches last delivered them, and what this
operator wrote since.

kopf watches the three resources and every kind of object the operator makes (the latter
filtered on the server by the label ``app.kubernetes.io/managed-by=knooppunt-operator``) and
keeps each in a kopf index (:func:`index_body`), so a reconcile reads from memory, never with
a GET. kopf holds back every event handler until all indexes are filled by their first list,
so no work is queued before the cache has everything (a CA or pseudonym key that the cache
does not show is not "missing" because the list is still under way).

A watch event arrives a moment after the write that caused it. So the server's answer to
every write of the operator is kept too (:meth:`Cache.wrote`), and a read returns the newer of
the two by ``resourceVersion``; the written copy is dropped once the watch has caught up (or
shows another object of that name, or after ``WRITTEN_TTL`` seconds: a watch is that late only
when something is wrong, and the written copy must not hide a deletion). A reconcile that
follows another therefore sees its predecessor's writes and does not write the same thing
twice.

Objects a user names and the operator does not make (a provided TLS Secret or gemeente
certificate, a connector's bundle ConfigMap) carry no such label; they are read with a GET
when needed. Watching them would mean watching every Secret and ConfigMap.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from knooppunt_operator import kube
from knooppunt_operator.builders import meta

MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={meta.MANAGED_BY}"

Key = tuple[str, str]  # namespace, name
WRITTEN_TTL = 60.0


@dataclass(frozen=True)
class Watched:
    kind: kube.Kind
    managed_only: bool

    @property
    def index_id(self) -> str:
        return f"cache_{self.kind.plural}_{(self.kind.group or 'core').replace('.', '_')}"


WATCHED: tuple[Watched, ...] = (
    Watched(kube.KNOOPPUNT, managed_only=False),
    Watched(kube.SECTOR_CONNECTOR, managed_only=False),
    Watched(kube.GEMEENTE, managed_only=False),
    *(
        Watched(kind, managed_only=True)
        for kind in (
            kube.DEPLOYMENT,
            kube.SECRET,
            kube.CONFIG_MAP,
            kube.CONTROLLER_REVISION,
            kube.SERVICE_ACCOUNT,
            kube.SERVICE,
            kube.PERSISTENT_VOLUME_CLAIM,
            kube.POD_DISRUPTION_BUDGET,
            kube.NETWORK_POLICY,
            kube.ROLE,
            kube.ROLE_BINDING,
        )
    ),
)
BY_KIND = {w.kind: w for w in WATCHED}


def index_body(body: Mapping[str, Any]) -> dict[Key, dict[str, Any]]:
    """The kopf index function: the object itself, by namespace and name."""
    metadata = body.get("metadata") or {}
    return {(metadata.get("namespace") or "", metadata["name"]): copy.deepcopy(dict(body))}


def _version(obj: Mapping[str, Any] | None) -> int | None:
    value = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _uid(obj: Mapping[str, Any] | None) -> Any:
    return ((obj or {}).get("metadata") or {}).get("uid")


def _labels_match(obj: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in (labels or {}).items())


@dataclass
class _Written:
    obj: dict[str, Any] | None  # None: deleted by the operator
    uid: Any
    at: float


@dataclass
class Cache:
    """Reads for the reconcilers (copies: a reconcile may change what it reads)."""

    indices: dict[kube.Kind, Mapping[Key, Any]] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _written: dict[tuple[kube.Kind, str, str], _Written] = field(default_factory=dict)

    def attach(self, kind: kube.Kind, index: Mapping[Key, Any]) -> None:
        self.indices[kind] = index

    def holds(self, kind: kube.Kind) -> bool:
        return kind in self.indices

    def _watched(self, kind: kube.Kind, namespace: str, name: str) -> dict[str, Any] | None:
        store = self.indices[kind].get((namespace, name))
        if not store:
            return None
        for value in store:
            return dict(value)
        return None

    def _resolve(self, kind: kube.Kind, namespace: str, name: str) -> dict[str, Any] | None:
        watched = self._watched(kind, namespace, name)
        key = (kind, namespace, name)
        written = self._written.get(key)
        if written is None:
            return watched
        if self.clock() - written.at > WRITTEN_TTL:
            del self._written[key]
            return watched
        if written.obj is None:  # deleted: hidden until the watch says so (or it is new)
            if watched is None or _uid(watched) != written.uid:
                del self._written[key]
                return watched
            return None
        mine, theirs = _version(written.obj), _version(watched)
        if watched is not None and (
            _uid(watched) != written.uid
            or (mine is not None and theirs is not None and theirs >= mine)
            or (mine is None and theirs is None)
        ):
            del self._written[key]  # the watch caught up (or shows a newer object)
            return watched
        return written.obj

    def get(self, kind: kube.Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self._resolve(kind, namespace or "", name)
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, kind: kube.Kind, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """The cached object itself, not a copy: for readers that change nothing."""
        return self._resolve(kind, namespace or "", name)

    def keys(self, kind: kube.Kind, namespace: str | None) -> Iterator[Key]:
        ns = namespace or ""
        seen = set()
        for key in list(self.indices[kind].keys()):
            if key[0] == ns:
                seen.add(key)
                yield key
        for k, ns_, name in list(self._written):
            if k == kind and ns_ == ns and (ns_, name) not in seen:
                yield (ns_, name)

    def list(
        self,
        kind: kube.Kind,
        namespace: str | None,
        *,
        labels: Mapping[str, str] | None = None,
        copies: bool = True,
    ) -> list[dict[str, Any]]:
        """The objects of a namespace (as copies, unless the caller changes nothing)."""
        out = []
        for ns, name in self.keys(kind, namespace):
            obj = self._resolve(kind, ns, name)
            if obj is not None and _labels_match(obj, labels):
                out.append(copy.deepcopy(obj) if copies else obj)
        return sorted(out, key=lambda o: str(o["metadata"]["name"]))

    def wrote(self, obj: Mapping[str, Any] | None) -> None:
        """The API server's answer to a write of the operator (ignored when ``None``)."""
        if not obj or not isinstance(obj.get("metadata"), Mapping):
            return
        kind = kube.KINDS.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if kind is None or kind not in self.indices:
            return
        metadata = obj["metadata"]
        key = (kind, metadata.get("namespace") or "", metadata["name"])
        self._written[key] = _Written(copy.deepcopy(dict(obj)), metadata.get("uid"), self.clock())
        self._resolve(*key)  # drops it at once if the watch is already as new

    def deleted(self, kind: kube.Kind, namespace: str | None, name: str) -> None:
        if kind not in self.indices:
            return
        current = self._watched(kind, namespace or "", name)
        if current is None:
            self._written.pop((kind, namespace or "", name), None)
            return
        self._written[(kind, namespace or "", name)] = _Written(None, _uid(current), self.clock())

    def forget(self, kind: kube.Kind, namespace: str | None, name: str) -> None:
        """The watch says it is gone: drop what the operator wrote of it."""
        self._written.pop((kind, namespace or "", name), None)

    @property
    def pending(self) -> int:
        """Writes the watches have not delivered yet."""
        return len(self._written)
