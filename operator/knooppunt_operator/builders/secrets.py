"""Secrets: the node's CA, its TLS material and pseudonym key; gemeente client certificates.

The builders take key material that was generated (or read back) beforehand, so the same
input always gives the same object and unchanged material is never re-applied.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from knooppunt_operator.builders import meta
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.knooppunt import Knooppunt


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(data: Mapping[str, Any] | None, key: str) -> bytes | None:
    value = (data or {}).get(key)
    return base64.b64decode(value) if value else None


def _secret(
    name: str,
    owner: Knooppunt | Gemeente,
    labels: Mapping[str, str],
    data: Mapping[str, bytes | str],
    *,
    type_: str = "Opaque",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta.object_meta(name, owner.metadata.namespace, owner=owner, labels=labels),
        "type": type_,
        "data": {key: b64(value) for key, value in data.items()},
    }


def ca_secret(kp: Knooppunt, *, cert_pem: bytes, key_pem: bytes, revoked: str) -> dict[str, Any]:
    """``<node>-ca``: the node's CA key and certificate and its revocation list (never mounted)."""
    return _secret(
        meta.NodeNames(kp.name).ca,
        kp,
        meta.node_labels(kp.name, "ca"),
        {"ca.crt": cert_pem, "ca.key": key_pem, "revoked.json": revoked},
    )


def tls_secret(
    kp: Knooppunt,
    *,
    chain_pem: bytes,
    key_pem: bytes,
    trust_pem: bytes,
    crl_pem: bytes,
    issuers_json: bytes | None = None,
) -> dict[str, Any]:
    """``<node>-tls``: server chain and key, trusted client CAs, the CRL of every trusted CA,
    and the issuer policy (which CA may speak for which organisation)."""
    data = {"tls.crt": chain_pem, "tls.key": key_pem, "ca.crt": trust_pem, "crl.pem": crl_pem}
    if issuers_json is not None:
        data["issuers.json"] = issuers_json
    return _secret(
        meta.NodeNames(kp.name).tls,
        kp,
        meta.node_labels(kp.name, "tls"),
        data,
        type_="kubernetes.io/tls",
    )


def pseudonym_secret(kp: Knooppunt, *, key_hex: str) -> dict[str, Any]:
    """``<node>-pseudonym``: 64 hex characters, created once and never rotated."""
    return _secret(
        meta.NodeNames(kp.name).pseudonym,
        kp,
        meta.node_labels(kp.name, "pseudonym"),
        {"key": key_hex},
    )


def client_tls_secret(
    gemeente: Gemeente, *, node: str, chain_pem: bytes, key_pem: bytes, ca_pem: bytes
) -> dict[str, Any]:
    """``<gemeente>-client-tls``: the gemeente's client certificate issued by the node's CA."""
    labels = {
        "app.kubernetes.io/part-of": meta.PART_OF,
        "app.kubernetes.io/managed-by": meta.MANAGED_BY,
        "app.kubernetes.io/component": "client-certificate",
        meta.GEMEENTE_LABEL: gemeente.name,
        meta.NODE_LABEL: node,
    }
    return _secret(
        meta.client_tls_secret_name(gemeente.name),
        gemeente,
        labels,
        {"tls.crt": chain_pem, "tls.key": key_pem, "ca.crt": ca_pem},
        type_="kubernetes.io/tls",
    )
