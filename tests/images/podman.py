"""The images `tools/images/build.sh` builds, and podman run the way this machine needs it.

Podman is called with ``--runtime runc`` (crun refuses hybrid cgroup hierarchies) and with
rlimits within the machine's hard limits (podman's default nofile is refused otherwise).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "images" / "build.sh"


def podman_command() -> list[str]:
    return ["podman", "--runtime", "runc"]


def ulimit_args() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 20000 if nofile == resource.RLIM_INFINITY else min(nofile, 1 << 20)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podman_command(), *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def available() -> str | None:
    """None when podman can run containers here; otherwise why not."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return "podman and runc are not installed (./dev images installs them)"
    if os.geteuid() != 0:
        return "the image tests run podman as root (rootful networking and runc)"
    return None


@dataclass(frozen=True)
class Images:
    node_runtime: str
    operator: str

    def inspect(self, ref: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("image", "inspect", ref).stdout)
        return data[0]


def refs() -> Images:
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--refs"], capture_output=True, text=True, check=True
    ).stdout.split()
    return Images(node_runtime=out[0], operator=out[1])


def build(save_dir: Path | None = None) -> Images:
    """Build (a no-op when the cached images match the sources) and return the references."""
    args = ["bash", str(BUILD_SCRIPT)]
    if save_dir is not None:
        args += ["--save", str(save_dir)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"tools/images/build.sh failed:\n{proc.stderr[-4000:]}")
    return refs()


PAUSE_REPOSITORY = "localhost/knooppunt-pause"


def pause_archive(cache: Path) -> tuple[str, Path]:
    """The pod sandbox ("pause") image for containerd: Debian's statically linked catatonit in
    pause mode, on an empty base (no registry is needed for registry.k8s.io/pause).

    Returns the image reference and a docker-archive of it (for ``ctr images import``), both
    cached by catatonit's content.
    """
    binary = Path(shutil.which("catatonit") or "/usr/bin/catatonit").resolve()
    import hashlib

    key = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    ref = f"{PAUSE_REPOSITORY}:{key}"
    archive = cache / f"pause-{key}.tar"
    if archive.is_file():
        return ref, archive
    cache.mkdir(parents=True, exist_ok=True)
    context = cache / f"pause-{key}.context"
    context.mkdir(exist_ok=True)
    shutil.copy(binary, context / "catatonit")
    (context / "Containerfile").write_text(
        'FROM scratch\nCOPY catatonit /pause\nUSER 65535:65535\nENTRYPOINT ["/pause", "-P"]\n'
    )
    podman("build", "--quiet", "--tag", ref, str(context))
    tmp = archive.with_suffix(".tmp")
    podman("save", "--quiet", "--format", "docker-archive", "-o", str(tmp), ref)
    tmp.rename(archive)
    shutil.rmtree(context, ignore_errors=True)
    return ref, archive


def cache_dir() -> Path:
    return Path(os.environ.get("KNOOPPUNT_CACHE", Path.home() / ".cache" / "knooppunt"))
