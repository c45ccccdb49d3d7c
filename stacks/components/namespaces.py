"""The platform's namespaces, each enforcing the Pod Security ``restricted`` profile."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from stacks.components import labels


@dataclass(frozen=True)
class NamespaceSpec:
    name: str
    role: str  # operator | facade | nodes
    extra_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlatformNamespacesArgs:
    environment: str
    operator: str = "knooppunt-system"
    facade: str = "knooppunt-facade"
    nodes: tuple[str, ...] = ("knooppunten",)
    pod_security_version: str = "latest"

    def specs(self) -> list[NamespaceSpec]:
        specs = [NamespaceSpec(self.operator, "operator"), NamespaceSpec(self.facade, "facade")]
        specs += [NamespaceSpec(name, "nodes") for name in self.nodes]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"namespaces must be distinct: {names}")
        return specs


class PlatformNamespaces(pulumi.ComponentResource):
    """One Namespace per role; ``restricted`` enforced, audited and warned about."""

    namespaces: dict[str, k8s.core.v1.Namespace]
    names: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: PlatformNamespacesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("knooppunt:platform:Namespaces", name, None, opts)
        self.namespaces = {}
        for spec in args.specs():
            self.namespaces[spec.name] = k8s.core.v1.Namespace(
                f"{name}-{spec.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=spec.name,
                    labels=labels.merged(
                        labels.common(args.environment),
                        labels.pod_security("restricted", args.pod_security_version),
                        {labels.ROLE: spec.role},
                        spec.extra_labels,
                    ),
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
        # Names as outputs: dependents wait until the namespace exists.
        self.names = pulumi.Output.all(
            **{n: ns.metadata.apply(lambda m: m.name) for n, ns in self.namespaces.items()}
        )
        self.register_outputs({"names": self.names})
