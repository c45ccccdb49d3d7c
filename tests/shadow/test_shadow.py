"""Shadow validation: the next release (here: one tightened rule and one renamed field of
WMO305) runs beside the live connector on every live message; the differences are counted
exactly, the examples carry paths and codes only, and the live answers are byte for byte
those of a node without a shadow."""

from __future__ import annotations

import copy
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from lxml import etree

from node_runtime.api.server import RunningNode, start_in_thread
from node_runtime.security.pki.store import DevPki
from node_runtime.security.tls.contexts import client_context
from tests.conftest import CONNECTOR, EXAMPLES, MESSAGES, node_settings
from tests.runtime.helpers import invalid_bsn, replace_first, with_new_id

ADMIN_OIN = "00000001999000000999"
URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
LINDE = MESSAGES / "wmo305-linde-amsterdam.xml"  # products 01A02, 03A01, 07A01
ANKER = MESSAGES / "wmo305-anker-rotterdam.xml"  # product 01A01
REQUEST = MESSAGES / "wmo315-anker-amsterdam.xml"
NEW_RULE = {
    "name": "geen-categorie-07",
    "kind": "xpath",
    "context": "/wmo305:Bericht/wmo305:Clienten/wmo305:Client/wmo305:StartProducten/"
    "wmo305:StartProduct",
    "test": "not(wmo305:Product/iwmo:Categorie = '07')",
    "retourcode": "8190",
    "message": "Hypothetical next-release rule: no category 07.",
}


def resources(tmp: Path, *, shadow: bool) -> Path:
    target = tmp / ("with-shadow" if shadow else "without-shadow")
    target.mkdir()
    for name in ("knooppunt.yaml", "gemeenten.yaml"):
        shutil.copy(EXAMPLES / name, target / name)
    kp = yaml.safe_load((target / "knooppunt.yaml").read_text())
    kp["spec"].setdefault("security", {})["administrators"] = [ADMIN_OIN]
    (target / "knooppunt.yaml").write_text(yaml.safe_dump(kp))
    doc = yaml.safe_load((EXAMPLES / "connector.yaml").read_text())
    if shadow:
        messages = copy.deepcopy(doc["spec"]["messages"])
        wmo305 = next(m for m in messages if m["name"] == "WMO305")
        wmo305["rules"].append(NEW_RULE)
        fields = wmo305["conversion"]["mapping"]["fields"]
        fields["clienten[].producten[].productcode"] = fields.pop("clienten[].producten[].code")
        doc["spec"]["shadow"] = {
            "standardVersion": "2.2-concept",
            "bundle": {"builtin": "iwmo-2.1"},
            "messages": messages,
        }
    (target / "connector.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def client(node: RunningNode, pki: DevPki, name: str) -> httpx.Client:
    paths = pki.store.paths(name)
    return httpx.Client(
        base_url=f"https://localhost:{node.port}",
        timeout=30,
        verify=client_context(paths.chain, paths.key, pki.ca_bundle),
    )


def traffic() -> list[tuple[str, bytes]]:
    linde = LINDE.read_bytes()
    return [
        ("zorggroep-de-linde", linde),  # accepted
        ("thuiszorg-het-anker", ANKER.read_bytes()),  # accepted
        (
            "zorggroep-de-linde",
            replace_first(with_new_id(linde, "LINDE000002"), "Bsn", invalid_bsn()),
        ),  # rejected: 0435
        ("thuiszorg-het-anker", REQUEST.read_bytes()),  # WMO315: unchanged
        ("thuiszorg-het-anker", ANKER.read_bytes()),  # duplicate
    ]


def numbered(counter: Iterator[int]) -> SimpleNamespace:
    """The intake's `secrets` with numbered retour ids: the same traffic gets the same
    answers on every node. Only the intake's name is replaced (tracing, delivery and the
    shadow worker keep the real module, so their background use cannot shift the numbers)."""
    return SimpleNamespace(token_hex=lambda n=6: f"{next(counter):0{2 * n}X}")


def run(
    tmp: Path,
    pki: DevPki,
    resource_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[tuple[int, bytes]], dict[str, Any], str]:
    counter = itertools.count(1)
    monkeypatch.setattr("node_runtime.pipeline.intake.secrets", numbered(counter))
    node = start_in_thread(node_settings(resource_dir, tmp / f"data-{resource_dir.name}", pki))
    try:
        answers = []
        for sender, body in traffic():
            with client(node, pki, sender) as c:
                r = c.post(URL, content=body, headers=XML)
                answers.append((r.status_code, r.content))
        assert node.node.intake.shadow is not None
        node.node.intake.shadow.drain()
        with client(node, pki, "admin") as admin:
            report = admin.get("/api/v1/admin/shadow").json()
            metrics = admin.get("/metrics").text
        return answers, report, metrics
    finally:
        node.stop()


def test_shadow_counts_differences_and_leaves_live_answers_alone(
    tmp_path: Path, dev_pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not dev_pki.store.has("admin"):
        dev_pki.store.issue_client("admin", organisation="Beheer", oin=ADMIN_OIN)
    with_shadow = run(tmp_path, dev_pki, resources(tmp_path, shadow=True), monkeypatch)
    without = run(tmp_path, dev_pki, resources(tmp_path, shadow=False), monkeypatch)

    # the live answers: byte for byte those of a node without a shadow
    assert [s for s, _ in with_shadow[0]] == [202, 202, 422, 202, 202]
    assert with_shadow[0] == without[0]
    assert without[1] == {"connectors": {}}

    report = with_shadow[1]["connectors"][CONNECTOR]
    assert report["standardVersion"] == "2.2-concept" and report["error"] is None
    assert report["messages"] == 4  # the duplicate is not evaluated again
    assert report["differences"] == {
        "WMO305": {"would-be-rejected": 1, "different-fields": 1, "other-retourcodes": 1}
    }
    root = etree.fromstring(LINDE.read_bytes())
    tree = root.getroottree()
    third_product = tree.getpath(root.xpath("//*[local-name()='StartProduct']")[2])
    first_client = tree.getpath(root.xpath("//*[local-name()='Client']")[0])
    assert third_product.startswith("/wmo305:Bericht/")  # element positions, not values
    assert report["examples"] == [
        {
            "messageType": "WMO305",
            "kind": "would-be-rejected",
            "retourcodes": [{"code": "8190", "path": third_product}],
        },
        {
            "messageType": "WMO305",
            "kind": "different-fields",
            "missingFields": ["clienten[].producten[].code"],
            "addedFields": ["clienten[].producten[].productcode"],
        },
        {
            "messageType": "WMO305",
            "kind": "other-retourcodes",
            "retourcodes": [
                {"code": "0435", "path": first_client},
                {"code": "8190", "path": third_product},
            ],
            "liveRetourcodes": [{"code": "0435", "path": first_client}],
        },
    ]
    text = repr(report)
    for value in ("999990", "01A0", "Bakker", "98000011"):  # no BSN, codes of products, names
        assert value not in text
    metrics = with_shadow[2]
    assert (
        'knooppunt_shadow_messages_total{connector="iwmo-2-1",message_type="WMO305"} 3.0' in metrics
    )
    assert (
        'knooppunt_shadow_messages_total{connector="iwmo-2-1",message_type="WMO315"} 1.0' in metrics
    )
    for kind in ("would-be-rejected", "different-fields", "other-retourcodes"):
        assert (
            f'knooppunt_shadow_differences_total{{connector="iwmo-2-1",'
            f'kind="{kind}",message_type="WMO305"}} 1.0'
        ) in metrics
