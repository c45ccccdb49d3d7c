"""What the cluster under test can do, and why a test is skipped where it cannot.

The suite runs against the local control plane (``cluster.ControlPlane``), which can do
everything the tests ask for, or against an existing cluster named by
``$KNOOPPUNT_TEST_KUBECONFIG`` (``existing.ExistingCluster``), which cannot do everything:

* ``fake-node``: a kwok node the tests cordon, so that a rollout is held back (pods stay
  Pending) until a scenario lets it succeed; any image "runs" on it;
* ``audit-log``: the API server's audit log of the operator's writes, as a file;
* ``webhook-callback``: the API server calls an admission webhook served by the test process;
* ``runtime-pods``: the Knooppunt's pods really start and become ready.

A test that needs one says so with ``@pytest.mark.cluster_needs(capabilities.AUDIT_LOG)``; on
a cluster without it the test is skipped with the reason below (``fixtures.py`` does that
before any fixture is set up). Tests that work on both, differently, ask the
``cluster_capabilities`` fixture. On the local control plane nothing is ever skipped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FAKE_NODE = "fake-node"
AUDIT_LOG = "audit-log"
WEBHOOK_CALLBACK = "webhook-callback"
RUNTIME_PODS = "runtime-pods"
ALL = (FAKE_NODE, AUDIT_LOG, WEBHOOK_CALLBACK, RUNTIME_PODS)

KUBECONFIG_ENV = "KNOOPPUNT_TEST_KUBECONFIG"
CONTEXT_ENV = "KNOOPPUNT_TEST_CONTEXT"
WEBHOOK_HOST_ENV = "KNOOPPUNT_TEST_WEBHOOK_HOST"
RUNTIME_PODS_ENV = "KNOOPPUNT_TEST_RUNTIME_PODS"
POD_IMAGE_ENV = "KNOOPPUNT_TEST_POD_IMAGE"
DEFAULT_POD_IMAGE = "registry.k8s.io/pause:3.10"

WHY_NOT = {
    FAKE_NODE: (
        "no fake (kwok) node to cordon on an existing cluster: a rollout cannot be held back "
        "on purpose (the tests never cordon a real cluster's nodes)"
    ),
    AUDIT_LOG: (
        "the API server's audit log is not readable by the tests on an existing cluster "
        "(the local control plane writes it to a file)"
    ),
    WEBHOOK_CALLBACK: (
        "the API server must call back an admission webhook served by the test process: set "
        f"{WEBHOOK_HOST_ENV} to an address of this machine that the API server reaches "
        "(k3s on this host: 127.0.0.1; kind: the docker network's gateway, e.g. 172.18.0.1)"
    ),
    RUNTIME_PODS: (
        "the Knooppunt's pods must really start and become ready on an existing cluster: make "
        "the runtime image (the CRD's default spec.image) pullable by its nodes (kind: kind "
        f"load docker-image ...) and set {RUNTIME_PODS_ENV}=1"
    ),
}


@dataclass(frozen=True)
class Target:
    """The existing cluster named by the environment (or None: the local control plane)."""

    kubeconfig: Path
    context: str | None = None


@dataclass(frozen=True)
class Capabilities:
    local: bool
    """The local control plane: its own PKI, kwok, audit log; everything available."""
    missing: Mapping[str, str] = field(default_factory=dict)
    """Capability name -> why this cluster lacks it."""
    webhook_host: str = "127.0.0.1"
    """Where the API server reaches a webhook served by the test process."""
    pod_image: str = DEFAULT_POD_IMAGE
    """An image that runs on the cluster's nodes (the local kwok node runs anything)."""

    def has(self, name: str) -> bool:
        if name not in ALL:
            raise ValueError(f"unknown cluster capability {name!r} (known: {', '.join(ALL)})")
        return name not in self.missing

    def why_not(self, names: tuple[str, ...]) -> list[str]:
        """Why the cluster cannot run a test that needs `names` ([] when it can)."""
        return [f"{name}: {self.missing[name]}" for name in names if not self.has(name)]


def target(environ: Mapping[str, str] | None = None) -> Target | None:
    env = os.environ if environ is None else environ
    path = env.get(KUBECONFIG_ENV, "").strip()
    if not path:
        return None
    return Target(Path(path).expanduser(), env.get(CONTEXT_ENV, "").strip() or None)


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{name}={env[name]!r}: use 1 or 0")


def from_environment(environ: Mapping[str, str] | None = None) -> Capabilities:
    env = os.environ if environ is None else environ
    if target(env) is None:
        return Capabilities(local=True)
    missing = {FAKE_NODE: WHY_NOT[FAKE_NODE], AUDIT_LOG: WHY_NOT[AUDIT_LOG]}
    webhook_host = env.get(WEBHOOK_HOST_ENV, "").strip()
    if not webhook_host:
        missing[WEBHOOK_CALLBACK] = WHY_NOT[WEBHOOK_CALLBACK]
    if not _flag(env, RUNTIME_PODS_ENV):
        missing[RUNTIME_PODS] = WHY_NOT[RUNTIME_PODS]
    return Capabilities(
        local=False,
        missing=missing,
        webhook_host=webhook_host or "127.0.0.1",
        pod_image=env.get(POD_IMAGE_ENV, "").strip() or DEFAULT_POD_IMAGE,
    )
