"""Gemeente resources from the Kubernetes API: list, then watch, live, without restarts.

On a cluster the operator does not copy tenants into the node's ConfigMap (400 gemeenten would
grow one object toward its size limit and every change would restart pods). The runtime lists
and watches `gemeenten.knooppunt.nl` in its namespace itself, with its service account (RBAC:
get/list/watch), and rebuilds its state on every change.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from node_runtime.model import GROUP, VERSION
from node_runtime.model.gemeente import Gemeente
from node_runtime.model.loading import ResourceError, parse_document

log = logging.getLogger("knooppunt.kubernetes")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class ApiAccess:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None = None


def _materialise(data: str, suffix: str, keep: list[Path]) -> str:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64decode(data))
    keep.append(Path(name))
    return name


def from_kubeconfig(path: Path) -> ApiAccess:
    """The current context of a kubeconfig (client certificate or token)."""
    config = yaml.safe_load(path.read_text())
    current = config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    temp: list[Path] = []
    try:
        ca = cluster.get("certificate-authority") or (
            _materialise(cluster["certificate-authority-data"], ".crt", temp)
            if "certificate-authority-data" in cluster
            else None
        )
        context = ssl.create_default_context(cafile=ca)
        cert = user.get("client-certificate") or (
            _materialise(user["client-certificate-data"], ".crt", temp)
            if "client-certificate-data" in user
            else None
        )
        key = user.get("client-key") or (
            _materialise(user["client-key-data"], ".key", temp)
            if "client-key-data" in user
            else None
        )
        if cert and key:
            context.load_cert_chain(cert, key)
    finally:
        for p in temp:
            p.unlink(missing_ok=True)
    return ApiAccess(cluster["server"].rstrip("/"), context, user.get("token"))


def in_cluster() -> ApiAccess:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    return ApiAccess(f"https://{host}:{port}", context, None)


class GemeenteWatch:
    """Keeps a live snapshot of the namespace's Gemeente resources."""

    def __init__(
        self, access: ApiAccess, namespace: str, *, on_change: Callable[[], None] | None = None
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.on_change = on_change
        self._items: dict[str, Gemeente] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/gemeenten"

    def snapshot(self) -> dict[str, Gemeente]:
        with self._lock:
            return dict(self._items)

    def start(self, *, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="gemeente-watch", daemon=True)
        self._thread.start()
        if not self._synced.wait(timeout):
            raise RuntimeError(f"could not list Gemeente resources from {self.access.server}")

    def stop(self) -> None:
        self._stop.set()

    def _headers(self) -> dict[str, str]:
        token = self.access.token
        if token is None and (SERVICE_ACCOUNT / "token").exists():
            token = (SERVICE_ACCOUNT / "token").read_text().strip()  # rotated: read each time
        return {"authorization": f"Bearer {token}"} if token else {}

    def _parse(self, obj: dict[str, Any]) -> Gemeente | None:
        try:
            res = parse_document(obj, where=f"Gemeente {obj['metadata'].get('name')}")
        except ResourceError as exc:
            log.error("invalid Gemeente ignored", extra={"error": str(exc)})
            return None
        return res if isinstance(res, Gemeente) else None

    def _replace(self, items: dict[str, Gemeente]) -> None:
        with self._lock:
            changed = items != self._items
            self._items = items
        if changed and self.on_change is not None:
            self.on_change()

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            items = dict(self._items)
        if kind == "DELETED":
            items.pop(name, None)
        else:
            parsed = self._parse(obj)
            if parsed is None:
                items.pop(name, None)
            else:
                items[name] = parsed
        self._replace(items)

    def _run(self) -> None:
        delay = 0.5
        with httpx.Client(
            base_url=self.access.server,
            verify=self.access.ssl_context,
            timeout=httpx.Timeout(30, read=330),
        ) as client:
            while not self._stop.is_set():
                try:
                    listing = client.get(self.path, headers=self._headers())
                    listing.raise_for_status()
                    body = listing.json()
                    items = {}
                    for obj in body.get("items", []):
                        parsed = self._parse(obj)
                        if parsed is not None:
                            items[obj["metadata"]["name"]] = parsed
                    self._replace(items)
                    self._synced.set()
                    version = body["metadata"]["resourceVersion"]
                    delay = 0.5
                    with client.stream(
                        "GET",
                        self.path,
                        headers=self._headers(),
                        params={
                            "watch": "true",
                            "resourceVersion": version,
                            "allowWatchBookmarks": "true",
                            "timeoutSeconds": "300",
                        },
                    ) as stream:
                        stream.raise_for_status()
                        for line in stream.iter_lines():
                            if self._stop.is_set():
                                return
                            if not line:
                                continue
                            event = json.loads(line)
                            kind = event.get("type")
                            if kind == "ERROR":  # e.g. 410 Gone: relist
                                break
                            if kind in ("ADDED", "MODIFIED", "DELETED"):
                                self._apply(kind, event["object"])
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    log.warning("Gemeente watch interrupted; relisting", extra={"error": str(exc)})
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
