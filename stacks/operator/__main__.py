"""Operator stack: installs the knooppunt-operator chart into the platform's namespace."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository: stacks.components

import pulumi

from stacks.components.operator_release import (
    OperatorRelease,
    OperatorReleaseArgs,
)

config = pulumi.Config()
platform = pulumi.StackReference(config.require("platformStack"))
namespaces = platform.require_output("namespaces")

operator = OperatorRelease(
    "operator",
    OperatorReleaseArgs(
        namespace=namespaces.apply(lambda n: n["operator"]),
        image_repository=config.get("imageRepository") or "ghcr.io/knooppunt/operator",
        image_tag=config.get("imageTag"),
        replicas=config.get_int("replicas") or 2,
        watched_namespaces=namespaces.apply(lambda n: n["nodes"]),
        resources=config.get_object("resources"),
        values=config.get_object("values") or {},
        release_name=config.get("releaseName") or "knooppunt-operator",
    ),
)

pulumi.export("release", operator.release.name)
pulumi.export("namespace", operator.release.namespace)
pulumi.export("releaseStatus", operator.status.apply(lambda s: s.status if s else None))
