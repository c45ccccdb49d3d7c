"""The operator package is importable as knooppunt_operator and never shadows `operator`.

(Its layering is checked by the import-linter contracts in pyproject.toml, `lint-imports`.)
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "knooppunt_operator"


def test_the_package_never_shadows_the_operator_module() -> None:
    assert not (PACKAGE.parent / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
