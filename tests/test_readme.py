"""The documentation's Python examples run as written, and its links lead somewhere.

The README is the front page; the user guide, methods, benchmarks and architecture are under ``docs/``.
Every ```python block of them runs, in order, in a scratch folder (the bundled data are found through
``sg.examples``).
"""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The documentation, front page first: the order in which its Python examples run.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)


def slug(heading: str) -> str:
    """The anchor that GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.slow
def test_documentation_python_examples_run(tmp_path, capsys):
    assert python_blocks(ROOT / "README.md"), "the README has no Python example"
    blocks = [(page, block) for page in PAGES for block in python_blocks(page)]
    # The front page's example and the guide's fit in several processes, at least.
    assert len(blocks) >= 2 and any(page.name == "guide.md" for page, _ in blocks)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for page, block in blocks:
            exec(compile(block, str(page.relative_to(ROOT)), "exec"), {"__name__": "readme"})
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "test log-likelihood per neuron-bin" in printed and "'auroc': " in printed
    assert "nan" not in printed  # every score printed is defined
    assert (tmp_path / "conn.csv").read_text().startswith(",n0,n1,n2,hidden-0,hidden-1")
    assert (tmp_path / "model.h5").exists()  # written by the guide's example, by the first process


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for command in ("make demo", "make test", "make test-fast"):
        assert command in text
    for page in ("docs/index.md", "docs/guide.md", "docs/methods.md", "docs/benchmarks.md"):
        assert f"({page}" in text, f"the README does not link {page}"


def test_documentation_links_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md":
                prose = re.sub(r"```.*?```", "", linked.read_text(encoding="utf-8"), flags=re.DOTALL)
                headings = re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)
                if anchor not in {slug(heading) for heading in headings}:
                    broken.append(f"{page.name}: {target}")
    assert not broken, "links that lead nowhere: " + ", ".join(broken)
