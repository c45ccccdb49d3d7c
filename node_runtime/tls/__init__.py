"""Mutual TLS for the node: NCSC-conform contexts, certificate identity, uvicorn integration."""

from node_runtime.tls.contexts import (
    ReloadableServerContext,
    client_context,
    reloadable_server_context,
    server_context,
)
from node_runtime.tls.identity import (
    CertificateIdentity,
    ChainVerification,
    ChainVerifier,
    identity_from_certificate,
    identity_from_der,
    load_certificates,
    verify_chain,
)

__all__ = [
    "CertificateIdentity",
    "ChainVerification",
    "ChainVerifier",
    "ReloadableServerContext",
    "client_context",
    "identity_from_certificate",
    "identity_from_der",
    "load_certificates",
    "reloadable_server_context",
    "server_context",
    "verify_chain",
]
