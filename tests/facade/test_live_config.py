"""The façade follows the resources live: a gemeente onboarded or a subscription added is served
without a restart of the façade or the nodes."""

from __future__ import annotations

import yaml

from tests.facade.conftest import (
    LATE,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    XML,
    World,
    gemeente_doc,
)


def test_onboarding_a_gemeente_live(world: World) -> None:
    zwolle = world.at_facade(LATE.name)
    refused = zwolle.get("/api/v1/catalogue")
    assert refused.status_code == 403  # not (yet) a gemeente
    (world.root / "zwolle.yaml").write_text(yaml.safe_dump(gemeente_doc(LATE)))
    world.wait_for(lambda: zwolle.get("/api/v1/catalogue").status_code == 200)
    catalogue = zwolle.get("/api/v1/catalogue").json()
    assert {n["name"]: n["subscribed"] for n in catalogue["nodes"]} == {NODE_A: False, NODE_B: True}
    # the vroegsignalering node picked Zwolle up too: a signal for Zwolle reaches its mailbox
    body = (VS_MESSAGES / "vs01-onshuis-amsterdam.xml").read_bytes()
    body = body.replace(b"<vs:Ontvanger>0363<", b"<vs:Ontvanger>0193<").replace(
        b"OH-2026-0001", b"OH-2026-0193"
    )

    def accepted() -> bool:
        resp = world.at_node(NODE_B, "woningcorporatie-ons-huis").post(
            f"/api/v1/connectors/{VS}/messages", content=body, headers=XML
        )
        return resp.status_code == 202

    world.wait_for(accepted)
    page = zwolle.get("/api/v1/gemeenten/0193/mailbox").json()
    assert page["complete"] is True and set(page["nodes"]) == {NODE_B}
    assert [i["messageType"] for i in page["items"]] == ["VS01"]


def test_a_new_subscription_adds_a_node_live(world: World) -> None:
    utrecht = world.at_facade("gemeente-utrecht")
    assert set(utrecht.get("/api/v1/gemeenten/0344/mailbox").json()["nodes"]) == {NODE_A}
    path = world.root / "gemeenten.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["spec"]["gemeentecode"] == "0344":
            doc["spec"]["subscriptions"].append(
                {
                    "connector": VS,
                    "purpose": "schuldhulp-beleidsinformatie",
                    "legalBasis": "Wgs art. 7",
                }
            )
    path.write_text(yaml.safe_dump_all(docs))

    def both() -> bool:
        page = utrecht.get("/api/v1/gemeenten/0344/mailbox").json()
        return set(page["nodes"]) == {NODE_A, NODE_B} and page["complete"] is True

    world.wait_for(both)
