"""Platform / PKI stack: namespaces, the federation's CA (or the PKIoverheid bundle), trust
bundles, default-deny NetworkPolicies and the explicit allows. Only wiring happens here."""

import dataclasses
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository: stacks.components

import pulumi

from stacks.components.namespaces import PlatformNamespaces, PlatformNamespacesArgs
from stacks.components.network import NetworkPolicies, NetworkPoliciesArgs, check_gemeenten
from stacks.components.pki import (
    LeafSpec,
    PlatformPki,
    PlatformPkiArgs,
    read_bundle,
)

config = pulumi.Config()
environment = config.require("environment")
ns_cfg = config.require_object("namespaces")
pki_cfg = config.require_object("pki")
net_cfg = config.require_object("network")

# Every setting is checked before the first resource is registered: a broken config (an
# invalid CIDR, an unknown gemeentecode, a bad OIN) fails `pulumi up` with nothing created.
try:
    namespace_args = PlatformNamespacesArgs(
        environment=environment,
        operator=ns_cfg["operator"],
        facade=ns_cfg["facade"],
        nodes=tuple(ns_cfg["nodes"]),
        pod_security_version=ns_cfg.get("podSecurityVersion", "latest"),
    )
    namespace_args.specs()
    gemeenten = check_gemeenten(
        {g["gemeentecode"]: g["name"] for g in config.get_object("gemeenten") or []}
    )

    facade_ns = ns_cfg["facade"]
    leaves: list[LeafSpec] = []
    if pki_cfg["mode"] == "development":
        leaves.append(
            LeafSpec.facade(
                pki_cfg.get("facadeService", "knooppunt-facade"),
                facade_ns,
                pki_cfg.get("facadeHost"),
                pki_cfg["facadeOin"],
            )
        )
        leaves += [
            LeafSpec.node(n["name"], n["namespace"], n.get("oin")) for n in pki_cfg.get("nodes", [])
        ]
        leaves += [
            LeafSpec.gemeente(g["name"], facade_ns, g["oin"]) for g in pki_cfg.get("gemeenten", [])
        ]
    all_namespaces = {
        name: name for name in (namespace_args.operator, facade_ns, *namespace_args.nodes)
    }
    pki_args = PlatformPkiArgs(
        environment=environment,
        namespaces=all_namespaces,
        mode=pki_cfg["mode"],
        organisation=pki_cfg.get("organisation", "Knooppunt federatie"),
        leaves=tuple(leaves),
        external_bundle_pem=(
            read_bundle(Path(__file__).parent / pki_cfg["caBundleFile"])
            if pki_cfg["mode"] == "external"
            else None
        ),
        external_fingerprints=tuple(pki_cfg.get("caFingerprints", [])),
    )
    network_args = NetworkPoliciesArgs(
        environment=environment,
        operator_namespace=ns_cfg["operator"],
        facade_namespace=facade_ns,
        node_namespaces=tuple(ns_cfg["nodes"]),
        api_server_cidrs=tuple(net_cfg["apiServerCidrs"]),
        webhook_source_cidrs=(
            tuple(net_cfg["webhookSourceCidrs"]) if "webhookSourceCidrs" in net_cfg else None
        ),
        facade_client_cidrs=tuple(net_cfg.get("facadeClientCidrs", [])),
        ingress_controller_namespace=net_cfg.get("ingressControllerNamespace"),
        sector_cidrs=tuple(net_cfg.get("sectorCidrs", [])),
        delivery_cidrs=tuple(net_cfg.get("deliveryCidrs", [])),
        database_cidrs=tuple(net_cfg.get("databaseCidrs", [])),
        monitoring_namespace=net_cfg.get("monitoringNamespace"),
        gemeente_client_cidrs={
            str(code): tuple(cidrs)
            for code, cidrs in (net_cfg.get("gemeenteClientCidrs") or {}).items()
        },
        gemeenten=gemeenten,
    )
except (ValueError, KeyError) as exc:  # a clear message, no traceback
    what = f"missing setting {exc}" if isinstance(exc, KeyError) else str(exc)
    raise pulumi.RunError(f"invalid configuration of stack {pulumi.get_stack()}: {what}") from None

namespaces = PlatformNamespaces("namespaces", namespace_args)
ns_inputs = {name: namespaces.names.apply(lambda n, k=name: n[k]) for name in namespaces.namespaces}
pki = PlatformPki("federation", dataclasses.replace(pki_args, namespaces=ns_inputs))
NetworkPolicies("network", dataclasses.replace(network_args, namespace_inputs=ns_inputs))

pulumi.export("environment", environment)
pulumi.export(
    "namespaces",
    {
        "operator": ns_cfg["operator"],
        "facade": facade_ns,
        "nodes": list(ns_cfg["nodes"]),
    },
)
pulumi.export("trustBundleConfigMap", pki.trust_bundle_name)
pulumi.export("caCertificate", pki.ca_cert_pem)
pulumi.export("caFingerprints", pki.ca_fingerprints)
pulumi.export("facadeTlsSecret", pki.secrets.get("facade") or pki_cfg["facadeTlsSecret"])
pulumi.export(
    "nodeTlsSecrets",
    {
        n["name"]: pki.secrets[n["name"]]
        for n in pki_cfg.get("nodes", [])
        if n["name"] in pki.secrets
    },
)
pulumi.export(
    "gemeenteClientSecrets",
    {g["name"]: pki.secrets[g["name"]] for g in pki_cfg.get("gemeenten", [])},
)
