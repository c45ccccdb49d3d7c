"""The chart's generated parts never drift from their sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.iac.harness import REPO

CHART_CRDS = REPO / "charts" / "knooppunt-operator" / "crds"
REPO_CRDS = REPO / "crds"


def test_chart_crds_and_rbac_match_their_generators() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "charts" / "sync_chart.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_chart_crds_are_the_repository_crds() -> None:
    def files(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(d.glob("*.yaml"))}

    assert files(CHART_CRDS) == files(REPO_CRDS)


def test_check_names_a_drifted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO / "charts"))
    try:
        import sync_chart
    finally:
        sys.path.remove(str(REPO / "charts"))
    crds = tmp_path / "crds"
    crds.mkdir()
    for src in CHART_CRDS.glob("*.yaml"):
        (crds / src.name).write_text(src.read_text())
    (crds / "knooppunt.nl_gemeenten.yaml").write_text("# edited by hand\n")
    (crds / "stale.yaml").write_text("kind: Nothing\n")
    rules = tmp_path / "rbac-rules.yaml"
    rules.write_text("namespaced: []\n")
    monkeypatch.setattr(sync_chart, "CHART_CRDS", crds)
    monkeypatch.setattr(sync_chart, "RBAC_RULES", rules)
    problems = sync_chart.check()
    assert any("knooppunt.nl_gemeenten.yaml differs" in p for p in problems)
    assert any("stale.yaml is not generated" in p for p in problems)
    assert any("rbac-rules.yaml differs" in p for p in problems)
