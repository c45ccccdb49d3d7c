"""Status of the three resources: typed models, conditions, and "patch only what changed".

The status models are part of the typed API (``crdgen`` turns them into the status schema of
the CRDs). Conditions follow ``metav1.Condition``: type, status, reason, message,
observedGeneration, lastTransitionTime. A condition's transition time only moves when its
status flips, and :func:`status_patch` returns ``None`` when nothing differs, so the operator
writes status only when it changes.

The rollout state of a node is read from its Deployment the way ``kubectl rollout status``
does (:func:`rollout_state`), so the conditions reflect what Kubernetes actually did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
DATABASE_SECRET_READY = "DatabaseSecretReady"  # noqa: S105 - a condition type

ConditionStatus = Literal["True", "False", "Unknown"]

REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class StatusModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    """The observed state of one aspect of the resource (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        description=(
            "Condition type: Ready, Progressing, Degraded; a Knooppunt on PostgreSQL also has"
            " DatabaseSecretReady."
        ),
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=REASON_PATTERN,
        description="Machine-readable CamelCase reason of the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        description="The .metadata.generation the condition was computed from.",
    )
    last_transition_time: str = Field(
        alias="lastTransitionTime",
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )


class ServedConnector(StatusModel):
    """A connector as served by the node."""

    name: str = Field(description="SectorConnector name.")
    revision: int | None = Field(
        default=None, description="Connector revision in the node's configuration."
    )
    desired_revision: int | None = Field(
        default=None,
        alias="desiredRevision",
        description="The pinned revision, or the connector's latest recorded revision.",
    )
    standard_version: str | None = Field(
        default=None, alias="standardVersion", description="Standard version of that revision."
    )


class RolloutRecord(StatusModel):
    """The pod template the operator last rolled out and which connector revisions it holds."""

    template_hash: str = Field(alias="templateHash", description="Hash of the pod template.")
    revisions: dict[str, int] = Field(
        default_factory=dict, description="Connector name → revision in this template."
    )
    started_at: str | None = Field(
        default=None, alias="startedAt", description="When this template was first applied."
    )
    generation: int | None = Field(
        default=None, description="Knooppunt generation that produced the template."
    )
    reason: str | None = Field(default=None, description="Why a rollout was rolled back.")


class KnooppuntStatus(StatusModel):
    """Observed state of a node."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int | None = Field(default=None, description="Desired runtime replicas.")
    ready_replicas: int | None = Field(default=None, alias="readyReplicas")
    updated_replicas: int | None = Field(default=None, alias="updatedReplicas")
    available_replicas: int | None = Field(default=None, alias="availableReplicas")
    version: str | None = Field(default=None, description="Runtime image version (tag).")
    gemeenten: int | None = Field(
        default=None, description="Number of gemeenten subscribed to the node's connectors."
    )
    connectors: list[ServedConnector] = Field(default_factory=list)
    connector_summary: str | None = Field(
        default=None, alias="connectorSummary", description="e.g. iwmo-2-1@r2 (printer column)."
    )
    rollout: RolloutRecord | None = Field(
        default=None, description="The pod template currently rolled out."
    )
    last_good: RolloutRecord | None = Field(
        default=None,
        alias="lastGood",
        description="The last pod template that became ready; rollbacks return to its revisions.",
    )
    failed_rollout: RolloutRecord | None = Field(
        default=None,
        alias="failedRollout",
        description="Connector revisions that did not become ready; held back until the spec "
        "changes or the connector gets a newer revision.",
    )
    pseudonym_key_created: bool | None = Field(
        default=None,
        alias="pseudonymKeyCreated",
        description="The pseudonym key Secret was created once; it is never re-created.",
    )


class RetourcodeAt(StatusModel):
    code: str = Field(max_length=64)
    path: str = Field(max_length=1024, description="Element path (positions, never values).")


class ShadowExample(StatusModel):
    """One kind of difference, in paths and codes: never a value from a message."""

    message_type: str = Field(alias="messageType", max_length=64)
    kind: Literal["would-be-rejected", "would-be-accepted", "other-retourcodes", "different-fields"]
    retourcodes: list[RetourcodeAt] = Field(
        default_factory=list, max_length=64, description="The shadow release's retourcodes."
    )
    live_retourcodes: list[RetourcodeAt] = Field(
        default_factory=list, max_length=64, alias="liveRetourcodes"
    )
    missing_fields: list[Annotated[str, StringConstraints(max_length=512)]] = Field(
        default_factory=list, max_length=64, alias="missingFields"
    )
    added_fields: list[Annotated[str, StringConstraints(max_length=512)]] = Field(
        default_factory=list, max_length=64, alias="addedFields"
    )
    changed_fields: list[Annotated[str, StringConstraints(max_length=512)]] = Field(
        default_factory=list, max_length=64, alias="changedFields"
    )


class ShadowNodeStatus(StatusModel):
    """What the shadow release would have done to one node's live traffic."""

    standard_version: str = Field(alias="standardVersion", max_length=64)
    messages: int = Field(ge=0, description="Live messages also evaluated by the shadow.")
    differences: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Message type → kind of difference → messages."
    )
    examples: list[ShadowExample] = Field(default_factory=list, max_length=10)
    error: str | None = Field(
        default=None, max_length=4096, description="Why the shadow release cannot be compiled."
    )
    updated_at: str = Field(alias="updatedAt", json_schema_extra={"format": "date-time"})


class SectorConnectorStatus(StatusModel):
    """Observed state of a connector: validation and recorded revisions."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    revision: int | None = Field(
        default=None, description="Latest revision recorded as a ControllerRevision."
    )
    revisions: list[int] = Field(
        default_factory=list, description="Recorded revisions, oldest first (bounded history)."
    )
    shadow: dict[str, ShadowNodeStatus] = Field(
        default_factory=dict,
        description="Shadow validation of the next release, per node serving the connector "
        "(written by the nodes).",
    )


class CertificateStatus(StatusModel):
    secret: str = Field(description="Secret holding the gemeente's client certificate.")
    provided: bool = Field(
        default=False, description="True for a provided (e.g. PKIoverheid) certificate."
    )
    issuer: str | None = Field(default=None, description="The Knooppunt whose CA issued it.")
    serial_number: str | None = Field(
        default=None, alias="serialNumber", description="Certificate serial number (hex)."
    )
    not_after: str | None = Field(default=None, alias="notAfter")


class GemeenteStatus(StatusModel):
    """Observed state of a gemeente: its certificate and the nodes serving it."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list, description="Knooppunten serving it.")
    connector_summary: str | None = Field(default=None, alias="connectorSummary")
    certificate: CertificateStatus | None = None


# --------------------------------------------------------------------------------- conditions


def now_rfc3339(clock: dt.datetime | None = None) -> str:
    moment = clock or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observed:
    """A condition as computed now (without transition time)."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    existing: Sequence[Mapping[str, Any]],
    observed: Iterable[Observed],
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """New condition list: transition time kept unless the status flipped.

    Conditions of other types (set by someone else) are kept as they are.
    """
    by_type = {c.get("type"): c for c in existing}
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for obs in observed:
        seen.add(obs.type)
        old = by_type.get(obs.type)
        flipped = old is None or old.get("status") != obs.status
        result.append(
            {
                "type": obs.type,
                "status": obs.status,
                "reason": obs.reason,
                "message": obs.message,
                "observedGeneration": generation,
                "lastTransitionTime": now
                if flipped or old is None
                else old.get("lastTransitionTime", now),
            }
        )
    result.extend(dict(c) for c in existing if c.get("type") not in seen)
    return result


def find_condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_true(status: Mapping[str, Any] | None, type_: str) -> bool:
    cond = find_condition(status, type_)
    return cond is not None and cond.get("status") == "True"


def merge_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new`` (``None`` removes a key)."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is _MISSING:
            patch[key] = value
        elif isinstance(before, Mapping) and isinstance(value, Mapping):
            sub = merge_diff(before, value)
            if sub:
                patch[key] = sub
        elif before != value:
            patch[key] = value
    return patch


_MISSING: Any = object()


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch for ``.status``, or ``None`` when nothing changed."""
    diff = merge_diff(dict(old or {}), _drop_none(new))
    return {"status": diff} if diff else None


def _drop_none(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        out[key] = _drop_none(item) if isinstance(item, Mapping) else item
    return out


# ------------------------------------------------------------------------------ rollout state


@dataclass(frozen=True)
class RolloutState:
    """What the Deployment controller reports about the current pod template."""

    exists: bool
    complete: bool
    desired: int
    updated: int
    ready: int
    available: int
    total: int
    deadline_exceeded: bool
    observed: bool
    message: str

    @property
    def serving(self) -> bool:
        return self.available > 0


def rollout_state(deployment: Mapping[str, Any] | None) -> RolloutState:
    """Read a Deployment's rollout like ``kubectl rollout status`` does."""
    if deployment is None:
        return RolloutState(False, False, 0, 0, 0, 0, 0, False, False, "Deployment not found")
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    if not observed:
        message = "waiting for the Deployment controller to observe the new template"
    elif updated < desired:
        message = f"{updated} of {desired} replicas updated"
    elif total > updated:
        message = f"{total - updated} old replicas pending termination"
    elif available < updated:
        message = f"{available} of {updated} updated replicas available"
    else:
        message = f"{available} of {desired} replicas available"
    complete = observed and updated >= desired and total <= updated and available >= desired
    return RolloutState(
        True, complete, desired, updated, ready, available, total, exceeded, observed, message
    )
