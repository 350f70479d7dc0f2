"""The layering of the code base (shared/design.md, "Dependency direction") as import contracts.

`lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]): tools over hwgen over
golden over the shared contract; inside hwgen the CLI over simulation over the compiler over the
gateware; gateware never imports simulation, compiler or golden code.
"""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_golden_imports_nothing_of_hwgen():
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "golden").rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if line.lstrip().startswith(("import hwgen", "from hwgen"))]
    assert offenders == []
