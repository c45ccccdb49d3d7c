"""Local mode: a development PKI for the node and every organisation in the resources."""

from __future__ import annotations

from pathlib import Path

from node_runtime.model.loading import ResourceSet
from node_runtime.security.pki.store import DevPki, ensure_dev_pki


def node_client_name(node: str) -> str:
    """The dev PKI name of the node's own client certificate (used for push delivery)."""
    return f"{node}-client"


def organisations(resources: ResourceSet, node: str) -> list[tuple[str, str, str]]:
    """(certificate name, organisation, serialNumber) for each gemeente, participant, admin."""
    out: list[tuple[str, str, str]] = []
    for gemeente in resources.gemeenten.values():
        out.append((gemeente.name, gemeente.spec.display_name, gemeente.spec.oin))
    knooppunt = resources.knooppunten.get(node)
    pinned = {p.name for p in knooppunt.spec.connectors} if knooppunt else set()
    for connector in resources.connectors.values():
        if connector.name not in pinned:
            continue
        for participant in connector.spec.participants:
            serial = participant.certificate.serial_number
            if serial:
                out.append((participant.name, participant.display_name, serial))
    if knooppunt:
        if knooppunt.spec.oin:
            out.append((node_client_name(node), knooppunt.spec.display_name, knooppunt.spec.oin))
        for i, oin in enumerate(knooppunt.spec.security.administrators):
            out.append((f"admin-{i + 1}", "Knooppunt beheer", oin))
    return out


def ensure_for_resources(directory: Path, resources: ResourceSet, node: str) -> DevPki:
    return ensure_dev_pki(directory, clients=organisations(resources, node))
