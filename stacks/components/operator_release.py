"""The operator, installed from the repository's Helm chart as a Helm release.

A ``helm.v3.Release`` (not a ``helm.v4.Chart``) on purpose: the chart keeps the admission
webhook's certificate stable across upgrades with Helm's ``lookup``, which only a real release
against the cluster can do; and ``helm list`` / ``helm history`` / ``helm rollback`` keep
working for the platform team. The release is atomic: a failed upgrade rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "knooppunt-operator"


@dataclass(frozen=True)
class OperatorReleaseArgs:
    namespace: pulumi.Input[str]
    image_repository: str = "ghcr.io/knooppunt/operator"
    image_tag: str | None = None  # default: the chart's appVersion
    replicas: int = 2
    watched_namespaces: pulumi.Input[Sequence[str]] = ()
    resources: Mapping[str, Mapping[str, str]] | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # further chart values
    chart: Path = CHART
    release_name: str = "knooppunt-operator"
    timeout_seconds: int = 600

    def __post_init__(self) -> None:
        if not (self.chart / "Chart.yaml").is_file():
            raise ValueError(f"no Helm chart at {self.chart}")
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")

    def chart_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "replicaCount": self.replicas,
            "image": {"repository": self.image_repository},
            "watchNamespaces": self.watched_namespaces,
        }
        if self.image_tag:
            values["image"]["tag"] = self.image_tag
        if self.resources:
            values["resources"] = {k: dict(v) for k, v in self.resources.items()}
        return deep_merge(values, self.values)


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class OperatorRelease(pulumi.ComponentResource):
    """The ``knooppunt-operator`` chart as an atomic Helm release."""

    release: k8s.helm.v3.Release
    status: pulumi.Output[Any]

    def __init__(
        self, name: str, args: OperatorReleaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("knooppunt:operator:OperatorRelease", name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=args.release_name,
            chart=str(args.chart),
            namespace=args.namespace,
            create_namespace=False,  # the platform stack makes it, with Pod Security labels
            values=args.chart_values(),
            atomic=True,
            cleanup_on_fail=True,
            skip_crds=False,
            max_history=10,
            timeout=args.timeout_seconds,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.status = self.release.status
        self.register_outputs({"release": args.release_name, "status": self.status})
