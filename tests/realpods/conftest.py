"""Real pods: a control plane with a real worker node (kubelet + containerd + runc + CNI +
kube-proxy, tests/controlplane/node.py) and the images built from this tree loaded into it.

Fixture ``realpods`` (session): started once, shared by every `realpods` test. Without root,
containerd or the node binaries the test fails when ``$CI`` is set (``./dev test`` installs
and builds all of it) and is skipped otherwise, with the command that provides it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from knooppunt_operator import kube

from node_runtime.security.pki.authority import create_root_ca
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.fixtures import AUDIT_POLICY, controlplane_bin_dir, in_ci
from tests.controlplane.node import POD_NETWORK, WorkerNode
from tests.images import podman
from tests.postgresql.server import INSTALL_HINT, PostgresServer, find_bin_dir
from tests.postgresql.tls import server_tls

HERE = Path(__file__).resolve().parent
NODE_BUILD = HERE.parent / "controlplane" / "build_node.sh"


@dataclass
class RealPods:
    cp: ControlPlane
    node: WorkerNode
    images: podman.Images
    operator_credentials: kube.Credentials


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(f"{message} (CI is set: the realpods tests must run)", pytrace=False)
    pytest.skip(message)


def node_bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(NODE_BUILD), "--bin-dir"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def realpods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealPods]:
    from tests.operator.test_operator_controlplane import install_operator

    reason = podman.available()
    if reason is not None:
        _unavailable(reason)
    for tool in ("containerd", "ctr", "iptables", "conntrack"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is missing: run tools/images/install.sh --node")
    if not (podman.REPO / "tests/controlplane/build.sh").exists():
        _unavailable("no control plane build script")
    cp_bin, node_bin = controlplane_bin_dir(), node_bin_dir()
    for path in (cp_bin / "kube-apiserver", node_bin / "kubelet", node_bin / "kube-proxy"):
        if not path.is_file():
            _unavailable(
                f"{path} is missing: run tests/controlplane/build.sh and "
                "tests/controlplane/build_node.sh"
            )
    archives = tmp_path_factory.mktemp("images")
    images = podman.build(save_dir=archives)
    pause_ref, pause_tar = podman.pause_archive(podman.cache_dir() / "images" / "archives")
    cp = ControlPlane(cp_bin, audit_policy=AUDIT_POLICY, **WorkerNode.control_plane_args())
    cp.start()
    try:
        node = WorkerNode(
            cp,
            node_bin,
            images=sorted(archives.glob("*.tar")),
            pause_archive=pause_tar,
            pause_image=pause_ref,
        )
        node.start()
        try:
            credentials = kube.Credentials.from_kubeconfig(install_operator(cp))
            yield RealPods(cp, node, images, credentials)
        finally:
            node.stop()
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def realpods_postgresql(realpods: RealPods) -> Iterator[PostgresServer]:
    """A PostgreSQL server on the host that the node's pods reach at the host's address (the
    one the API server advertises): it listens there too, and its pg_hba.conf lets the pod
    network (and the host address, should a packet be masqueraded) log in with a password,
    over TLS only (``ssl=on``, a certificate for that address from a CA made here)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(f"PostgreSQL is missing: run {INSTALL_HINT}")
    assert bin_dir is not None
    # ssl=on with a certificate for the address the pods dial: the node verifies it
    # (verify-full against the CA the Knooppunt names); logins without TLS are refused
    tls = server_tls(
        create_root_ca(common_name="knooppunt realpods PostgreSQL CA"),
        dns_names=["localhost"],
        ip_addresses=[realpods.node.ip, "127.0.0.1"],
    )
    server = PostgresServer(
        bin_dir,
        extra_listen=[realpods.node.ip],
        allow_networks=[str(POD_NETWORK), f"{realpods.node.ip}/32"],
        tls=tls,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "realpods" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realpods)
        if "realpods_postgresql" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgresql)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.failed and "realpods" in getattr(item, "fixturenames", ()):
        rp = item.funcargs.get("realpods") if hasattr(item, "funcargs") else None
        if isinstance(rp, RealPods):
            report.sections.append(("worker node logs", rp.node.format_logs(40)))
            report.sections.append(("container logs", rp.node.pod_logs(lines=60)))
    return report
