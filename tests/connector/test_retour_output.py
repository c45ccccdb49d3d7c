"""The builtin retour stylesheets give the same retours, byte for byte, as before they were
changed for speed (literal output namespace, ``node()`` instead of ``* | text()``)."""

from __future__ import annotations

import json

from tests.connector.retour_cases import GOLDEN, connector, retours


def test_retour_stylesheets_output_is_unchanged() -> None:
    expected = json.loads(GOLDEN.read_text())
    actual = dict(retours(connector()))
    assert sorted(actual) == sorted(expected)
    different = sorted(case for case in expected if actual[case] != expected[case])
    assert not different, f"{len(different)} retours changed, e.g. {different[:5]}"
