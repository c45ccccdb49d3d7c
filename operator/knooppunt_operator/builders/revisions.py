"""Connector revisions: each validated revision of a SectorConnector, kept immutable.

A revision is recorded as an ``apps/v1`` ControllerRevision ``<connector>-r<N>`` (the same
mechanism StatefulSets use for their history) holding the connector resource exactly as it
was at revision N. A connector whose bundle comes from a ConfigMap also gets an immutable
copy of that ConfigMap, ``<connector>-bundle-r<N>``, so editing the source ConfigMap never
changes what a running node serves: nodes pin revisions, and promotion is explicit. A shadow
release (``spec.shadow``) whose bundle comes from a ConfigMap travels the same way, as
``<connector>-shadow-bundle-r<N>``: the shadow is part of the revision.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from knooppunt_operator.builders import meta

KEY_SEPARATOR = "__"
"""ConfigMap keys cannot contain '/': ``retour__wmo306.xsl`` is the file ``retour/wmo306.xsl``."""


@dataclass(frozen=True)
class ConnectorRevision:
    """One recorded revision of a connector, as a node serves it."""

    name: str
    revision: int
    document: dict[str, Any] = field(compare=False)
    bundle_config_map: str | None = None
    bundle_keys: tuple[str, ...] = ()
    shadow_bundle_config_map: str | None = None
    shadow_bundle_keys: tuple[str, ...] = ()

    @property
    def standard_version(self) -> str | None:
        spec = self.document.get("spec") or {}
        version = spec.get("standardVersion")
        return str(version) if version is not None else None


def bundle_path(key: str) -> str:
    """Where a bundle ConfigMap key lands inside the connector's bundle directory."""
    return key.replace(KEY_SEPARATOR, "/")


def bundle_key_problem(key: str) -> str | None:
    parts = bundle_path(key).split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"bundle key {key!r} does not map to a path inside the bundle"
    return None


def connector_document(body: Mapping[str, Any]) -> dict[str, Any]:
    """The SectorConnector resource as the runtime reads it: no status, no server fields."""
    metadata = body.get("metadata") or {}
    doc_meta: dict[str, Any] = {"name": metadata["name"]}
    if metadata.get("labels"):
        doc_meta["labels"] = dict(metadata["labels"])
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": doc_meta,
        "spec": copy.deepcopy(dict(body["spec"])),
    }


def shadow_bundle_config_map_name(connector: Mapping[str, Any]) -> str | None:
    """The source ConfigMap of the shadow release's bundle, if it comes from one."""
    shadow = (connector.get("spec") or {}).get("shadow") or {}
    name = (shadow.get("bundle") or {}).get("configMap")
    return str(name) if name else None


def controller_revision(
    connector: Mapping[str, Any],
    *,
    bundle_config_map: str | None = None,
    bundle_keys: tuple[str, ...] = (),
    shadow_bundle_config_map: str | None = None,
    shadow_bundle_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The ControllerRevision recording the connector's current revision."""
    cmeta = connector["metadata"]
    revision = int((connector.get("spec") or {}).get("revision", 1))
    data: dict[str, Any] = {"connector": connector_document(connector)}
    if bundle_config_map is not None:
        data["bundle"] = {"configMap": bundle_config_map, "keys": list(bundle_keys)}
    if shadow_bundle_config_map is not None:
        data["shadowBundle"] = {
            "configMap": shadow_bundle_config_map,
            "keys": list(shadow_bundle_keys),
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta.object_meta(
            meta.revision_name(cmeta["name"], revision),
            cmeta.get("namespace"),
            owner=connector,
            labels={
                "app.kubernetes.io/part-of": meta.PART_OF,
                "app.kubernetes.io/managed-by": meta.MANAGED_BY,
                meta.CONNECTOR_LABEL: cmeta["name"],
                meta.REVISION_LABEL: str(revision),
            },
        ),
        "revision": revision,
        "data": data,
    }


def bundle_snapshot(
    connector: Mapping[str, Any], source: Mapping[str, Any], *, shadow: bool = False
) -> dict[str, Any]:
    """An immutable copy of the connector's bundle ConfigMap (or, with ``shadow``, of its
    shadow release's bundle ConfigMap) for its current revision."""
    cmeta = connector["metadata"]
    revision = int((connector.get("spec") or {}).get("revision", 1))
    name = (
        meta.shadow_bundle_snapshot_name(cmeta["name"], revision)
        if shadow
        else meta.bundle_snapshot_name(cmeta["name"], revision)
    )
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta.object_meta(
            name,
            cmeta.get("namespace"),
            owner=connector,
            labels={
                "app.kubernetes.io/part-of": meta.PART_OF,
                "app.kubernetes.io/managed-by": meta.MANAGED_BY,
                meta.CONNECTOR_LABEL: cmeta["name"],
                meta.REVISION_LABEL: str(revision),
            },
        ),
        "immutable": True,
        "data": dict(source.get("data") or {}),
    }
    if source.get("binaryData"):
        body["binaryData"] = dict(source["binaryData"])
    return body


def bundle_keys_of(config_map: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted({*(config_map.get("data") or {}), *(config_map.get("binaryData") or {})}))


def parse_controller_revision(obj: Mapping[str, Any]) -> ConnectorRevision:
    data = obj.get("data") or {}
    document = dict(data["connector"])
    bundle = data.get("bundle") or {}
    shadow_bundle = data.get("shadowBundle") or {}
    return ConnectorRevision(
        name=document["metadata"]["name"],
        revision=int(obj["revision"]),
        document=document,
        bundle_config_map=bundle.get("configMap"),
        bundle_keys=tuple(bundle.get("keys") or ()),
        shadow_bundle_config_map=shadow_bundle.get("configMap"),
        shadow_bundle_keys=tuple(shadow_bundle.get("keys") or ()),
    )


def same_content(recorded: ConnectorRevision, connector: Mapping[str, Any]) -> bool:
    """Whether the recorded revision holds exactly the connector's current spec."""
    return bool(recorded.document.get("spec") == connector.get("spec"))
