"""Conversation deadlines through the façade: one list over every knooppunt."""

from __future__ import annotations

from typing import Any

from tests.facade.conftest import IWMO, IWMO_MESSAGES, NODE_A, NODE_B, World


def test_conversations_through_the_facade(world: World) -> None:
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo315-anker-amsterdam.xml", IWMO)
    amsterdam = world.at_facade("gemeente-amsterdam")
    answers: list[dict[str, Any]] = []

    def complete() -> bool:  # a loaded machine may miss the façade's per-node bound once
        answers.append(amsterdam.get("/api/v1/gemeenten/0363/conversations").json())
        return bool(answers[-1]["complete"])

    world.wait_for(complete)
    answer = answers[-1]
    assert set(answer["nodes"]) == {NODE_A, NODE_B}
    assert [(i["node"], i["state"], i["conversation"]) for i in answer["items"]] == [
        (NODE_A, "open", "verzoek-om-toewijzing")
    ] * 2
    overdue = amsterdam.get(
        "/api/v1/gemeenten/0363/conversations", params={"state": "overdue"}
    ).json()
    assert overdue["items"] == []
    utrecht = world.at_facade("gemeente-utrecht")
    assert utrecht.get("/api/v1/gemeenten/0363/conversations").status_code == 403
    assert utrecht.get("/api/v1/gemeenten/0344/conversations").json()["items"] == []
