"""Scale benchmark: one node, 3 connectors and many gemeenten on a real control plane.

Measures, in one run against the real control plane of the test suite
(``tests/controlplane``: etcd, kube-apiserver, controller-manager, scheduler, a kwok node so
pods go Running) with the operator started as the control-plane tests start it
(``tests/operator/harness.running_operator``, as the generated service account):

* **from scratch**: server-side apply 3 SectorConnectors (copies of the iWmo connector under
  three names and revisions), one Knooppunt pinning all three and N Gemeenten (default 400),
  then wait until the Knooppunt is ``Ready=True`` and every Gemeente reports ``Ready=True``
  (``Served``) for its current generation;
* **one more**: apply gemeente N+1 and wait until it reports ``Ready=True``;
* **floor**: server-side apply of the same number of plain ConfigMaps (N+4, and 1) from one
  process over one connection, in the same run.

It prints both times as ratios against the floor.

It also counts the operator's API requests for a one-gemeente change (a new Gemeente, until it
is served and the operator has gone quiet) at 10 gemeenten and at N gemeenten, through the API
server's audit log (every request made as the operator's service account, kopf's own
included), and checks that the count does not grow with the number of gemeenten.

    . .venv/bin/activate
    python benchmarks/operator_scale.py                 # 400 gemeenten
    python benchmarks/operator_scale.py --gemeenten 20  # quick
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import yaml  # noqa: E402
from knooppunt_operator import kube, rbac  # noqa: E402

from tests.controlplane.cluster import ControlPlane  # noqa: E402
from tests.controlplane.fixtures import controlplane_bin_dir, missing_binaries  # noqa: E402
from tests.operator import scenarios  # noqa: E402
from tests.operator.harness import fast_config, running_operator  # noqa: E402
from tests.operator.test_operator_controlplane import data_volume  # noqa: E402

OPERATOR_NAMESPACE = "knooppunt-system"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:knooppunt-operator"
NODE = scenarios.NODE
CONNECTORS = [("iwmo-a", 1), ("iwmo-b", 2), ("iwmo-c", 3)]
SMALL = 10  # gemeenten for the request-count baseline

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


def knooppunt() -> dict[str, Any]:
    return scenarios.knooppunt_resource(
        connectors=[{"name": name, "revision": revision} for name, revision in CONNECTORS]
    )


def gemeente(index: int) -> dict[str, Any]:
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
                for name, _ in CONNECTORS
            ],
        },
    }


def config_map(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"plain-{index:05d}"},
        "data": {"index": str(index)},
    }


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(obj)
    body["metadata"]["namespace"] = namespace
    return body


# ------------------------------------------------------------------------------ cluster


def setup(cp: ControlPlane, namespaces: list[str]) -> kube.Credentials:
    """CRDs, namespaces, the operator's RBAC; the operator's credentials (as in the tests)."""
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
    config = cp.kubeconfig_for_service_account(OPERATOR_NAMESPACE, "knooppunt-operator")
    return kube.Credentials.from_kubeconfig(config)


def apply_all(cp: ControlPlane, http: httpx.Client, objs: list[dict[str, Any]]) -> float:
    """Server-side apply one after another over one connection; seconds taken."""
    start = time.perf_counter()
    for obj in objs:
        cp.apply(obj, client=http)
    return time.perf_counter() - start


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


def wait_until(probe: Callable[[], Any], *, timeout: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {last!r}")


def progress(http: httpx.Client, namespace: str) -> str:
    """One line: the node's Deployment and conditions, how many gemeenten are served."""
    base = f"/apis/knooppunt.nl/v1alpha1/namespaces/{namespace}"
    kp = http.get(f"{base}/knooppunten/{NODE}")
    conds = (
        ",".join(
            f"{c['type']}={c['status']}/{c.get('reason')}"
            for c in ((kp.json().get("status") or {}).get("conditions") or [])
        )
        if kp.status_code == 200
        else "-"
    )
    dep = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{NODE}")
    rollout = (
        f"ready {(dep.json().get('status') or {}).get('readyReplicas', 0)}"
        if dep.status_code == 200
        else "none"
    )
    items = http.get(f"{base}/gemeenten").json()["items"]
    served = sum(1 for item in items if ready(item))
    return f"Deployment {rollout}; Knooppunt {conds}; gemeenten served {served}/{len(items)}"


def reporting(
    probe: Callable[[], Any], http: httpx.Client, namespace: str, start: float, every: float | None
) -> Callable[[], Any]:
    last = [time.perf_counter()]

    def wrapped() -> Any:
        if every is not None and time.perf_counter() - last[0] >= every:
            last[0] = time.perf_counter()
            print(f"  t={last[0] - start:6.1f}s {progress(http, namespace)}", flush=True)
        return probe()

    return wrapped


def node_ready(http: httpx.Client, namespace: str) -> bool:
    r = http.get(f"/apis/knooppunt.nl/v1alpha1/namespaces/{namespace}/knooppunten/{NODE}")
    return r.status_code == 200 and ready(r.json())


def gemeenten_ready(http: httpx.Client, namespace: str, count: int) -> int | bool:
    r = http.get(f"/apis/knooppunt.nl/v1alpha1/namespaces/{namespace}/gemeenten")
    r.raise_for_status()
    items = r.json()["items"]
    done = sum(1 for item in items if ready(item))
    return True if len(items) == count and done == count else False


def gemeente_ready(http: httpx.Client, namespace: str, name: str) -> bool:
    r = http.get(f"/apis/knooppunt.nl/v1alpha1/namespaces/{namespace}/gemeenten/{name}")
    return r.status_code == 200 and ready(r.json())


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
        out = []
        for line in data.splitlines():
            if line.strip():
                event = json.loads(line)
                if (event.get("user") or {}).get("username") == OPERATOR_USER:
                    out.append(event)
        return out

    def wait_quiet(self, quiet: float = 3.0, timeout: float = 60.0) -> None:
        """Until the operator has made no request for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        size, since = self.offset(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
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


def count_one_more(
    cp: ControlPlane, http: httpx.Client, audit: Audit, namespace: str, index: int
) -> tuple[float, int, collections.Counter[str]]:
    """Apply one more gemeente; seconds until served, and the operator's requests for it
    (in that namespace or cluster-scoped, until it has gone quiet)."""
    audit.wait_quiet()
    mark = audit.offset()
    body = in_namespace(gemeente(index), namespace)
    start = time.perf_counter()
    cp.apply(body, client=http)
    wait_until(
        lambda: gemeente_ready(http, namespace, body["metadata"]["name"]),
        timeout=120,
        interval=0.02,
        what=f"gemeente {index} served",
    )
    took = time.perf_counter() - start
    audit.wait_quiet()
    events = [
        e
        for e in audit.events(mark)
        if (e.get("objectRef") or {}).get("namespace") in (namespace, None)
        and e.get("verb") != "watch"
    ]
    return took, len(events), collections.Counter(describe(e) for e in events)


# ------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace) -> None:
    n = args.gemeenten
    bin_dir = controlplane_bin_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        sys.exit(
            f"control-plane binaries missing in {bin_dir}: {', '.join(missing)} "
            "(run tests/controlplane/build.sh)"
        )
    cp = ControlPlane(bin_dir, kwok=True, audit_policy=AUDIT_POLICY)
    big, small, floor_ns = "scale", "scale-small", "scale-floor"
    t0 = time.perf_counter()
    cp.start()
    assert cp.audit_log is not None
    audit = Audit(cp.audit_log)
    try:
        credentials = setup(cp, [big, small, floor_ns])
        for namespace in (big, small):
            cp.apply(data_volume(namespace))
        print(f"control plane up and set up in {time.perf_counter() - t0:.1f}s", flush=True)
        # the production observe interval would add timer requests to the count; the node's
        # readiness follows its Deployment's events, so the timer is not needed here
        config = fast_config(
            namespace=OPERATOR_NAMESPACE,
            observe_interval=3600.0,
            rollout_deadline_seconds=600,
            pending_retry_seconds=30.0,
        )
        async with running_operator(credentials, config, namespaces=[big, small]):
            with cp.client() as http:
                # ---- floor: plain objects from one process
                total = n + len(CONNECTORS) + 1
                floor_many = await asyncio.to_thread(
                    apply_all,
                    cp,
                    http,
                    [in_namespace(config_map(i), floor_ns) for i in range(total)],
                )
                singles = []
                for i in range(5):
                    singles.append(
                        await asyncio.to_thread(
                            apply_all, cp, http, [in_namespace(config_map(total + i), floor_ns)]
                        )
                    )
                floor_one = statistics.median(singles)
                print(
                    f"floor: server-side apply of {total} ConfigMaps: {floor_many:.2f}s; "
                    f"of 1 ConfigMap: {floor_one * 1000:.1f}ms (median of 5)",
                    flush=True,
                )

                # ---- from scratch
                objs = [in_namespace(connector(name, rev), big) for name, rev in CONNECTORS]
                objs.append(in_namespace(knooppunt(), big))
                objs += [in_namespace(gemeente(i), big) for i in range(1, n + 1)]
                start = time.perf_counter()
                applied = await asyncio.to_thread(apply_all, cp, http, objs)
                every = args.progress or None
                await asyncio.to_thread(
                    wait_until,
                    reporting(lambda: node_ready(http, big), http, big, start, every),
                    timeout=600,
                    interval=0.1,
                    what="Knooppunt Ready",
                )
                node_at = time.perf_counter() - start
                await asyncio.to_thread(
                    wait_until,
                    reporting(lambda: gemeenten_ready(http, big, n), http, big, start, every),
                    timeout=1200,
                    interval=0.25,
                    what=f"{n} gemeenten Ready",
                )
                scratch = time.perf_counter() - start
                print(
                    f"from scratch: {total} objects applied in {applied:.2f}s; Knooppunt "
                    f"Ready after {node_at:.2f}s; all {n} gemeenten Ready after "
                    f"{scratch:.2f}s",
                    flush=True,
                )

                # ---- one more gemeente at N (timed and counted)
                one_more, count_n, kinds_n = await asyncio.to_thread(
                    count_one_more, cp, http, audit, big, n + 1
                )
                print(
                    f"one more gemeente (#{n + 1}): served after {one_more * 1000:.0f}ms",
                    flush=True,
                )

                # ---- request count at 10 gemeenten (another namespace, its own node)
                small_objs = [in_namespace(connector(name, rev), small) for name, rev in CONNECTORS]
                small_objs.append(in_namespace(knooppunt(), small))
                small_objs += [in_namespace(gemeente(5000 + i), small) for i in range(1, SMALL + 1)]
                await asyncio.to_thread(apply_all, cp, http, small_objs)
                await asyncio.to_thread(
                    wait_until,
                    lambda: node_ready(http, small),
                    timeout=600,
                    interval=0.2,
                    what="small Knooppunt Ready",
                )
                await asyncio.to_thread(
                    wait_until,
                    lambda: gemeenten_ready(http, small, SMALL),
                    timeout=600,
                    interval=0.25,
                    what=f"{SMALL} gemeenten Ready",
                )
                _, count_small, kinds_small = await asyncio.to_thread(
                    count_one_more, cp, http, audit, small, 5000 + SMALL + 1
                )

        print()
        print(f"gemeenten: {n}, connectors: {len(CONNECTORS)}, node: 1")
        print(
            f"ratio from scratch / floor({total} plain applies): "
            f"{scratch:.2f}s / {floor_many:.2f}s = {scratch / floor_many:.2f}"
        )
        print(
            f"ratio one more gemeente / floor(1 plain apply): "
            f"{one_more * 1000:.0f}ms / {floor_one * 1000:.1f}ms = {one_more / floor_one:.1f}"
        )
        print(
            f"operator API requests for a one-gemeente change: at {SMALL} gemeenten "
            f"{count_small}, at {n} gemeenten {count_n}; "
            f"{'equal' if count_small == count_n else 'NOT equal'}"
        )
        for label, kinds in ((f"at {SMALL}", kinds_small), (f"at {n}", kinds_n)):
            print(f"  {label}: " + ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items())))
        if count_n > count_small:
            print("FAIL: the request count grows with the number of gemeenten")
            sys.exit(1)
    finally:
        cp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gemeenten", type=int, default=400, help="gemeenten on the node (default 400)"
    )
    parser.add_argument(
        "--progress",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="while waiting from scratch, print progress this often",
    )
    args = parser.parse_args()
    if not 1 <= args.gemeenten <= 4999:
        parser.error("--gemeenten must be between 1 and 4999")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
