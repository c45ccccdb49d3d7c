"""The gemeente portal on a real façade over two real nodes (tests/facade's world), with the
vendored NL Design System CSS (tools/portal-assets/build.sh) and traffic for two gemeenten.

One world per module: starting two nodes and a façade is the slow part, so the browser tests
share it (and each reads the numbers it expects from the nodes, not from a fixed script)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from node_runtime.security.pki.store import DevPki
from tests.facade.conftest import (  # noqa: F401 - the fixture
    IWMO,
    IWMO_MESSAGES,
    NODE_A,
    NODE_B,
    VS,
    VS_MESSAGES,
    XML,
    World,
    build_world,
    facade_pki,
)
from tests.runtime.helpers import invalid_bsn, replace_first, with_new_id

REPO = Path(__file__).resolve().parents[2]
ASSETS_BUILD = REPO / "tools" / "portal-assets" / "build.sh"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
# a verzoek om toewijzing (WMO315) must be answered within this in the portal's world, so the
# tests see conversations go over their term without waiting five working days
DEADLINE_HOURS = 0.001


def assets_dir() -> Path:
    out = subprocess.run(
        ["bash", str(ASSETS_BUILD), "--path"],
        check=True,
        text=True,
        capture_output=True,
        timeout=30,
    ).stdout.strip()
    path = Path(out)
    if not (path / "css" / "components.css").is_file():
        message = f"portal assets not built: run {ASSETS_BUILD.relative_to(REPO)}"
        if IN_CI:
            pytest.fail(message + " (CI is set: required here)", pytrace=False)
        pytest.skip(message)
    return path


def short_deadlines(root: Path) -> None:
    path = root / "iwmo-connector.yaml"
    doc = yaml.safe_load(path.read_text())
    for conversation in doc["spec"]["conversations"]:
        conversation["deadline"] = {"hours": DEADLINE_HOURS}
    path.write_text(yaml.safe_dump(doc))


def fill(world: World) -> None:
    """Amsterdam: two iWmo messages and one vroegsignalering; Rotterdam: one iWmo; one
    rejected message for Amsterdam (retourcode from a business rule)."""
    world.send(NODE_A, "zorggroep-de-linde", IWMO_MESSAGES / "wmo305-linde-amsterdam.xml", IWMO)
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo315-anker-amsterdam.xml", IWMO)
    world.send(NODE_B, "woningcorporatie-ons-huis", VS_MESSAGES / "vs01-onshuis-amsterdam.xml", VS)
    world.send(NODE_A, "thuiszorg-het-anker", IWMO_MESSAGES / "wmo305-anker-rotterdam.xml", IWMO)
    bad = replace_first(
        with_new_id((IWMO_MESSAGES / "wmo305-linde-amsterdam.xml").read_bytes(), "PORTAAL-1"),
        "Bsn",
        invalid_bsn(),
    )
    resp = world.at_node(NODE_A, "zorggroep-de-linde").post(
        f"/api/v1/connectors/{IWMO}/messages", content=bad, headers=XML
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers.get("knooppunt-retourcodes") == "0435", resp.text


@pytest.fixture(scope="module")
def portal_world(
    tmp_path_factory: pytest.TempPathFactory,
    facade_pki: DevPki,  # noqa: F811
) -> Iterator[World]:
    w = build_world(
        tmp_path_factory.mktemp("portal"),
        facade_pki,
        node_timeout=15,
        prepare=short_deadlines,
        portal_assets=assets_dir(),
    )
    try:
        fill(w)
        yield w
    finally:
        w.close()
        w.facade.stop()
        for running in list(w.nodes.values()):
            running.stop()
