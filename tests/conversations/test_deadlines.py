"""Conversation deadlines on a running node (mutual TLS), with a controllable clock: a WMO315
verzoek om toewijzing must be answered by a WMO301 toewijzing of each product within 5
working days (examples/iwmo/connector.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from node_runtime.api.server import RunningNode
from node_runtime.model.connector import SectorConnectorSpec
from tests.conftest import CONNECTOR, MESSAGES, PartyFactory

AMS = ZoneInfo("Europe/Amsterdam")
URL = f"/api/v1/connectors/{CONNECTOR}/messages"
XML = {"content-type": "application/xml"}
REQUEST = MESSAGES / "wmo315-anker-amsterdam.xml"  # Het Anker asks Amsterdam, 2 products
ASSIGNMENT = MESSAGES / "wmo301-amsterdam-anker.xml"  # Amsterdam assigns both to Het Anker
ANKER = "thuiszorg-het-anker"
AMSTERDAM = "gemeente-amsterdam"


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        self.now = datetime(*args, tzinfo=AMS).astimezone(UTC)  # type: ignore[misc]


@pytest.fixture()
def clock(running_node: RunningNode) -> Iterator[Clock]:
    c = Clock(datetime.now(UTC))
    node = running_node.node
    assert node.intake.conversations is not None
    node.intake.conversations.clock = c
    node.conversations.clock = c
    yield c


def send(party: PartyFactory, who: str, path: Path) -> None:
    resp = party(who).post(URL, content=path.read_bytes(), headers=XML)
    assert resp.status_code == 202, resp.text


def states(party: PartyFactory, who: str, path: str) -> dict[str, int]:
    items = party(who).get(path, params={"limit": 1000}).json()["items"]
    out: dict[str, int] = {}
    for item in items:
        out[item["state"]] = out.get(item["state"], 0) + 1
    return out


def gauge(running_node: RunningNode, state: str) -> float:
    node = running_node.node
    node.conversations.refresh()
    value = node.metrics.registry.get_sample_value(
        "knooppunt_conversations",
        {
            "connector": CONNECTOR,
            "conversation": "verzoek-om-toewijzing",
            "gemeente": "0363",
            "sender": "98000023",
            "state": state,
        },
    )
    return value or 0.0


GEMEENTE = "/api/v1/gemeenten/0363/conversations"
PARTICIPANT = f"/api/v1/participants/{ANKER}/conversations"


def test_deadline_over_easter_weekend_and_a_late_answer(
    running_node: RunningNode, party: PartyFactory, clock: Clock
) -> None:
    clock.set(2026, 4, 2, 15, 0)  # Thursday before Good Friday
    send(party, ANKER, REQUEST)
    items = party(AMSTERDAM).get(GEMEENTE).json()["items"]
    assert [i["state"] for i in items] == ["open", "open"]
    assert {i["dueAt"] for i in items} == {"2026-04-13T22:00:00+00:00"}  # end of Mon 13 April
    assert {i["opener"]["reference"] for i in items} == {"ANK-315-0042"}
    assert sorted(i["opener"]["item"] for i in items) == [1, 2]
    assert {(i["sender"], i["recipient"]) for i in items} == {("98000023", "0363")}
    text = repr(items)
    assert "999990093" not in text and "ANK-2016-0042" not in text  # no values, only hashes
    assert states(party, ANKER, PARTICIPANT) == {"open": 2}
    # nobody else sees them
    assert party("gemeente-utrecht").get(GEMEENTE).status_code == 403
    assert (
        party("gemeente-utrecht").get("/api/v1/gemeenten/0344/conversations").json()["items"] == []
    )
    assert party(ANKER).get(GEMEENTE).status_code == 403

    clock.set(2026, 4, 13, 23, 30)  # the last working day, before midnight
    assert states(party, AMSTERDAM, GEMEENTE) == {"open": 2}
    assert gauge(running_node, "overdue") == 0
    clock.set(2026, 4, 14, 0, 30)  # term over
    assert states(party, AMSTERDAM, GEMEENTE) == {"overdue": 2}
    assert states(party, ANKER, PARTICIPANT) == {"overdue": 2}
    overdue = party(AMSTERDAM).get(GEMEENTE, params={"state": "overdue"}).json()["items"]
    assert len(overdue) == 2
    assert gauge(running_node, "overdue") == 2

    clock.set(2026, 4, 14, 9, 0)  # the toewijzing comes a day late
    send(party, AMSTERDAM, ASSIGNMENT)
    items = party(AMSTERDAM).get(GEMEENTE).json()["items"]
    assert [i["state"] for i in items] == ["late", "late"]
    assert {i["closer"]["messageType"] for i in items} == {"WMO301"}
    assert gauge(running_node, "overdue") == 0
    assert gauge(running_node, "late") == 2


def test_answer_before_request_closes_it_in_time(
    running_node: RunningNode, party: PartyFactory, clock: Clock
) -> None:
    clock.set(2026, 11, 27, 16, 0)  # Friday
    send(party, AMSTERDAM, ASSIGNMENT)  # the toewijzing overtakes the verzoek
    assert states(party, AMSTERDAM, GEMEENTE) == {"unmatched": 2}
    clock.set(2026, 11, 30, 9, 0)
    send(party, ANKER, REQUEST)
    items = party(AMSTERDAM).get(GEMEENTE).json()["items"]
    assert [i["state"] for i in items] == ["closed", "closed"]
    assert all(i["opener"]["messageType"] == "WMO315" for i in items)
    clock.set(2027, 1, 30, 9, 0)  # long after any term: nothing overdue
    assert states(party, AMSTERDAM, GEMEENTE) == {"closed": 2}
    assert gauge(running_node, "overdue") == 0 and gauge(running_node, "closed") == 2


def test_conversation_declarations_are_checked() -> None:
    spec = yaml.safe_load((MESSAGES.parent / "connector.yaml").read_text())["spec"]
    SectorConnectorSpec.model_validate(spec)
    bad = yaml.safe_load((MESSAGES.parent / "connector.yaml").read_text())["spec"]
    bad["conversations"][0]["closers"][0]["key"] = ["nope:Bsn"]
    with pytest.raises(ValueError, match="invalid XPath"):
        SectorConnectorSpec.model_validate(bad)
    bad["conversations"][0]["closers"][0] = {"message": "WMO999", "key": ["x"]}
    with pytest.raises(ValueError, match="unknown message WMO999"):
        SectorConnectorSpec.model_validate(bad)
    bad["conversations"][0]["closers"][0] = {"message": "WMO301", "key": ["x"]}
    bad["conversations"][0]["deadline"] = {"workingDays": 5, "hours": 3}
    with pytest.raises(ValueError, match="exactly one of workingDays, hours"):
        SectorConnectorSpec.model_validate(bad)
