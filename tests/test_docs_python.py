"""docs/python.md: its first Python block runs as written (the Python API stays what the page says)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_python_page_snippet_runs(tmp_path, monkeypatch):
    text = (REPO / "docs" / "python.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    # the page writes under build/api; the test runs it in a scratch copy of that layout
    snippet = snippet.replace('"build/api/', f'"{tmp_path}/')
    monkeypatch.chdir(REPO)
    namespace = {}
    exec(compile(snippet, "docs/python.md", "exec"), namespace)
    assert namespace["run"]["totals"]["exact_images"] == 2
    assert 0.9 < namespace["result"]["int_top1"] <= 1.0
