"""What the operator writes into the node's Secrets and ConfigMap is what the real pod mounts
and serves; a gemeente's rotated certificate is picked up by the running pod, no restart.

The node runs on the operator's own PKI (no provided TLS Secret): the operator issues the
server certificate and assembles ``<node>-tls`` (trust bundle, the CRL of every trusted CA,
the issuer policy). Amsterdam brings its own certificate (``spec.certificate.secret``, as
with PKIoverheid), then renews it under a new CA generation (same OIN, new key, an issuer the
node has never seen): the platform puts the new certificate, its CA and that CA's CRL in a
new Secret and points the Gemeente at it. The operator rewrites ``<node>-tls``, the kubelet
refreshes the mounted files, the runtime reloads its TLS context: the new certificate is let
in, the old CA no longer is, and the pod is the same pod.
"""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from knooppunt_operator import kube

from node_runtime.security.pki.store import DevPki, ensure_dev_pki
from tests.controlplane.cluster import wait_for
from tests.realpods import helpers
from tests.realpods.conftest import RealPods

pytestmark = [pytest.mark.realpods, pytest.mark.asyncio]

AMSTERDAM = "gemeente-amsterdam"
MAILBOX = "/api/v1/gemeenten/0363/mailbox"
TLS = f"{helpers.NODE}-tls"


def amsterdam_pki(directory: Path) -> DevPki:
    """A CA generation of Amsterdam's own (PKIoverheid, say) with its certificate in it."""
    doc = next(d for d in helpers.documents("gemeenten.yaml") if d["metadata"]["name"] == AMSTERDAM)
    return ensure_dev_pki(
        directory, clients=[(AMSTERDAM, doc["spec"]["displayName"], doc["spec"]["oin"])]
    )


def certificate_secret(name: str, ns: str, pki: DevPki) -> dict[str, Any]:
    """What the platform stores for a provided certificate: chain, issuing CA and its CRL.
    (No private key: the gemeente keeps it; the node only needs to trust the issuer.)"""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {
            "tls.crt": helpers.b64(pki.clients[AMSTERDAM].chain),
            "ca.crt": helpers.b64(pki.ca_bundle),
            "crl.pem": helpers.b64(pki.crl),
        },
    }


def status(client: httpx.Client) -> int | str:
    """The mailbox answer's status, or the kind of TLS/transport failure."""
    try:
        return client.get(MAILBOX).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def mounted(rp: RealPods, pod: dict[str, Any], plugin: str, volume: str) -> dict[str, bytes]:
    """The files of one of the pod's volumes as the kubelet materialised them on the node."""
    root = rp.node.pod_volume(pod["metadata"]["uid"], plugin, volume)
    return {p.name: p.read_bytes() for p in root.iterdir() if not p.name.startswith("..")}


def decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def fingerprints(pem: bytes) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(pem)}


def trusts(data: dict[str, bytes], generation: DevPki) -> bool:
    """The node's TLS Secret trusts that generation's CAs and carries its CRL."""
    issuers = {
        x509.load_pem_x509_crl(block).issuer
        for block in re.findall(
            rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", data["crl.pem"], flags=re.DOTALL
        )
    }
    crl = x509.load_pem_x509_crl(generation.crl.read_bytes())
    return fingerprints(generation.ca_bundle.read_bytes()) <= fingerprints(data["ca.crt"]) and (
        crl.issuer in issuers
    )


async def test_operator_secrets_are_what_the_pod_mounts_and_a_rotated_certificate_is_picked_up(
    realpods: RealPods, tmp_path: Path
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")  # unused by the node here, but the parties' store
    first, renewed = amsterdam_pki(tmp_path / "gen-a"), amsterdam_pki(tmp_path / "gen-b")
    with helpers.namespace(rp) as ns, helpers.sqlite_volume(rp, ns):
        rp.cp.apply(certificate_secret("pkio-amsterdam-a", ns, first))
        async with helpers.operator(rp, ns) as cluster:
            helpers.apply_example(
                rp,
                ns,
                pki,
                provided_tls=False,
                gemeenten={AMSTERDAM: {"certificate": {"secret": "pkio-amsterdam-a"}}},
            )
            await cluster.wait_condition(
                kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=420, interval=1
            )
            [pod] = await asyncio.to_thread(helpers.pods, rp, ns)
            ip = pod["status"]["podIP"]

            # The pod mounts exactly what the operator wrote.
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert volumes["tls"]["secret"]["secretName"] == TLS
            assert volumes["resources"]["configMap"]["name"] == f"{helpers.NODE}-resources"
            tls = await cluster.must_get(kube.SECRET, TLS)
            assert mounted(rp, pod, "kubernetes.io~secret", "tls") == decoded(tls)
            assert trusts(decoded(tls), first) and not trusts(decoded(tls), renewed)
            config = await cluster.must_get(kube.CONFIG_MAP, f"{helpers.NODE}-resources")
            files = mounted(rp, pod, "kubernetes.io~configmap", "resources")
            assert {k: v.decode() for k, v in files.items()} == config["data"]

            # ... and serves it: the server certificate from the node's CA, the connector
            # revision of the ConfigMap, Amsterdam's own certificate let in.
            node_ca = tmp_path / "node-ca.crt"
            ca_secret = await cluster.must_get(kube.SECRET, f"{helpers.NODE}-ca")
            node_ca.write_bytes(decoded(ca_secret)["ca.crt"])
            server_name = f"{helpers.NODE}.{ns}.svc"
            old = helpers.Parties(first, ip, server_trust=node_ca, server_name=server_name)
            new = helpers.Parties(renewed, ip, server_trust=node_ca, server_name=server_name)
            try:
                catalogue = old(AMSTERDAM).get("/api/v1/catalogue")
                assert catalogue.status_code == 200, catalogue.text
                served = yaml.safe_load(config["data"][f"connector-{helpers.CONNECTOR}.yaml"])
                [connector] = catalogue.json()["connectors"]
                assert (connector["name"], connector["revision"]) == (
                    helpers.CONNECTOR,
                    served["spec"]["revision"],
                )
                assert status(old(AMSTERDAM)) == 200
                assert status(new(AMSTERDAM)) != 200  # an issuer the node does not trust

                # The renewal: a new Secret with the new generation, the Gemeente pointed at it.
                rp.cp.apply(certificate_secret("pkio-amsterdam-b", ns, renewed))
                await cluster.patch(
                    kube.GEMEENTE,
                    AMSTERDAM,
                    {"spec": {"certificate": {"secret": "pkio-amsterdam-b"}}},
                )

                async def rewritten() -> dict[str, bytes] | None:
                    data = decoded(await cluster.must_get(kube.SECRET, TLS))
                    return data if trusts(data, renewed) and not trusts(data, first) else None

                await cluster.eventually(
                    rewritten, timeout=120, what="the operator's new <node>-tls"
                )
                # The kubelet refreshes the mounted Secret, the runtime reloads its context.
                await asyncio.to_thread(
                    wait_for,
                    lambda: status(new(AMSTERDAM)) == 200,
                    timeout=180,
                    interval=1,
                    message="the renewed certificate let in",
                )
                assert status(old(AMSTERDAM)) != 200  # the old generation's CA is gone
                tls = await cluster.must_get(kube.SECRET, TLS)
                assert mounted(rp, pod, "kubernetes.io~secret", "tls") == decoded(tls)
            finally:
                old.close()
                new.close()

            [after] = await asyncio.to_thread(helpers.pods, rp, ns)
            assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the pod was replaced"
            assert after["status"]["containerStatuses"][0]["restartCount"] == 0
