"""Mutual TLS for the node: NCSC-conform contexts, certificate identity, uvicorn integration."""

from node_runtime.security.tls.certificates import (
    CertificateIdentity,
    ChainVerification,
    ChainVerifier,
    identity_from_certificate,
    identity_from_der,
    load_certificates,
    verify_chain,
)
from node_runtime.security.tls.contexts import (
    ReloadableServerContext,
    client_context,
    reloadable_server_context,
    server_context,
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
