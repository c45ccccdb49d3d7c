"""Fixtures of the infrastructure-as-code tests: the helm binary and the stacks' mock runs.

Missing tools are a failure in CI (``$CI`` set) and a skip elsewhere, with the command that
provides them: ``tools/helm/build.sh`` for helm, ``pip install -e '.[iac]'`` for Pulumi.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
IAC_MODULES = ("pulumi", "pulumi_kubernetes")
HAVE_PULUMI = all(importlib.util.find_spec(m) for m in IAC_MODULES)

if not HAVE_PULUMI and not IN_CI:
    # Without the iac extra only the chart tests can run here.
    collect_ignore_glob = ["test_stack_*.py", "test_dryrun.py", "test_network.py"]


def unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"{message} (CI is set: required here)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.iac.helm import BUILD, Helm, helm_path

    path = helm_path()
    if not os.access(path, os.X_OK):
        unavailable(f"helm not built at {path}: run {BUILD.relative_to(BUILD.parents[2])}")
    return Helm(path, tmp_path_factory.mktemp("helm"))


def platform_outputs(run: Any) -> dict[str, Any]:
    return {key: export.value for key, export in run.exports.items()}


@pytest.fixture(scope="session")
def pulumi_available() -> None:
    if not HAVE_PULUMI:
        unavailable("pulumi, pulumi-kubernetes missing: pip install -e '.[iac]'")


@pytest.fixture(scope="session")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A stand-in for the PKIoverheid bundle (a real CA certificate) and its fingerprint."""
    from stacks.components.pki import certificates, fingerprint
    from tests.iac.harness import fake_cert

    pem = fake_cert("Staat der Nederlanden Private Root CA - G1 (test stand-in)")
    path = tmp_path_factory.mktemp("trust") / "pkioverheid-bundle.crt"
    path.write_text(pem)
    return path, fingerprint(certificates(pem)[0])


def platform_config(stack: str, bundle: tuple[Path, str]) -> dict[str, Any]:
    """Stack configuration overrides: prod gets the stand-in bundle, pinned."""
    if stack != "prod":
        return {}
    import json

    from tests.iac.harness import STACKS, load_config

    _, config = load_config(STACKS / "platform", "prod")
    pki = json.loads(config["knooppunt-platform:pki"])
    pki["caBundleFile"] = str(bundle[0])
    pki["caFingerprints"] = [bundle[1]]
    return {"knooppunt-platform:pki": pki}


@pytest.fixture(scope="session", params=["dev", "prod"])
def env(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def runs(pulumi_available: None, ca_bundle: tuple[Path, str]) -> dict[tuple[str, str], Any]:
    """Every project and stack, run once under mocks: {(project, stack): Run}."""
    from tests.iac.harness import run_stack

    out: dict[tuple[str, str], Any] = {}
    for stack in ("dev", "prod"):
        platform = run_stack("platform", stack, overrides=platform_config(stack, ca_bundle))
        out[("platform", stack)] = platform
        refs = {f"organization/knooppunt-platform/{stack}": platform_outputs(platform)}
        for project in ("operator", "facade"):
            out[(project, stack)] = run_stack(project, stack, stack_outputs=refs)
    return out
