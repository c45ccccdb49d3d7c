"""A node's CA at work: created once, issuing the TLS Secret, revoking, trusting.

All mutations of a node's CA Secret and TLS Secret happen under that node's ``ca_lock``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    secret = await ctx.read(kube.SECRET, namespace, meta.NodeNames(node).ca)
    return ca_from_secret(secret)


async def ensure_ca(
    ctx: Context, body: Mapping[str, Any], kp: Knooppunt
) -> tuple[certificates.CaMaterial, bool]:
    """The node's CA, created the first time (never replaced); ``True`` when just created."""
    namespace = kp.metadata.namespace or "default"
    async with ctx.ca_locks[(namespace, kp.name)]:
        secret = await ctx.read_before_creating(kube.SECRET, namespace, meta.NodeNames(kp.name).ca)
        material = ca_from_secret(secret)
        if material is not None:
            return material, False
        material = certificates.create_node_ca(kp.name, namespace)
        await ctx.apply_all(
            body,
            [
                secret_builders.ca_secret(
                    kp,
                    cert_pem=material.cert_pem,
                    key_pem=material.key_pem,
                    revoked=certificates.dump_revoked([]),
                )
            ],
        )
        await ctx.events.record(
            body, reason="CertificateAuthorityCreated", message=f"created the CA of node {kp.name}"
        )
        return material, True


@dataclass
class NamespaceTrust:
    """What a node trusts besides its own CA, with every trusted CA's CRL and whom it may
    speak for."""

    cas: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    nodes: list[bytes] = field(default_factory=list)
    organisations: dict[bytes, set[str]] = field(default_factory=dict)


async def namespace_trust(ctx: Context, kp: Knooppunt) -> NamespaceTrust:
    """CAs a node trusts for client certificates besides its own, and their CRLs.

    The CAs of the other nodes in the namespace (a gemeente's certificate comes from one of
    them; their CRL is the one they publish in their own TLS Secret) and the ``ca.crt`` of
    provided (e.g. PKIoverheid) gemeente certificates, with the ``crl.pem`` of the same Secret;
    such a CA speaks only for the OINs of the gemeenten that provided it. A CA without a CRL
    stays trusted but the node refuses its certificates (fail-closed) and says so.
    """
    namespace = kp.metadata.namespace
    trust = NamespaceTrust()
    for other in await ctx.read_list(kube.KNOOPPUNT, namespace):
        other_name = other["metadata"]["name"]
        if other_name == kp.name:
            continue
        material = await read_ca(ctx, namespace or "default", other_name)
        if material is None:
            continue
        trust.cas.append(material.cert_pem)
        trust.nodes.append(material.cert_pem)
        other_tls = await ctx.read(kube.SECRET, namespace, meta.NodeNames(other_name).tls)
        published = secret_builders.unb64((other_tls or {}).get("data"), "crl.pem")
        trust.crls += certificates.crls_signed_by(published, material.cert_pem)
    served = {c.name for c in kp.spec.connectors}
    for body in await ctx.read_list(kube.GEMEENTE, namespace, copies=False):
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
        data = (secret or {}).get("data")
        ca_pem = secret_builders.unb64(data, "ca.crt")
        if ca_pem:
            trust.cas.append(ca_pem)
            trust.organisations.setdefault(ca_pem, set()).add(gemeente.spec.oin)
            trust.crls += certificates.crls_signed_by(
                secret_builders.unb64(data, "crl.pem"), ca_pem
            )
    return trust


async def refresh_tls(ctx: Context, namespace: str, node: str) -> None:
    """Bring ``<node>-tls`` up to date (certificate, trust bundle, CRL); no-op if unchanged."""
    body = await ctx.read(kube.KNOOPPUNT, namespace, node)
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
    ca_secret = await ctx.read(kube.SECRET, namespace, names.ca)
    material = ca_from_secret(ca_secret)
    if material is None or ca_secret is None:
        return
    ca = certificates.load_ca(material)
    now = ctx.clock()
    revoked_text = secret_builders.unb64(ca_secret.get("data"), "revoked.json")
    revoked = certificates.parse_revoked(revoked_text)
    pruned = certificates.prune_expired(revoked, now=now)

    current = await ctx.read(kube.SECRET, namespace, names.tls)
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
        await ctx.events.record(
            body,
            reason="CertificateIssued",
            message=f"server certificate for node {kp.name} ({reason})",
        )
    assert chain is not None and key is not None
    others = await namespace_trust(ctx, kp)
    trust = certificates.trust_bundle([material.cert_pem, *others.cas])
    own = certificates.crls_signed_by(secret_builders.unb64(data, "crl.pem"), material.cert_pem)
    crl = own[0] if own else None
    if crl is None or not certificates.crl_is_current(crl, ca, pruned, now=now):
        crl = certificates.build_crl_pem(
            ca, pruned, number=certificates.crl_number(crl) + 1, now=now
        )
    # Every trusted CA's CRL (fail-closed per issuing CA), the node's own first.
    crls = certificates.crl_bundle([crl, *others.crls])
    issuers = certificates.issuer_policy_json(
        own=material.cert_pem, nodes=others.nodes, organisations=others.organisations
    )
    objects: list[dict[str, Any]] = [
        secret_builders.tls_secret(
            kp, chain_pem=chain, key_pem=key, trust_pem=trust, crl_pem=crls, issuers_json=issuers
        )
    ]
    if pruned != revoked:
        objects.append(
            secret_builders.ca_secret(
                kp,
                cert_pem=material.cert_pem,
                key_pem=material.key_pem,
                revoked=certificates.dump_revoked(pruned),
            )
        )
    await ctx.apply_all(body, objects)


async def revoke(ctx: Context, namespace: str, node: str, chain_pem: bytes, *, why: str) -> None:
    """Put a certificate on the node's CRL (and publish the CRL in the node's TLS Secret)."""
    body = await ctx.read(kube.KNOOPPUNT, namespace, node)
    if body is None:
        return
    try:
        kp = Knooppunt.model_validate(body)
    except ValidationError:
        return
    async with ctx.ca_locks[(namespace, node)]:
        ca_secret = await ctx.read(kube.SECRET, namespace, meta.NodeNames(node).ca)
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
            await ctx.apply_all(
                body,
                [
                    secret_builders.ca_secret(
                        kp,
                        cert_pem=material.cert_pem,
                        key_pem=material.key_pem,
                        revoked=certificates.dump_revoked(updated),
                    )
                ],
            )
            info = certificates.leaf_info(chain_pem)
            await ctx.events.record(
                body,
                reason="CertificateRevoked",
                message=f"revoked certificate {info.serial_hex} "
                f"(serialNumber {info.subject_serial_number}): {why}",
            )
        if not kp.spec.security.tls_secret:
            await refresh_tls_locked(ctx, body, kp)
    # The other nodes of the namespace trust this CA: give them its new CRL now.
    for other in await ctx.read_list(kube.KNOOPPUNT, namespace):
        if other["metadata"]["name"] != node:
            await refresh_tls(ctx, namespace, other["metadata"]["name"])


async def node_endpoint(ctx: Context, namespace: str, node: str) -> NodeEndpoint | None:
    material = await read_ca(ctx, namespace, node)
    if material is None:
        return None
    return NodeEndpoint(node, namespace, material)
