"""The one apply primitive: make one object look like its desired state, and say what it did.

``apply(client, desired, cache=…)`` takes the current object from the cache of what kopf
watches (or, without one, reads it) and then

* leaves it alone when it already holds the desired state (``UNCHANGED``),
* otherwise server-side applies the desired state with the operator's field manager
  (``CREATED`` or ``PATCHED``); fields the operator stopped declaring are removed by the API
  server because this manager no longer owns them;
* with ``desired=None`` deletes it (``DELETED``, or ``UNCHANGED`` when it was already gone).

"Already holds the desired state" means: the hash of the desired object that the operator
stamped on it at the last apply matches, *and* every desired field is present with the
desired value (so changes made by someone else are put right, while fields the API server
defaults are not mistaken for drift).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from knooppunt_operator import kube
from knooppunt_operator.cache import Cache

APPLIED_HASH = "knooppunt.nl/applied-hash"


class ApplyResult(enum.Enum):
    CREATED = "created"
    PATCHED = "patched"
    UNCHANGED = "unchanged"
    DELETED = "deleted"

    @property
    def changed(self) -> bool:
        return self is not ApplyResult.UNCHANGED


@dataclass(frozen=True)
class ObjectRef:
    kind: kube.Kind
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return cls(kube.kind_of(obj), meta.get("namespace"), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind.kind}/{self.name}"


@dataclass(frozen=True)
class Applied:
    """What :func:`apply` did to one object, and the object as the server returned it."""

    ref: ObjectRef
    result: ApplyResult
    object: dict[str, Any] | None

    def __str__(self) -> str:
        return f"{self.result.value} {self.ref}"


class Client(Protocol):
    async def get(
        self, kind: kube.Kind, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...

    async def apply(
        self, kind: kube.Kind, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    async def delete(self, kind: kube.Kind, namespace: str | None, name: str) -> bool: ...


def desired_hash(desired: Mapping[str, Any]) -> str:
    """A stable hash of a desired object (without the hash annotation itself)."""
    body = json.loads(json.dumps(desired))
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    annotations.pop(APPLIED_HASH, None)
    if not annotations:
        meta.pop("annotations", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def contains(current: Any, desired: Any) -> bool:
    """Every field of ``desired`` is in ``current`` with the same value (lists item by item)."""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(
            key in current and contains(current[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d) for c, d in zip(current, desired, strict=True))
        )
    return bool(current == desired)


def stamped(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired object carrying its own hash as an annotation."""
    body: dict[str, Any] = json.loads(json.dumps(desired))
    meta = body.setdefault("metadata", {})
    meta.setdefault("annotations", {})[APPLIED_HASH] = desired_hash(desired)
    return body


def is_current(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    return annotations.get(APPLIED_HASH) == desired_hash(desired) and contains(current, desired)


async def apply(
    client: Client,
    desired: Mapping[str, Any] | None,
    *,
    ref: ObjectRef | None = None,
    cache: Cache | None = None,
) -> Applied:
    """Create, patch, delete or leave alone one object; ``desired=None`` means delete.

    With a ``cache`` that holds the kind, the current object is the cached one (no GET) and
    the server's answer goes back into the cache."""
    if desired is None and ref is None:
        raise ValueError("apply(None) needs ref= to know what to delete")
    target = ref or ObjectRef.of(desired or {})
    cached = cache is not None and cache.holds(target.kind)
    if cache is not None and cached:
        current = cache.get(target.kind, target.namespace, target.name)
    else:
        current = await client.get(target.kind, target.namespace, target.name)
    if desired is None:
        if current is None:
            return Applied(target, ApplyResult.UNCHANGED, None)
        await client.delete(target.kind, target.namespace, target.name)
        if cache is not None:
            cache.deleted(target.kind, target.namespace, target.name)
        return Applied(target, ApplyResult.DELETED, None)
    if current is not None and is_current(current, desired):
        return Applied(target, ApplyResult.UNCHANGED, current)
    result = await client.apply(target.kind, target.namespace, target.name, stamped(desired))
    if cache is not None:
        cache.wrote(result)
    return Applied(target, ApplyResult.CREATED if current is None else ApplyResult.PATCHED, result)
