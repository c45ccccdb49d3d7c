"""The helm binary built by tools/helm/build.sh, and rendering the operator chart with it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.iac.harness import REPO

BUILD = REPO / "tools" / "helm" / "build.sh"
CHART = REPO / "charts" / "knooppunt-operator"
HELM_ENV = "KNOOPPUNT_HELM"


def helm_path() -> Path:
    """Where the helm binary is expected (never builds)."""
    if os.environ.get(HELM_ENV):
        return Path(os.environ[HELM_ENV])
    out = subprocess.run(
        ["bash", str(BUILD), "--path"], check=True, capture_output=True, text=True, timeout=30
    )
    return Path(out.stdout.strip())


class Helm:
    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        # Keep helm's caches and config out of the user's home.
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self.values_dir = home

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def values_file(self, values: Mapping[str, Any]) -> Path:
        path = self.values_dir / f"values-{abs(hash(repr(values)))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        return path

    def template_args(
        self, values: Mapping[str, Any] | None, namespace: str, release: str, extra: Sequence[str]
    ) -> list[str]:
        args = ["template", release, str(CHART), "--namespace", namespace, *extra]
        if values:
            args += ["--values", str(self.values_file(values))]
        return args

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        namespace: str = "knooppunt-system",
        release: str = "knooppunt-operator",
        include_crds: bool = False,
    ) -> list[dict[str, Any]]:
        extra = ["--include-crds"] if include_crds else []
        out = self.run(*self.template_args(values, namespace, release, extra)).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    def template_error(self, values: Mapping[str, Any]) -> str:
        result = self.run(*self.template_args(values, "knooppunt-system", "kp", []), check=False)
        assert result.returncode != 0, "helm template accepted values it should refuse"
        return result.stderr
