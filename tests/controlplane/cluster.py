"""A real, throw-away Kubernetes control plane for tests.

`ControlPlane` starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and (optionally) kwok on free 127.0.0.1 ports, each in its own
process group, with all state (certificates, kubeconfigs, etcd data, logs) in a
temporary directory.  The binaries come from ``tests/controlplane/build.sh``.

    with ControlPlane(bin_dir) as cp:
        with cp.client() as http:              # httpx.Client, admin identity
            http.get("/api/v1/namespaces").raise_for_status()
        cp.kubeconfig                           # admin kubeconfig (system:masters)
        cp.kubeconfig_for_user("alice", groups=["devs"])   # RBAC-restricted
        cp.kubeconfig_for_service_account("ns", "operator")

Security set-up mirrors a real cluster: the API server serves TLS with its own
CA, clients authenticate with X.509 client certificates or service-account
tokens, and authorization is ``Node,RBAC`` with the default admission plugins.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from knooppunt_operator import kube

T = TypeVar("T")

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # first IP of SERVICE_CIDR: the `kubernetes` service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
STATE_PREFIX = "knooppunt-cp-"

# Binaries the fixture needs; kwok is optional (ControlPlane(kwok=False)).
REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
OPTIONAL_BINARIES = ("kwok",)


class ControlPlaneError(RuntimeError):
    """The control plane failed to start; the message includes the process logs."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value (which is returned).

    Exceptions raised by the predicate count as "not yet"; the last one is
    chained to the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {message}"
            ) from last_exc
        time.sleep(interval)


# --------------------------------------------------------------------------- PKI


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


class _CA:
    def __init__(
        self, directory: Path, common_name: str = "knooppunt-test-ca", stem: str = "ca"
    ) -> None:
        self.dir = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pair = self._write(stem, self.cert, self.key)

    def _write(
        self, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> CertPair:
        pair = CertPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        pair.cert.write_bytes(_pem_cert(cert))
        pair.key.touch(mode=0o600)
        pair.key.write_bytes(_pem_key(key))
        return pair

    def issue(
        self,
        stem: str,
        common_name: str,
        organizations: Iterable[str] = (),
        *,
        server: bool = False,
        client: bool = False,
        dns_names: Iterable[str] = (),
        ips: Iterable[str] = (),
    ) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return self._write(stem, cert, key)


# --------------------------------------------------------------------- helpers


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: have Linux SIGKILL the child if the test process dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path | None,
    *,
    user: str,
    client: CertPair | None = None,
    token: str | None = None,
    namespace: str | None = None,
    insecure: bool = False,
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded as data).

    Without `ca_cert` the server is trusted through the system's CAs (or, with
    `insecure`, not verified at all: kubeconfig ``insecure-skip-tls-verify``).
    """

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    creds: dict[str, str] = {}
    if client is not None:
        creds["client-certificate-data"] = b64(client.cert)
        creds["client-key-data"] = b64(client.key)
    if token is not None:
        creds["token"] = token
    context: dict[str, str] = {"cluster": "knooppunt-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    cluster: dict[str, Any] = {"server": server}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = b64(ca_cert)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "knooppunt-test", "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def client_from_kubeconfig(
    path: str | os.PathLike[str], *, context: str | None = None, **kwargs: Any
) -> httpx.Client:
    """An httpx.Client for a kubeconfig context (default: the current one).

    CA, client certificate and key as data or as files, a token or token file,
    ``insecure-skip-tls-verify``: what the operator itself understands
    (`knooppunt_operator.kube.Credentials.from_kubeconfig`).
    """
    creds = kube.Credentials.from_kubeconfig(Path(path), context)
    headers = dict(kwargs.pop("headers", {}))
    token = creds.current_token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    kwargs.setdefault("timeout", 30.0)
    return httpx.Client(
        base_url=creds.server, verify=creds.ssl_context(), headers=headers, **kwargs
    )


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


# ------------------------------------------------------------- the API, shared


class KubeCluster:
    """The Kubernetes API the tests talk to: a throw-away `ControlPlane`, or an existing
    cluster reached through a kubeconfig (`tests.controlplane.existing.ExistingCluster`).

    Subclasses give :meth:`client` (admin identity), :attr:`server`, :attr:`kubeconfig` and the
    kubeconfig factories; discovery, server-side apply and service-account tokens are shared.
    """

    KWOK_NODE: str | None = None
    """The fake node pods run on (local control plane only)."""

    _discovery_cache: dict[str, list[dict[str, Any]]]

    @property
    def server(self) -> str:
        raise NotImplementedError

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig, self-contained (certificates and tokens embedded)."""
        raise NotImplementedError

    @property
    def audit_log(self) -> Path | None:
        """The API server's audit log (JSON lines), when the tests can read it."""
        return None

    def client(
        self, client_cert: CertPair | None = None, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        raise NotImplementedError

    def kubeconfig_for_user(
        self, user: str, groups: Iterable[str] = (), namespace: str | None = None
    ) -> Path:
        raise NotImplementedError

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, create: bool = True
    ) -> Path:
        raise NotImplementedError

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for a subprocess (e.g. the operator) talking to this cluster."""
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}

    def service_account_token(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 86400
    ) -> str:
        """A bound token (TokenRequest API) for a service account."""
        with self.client() as http:
            if create:
                r = http.post(
                    f"/api/v1/namespaces/{namespace}/serviceaccounts",
                    json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
                )
                if r.status_code != 409:
                    r.raise_for_status()
            r = http.post(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": expiration_seconds},
                },
            )
            r.raise_for_status()
            return str(r.json()["status"]["token"])

    def resource_path(
        self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None
    ) -> str:
        """REST path for a kind, found through API discovery (cached)."""
        for attempt in range(50):
            resources = self._discovery(api_version)
            found = [r for r in resources if r["kind"] == kind and "/" not in r["name"]]
            if found:
                res = found[0]
                break
            # Cached before this kind's CRD was established (another test installed the CRDs
            # and applied at once): ask again, and give a CRD just applied a moment.
            self._discovery_cache.pop(api_version, None)
            if attempt:
                time.sleep(0.1)
        else:
            raise KeyError(f"{kind} not served in {api_version}")
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if res["namespaced"]:
            if not namespace:
                raise ValueError(f"{kind} is namespaced: give a namespace")
            base += f"/namespaces/{namespace}"
        base += f"/{res['name']}"
        return f"{base}/{name}" if name else base

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        field_manager: str = "knooppunt-tests",
        force: bool = True,
        client: httpx.Client | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of one object (dict); returns the applied object."""
        meta = obj["metadata"]
        path = self.resource_path(
            obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]
        )
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        headers = {"Content-Type": "application/apply-patch+yaml"}
        body = json.dumps(obj)  # JSON is valid YAML
        if client is None:
            with self.client() as http:
                r = http.patch(path, params=params, headers=headers, content=body)
        else:
            r = client.patch(path, params=params, headers=headers, content=body)
        r.raise_for_status()
        return dict(r.json())

    def _discovery(self, api_version: str) -> list[dict[str, Any]]:
        cache = self._discovery_cache
        if api_version not in cache:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            with self.client() as http:
                r = http.get(path)
                r.raise_for_status()
                cache[api_version] = list(r.json()["resources"])
        return cache[api_version]

    def forget_discovery(self) -> None:
        """Drop cached discovery (after installing CRDs with new kinds)."""
        self._discovery_cache.clear()


# ------------------------------------------------------------------ ControlPlane


class ControlPlane(KubeCluster):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler (+ kwok).

    Parameters:
        bin_dir: directory holding the binaries (see build.sh --bin-dir).
        workdir: parent for the temporary state dir (default: system temp).
        kwok: run kwok with one fake node so pods get scheduled and Running.
        controller_manager / scheduler: set False for an API-server-only plane.
        extra_args: extra command-line flags per component name, e.g.
            {"kube-apiserver": ["--feature-gates=Foo=true"]}.
        keep: keep the state dir after stop (also env KNOOPPUNT_CONTROLPLANE_KEEP=1).
        audit_policy: an audit.k8s.io/v1 Policy; the API server then writes its audit log
            (JSON lines, blocking mode) to :attr:`audit_log`.
        die_with_parent: children get SIGKILL when the starting thread dies
            (Linux), so a killed test run leaves nothing behind.
    """

    KWOK_NODE = "kwok-node-0"

    def __init__(
        self,
        bin_dir: str | os.PathLike[str],
        *,
        workdir: str | os.PathLike[str] | None = None,
        kwok: bool = True,
        controller_manager: bool = True,
        scheduler: bool = True,
        extra_args: Mapping[str, Iterable[str]] | None = None,
        startup_timeout: float = 120.0,
        keep: bool | None = None,
        die_with_parent: bool = True,
        audit_policy: Mapping[str, Any] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.audit_policy = dict(audit_policy) if audit_policy is not None else None
        self._workdir_parent = workdir
        self.with_kwok = kwok
        self.with_controller_manager = controller_manager
        self.with_scheduler = scheduler
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.startup_timeout = startup_timeout
        self.keep = (
            keep if keep is not None else os.environ.get("KNOOPPUNT_CONTROLPLANE_KEEP") == "1"
        )
        self.die_with_parent = die_with_parent
        self.dir: Path | None = None
        self.procs: list[_Proc] = []
        self.ports: dict[str, int] = {}
        self._ca: _CA | None = None
        self._discovery_cache: dict[str, list[dict[str, Any]]] = {}
        self._user_seq = 0

    # ----------------------------------------------------------- public API

    @property
    def server(self) -> str:
        """https URL of the API server."""
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    @property
    def ca_cert(self) -> Path:
        return self._pki / "ca.crt"

    @property
    def admin_cert(self) -> CertPair:
        """Client certificate of the admin user (O=system:masters)."""
        return CertPair(self._pki / "admin.crt", self._pki / "admin.key")

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig path (user kubernetes-admin, group system:masters)."""
        return self._state / "admin.kubeconfig"

    def ssl_context(self, client: CertPair | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        pair = client or self.admin_cert
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
        return ctx

    def client(
        self, client_cert: CertPair | None = None, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An httpx.Client for the API server; admin identity unless told otherwise."""
        if token is not None:
            verify: ssl.SSLContext = ssl.create_default_context(cafile=str(self.ca_cert))
            headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
            kwargs["headers"] = headers
        else:
            verify = self.ssl_context(client_cert)
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.server, verify=verify, **kwargs)

    def issue_client_cert(self, user: str, groups: Iterable[str] = ()) -> CertPair:
        """A client certificate for `user` in `groups`, signed by the cluster CA."""
        assert self._ca is not None, "control plane not started"
        self._user_seq += 1
        stem = f"user-{self._user_seq}-{_safe(user)}"
        return self._ca.issue(stem, user, groups, client=True)

    def kubeconfig_for_user(
        self, user: str, groups: Iterable[str] = (), namespace: str | None = None
    ) -> Path:
        """A kubeconfig authenticating as `user` (X.509, CN=user, O=groups).

        The user has no permissions until RBAC grants some.
        """
        pair = self.issue_client_cert(user, groups)
        path = self._state / f"{pair.cert.stem}.kubeconfig"
        return write_kubeconfig(
            path, self.server, self.ca_cert, user=user, client=pair, namespace=namespace
        )

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, create: bool = True
    ) -> Path:
        """A kubeconfig with a token of service account `namespace/name`.

        The account is created if missing (create=True); the user name the API
        server sees is system:serviceaccount:<namespace>:<name>.
        """
        token = self.service_account_token(namespace, name, create=create)
        user = f"system:serviceaccount:{namespace}:{name}"
        path = self._state / f"sa-{_safe(namespace)}-{_safe(name)}.kubeconfig"
        return write_kubeconfig(
            path, self.server, self.ca_cert, user=user, token=token, namespace=namespace
        )

    def logs(self) -> dict[str, str]:
        """Current log text of every started component."""
        return {p.name: _tail(p.log, None) for p in self.procs}

    def format_logs(self, lines: int = 60) -> str:
        out = []
        for p in self.procs:
            rc = p.popen.poll()
            state = "running" if rc is None else f"exited rc={rc}"
            out.append(f"----- {p.name} ({state}) {p.log} -----\n{_tail(p.log, lines)}")
        return "\n".join(out)

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        missing = [b for b in self._wanted_binaries() if not (self.bin_dir / b).is_file()]
        if missing:
            raise FileNotFoundError(
                f"control-plane binaries missing in {self.bin_dir}: {', '.join(missing)} "
                "(run tests/controlplane/build.sh)"
            )
        attempts = 2  # a free port can be taken between choosing and binding it
        for attempt in range(attempts):
            try:
                self._start_once()
                return self
            except ControlPlaneError as exc:
                retry = attempt + 1 < attempts and "address already in use" in str(exc)
                self.stop()
                if not retry:
                    raise
            except BaseException:
                self.stop()
                raise
        return self  # pragma: no cover

    def stop(self) -> None:
        """Stop every component (clients first, etcd last) and remove the state dir.

        SIGTERM to each process group, SIGKILL after a grace period; safe to
        call more than once and after a failed start.
        """
        atexit.unregister(self.stop)
        procs, self.procs = self.procs, []
        servers = ("kube-apiserver", "etcd")
        clients = [p for p in procs if p.name not in servers]
        order = [clients] + [[p for p in procs if p.name == n] for n in servers]
        for group in order:
            for p in group:
                _signal_group(p.popen, signal.SIGTERM)
            for p in group:
                try:
                    p.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _signal_group(p.popen, signal.SIGKILL)
                    p.popen.wait(timeout=15)
                # Anything else left in its process group goes too.
                _signal_group(p.popen, signal.SIGKILL)
        if self.dir is not None and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def restart_apiserver(self, down: float = 1.0) -> None:
        """Stop kube-apiserver, wait ``down`` seconds, start it again on the same port with
        the same state (etcd keeps everything): every client's watch is cut."""
        for p in [p for p in self.procs if p.name == "kube-apiserver"]:
            _signal_group(p.popen, signal.SIGTERM)
            try:
                p.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(p.popen, signal.SIGKILL)
                p.popen.wait(timeout=15)
            self.procs.remove(p)
        time.sleep(down)
        self._start_apiserver()
        self._wait(
            time.monotonic() + self.startup_timeout, "kube-apiserver /readyz", self._apiserver_ready
        )

    # -------------------------------------------------------------- internals

    def _wanted_binaries(self) -> list[str]:
        wanted = ["etcd", "kube-apiserver"]
        if self.with_controller_manager:
            wanted.append("kube-controller-manager")
        if self.with_scheduler:
            wanted.append("kube-scheduler")
        if self.with_kwok:
            wanted.append("kwok")
        return wanted

    @property
    def _state(self) -> Path:
        if self.dir is None:
            raise RuntimeError("control plane not started")
        return self.dir

    @property
    def _pki(self) -> Path:
        return self._state / "pki"

    def _start_once(self) -> None:
        atexit.register(self.stop)
        self._discovery_cache = {}
        _remove_stale_state_dirs(self._workdir_parent)
        self.dir = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=self._workdir_parent))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        (self.dir / "logs").mkdir()
        names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._make_pki()
        deadline = time.monotonic() + self.startup_timeout

        self._start_etcd()
        self._start_apiserver()
        self._wait(deadline, "kube-apiserver /readyz", self._apiserver_ready)
        if self.with_controller_manager:
            self._start_controller_manager()
        if self.with_scheduler:
            self._start_scheduler()
        if self.with_kwok:
            self._start_kwok()
        if self.with_controller_manager:
            self._wait(
                deadline, "kube-controller-manager /healthz", self._healthz("controller-manager")
            )
            # The serviceaccount controller creating `default` proves controllers run.
            self._wait(deadline, "default ServiceAccount", self._default_sa_exists)
        if self.with_scheduler:
            self._wait(deadline, "kube-scheduler /healthz", self._healthz("scheduler"))
        if self.with_kwok:
            self._create_kwok_node()
            self._wait(deadline, f"node {self.KWOK_NODE} Ready", self._kwok_node_ready)

    def _make_pki(self) -> None:
        pki = self._state / "pki"
        pki.mkdir()
        ca = self._ca = _CA(pki)
        ca.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", SERVICE_IP],
        )
        admin = ca.issue("admin", "kubernetes-admin", ["system:masters"], client=True)
        # Front proxy (aggregation layer / request-header authentication).
        front = _CA(pki, "knooppunt-test-front-proxy-ca", stem="front-proxy-ca")
        front.issue("front-proxy-client", "front-proxy-client", client=True)
        # --use-service-account-credentials=false: the controller manager acts
        # with its own identity for every controller, so it needs broad rights.
        kcm = ca.issue(
            "controller-manager", "system:kube-controller-manager", ["system:masters"], client=True
        )
        sched = ca.issue("scheduler", "system:kube-scheduler", ["system:masters"], client=True)
        kwok = ca.issue("kwok", "system:kwok-controller", ["system:masters"], client=True)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (pki / "sa.key").touch(mode=0o600)
        (pki / "sa.key").write_bytes(_pem_key(sa_key))
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        for name, pair in [
            ("admin", admin),
            ("controller-manager", kcm),
            ("scheduler", sched),
            ("kwok", kwok),
        ]:
            user = "kubernetes-admin" if name == "admin" else name
            write_kubeconfig(
                self._state / f"{name}.kubeconfig",
                self.server,
                self.ca_cert,
                user=user,
                client=pair,
            )

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self._state / "logs" / f"{name}.log"
        cmd = [str(self.bin_dir / name), *args, *self.extra_args.get(name, [])]
        (self._state / "logs" / f"{name}.cmdline").write_text(" ".join(cmd) + "\n")
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._state,
                env={**os.environ, "HOME": str(self._state)},
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self.procs.append(_Proc(name, popen, log))

    def _start_etcd(self) -> None:
        client = self.etcd_url
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                "--name=knooppunt-test",
                f"--data-dir={self._state / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=knooppunt-test={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # test data: durability does not matter, speed does
                "--log-level=warn",
            ],
        )

    @property
    def audit_log(self) -> Path | None:
        """The API server's audit log (JSON lines) when started with an ``audit_policy``."""
        return self._state / "audit.log" if self.audit_policy is not None else None

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        policy = self._state / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(self.audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self._state / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ]

    def _start_apiserver(self) -> None:
        pki = self._pki
        self._spawn(
            "kube-apiserver",
            [
                *self._audit_args(),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Loopback cannot go into Endpoints: no endpoints for `kubernetes`.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={self._state / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _component_serving_args(self, name: str, port_key: str) -> list[str]:
        kubeconfig = self._state / f"{name}.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[port_key]}",
            f"--cert-dir={self._state / (name + '-certs')}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _start_controller_manager(self) -> None:
        pki = self._pki
        self._spawn(
            "kube-controller-manager",
            [
                *self._component_serving_args("controller-manager", "controller-manager"),
                "--controllers=*",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler",
            [*self._component_serving_args("scheduler", "scheduler"), "--v=1"],
        )

    def _start_kwok(self) -> None:
        stages = self.bin_dir / "kwok-stages.yaml"
        args = [
            f"--kubeconfig={self._state / 'kwok.kubeconfig'}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ]
        if stages.is_file():
            args.insert(0, f"--config={stages}")
        self._spawn("kwok", args)

    def _create_kwok_node(self) -> None:
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.KWOK_NODE,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": self.KWOK_NODE,
                    "kubernetes.io/os": "linux",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": capacity, "capacity": capacity},
        }
        with self.client() as http:
            r = http.post("/api/v1/nodes", json=node)
            if r.status_code != 409:
                r.raise_for_status()

    # readiness probes ---------------------------------------------------

    def _wait(self, deadline: float, what: str, probe: Callable[[], bool]) -> None:
        def check() -> bool:
            for p in self.procs:
                if p.popen.poll() is not None:
                    raise ControlPlaneError(f"{p.name} exited with rc={p.popen.returncode}")
            return probe()

        while True:
            try:
                if check():
                    return
            except ControlPlaneError as exc:
                raise ControlPlaneError(
                    f"control plane failed while waiting for {what}: {exc}\n{self.format_logs()}"
                ) from None
            except Exception:  # not reachable yet
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.startup_timeout:.0f}s waiting for {what}\n"
                    f"{self.format_logs()}"
                )
            time.sleep(0.25)

    def _apiserver_ready(self) -> bool:
        with self.client(timeout=5) as http:
            return http.get("/readyz").status_code == 200

    def _healthz(self, port_key: str) -> Callable[[], bool]:
        def probe() -> bool:
            url = f"https://127.0.0.1:{self.ports[port_key]}/healthz"
            # Self-signed serving cert of the component (in its --cert-dir).
            return httpx.get(url, verify=False, timeout=5).status_code == 200

        return probe

    def _default_sa_exists(self) -> bool:
        with self.client(timeout=5) as http:
            return http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

    def _kwok_node_ready(self) -> bool:
        with self.client(timeout=5) as http:
            r = http.get(f"/api/v1/nodes/{self.KWOK_NODE}")
            if r.status_code != 200:
                return False
            node = r.json()
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            taints = node.get("spec", {}).get("taints", [])
            return ready and not any(t.get("effect") == "NoSchedule" for t in taints)


def _remove_stale_state_dirs(parent: str | os.PathLike[str] | None) -> None:
    """Remove state dirs left by test processes that were killed (SIGKILL)."""
    for d in Path(parent or tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        try:
            pid = int((d / "owner.pid").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge (no pid file, or alive under another user)


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def _tail(path: Path, lines: int | None) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    if lines is None:
        return text
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


@contextlib.contextmanager
def control_plane(bin_dir: str | os.PathLike[str], **kwargs: Any) -> Iterator[ControlPlane]:
    """Functional form of `with ControlPlane(...)`."""
    cp = ControlPlane(bin_dir, **kwargs)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
