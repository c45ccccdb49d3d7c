"""No module of ours imports another module's private names (``from x import _y``, ``x._y``).

import-linter checks imports between modules (see [tool.importlinter] in pyproject.toml,
`lint-imports`), but not which names are taken from a module; this test does that part for the
runtime and the operator. A name a sibling needs is public, in the module that owns it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Product code, scripts and examples; tests may look inside the modules they test.
PACKAGES = [
    ROOT / "node_runtime",
    ROOT / "operator" / "knooppunt_operator",
    ROOT / "benchmarks",
    ROOT / "examples",
]


OURS = ("node_runtime", "knooppunt_operator")


def _ours(module: str) -> bool:
    return module.split(".")[0] in OURS


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported_modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not _ours(node.module):
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(
                        f"{path.name}:{node.lineno} from {node.module} import {alias.name}"
                    )
                else:
                    imported_modules.add(alias.asname or alias.name)
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _ours(alias.name):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{path.name}:{node.lineno} import {alias.name}")
                imported_modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):  # module._name, for a module imported above
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    return found


SOURCES = sorted(p for package in PACKAGES for p in package.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_from_other_modules(path: Path) -> None:
    assert private_imports(path) == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from node_runtime.store.sql import _utc\n"
        "import node_runtime.store.sql as sql\n"
        "from node_runtime.store import sql as s\n"
        "s._utc(None)\n"
    )
    assert len(private_imports(sample)) == 2
