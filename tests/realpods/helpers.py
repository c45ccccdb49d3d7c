"""What the realpods scenarios share: a namespace with the example node applied as YAML, the
operator running for it, and mutual-TLS clients that reach the node's real pods."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from knooppunt_operator import kube

from node_runtime.model.loading import load_paths
from node_runtime.security.pki.development import organisations
from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from node_runtime.security.tls.contexts import client_context
from tests.operator.harness import Cluster, fast_config, running_operator
from tests.postgresql.server import PostgresServer
from tests.realpods.conftest import RealPods

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "iwmo"
MESSAGES = EXAMPLES / "messages"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"
OPERATOR_NAMESPACE = "knooppunt-system"
TLS_SECRET = f"{NODE}-server-tls"
SERVER_NAME = f"{NODE}.knooppunt.test"  # the name the node's server certificate carries
UID = 10001


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def dev_pki(directory: Path) -> DevPki:
    """The example's organisations' client certificates and a server certificate for the pod."""
    resources = load_paths([EXAMPLES])
    return ensure_dev_pki(
        directory,
        clients=organisations(resources, NODE),
        server_name=SERVER_NAME,
        dns_names=[SERVER_NAME],
        ip_addresses=[],
    )


def b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


@contextlib.contextmanager
def namespace(rp: RealPods) -> Iterator[str]:
    name = f"realpods-{uuid.uuid4().hex[:8]}"
    rp.cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        with rp.cp.client() as http:
            http.delete(f"/api/v1/namespaces/{name}")


@contextlib.contextmanager
def sqlite_volume(rp: RealPods, ns: str) -> Iterator[Path]:
    """A hostPath PersistentVolume for the SQLite node's claim (no provisioner here), owned by
    the pod's user like a provisioned volume with fsGroup would be."""
    path = Path(tempfile.mkdtemp(prefix=f"knooppunt-{ns}-"))
    os.chown(path, UID, UID)
    path.chmod(0o770)
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-data"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": ns, "name": f"{NODE}-data"},
        },
    }
    rp.cp.apply(pv)
    try:
        yield path
    finally:
        with rp.cp.client() as http:
            http.delete(f"/api/v1/persistentvolumes/{ns}-data")
        shutil.rmtree(path, ignore_errors=True)


def apply_example(
    rp: RealPods,
    ns: str,
    pki: DevPki,
    *,
    provided_tls: bool = True,
    gemeenten: Mapping[str, Mapping[str, Any]] | None = None,
    **knooppunt_spec: Any,
) -> None:
    """The example's YAML as a platform team applies it. ``provided_tls``: the node's server
    certificate (``pki``'s) in a Secret the Knooppunt names; otherwise the operator's own CA
    issues it. ``gemeenten``: spec fields to change per Gemeente name."""
    if provided_tls:
        rp.cp.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": TLS_SECRET, "namespace": ns},
                "data": {
                    "tls.crt": b64(pki.server.chain),
                    "tls.key": b64(pki.server.key),
                    "ca.crt": b64(pki.ca_bundle),
                    "crl.pem": b64(pki.crl),
                },
            }
        )
    for name in ("connector.yaml", "gemeenten.yaml"):
        for doc in documents(name):
            doc["metadata"]["namespace"] = ns
            doc["spec"].update((gemeenten or {}).get(doc["metadata"]["name"], {}))
            rp.cp.apply(doc)
    apply_knooppunt(rp, ns, provided_tls=provided_tls, **knooppunt_spec)


def apply_knooppunt(rp: RealPods, ns: str, *, provided_tls: bool = True, **spec: Any) -> None:
    kp = copy.deepcopy(documents("knooppunt.yaml")[0])
    kp["metadata"]["namespace"] = ns
    kp["spec"]["image"] = rp.images.node_runtime
    if provided_tls:
        kp["spec"].setdefault("security", {})["tlsSecret"] = TLS_SECRET
    kp["spec"].update(spec)
    rp.cp.apply(kp)


@contextlib.asynccontextmanager
async def operator(rp: RealPods, ns: str, **config: Any) -> AsyncIterator[Cluster]:
    admin = kube.Credentials.from_kubeconfig(rp.cp.kubeconfig)
    values: dict[str, Any] = {"namespace": OPERATOR_NAMESPACE, "rollout_deadline_seconds": 600}
    values.update(config)
    async with (
        running_operator(rp.operator_credentials, fast_config(**values), namespaces=[ns]),
        kube.KubeClient(admin, user_agent="knooppunt-realpods") as client,
    ):
        yield Cluster(client, ns)


def pods(rp: RealPods, ns: str) -> list[dict[str, Any]]:
    """The node's pods that run and are not being deleted."""
    with rp.cp.client() as http:
        r = http.get(
            f"/api/v1/namespaces/{ns}/pods",
            params={"labelSelector": f"app.kubernetes.io/instance={NODE}"},
        )
        r.raise_for_status()
    return [
        p
        for p in r.json()["items"]
        if p.get("status", {}).get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]


def ready(pod: Mapping[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


class Parties:
    """httpx clients with the example organisations' certificates, to one address."""

    def __init__(
        self,
        pki: DevPki,
        address: str,
        port: int = 8443,
        *,
        server_trust: Path | None = None,
        server_name: str = SERVER_NAME,
    ) -> None:
        self.pki, self.base = pki, f"https://{address}:{port}"
        self.server_trust = server_trust or pki.ca_bundle
        self.server_name = server_name
        self.clients: list[httpx.Client] = []

    def __call__(self, name: str) -> httpx.Client:
        paths = self.pki.clients[name]
        ctx = client_context(paths.chain, paths.key, self.server_trust)
        transport = httpx.HTTPTransport(verify=ctx)
        client = httpx.Client(
            base_url=self.base,
            transport=transport,
            timeout=30,
            event_hooks={"request": [self._sni]},
        )
        self.clients.append(client)
        return client

    def _sni(self, request: httpx.Request) -> None:
        # The pod is reached by IP; its certificate names the node: verify against that name.
        request.extensions["sni_hostname"] = self.server_name

    def close(self) -> None:
        for c in self.clients:
            c.close()


DSN_SECRET = f"{NODE}-database"
DB_CA = f"{NODE}-database-ca"


@contextlib.contextmanager
def postgresql_node(
    rp: RealPods, pg: PostgresServer, ns: str, pki: DevPki, **spec: Any
) -> Iterator[str]:
    """The example node with two replicas on a fresh PostgreSQL database (its URL in a Secret,
    with the host's address the pods reach); yields the URL the test process uses."""
    name = f"rp_{uuid.uuid4().hex[:10]}"
    url = pg.create_database(name)
    pod_url = url.replace("@127.0.0.1:", f"@{rp.node.ip}:")
    try:
        rp.cp.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": DSN_SECRET, "namespace": ns},
                "stringData": {"url": pod_url},
            }
        )
        storage: dict[str, Any] = {
            "backend": "postgresql",
            "postgresqlDsnSecret": {"name": DSN_SECRET, "key": "url"},
        }
        if pg.tls is not None and pg.tls.ca is not None:  # verified TLS to the database
            rp.cp.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": DB_CA, "namespace": ns},
                    "data": {"ca.crt": pg.tls.ca.decode()},
                }
            )
            storage["postgresqlTls"] = {"ca": {"configMap": DB_CA}}
        apply_example(rp, ns, pki, **{"replicas": 2, "storage": storage, **spec})
        yield url
    finally:
        pg.drop_database(name)


def database_connections(pg: PostgresServer, url: str) -> dict[bool, int]:
    """Connections to ``url``'s database from outside the test process, by TLS or not
    (``pg_stat_ssl``, read as the superuser)."""
    import psycopg

    database = url.rsplit("/", 1)[1]
    admin = pg.url_for("postgres", admin=True).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin) as conn:
        rows = conn.execute(
            "SELECT s.ssl, count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
            "WHERE a.datname = %s AND a.client_addr IS NOT NULL "
            "AND a.client_addr <> '127.0.0.1' GROUP BY s.ssl",
            (database,),
        ).fetchall()
    return {bool(ssl): int(n) for ssl, n in rows}


def ready_pods(rp: RealPods, ns: str, n: int) -> list[dict[str, Any]]:
    """Exactly ``n`` running, ready pods of the node (none terminating), else empty."""
    now = pods(rp, ns)
    return now if len(now) == n and all(ready(p) for p in now) else []


def service_address(rp: RealPods, ns: str) -> tuple[str, int]:
    with rp.cp.client() as http:
        svc = http.get(f"/api/v1/namespaces/{ns}/services/{NODE}").json()
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "https")
    return svc["spec"]["clusterIP"], port
