"""What the operator and the platform write into Secrets and ConfigMaps is what the real pod
mounts and serves; a rotated trust bundle is picked up by the running pod, without a restart.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest
import yaml
from knooppunt_operator import kube

from node_runtime.security.pki.store import ensure_dev_pki
from tests.controlplane.cluster import wait_for
from tests.realpods import helpers
from tests.realpods.conftest import RealPods

pytestmark = [pytest.mark.realpods, pytest.mark.asyncio]


async def test_rotated_gemeente_certificate_is_picked_up_without_a_restart(
    realpods: RealPods, tmp_path: Path
) -> None:
    rp = realpods
    pki = helpers.dev_pki(tmp_path / "pki")
    amsterdam = next(
        d
        for d in helpers.documents("gemeenten.yaml")
        if d["metadata"]["name"] == "gemeente-amsterdam"
    )
    # Amsterdam renews its certificate under a new CA (a new PKIoverheid generation, say):
    # same OIN, new key, an issuer the node does not trust yet.
    renewed = ensure_dev_pki(
        tmp_path / "renewed",
        clients=[
            ("gemeente-amsterdam", amsterdam["spec"]["displayName"], amsterdam["spec"]["oin"])
        ],
    )
    with helpers.namespace(rp) as ns, helpers.sqlite_volume(rp, ns):
        async with helpers.operator(rp, ns) as cluster:
            helpers.apply_example(rp, ns, pki)
            await cluster.wait_condition(
                kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=420, interval=1
            )
            pod = (await asyncio.to_thread(helpers.pods, rp, ns))[0]
            ip = pod["status"]["podIP"]

            # The pod mounts the operator's ConfigMap and the Secrets, and serves their content.
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert volumes["resources"]["configMap"]["name"] == f"{helpers.NODE}-resources"
            assert volumes["tls"]["secret"]["secretName"] == helpers.TLS_SECRET
            assert volumes["pseudonym"]["secret"]["secretName"] == f"{helpers.NODE}-pseudonym"
            config = await cluster.must_get(kube.CONFIG_MAP, f"{helpers.NODE}-resources")
            served = yaml.safe_load(config["data"][f"connector-{helpers.CONNECTOR}.yaml"])
            parties = helpers.Parties(pki, ip)
            try:
                r = parties("gemeente-amsterdam").get("/api/v1/catalogue")
                assert r.status_code == 200, r.text
                catalogue = r.json()
                assert catalogue["node"] == helpers.NODE
                [connector] = catalogue["connectors"]
                assert (connector["name"], connector["revision"]) == (
                    helpers.CONNECTOR,
                    served["spec"]["revision"],
                )
            finally:
                parties.close()

            new = helpers.Parties(renewed, ip, server_trust=pki.ca_bundle)
            mailbox = "/api/v1/gemeenten/0363/mailbox"
            try:
                with pytest.raises(httpx.HTTPError):  # not trusted yet: handshake refused
                    new("gemeente-amsterdam").get(mailbox)

                # The platform adds the new CA to the trust bundle in the node's TLS Secret.
                bundle = pki.ca_bundle.read_bytes() + renewed.ca_bundle.read_bytes()
                await cluster.patch(
                    kube.SECRET,
                    helpers.TLS_SECRET,
                    {"data": {"ca.crt": base64.b64encode(bundle).decode()}},
                )

                def accepted() -> bool:
                    try:
                        return new("gemeente-amsterdam").get(mailbox).status_code == 200
                    except httpx.HTTPError:
                        return False

                # The kubelet refreshes the mounted Secret, the node reloads its TLS context.
                await asyncio.to_thread(
                    wait_for,
                    accepted,
                    timeout=180,
                    interval=2,
                    message="the renewed certificate accepted",
                )
            finally:
                new.close()

            after = (await asyncio.to_thread(helpers.pods, rp, ns))[0]
            assert after["metadata"]["uid"] == pod["metadata"]["uid"]
            assert after["status"]["containerStatuses"][0]["restartCount"] == 0
