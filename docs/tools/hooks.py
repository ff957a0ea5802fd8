"""MkDocs hooks: the pages that live outside ``docs/`` join the site, and their links follow them.

The README (the repository's front page), the changelog and the notebooks stay where the repository keeps
them; the site takes them in as pages of its own (``front-page.md``, ``changelog.md``, ``notebooks/``)
and rewrites the links between them and ``docs/`` to lead to those pages.

The notebooks are stored without outputs. The test suite runs them and writes each, with its outputs, to
``build/notebooks/`` (``tests/test_notebooks.py``); the site shows that copy where its cells are those of
the stored notebook, so that the figures appear without running the notebooks again, and the stored one,
without outputs, where there is no such copy (the tests have not run, or the notebook changed since).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
#: The notebooks as the test suite ran them, with their outputs.
EXECUTED = ROOT / "build"

log = logging.getLogger("mkdocs.hooks.notebooks")

#: Files of the repository outside docs/ and the page each becomes on the site.
PAGES = {"README.md": "front-page.md", "CHANGELOG.md": "changelog.md"}

#: Links written as the repository is laid out, and where they lead on the site, for pages in docs/ ...
_FROM_DOCS = [(re.compile(rf"\]\(\.\./{re.escape(name)}"), f"]({page}") for name, page in PAGES.items()]
#: ... and for the pages taken from the repository's root (README.md links docs/guide.md, CHANGELOG.md).
_FROM_ROOT = [
    (re.compile(r"\]\(docs/"), "]("),
    *((re.compile(rf"\]\({re.escape(name)}"), f"]({page}") for name, page in PAGES.items()),
]


# Before the notebook plugin (priority 0) looks at the files, so that it renders the notebooks added here.
@event_priority(50)
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, page in PAGES.items():
        files.append(File.generated(config, page, content=(ROOT / name).read_text(encoding="utf-8")))
    stale = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        path = notebook.relative_to(ROOT).as_posix()
        source = EXECUTED if _same_cells(notebook, EXECUTED / path) else ROOT
        if source is ROOT:
            stale.append(notebook.name)
        # A file read from a folder (not a generated one), which the notebook plugin can wrap.
        files.append(File(path, str(source), config.site_dir, config.use_directory_urls))
    if stale:
        log.info(
            "notebooks shown without outputs (run `make test` first to show them with outputs): %s",
            ", ".join(stale),
        )
    return files


def _cells(path: Path) -> list[tuple[str, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(cell["cell_type"], "".join(cell["source"])) for cell in cells]


def _same_cells(stored: Path, executed: Path) -> bool:
    """Whether ``executed`` is a run of the notebook ``stored`` as it is now (the same cells)."""
    try:
        return _cells(stored) == _cells(executed)
    except (OSError, ValueError, KeyError):  # absent, or no notebook
        return False


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    rules = _FROM_ROOT if page.file.src_uri in PAGES.values() else _FROM_DOCS
    for pattern, replacement in rules:
        markdown = pattern.sub(replacement, markdown)
    return blocks_apart(markdown)


#: A line that starts a list (a bullet, or "1.", the one number that may interrupt a paragraph) or a table.
_BLOCK = re.compile(r"^(?:[-*+] |1[.)] |\|)")


def blocks_apart(markdown: str) -> str:
    """A blank line before each list or table that follows a paragraph's line directly.

    The pages are written for GitHub's Markdown, where a list may start right under a line of text; Python
    Markdown, which builds the site, would read it as more of that paragraph.
    """
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and _BLOCK.match(line) and out:
            above = out[-1]
            if above.strip() and not above.startswith((" ", "#")) and not _BLOCK.match(above):
                out.append("")
        out.append(line)
    return "\n".join(out)
