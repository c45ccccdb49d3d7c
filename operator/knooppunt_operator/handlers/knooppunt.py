"""Knooppunt → a running, secured node.

:func:`reconcile` chains the steps: service account and RBAC → CA, TLS and pseudonym
Secrets → connector revisions → resources ConfigMap → Deployment → Service, disruption
budget, network policy → status. :func:`observe` reads the Deployment's rollout and turns it
into the Ready / Progressing / Degraded conditions; when a rollout does not become ready in
time it records the failure and the next reconcile serves the last good connector revisions.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from knooppunt_operator import kube, metrics, status, webhook
from knooppunt_operator.builders import meta, node
from knooppunt_operator.builders import secrets as secret_builders
from knooppunt_operator.builders.revisions import ConnectorRevision, parse_controller_revision
from knooppunt_operator.handlers import pki
from knooppunt_operator.handlers.context import GEMEENTE, Context, Key
from node_runtime.model.knooppunt import Knooppunt

GemeenteCounter = Callable[[frozenset[str]], int]

TEMPLATE_HASH = "knooppunt.nl/template-hash"


def _key(body: Mapping[str, Any]) -> Key:
    metadata = body["metadata"]
    return (metadata.get("namespace") or "default", metadata["name"])


def _generation(body: Mapping[str, Any]) -> int | None:
    value = (body.get("metadata") or {}).get("generation")
    return int(value) if value is not None else None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------- connectors


@dataclass
class Resolution:
    """Which revision of each connector the node serves, and why not another one."""

    serving: list[ConnectorRevision] = field(default_factory=list)
    desired: dict[str, int] = field(default_factory=dict)
    held_back: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    complete: bool = True


def failed_applies(
    name: str,
    want: int,
    failed: Mapping[str, Any] | None,
    last_good: Mapping[str, Any] | None,
    generation: int | None,
) -> int | None:
    """The last good revision to serve instead of ``want``, if ``want`` failed to roll out."""
    if not failed or not last_good or failed.get("generation") != generation:
        return None
    if (failed.get("revisions") or {}).get(name) != want:
        return None
    good = (last_good.get("revisions") or {}).get(name)
    return int(good) if good is not None and good != want else None


async def recorded_revisions(
    ctx: Context, namespace: str, connector: str
) -> dict[int, ConnectorRevision]:
    revisions: dict[int, ConnectorRevision] = {}
    for obj in await ctx.read_list(
        kube.CONTROLLER_REVISION, namespace, labels={meta.CONNECTOR_LABEL: connector}
    ):
        try:
            rev = parse_controller_revision(obj)
        except (KeyError, TypeError, ValueError):
            continue
        if rev.name == connector:
            revisions[rev.revision] = rev
    return revisions


async def resolve_connectors(ctx: Context, kp: Knooppunt, current: Mapping[str, Any]) -> Resolution:
    namespace = kp.metadata.namespace or "default"
    failed, last_good = current.get("failedRollout"), current.get("lastGood")
    result = Resolution()
    for pin in kp.spec.connectors:
        recorded = await recorded_revisions(ctx, namespace, pin.name)
        want = pin.revision or (max(recorded) if recorded else None)
        if want is None:
            result.problems.append(
                f"connector {pin.name}: no valid revision recorded (SectorConnector missing or "
                "invalid)"
            )
            result.complete = False
            continue
        result.desired[pin.name] = want
        serve = want
        good = failed_applies(pin.name, want, failed, last_good, kp.metadata.generation)
        if good is not None and good in recorded:
            serve = good
            result.held_back[pin.name] = (want, good)
        revision = recorded.get(serve)
        if revision is None:
            result.problems.append(
                f"connector {pin.name}: revision {serve} is not recorded (never valid, or "
                "pruned from the history)"
            )
            result.complete = False
            continue
        result.serving.append(revision)
    return result


# ------------------------------------------------------------------------------ admission


async def postgresql_tls_objects(
    ctx: Context, namespace: str, body: Mapping[str, Any]
) -> dict[webhook.ObjectRef, dict[str, Any] | None]:
    """The Secrets and ConfigMaps the Knooppunt's PostgreSQL TLS names, read from the API."""
    kinds = {webhook.KIND_SECRET: kube.SECRET, webhook.KIND_CONFIG_MAP: kube.CONFIG_MAP}
    return {
        ref: await ctx.client.get(kinds[ref[0]], namespace, ref[1])
        for ref in webhook.postgresql_tls_refs(body)
    }


async def validate(
    ctx: Context, namespace: str, body: Mapping[str, Any], *, old: Mapping[str, Any] | None = None
) -> list[str]:
    """The admission check of a Knooppunt: the model, and the objects it names exist.

    An update that leaves the spec alone (metadata, finalizers, a node being deleted) is
    never refused: a Secret deleted later must not keep the Knooppunt from being deleted.
    """
    if old is not None and (old.get("spec") or {}) == (body.get("spec") or {}):
        return []
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return []
    referenced = await postgresql_tls_objects(ctx, namespace, body)
    return webhook.validate_knooppunt(body, referenced=referenced)


# ------------------------------------------------------------------------ database Secret


def database_secret_condition(
    kp: Knooppunt, secret: Mapping[str, Any] | None
) -> status.Observed | None:
    """``DatabaseSecretReady`` for a PostgreSQL node: the Secret ``spec.storage.
    postgresqlDsnSecret`` names exists and holds the key (``None`` for a SQLite node).

    Only the key's presence is looked at: the DSN itself is never decoded, logged or stored.
    """
    ref = kp.spec.storage.postgresql_dsn_secret
    if node.sqlite(kp) or ref is None:
        return None
    where = f"spec.storage.postgresqlDsnSecret: Secret {ref.name!r}"
    if secret is None:
        return status.Observed(
            status.DATABASE_SECRET_READY,
            "False",
            "SecretNotFound",
            f"{where} not found in namespace {kp.metadata.namespace or 'default'}; the node's "
            f"pods cannot start without it (create it with the PostgreSQL DSN under key "
            f"{ref.key!r})",
        )
    keys = {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
    if ref.key not in keys:
        return status.Observed(
            status.DATABASE_SECRET_READY,
            "False",
            "KeyNotFound",
            f"{where} has no key {ref.key!r}; the node's pods cannot start without it (put the "
            f"PostgreSQL DSN under that key, or name the right key in the Knooppunt)",
        )
    return status.Observed(
        status.DATABASE_SECRET_READY, "True", "SecretFound", f"{where} holds key {ref.key!r}"
    )


async def check_database_secret(
    ctx: Context, body: Mapping[str, Any], kp: Knooppunt
) -> status.Observed | None:
    """Read the DSN Secret (a GET: user Secrets are not in the operator's cache), remember
    the condition for :func:`observe`, and post an Event when it changes."""
    key = _key(body)
    ref = kp.spec.storage.postgresql_dsn_secret
    secret = None
    if not node.sqlite(kp) and ref is not None:
        secret = await ctx.client.get(kube.SECRET, key[0], ref.name)
    observed = database_secret_condition(kp, secret)
    if observed is None:
        ctx.database_secrets.pop(key, None)
        return None
    ctx.database_secrets[key] = observed
    before = status.find_condition(body.get("status"), status.DATABASE_SECRET_READY)
    changed = before is None or (before.get("status"), before.get("reason")) != (
        observed.status,
        observed.reason,
    )
    if changed and observed.status == "False":
        await ctx.events.record(
            body, reason=observed.reason, type_="Warning", message=observed.message
        )
    elif changed and before is not None:
        await ctx.events.record(body, reason="DatabaseSecretReady", message=observed.message)
    return observed


# ------------------------------------------------------------------------------ reconcile


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    """Make the node's children match the Knooppunt (idempotent)."""
    async with ctx.node_locks[(namespace, name)]:
        body = await ctx.read(kube.KNOOPPUNT, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        created_ca = await _reconcile(ctx, body)
    if created_ca:
        for other in await ctx.read_list(kube.KNOOPPUNT, namespace):
            if other["metadata"]["name"] != name:
                await pki.refresh_tls(ctx, namespace, other["metadata"]["name"])
    await certify_waiting_gemeenten(ctx, namespace, name)


async def _reconcile(ctx: Context, body: dict[str, Any]) -> bool:
    key = _key(body)
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError as exc:
        message = f"invalid Knooppunt: {exc.errors()[0]['msg']}"
        await _write_status(
            ctx,
            body,
            {**(body.get("status") or {})},
            observed=[
                status.Observed(status.DEGRADED, "True", "InvalidSpec", message),
                status.Observed(status.READY, "False", "InvalidSpec", message),
            ],
        )
        raise kopf.PermanentError(message) from exc
    namespace = key[0]
    names = meta.NodeNames(kp.name)
    current = dict(body.get("status") or {})
    problems: list[str] = []
    blocking = False

    await ctx.apply_all(body, [node.service_account(kp), node.role(kp), node.role_binding(kp)])
    _material, created_ca = await pki.ensure_ca(ctx, body, kp)

    pseudonym = await ctx.read_before_creating(kube.SECRET, namespace, names.pseudonym)
    if pseudonym is None and current.get("pseudonymKeyCreated"):
        problems.append(
            f"pseudonym key Secret {names.pseudonym} is missing; the operator never creates a "
            "second key for a node (restore the Secret from backup)"
        )
        blocking = True
    elif pseudonym is None:
        await ctx.apply_all(
            body, [secret_builders.pseudonym_secret(kp, key_hex=secrets.token_hex(32))]
        )
    current["pseudonymKeyCreated"] = True

    if kp.spec.security.tls_secret:
        tls_name, tls_managed = kp.spec.security.tls_secret, False
        provided = await ctx.client.get(kube.SECRET, namespace, tls_name)
        if provided is None:
            problems.append(f"TLS Secret {tls_name} (spec.security.tlsSecret) not found")
            blocking = True
        elif not secret_builders.unb64(provided.get("data"), "crl.pem"):
            problems.append(
                f"TLS Secret {tls_name} (spec.security.tlsSecret) has no crl.pem: "
                "a node never runs without the CRLs of the CAs it trusts "
                "(fail-closed)"
            )
            blocking = True
    else:
        tls_name, tls_managed = names.tls, True
        async with ctx.ca_locks[key]:
            await pki.refresh_tls_locked(ctx, body, kp)

    database_tls = webhook.postgresql_tls_problems(
        kp, await postgresql_tls_objects(ctx, namespace, body)
    )
    if database_tls:  # the pods could not mount it: keep what runs now (or wait to start)
        problems += database_tls
        blocking = True

    database = await check_database_secret(ctx, body, kp)
    if (
        database is not None
        and database.status == "False"
        and await ctx.read(kube.DEPLOYMENT, namespace, kp.name) is not None
    ):
        # The running pods read the DSN when they started and keep working; pods of a new
        # template could not start, and the rollout deadline would blame the connectors.
        # Without a Deployment yet it is applied: its pods start once the Secret is there.
        blocking = True

    resolution = await resolve_connectors(ctx, kp, current)
    problems += resolution.problems
    if not resolution.complete:
        blocking = True  # never half-configured: keep what runs now (or wait to start)

    config_map = node.resources_config_map(
        kp, resolution.serving, operator_oin=ctx.config.operator_oin
    )
    config_hash = node.config_hash(config_map["data"])
    template = node.pod_template(
        kp,
        config_hash=config_hash,
        connectors=resolution.serving,
        tls_secret=tls_name,
        tls_managed=tls_managed,
        config=ctx.config,
    )
    template_hash = node.template_hash(template)
    deployment = node.deployment(kp, template=template, config=ctx.config)
    deployment["metadata"].setdefault("annotations", {})[TEMPLATE_HASH] = template_hash

    children: list[dict[str, Any] | None] = []
    if not blocking:
        children += [
            config_map,
            node.data_volume_claim(kp, size=ctx.config.sqlite_volume_size),
            deployment,
        ]
    children += [
        node.service(kp),
        node.pod_disruption_budget(kp),
        node.network_policy(kp, operator_namespace=ctx.config.namespace),
    ]
    await ctx.apply_all(body, children)
    ctx.problems[key] = problems

    if not blocking:
        rollout = current.get("rollout") or {}
        revisions = {r.name: r.revision for r in resolution.serving}
        if rollout.get("templateHash") != template_hash:
            current["rollout"] = {
                "templateHash": template_hash,
                "revisions": revisions,
                "startedAt": status.now_rfc3339(ctx.clock()),
                "generation": kp.metadata.generation,
            }
            if rollout:
                await ctx.events.record(
                    body,
                    reason="RollingOut",
                    message=f"rolling out a new pod template ({_summary(revisions)})",
                )
        failed = current.get("failedRollout")
        if failed and not resolution.held_back:
            current["failedRollout"] = None
        by_name = {r.name: r for r in resolution.serving}
        current["connectors"] = [
            {
                "name": pin.name,
                "revision": by_name[pin.name].revision if pin.name in by_name else None,
                "desiredRevision": resolution.desired.get(pin.name),
                "standardVersion": by_name[pin.name].standard_version
                if pin.name in by_name
                else None,
            }
            for pin in kp.spec.connectors
        ]
        current["connectorSummary"] = _summary(revisions) or None
    current["version"] = node.image_version(kp.spec.image)
    replicas = node.effective_replicas(kp)
    if kp.spec.replicas != replicas and current.get("replicas") != replicas:
        await ctx.events.record(
            body,
            reason="SingleReplica",
            type_="Warning",
            message=f"storage backend sqlite has one writer: running 1 replica, not "
            f"spec.replicas={kp.spec.replicas}",
        )
    current["replicas"] = replicas
    await _observe_locked(ctx, body, current, gemeenten=None)
    return created_ca


def _summary(revisions: Mapping[str, int]) -> str:
    return ",".join(f"{name}@r{rev}" for name, rev in sorted(revisions.items()))


async def certify_waiting_gemeenten(ctx: Context, namespace: str, name: str) -> None:
    """Gemeenten that waited for a node (no certificate yet) get theirs now."""
    from knooppunt_operator.handlers import gemeente

    body = await ctx.read(kube.KNOOPPUNT, namespace, name)
    if body is None:
        return
    served = {c.get("name") for c in (body.get("spec") or {}).get("connectors") or []}
    for item in await ctx.read_list(kube.GEMEENTE, namespace, copies=False):
        spec = item.get("spec") or {}
        cert = spec.get("certificate") or {}
        if cert.get("secret") or cert.get("issue") is False:
            continue
        if (item.get("status") or {}).get("certificate"):
            continue
        if served & {s.get("connector") for s in spec.get("subscriptions") or []}:
            if ctx.wake is not None:
                ctx.wake(GEMEENTE, namespace, item["metadata"]["name"])
            else:
                await gemeente.reconcile(ctx, namespace, item["metadata"]["name"], item)


# -------------------------------------------------------------------------------- observe


async def observe(
    ctx: Context, namespace: str, name: str, *, gemeenten: GemeenteCounter | None = None
) -> None:
    """Refresh the conditions from the Deployment; roll back a rollout that failed."""
    async with ctx.node_locks[(namespace, name)]:
        body = await ctx.read(kube.KNOOPPUNT, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        count = None
        if gemeenten is not None:
            connectors = frozenset(
                c.get("name") for c in (body.get("spec") or {}).get("connectors") or []
            )
            count = gemeenten(connectors)
        again = await _observe_locked(
            ctx, body, dict(body.get("status") or {}), gemeenten=count, recheck=True
        )
    if again:
        await reconcile(ctx, namespace, name)


def _postgresql(body: Mapping[str, Any]) -> bool:
    return ((body.get("spec") or {}).get("storage") or {}).get("backend") == "postgresql"


async def _recheck_database_secret(ctx: Context, body: Mapping[str, Any]) -> bool:
    """While the DSN Secret is missing (or not yet looked at), look again; True when it has
    just become usable, so that a reconcile applies what was held back."""
    key = _key(body)
    before = ctx.database_secrets.get(key)
    if not _postgresql(body) or (before is not None and before.status == "True"):
        return False
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError:
        return False
    now = await check_database_secret(ctx, body, kp)
    return before is not None and now is not None and now.status == "True"


async def _observe_locked(
    ctx: Context,
    body: Mapping[str, Any],
    current: dict[str, Any],
    *,
    gemeenten: int | None,
    recheck: bool = False,
) -> bool:
    """Write the conditions; True when a reconcile must follow (a rollback, or the DSN
    Secret that was missing is there now)."""
    namespace, name = _key(body)
    recovered = recheck and await _recheck_database_secret(ctx, body)
    generation = _generation(body)
    deployment = await ctx.read(kube.DEPLOYMENT, namespace, name)
    state = status.rollout_state(deployment)
    rollout = current.get("rollout")
    last_good = current.get("lastGood")
    failed = current.get("failedRollout")
    deadline = ctx.config.rollout_deadline_seconds
    now = ctx.clock()
    roll_back = False
    stalled = False
    applied_hash = (
        ((deployment or {}).get("metadata") or {}).get("annotations", {}).get(TEMPLATE_HASH)
    )
    ours = rollout is not None and applied_hash == rollout.get("templateHash")

    if rollout and ours and state.complete:
        if not last_good or last_good.get("templateHash") != rollout.get("templateHash"):
            current["lastGood"] = {**rollout, "reason": None}
            if last_good:
                await ctx.events.record(
                    body,
                    reason="RolloutComplete",
                    message=f"rollout ready: {_summary(rollout['revisions'])}",
                )
    elif rollout and ours and state.exists:
        started = _parse_time(rollout.get("startedAt")) or now
        late = (now - started).total_seconds() > deadline or state.deadline_exceeded
        already_good = last_good and last_good.get("templateHash") == rollout.get("templateHash")
        if late and already_good:
            stalled = True  # even the last good template does not come up: nothing to undo
        elif late:
            target = (last_good or {}).get("revisions") or {}
            changed = {
                c: r for c, r in (rollout.get("revisions") or {}).items() if target.get(c) != r
            }
            if last_good and changed and all(c in target for c in changed):
                reason = "; ".join(
                    f"revision {rev} of connector {conn} did not become ready within "
                    f"{deadline}s ({state.message}); rolled back to revision {target[conn]}"
                    for conn, rev in sorted(changed.items())
                )
                current["failedRollout"] = {
                    **rollout,
                    "generation": generation,
                    "reason": reason,
                }
                failed = current["failedRollout"]
                roll_back = True
                metrics.ROLLBACKS.labels(namespace, name).inc()
                await ctx.events.record(body, reason="RolledBack", message=reason, type_="Warning")
            else:
                stalled = True
    if gemeenten is not None:
        current["gemeenten"] = gemeenten
    if deployment is not None:
        dstatus = deployment.get("status") or {}
        current["readyReplicas"] = int(dstatus.get("readyReplicas") or 0)
        current["updatedReplicas"] = int(dstatus.get("updatedReplicas") or 0)
        current["availableReplicas"] = int(dstatus.get("availableReplicas") or 0)

    problems = ctx.problems.get((namespace, name), [])
    database = ctx.database_secrets.get((namespace, name)) if _postgresql(body) else None
    observed = _conditions(
        state,
        problems=problems,
        failed=failed,
        stalled=stalled,
        deadline=deadline,
        rolling_back=roll_back,
        database=database,
    )
    # a node moved to SQLite (or never on PostgreSQL) carries no DatabaseSecretReady
    drop = frozenset() if _postgresql(body) else frozenset({status.DATABASE_SECRET_READY})
    await _write_status(ctx, body, current, observed=observed, drop=drop)
    return roll_back or recovered


def _conditions(
    state: status.RolloutState,
    *,
    problems: list[str],
    failed: Mapping[str, Any] | None,
    stalled: bool,
    deadline: int,
    rolling_back: bool,
    database: status.Observed | None = None,
) -> list[status.Observed]:
    """Ready, Progressing, Degraded (and DatabaseSecretReady for a PostgreSQL node): a DSN
    Secret that is missing or lacks its key is why the node is not ready, whatever the
    Deployment says."""
    o = status.Observed
    if database is not None and database.status == "False":
        problems = [*problems, database.message]
    if not state.exists:
        progressing = o(status.PROGRESSING, "True", "Creating", "waiting for the Deployment")
        ready = o(status.READY, "False", "DeploymentNotFound", state.message)
    elif rolling_back:
        progressing = o(status.PROGRESSING, "True", "RollingBack", state.message)
        ready = o(status.READY, "False", "RollingBack", state.message)
    elif state.complete:
        progressing = o(status.PROGRESSING, "False", "RolloutComplete", state.message)
        ready = (
            o(status.READY, "True", "Available", state.message)
            if state.available > 0
            else o(status.READY, "False", "Unavailable", state.message)
        )
    elif stalled:
        message = f"rollout not ready within {deadline}s: {state.message}"
        progressing = o(status.PROGRESSING, "False", "ProgressDeadlineExceeded", message)
        ready = o(status.READY, "False", "RolloutFailed", message)
    else:
        progressing = o(status.PROGRESSING, "True", "RollingOut", state.message)
        ready = o(status.READY, "False", "RollingOut", state.message)

    if failed:
        degraded = o(status.DEGRADED, "True", "RolledBack", str(failed.get("reason") or ""))
    elif stalled:
        degraded = o(
            status.DEGRADED,
            "True",
            "RolloutFailed",
            f"rollout not ready within {deadline}s and no earlier good revision to "
            f"return to: {state.message}",
        )
    elif problems:
        degraded = o(status.DEGRADED, "True", "ConfigurationProblem", "; ".join(problems))
    elif state.complete and state.available < state.desired:
        degraded = o(status.DEGRADED, "True", "ReplicasUnavailable", state.message)
    else:
        degraded = o(status.DEGRADED, "False", "AsExpected", "")
    if database is None:
        return [ready, progressing, degraded]
    if database.status == "False":
        ready = o(status.READY, "False", database.reason, database.message)
    return [ready, progressing, degraded, database]


async def _write_status(
    ctx: Context,
    body: Mapping[str, Any],
    current: dict[str, Any],
    *,
    observed: list[status.Observed],
    drop: frozenset[str] = frozenset(),
) -> None:
    """Patch the status; conditions of the types in ``drop`` are removed."""
    namespace, name = _key(body)
    old = body.get("status") or {}
    generation = _generation(body)
    current["observedGeneration"] = generation
    current["conditions"] = status.merge_conditions(
        [c for c in old.get("conditions") or [] if c.get("type") not in drop],
        observed,
        generation=generation,
        now=status.now_rfc3339(ctx.clock()),
    )
    patch = status.status_patch(old, current)
    if patch is not None:
        await ctx.patch_status(kube.KNOOPPUNT, namespace, name, patch)
