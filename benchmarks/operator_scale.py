"""Scale benchmark: the operator on a real control plane, with hundreds to thousands of gemeenten.

One run against the real control plane of the test suite (``tests/controlplane``: etcd,
kube-apiserver, controller-manager, scheduler, a kwok node so pods go Running), with the
operator as a real ``kopf run`` process under its generated service account (RBAC as
deployed). Three figures, each printed as a ratio or a count:

1. **From scratch, 1 node**: apply 3 SectorConnectors (copies of the iWmo connector under
   three names and revisions), one Knooppunt serving all three and N Gemeenten (default 400),
   then wait until the Knooppunt is ``Ready=True`` and every Gemeente ``Ready=True``
   (``Served``) for its generation. **Floor**: what the operator had to write for that state
   (every object it made, read back from the cluster: its Secrets, ConfigMaps, revisions,
   the Deployment and the rest; the finalizers; the status of every resource), together
   with the same user objects, server-side applied again into an empty namespace by a
   plain loop with the same client (``knooppunt_operator.kube.KubeClient``), one request
   after another. Ratio: from scratch / floor.
2. **One more gemeente**: the operator's API requests (watches aside) for one more Gemeente,
   until it is served and the operator has gone quiet, from the API server's audit log:
   at 10 gemeenten (a second node), at N, and at 2 000 (figure 3); equal, and at most 4.
3. **2 000 gemeenten over 5 Knooppunten** (one namespace, each node its own connector, 400
   gemeenten per node) with a fresh operator process: time until all are Ready, and the
   operator's peak memory (``VmHWM``).

    . .venv/bin/activate
    python benchmarks/operator_scale.py                                # 400, then 2 000
    python benchmarks/operator_scale.py --gemeenten 20 --spread 100    # quick
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from knooppunt_operator import kube, rbac  # noqa: E402

from tests.controlplane.cluster import ControlPlane  # noqa: E402
from tests.controlplane.fixtures import controlplane_bin_dir, missing_binaries  # noqa: E402
from tests.operator import scenarios  # noqa: E402
from tests.operator.test_operator_controlplane import data_volume  # noqa: E402

OPERATOR_NAMESPACE = "knooppunt-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:knooppunt-operator"
NODE = scenarios.NODE
CONNECTORS = [("iwmo-a", 1), ("iwmo-b", 2), ("iwmo-c", 3)]
SMALL = 10  # gemeenten for the request-count baseline
SPREAD_NODES = 5
MANAGED = {"app.kubernetes.io/managed-by": "knooppunt-operator"}
CHILD_KINDS = (
    kube.SERVICE_ACCOUNT,
    kube.ROLE,
    kube.ROLE_BINDING,
    kube.SECRET,
    kube.CONFIG_MAP,
    kube.CONTROLLER_REVISION,
    kube.PERSISTENT_VOLUME_CLAIM,
    kube.DEPLOYMENT,
    kube.SERVICE,
    kube.POD_DISRUPTION_BUDGET,
    kube.NETWORK_POLICY,
)
RESOURCES = (kube.SECTOR_CONNECTOR, kube.KNOOPPUNT, kube.GEMEENTE)

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


# ------------------------------------------------------------------------------ resources


def connector(name: str, revision: int) -> dict[str, Any]:
    body = scenarios.connector_resource(revision=revision)
    body["metadata"]["name"] = name
    return body


def knooppunt(name: str, connectors: list[tuple[str, int]]) -> dict[str, Any]:
    body = scenarios.knooppunt_resource(
        connectors=[{"name": c, "revision": rev} for c, rev in connectors]
    )
    body["metadata"]["name"] = name
    return body


def gemeente(index: int, connectors: list[str]) -> dict[str, Any]:
    code = f"{index:04d}"
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Gemeente",
        "metadata": {"name": f"gemeente-{code}"},
        "spec": {
            "gemeentecode": code,
            "oin": f"00000001{index:012d}",
            "displayName": f"Gemeente {code}",
            "subscriptions": [
                {
                    "connector": name,
                    "purpose": "wmo-uitvoering",
                    "legalBasis": "Wmo 2015 art. 5.1.1",
                }
                for name in connectors
            ],
        },
    }


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(obj)
    body["metadata"]["namespace"] = namespace
    return body


def one_node(namespace: str, n: int, first: int = 1) -> list[dict[str, Any]]:
    names = [c for c, _ in CONNECTORS]
    objs = [in_namespace(connector(c, rev), namespace) for c, rev in CONNECTORS]
    objs.append(in_namespace(knooppunt(NODE, CONNECTORS), namespace))
    objs += [in_namespace(gemeente(i, names), namespace) for i in range(first, first + n)]
    return objs


def spread(namespace: str, n: int) -> list[dict[str, Any]]:
    """``SPREAD_NODES`` nodes, each serving its own connector; gemeente i subscribes to
    connector i mod ``SPREAD_NODES``."""
    conns = [(f"iwmo-{k}", 1) for k in range(SPREAD_NODES)]
    objs = [in_namespace(connector(c, rev), namespace) for c, rev in conns]
    objs += [
        in_namespace(knooppunt(f"knooppunt-{k}", [conns[k]]), namespace)
        for k in range(SPREAD_NODES)
    ]
    objs += [
        in_namespace(gemeente(i, [conns[i % SPREAD_NODES][0]]), namespace) for i in range(1, n + 1)
    ]
    return objs


# ------------------------------------------------------------------------------ cluster


def setup(cp: ControlPlane, namespaces: list[str]) -> Path:
    """CRDs, namespaces, the operator's RBAC; the operator's kubeconfig (as in the tests)."""
    with cp.client() as http:
        for name in [OPERATOR_NAMESPACE, *namespaces]:
            http.post(
                "/api/v1/namespaces",
                json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )
    for path in sorted((REPO / "crds").glob("knooppunt.nl_*.yaml")):
        cp.apply(yaml.safe_load(path.read_text()))
    for manifest in rbac.manifests(OPERATOR_NAMESPACE):
        cp.apply(manifest)
    deadline = time.monotonic() + 60
    with cp.client() as http:  # a fresh CRD's storage answers 429 for a moment
        for plural in ("sectorconnectors", "knooppunten", "gemeenten"):
            for namespace in namespaces:
                while time.monotonic() < deadline:
                    url = f"/apis/knooppunt.nl/v1alpha1/namespaces/{namespace}/{plural}"
                    if http.get(url).status_code == 200:
                        break
                    time.sleep(0.2)
    cp.forget_discovery()
    return cp.kubeconfig_for_service_account(OPERATOR_NAMESPACE, "knooppunt-operator")


def volume(namespace: str, node: str) -> dict[str, Any]:
    pv = data_volume(namespace)
    pv["metadata"]["name"] = f"{namespace}-{node}-data"
    pv["spec"]["claimRef"]["name"] = f"{node}-data"
    pv["spec"]["hostPath"]["path"] = f"/tmp/knooppunt-{namespace}-{node}"
    return pv


class Operator:
    """The operator as ``kopf run`` (standalone, one replica) in its own process."""

    def __init__(self, kubeconfig: Path, namespaces: list[str], log: Path) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KNOOPPUNT_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
            "KNOOPPUNT_OPERATOR_LEADER_ELECTION": "false",
            # the node's readiness follows its Deployment's events; no timer requests
            "KNOOPPUNT_OPERATOR_OBSERVE_INTERVAL": "3600",
            "KNOOPPUNT_OPERATOR_ROLLOUT_DEADLINE_SECONDS": "600",
        }
        for key in ("KNOOPPUNT_OPERATOR_KUBE_URL", "KUBERNETES_SERVICE_HOST"):
            env.pop(key, None)
        args = [sys.executable, "-m", "kopf", "run", "--standalone"]
        for namespace in namespaces:
            args += ["--namespace", namespace]
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [*args, "-m", "knooppunt_operator.main"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def peak_memory(self) -> int:
        """Peak resident set size in bytes (``VmHWM``)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the operator exited ({self.popen.returncode}):\n{tail}")


@contextlib.asynccontextmanager
async def operator(kubeconfig: Path, namespaces: list[str], log: Path) -> AsyncIterator[Operator]:
    process = Operator(kubeconfig, namespaces, log)
    try:
        yield process
    finally:
        process.stop()


# ------------------------------------------------------------------------------ waiting


def ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(
                cond.get("status") == "True"
                and cond.get("observedGeneration", generation) == generation
                and status.get("observedGeneration", generation) == generation
            )
    return False


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout: float,
    interval: float,
    what: str,
    proc: Operator | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        if proc is not None:
            proc.check()
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


async def all_ready(admin: kube.KubeClient, namespace: str, nodes: int, gemeenten: int) -> bool:
    kps = await admin.list(kube.KNOOPPUNT, namespace)
    if len(kps) != nodes or not all(ready(kp) for kp in kps):
        return False
    items = await admin.list(kube.GEMEENTE, namespace)
    return len(items) == gemeenten and all(ready(item) for item in items)


async def gemeente_ready(admin: kube.KubeClient, namespace: str, name: str) -> bool:
    obj = await admin.get(kube.GEMEENTE, namespace, name)
    return obj is not None and ready(obj)


async def apply_all(client: kube.KubeClient, objs: list[dict[str, Any]]) -> float:
    """Server-side apply one after another with the operator's client; seconds taken."""
    start = time.perf_counter()
    for obj in objs:
        meta = obj["metadata"]
        await client.apply(
            kube.kind_of(obj),
            meta.get("namespace"),
            meta["name"],
            obj,
            field_manager="knooppunt-benchmark",
        )
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ audit


class Audit:
    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def events(self, since: int) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(since)
            data = f.read()
        return [
            e
            for e in (json.loads(line) for line in data.splitlines() if line.strip())
            if (e.get("user") or {}).get("username") == OPERATOR_USER
        ]

    async def wait_quiet(self, quiet: float = 3.0, timeout: float = 120.0) -> None:
        """Until the operator has made no request for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        size, since = self.offset(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            now_size = self.offset()
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


def describe(event: dict[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "?") + (
        f"/{ref['subresource']}" if ref.get("subresource") else ""
    )
    return f"{event.get('verb')} {resource}"


async def count_one_more(
    admin: kube.KubeClient, audit: Audit, obj: dict[str, Any]
) -> tuple[float, collections.Counter[str]]:
    """Apply one more gemeente; seconds until served, and the operator's requests for it
    (in that namespace or cluster-scoped, watches aside, until it has gone quiet)."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    await audit.wait_quiet()
    mark = audit.offset()
    start = time.perf_counter()
    await apply_all(admin, [obj])
    await wait_until(
        lambda: gemeente_ready(admin, namespace, name),
        timeout=120,
        interval=0.02,
        what=f"{name} served",
    )
    took = time.perf_counter() - start
    await audit.wait_quiet()
    events = [
        e
        for e in audit.events(mark)
        if (e.get("objectRef") or {}).get("namespace") in (namespace, None)
        and e.get("verb") != "watch"
    ]
    return took, collections.Counter(describe(e) for e in events)


# ------------------------------------------------------------------------------ floor


def _plain(obj: dict[str, Any], namespace: str, uids: dict[tuple[str, str], str]) -> dict[str, Any]:
    """An object as the operator applied it: server-filled fields and status left out, in
    another namespace, owned by that namespace's owner of the same kind and name."""
    meta = obj["metadata"]
    plain_meta: dict[str, Any] = {"name": meta["name"], "namespace": namespace}
    for key in ("labels", "annotations"):
        if meta.get(key):
            plain_meta[key] = {
                k: v for k, v in meta[key].items() if not k.startswith("deployment.kubernetes.io/")
            }
    owners = []
    for ref in meta.get("ownerReferences") or []:
        uid = uids.get((ref["kind"], ref["name"]))
        if uid is not None:
            owners.append({**ref, "uid": uid})
    if owners:
        plain_meta["ownerReferences"] = owners
    body = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("metadata", "status")}
    body["metadata"] = plain_meta
    spec = body.get("spec") or {}
    if obj["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
    if obj["kind"] == "PersistentVolumeClaim":
        spec.pop("volumeName", None)
    return body


async def floor(
    admin: kube.KubeClient, source: str, target: str, user_objects: list[dict[str, Any]]
) -> tuple[float, int]:
    """What the operator wrote in ``source`` for ``user_objects``, written again into
    ``target`` by a plain loop: the user's objects, every object the operator made for them,
    the finalizers, the statuses."""
    wanted = {o["metadata"]["name"] for o in user_objects if o["kind"] == "Gemeente"}
    others = {o["metadata"]["name"] for o in await admin.list(kube.GEMEENTE, source)} - wanted

    def for_wanted(obj: dict[str, Any]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return labels.get("knooppunt.nl/gemeente") not in others

    made: list[dict[str, Any]] = []
    for kind in CHILD_KINDS:  # list items carry no apiVersion/kind
        made += [
            {**o, "apiVersion": kind.api_version, "kind": kind.kind}
            for o in await admin.list(kind, source, labels=MANAGED)
            if for_wanted(o)
        ]
    resources = {
        kind: [o for o in await admin.list(kind, source) if o["metadata"]["name"] not in others]
        for kind in RESOURCES
    }
    order = {k.kind: i for i, k in enumerate(CHILD_KINDS)}
    made.sort(key=lambda o: order[o["kind"]])
    requests = 0
    start = time.perf_counter()
    uids: dict[tuple[str, str], str] = {}
    for obj in user_objects:
        meta = obj["metadata"]
        answer = await admin.apply(
            kube.kind_of(obj),
            target,
            meta["name"],
            in_namespace(obj, target),
            field_manager="knooppunt-tests",
        )
        uids[(obj["kind"], meta["name"])] = answer["metadata"]["uid"]
        requests += 1
    for obj in made:
        body = _plain(obj, target, uids)
        await admin.apply(kube.kind_of(obj), target, obj["metadata"]["name"], body)
        requests += 1
    for kind, items in resources.items():
        for obj in items:
            name = obj["metadata"]["name"]
            finalizers = [
                f for f in obj["metadata"].get("finalizers") or [] if f.startswith("knooppunt.nl/")
            ]
            if finalizers:
                await admin.merge_patch(
                    kind, target, name, {"metadata": {"finalizers": finalizers}}
                )
                requests += 1
            if obj.get("status"):
                await admin.merge_patch(
                    kind, target, name, {"status": obj["status"]}, subresource="status"
                )
                requests += 1
    return time.perf_counter() - start, requests


async def clear_finalizers(admin: kube.KubeClient, namespace: str) -> None:
    for kind in RESOURCES:
        for obj in await admin.list(kind, namespace):
            if obj["metadata"].get("finalizers"):
                await admin.merge_patch(
                    kind, namespace, obj["metadata"]["name"], {"metadata": {"finalizers": None}}
                )


# ------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> None:
    n, spread_n = args.gemeenten, args.spread
    bin_dir = controlplane_bin_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        sys.exit(
            f"control-plane binaries missing in {bin_dir}: {', '.join(missing)} "
            "(run tests/controlplane/build.sh)"
        )
    cp = ControlPlane(bin_dir, kwok=True, audit_policy=AUDIT_POLICY)
    big, small, floor_ns, wide = "scale", "scale-small", "scale-floor", "scale-spread"
    logs = Path(tempfile.mkdtemp(prefix="knooppunt-operator-scale-"))
    t0 = time.perf_counter()
    cp.start()
    assert cp.audit_log is not None
    audit = Audit(cp.audit_log)
    try:
        kubeconfig = setup(cp, [big, small, floor_ns, wide])
        for namespace in (big, small, floor_ns):
            cp.apply(volume(namespace, NODE))
        for k in range(SPREAD_NODES):
            cp.apply(volume(wide, f"knooppunt-{k}"))
        print(f"control plane up and set up in {time.perf_counter() - t0:.1f}s", flush=True)
        admin_creds = kube.Credentials.from_kubeconfig(cp.kubeconfig)
        async with kube.KubeClient(admin_creds, user_agent="knooppunt-benchmark") as admin:
            # ---- 1. from scratch, one node
            async with operator(kubeconfig, [big, small], logs / "operator.log") as proc:
                objs = one_node(big, n)
                start = time.perf_counter()
                applied = await apply_all(admin, objs)
                await wait_until(
                    lambda: all_ready(admin, big, 1, n),
                    timeout=1200,
                    interval=0.25,
                    what=f"node and {n} gemeenten Ready",
                    proc=proc,
                )
                scratch = time.perf_counter() - start
                print(
                    f"from scratch: {len(objs)} objects applied in {applied:.2f}s; node and "
                    f"all {n} gemeenten Ready after {scratch:.2f}s",
                    flush=True,
                )

                # ---- 2. one more gemeente at n
                names = [c for c, _ in CONNECTORS]
                one_more, kinds_n = await count_one_more(
                    admin, audit, in_namespace(gemeente(n + 1, names), big)
                )
                print(
                    f"one more gemeente (#{n + 1}): served after {one_more * 1000:.0f}ms, "
                    f"{sum(kinds_n.values())} requests",
                    flush=True,
                )

                # ---- one more at SMALL (another namespace, its own node)
                await apply_all(admin, one_node(small, SMALL, first=5001))
                await wait_until(
                    lambda: all_ready(admin, small, 1, SMALL),
                    timeout=600,
                    interval=0.25,
                    what=f"{SMALL} gemeenten Ready",
                    proc=proc,
                )
                _, kinds_small = await count_one_more(
                    admin, audit, in_namespace(gemeente(5001 + SMALL, names), small)
                )
            # the operator is stopped: nothing else writes while the floor runs
            floor_s, floor_requests = await floor(admin, big, floor_ns, one_node(big, n))
            print(
                f"floor: {floor_requests} requests (the operator's writes for {n} gemeenten "
                f"and the user's objects) by a plain loop: {floor_s:.2f}s",
                flush=True,
            )
            await clear_finalizers(admin, floor_ns)

            # ---- 3. spread: 2 000 gemeenten over 5 nodes, a fresh operator
            spread_s = peak = 0.0
            kinds_wide: collections.Counter[str] = collections.Counter()
            if spread_n:
                async with operator(kubeconfig, [wide], logs / "operator-spread.log") as proc:
                    objs = spread(wide, spread_n)
                    start = time.perf_counter()
                    await apply_all(admin, objs)
                    await wait_until(
                        lambda: all_ready(admin, wide, SPREAD_NODES, spread_n),
                        timeout=2400,
                        interval=1.0,
                        proc=proc,
                        what=f"{SPREAD_NODES} nodes and {spread_n} gemeenten Ready",
                    )
                    spread_s = time.perf_counter() - start
                    _, kinds_wide = await count_one_more(
                        admin, audit, in_namespace(gemeente(spread_n + 1, ["iwmo-1"]), wide)
                    )
                    peak = proc.peak_memory()
                print(
                    f"spread: {SPREAD_NODES} nodes and {spread_n} gemeenten Ready after "
                    f"{spread_s:.2f}s; operator peak memory {peak / 2**20:.0f} MiB",
                    flush=True,
                )

        count = {SMALL: sum(kinds_small.values()), n: sum(kinds_n.values())}
        kinds = {SMALL: kinds_small, n: kinds_n}
        if spread_n:
            count[spread_n] = sum(kinds_wide.values())
            kinds[spread_n] = kinds_wide
        print()
        print(f"gemeenten: {n}, connectors: {len(CONNECTORS)}, node: 1")
        print(
            f"ratio from scratch / floor: {scratch:.2f}s / {floor_s:.2f}s = "
            f"{scratch / floor_s:.2f}  (goal <= 3, beyond: 1.5)"
        )
        print(
            "operator API requests for a one-gemeente change: "
            + ", ".join(f"at {k} gemeenten {v}" for k, v in count.items())
            + f"; {'equal' if len(set(count.values())) == 1 else 'NOT equal'} (goal <= 4)"
        )
        for k, counted in kinds.items():
            print(f"  at {k}: " + ", ".join(f"{kind} x{v}" for kind, v in sorted(counted.items())))
        if spread_n:
            print(
                f"{spread_n} gemeenten over {SPREAD_NODES} Knooppunten: Ready after "
                f"{spread_s:.2f}s, operator peak memory {peak / 2**20:.0f} MiB"
            )
        if len(set(count.values())) != 1 or max(count.values()) > 4:
            print("FAIL: the request count grows with the number of gemeenten, or exceeds 4")
            sys.exit(1)
    finally:
        cp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gemeenten", type=int, default=400, help="gemeenten on the one node (default 400)"
    )
    parser.add_argument(
        "--spread", type=int, default=2000, help="gemeenten over 5 nodes (default 2000; 0: skip)"
    )
    args = parser.parse_args()
    if not 1 <= args.gemeenten <= 4999 or not 0 <= args.spread <= 4999:
        parser.error("--gemeenten must be between 1 and 4999, --spread between 0 and 4999")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
