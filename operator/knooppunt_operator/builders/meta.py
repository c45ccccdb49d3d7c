"""Names, labels and owner references shared by all builders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node_runtime.model.meta import API_VERSION, Resource

MANAGED_BY = "knooppunt-operator"
PART_OF = "knooppunt"

NODE_LABEL = "knooppunt.nl/knooppunt"
CONNECTOR_LABEL = "knooppunt.nl/connector"
REVISION_LABEL = "knooppunt.nl/revision"
GEMEENTE_LABEL = "knooppunt.nl/gemeente"
ACCESS_LABEL = "knooppunt.nl/access"

CONFIG_HASH = "knooppunt.nl/config-hash"
FORCE_DELETE = "knooppunt.nl/force-delete"


@dataclass(frozen=True)
class NodeNames:
    """Names of a node's children, derived from the Knooppunt's name."""

    node: str

    @property
    def service_account(self) -> str:
        return self.node

    @property
    def role(self) -> str:
        return f"{self.node}-runtime"

    @property
    def resources(self) -> str:
        return f"{self.node}-resources"

    @property
    def tls(self) -> str:
        return f"{self.node}-tls"

    @property
    def ca(self) -> str:
        return f"{self.node}-ca"

    @property
    def pseudonym(self) -> str:
        return f"{self.node}-pseudonym"

    @property
    def data(self) -> str:
        return f"{self.node}-data"

    @property
    def deployment(self) -> str:
        return self.node

    @property
    def service(self) -> str:
        return self.node


def client_tls_secret_name(gemeente: str) -> str:
    return f"{gemeente}-client-tls"


def revision_name(connector: str, revision: int) -> str:
    return f"{connector}-r{revision}"


def bundle_snapshot_name(connector: str, revision: int) -> str:
    return f"{connector}-bundle-r{revision}"


def shadow_bundle_snapshot_name(connector: str, revision: int) -> str:
    return f"{connector}-shadow-bundle-r{revision}"


def selector_labels(node: str) -> dict[str, str]:
    """Labels selecting a node's pods (immutable in the Deployment selector)."""
    return {"app.kubernetes.io/name": "knooppunt", "app.kubernetes.io/instance": node}


def node_labels(node: str, component: str = "runtime") -> dict[str, str]:
    return {
        **selector_labels(node),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        NODE_LABEL: node,
    }


def owner_reference(owner: Resource | Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference: the child is garbage-collected with its owner."""
    kind: Any
    name: Any
    uid: Any
    api_version: Any
    if isinstance(owner, Resource):
        kind, name, uid = owner.kind, owner.metadata.name, owner.metadata.uid
        api_version = owner.api_version
    else:
        meta = owner.get("metadata") or {}
        kind, name, uid = owner.get("kind"), meta.get("name"), meta.get("uid")
        api_version = owner.get("apiVersion", API_VERSION)
    if not uid:
        raise ValueError(f"{kind} {name} has no uid; read it from the API server first")
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(
    name: str,
    namespace: str | None,
    *,
    owner: Resource | Mapping[str, Any],
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    meta["ownerReferences"] = [owner_reference(owner)]
    return meta
