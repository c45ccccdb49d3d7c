"""Layering: the pure modules import neither kopf nor an HTTP client nor the handlers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "knooppunt_operator"
PURE = ["builders/meta.py", "builders/node.py", "builders/revisions.py", "builders/secrets.py",
        "status.py", "certificates.py", "webhook.py", "crdgen.py", "rbac.py", "config.py"]
FORBIDDEN = ("kopf", "httpx", "aiohttp", "knooppunt_operator.kube", "knooppunt_operator.handlers",
             "knooppunt_operator.apply", "knooppunt_operator.main")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_stay_pure(module: str) -> None:
    bad = sorted(n for n in imported(PACKAGE / module)
                 if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{module} imports {bad}"


def test_the_package_never_shadows_the_operator_module() -> None:
    assert not (PACKAGE.parent / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
