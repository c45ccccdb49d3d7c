"""A real worker node for a test `ControlPlane`: containerd + runc + CNI + kubelet + kube-proxy.

    with ControlPlane(bin_dir, kwok=False, **WorkerNode.control_plane_args()) as cp:
        with WorkerNode(cp, node_bin_dir, images=[archive, ...]) as node:
            ...   # pods scheduled to node.name really run; node.pod_ip(...) is reachable

Everything lives in a private temporary directory: containerd's root, state and socket, the
CNI configuration (a bridge with its own /24), the kubelet's root directory and pod logs.
containerd, runc and the CNI plugins are Debian's (tools/images/install.sh --node); kubelet
and kube-proxy are built from the control plane's k8s.io/kubernetes version
(tests/controlplane/build_node.sh).

kube-proxy writes fixed iptables chains (KUBE-SERVICES, ...), so only one worker node may run
on a machine at a time: `WorkerNode` holds a machine-wide lock while it runs (a second test
session waits for it), and removes its chains, bridge and mounts when it stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from tests.controlplane.cluster import (
    ControlPlane,
    _die_with_parent,
    _Proc,
    _signal_group,
    _tail,
    free_ports,
    wait_for,
    write_kubeconfig,
)

CNI_BIN_DIR = Path("/usr/lib/cni")
LOCK_FILE = Path(os.environ.get("KNOOPPUNT_CACHE", Path.home() / ".cache" / "knooppunt")) / (
    "realpods-node.lock"
)
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")


class WorkerNodeError(RuntimeError):
    """The node failed to start; the message carries the components' logs."""


def host_ip() -> str:
    """The address pods reach the host (and so the API server) at: the default route's source."""
    out = subprocess.run(
        ["ip", "-4", "-json", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=True
    ).stdout
    return str(json.loads(out)[0]["prefsrc"])


def _free_subnet() -> ipaddress.IPv4Network:
    routes = subprocess.run(
        ["ip", "-4", "-json", "route"], capture_output=True, text=True, check=True
    ).stdout
    used = [
        ipaddress.ip_network(r["dst"], strict=False)
        for r in json.loads(routes)
        if r.get("dst") not in (None, "default")
    ]
    subnets = list(POD_NETWORK.subnets(new_prefix=24))
    random.shuffle(subnets)
    for net in subnets:
        if not any(net.overlaps(u) for u in used):
            return net  # type: ignore[return-value]
    raise WorkerNodeError(f"no free /24 in {POD_NETWORK}")


class WorkerNode:
    """One real node of `cp`; see the module docstring."""

    def __init__(
        self,
        cp: ControlPlane,
        bin_dir: str | os.PathLike[str],
        *,
        images: Iterable[Path] = (),
        pause_archive: Path,
        pause_image: str,
        startup_timeout: float = 180.0,
        keep: bool | None = None,
    ) -> None:
        self.cp = cp
        self.bin_dir = Path(bin_dir)
        self.images = list(images)
        self.pause_archive = pause_archive
        self.pause_image = pause_image
        self.startup_timeout = startup_timeout
        self.keep = keep if keep is not None else os.environ.get("KNOOPPUNT_NODE_KEEP") == "1"
        self.dir: Path | None = None
        self.procs: list[_Proc] = []
        self.name = f"knooppunt-node-{os.getpid()}"
        self.subnet: ipaddress.IPv4Network | None = None
        self.bridge = f"knp{os.getpid() % 100000}"
        self.ip = host_ip()
        self._lock: IO[str] | None = None

    @staticmethod
    def control_plane_args(service_cidr: str = "10.0.0.0/24") -> dict[str, Any]:
        """ControlPlane options so pods reach the API server: it listens on every address and
        advertises the host's, so the `kubernetes` Service's endpoint is reachable from pods."""
        ip = host_ip()
        return {
            "kwok": False,
            "extra_args": {
                "kube-apiserver": [
                    "--bind-address=0.0.0.0",
                    f"--advertise-address={ip}",
                    "--endpoint-reconciler-type=lease",
                ],
                "kube-controller-manager": ["--allocate-node-cidrs=false"],
            },
        }

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> WorkerNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> Path:
        if self.dir is None:
            raise RuntimeError("node not started")
        return self.dir

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd.sock"

    def start(self) -> WorkerNode:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._lock = LOCK_FILE.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one worker node per machine (kube-proxy)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # Short path: unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="knp-node-", dir="/tmp"))
        (self.dir / "logs").mkdir()
        self.subnet = _free_subnet()
        self._cleanup_network()  # a previous run killed hard may have left its chains
        deadline = time.monotonic() + self.startup_timeout
        self._start_containerd()
        self._wait(deadline, "containerd", lambda: self._ctr("version").returncode == 0)
        for archive in [self.pause_archive, *self.images]:
            self._import(archive)
        self._write_pki_and_kubeconfigs()
        self._start_kubelet()
        self._start_kube_proxy()
        self._wait(deadline, f"node {self.name} Ready", self._node_ready)

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        # kube-proxy and the kubelet first, then every pod sandbox, then containerd.
        for p in [p for p in procs if p.name != "containerd"]:
            self._terminate(p)
        if self.dir is not None:
            self._remove_pods()
        for p in [p for p in procs if p.name == "containerd"]:
            self._terminate(p)
        if self.dir is not None:
            self._unmount_below(self.dir)
            self._cleanup_network()
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ---------------------------------------------------------------- helpers for tests

    def format_logs(self, lines: int = 60) -> str:
        out = []
        for p in self.procs:
            rc = p.popen.poll()
            state = "running" if rc is None else f"exited rc={rc}"
            out.append(f"----- {p.name} ({state}) {p.log} -----\n{_tail(p.log, lines)}")
        return "\n".join(out)

    def pod_logs(self, namespace: str | None = None, lines: int = 40) -> str:
        """The tail of every container log the kubelet wrote (of one namespace), newest
        restart last: what ``kubectl logs`` would show, read from the node's disk."""
        root = self.state / "pod-logs"
        out = []
        pattern = f"{namespace}_*" if namespace else "*"
        for pod in sorted(root.glob(pattern)) if root.is_dir() else []:
            for log in sorted(
                pod.glob("*/*.log"), key=lambda p: (p.parent.name, p.stat().st_mtime)
            ):
                out.append(
                    f"----- {pod.name}/{log.parent.name}/{log.name} -----\n{_tail(log, lines)}"
                )
        return "\n".join(out) or f"(no container logs under {root})"

    def pod_volume(self, pod_uid: str, plugin: str, volume: str) -> Path:
        """Where the kubelet materialised a pod's volume on this node, e.g.
        ``pod_volume(uid, "kubernetes.io~secret", "tls")``: the files the container sees."""
        return self.state / "kubelet" / "pods" / pod_uid / "volumes" / plugin / volume

    def crictl_pods(self) -> list[dict[str, Any]]:
        out = self._ctr("--namespace", "k8s.io", "containers", "list", "--quiet")
        return [{"id": line} for line in out.stdout.split()]

    # ---------------------------------------------------------------- components

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = self.state / "logs" / f"{name}.log"
        (self.state / "logs" / f"{name}.cmdline").write_text(" ".join(cmd) + "\n")
        with log.open("wb") as out:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.procs.append(_Proc(name, popen, log))

    def _terminate(self, p: _Proc) -> None:
        _signal_group(p.popen, signal.SIGTERM)
        try:
            p.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            _signal_group(p.popen, signal.SIGKILL)
            p.popen.wait(timeout=15)

    def _ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _start_containerd(self) -> None:
        d = self.state
        assert self.subnet is not None
        cni = d / "cni"
        cni.mkdir()
        (cni / "10-knooppunt.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "knooppunt",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.bridge,
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(d / "ipam"),
                                "ranges": [[{"subnet": str(self.subnet)}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{d / "containerd-root"}"
state = "{d / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{d / "containerd.ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd-opt"}"
[{cri}]
  sandbox_image = "{self.pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{shutil.which("runc") or "/usr/sbin/runc"}"
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni}"
  max_conf_num = 1
"""
        (d / "containerd.toml").write_text(config)
        self._spawn(
            "containerd",
            ["containerd", "--config", str(d / "containerd.toml"), "--log-level", "info"],
        )

    def _import(self, archive: Path) -> None:
        out = self._ctr(
            "--namespace", "k8s.io", "images", "import", "--no-unpack", str(archive.resolve())
        )
        if out.returncode != 0:
            raise WorkerNodeError(f"ctr images import {archive} failed: {out.stderr}")

    def _write_pki_and_kubeconfigs(self) -> None:
        """Certificates from the cluster CA: the kubelet's client (system:node:<name> in
        system:nodes, what the Node authorizer expects) and serving ones, kube-proxy's."""
        ca = self.cp._ca
        assert ca is not None, "control plane not started"
        pki = self.state / "pki"
        pki.mkdir()
        stem = f"node-{self.name}"
        client = ca.issue(
            f"{stem}-kubelet-client", f"system:node:{self.name}", ["system:nodes"], client=True
        )
        serving = ca.issue(
            f"{stem}-kubelet-serving",
            self.name,
            server=True,
            dns_names=[self.name],
            ips=[self.ip, "127.0.0.1"],
        )
        proxy = ca.issue(f"{stem}-kube-proxy", "system:kube-proxy", client=True)
        shutil.copy(self.cp.ca_cert, pki / "ca.crt")
        shutil.copy(serving.cert, pki / "kubelet-serving.crt")
        shutil.copy(serving.key, pki / "kubelet-serving.key")
        write_kubeconfig(
            self.state / "kubelet.kubeconfig",
            self.cp.server,
            self.cp.ca_cert,
            user=f"system:node:{self.name}",
            client=client,
        )
        write_kubeconfig(
            self.state / "kube-proxy.kubeconfig",
            self.cp.server,
            self.cp.ca_cert,
            user="system:kube-proxy",
            client=proxy,
        )

    def _start_kubelet(self) -> None:
        d = self.state
        (healthz,) = free_ports(1)
        (self.kubelet_port,) = free_ports(1)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "tlsCertFile": str(d / "pki" / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(d / "pki" / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(d / "pki" / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "localStorageCapacityIsolation": False,
            "podLogsDir": str(d / "pod-logs"),
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "registerNode": True,
            "protectKernelDefaults": False,
            "maxPods": 60,
        }
        (d / "kubelet.yaml").write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={d / 'kubelet.yaml'}",
                f"--kubeconfig={d / 'kubelet.kubeconfig'}",
                f"--root-dir={d / 'kubelet'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.ip}",
                "--v=2",
            ],
        )

    def _start_kube_proxy(self) -> None:
        d = self.state
        healthz, metrics = free_ports(2)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(d / "kube-proxy.kubeconfig")},
            "hostnameOverride": self.name,
            "bindAddress": "0.0.0.0",
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            "mode": "iptables",
            "clusterCIDR": str(POD_NETWORK),
            "conntrack": {"maxPerCore": 0},
            "iptables": {"masqueradeAll": False, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        }
        (d / "kube-proxy.yaml").write_text(yaml.safe_dump(config))
        self._spawn(
            "kube-proxy",
            [str(self.bin_dir / "kube-proxy"), f"--config={d / 'kube-proxy.yaml'}", "--v=2"],
        )

    # ---------------------------------------------------------------- readiness / teardown

    def _wait(self, deadline: float, what: str, probe: Any) -> None:
        def check() -> bool:
            for p in self.procs:
                if p.popen.poll() is not None:
                    raise WorkerNodeError(f"{p.name} exited with rc={p.popen.returncode}")
            return bool(probe())

        try:
            wait_for(
                check, timeout=max(1.0, deadline - time.monotonic()), interval=0.5, message=what
            )
        except (TimeoutError, WorkerNodeError) as exc:
            raise WorkerNodeError(f"worker node: {exc}\n{self.format_logs()}") from None

    def _node_ready(self) -> bool:
        with self.cp.client(timeout=5) as http:
            r = http.get(f"/api/v1/nodes/{self.name}")
            if r.status_code != 200:
                return False
            conds = r.json().get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _remove_pods(self) -> None:
        """Stop every container and sandbox (their network namespaces and shims go with it)."""
        if not self.containerd_socket.exists():
            return
        for kind in ("tasks", "containers"):
            out = self._ctr("--namespace", "k8s.io", kind, "list", "--quiet")
            for ident in out.stdout.split():
                if kind == "tasks":
                    self._ctr(
                        "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", ident
                    )
                    self._ctr("--namespace", "k8s.io", "tasks", "delete", "--force", ident)
                else:
                    self._ctr("--namespace", "k8s.io", "containers", "delete", ident)

    @staticmethod
    def _unmount_below(root: Path) -> None:
        prefix = str(root) + "/"
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)

    def _cleanup_network(self) -> None:
        kube_proxy = self.bin_dir / "kube-proxy"
        if kube_proxy.exists():
            subprocess.run(
                [str(kube_proxy), "--cleanup"], capture_output=True, check=False, timeout=60
            )
        # The kubelet's own chains (kube-proxy --cleanup leaves them).
        for table in ("filter", "nat", "mangle"):
            rules = subprocess.run(
                ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
            ).stdout.splitlines()
            for rule in rules:
                ours = "-j KUBE-" in rule and not rule.startswith("-A KUBE-")
                if rule.startswith("-A ") and ours:
                    subprocess.run(
                        ["iptables", "-w", "-t", table, "-D", *rule[3:].split()],
                        capture_output=True,
                        check=False,
                    )
            for chain in ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"):
                subprocess.run(
                    ["iptables", "-w", "-t", table, "-F", chain], capture_output=True, check=False
                )
                subprocess.run(
                    ["iptables", "-w", "-t", table, "-X", chain], capture_output=True, check=False
                )
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)


@contextlib.contextmanager
def worker_node(cp: ControlPlane, bin_dir: Path, **kwargs: Any) -> Iterator[WorkerNode]:
    node = WorkerNode(cp, bin_dir, **kwargs)
    try:
        node.start()
        yield node
    finally:
        node.stop()
