"""A small async client for the Kubernetes API (httpx), its credentials, and Events.

kopf has no generic client, so the operator talks to the API server itself: the same
credentials that kopf logs in with (in-cluster service account, a kubeconfig, or an explicit
URL for tests and development), the same REST paths ``kubectl`` uses. Tests point it at the
kmock emulator or at a real control plane with nothing else changed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped,unused-ignore]

from knooppunt_operator import FIELD_MANAGER

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


# ------------------------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Kind:
    """A resource kind and where it lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


KNOOPPUNT = Kind("knooppunt.nl/v1alpha1", "Knooppunt", "knooppunten")
SECTOR_CONNECTOR = Kind("knooppunt.nl/v1alpha1", "SectorConnector", "sectorconnectors")
GEMEENTE = Kind("knooppunt.nl/v1alpha1", "Gemeente", "gemeenten")
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
SECRET = Kind("v1", "Secret", "secrets")
SERVICE = Kind("v1", "Service", "services")
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
PERSISTENT_VOLUME_CLAIM = Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims")
EVENT = Kind("v1", "Event", "events")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
CONTROLLER_REVISION = Kind("apps/v1", "ControllerRevision", "controllerrevisions")
POD_DISRUPTION_BUDGET = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
NETWORK_POLICY = Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
ROLE = Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")

KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        KNOOPPUNT,
        SECTOR_CONNECTOR,
        GEMEENTE,
        CONFIG_MAP,
        SECRET,
        SERVICE,
        SERVICE_ACCOUNT,
        PERSISTENT_VOLUME_CLAIM,
        EVENT,
        DEPLOYMENT,
        CONTROLLER_REVISION,
        POD_DISRUPTION_BUDGET,
        NETWORK_POLICY,
        ROLE,
        ROLE_BINDING,
        LEASE,
    )
}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    try:
        return KINDS[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}") from None


# ------------------------------------------------------------------------------------ errors


class ApiError(Exception):
    """The API server refused a request; ``status`` is the HTTP status code."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        reason = str(body.get("reason") or response.reason_phrase)
        message = str(body.get("message") or response.text)
    except ValueError:
        reason, message = response.reason_phrase, response.text
    cls = (
        NotFound
        if response.status_code == 404
        else (Conflict if response.status_code == 409 else ApiError)
    )
    raise cls(response.status_code, reason, message[:2000])


# ------------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to the API server."""

    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_data: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    insecure: bool = False
    default_namespace: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Explicit URL, else in-cluster service account, else the current kubeconfig."""
        env = os.environ if environ is None else environ
        url = env.get("KNOOPPUNT_OPERATOR_KUBE_URL")
        if url:
            return cls(
                server=url.rstrip("/"),
                token=env.get("KNOOPPUNT_OPERATOR_KUBE_TOKEN") or None,
                insecure=env.get("KNOOPPUNT_OPERATOR_KUBE_INSECURE", "") in ("1", "true"),
            )
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        if host and port and (SERVICE_ACCOUNT_DIR / "token").is_file():
            return cls.in_cluster(host, port)
        config = env.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
            Path.home() / ".kube" / "config"
        )
        return cls.from_kubeconfig(Path(config))

    @classmethod
    def in_cluster(cls, host: str, port: str, directory: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
        namespace_file = directory / "namespace"
        return cls(
            server=f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}",
            token_file=directory / "token",
            ca_data=(directory / "ca.crt").read_bytes(),
            default_namespace=namespace_file.read_text().strip()
            if namespace_file.is_file()
            else None,
        )

    @classmethod
    def from_kubeconfig(cls, path: Path, context: str | None = None) -> Credentials:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = context or config["current-context"]
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        users = config.get("users") or []
        user = next((u.get("user") or {} for u in users if u["name"] == ctx.get("user")), {})
        base = path.parent

        def data(inline: str, file: str, source: Mapping[str, Any]) -> bytes | None:
            if source.get(inline):
                return base64.b64decode(str(source[inline]))
            if source.get(file):
                return (base / str(source[file])).read_bytes()
            return None

        return cls(
            server=str(cluster["server"]).rstrip("/"),
            token=user.get("token"),
            token_file=base / user["tokenFile"] if user.get("tokenFile") else None,
            ca_data=data("certificate-authority-data", "certificate-authority", cluster),
            client_cert=data("client-certificate-data", "client-certificate", user),
            client_key=data("client-key-data", "client-key", user),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            default_namespace=ctx.get("namespace"),
        )

    def current_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        if self.insecure:
            return False
        context = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.ca_data is None:
            context.load_default_certs()
        if self.client_cert and self.client_key:
            with key_files(self.client_cert, self.client_key) as (cert, key):
                context.load_cert_chain(cert, key)
        return context


class _Bearer(httpx.Auth):
    """Reads the token on every request: in-cluster tokens are rotated by the kubelet."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._credentials.current_token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request


class key_files:
    """Certificate and key in private temporary files (ssl only loads from files)."""

    def __init__(self, cert: bytes, key: bytes) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="knooppunt-operator-")
        self._cert, self._key = cert, key

    def __enter__(self) -> tuple[str, str]:
        root = Path(self._dir.name)
        cert_path, key_path = root / "tls.crt", root / "tls.key"
        for path, content in ((cert_path, self._cert), (key_path, self._key)):
            path.touch(mode=0o600)
            path.write_bytes(content)
        return str(cert_path), str(key_path)

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


# ------------------------------------------------------------------------------------ client


@dataclass
class KubeClient:
    """The few verbs the operator needs, as JSON in and JSON out."""

    credentials: Credentials
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    user_agent: str = f"{FIELD_MANAGER}/0.1"
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.credentials.server,
                verify=self.credentials.ssl_context(),
                auth=_Bearer(self.credentials),
                timeout=self.timeout,
                transport=self.transport,
                headers={"User-Agent": self.user_agent},
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        response = await self.http.get(kind.path(namespace, name))
        if response.status_code == 404:
            return None
        _raise_for(response)
        return dict(response.json())

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        response = await self.http.get(kind.path(namespace), params=params)
        if response.status_code == 404:
            return []
        _raise_for(response)
        items = [dict(i) for i in response.json().get("items") or []]
        if labels:  # the selector again, locally: cheap, and exact with any server
            items = [
                i
                for i in items
                if all(
                    ((i.get("metadata") or {}).get("labels") or {}).get(k) == v
                    for k, v in labels.items()
                )
            ]
        return items

    async def create(
        self, kind: Kind, namespace: str | None, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        response = await self.http.post(
            kind.path(namespace), json=dict(body), params={"fieldManager": FIELD_MANAGER}
        )
        _raise_for(response)
        return dict(response.json())

    async def apply(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
    ) -> dict[str, Any]:
        """Server-side apply (creates the object when it does not exist)."""
        response = await self.http.patch(
            kind.path(namespace, name),
            content=json.dumps(body).encode(),
            params={"fieldManager": field_manager, "force": "true" if force else "false"},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        _raise_for(response)
        return dict(response.json())

    async def merge_patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        """JSON merge patch; ``None`` when the object is gone."""
        response = await self.http.patch(
            kind.path(namespace, name, subresource),
            content=json.dumps(patch).encode(),
            params={"fieldManager": FIELD_MANAGER},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        if response.status_code == 404:
            return None
        _raise_for(response)
        return dict(response.json())

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; ``False`` when it was already gone."""
        response = await self.http.request(
            "DELETE",
            kind.path(namespace, name),
            json={"propagationPolicy": "Background"},
        )
        if response.status_code == 404:
            return False
        _raise_for(response)
        return True


# ------------------------------------------------------------------------------------ events


def _micro_time(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class EventRecorder:
    """Posts core/v1 Events about the operator's actions on an object (best effort)."""

    client: KubeClient
    component: str = FIELD_MANAGER
    instance: str = field(default_factory=socket.gethostname)
    recorded: list[tuple[str, str, str]] = field(default_factory=list, repr=False)

    async def record(
        self, obj: Mapping[str, Any], *, reason: str, message: str, type_: str = "Normal"
    ) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = dt.datetime.now(dt.UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventTime": _micro_time(now),
            "action": reason,
            "count": 1,
        }
        self.recorded.append((str(meta.get("name")), reason, message))
        del self.recorded[:-200]
        try:
            await self.client.create(EVENT, namespace, event)
        except (ApiError, httpx.HTTPError) as exc:
            logger.warning("could not post event %s for %s: %s", reason, meta.get("name"), exc)


def kopf_connection(credentials: Credentials) -> Any:
    """The same credentials as a ``kopf.ConnectionInfo`` (for the operator's login handler)."""
    import kopf

    cert, key = credentials.client_cert, credentials.client_key
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_data=credentials.ca_data,
        insecure=credentials.insecure or None,
        scheme="Bearer" if credentials.current_token() else None,
        token=credentials.current_token(),
        certificate_data=cert,
        private_key_data=key,
        default_namespace=credentials.default_namespace,
    )
