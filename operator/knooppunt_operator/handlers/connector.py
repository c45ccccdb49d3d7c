"""SectorConnector → validated, immutable revisions that nodes pin.

A connector revision is recorded only when it validates (the same check the admission
webhook makes). Nodes that follow the connector's latest revision are reconciled when a new
one is recorded; pinned nodes keep what they have until their pin is promoted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from knooppunt_operator import kube, metrics, status, webhook
from knooppunt_operator.apply import ObjectRef
from knooppunt_operator.builders import meta, revisions
from knooppunt_operator.handlers import knooppunt, pki
from knooppunt_operator.handlers.context import KNOOPPUNT, Context
from knooppunt_operator.runtime_client import PendingUnknown


async def bundle_config_map(
    ctx: Context, namespace: str, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    name = (((body.get("spec") or {}).get("bundle")) or {}).get("configMap")
    if not name:
        return None
    return await ctx.client.get(kube.CONFIG_MAP, namespace, name)


async def shadow_bundle_config_map(
    ctx: Context, namespace: str, body: Mapping[str, Any]
) -> dict[str, Any] | None:
    name = revisions.shadow_bundle_config_map_name(body)
    if not name:
        return None
    return await ctx.client.get(kube.CONFIG_MAP, namespace, name)


async def validate(
    ctx: Context, namespace: str, body: Mapping[str, Any], *, old: Mapping[str, Any] | None = None
) -> list[str]:
    """The admission check, with the bundle ConfigMaps read from the API server."""
    config_map = await bundle_config_map(ctx, namespace, body)
    shadow_config_map = await shadow_bundle_config_map(ctx, namespace, body)
    problems = await asyncio.to_thread(
        webhook.validate_connector,
        body,
        old=old,
        config_map=config_map,
        shadow_config_map=shadow_config_map,
    )
    if problems:
        name = str((body.get("metadata") or {}).get("name"))
        metrics.REJECTED.labels(namespace, name).inc()
    return problems


def _nodes_using(knooppunten: list[dict[str, Any]], connector: str) -> list[dict[str, Any]]:
    return [
        kp
        for kp in knooppunten
        if any(c.get("name") == connector for c in (kp.get("spec") or {}).get("connectors") or [])
    ]


def _revisions_in_use(nodes: list[dict[str, Any]], connector: str) -> set[int]:
    """Revisions a node pins, serves, or may roll back to: never pruned."""
    used: set[int] = set()
    for kp in nodes:
        for pin in (kp.get("spec") or {}).get("connectors") or []:
            if pin.get("name") == connector and pin.get("revision"):
                used.add(int(pin["revision"]))
        node_status = kp.get("status") or {}
        for record in ("rollout", "lastGood", "failedRollout"):
            rev = ((node_status.get(record) or {}).get("revisions") or {}).get(connector)
            if rev is not None:
                used.add(int(rev))
    return used


async def reconcile(
    ctx: Context, namespace: str, name: str, body: Mapping[str, Any] | None = None
) -> None:
    """Validate and record the connector's revision (``body``: as just read, if at hand)."""
    if body is None:
        body = await ctx.read(kube.SECTOR_CONNECTOR, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    spec = body.get("spec") or {}
    revision = int(spec.get("revision", 1))
    config_map = await bundle_config_map(ctx, namespace, body)
    shadow_config_map = await shadow_bundle_config_map(ctx, namespace, body)
    problems = await asyncio.to_thread(
        webhook.validate_connector,
        body,
        config_map=config_map,
        shadow_config_map=shadow_config_map,
    )
    recorded = await knooppunt.recorded_revisions(ctx, namespace, name)
    reason = "Invalid"
    new_revision = False
    if not problems:
        existing = recorded.get(revision)
        if existing is not None and not revisions.same_content(existing, body):
            reason = "RevisionConflict"
            problems.append(
                f"revision {revision} was recorded earlier with different content; raise "
                "spec.revision"
            )
        elif existing is None:
            objects: list[Mapping[str, Any] | None] = []
            snapshot_name: str | None = None
            keys: tuple[str, ...] = ()
            if config_map is not None:
                snapshot = revisions.bundle_snapshot(body, config_map)
                snapshot_name = snapshot["metadata"]["name"]
                keys = revisions.bundle_keys_of(config_map)
                objects.append(snapshot)
            shadow_name: str | None = None
            shadow_keys: tuple[str, ...] = ()
            if shadow_config_map is not None:  # the shadow's bundle travels the same way
                shadow_snapshot = revisions.bundle_snapshot(body, shadow_config_map, shadow=True)
                shadow_name = shadow_snapshot["metadata"]["name"]
                shadow_keys = revisions.bundle_keys_of(shadow_config_map)
                objects.append(shadow_snapshot)
            record = revisions.controller_revision(
                body,
                bundle_config_map=snapshot_name,
                bundle_keys=keys,
                shadow_bundle_config_map=shadow_name,
                shadow_bundle_keys=shadow_keys,
            )
            objects.append(record)
            await ctx.apply_all(body, objects)
            recorded[revision] = revisions.parse_controller_revision(record)
            new_revision = True
            await ctx.events.record(
                body,
                reason="RevisionRecorded",
                message=f"revision {revision} ({spec.get('standard')} "
                f"{spec.get('standardVersion')}) validated and recorded",
            )
    else:
        metrics.REJECTED.labels(namespace, name).inc()
        await ctx.events.record(
            body, reason="Rejected", type_="Warning", message="; ".join(problems)
        )

    nodes = _nodes_using(await ctx.read_list(kube.KNOOPPUNT, namespace), name)
    keep = _revisions_in_use(nodes, name) | set(sorted(recorded)[-ctx.config.revision_history :])
    for old in sorted(set(recorded) - keep):
        await ctx.apply_all(
            body,
            [
                ObjectRef(kube.CONTROLLER_REVISION, namespace, meta.revision_name(name, old)),
                ObjectRef(kube.CONFIG_MAP, namespace, meta.bundle_snapshot_name(name, old)),
                ObjectRef(kube.CONFIG_MAP, namespace, meta.shadow_bundle_snapshot_name(name, old)),
            ],
        )
        del recorded[old]

    ready = (
        status.Observed(
            status.READY, "True", "Recorded", f"revision {revision} is valid and recorded"
        )
        if not problems
        else status.Observed(status.READY, "False", reason, "; ".join(problems))
    )
    current = dict(body.get("status") or {})
    current["revision"] = max(recorded) if recorded else None
    current["revisions"] = sorted(recorded)
    generation = body["metadata"].get("generation")
    current["observedGeneration"] = generation
    current["conditions"] = status.merge_conditions(
        (body.get("status") or {}).get("conditions") or [],
        [ready],
        generation=generation,
        now=status.now_rfc3339(ctx.clock()),
    )
    patch = status.status_patch(body.get("status"), current)
    if patch is not None:
        await ctx.patch_status(kube.SECTOR_CONNECTOR, namespace, name, patch)
    if new_revision:
        for kp in nodes:
            if ctx.wake is not None:
                ctx.wake(KNOOPPUNT, namespace, kp["metadata"]["name"])
            else:
                await knooppunt.reconcile(ctx, namespace, kp["metadata"]["name"])


async def delete(ctx: Context, namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """Let the connector go only when no node holds undelivered messages for it (or forced)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if annotations.get(meta.FORCE_DELETE) == "true":
        await ctx.events.record(
            body,
            reason="ForceDeleted",
            type_="Warning",
            message="deleted without waiting for undelivered messages",
        )
        return
    nodes = _nodes_using(await ctx.read_list(kube.KNOOPPUNT, namespace), name)
    total = 0
    for kp in nodes:
        endpoint = await pki.node_endpoint(ctx, namespace, kp["metadata"]["name"])
        if endpoint is None:
            continue
        try:
            total += await ctx.pending.pending(endpoint, connector=name)
        except PendingUnknown as exc:
            raise kopf.TemporaryError(
                f"cannot tell whether messages are undelivered ({exc}); annotate "
                f"{meta.FORCE_DELETE}=true to delete anyway",
                delay=ctx.config.pending_retry_seconds,
            ) from exc
    if total:
        message = (
            f"{total} undelivered messages on connector {name}; deletion waits until they are "
            f"delivered (annotate {meta.FORCE_DELETE}=true to drop them)"
        )
        await ctx.events.record(body, reason="DeletionBlocked", type_="Warning", message=message)
        raise kopf.TemporaryError(message, delay=ctx.config.pending_retry_seconds)
