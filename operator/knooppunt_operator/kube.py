"""The operator's access to the API server, on ``kubernetes_asyncio``, and its Events.

kopf watches; everything the operator itself asks or writes goes through :class:`KubeClient`,
a few JSON-in/JSON-out verbs over ``kubernetes_asyncio``'s ``ApiClient`` (the REST paths
``kubectl`` uses, no discovery round trips). How to log in is the library's: a kubeconfig
(several paths in ``KUBECONFIG`` are merged as kubectl merges them, exec credential plugins
such as EKS/GKE/AKS run and are re-run when their token expires, token files are re-read),
or the in-cluster service account (its token, rotated by the kubelet, is re-read), or an
explicit URL and token for tests and development. kopf logs in with the same credentials
(:func:`kopf_connection`). The runtime's Gemeente watch uses the same library.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import json
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import incluster_config, kube_config

from knooppunt_operator import FIELD_MANAGER

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"


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
    """The API server refused a request (``status`` is the HTTP status code), or could not be
    reached (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


def _error(exc: ApiException) -> ApiError:
    status = int(exc.status or 0)
    reason, message = str(exc.reason or ""), str(exc.body or "")
    try:
        body = json.loads(exc.body or "")
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or message)
    except (TypeError, ValueError, AttributeError):
        pass
    cls = NotFound if status == 404 else Conflict if status == 409 else ApiError
    return cls(status, reason, message[:2000])


# ------------------------------------------------------------------------------- credentials


def _run_sync(coroutine: Any) -> Any:
    """Run a coroutine to completion from synchronous code, inside a running loop or not."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


@dataclass(frozen=True)
class Credentials:
    """How to reach and authenticate to the API server.

    Made by :meth:`from_env` (explicit URL, in-cluster service account, else the kubeconfig),
    :meth:`from_kubeconfig` or :meth:`in_cluster`; tests also build one from explicit
    material. A kubeconfig or service-account source is loaded again by
    :meth:`configuration` with ``kubernetes_asyncio`` (exec plugins, rotating tokens); the
    explicit fields then hold what that source gave at the time it was read.
    """

    server: str
    token: str | None = None
    ca_data: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    insecure: bool = False
    default_namespace: str | None = None
    kubeconfig: str | None = None
    """The kubeconfig path(s) this came from (``os.pathsep``-separated, merged as kubectl)."""
    context: str | None = None
    service_account: Path | None = None
    """The in-cluster service-account directory this came from."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Explicit URL, else in-cluster service account, else the kubeconfig(s)."""
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
        return cls.from_kubeconfig(env.get("KUBECONFIG") or DEFAULT_KUBECONFIG)

    @classmethod
    def in_cluster(cls, host: str, port: str, directory: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
        namespace_file = directory / "namespace"
        return cls(
            server=f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}",
            ca_data=(directory / "ca.crt").read_bytes(),
            default_namespace=namespace_file.read_text().strip()
            if namespace_file.is_file()
            else None,
            service_account=directory,
        )

    @classmethod
    def from_kubeconfig(
        cls, paths: str | os.PathLike[str], context: str | None = None
    ) -> Credentials:
        """One kubeconfig, or several (``os.pathsep``-separated, as in ``KUBECONFIG``)."""
        source = os.fspath(paths)
        loader = _kubeconfig_loader(source, context)
        configuration = Configuration()
        _run_sync(loader.load_and_set(configuration))
        token = configuration.api_key.get("BearerToken")
        return cls(
            server=str(configuration.host).rstrip("/"),
            token=token.split(" ", 1)[1] if token and token.startswith("Bearer ") else token,
            ca_data=_read(configuration.ssl_ca_cert),
            client_cert=_read(configuration.cert_file),
            client_key=_read(configuration.key_file),
            insecure=not configuration.verify_ssl,
            default_namespace=(loader.current_context or {}).get("context", {}).get("namespace"),
            kubeconfig=source,
            context=context,
        )

    # -------------------------------------------------------------- kubernetes_asyncio

    async def configuration(self) -> Configuration:
        """A ``kubernetes_asyncio`` configuration that keeps its credentials fresh."""
        configuration = Configuration()
        if self.service_account is not None:
            host, _, port = self.server.removeprefix("https://").rpartition(":")
            incluster_config.InClusterConfigLoader(
                token_filename=str(self.service_account / "token"),
                cert_filename=str(self.service_account / "ca.crt"),
                environ={
                    "KUBERNETES_SERVICE_HOST": host.strip("[]"),
                    "KUBERNETES_SERVICE_PORT": port,
                },
            ).load_and_set(configuration)  # re-reads the token file (kubelet rotation)
            return configuration
        if self.kubeconfig is not None:
            loader = _kubeconfig_loader(self.kubeconfig, self.context)
        else:
            loader = kube_config.KubeConfigLoader(config_dict=self._as_kubeconfig())
        await loader.load_and_set(configuration)
        if loader._user is not None and "exec" in loader._user:
            _refresh_exec_tokens(configuration, loader)
        return configuration

    def _as_kubeconfig(self) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        cluster: dict[str, Any] = {"server": self.server}
        if self.ca_data:
            cluster["certificate-authority-data"] = b64(self.ca_data)
        if self.insecure:
            cluster["insecure-skip-tls-verify"] = True
        user: dict[str, Any] = {}
        if self.token:
            user["token"] = self.token
        if self.client_cert and self.client_key:
            user["client-certificate-data"] = b64(self.client_cert)
            user["client-key-data"] = b64(self.client_key)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "explicit",
            "clusters": [{"name": "explicit", "cluster": cluster}],
            "users": [{"name": "explicit", "user": user}],
            "contexts": [
                {
                    "name": "explicit",
                    "context": {
                        "cluster": "explicit",
                        "user": "explicit",
                        **({"namespace": self.default_namespace} if self.default_namespace else {}),
                    },
                }
            ],
        }

    # ------------------------------------------------- synchronous helpers (tools, tests)

    def current_token(self) -> str | None:
        """The bearer token now (the service account's file is read again)."""
        if self.service_account is not None:
            return (self.service_account / "token").read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https") or self.insecure:
            return False
        context = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.client_cert and self.client_key:
            with key_files(self.client_cert, self.client_key) as (cert, key):
                context.load_cert_chain(cert, key)
        return context


def _kubeconfig_loader(paths: str, context: str | None) -> kube_config.KubeConfigLoader:
    merged = kube_config.KubeConfigMerger(paths).config
    if merged is None:
        raise FileNotFoundError(f"no kubeconfig found at {paths}")
    return kube_config.KubeConfigLoader(
        config_dict=merged, config_base_path=None, active_context=context
    )


def _refresh_exec_tokens(
    configuration: Configuration, loader: kube_config.KubeConfigLoader
) -> None:
    """Run the exec credential plugin again once its token has expired (the library runs it
    only when asked; without an expiry the token is kept until the API server refuses it)."""

    async def refresh(configuration: Configuration, *_: Any) -> None:
        expiry = getattr(loader, "exec_plugin_expiry", None)
        if expiry is None or expiry > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10):
            return
        await loader.load_from_exec_plugin()
        configuration.api_key["BearerToken"] = loader.token

    async def force(configuration: Configuration) -> None:
        if hasattr(loader, "exec_plugin_expiry"):
            del loader.exec_plugin_expiry
        await loader.load_from_exec_plugin()
        configuration.api_key["BearerToken"] = loader.token

    configuration.refresh_api_key_hook = refresh
    configuration.knooppunt_reauthenticate = force


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
    """The few verbs the operator needs, as JSON in and JSON out, over ``kubernetes_asyncio``.

    The library's ``ApiClient`` is made on first use, in the event loop that uses it.
    """

    credentials: Credentials
    timeout: float = 30.0
    user_agent: str = f"{FIELD_MANAGER}/0.1"
    _api: ApiClient | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    async def api(self) -> ApiClient:
        if self._api is None:
            configuration = await self.credentials.configuration()
            api = ApiClient(configuration)
            api.user_agent = self.user_agent
            self._api = api
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the JSON answer, or :class:`ApiError`. A 401 is retried once after
        the credentials are renewed (an exec plugin's token that expired early)."""
        api = await self.api()
        for attempt in (1, 2):
            try:
                result = await api.call_api(
                    path,
                    method,
                    query_params=list((query or {}).items()),
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    response_types_map={200: "object", 201: "object", 202: "object"},
                    _return_http_data_only=True,
                    _request_timeout=self.timeout,
                )
            except ApiException as exc:
                renew = getattr(api.configuration, "knooppunt_reauthenticate", None)
                if exc.status == 401 and attempt == 1 and renew is not None:
                    await renew(api.configuration)
                    continue
                raise _error(exc) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ApiError(0, type(exc).__name__, str(exc) or "API server unreachable") from exc
            return dict(result or {})
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", kind.path(namespace, name))
        except NotFound:
            return None

    async def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        query = {}
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            answer = await self.request("GET", kind.path(namespace), query=query)
        except NotFound:
            return []
        items = [dict(i) for i in answer.get("items") or []]
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
        return await self.request(
            "POST", kind.path(namespace), query={"fieldManager": FIELD_MANAGER}, body=dict(body)
        )

    async def apply(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply (creates the object when it does not exist)."""
        return await self.request(
            "PATCH",
            kind.path(namespace, name, subresource),
            query={"fieldManager": field_manager, "force": "true" if force else "false"},
            body=dict(body),
            content_type="application/apply-patch+yaml",
        )

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
        try:
            return await self.request(
                "PATCH",
                kind.path(namespace, name, subresource),
                query={"fieldManager": FIELD_MANAGER},
                body=dict(patch),
                content_type="application/merge-patch+json",
            )
        except NotFound:
            return None

    async def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; ``False`` when it was already gone."""
        try:
            await self.request(
                "DELETE", kind.path(namespace, name), body={"propagationPolicy": "Background"}
            )
        except NotFound:
            return False
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
        except ApiError as exc:
            logger.warning("could not post event %s for %s: %s", reason, meta.get("name"), exc)


async def kopf_connection(credentials: Credentials) -> Any:
    """The same credentials as a ``kopf.ConnectionInfo`` (for the operator's login handler);
    kopf logs in again with it when the API server refuses the token (exec plugins)."""
    import kopf

    configuration = await credentials.configuration()
    header = await configuration.get_api_key_with_prefix("BearerToken")
    scheme, _, token = (header or "").partition(" ")
    return kopf.ConnectionInfo(
        server=str(configuration.host).rstrip("/"),
        ca_path=configuration.ssl_ca_cert,
        insecure=(not configuration.verify_ssl) or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        default_namespace=credentials.default_namespace,
    )
