"""An existing Kubernetes cluster (kind, k3s, a real one) in place of the local control plane.

``$KNOOPPUNT_TEST_KUBECONFIG`` (and optionally ``$KNOOPPUNT_TEST_CONTEXT``) name it; the
``controlplane`` fixture then starts nothing and yields an `ExistingCluster` with the interface
the tests use (`cluster.KubeCluster`):

    with ExistingCluster(Path("~/.kube/config").expanduser(), context="kind-kind") as cluster:
        with cluster.client() as http:                 # httpx.Client, the kubeconfig's user
            http.get("/api/v1/namespaces").raise_for_status()
        cluster.kubeconfig                             # the same user, flattened into one file
        cluster.kubeconfig_for_service_account("ns", "operator")    # TokenRequest API
        cluster.kubeconfig_for_user("alice", groups=["devs"])       # CertificateSigningRequest

The kubeconfig may hold the CA and client certificate as data or as files, a token, a token
file or an ``exec`` credential plugin (run once, at start); `kubeconfig` is a self-contained
copy for that one context, so that every client (httpx, kopf, the runtime) can use it. Its user
must be cluster-admin: the suite installs CRDs and cluster RBAC and approves certificate
requests.

Clean-up: every object created through `client` (so also `apply`, the namespace fixture,
service accounts) is remembered, and `close` deletes what the session created and waits until
it is gone: namespaces (their custom resources of ``finalizer_groups`` lose their finalizers
first, since the operator that set them no longer runs), then cluster-scoped objects (CRDs,
ClusterRoles, ClusterRoleBindings, PersistentVolumes) and objects in namespaces that existed
before. What existed before the session is never deleted (though ``apply`` may have changed
it). Anything still there after ``cleanup_timeout`` fails the session.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from knooppunt_operator import kube

from tests.controlplane.cluster import CertPair, KubeCluster, wait_for, write_kubeconfig

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
EXEC_INFO_VERSION = "client.authentication.k8s.io/v1"


class ExistingClusterError(RuntimeError):
    """The kubeconfig cannot be used, the cluster is unreachable, or the user lacks rights."""


class ExistingCluster(KubeCluster):
    """A running cluster reached through a kubeconfig; see the module docstring.

    Parameters:
        kubeconfig: path of the kubeconfig (one file).
        context: its context to use (default: its current-context).
        workdir: parent of the temporary directory for the flattened kubeconfigs.
        finalizer_groups: API groups whose custom resources in the session's own namespaces
            lose their finalizers at clean-up.
        cleanup_timeout: how long `close` waits for the session's objects to disappear.
    """

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        *,
        context: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        finalizer_groups: Iterable[str] = ("knooppunt.nl",),
        cleanup_timeout: float = 180.0,
    ) -> None:
        self.source = Path(kubeconfig)
        self.context = context
        self.finalizer_groups = tuple(finalizer_groups)
        self.cleanup_timeout = cleanup_timeout
        self._workdir_parent = workdir
        self.dir: Path | None = None
        self._discovery_cache: dict[str, list[dict[str, Any]]] = {}
        self._credentials: kube.Credentials | None = None
        self._verify: ssl.SSLContext | bool = True
        self._ca_file: Path | None = None
        self._lock = threading.Lock()
        self._namespaces: list[str] = []
        self._objects: list[str] = []
        self._user_seq = 0

    # ----------------------------------------------------------------- interface

    @property
    def server(self) -> str:
        return self._creds.server

    @property
    def kubeconfig(self) -> Path:
        return self._state / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path | None:
        """The cluster's CA (PEM file), unless the kubeconfig trusts the system's CAs."""
        return self._ca_file

    @property
    def created(self) -> list[str]:
        """REST paths of what this session created and `close` removes (namespaces first)."""
        with self._lock:
            return [f"/api/v1/namespaces/{ns}" for ns in self._namespaces] + list(self._objects)

    def client(
        self,
        client_cert: CertPair | None = None,
        *,
        token: str | None = None,
        track: bool = True,
        **kwargs: Any,
    ) -> httpx.Client:
        """An httpx.Client as the kubeconfig's user (or with a token / client certificate);
        what it creates is remembered for clean-up unless ``track=False``."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None or client_cert is not None:
            creds = kube.Credentials(
                server=self.server,
                ca_data=self._creds.ca_data,
                insecure=self._creds.insecure,
                client_cert=client_cert.cert.read_bytes() if client_cert else None,
                client_key=client_cert.key.read_bytes() if client_cert else None,
            )
            verify = creds.ssl_context()
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
        else:
            verify = self._verify
            admin_token = self._creds.current_token()
            if admin_token:
                headers.setdefault("Authorization", f"Bearer {admin_token}")
        kwargs.setdefault("timeout", 30.0)
        hooks = {"response": [self._remember]} if track else {}
        return httpx.Client(
            base_url=self.server, verify=verify, headers=headers, event_hooks=hooks, **kwargs
        )

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, create: bool = True
    ) -> Path:
        """A kubeconfig with a bound token (TokenRequest API) of `namespace/name`."""
        token = self.service_account_token(namespace, name, create=create)
        user = f"system:serviceaccount:{namespace}:{name}"
        return write_kubeconfig(
            self._state / f"sa-{_dns_label(namespace)}-{_dns_label(name)}.kubeconfig",
            self.server,
            self._ca_file,
            user=user,
            token=token,
            namespace=namespace,
            insecure=self._creds.insecure,
        )

    def kubeconfig_for_user(
        self, user: str, groups: Iterable[str] = (), namespace: str | None = None
    ) -> Path:
        """A kubeconfig authenticating as `user` in `groups` with a client certificate that the
        cluster signs (`issue_client_cert`); no rights until RBAC grants some."""
        pair = self.issue_client_cert(user, groups)
        return write_kubeconfig(
            self._state / f"{pair.cert.stem}.kubeconfig",
            self.server,
            self._ca_file,
            user=user,
            client=pair,
            namespace=namespace,
            insecure=self._creds.insecure,
        )

    def issue_client_cert(
        self, user: str, groups: Iterable[str] = (), *, timeout: float = 30.0
    ) -> CertPair:
        """A client certificate for `user` (CN) in `groups` (O): a CertificateSigningRequest for
        ``kubernetes.io/kube-apiserver-client``, approved by the admin and signed by the cluster.

        Skips the test when the cluster does not sign it (its controller manager signs that
        signer only when it has the cluster CA's key; some managed clusters do not).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(attrs))
            .sign(key, hashes.SHA256())
        )
        name = f"knooppunt-test-{_dns_label(user)[:40]}-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {
                "request": base64.b64encode(
                    request.public_bytes(serialization.Encoding.PEM)
                ).decode(),
                "signerName": CLIENT_SIGNER,
                "usages": ["client auth"],
                "expirationSeconds": 86400,
            },
        }
        with self.client() as http:
            r = http.post(CSR_PATH, json=body)
            r.raise_for_status()
            try:
                approval = r.json()
                approval["status"] = {
                    "conditions": [
                        {
                            "type": "Approved",
                            "status": "True",
                            "reason": "KnooppuntTests",
                            "message": "a test user of the Knooppunt test suite",
                        }
                    ]
                }
                http.put(f"{CSR_PATH}/{name}/approval", json=approval).raise_for_status()
                try:
                    pem: bytes = wait_for(
                        lambda: _issued(http, name) or b"",
                        timeout=timeout,
                        message=f"CertificateSigningRequest {name} signed",
                    )
                except TimeoutError as exc:
                    why = f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)
                    pytest.skip(
                        f"existing cluster: no client certificate for test user {user!r}: {why}"
                        f" (the cluster does not sign {CLIENT_SIGNER} requests)"
                    )
            finally:
                http.delete(f"{CSR_PATH}/{name}")
        self._user_seq += 1
        stem = f"user-{self._user_seq}-{_dns_label(user)}"
        pair = CertPair(self._state / f"{stem}.crt", self._state / f"{stem}.key")
        pair.cert.write_bytes(pem)
        pair.key.touch(mode=0o600)
        pair.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pair

    def logs(self) -> dict[str, str]:
        """No component logs: the cluster's processes are not ours."""
        return {}

    def format_logs(self, lines: int = 60) -> str:
        return f"(existing cluster {self.server}: no component logs)"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ExistingCluster:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> ExistingCluster:
        """Flatten the kubeconfig, check that the cluster answers and the user is
        cluster-admin."""
        self.dir = Path(tempfile.mkdtemp(prefix="knooppunt-existing-", dir=self._workdir_parent))
        try:
            self._flatten()
            self.check_admin()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            raise
        return self

    def close(self) -> None:
        """Delete what the session created (see the module docstring) and wait until it is
        gone; raise ExistingClusterError naming what is left."""
        if self.dir is None:
            return
        try:
            left = self.cleanup()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if left:
            raise ExistingClusterError(
                f"clean-up of {self.server} incomplete after {self.cleanup_timeout:.0f}s; "
                f"still there: {', '.join(left)}"
            )

    def check_admin(self) -> None:
        try:
            with self.client(track=False) as http:
                version = http.get("/version")
                review = http.post(
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    json={
                        "apiVersion": "authorization.k8s.io/v1",
                        "kind": "SelfSubjectAccessReview",
                        "spec": {
                            "resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}
                        },
                    },
                )
        except httpx.HTTPError as exc:
            raise ExistingClusterError(f"cannot reach {self.server}: {exc}") from exc
        if version.status_code != 200 or review.status_code != 201:
            raise ExistingClusterError(
                f"{self.server} refused the kubeconfig's user: /version {version.status_code}, "
                f"SelfSubjectAccessReview {review.status_code} {review.text[:300]}"
            )
        if not review.json().get("status", {}).get("allowed"):
            raise ExistingClusterError(
                f"the kubeconfig's user may not do everything on {self.server}: the suite "
                "needs cluster-admin (it installs CRDs and cluster RBAC, creates namespaces, "
                "PersistentVolumes and service-account tokens, approves certificate requests)"
            )

    def cleanup(self) -> list[str]:
        """Delete the session's objects; return the paths still there after the timeout."""
        with self._lock:
            namespaces = list(self._namespaces)
            objects = list(reversed(self._objects))
        paths = [f"/api/v1/namespaces/{ns}" for ns in namespaces] + objects
        if not paths:
            return []
        with self.client(track=False) as http:
            self._release_finalizers(http, namespaces)
            for path in paths:
                http.delete(path, params={"propagationPolicy": "Background"})
            deadline = time.monotonic() + self.cleanup_timeout
            while True:
                left = [p for p in paths if http.get(p).status_code != 404]
                if not left or time.monotonic() > deadline:
                    return left
                self._release_finalizers(
                    http, [ns for ns in namespaces if f"/api/v1/namespaces/{ns}" in left]
                )
                time.sleep(1.0)

    # ----------------------------------------------------------------- internals

    @property
    def _state(self) -> Path:
        if self.dir is None:
            raise RuntimeError("existing cluster not opened")
        return self.dir

    @property
    def _creds(self) -> kube.Credentials:
        if self._credentials is None:
            raise RuntimeError("existing cluster not opened")
        return self._credentials

    def _flatten(self) -> None:
        """The context's server, CA and credentials into one self-contained kubeconfig."""
        try:
            config = yaml.safe_load(self.source.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ExistingClusterError(f"cannot read kubeconfig {self.source}: {exc}") from exc
        name = self.context or config.get("current-context")
        contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
        if not name or name not in contexts:
            raise ExistingClusterError(
                f"kubeconfig {self.source}: no context {name!r} "
                f"(contexts: {', '.join(sorted(contexts)) or 'none'})"
            )
        user = next(
            (
                u.get("user") or {}
                for u in config.get("users") or []
                if u["name"] == contexts[name].get("user")
            ),
            {},
        )
        if user.get("auth-provider"):
            raise ExistingClusterError(
                f"kubeconfig {self.source}, context {name}: auth-provider plugins are not "
                "supported; use a token, a client certificate or an exec plugin"
            )
        creds = kube.Credentials.from_kubeconfig(self.source, name)
        if user.get("exec"):
            token, cert, key = _exec_credential(user["exec"], self.source.parent)
            creds = kube.Credentials(
                server=creds.server,
                token=token or creds.token,
                ca_data=creds.ca_data,
                client_cert=cert or creds.client_cert,
                client_key=key or creds.client_key,
                insecure=creds.insecure,
            )
        token = creds.current_token()
        if not token and not (creds.client_cert and creds.client_key):
            raise ExistingClusterError(
                f"kubeconfig {self.source}, context {name}: no credentials (token, client "
                "certificate or exec plugin)"
            )
        self._credentials = creds = kube.Credentials(
            server=creds.server,
            token=token,
            ca_data=creds.ca_data,
            client_cert=creds.client_cert,
            client_key=creds.client_key,
            insecure=creds.insecure,
        )
        self._verify = creds.ssl_context()
        if creds.ca_data:
            self._ca_file = self._state / "ca.crt"
            self._ca_file.write_bytes(creds.ca_data)
        pair = None
        if creds.client_cert and creds.client_key:
            pair = CertPair(self._state / "admin.crt", self._state / "admin.key")
            pair.cert.write_bytes(creds.client_cert)
            pair.key.touch(mode=0o600)
            pair.key.write_bytes(creds.client_key)
        write_kubeconfig(
            self.kubeconfig,
            creds.server,
            self._ca_file,
            user=name,
            client=pair,
            token=token,
            insecure=creds.insecure,
        )

    def _remember(self, response: httpx.Response) -> None:
        """Response hook: note each object a request created (not dry runs, not reviews or
        token requests, which store nothing)."""
        request = response.request
        if response.status_code != 201 or request.method not in ("POST", "PATCH", "PUT"):
            return
        if "dryRun" in request.url.params:
            return
        response.read()
        try:
            meta = (response.json() or {}).get("metadata") or {}
        except ValueError:
            return
        if not meta.get("uid") or not meta.get("name"):
            return
        path = _object_path(request.method, request.url.path.rstrip("/"), str(meta["name"]))
        if path is None:
            return  # a subresource (e.g. serviceaccounts/x/token)
        namespace, is_namespace = _namespace_of(path)
        with self._lock:
            if is_namespace:
                if namespace not in self._namespaces:
                    self._namespaces.append(str(namespace))
            elif namespace in self._namespaces:
                return  # goes with its namespace
            elif path not in self._objects:
                self._objects.append(path)

    def _release_finalizers(self, http: httpx.Client, namespaces: list[str]) -> None:
        """Drop the finalizers of `finalizer_groups` custom resources in `namespaces`."""
        if not namespaces:
            return
        for group in self.finalizer_groups:
            r = http.get(f"/apis/{group}")
            if r.status_code != 200:
                continue
            version = r.json()["preferredVersion"]["groupVersion"]
            r = http.get(f"/apis/{version}")
            if r.status_code != 200:
                continue
            for res in r.json()["resources"]:
                if "/" in res["name"] or not res["namespaced"]:
                    continue
                listed = http.get(f"/apis/{version}/{res['name']}")
                if listed.status_code != 200:
                    continue
                for obj in listed.json().get("items") or []:
                    meta = obj["metadata"]
                    if meta.get("namespace") in namespaces and meta.get("finalizers"):
                        http.patch(
                            f"/apis/{version}/namespaces/{meta['namespace']}/{res['name']}/"
                            f"{meta['name']}",
                            json={"metadata": {"finalizers": None}},
                            headers={"Content-Type": "application/merge-patch+json"},
                        )


def _object_path(method: str, path: str, name: str) -> str | None:
    """The REST path of the object a create (POST to its collection) or an apply / update
    (PATCH, PUT to the object) made; None for subresources."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    if method == "POST":
        return f"{path}/{name}" if len(rest) == 1 else None
    return path if len(rest) == 2 else None


def _namespace_of(path: str) -> tuple[str | None, bool]:
    """(namespace, whether the path is that Namespace itself) of a REST object path."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] != ["namespaces"] or len(rest) < 2:
        return None, False
    return rest[1], len(rest) == 2


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"


def _issued(http: httpx.Client, name: str) -> bytes | None:
    r = http.get(f"{CSR_PATH}/{name}")
    r.raise_for_status()
    status = r.json().get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Denied", "Failed") and cond.get("status") == "True":
            raise ExistingClusterError(
                f"CertificateSigningRequest {name} {cond['type']}: {cond.get('message', '')}"
            )
    return base64.b64decode(status["certificate"]) if status.get("certificate") else None


def _exec_credential(
    spec: Mapping[str, Any], base: Path
) -> tuple[str | None, bytes | None, bytes | None]:
    """Run a kubeconfig ``exec`` credential plugin once: (token, client cert, client key).

    Short-lived credentials (e.g. EKS tokens, 15 min) must outlast the test session.
    """
    command = str(spec["command"])
    if "/" in command and not os.path.isabs(command):
        command = str(base / command)
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": spec.get("apiVersion", EXEC_INFO_VERSION),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    try:
        out = subprocess.run(
            [command, *map(str, spec.get("args") or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ExistingClusterError(f"exec credential plugin {command}: {exc}") from exc
    if out.returncode != 0:
        raise ExistingClusterError(
            f"exec credential plugin {command} failed (rc={out.returncode}): "
            f"{out.stderr.strip()[-500:]}"
        )
    try:
        status = json.loads(out.stdout).get("status") or {}
    except ValueError as exc:
        raise ExistingClusterError(f"exec credential plugin {command}: not JSON") from exc
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    return (
        status.get("token") or None,
        cert.encode() if cert else None,
        key.encode() if key else None,
    )
