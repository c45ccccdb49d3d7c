"""The tamper-evident processing log over the API of a running node (mutual TLS): a gemeente
checks a signed checkpoint, inclusion proofs for its own records and a consistency proof;
another gemeente gets nothing of it; `knooppunt log verify` against the node and its data
directory."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from sqlalchemy import create_engine, text

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.cli import main
from node_runtime.ledger import merkle
from node_runtime.ledger.checkpoints import Checkpoint
from node_runtime.ledger.checkpoints import verify as verify_checkpoint
from node_runtime.ledger.leaves import leaf_data_from_api
from node_runtime.model.loading import ResourceSet
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from node_runtime.store.sql import sqlite_url
from tests.conftest import CONNECTOR, MESSAGES, SQLITE_FILE, node_settings
from tests.runtime.helpers import header, with_new_id

ADMIN_OIN = "00000001999000000999"
URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
MESSAGE = sorted(MESSAGES.glob("wmo305*.xml"))[0]


@pytest.fixture()
def node(tmp_path: Path, resource_dir: Path, dev_pki: DevPki) -> Iterator[RunningNode]:
    kp = yaml.safe_load((resource_dir / "knooppunt.yaml").read_text())
    kp["spec"].setdefault("security", {})["administrators"] = [ADMIN_OIN]
    kp["spec"]["processingLog"] = {"checkpointIntervalSeconds": 3600}
    (resource_dir / "knooppunt.yaml").write_text(yaml.safe_dump(kp))
    if not dev_pki.store.has("admin"):
        dev_pki.store.issue_client("admin", organisation="Beheer", oin=ADMIN_OIN)
    running = start_in_thread(node_settings(resource_dir, tmp_path / "data", dev_pki))
    try:
        yield running
    finally:
        running.stop()


def client(node: RunningNode, pki: DevPki, name: str) -> httpx.Client:
    paths = pki.store.paths(name)
    return httpx.Client(
        base_url=f"https://localhost:{node.port}",
        timeout=30,
        verify=client_context(paths.chain, paths.key, pki.ca_bundle),
    )


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def send(provider: httpx.Client, n: int) -> str:
    body = with_new_id(MESSAGE.read_bytes(), f"LEDGER{n:06d}")
    resp = provider.post(URL, content=body, headers=XML)
    assert resp.status_code == 202, resp.text
    return header(body)["Ontvanger"]


def test_gemeente_verifies_checkpoint_inclusion_and_consistency(
    node: RunningNode,
    dev_pki: DevPki,
    example_resources: ResourceSet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trust = x509.load_pem_x509_certificates(dev_pki.ca_bundle.read_bytes())
    sender = header(MESSAGE.read_bytes())["Afzender"]
    PROVIDER = next(
        p.name
        for p in example_resources.connectors[CONNECTOR].spec.participants
        if sender in p.identifiers
    )
    with client(node, dev_pki, PROVIDER) as provider:
        code = send(provider, 1)
    gemeente = {g.spec.gemeentecode: g.name for g in example_resources.gemeenten.values()}
    owner_name = gemeente[code]
    other_name, other_code = next((n, c) for c, n in gemeente.items() if c != code)
    with (
        client(node, dev_pki, owner_name) as owner,
        client(node, dev_pki, other_name) as other,
        client(node, dev_pki, "admin") as admin,
    ):
        base = f"/api/v1/gemeenten/{code}/processing-log"
        # the latest checkpoint may predate the message: ask for a fresh one, then the
        # latest is that one
        fresh = Checkpoint.from_json(owner.post(f"{base}/checkpoint").json())
        first = Checkpoint.from_json(owner.get(f"{base}/checkpoint").json())
        assert first == fresh
        signer = verify_checkpoint(first, trust=trust)
        assert signer.subject.rfc4514_string().startswith("CN=localhost")
        assert first.origin == "knooppunt.nl/knooppunt-zorg"
        records = owner.get(base, params={"limit": 1000}).json()["records"]
        assert records and all(r["controller"] == code for r in records)
        for record in records:
            proof = owner.get(f"{base}/records/{record['id']}/inclusion-proof").json()
            assert proof["treeSize"] == first.tree_size
            leaf = merkle.leaf_hash(leaf_data_from_api(record))
            assert b64(proof["leafHash"]) == leaf
            merkle.verify_inclusion(
                proof["leafIndex"],
                proof["treeSize"],
                leaf,
                [b64(h) for h in proof["auditPath"]],
                first.root_hash,
            )
        # another gemeente: no proof for someone else's record, by either path
        rid = records[0]["id"]
        assert other.get(f"{base}/records/{rid}/inclusion-proof").status_code == 403
        assert other.get(f"{base}/checkpoint").status_code == 403
        foreign = other.get(
            f"/api/v1/gemeenten/{other_code}/processing-log/records/{rid}/inclusion-proof"
        )
        missing = other.get(
            f"/api/v1/gemeenten/{other_code}/processing-log/records/"
            "00000000-0000-0000-0000-000000000000/inclusion-proof"
        )
        assert foreign.status_code == missing.status_code == 404  # indistinguishable
        assert foreign.json()["title"] == missing.json()["title"]

        # the log grows; a new checkpoint on demand is consistent with the first
        with client(node, dev_pki, PROVIDER) as provider:
            send(provider, 2)
        second = Checkpoint.from_json(owner.post(f"{base}/checkpoint").json())
        verify_checkpoint(second, trust=trust)
        assert second.tree_size > first.tree_size
        consistency = owner.get(
            f"{base}/consistency-proof", params={"from": first.tree_size, "to": second.tree_size}
        ).json()
        merkle.verify_consistency(
            first.tree_size,
            second.tree_size,
            first.root_hash,
            second.root_hash,
            [b64(h) for h in consistency["proof"]],
        )
        older = Checkpoint.from_json(owner.get(f"{base}/checkpoints/{first.tree_size}").json())
        assert older == first
        # a record after the checkpoint: 409 until a new one is signed
        with client(node, dev_pki, PROVIDER) as provider:
            send(provider, 3)
        newest = owner.get(base, params={"limit": 1000}).json()["records"][-1]
        late = owner.get(f"{base}/records/{newest['id']}/inclusion-proof")
        assert late.status_code == 409, late.text
        assert late.json()["type"].endswith("not-yet-checkpointed")

        report = admin.post("/api/v1/admin/processing-log/verify").json()
        assert report["ok"] and report["findings"] == []
        assert owner.post("/api/v1/admin/processing-log/verify").status_code == 403
        metrics = admin.get("/metrics").text
        assert f"knooppunt_log_checkpoint_size {float(second.tree_size)}" in metrics

    admin_paths = dev_pki.store.paths("admin")
    remote = [
        "log",
        "verify",
        "--url",
        f"https://localhost:{node.port}",
        "--cert",
        str(admin_paths.chain),
        "--key",
        str(admin_paths.key),
        "--trust",
        str(dev_pki.ca_bundle),
    ]
    assert main(remote) == 0
    assert capsys.readouterr().out.startswith("OK: ")

    # the node stops; someone deletes one of the gemeente's records in the SQLite file
    data_dir = node.node.settings.data_dir
    node.stop()
    engine = create_engine(sqlite_url(data_dir / SQLITE_FILE))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM processing_log WHERE id = :id"), {"id": rid})
    engine.dispose()
    assert (
        main(["log", "verify", "--data-dir", str(data_dir), "--trust", str(dev_pki.ca_bundle)]) == 1
    )
    out = capsys.readouterr().out
    assert out.startswith("FAILED") and f"deleted: record {rid}" in out
