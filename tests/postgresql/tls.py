"""A PostgreSQL server with ``ssl=on`` and the client-side PEM files to reach it.

Everything is issued at run time by the project's PKI code (nothing generated is committed):
a CA for the server, a server certificate valid for ``localhost`` only (so ``127.0.0.1``
does NOT match it: the host-name check is testable), an unrelated CA (a client that trusts
only that one must refuse the server), and a client CA with a certificate whose CN is the
server's certificate-login role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node_runtime.security.pki.authority import CertificateAuthority, create_root_ca
from node_runtime.security.pki.issuing import issue_client_certificate, issue_server_certificate
from tests.postgresql.server import CERT_ROLE, PostgresServer, ServerTls

SERVER_HOST = "localhost"


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _key_pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class TlsPostgres:
    server: PostgresServer
    ca: Path  # signs the server certificate
    other_ca: Path  # unrelated: a client trusting only this must refuse the server
    client_cert: Path  # CN = CERT_ROLE, signed by the server's client CA
    client_key: Path

    def url(self, database: str | None = None, *, host: str = SERVER_HOST) -> str:
        """The application role's URL, through ``host`` (``localhost`` matches the
        certificate, ``127.0.0.1`` does not)."""
        url = self.server.url_for(database or self.server.database)
        return url.replace("@127.0.0.1:", f"@{host}:")

    def cert_url(self, database: str | None = None) -> str:
        """URL of the certificate-login role: no password, the client certificate logs in."""
        db = database or self.server.database
        return f"postgresql+psycopg://{CERT_ROLE}@{SERVER_HOST}:{self.server.port}/{db}"


def server_tls(
    ca: CertificateAuthority, *, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
) -> ServerTls:
    """ssl=on material for a PostgresServer: a certificate for these names from ``ca``."""
    leaf = issue_server_certificate(ca, dns_names=dns_names, ip_addresses=ip_addresses)
    return ServerTls(chain=_pem(*leaf.chain), key=_key_pem(leaf.key), ca=_pem(ca.certificate))


def start_tls_postgres(bin_dir: Path, directory: Path) -> TlsPostgres:
    ca = create_root_ca(common_name="knooppunt test PostgreSQL CA")
    other = create_root_ca(common_name="knooppunt test unrelated CA")
    client_ca = create_root_ca(common_name="knooppunt test PostgreSQL client CA")
    client = issue_client_certificate(
        client_ca,
        organisation="Knooppunt test",
        serial_number="00000001000000000000",
        common_name=CERT_ROLE,
    )
    files = {
        "ca.crt": _pem(ca.certificate),
        "other-ca.crt": _pem(other.certificate),
        "client.crt": _pem(*client.chain),
        "client.key": _key_pem(client.key),
    }
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        path.chmod(0o600)
    server = PostgresServer(
        bin_dir,
        tls=replace(server_tls(ca, dns_names=[SERVER_HOST]), client_ca=_pem(client_ca.certificate)),
    )
    server.start()
    return TlsPostgres(
        server=server,
        ca=directory / "ca.crt",
        other_ca=directory / "other-ca.crt",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
