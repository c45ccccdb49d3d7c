"""Shadow validation in a real pod: the next release's bundle from a ConfigMap, mounted by the
kubelet where the operator says (read-only root file system), evaluated by the running image
beside the live connector, and reported by the pod itself, with its own service-account
token, into the SectorConnector's status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from knooppunt_operator import kube

from tests.realpods import helpers
from tests.realpods.conftest import RealPods
from tests.shadow import test_shadow as local
from tests.shadow import test_shadow_cluster as on_cluster

pytestmark = [pytest.mark.realpods, pytest.mark.asyncio]


def send(parties: helpers.Parties) -> list[int]:
    statuses = []
    for sender, body in local.traffic():
        r = parties(sender).post(local.URL, content=body, headers=local.XML)
        statuses.append(r.status_code)
    return statuses


async def test_a_shadow_release_runs_in_the_real_pod_and_reports_into_the_status(
    realpods: RealPods, tmp_path: Path
) -> None:
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(realpods) as ns, helpers.sqlite_volume(realpods, ns):
        async with helpers.operator(realpods, ns) as cluster:
            bundle = on_cluster.bundle_config_map()
            bundle["metadata"]["namespace"] = ns
            realpods.cp.apply(bundle)
            # the example as helpers.apply_example applies it, its connector with a shadow
            realpods.cp.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/tls",
                    "metadata": {"name": helpers.TLS_SECRET, "namespace": ns},
                    "data": {
                        "tls.crt": helpers.b64(pki.server.chain),
                        "tls.key": helpers.b64(pki.server.key),
                        "ca.crt": helpers.b64(pki.ca_bundle),
                        "crl.pem": helpers.b64(pki.crl),
                    },
                }
            )
            for doc in helpers.documents("gemeenten.yaml"):
                doc["metadata"]["namespace"] = ns
                realpods.cp.apply(doc)
            connector = helpers.documents("connector.yaml")[0]
            connector["metadata"]["namespace"] = ns
            connector["spec"]["shadow"] = on_cluster.next_release(connector["spec"])
            connector["spec"]["revision"] = 2
            realpods.cp.apply(connector)
            helpers.apply_knooppunt(realpods, ns)

            async def serving_the_shadow() -> bool:
                kp = await cluster.must_get(kube.KNOOPPUNT, helpers.NODE)
                status = kp.get("status") or {}
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions") or []
                )
                return ready and status.get("connectorSummary") == f"{helpers.CONNECTOR}@r2"

            await cluster.eventually(
                serving_the_shadow, timeout=600, interval=1, what="revision 2 ready in its pod"
            )
            pods = await asyncio.to_thread(helpers.pods, realpods, ns)
            ready = [p for p in pods if helpers.ready(p)]
            assert len(ready) == 1
            mounts = {m["mountPath"] for m in ready[0]["spec"]["containers"][0]["volumeMounts"]}
            assert f"/etc/knooppunt/shadow-bundles/{helpers.CONNECTOR}" in mounts

            parties = helpers.Parties(pki, ready[0]["status"]["podIP"])
            try:
                statuses = await asyncio.to_thread(send, parties)
            finally:
                parties.close()
            assert statuses == [202, 202, 422, 202, 202]

            async def reported() -> dict[str, Any] | None:
                body = await cluster.must_get(kube.SECTOR_CONNECTOR, helpers.CONNECTOR)
                entry = ((body.get("status") or {}).get("shadow") or {}).get(helpers.NODE)
                return entry if entry and entry.get("messages") == 4 else None

            # the pod writes at most every 30 s
            entry = await cluster.eventually(
                reported, timeout=180, interval=2, what="status.shadow written by the pod"
            )
    assert entry["standardVersion"] == "2.2-concept" and "error" not in entry
    assert entry["differences"] == {
        "WMO305": {"would-be-rejected": 1, "different-fields": 1, "other-retourcodes": 1}
    }
    assert entry["examples"][1] == {
        "messageType": "WMO305",
        "kind": "different-fields",
        "missingFields": ["clienten[].producten[].code"],
        "addedFields": ["clienten[].producten[].productcode"],
    }
    for value in ("999990", "01A0", "Bakker", "98000011"):  # no BSN, product codes, names
        assert value not in repr(entry)
