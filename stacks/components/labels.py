"""Labels every platform object carries, and the label contracts with the operator.

The operator recognises its peers by labels (``knooppunt_operator.builders.meta``): node pods
carry ``app.kubernetes.io/name: knooppunt``, the operator's own pods
``app.kubernetes.io/name: knooppunt-operator``, and a pod allowed to reach a node's HTTPS port
carries ``knooppunt.nl/access: facade`` (or ``sector``; ``monitoring`` for metrics). The
NetworkPolicies here and the Helm chart use exactly these values.
"""

from __future__ import annotations

from collections.abc import Mapping

PART_OF = "knooppunt"
MANAGED_BY = "pulumi"

NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
ACCESS = "knooppunt.nl/access"
ENVIRONMENT = "knooppunt.nl/environment"
ROLE = "knooppunt.nl/namespace-role"
NAMESPACE_NAME = "kubernetes.io/metadata.name"

NODE_APP = "knooppunt"
OPERATOR_APP = "knooppunt-operator"
FACADE_APP = "knooppunt-facade"

ACCESS_FACADE = "facade"
ACCESS_SECTOR = "sector"
ACCESS_MONITORING = "monitoring"

POD_SECURITY_MODES = ("enforce", "audit", "warn")


def common(environment: str, component: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        ENVIRONMENT: environment,
    }
    if component:
        labels[COMPONENT] = component
    return labels


def pod_security(level: str = "restricted", version: str = "latest") -> dict[str, str]:
    """Pod Security Admission labels: the level enforced, audited and warned about."""
    labels: dict[str, str] = {}
    for mode in POD_SECURITY_MODES:
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


def merged(*parts: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in parts:
        out.update(part)
    return out
