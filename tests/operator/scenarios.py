"""Operator scenarios, written against the API only (see harness.py).

Each scenario takes a :class:`Cluster` (an API server and a namespace) with the operator
running, and the operator's :class:`Context` (for the stub that plays the runtime's
undelivered-messages endpoint). The kmock tests run them; the control-plane suite can run the
very same functions against a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from knooppunt_operator import certificates, kube
from knooppunt_operator.builders import meta
from knooppunt_operator.builders.secrets import b64, unb64
from knooppunt_operator.runtime_client import StaticPending
from knooppunt_operator.status import merge_diff

from tests.operator import handshake
from tests.operator.harness import Cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "iwmo"
NODE = "knooppunt-zorg"
CONNECTOR = "iwmo-2-1"


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def connector_resource(*, revision: int = 1, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(example("connector.yaml")[0])
    body["spec"].update(revision=revision, **spec)
    return body


def knooppunt_resource(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(example("knooppunt.yaml")[0])
    body["spec"].update(spec)
    return body


def gemeente_resource(index: int) -> dict[str, Any]:
    code = f"{index:04d}"
    return {
        "apiVersion": "knooppunt.nl/v1alpha1",
        "kind": "Gemeente",
        "metadata": {"name": f"gemeente-{code}"},
        "spec": {
            "gemeentecode": code,
            "oin": f"00000001999{index:06d}000",
            "displayName": f"Gemeente {code}",
            "subscriptions": [
                {
                    "connector": CONNECTOR,
                    "purpose": "wmo-uitvoering",
                    "legalBasis": "Wmo 2015 art. 5.1.1",
                }
            ],
        },
    }


async def template_hash(cluster: Cluster) -> str:
    deployment = await cluster.must_get(kube.DEPLOYMENT, NODE)
    return str(deployment["spec"]["template"]["metadata"]["annotations"][meta.CONFIG_HASH])


async def served_revision(cluster: Cluster) -> int:
    config = await cluster.must_get(kube.CONFIG_MAP, f"{NODE}-resources")
    doc = yaml.safe_load(config["data"][f"connector-{CONNECTOR}.yaml"])
    return int(doc["spec"]["revision"])


async def ready_node(cluster: Cluster, **spec: Any) -> None:
    """Connector and node created, the first rollout reported ready."""
    await cluster.create(connector_resource())
    await cluster.wait_condition(kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True")
    await cluster.create(knooppunt_resource(**spec))
    await cluster.eventually(lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")

    async def last_good() -> Any:
        return ((await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}).get("lastGood")

    await cluster.eventually(last_good, what="lastGood")


# ---------------------------------------------------------------------------- scenarios


async def create_knooppunt_makes_its_children(cluster: Cluster) -> None:
    await cluster.create(connector_resource())
    await cluster.wait_condition(
        kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True", reason="Recorded"
    )
    kp = await cluster.create(knooppunt_resource())
    uid = kp["metadata"]["uid"]
    deployment = await cluster.eventually(
        lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment"
    )
    children = [
        (kube.SERVICE_ACCOUNT, NODE),
        (kube.ROLE, f"{NODE}-runtime"),
        (kube.ROLE_BINDING, f"{NODE}-runtime"),
        (kube.CONFIG_MAP, f"{NODE}-resources"),
        (kube.SECRET, f"{NODE}-ca"),
        (kube.SECRET, f"{NODE}-tls"),
        (kube.SECRET, f"{NODE}-pseudonym"),
        (kube.DEPLOYMENT, NODE),
        (kube.SERVICE, NODE),
        (kube.POD_DISRUPTION_BUDGET, NODE),
        (kube.NETWORK_POLICY, NODE),
        (kube.PERSISTENT_VOLUME_CLAIM, f"{NODE}-data"),
    ]
    for kind, name in children:
        child = await cluster.eventually(
            lambda kind=kind, name=name: cluster.get(kind, name), what=f"{kind.kind} {name}"
        )
        owners = child["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["uid"], o.get("controller")) for o in owners] == [
            ("Knooppunt", uid, True)
        ], f"{kind.kind} {name}"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knooppunt-operator"

    config = await cluster.must_get(kube.CONFIG_MAP, f"{NODE}-resources")
    assert sorted(config["data"]) == ["connector-iwmo-2-1.yaml", "knooppunt.yaml"]
    runtime_kp = yaml.safe_load(config["data"]["knooppunt.yaml"])
    assert runtime_kp["metadata"]["name"] == NODE and "replicas" not in runtime_kp["spec"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][meta.CONFIG_HASH]
    container = template["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KNOOPPUNT_NODE"] == NODE
    assert env["KNOOPPUNT_GEMEENTEN_SOURCE"] == "kubernetes"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    tls = (await cluster.must_get(kube.SECRET, f"{NODE}-tls"))["data"]
    assert sorted(tls) == ["ca.crt", "crl.pem", "issuers.json", "tls.crt", "tls.key"]
    info = certificates.leaf_info(unb64(tls, "tls.crt") or b"")
    assert f"{NODE}.{cluster.namespace}.svc" in info.dns_names
    pseudonym = unb64((await cluster.must_get(kube.SECRET, f"{NODE}-pseudonym"))["data"], "key")
    assert pseudonym is not None and len(pseudonym) == 64

    progressing = await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Progressing", "True")
    assert progressing["observedGeneration"] == 1
    ready = await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "False")
    since = ready["lastTransitionTime"]

    await cluster.set_rollout(NODE, ready=True)
    ready = await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True", reason="Available")
    assert ready["observedGeneration"] == 1
    await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Progressing", "False", reason="RolloutComplete"
    )
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Degraded", "False")
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["version"] == "0.1.0"
    assert status["connectorSummary"] == "iwmo-2-1@r1"
    assert status["lastGood"]["revisions"] == {CONNECTOR: 1}
    assert status["connectors"] == [
        {"name": CONNECTOR, "revision": 1, "desiredRevision": 1, "standardVersion": "2.1"}
    ]
    assert since  # the Ready transition time moved when Ready flipped
    assert ready["lastTransitionTime"] >= since

    events = await cluster.list(kube.EVENT)
    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events}
    assert (NODE, "Created") in reasons
    assert (NODE, "CertificateAuthorityCreated") in reasons
    assert (CONNECTOR, "RevisionRecorded") in reasons


async def a_node_waits_for_its_connector(cluster: Cluster) -> None:
    """A node never starts half-configured: no Deployment until its connector is valid."""
    await cluster.create(knooppunt_resource())
    degraded = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Degraded", "True", reason="ConfigurationProblem"
    )
    assert "connector iwmo-2-1: no valid revision recorded" in degraded["message"]
    assert await cluster.get(kube.DEPLOYMENT, NODE) is None
    assert await cluster.get(kube.SERVICE, NODE) is not None
    await cluster.create(connector_resource())
    await cluster.eventually(lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment")
    assert await served_revision(cluster) == 1
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Degraded", "False")


async def conditions_are_written_only_when_they_change(
    cluster: Cluster, status_writes: Callable[[], int] | None = None
) -> None:
    """``status_writes`` (when the API server can tell) counts the operator's status writes."""
    await ready_node(cluster)

    async def settled() -> bool:  # the periodic observation has run at least once
        status = (await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}
        return status.get("gemeenten") == 0 and status.get("availableReplicas") == 1

    await cluster.eventually(settled, what="first observation")
    before = await cluster.must_get(kube.KNOOPPUNT, NODE)
    writes = status_writes() if status_writes else 0
    # Several observation rounds pass (timer); nothing changed, so nothing is written.
    await asyncio.sleep(1.2)
    after = await cluster.must_get(kube.KNOOPPUNT, NODE)
    assert after["status"] == before["status"], merge_diff(before["status"], after["status"])
    if status_writes is not None:
        assert status_writes() == writes, "the operator wrote an unchanged status"


async def connector_change_rolls_the_pods(cluster: Cluster) -> None:
    await ready_node(cluster)
    first = await template_hash(cluster)
    updated = connector_resource(revision=2, standardVersion="2.2")  # a new standard version
    await cluster.patch(kube.SECTOR_CONNECTOR, CONNECTOR, {"spec": updated["spec"]})

    async def rolled() -> bool:
        return await template_hash(cluster) != first

    await cluster.eventually(rolled, what="a new pod template")
    assert await served_revision(cluster) == 2
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Progressing", "True", reason="RollingOut")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["connectorSummary"] == "iwmo-2-1@r2"
    assert status["connectors"][0]["standardVersion"] == "2.2"
    connector = await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR)
    assert connector["status"]["revision"] == 2 and connector["status"]["revisions"] == [1, 2]


async def tracing_endpoint_reaches_the_pods(cluster: Cluster) -> None:
    """spec.tracing.otlpEndpoint becomes OTEL_EXPORTER_OTLP_ENDPOINT in the node's pods; a
    change rolls them, removing it takes it away (no operator default here)."""
    first, second = "http://otel-collector.monitoring.svc:4318", "https://traces.example.nl"

    async def endpoint() -> str | None:
        deployment = await cluster.must_get(kube.DEPLOYMENT, NODE)
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        return env.get("OTEL_EXPORTER_OTLP_ENDPOINT")

    await ready_node(cluster, tracing={"otlpEndpoint": first})
    assert await endpoint() == first
    await cluster.patch(kube.KNOOPPUNT, NODE, {"spec": {"tracing": {"otlpEndpoint": second}}})

    async def changed() -> bool:
        return await endpoint() == second

    await cluster.eventually(changed, what="the new endpoint in the pod template")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    await cluster.patch(kube.KNOOPPUNT, NODE, {"spec": {"tracing": None}})

    async def gone() -> bool:
        return await endpoint() is None

    await cluster.eventually(gone, what="no endpoint in the pod template")


async def pinned_node_is_not_restarted_until_promoted(cluster: Cluster) -> None:
    await ready_node(cluster, connectors=[{"name": CONNECTOR, "revision": 1}])
    first = await template_hash(cluster)
    deployment = await cluster.must_get(kube.DEPLOYMENT, NODE)
    await cluster.patch(
        kube.SECTOR_CONNECTOR,
        CONNECTOR,
        {"spec": connector_resource(revision=2, payloadRetentionDays=30)["spec"]},
    )

    async def recorded() -> bool:
        c = await cluster.must_get(kube.SECTOR_CONNECTOR, CONNECTOR)
        return (c.get("status") or {}).get("revision") == 2

    await cluster.eventually(recorded, what="revision 2 recorded")
    await asyncio.sleep(0.8)
    same = await cluster.must_get(kube.DEPLOYMENT, NODE)
    assert same["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert same["spec"] == deployment["spec"]
    assert await template_hash(cluster) == first and await served_revision(cluster) == 1
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["connectors"][0]["revision"] == 1

    # Explicit promotion: pin the new revision.
    await cluster.patch(
        kube.KNOOPPUNT, NODE, {"spec": {"connectors": [{"name": CONNECTOR, "revision": 2}]}}
    )

    async def promoted() -> bool:
        return await served_revision(cluster) == 2 and await template_hash(cluster) != first

    await cluster.eventually(promoted, what="promotion to revision 2")


async def gemeenten_never_touch_the_deployment(cluster: Cluster, *, count: int = 4) -> None:
    await ready_node(cluster)
    deployment = await cluster.must_get(kube.DEPLOYMENT, NODE)
    config = await cluster.must_get(kube.CONFIG_MAP, f"{NODE}-resources")
    for index in range(1, count + 1):
        await cluster.create(gemeente_resource(index))

    async def certified() -> bool:
        secrets = await cluster.list(
            kube.SECRET, **{"app.kubernetes.io/component": "client-certificate"}
        )
        return len(secrets) == count

    last = f"gemeente-{count:04d}"
    await cluster.wait_condition(
        kube.GEMEENTE, last, "Ready", "True", reason="Served", timeout=30 + count / 2
    )
    await cluster.eventually(
        certified,
        timeout=30 + count / 4,
        interval=0.05 + count / 200,
        what=f"{count} client certificates",
    )
    secret = await cluster.must_get(kube.SECRET, f"{last}-client-tls")
    info = certificates.leaf_info(unb64(secret["data"], "tls.crt") or b"")
    assert info.subject_serial_number == f"00000001999{count:06d}000"
    assert info.issuer == f"Knooppunt {NODE} CA"
    gemeente = await cluster.must_get(kube.GEMEENTE, last)
    assert gemeente["status"]["nodes"] == [NODE]
    assert gemeente["status"]["certificate"]["issuer"] == NODE

    async def counted() -> bool:
        status = (await cluster.must_get(kube.KNOOPPUNT, NODE)).get("status") or {}
        return status.get("gemeenten") == count

    await cluster.eventually(counted, what="gemeenten counted in the node status")
    # Changing and removing a gemeente does not touch the node's pods either.
    await cluster.patch(kube.GEMEENTE, "gemeente-0001", {"spec": {"displayName": "Gemeente Eén"}})
    await cluster.delete(kube.GEMEENTE, "gemeente-0002")
    await cluster.eventually(
        lambda: _absent(cluster, kube.GEMEENTE, "gemeente-0002"), what="gemeente removed"
    )
    after = await cluster.must_get(kube.DEPLOYMENT, NODE)
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert after["spec"] == deployment["spec"]
    config_after = await cluster.must_get(kube.CONFIG_MAP, f"{NODE}-resources")
    assert config_after["data"] == config["data"]
    node = await cluster.must_get(kube.KNOOPPUNT, NODE)
    assert len(yaml.safe_dump(node)) < 20_000, "the node object does not grow with gemeenten"


async def _absent(cluster: Cluster, kind: kube.Kind, name: str) -> bool:
    return await cluster.get(kind, name) is None


async def failed_rollout_rolls_back(cluster: Cluster) -> None:
    await ready_node(cluster)
    good = await template_hash(cluster)
    await cluster.patch(
        kube.SECTOR_CONNECTOR,
        CONNECTOR,
        {"spec": connector_resource(revision=2, payloadRetentionDays=45)["spec"]},
    )

    async def rolled() -> bool:
        return await template_hash(cluster) != good

    await cluster.eventually(rolled, what="rollout of revision 2")
    await cluster.set_rollout(NODE, ready=False)  # the new pods never become ready
    degraded = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Degraded", "True", reason="RolledBack", timeout=20
    )
    assert "revision 2 of connector iwmo-2-1 did not become ready" in degraded["message"]
    assert "rolled back to revision 1" in degraded["message"]

    async def back() -> bool:
        return await template_hash(cluster) == good and await served_revision(cluster) == 1

    await cluster.eventually(back, what="the last good template back in the Deployment")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    status = (await cluster.must_get(kube.KNOOPPUNT, NODE))["status"]
    assert status["failedRollout"]["revisions"] == {CONNECTOR: 2}
    assert status["connectors"][0] == {
        "name": CONNECTOR,
        "revision": 1,
        "desiredRevision": 2,
        "standardVersion": "2.1",
    }
    events = {e["reason"] for e in await cluster.list(kube.EVENT)}
    assert "RolledBack" in events

    # A newer connector revision is tried again (the held-back one stays held back).
    await cluster.patch(
        kube.SECTOR_CONNECTOR,
        CONNECTOR,
        {"spec": connector_resource(revision=3, payloadRetentionDays=40)["spec"]},
    )

    async def third() -> bool:
        return await served_revision(cluster) == 3

    await cluster.eventually(third, what="revision 3 rolled out")
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Degraded", "False")


async def invalid_connector_is_never_recorded(cluster: Cluster) -> None:
    broken = connector_resource()
    broken["spec"]["purposes"][0]["fields"].append("clienten[].onbekend")
    await cluster.create(broken)
    ready = await cluster.wait_condition(
        kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "False", reason="Invalid"
    )
    assert "field 'clienten[].onbekend' is not produced by the conversion" in ready["message"]
    assert await cluster.list(kube.CONTROLLER_REVISION, **{meta.CONNECTOR_LABEL: CONNECTOR}) == []


async def gemeente_deletion_waits_for_undelivered_messages(
    cluster: Cluster, pending: StaticPending
) -> None:
    await ready_node(cluster)
    pending.gemeenten["0001"] = 3
    await cluster.create(gemeente_resource(1))
    await cluster.wait_condition(kube.GEMEENTE, "gemeente-0001", "Ready", "True")
    await cluster.delete(kube.GEMEENTE, "gemeente-0001")
    blocked = await cluster.wait_condition(
        kube.GEMEENTE, "gemeente-0001", "Ready", "False", reason="DeletionBlocked"
    )
    assert "3 undelivered messages for gemeente 0001" in blocked["message"]
    gemeente = await cluster.must_get(kube.GEMEENTE, "gemeente-0001")
    assert gemeente["metadata"].get("deletionTimestamp")
    assert any(asked[1] == "0001" for asked in pending.asked)

    # Delivered meanwhile: the finalizer lets go.
    pending.gemeenten["0001"] = 0
    await cluster.eventually(
        lambda: _absent(cluster, kube.GEMEENTE, "gemeente-0001"),
        what="gemeente deleted after delivery",
    )
    tls = (await cluster.must_get(kube.SECRET, f"{NODE}-ca"))["data"]
    revoked = certificates.parse_revoked(unb64(tls, "revoked.json"))
    assert [r.subject for r in revoked] == ["00000001999000001000"]

    # A second one is forced out with undelivered messages.
    pending.gemeenten["0002"] = 5
    await cluster.create(gemeente_resource(2))
    await cluster.wait_condition(kube.GEMEENTE, "gemeente-0002", "Ready", "True")
    await cluster.delete(kube.GEMEENTE, "gemeente-0002")
    await cluster.wait_condition(
        kube.GEMEENTE, "gemeente-0002", "Ready", "False", reason="DeletionBlocked"
    )
    await cluster.patch(
        kube.GEMEENTE, "gemeente-0002", {"metadata": {"annotations": {meta.FORCE_DELETE: "true"}}}
    )
    await cluster.eventually(
        lambda: _absent(cluster, kube.GEMEENTE, "gemeente-0002"), what="forced deletion"
    )
    reasons = {e["reason"] for e in await cluster.list(kube.EVENT)}
    assert {"DeletionBlocked", "ForceDeleted", "CertificateRevoked"} <= reasons


async def connector_deletion_waits_for_undelivered_messages(
    cluster: Cluster, pending: StaticPending
) -> None:
    await ready_node(cluster)
    pending.connectors[CONNECTOR] = 2
    await cluster.delete(kube.SECTOR_CONNECTOR, CONNECTOR)

    async def blocked() -> bool:
        events = await cluster.list(kube.EVENT)
        return any(
            e["reason"] == "DeletionBlocked" and e["involvedObject"]["name"] == CONNECTOR
            for e in events
        )

    await cluster.eventually(blocked, what="connector deletion blocked")
    assert await cluster.get(kube.SECTOR_CONNECTOR, CONNECTOR) is not None
    pending.connectors[CONNECTOR] = 0
    await cluster.eventually(
        lambda: _absent(cluster, kube.SECTOR_CONNECTOR, CONNECTOR), what="connector deleted"
    )


async def deleting_the_knooppunt_removes_its_children(cluster: Cluster) -> None:
    await ready_node(cluster)
    await cluster.delete(kube.KNOOPPUNT, NODE)
    for kind, name in [
        (kube.DEPLOYMENT, NODE),
        (kube.CONFIG_MAP, f"{NODE}-resources"),
        (kube.SECRET, f"{NODE}-tls"),
        (kube.SERVICE, NODE),
        (kube.NETWORK_POLICY, NODE),
    ]:
        await cluster.eventually(
            lambda kind=kind, name=name: _absent(cluster, kind, name),
            what=f"{kind.kind} {name} garbage-collected",
        )


async def provided_certificate_is_trusted_by_the_node(cluster: Cluster) -> None:
    """A gemeente bringing its own (e.g. PKIoverheid) certificate: the node trusts its CA."""
    await ready_node(cluster)
    external = certificates.load_ca(certificates.create_node_ca("pkio", "extern"))
    oin = "00000001999000344000"
    leaf = certificates.issue_gemeente_client(
        external,
        oin=oin,
        organisation="Gemeente Utrecht",
        common_name="gemeente-utrecht",
        days=365,
        now=datetime.datetime.now(datetime.UTC),
    )
    ca_pem = certificates.pem_cert(external.certificate)
    crl_pem = certificates.build_crl_pem(
        external, [], number=1, now=datetime.datetime.now(datetime.UTC)
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pkio-utrecht"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": b64(leaf.chain_pem),
                "tls.key": b64(leaf.key_pem),
                "ca.crt": b64(ca_pem),
                "crl.pem": b64(crl_pem),
            },
        }
    )
    gemeente = gemeente_resource(344)
    gemeente["spec"]["oin"] = oin
    gemeente["spec"]["certificate"] = {"secret": "pkio-utrecht"}
    await cluster.create(gemeente)
    await cluster.wait_condition(kube.GEMEENTE, "gemeente-0344", "Ready", "True")
    status = (await cluster.must_get(kube.GEMEENTE, "gemeente-0344"))["status"]
    assert status["certificate"]["provided"] is True
    assert status["certificate"]["secret"] == "pkio-utrecht"
    assert await cluster.get(kube.SECRET, "gemeente-0344-client-tls") is None

    async def trusted() -> bool:
        tls = (await cluster.must_get(kube.SECRET, f"{NODE}-tls"))["data"]
        return ca_pem in (unb64(tls, "ca.crt") or b"")

    await cluster.eventually(trusted, what="the external CA in the node's trust bundle")
    tls = {
        k: unb64(data, k) or b""
        for data in [(await cluster.must_get(kube.SECRET, f"{NODE}-tls"))["data"]]
        for k in data
    }
    assert crl_pem in tls["crl.pem"]  # its CRL too: the node checks revocation per issuing CA
    # the provided CA speaks for Utrecht's OIN only (issue 19, defect 5)
    policy = json.loads(tls["issuers.json"])
    assert policy["organisations"] == {certificates.ca_fingerprint(ca_pem): [oin]}
    assert (
        await asyncio.to_thread(
            handshake.mutual_tls,
            tls,
            server_name=f"{NODE}.{cluster.namespace}.svc",
            client_chain=leaf.chain_pem,
            client_key=leaf.key_pem,
        )
        is None
    )

    wrong = gemeente_resource(345)
    wrong["spec"]["certificate"] = {"secret": "pkio-utrecht"}  # someone else's certificate
    await cluster.create(wrong)
    refused = await cluster.wait_condition(kube.GEMEENTE, "gemeente-0345", "Ready", "False")
    assert f"is not the gemeente's OIN {wrong['spec']['oin']}" in refused["message"]


async def two_nodes_carry_each_others_crl(cluster: Cluster) -> None:
    """Issue 19, defect 1: a gemeente served by two nodes gets one certificate, from the first
    node's CA; the second node trusts that CA *and carries its CRL*, so the certificate passes
    a real handshake against the second node's TLS material (leaf CRL checking is on)."""
    await ready_node(cluster)
    second = "knooppunt-zorg-2"
    body = knooppunt_resource()
    body["metadata"]["name"] = second
    await cluster.create(body)
    await cluster.eventually(
        lambda: cluster.get(kube.SECRET, f"{second}-tls"), what="second node's TLS Secret"
    )
    await cluster.create(gemeente_resource(363))
    client = await cluster.eventually(
        lambda: cluster.get(kube.SECRET, "gemeente-0363-client-tls"), what="client certificate"
    )
    chain, key = unb64(client["data"], "tls.crt") or b"", unb64(client["data"], "tls.key") or b""
    issuer_ca = unb64(client["data"], "ca.crt") or b""
    issuer = client["metadata"]["labels"][meta.NODE_LABEL]
    other = second if issuer == NODE else NODE

    async def material() -> dict[str, bytes] | None:
        data = (await cluster.must_get(kube.SECRET, f"{other}-tls"))["data"]
        tls = {k: unb64(data, k) or b"" for k in data}
        if issuer_ca not in tls["ca.crt"] or not certificates.crls_signed_by(
            tls["crl.pem"], issuer_ca
        ):
            return None
        return tls

    tls = await cluster.eventually(material, what=f"{issuer}'s CA and CRL in {other}'s Secret")
    assert (
        await asyncio.to_thread(
            handshake.mutual_tls,
            tls,
            server_name=f"{other}.{cluster.namespace}.svc",
            client_chain=chain,
            client_key=key,
        )
        is None
    )
    policy = json.loads(tls["issuers.json"])
    assert certificates.ca_fingerprint(issuer_ca) in policy["nodes"]  # never the administrator

    # a revocation by the issuing node reaches the other node's CRL as well
    pki_name = f"{issuer}-ca"
    before = tls["crl.pem"]
    await cluster.client.delete(kube.GEMEENTE, cluster.namespace, "gemeente-0363")

    async def revoked() -> bool:
        data = (await cluster.must_get(kube.SECRET, f"{other}-tls"))["data"]
        crl = unb64(data, "crl.pem") or b""
        return (
            crl != before
            and await asyncio.to_thread(
                handshake.mutual_tls,
                {k: unb64(data, k) or b"" for k in data},
                server_name=f"{other}.{cluster.namespace}.svc",
                client_chain=chain,
                client_key=key,
            )
            == "certificate revoked"
        )

    await cluster.eventually(revoked, what=f"the revocation in {other}'s CRL ({pki_name})")


async def postgresql_tls_reaches_the_pods(cluster: Cluster) -> None:
    """TLS to PostgreSQL: the node waits for the CA and client certificate it names, then its
    pods mount them read-only (one projected volume) and are told to verify the server."""
    await cluster.create(connector_resource())
    await cluster.wait_condition(kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True")
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-dsn"},
            "data": {"url": b64(b"postgresql://knooppunt@db.example:5432/knooppunt")},
        }
    )
    storage = {
        "backend": "postgresql",
        "postgresqlDsnSecret": {"name": "pg-dsn", "key": "url"},
        "postgresqlTls": {
            "ca": {"configMap": "pg-ca", "key": "root.pem"},
            "clientCertificate": {"secret": "pg-client"},
        },
    }
    await cluster.create(knooppunt_resource(replicas=2, storage=storage))
    degraded = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "Degraded", "True", reason="ConfigurationProblem"
    )
    assert (
        "spec.storage.postgresqlTls.ca.configMap: ConfigMap 'pg-ca' not found"
        in degraded["message"]
    )
    assert "Secret 'pg-client' not found" in degraded["message"]
    assert await cluster.get(kube.DEPLOYMENT, NODE) is None  # never a pod that cannot mount

    now = datetime.datetime.now(datetime.UTC)
    db_ca = certificates.load_ca(certificates.create_node_ca("pg", "database"))
    client = certificates.issue_gemeente_client(
        db_ca,
        oin="00000001999000345000",
        organisation="Knooppunt",
        common_name="knooppunt",
        days=30,
        now=now,
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pg-ca"},
            "data": {"root.pem": certificates.pem_cert(db_ca.certificate).decode()},
        }
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-client"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(client.chain_pem), "tls.key": b64(client.key_pem)},
        }
    )
    # user objects are not watched (only the operator's own): touch the node, as a resync would
    await cluster.patch(kube.KNOOPPUNT, NODE, {"metadata": {"labels": {"tls": "provided"}}})
    deployment = await cluster.eventually(
        lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment"
    )
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "postgresql-tls")
    assert volume["projected"]["sources"] == [
        {"configMap": {"name": "pg-ca", "items": [{"key": "root.pem", "path": "ca.crt"}]}},
        {
            "secret": {
                "name": "pg-client",
                "items": [
                    {"key": "tls.crt", "path": "client.crt"},
                    {"key": "tls.key", "path": "client.key"},
                ],
            }
        },
    ]
    assert volume["projected"]["defaultMode"] == 0o440
    container = pod["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "postgresql-tls")
    assert mount == {
        "name": "postgresql-tls",
        "mountPath": "/etc/knooppunt/postgresql",
        "readOnly": True,
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KNOOPPUNT_DATABASE_SSLMODE"] == "verify-full"
    assert env["KNOOPPUNT_DATABASE_CA"] == "/etc/knooppunt/postgresql/ca.crt"
    assert env["KNOOPPUNT_DATABASE_CLIENT_CERT"] == "/etc/knooppunt/postgresql/client.crt"
    assert env["KNOOPPUNT_DATABASE_CLIENT_KEY"] == "/etc/knooppunt/postgresql/client.key"


async def database_secret_is_reported(cluster: Cluster) -> None:
    """The DSN Secret of a PostgreSQL node: missing, then without the key, then right. The
    Knooppunt says which, Ready=False carries the reason, and the node recovers by itself.
    Later the Secret disappears: the running template is kept until it is back."""
    dsn = "postgresql://knooppunt:s3cr3t-pw@db.example:5432/knooppunt"
    await cluster.create(connector_resource())
    await cluster.wait_condition(kube.SECTOR_CONNECTOR, CONNECTOR, "Ready", "True")
    storage = {"backend": "postgresql", "postgresqlDsnSecret": {"name": "pg-dsn", "key": "url"}}
    await cluster.create(knooppunt_resource(replicas=2, storage=storage))

    missing = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "DatabaseSecretReady", "False", reason="SecretNotFound"
    )
    assert "Secret 'pg-dsn'" in missing["message"] and "'url'" in missing["message"]
    ready = await cluster.condition(kube.KNOOPPUNT, NODE, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    # applied anyway: its pods start as soon as the Secret is there
    deployment = await cluster.eventually(
        lambda: cluster.get(kube.DEPLOYMENT, NODE), what="Deployment"
    )
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "KNOOPPUNT_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "pg-dsn", "key": "url"}},
    } in env
    reasons = {e["reason"] for e in await cluster.list(kube.EVENT)}
    assert "SecretNotFound" in reasons

    # the Secret appears, with the DSN under another key (user Secrets are not watched: the
    # operator looks again while the condition is False)
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-dsn"},
            "data": {"dsn": b64(dsn.encode())},
        }
    )
    wrong_key = await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "DatabaseSecretReady", "False", reason="KeyNotFound"
    )
    assert "has no key 'url'" in wrong_key["message"]
    ready = await cluster.condition(kube.KNOOPPUNT, NODE, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "KeyNotFound")

    await cluster.patch(kube.SECRET, "pg-dsn", {"data": {"url": b64(dsn.encode())}})
    await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "DatabaseSecretReady", "True", reason="SecretFound"
    )
    await cluster.set_rollout(NODE, ready=True)
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "Ready", "True")
    node = await cluster.must_get(kube.KNOOPPUNT, NODE)
    assert "s3cr3t" not in json.dumps(node["status"])  # the DSN is never in the status
    events = await cluster.list(kube.EVENT)
    assert not any("s3cr3t" in json.dumps(e) for e in events)
    assert "DatabaseSecretReady" in {e["reason"] for e in events}

    # the Secret goes away; a spec change is held back (the running pods keep their DSN)
    await cluster.delete(kube.SECRET, "pg-dsn")
    await cluster.patch(kube.KNOOPPUNT, NODE, {"spec": {"replicas": 3}})
    await cluster.wait_condition(
        kube.KNOOPPUNT, NODE, "DatabaseSecretReady", "False", reason="SecretNotFound"
    )
    assert (await cluster.must_get(kube.DEPLOYMENT, NODE))["spec"]["replicas"] == 2

    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pg-dsn"},
            "data": {"url": b64(dsn.encode())},
        }
    )
    await cluster.wait_condition(kube.KNOOPPUNT, NODE, "DatabaseSecretReady", "True")

    async def scaled() -> bool:
        return (await cluster.must_get(kube.DEPLOYMENT, NODE))["spec"]["replicas"] == 3

    await cluster.eventually(scaled, what="the held-back change applied")
