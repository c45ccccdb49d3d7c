"""A Knooppunt applied as YAML runs as a real pod: Ready because its real readiness probe
passed, and it serves the iWmo exchange over mutual TLS (by pod IP and through its Service).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from knooppunt_operator import kube

from node_runtime.model.loading import load_paths
from tests.realpods import helpers
from tests.realpods.conftest import RealPods
from tests.runtime.helpers import header, retourcodes
from tests.runtime.test_intake_e2e import gemeente_name, sender_of

pytestmark = [pytest.mark.realpods, pytest.mark.asyncio]

URL = f"/api/v1/connectors/{helpers.CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
CODES = {"414": "WMO301", "418": "WMO305", "420": "WMO307", "444": "WMO315"}


def exchange(parties: helpers.Parties) -> dict[str, int]:
    """Every example message sent by its real sender; returns what each gemeente should get."""
    resources = load_paths([helpers.EXAMPLES])
    connector = resources.connectors[helpers.CONNECTOR]
    purposes = {p.name: p for p in connector.spec.purposes}
    expected: dict[str, int] = {}
    for path in sorted(helpers.MESSAGES.glob("*.xml")):
        body = path.read_bytes()
        head = header(body)
        resp = parties(sender_of(resources, head["Afzender"])).post(URL, content=body, headers=XML)
        assert resp.status_code == 202, resp.text
        assert set(retourcodes(resp.content)) == {"0200"}, resp.text
        mt = CODES[head["BerichtCode"]]
        if mt != "WMO301":
            g = resources.gemeenten[gemeente_name(resources, head["Ontvanger"])]
            subs = [
                s
                for s in g.spec.subscriptions
                if mt in purposes[s.purpose].messages and (not s.messages or mt in s.messages)
            ]
            expected[head["Ontvanger"]] = expected.get(head["Ontvanger"], 0) + len(subs)
    return expected


def mailboxes(parties: helpers.Parties) -> dict[str, list[dict[str, object]]]:
    resources = load_paths([helpers.EXAMPLES])
    out = {}
    for g in resources.gemeenten.values():
        code = g.spec.gemeentecode
        r = parties(g.name).get(f"/api/v1/gemeenten/{code}/mailbox")
        assert r.status_code == 200, r.text
        out[code] = r.json()["items"]
    return out


async def test_knooppunt_becomes_ready_through_its_real_pod_and_serves_iwmo(
    realpods: RealPods, tmp_path: Path
) -> None:
    pki = helpers.dev_pki(tmp_path / "pki")
    with helpers.namespace(realpods) as ns, helpers.sqlite_volume(realpods, ns):
        async with helpers.operator(realpods, ns) as cluster:
            helpers.apply_example(realpods, ns, pki)
            await cluster.wait_condition(
                kube.KNOOPPUNT, helpers.NODE, "Ready", "True", timeout=420, interval=1
            )
            pods = await asyncio.to_thread(helpers.pods, realpods, ns)
            assert len(pods) == 1
            pod = pods[0]
            # Ready because the kubelet ran the readiness probe against the real process.
            assert helpers.ready(pod)
            assert pod["spec"]["nodeName"] == realpods.node.name
            status = pod["status"]["containerStatuses"][0]
            assert status["ready"] and status["started"] and "running" in status["state"]
            assert status["imageID"], "the image really ran"

            parties = helpers.Parties(pki, pod["status"]["podIP"])
            try:
                expected = await asyncio.to_thread(exchange, parties)
                got = await asyncio.to_thread(mailboxes, parties)
            finally:
                parties.close()
            assert {c: len(items) for c, items in got.items() if items} == {
                c: n for c, n in expected.items() if n
            }

            # The same node through its Service (kube-proxy's rules to the ready endpoint).
            service = await cluster.must_get(kube.SERVICE, helpers.NODE)
            port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "https")
            via_service = helpers.Parties(pki, service["spec"]["clusterIP"], port)
            try:
                again = await asyncio.to_thread(mailboxes, via_service)
            finally:
                via_service.close()
            assert {c: len(i) for c, i in again.items()} == {c: len(i) for c, i in got.items()}

            # The pod cannot be reached without a client certificate.
            import httpx

            from node_runtime.security.tls.contexts import client_context

            ctx = client_context(None, None, pki.ca_bundle)
            with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx, timeout=10) as anon:
                anon.get(
                    f"https://{pod['status']['podIP']}:8443/api/v1/gemeenten/0363/mailbox",
                    extensions={"sni_hostname": helpers.SERVER_NAME},
                )
