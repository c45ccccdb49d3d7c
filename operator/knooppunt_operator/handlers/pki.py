"""A node's CA at work: created once, issuing the TLS Secret, revoking, trusting.

All mutations of a node's CA Secret and TLS Secret happen under that node's ``ca_lock``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from knooppunt_operator import certificates, kube
from knooppunt_operator.builders import meta
from knooppunt_operator.builders import secrets as secret_builders
from knooppunt_operator.handlers.context import Context
from knooppunt_operator.runtime_client import NodeEndpoint
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt


def ca_from_secret(secret: Mapping[str, Any] | None) -> certificates.CaMaterial | None:
    if secret is None:
        return None
    data = secret.get("data") or {}
    cert, key = secret_builders.unb64(data, "ca.crt"), secret_builders.unb64(data, "ca.key")
    if not cert or not key:
        return None
    return certificates.CaMaterial(cert, key)


async def read_ca(ctx: Context, namespace: str, node: str) -> certificates.CaMaterial | None:
    secret = await ctx.client.get(kube.SECRET, namespace, meta.NodeNames(node).ca)
    return ca_from_secret(secret)


async def ensure_ca(
    ctx: Context, body: Mapping[str, Any], kp: Knooppunt
) -> tuple[certificates.CaMaterial, bool]:
    """The node's CA, created the first time (never replaced); ``True`` when just created."""
    namespace = kp.metadata.namespace or "default"
    async with ctx.ca_locks[(namespace, kp.name)]:
        secret = await ctx.client.get(kube.SECRET, namespace, meta.NodeNames(kp.name).ca)
        material = ca_from_secret(secret)
        if material is not None:
            return material, False
        material = certificates.create_node_ca(kp.name, namespace)
        await ctx.apply_all(
            body,
            [secret_builders.ca_secret(
                kp, cert_pem=material.cert_pem, key_pem=material.key_pem,
                revoked=certificates.dump_revoked([]),
            )],
        )
        await ctx.events.record(body, reason="CertificateAuthorityCreated",
                                message=f"created the CA of node {kp.name}")
        return material, True


async def namespace_trust(ctx: Context, kp: Knooppunt) -> list[bytes]:
    """CAs a node trusts for client certificates besides its own.

    The CAs of the other nodes in the namespace (a gemeente's certificate comes from one of
    them) and the ``ca.crt`` of provided (e.g. PKIoverheid) gemeente certificates.
    """
    namespace = kp.metadata.namespace
    trusted: list[bytes] = []
    for other in await ctx.client.list(kube.KNOOPPUNT, namespace):
        other_name = other["metadata"]["name"]
        if other_name == kp.name:
            continue
        material = await read_ca(ctx, namespace or "default", other_name)
        if material is not None:
            trusted.append(material.cert_pem)
    served = {c.name for c in kp.spec.connectors}
    for body in await ctx.client.list(kube.GEMEENTE, namespace):
        secret_name = ((body.get("spec") or {}).get("certificate") or {}).get("secret")
        if not secret_name:
            continue
        try:
            gemeente = Gemeente.model_validate(body)
        except ValidationError:
            continue
        if not served & {s.connector for s in gemeente.spec.subscriptions}:
            continue
        secret = await ctx.client.get(kube.SECRET, namespace, secret_name)
        ca_pem = secret_builders.unb64((secret or {}).get("data"), "ca.crt")
        if ca_pem:
            trusted.append(ca_pem)
    return trusted


async def refresh_tls(ctx: Context, namespace: str, node: str) -> None:
    """Bring ``<node>-tls`` up to date (certificate, trust bundle, CRL); no-op if unchanged."""
    body = await ctx.client.get(kube.KNOOPPUNT, namespace, node)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError:
        return
    if kp.spec.security.tls_secret:
        return
    async with ctx.ca_locks[(namespace, node)]:
        await refresh_tls_locked(ctx, body, kp)


async def refresh_tls_locked(ctx: Context, body: Mapping[str, Any], kp: Knooppunt) -> None:
    namespace = kp.metadata.namespace or "default"
    names = meta.NodeNames(kp.name)
    ca_secret = await ctx.client.get(kube.SECRET, namespace, names.ca)
    material = ca_from_secret(ca_secret)
    if material is None or ca_secret is None:
        return
    ca = certificates.load_ca(material)
    now = ctx.clock()
    revoked_text = secret_builders.unb64(ca_secret.get("data"), "revoked.json")
    revoked = certificates.parse_revoked(revoked_text)
    pruned = certificates.prune_expired(revoked, now=now)

    current = await ctx.client.get(kube.SECRET, namespace, names.tls)
    data = (current or {}).get("data") or {}
    chain = secret_builders.unb64(data, "tls.crt")
    key = secret_builders.unb64(data, "tls.key")
    reason = certificates.renewal_reason(
        chain,
        ca=ca,
        now=now,
        renew_before=dt.timedelta(days=ctx.config.renew_before_days),
        dns_names=certificates.node_dns_names(kp.name, namespace),
    )
    if reason is not None or not key:
        leaf = certificates.issue_node_server(
            ca, kp.name, namespace, days=ctx.config.server_cert_days, now=now
        )
        chain, key = leaf.chain_pem, leaf.key_pem
        await ctx.events.record(body, reason="CertificateIssued",
                                message=f"server certificate for node {kp.name} ({reason})")
    assert chain is not None and key is not None
    trust = certificates.trust_bundle([material.cert_pem, *await namespace_trust(ctx, kp)])
    crl = secret_builders.unb64(data, "crl.pem")
    if crl is None or not certificates.crl_is_current(crl, ca, pruned, now=now):
        crl = certificates.build_crl_pem(
            ca, pruned, number=certificates.crl_number(crl) + 1, now=now
        )
    objects: list[dict[str, Any]] = [
        secret_builders.tls_secret(kp, chain_pem=chain, key_pem=key, trust_pem=trust, crl_pem=crl)
    ]
    if pruned != revoked:
        objects.append(secret_builders.ca_secret(
            kp, cert_pem=material.cert_pem, key_pem=material.key_pem,
            revoked=certificates.dump_revoked(pruned),
        ))
    await ctx.apply_all(body, objects)


async def revoke(ctx: Context, namespace: str, node: str, chain_pem: bytes, *, why: str) -> None:
    """Put a certificate on the node's CRL (and publish the CRL in the node's TLS Secret)."""
    body = await ctx.client.get(kube.KNOOPPUNT, namespace, node)
    if body is None:
        return
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError:
        return
    async with ctx.ca_locks[(namespace, node)]:
        ca_secret = await ctx.client.get(kube.SECRET, namespace, meta.NodeNames(node).ca)
        material = ca_from_secret(ca_secret)
        if material is None or ca_secret is None:
            return
        ca = certificates.load_ca(material)
        if certificates.renewal_reason(
            chain_pem, ca=ca, now=ctx.clock(), renew_before=dt.timedelta(0)
        ) in ("issued by another CA", "not signed by the node's CA", "unreadable"):
            return
        revoked = certificates.parse_revoked(
            secret_builders.unb64(ca_secret.get("data"), "revoked.json")
        )
        updated = certificates.revoke(revoked, chain_pem, now=ctx.clock())
        if updated != revoked:
            await ctx.apply_all(body, [secret_builders.ca_secret(
                kp, cert_pem=material.cert_pem, key_pem=material.key_pem,
                revoked=certificates.dump_revoked(updated),
            )])
            info = certificates.leaf_info(chain_pem)
            await ctx.events.record(
                body, reason="CertificateRevoked",
                message=f"revoked certificate {info.serial_hex} "
                f"(serialNumber {info.subject_serial_number}): {why}",
            )
        if not kp.spec.security.tls_secret:
            await refresh_tls_locked(ctx, body, kp)


async def trusts(ctx: Context, namespace: str, node: str, ca_pem: bytes) -> bool:
    """Whether the node's trust bundle already holds every certificate in ``ca_pem``."""
    secret = await ctx.client.get(kube.SECRET, namespace, meta.NodeNames(node).tls)
    trust = secret_builders.unb64((secret or {}).get("data"), "ca.crt") or b""
    return certificates.trust_bundle([trust, ca_pem]) == certificates.trust_bundle([trust])


async def node_endpoint(ctx: Context, namespace: str, node: str) -> NodeEndpoint | None:
    material = await read_ca(ctx, namespace, node)
    if material is None:
        return None
    return NodeEndpoint(node, namespace, material)
