"""A real mutual-TLS handshake against the material of a node's TLS Secret (what the node's
runtime would load), for operator scenarios that must prove a bundle works, not just holds."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from node_runtime.security.tls.contexts import client_context, server_context


def mutual_tls(
    secret: Mapping[str, bytes], *, server_name: str, client_chain: bytes, client_key: bytes
) -> str | None:
    """Handshake a client certificate against a server built from ``secret`` (``tls.crt``,
    ``tls.key``, ``ca.crt``, ``crl.pem``): ``None`` when accepted, else the server's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in secret.items():
            (root / name).write_bytes(data)
        (root / "client.crt").write_bytes(client_chain)
        (root / "client.key").write_bytes(client_key)
        server = server_context(
            root / "tls.crt", root / "tls.key", root / "ca.crt", root / "crl.pem"
        )
        client = client_context(root / "client.crt", root / "client.key", root / "ca.crt")
        outcome: list[str | None] = []
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]

            def serve() -> None:
                conn, _ = listener.accept()
                try:
                    with server.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"ok")
                        outcome.append(None)
                except (ssl.SSLError, OSError) as exc:
                    outcome.append(getattr(exc, "verify_message", None) or str(exc))

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    client.wrap_socket(raw, server_hostname=server_name) as tls,
                ):
                    tls.recv(2)
            except (ssl.SSLError, OSError):
                pass
            thread.join(10)
        return outcome[0] if outcome else "no handshake"
