"""Platform / PKI stack: namespaces, the federation's CA (or the PKIoverheid bundle), trust
bundles, default-deny NetworkPolicies and the explicit allows. Only wiring happens here."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository: stacks.components

import pulumi

from stacks.components.namespaces import PlatformNamespaces, PlatformNamespacesArgs
from stacks.components.network import NetworkPolicies, NetworkPoliciesArgs
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

namespaces = PlatformNamespaces("namespaces", PlatformNamespacesArgs(
    environment=environment,
    operator=ns_cfg["operator"],
    facade=ns_cfg["facade"],
    nodes=tuple(ns_cfg["nodes"]),
    pod_security_version=ns_cfg.get("podSecurityVersion", "latest"),
))
ns_inputs = {name: namespaces.names.apply(lambda n, k=name: n[k]) for name in namespaces.namespaces}

facade_ns = ns_cfg["facade"]
leaves: list[LeafSpec] = []
if pki_cfg["mode"] == "development":
    leaves.append(LeafSpec.facade(pki_cfg.get("facadeService", "knooppunt-facade"), facade_ns,
                                  pki_cfg.get("facadeHost"), pki_cfg["facadeOin"]))
    leaves += [LeafSpec.node(n["name"], n["namespace"], n.get("oin"))
               for n in pki_cfg.get("nodes", [])]
    leaves += [LeafSpec.gemeente(g["name"], facade_ns, g["oin"])
               for g in pki_cfg.get("gemeenten", [])]

pki = PlatformPki("federation", PlatformPkiArgs(
    environment=environment,
    namespaces=ns_inputs,
    mode=pki_cfg["mode"],
    organisation=pki_cfg.get("organisation", "Knooppunt federatie"),
    leaves=tuple(leaves),
    external_bundle_pem=(
        read_bundle(Path(__file__).parent / pki_cfg["caBundleFile"])
        if pki_cfg["mode"] == "external" else None
    ),
    external_fingerprints=tuple(pki_cfg.get("caFingerprints", [])),
))

NetworkPolicies("network", NetworkPoliciesArgs(
    environment=environment,
    operator_namespace=ns_cfg["operator"],
    facade_namespace=facade_ns,
    node_namespaces=tuple(ns_cfg["nodes"]),
    namespace_inputs=ns_inputs,
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
))

pulumi.export("environment", environment)
pulumi.export("namespaces", {
    "operator": ns_cfg["operator"], "facade": facade_ns, "nodes": list(ns_cfg["nodes"]),
})
pulumi.export("trustBundleConfigMap", pki.trust_bundle_name)
pulumi.export("caCertificate", pki.ca_cert_pem)
pulumi.export("caFingerprints", pki.ca_fingerprints)
pulumi.export("facadeTlsSecret", pki.secrets.get("facade") or pki_cfg["facadeTlsSecret"])
pulumi.export("nodeTlsSecrets", {
    n["name"]: pki.secrets[n["name"]] for n in pki_cfg.get("nodes", []) if n["name"] in pki.secrets
})
pulumi.export("gemeenteClientSecrets", {
    g["name"]: pki.secrets[g["name"]] for g in pki_cfg.get("gemeenten", [])
})
