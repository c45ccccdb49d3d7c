"""Operator stack under mocks: the chart as an atomic Helm release, values the chart accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks.components.operator_release import CHART, OperatorReleaseArgs, deep_merge
from tests.iac.harness import Run
from tests.iac.manifests import plain

pytestmark = pytest.mark.usefixtures("pulumi_available")


@pytest.fixture(scope="module")
def release(runs: dict[tuple[str, str], Run], env: str) -> dict[str, Any]:
    [found] = runs[("operator", env)].of_type("kubernetes:helm.sh/v3:Release")
    return dict(plain(found.inputs))


def test_release_installs_the_local_chart_atomically(release: dict[str, Any]) -> None:
    assert Path(release["chart"]) == CHART
    assert release["name"] == "knooppunt-operator"
    assert release["namespace"] == "knooppunt-system"
    assert release["atomic"] is True
    assert release["cleanupOnFail"] is True
    assert release["createNamespace"] is False
    assert release.get("skipCrds") in (None, False)


def test_release_values(release: dict[str, Any], env: str) -> None:
    values = release["values"]
    assert values["replicaCount"] == 2
    assert values["watchNamespaces"] == ["knooppunten"]
    assert values["image"] == {"repository": "ghcr.io/knooppunt/operator", "tag": "0.1.0"}
    assert set(values["resources"]) == {"requests", "limits"}
    assert values["logLevel"] == {"dev": "debug", "prod": "info"}[env]


def test_the_chart_renders_with_the_release_values(release: dict[str, Any], helm: Any) -> None:
    docs = helm.template(release["values"], namespace=release["namespace"])
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    [container] = spec["template"]["spec"]["containers"]
    assert container["resources"] == release["values"]["resources"]
    assert "--namespace=knooppunten" in container["command"]
    bindings = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == "knooppunten"
    ]
    assert bindings, "the watched namespace gets the operator's rights"


def test_args() -> None:
    with pytest.raises(ValueError, match="no Helm chart"):
        OperatorReleaseArgs(namespace="x", chart=Path("/nonexistent"))
    values = OperatorReleaseArgs(
        namespace="x", image_tag="1.2.3", values={"image": {"pullPolicy": "Always"}}
    ).chart_values()
    assert values["image"] == {
        "repository": "ghcr.io/knooppunt/operator",
        "tag": "1.2.3",
        "pullPolicy": "Always",
    }
    assert deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
