"""MkDocs hooks: the pages that live outside ``docs/`` join the site, and their links follow them.

The README (the repository's front page), the changelog and the notebooks stay where the repository keeps
them; the site takes them in as pages of its own (``front-page.md``, ``changelog.md``, ``notebooks/``)
and rewrites the links between them and ``docs/`` to lead to those pages.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]

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
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        # A file read from the repository's root (not a generated one), which the notebook plugin can wrap.
        path = notebook.relative_to(ROOT).as_posix()
        files.append(File(path, str(ROOT), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    rules = _FROM_ROOT if page.file.src_uri in PAGES.values() else _FROM_DOCS
    for pattern, replacement in rules:
        markdown = pattern.sub(replacement, markdown)
    return markdown
