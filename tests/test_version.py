"""The version has one home: [project] version in pyproject.toml. The code reads it; the chart
and the example stack configurations, which cannot, are checked against it here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import node_runtime

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_runtime_reads_the_version() -> None:
    assert node_runtime.__version__ == VERSION


def test_no_code_writes_the_version_itself() -> None:
    literal = re.compile(r"""["']""" + re.escape(VERSION) + r"""["'@]""")
    code = [
        *(ROOT / "node_runtime").rglob("*.py"),
        *(ROOT / "operator" / "knooppunt_operator").rglob("*.py"),
        *(ROOT / "stacks").rglob("*.py"),
    ]
    written = [str(p.relative_to(ROOT)) for p in code if literal.search(p.read_text())]
    assert written == []


def test_the_chart_carries_the_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "knooppunt-operator" / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    assert chart["version"] == VERSION


def test_the_example_stacks_pin_the_version() -> None:
    tags = {
        "operator": yaml.safe_load((ROOT / "stacks" / "operator" / "Pulumi.dev.yaml").read_text())[
            "config"
        ]["knooppunt-operator:imageTag"],
        "facade": yaml.safe_load((ROOT / "stacks" / "facade" / "Pulumi.dev.yaml").read_text())[
            "config"
        ]["knooppunt-facade:image"].rsplit(":", 1)[1],
    }
    assert tags == {"operator": VERSION, "facade": VERSION}
