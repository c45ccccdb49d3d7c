"""The import contracts of pyproject.toml ([tool.importlinter]) hold: the runtime's rooms are
layered, the façade imports no node internals, the operator's builders stay pure.

`./dev test` runs `lint-imports` before pytest; this test keeps the contracts in force when the
suite is run directly.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is part of the test extra"
    result = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
