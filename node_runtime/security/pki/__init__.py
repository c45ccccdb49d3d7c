"""Development PKI modelled on PKIoverheid private services (root → issuing CA → leaves)."""

from node_runtime.security.pki.authority import (
    DEFAULT_KEY_ALGORITHM,
    INTERMEDIATE_CA_NAME,
    ROOT_CA_NAME,
    CertificateAuthority,
    KeyAlgorithm,
    PkiError,
    create_intermediate_ca,
    create_root_ca,
    generate_private_key,
)
from node_runtime.security.pki.issuing import (
    IssuedCertificate,
    RevokedEntry,
    build_crl,
    issue_client_certificate,
    issue_server_certificate,
    renew_certificate,
)
from node_runtime.security.pki.store import (
    DevPki,
    IndexEntry,
    IssuedPaths,
    PkiStore,
    ensure_dev_pki,
)

__all__ = [
    "DEFAULT_KEY_ALGORITHM",
    "INTERMEDIATE_CA_NAME",
    "ROOT_CA_NAME",
    "CertificateAuthority",
    "DevPki",
    "IndexEntry",
    "IssuedCertificate",
    "IssuedPaths",
    "KeyAlgorithm",
    "PkiError",
    "PkiStore",
    "RevokedEntry",
    "build_crl",
    "create_intermediate_ca",
    "create_root_ca",
    "ensure_dev_pki",
    "generate_private_key",
    "issue_client_certificate",
    "issue_server_certificate",
    "renew_certificate",
]
