"""The admission webhook server, reached by the API server through a Service.

kopf's :class:`kopf.WebhookServer` describes itself to the API server by URL; in a cluster the
API server must be pointed at a Service instead (it cannot resolve cluster DNS names). This
server serves the same way and reports a ``service`` client config. Its certificate comes from
a mounted directory (``tls.crt``, ``tls.key``, optional ``ca.crt``) or is made up at start-up
(fine for one replica; several replicas need a shared certificate).
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import kopf

from knooppunt_operator.certificates import pem_cert, pem_key
from node_runtime.security.pki.authority import create_root_ca
from node_runtime.security.pki.issuing import issue_server_certificate

SERVICE_PORT = 443


def self_signed(
    directory: Path, dns_names: list[str], ip_addresses: list[str] | None = None
) -> tuple[Path, Path, Path]:
    """A throw-away CA and server certificate for the webhook server."""
    ca = create_root_ca(common_name="knooppunt-operator webhook CA")
    leaf = issue_server_certificate(ca, dns_names=dns_names, ip_addresses=ip_addresses or [])
    cert, key, ca_file = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    cert.write_bytes(pem_cert(leaf.certificate) + pem_cert(ca.certificate))
    key.touch(mode=0o600)
    key.write_bytes(pem_key(leaf.key))
    ca_file.write_bytes(pem_cert(ca.certificate))
    return cert, key, ca_file


class ServiceWebhookServer(kopf.WebhookServer):
    def __init__(
        self, *, service: str, namespace: str, port: int, cert_dir: str | None = None
    ) -> None:
        names = [
            service,
            f"{service}.{namespace}",
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
        ]
        if cert_dir:
            root = Path(cert_dir)
            cert, key = root / "tls.crt", root / "tls.key"
            ca: Path | None = root / "ca.crt" if (root / "ca.crt").is_file() else None
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="knooppunt-webhook-")
            cert, key, ca = self_signed(Path(self._tmp.name), names)
        super().__init__(
            addr="0.0.0.0",  # noqa: S104 - the server listens inside the pod
            port=port,
            host=names[2],
            certfile=str(cert),
            pkeyfile=str(key),
            cafile=str(ca) if ca else None,
        )
        self.service = service
        self.namespace = namespace

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            client_config = kopf.WebhookClientConfig(
                service=kopf.WebhookClientConfigService(
                    namespace=self.namespace, name=self.service, port=SERVICE_PORT, path=""
                )
            )
            if config.get("caBundle"):
                client_config["caBundle"] = config["caBundle"]
            yield client_config


class UrlWebhookServer(kopf.WebhookServer):
    """Development: the API server calls the operator by URL (e.g. a local control plane)."""

    def __init__(self, *, host: str, port: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="knooppunt-webhook-")
        try:
            ipaddress.ip_address(host)
            names, ips = [], [host]
        except ValueError:
            names, ips = [host], []
        cert, key, ca = self_signed(Path(self._tmp.name), names, ips)
        super().__init__(
            addr=host, port=port, host=host, certfile=str(cert), pkeyfile=str(key), cafile=str(ca)
        )
