"""The tamper-evident processing log through the façade: checkpoints of every knooppunt that
serves the gemeente, proofs passed through from the knooppunt that holds the record."""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509

from node_runtime.ledger import merkle
from node_runtime.ledger.checkpoints import Checkpoint
from node_runtime.ledger.checkpoints import verify as verify_checkpoint
from node_runtime.ledger.leaves import leaf_data_from_api
from tests.facade.conftest import (
    IWMO,
    IWMO_MESSAGES,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    World,
)


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def test_checkpoints_and_proofs_through_the_facade(world: World) -> None:
    world.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    world.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-amsterdam.xml", VS)
    trust = x509.load_pem_x509_certificates(world.pki.ca_bundle.read_bytes())
    amsterdam = world.at_facade("gemeente-amsterdam")
    base = "/api/v1/gemeenten/0363/processing-log"
    # a loaded machine may miss the façade's per-node bound once: ask again until complete
    world.wait_for(lambda: amsterdam.post(f"{base}/checkpoints").json()["complete"] is True)
    answers: list[dict[str, Any]] = []
    world.wait_for(
        lambda: (
            answers.append(amsterdam.get(f"{base}/checkpoints").json())
            or answers[-1]["complete"] is True
        )
    )
    answer = answers[-1]
    assert set(answer["checkpoints"]) == {NODE_A, NODE_B}
    first = {n: Checkpoint.from_json(c) for n, c in answer["checkpoints"].items()}
    for name, cp in first.items():
        verify_checkpoint(cp, trust=trust)
        assert cp.origin == f"knooppunt.nl/{name}"
    logs: list[dict[str, Any]] = []
    world.wait_for(
        lambda: (
            logs.append(amsterdam.get(base, params={"limit": 1000}).json())
            or logs[-1]["complete"] is True
        )
    )
    records = logs[-1]["records"]
    assert {r["node"] for r in records} == {NODE_A, NODE_B}
    for record in records:
        node = record["node"]
        proof = amsterdam.get(
            f"{base}/nodes/{node}/records/{record['id']}/inclusion-proof",
            params={"treeSize": first[node].tree_size},
        )
        assert proof.status_code == 200, proof.text
        assert proof.headers["knooppunt-node"] == node
        body = proof.json()
        merkle.verify_inclusion(
            body["leafIndex"],
            body["treeSize"],
            merkle.leaf_hash(leaf_data_from_api(record)),
            [b64(h) for h in body["auditPath"]],
            first[node].root_hash,
        )
    # Utrecht is not served by the vroegsignalering node and cannot reach Amsterdam's records
    utrecht = world.at_facade("gemeente-utrecht")
    assert set(
        utrecht.get("/api/v1/gemeenten/0344/processing-log/checkpoints").json()["checkpoints"]
    ) == {NODE_A}
    rid = next(r["id"] for r in records if r["node"] == NODE_A)
    assert utrecht.get(f"{base}/nodes/{NODE_A}/records/{rid}/inclusion-proof").status_code == 403
    hidden = utrecht.get(
        f"/api/v1/gemeenten/0344/processing-log/nodes/{NODE_A}/records/{rid}/inclusion-proof"
    )
    assert hidden.status_code == 404
    assert (
        utrecht.get(
            f"/api/v1/gemeenten/0344/processing-log/nodes/{NODE_B}/consistency-proof",
            params={"from": 1, "to": 2},
        ).status_code
        == 404
    )

    # more traffic, new checkpoints on demand, consistent with the first ones
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo315-anker-amsterdam.xml", IWMO)
    signed: list[dict[str, Any]] = []
    world.wait_for(
        lambda: (
            signed.append(amsterdam.post(f"{base}/checkpoints").json())
            or signed[-1]["complete"] is True
        )
    )
    renewed = signed[-1]["checkpoints"]
    second = Checkpoint.from_json(renewed[NODE_A])
    assert second.tree_size > first[NODE_A].tree_size
    proof = amsterdam.get(
        f"{base}/nodes/{NODE_A}/consistency-proof",
        params={"from": first[NODE_A].tree_size, "to": second.tree_size},
    ).json()
    merkle.verify_consistency(
        first[NODE_A].tree_size,
        second.tree_size,
        first[NODE_A].root_hash,
        second.root_hash,
        [b64(h) for h in proof["proof"]],
    )
