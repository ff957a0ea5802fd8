"""The README's Python example runs as written (in a scratch folder that sees the bundled data)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python example"
    (tmp_path / "data").symlink_to(ROOT / "data")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "test log-likelihood per neuron-bin" in printed and "'auroc': " in printed
    assert "nan" not in printed  # every score printed is defined
    assert (tmp_path / "conn.csv").read_text().startswith(",n0,n1,n2,hidden-0,hidden-1")
