"""The builtin retour stylesheets give the same retours, byte for byte, as before they were
changed for speed (literal output namespace, ``node()`` instead of ``* | text()``, literal
templates per element name: tests/connector/retour_templates.py)."""

from __future__ import annotations

import json

import pytest

from tests.connector.retour_cases import GOLDEN, connector, retours
from tests.connector.retour_templates import BUNDLE, STYLESHEETS, with_block


def test_retour_stylesheets_output_is_unchanged() -> None:
    expected = json.loads(GOLDEN.read_text())
    actual = dict(retours(connector()))
    assert sorted(actual) == sorted(expected)
    different = sorted(case for case in expected if actual[case] != expected[case])
    assert not different, f"{len(different)} retours changed, e.g. {different[:5]}"


@pytest.mark.parametrize("name", sorted(STYLESHEETS))
def test_generated_literal_templates_are_current(name: str) -> None:
    """Regenerate with ``python -m tests.connector.retour_templates`` after a schema change."""
    assert with_block(name) == (BUNDLE / "retour" / f"{name}.xsl").read_text()
