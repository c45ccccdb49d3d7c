"""Gemeente → its client certificate, and a status saying which nodes serve it.

A gemeente never touches a node's Deployment or ConfigMap: the runtime reads Gemeente
resources from the API itself, so onboarding, changing or removing one does not restart
pods and no object grows with the number of gemeenten (each one has its own Secret).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from knooppunt_operator import certificates, kube, status
from knooppunt_operator.apply import ObjectRef
from knooppunt_operator.builders import meta
from knooppunt_operator.builders import secrets as secret_builders
from knooppunt_operator.handlers import pki
from knooppunt_operator.handlers.context import Context
from knooppunt_operator.runtime_client import PendingUnknown
from node_runtime.model.connector import SectorConnector
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt


async def serving_nodes(ctx: Context, namespace: str, gemeente: Gemeente) -> list[Knooppunt]:
    """Knooppunten in the namespace serving one of the gemeente's connectors, by name."""
    wanted = {s.connector for s in gemeente.spec.subscriptions}
    nodes = []
    for body in await ctx.read_list(kube.KNOOPPUNT, namespace):
        if body["metadata"].get("deletionTimestamp"):
            continue
        try:
            kp = Knooppunt.model_validate(body)
        except ValidationError:
            continue
        if wanted & {c.name for c in kp.spec.connectors}:
            nodes.append(kp)
    return sorted(nodes, key=lambda kp: kp.name)


async def subscription_problems(
    ctx: Context, namespace: str, gemeente: Gemeente, nodes: list[Knooppunt]
) -> list[str]:
    problems: list[str] = []
    served = {c.name for kp in nodes for c in kp.spec.connectors}
    connectors: dict[str, SectorConnector | None] = {}
    for sub in gemeente.spec.subscriptions:
        if sub.connector not in connectors:
            connectors[sub.connector] = await ctx.connector(namespace, sub.connector)
        connector = connectors[sub.connector]
        where = f"subscription {sub.connector}/{sub.purpose}"
        if connector is None:
            problems.append(f"{where}: SectorConnector {sub.connector} not found or invalid")
            continue
        if sub.connector not in served:
            problems.append(f"{where}: no Knooppunt in namespace {namespace} serves it")
        purpose = next((p for p in connector.spec.purposes if p.name == sub.purpose), None)
        if purpose is None:
            problems.append(f"{where}: connector {sub.connector} declares no purpose {sub.purpose}")
            continue
        extra = [m for m in sub.messages if m not in purpose.messages]
        if extra:
            problems.append(f"{where}: purpose {sub.purpose} does not cover {', '.join(extra)}")
    return problems


async def reconcile(
    ctx: Context, namespace: str, name: str, body: Mapping[str, Any] | None = None
) -> None:
    """Certificate and status of one gemeente (``body``: as just read, if at hand)."""
    if body is None:
        body = await ctx.read(kube.GEMEENTE, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    gemeente = Gemeente.model_validate(body)
    nodes = await serving_nodes(ctx, namespace, gemeente)
    problems = await subscription_problems(ctx, namespace, gemeente, nodes)
    current = dict(body.get("status") or {})
    certificate, cert_problems = await _certificate(ctx, body, gemeente, nodes, current)
    problems += cert_problems
    current["certificate"] = certificate
    current["nodes"] = [kp.name for kp in nodes]
    current["connectorSummary"] = (
        ",".join(sorted({s.connector for s in gemeente.spec.subscriptions})) or None
    )
    ready = (
        status.Observed(status.READY, "True", "Served", f"served by {', '.join(current['nodes'])}")
        if not problems
        else status.Observed(status.READY, "False", "NotServed", "; ".join(problems))
    )
    await _write_status(ctx, body, current, [ready])


async def _write_status(
    ctx: Context,
    body: Mapping[str, Any],
    current: dict[str, Any],
    observed: list[status.Observed],
) -> None:
    meta_ = body["metadata"]
    generation = meta_.get("generation")
    current["observedGeneration"] = generation
    current["conditions"] = status.merge_conditions(
        (body.get("status") or {}).get("conditions") or [],
        observed,
        generation=generation,
        now=status.now_rfc3339(ctx.clock()),
    )
    patch = status.status_patch(body.get("status"), current)
    if patch is not None:
        await ctx.patch_status(kube.GEMEENTE, meta_.get("namespace"), meta_["name"], patch)


async def _drop_issued(ctx: Context, body: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Remove (and revoke) a certificate the operator issued earlier."""
    namespace, name = body["metadata"].get("namespace"), body["metadata"]["name"]
    issued = current.get("certificate") or {}
    secret = await ctx.read(kube.SECRET, namespace, meta.client_tls_secret_name(name))
    if secret is None:
        return
    chain = secret_builders.unb64(secret.get("data"), "tls.crt")
    issuer = issued.get("issuer") or ((secret.get("metadata") or {}).get("labels") or {}).get(
        meta.NODE_LABEL
    )
    if chain and issuer:
        await pki.revoke(
            ctx,
            namespace or "default",
            issuer,
            chain,
            why=f"gemeente {name}: certificate no longer issued by the operator",
        )
    await ctx.apply_all(
        body, [ObjectRef(kube.SECRET, namespace, meta.client_tls_secret_name(name))]
    )


async def _certificate(
    ctx: Context,
    body: Mapping[str, Any],
    gemeente: Gemeente,
    nodes: list[Knooppunt],
    current: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, list[str]]:
    namespace = gemeente.metadata.namespace or "default"
    spec = gemeente.spec.certificate
    if spec.secret:
        await _drop_issued(ctx, body, current)
        return await _provided(ctx, gemeente, nodes, spec.secret)
    if not spec.issue:
        await _drop_issued(ctx, body, current)
        return None, []
    if not nodes:
        wanted = ", ".join(sorted({s.connector for s in gemeente.spec.subscriptions})) or "none"
        return current.get("certificate"), [
            f"no Knooppunt in namespace {namespace} serves its connectors ({wanted}); the "
            "client certificate is issued once one does"
        ]
    previous = (current.get("certificate") or {}).get("issuer")
    issuer = next((kp for kp in nodes if kp.name == previous), nodes[0])
    material = await pki.read_ca(ctx, namespace, issuer.name)
    if material is None:
        raise kopf.TemporaryError(f"the CA of node {issuer.name} is not created yet", delay=5)
    ca = certificates.load_ca(material)
    secret_name = meta.client_tls_secret_name(gemeente.name)
    existing = await ctx.read(kube.SECRET, namespace, secret_name)
    data = (existing or {}).get("data") or {}
    chain = secret_builders.unb64(data, "tls.crt")
    key = secret_builders.unb64(data, "tls.key")
    now = ctx.clock()
    reason = certificates.renewal_reason(
        chain,
        ca=ca,
        now=now,
        renew_before=dt.timedelta(days=ctx.config.renew_before_days),
        serial_number=gemeente.spec.oin,
    )
    if reason is not None or not key:
        old_chain = chain
        leaf = certificates.issue_gemeente_client(
            ca,
            oin=gemeente.spec.oin,
            organisation=gemeente.spec.display_name,
            common_name=gemeente.name,
            days=ctx.config.client_cert_days,
            now=now,
        )
        chain, key = leaf.chain_pem, leaf.key_pem
        # The first certificate is announced by the gemeente's status (Ready, certificate);
        # an Event per onboarding would be one more API request for every gemeente. A
        # certificate replaced (renewal, OIN change, another CA) gets an Event.
        await ctx.apply_all(
            body,
            [
                secret_builders.client_tls_secret(
                    gemeente,
                    node=issuer.name,
                    chain_pem=chain,
                    key_pem=key,
                    ca_pem=material.cert_pem,
                )
            ],
            announce=False,
        )
        if old_chain:
            await ctx.events.record(
                body,
                reason="CertificateIssued",
                message=f"client certificate for OIN {gemeente.spec.oin} issued by the CA of "
                f"node {issuer.name} ({reason})",
            )
        if old_chain and reason not in ("missing", "unreadable"):
            old_issuer = previous or issuer.name
            await pki.revoke(
                ctx,
                namespace,
                old_issuer,
                old_chain,
                why=f"gemeente {gemeente.name}: superseded ({reason})",
            )
    else:
        await ctx.apply_all(
            body,
            [
                secret_builders.client_tls_secret(
                    gemeente,
                    node=issuer.name,
                    chain_pem=chain or b"",
                    key_pem=key,
                    ca_pem=material.cert_pem,
                )
            ],
        )
    info = certificates.leaf_info(chain or b"")
    return {
        "secret": secret_name,
        "provided": False,
        "issuer": issuer.name,
        "serialNumber": info.serial_hex,
        "notAfter": info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, []


async def _provided(
    ctx: Context, gemeente: Gemeente, nodes: list[Knooppunt], secret_name: str
) -> tuple[dict[str, Any] | None, list[str]]:
    namespace = gemeente.metadata.namespace or "default"
    secret = await ctx.client.get(kube.SECRET, namespace, secret_name)
    chain = secret_builders.unb64((secret or {}).get("data"), "tls.crt")
    if chain is None:
        return None, [
            f"certificate Secret {secret_name} (spec.certificate.secret) not found or "
            "without tls.crt"
        ]
    try:
        info = certificates.leaf_info(chain)
    except ValueError:
        return None, [f"certificate Secret {secret_name}: tls.crt is not a PEM certificate"]
    problems = []
    if info.subject_serial_number != gemeente.spec.oin:
        problems.append(
            f"certificate Secret {secret_name}: subject serialNumber "
            f"{info.subject_serial_number!r} is not the gemeente's OIN {gemeente.spec.oin}"
        )
    ca_pem = secret_builders.unb64((secret or {}).get("data"), "ca.crt")
    crl_pem = secret_builders.unb64((secret or {}).get("data"), "crl.pem")
    if ca_pem and not certificates.crls_signed_by(crl_pem, ca_pem):
        problems.append(
            f"certificate Secret {secret_name} has no crl.pem signed by its ca.crt: the nodes "
            "refuse certificates of that CA until its CRL is added (fail-closed)"
        )
    for kp in nodes:  # the nodes trust its issuer (ca.crt), with its CRL, for this OIN only
        if ca_pem:
            await pki.refresh_tls(ctx, namespace, kp.name)
    return {
        "secret": secret_name,
        "provided": True,
        "serialNumber": info.serial_hex,
        "notAfter": info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, problems


async def delete(ctx: Context, namespace: str, name: str, body: Mapping[str, Any]) -> None:
    """Let the gemeente go only when its messages are delivered (or forced); revoke its cert."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    try:
        gemeente = Gemeente.model_validate(body)
    except ValidationError:
        return
    if annotations.get(meta.FORCE_DELETE) == "true":
        await ctx.events.record(
            body,
            reason="ForceDeleted",
            type_="Warning",
            message="deleted without waiting for undelivered messages",
        )
    else:
        total = 0
        for kp in await serving_nodes(ctx, namespace, gemeente):
            endpoint = await pki.node_endpoint(ctx, namespace, kp.name)
            if endpoint is None:
                continue
            try:
                total += await ctx.pending.pending(endpoint, gemeente=gemeente.spec.gemeentecode)
            except PendingUnknown as exc:
                raise kopf.TemporaryError(
                    f"cannot tell whether messages are undelivered ({exc}); annotate "
                    f"{meta.FORCE_DELETE}=true to delete anyway",
                    delay=ctx.config.pending_retry_seconds,
                ) from exc
        if total:
            message = (
                f"{total} undelivered messages for gemeente {gemeente.spec.gemeentecode}; "
                f"deletion waits until they are delivered (annotate {meta.FORCE_DELETE}=true "
                "to drop them)"
            )
            await ctx.events.record(
                body, reason="DeletionBlocked", type_="Warning", message=message
            )
            current = dict(body.get("status") or {})
            await _write_status(
                ctx,
                body,
                current,
                [status.Observed(status.READY, "False", "DeletionBlocked", message)],
            )
            raise kopf.TemporaryError(message, delay=ctx.config.pending_retry_seconds)
    issued = (body.get("status") or {}).get("certificate") or {}
    if issued and not issued.get("provided"):
        secret = await ctx.read(kube.SECRET, namespace, meta.client_tls_secret_name(name))
        chain = secret_builders.unb64((secret or {}).get("data"), "tls.crt")
        if chain and issued.get("issuer"):
            await pki.revoke(
                ctx, namespace, issued["issuer"], chain, why=f"gemeente {name} removed"
            )
