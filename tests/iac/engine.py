"""The real Pulumi engine for the tests: the CLI, the Python language host and the kubernetes
provider that tools/pulumi/build.sh builds, a local (file://) backend and a passphrase
secrets provider in a temporary directory, nothing else.

:class:`Engine` copies the parts of the repository the programs read (stacks/, charts/,
examples/) into its own directory, so that stack configuration files (which ``pulumi stack
init`` writes an encryption salt into) and the state never touch the work tree, and runs
``pulumi`` there with ``KUBECONFIG`` pointing at the test cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.iac.harness import REPO

BUILD = REPO / "tools" / "pulumi" / "build.sh"
KUBERNETES_VERSION = "4.25.0-alpha.1768448096"  # tools/pulumi/build.sh, pyproject's iac extra
PROJECTS = {
    "platform": "knooppunt-platform",
    "operator": "knooppunt-operator",
    "facade": "knooppunt-facade",
}
COPIED = ("stacks", "charts", "examples")


def example_config(project: str) -> dict[str, Any]:
    """A stack's example configuration (`stacks/<project>/Pulumi.dev.yaml`), keys unprefixed."""
    doc = yaml.safe_load((REPO / "stacks" / project / "Pulumi.dev.yaml").read_text())
    prefix = f"{PROJECTS[project]}:"
    return {k.removeprefix(prefix): v for k, v in doc["config"].items()}


def platform_config(namespaces: Mapping[str, str]) -> dict[str, Any]:
    """The platform stack's example, its namespaces (operator, facade, nodes) the given ones."""
    config = example_config("platform")
    config["namespaces"] = {
        "operator": namespaces["operator"],
        "facade": namespaces["facade"],
        "nodes": [namespaces["nodes"]],
    }
    for node in config["pki"]["nodes"]:
        node["namespace"] = namespaces["nodes"]
    return config


def bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(BUILD), "--bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def built() -> bool:
    return subprocess.run(["bash", str(BUILD), "--check"], capture_output=True).returncode == 0


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"pulumi {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-4000:]}"
        )


class EngineError(AssertionError):
    pass


class Engine:
    """``pulumi`` against one cluster with a fresh local backend under ``root``."""

    def __init__(self, root: Path, kubeconfig: Path, binaries: Path | None = None) -> None:
        self.root = root
        self.bin = binaries or bin_dir()
        self.work = root / "work"
        for part in COPIED:
            shutil.copytree(
                REPO / part,
                self.work / part,
                ignore=shutil.ignore_patterns("__pycache__", "Pulumi.*.yaml"),
            )
        for project in PROJECTS:  # the repository's stack files are the examples to start from
            for f in (REPO / "stacks" / project).glob("Pulumi.*.yaml"):
                shutil.copy(f, self.work / "stacks" / project / f"example.{f.name}")
        (root / "state").mkdir()
        (root / "home").mkdir()
        python_bin = Path(sys.executable).parent
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
            "PATH": os.pathsep.join([str(self.bin), str(python_bin), os.environ.get("PATH", "")]),
            "PULUMI_HOME": str(root / "home"),
            "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "knooppunt engine test passphrase",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_DISABLE_REGISTRY_RESOLVE": "true",  # no service to ask: all is local
            "PULUMI_PYTHON_CMD": sys.executable,
            # The kubernetes provider is the plugin installed below, not the binary on $PATH.
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            "KUBECONFIG": str(kubeconfig),
            "NO_COLOR": "1",
        }
        # The kubernetes provider, installed as a plugin of exactly the version the SDK asks for.
        self.cli(
            None,
            "plugin",
            "install",
            "resource",
            "kubernetes",
            KUBERNETES_VERSION,
            "--file",
            str(self.bin / "pulumi-resource-kubernetes"),
        )

    # --- running pulumi ---------------------------------------------------------------------

    def cli(
        self, project: str | None, *args: str, check: bool = True, timeout: float = 900
    ) -> Result:
        cwd = self.project_dir(project) if project else self.root
        proc = subprocess.run(
            [str(self.bin / "pulumi"), *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(list(args), proc.returncode, proc.stdout, proc.stderr)
        with (self.root / "pulumi.log").open("a") as log:  # every command and what it printed
            log.write(
                f"\n$ (cd {cwd.relative_to(self.root)} && pulumi {' '.join(args)})\n"
                f"{proc.stdout}{proc.stderr}[exit {proc.returncode}]\n"
            )
        if check and proc.returncode != 0:
            raise EngineError(str(result))
        return result

    def run(
        self,
        project: str,
        command: str,
        *args: str,
        stack: str = "dev",
        check: bool = True,
        timeout: float = 900,
    ) -> Result:
        return self.cli(
            project,
            command,
            "--stack",
            stack,
            "--non-interactive",
            *args,
            check=check,
            timeout=timeout,
        )

    def init(
        self, project: str, stack: str = "dev", *, config: Mapping[str, Any] | None = None
    ) -> None:
        """``pulumi stack init`` (passphrase secrets) with the example stack file's config,
        overridden by ``config`` (keys without the project prefix)."""
        self.cli(
            project, "stack", "init", stack, "--secrets-provider", "passphrase", "--non-interactive"
        )
        example = yaml.safe_load(
            (self.project_dir(project) / f"example.Pulumi.{stack}.yaml").read_text()
        )
        self.set_config(
            project,
            {**self._strip(project, example.get("config") or {}), **(config or {})},
            stack=stack,
        )

    def set_config(self, project: str, config: Mapping[str, Any], stack: str = "dev") -> None:
        """Replace the stack's configuration (keeps what ``stack init`` wrote besides it)."""
        path = self.project_dir(project) / f"Pulumi.{stack}.yaml"
        doc = yaml.safe_load(path.read_text()) if path.exists() else {}
        doc = doc or {}
        doc["config"] = {f"{PROJECTS[project]}:{k}": v for k, v in config.items()}
        path.write_text(yaml.dump(doc, Dumper=_QuotingDumper, sort_keys=False))

    def config(self, project: str, stack: str = "dev") -> dict[str, Any]:
        doc = yaml.safe_load((self.project_dir(project) / f"Pulumi.{stack}.yaml").read_text())
        return self._strip(project, doc.get("config") or {})

    def export(self, project: str, stack: str = "dev") -> dict[str, Any]:
        return self.run(project, "stack", "export", stack=stack).json()  # type: ignore[no-any-return]

    def resources(self, project: str, stack: str = "dev") -> list[dict[str, Any]]:
        deployment = self.export(project, stack).get("deployment") or {}
        return list(deployment.get("resources") or [])

    def outputs(self, project: str, stack: str = "dev") -> dict[str, Any]:
        return self.run(project, "stack", "output", "--json", stack=stack).json()  # type: ignore[no-any-return]

    def project_dir(self, project: str) -> Path:
        return self.work / "stacks" / project

    @staticmethod
    def _strip(project: str, config: Mapping[str, Any]) -> dict[str, Any]:
        prefix = f"{PROJECTS[project]}:"
        return {k.removeprefix(prefix): v for k, v in config.items()}


class _QuotingDumper(yaml.SafeDumper):
    """Quotes every string: PyYAML (YAML 1.1) writes ``0599`` or an OIN bare, and Pulumi
    (YAML 1.2) reads them back as numbers, without their leading zeros."""


_QuotingDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
)


def steps(preview: Mapping[str, Any]) -> dict[str, str]:
    """``pulumi preview --json``: URN → the step's op, for every step that changes something
    (not a 'same', nor the 'read' of a StackReference, which every run does)."""
    return {
        s["urn"]: s["op"] for s in preview.get("steps") or [] if s.get("op") not in ("same", "read")
    }


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def urn_type(urn: str) -> str:
    return urn.split("::")[-2].rsplit("$", 1)[-1]
