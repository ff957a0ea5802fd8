"""The helpers of the documentation site (``docs/tools/``): docstrings written as text read as pages.

The site itself is built by ``make docs`` (``mkdocs build --strict``), which CI runs; these tests pin the
rewriting of the docstrings and of the links, which a build would show only by looking at its pages.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(name="roles", scope="module")
def _roles() -> ModuleType:
    pytest.importorskip("griffe")
    return _tool("griffe_roles")


def test_simple_tables_become_markdown_tables(roles):
    text = textwrap.dedent(
        """\
        Formats:

        ==========  ==========  =====
        format      found by    saved
        ==========  ==========  =====
        ``"nwb"``   ``.nwb``    yes
        ``"text"``  ``.txt``,   no
                    a folder
        ``"gumbel-s"``  wide    no
        ==========  ==========  =====

        After.
        """
    )
    assert roles.rst_tables(text).splitlines() == [
        "Formats:",
        "",
        "| format | found by | saved |",
        "|---|---|---|",
        '| ``"nwb"`` | ``.nwb`` | yes |',
        '| ``"text"`` | ``.txt``, a folder | no |',
        '| ``"gumbel-s"`` | wide | no |',  # a cell past its column's border
        "",
        "After.",
    ]


def test_definition_lists_outside_parameters_and_literal_blocks(roles):
    text = textwrap.dedent(
        """\
        Protocols
        ---------
        ``"a"``
            The first.
        ``"b"``
            The second,
            on two lines.

        Like this::

            class A:
                pass

        Parameters
        ----------
        n : int
            A number.
        """
    )
    assert roles.rst_definitions(text).splitlines() == [
        "Protocols",
        "---------",
        '``"a"``',
        ":   The first.",
        "",
        '``"b"``',
        ":   The second,",
        "    on two lines.",
        "",
        "Like this::",
        "",
        "    class A:",
        "        pass",
        "",
        "Parameters",
        "----------",
        "n : int",
        "    A number.",
    ]


def test_roles_become_optional_links(roles):
    griffe = pytest.importorskip("griffe")
    module = griffe.load("spikeglm.counts", search_paths=[str(ROOT)], resolve_aliases=False)
    text = "See :class:`~spikeglm.recording.Recording`, :meth:`SpikeCounts.split` and :func:`numpy.sum`::"
    assert roles.link_roles(module, text) == (
        'See <autoref identifier="spikeglm.recording.Recording" optional><code>Recording</code></autoref>, '
        '<autoref identifier="spikeglm.counts.SpikeCounts.split" optional><code>SpikeCounts.split</code>'
        '</autoref> and <autoref identifier="numpy.sum" optional><code>numpy.sum</code></autoref>:'
    )


def test_links_between_the_repository_and_docs_follow_the_pages():
    pytest.importorskip("mkdocs")
    hooks = _tool("hooks")

    class Page:
        def __init__(self, src_uri: str) -> None:
            self.file = type("File", (), {"src_uri": src_uri})()

    readme = "[guide](docs/guide.md#fitting), [changes](CHANGELOG.md), [site](https://example.org/docs/x)"
    assert hooks.on_page_markdown(readme, Page("front-page.md"), None, None) == (
        "[guide](guide.md#fitting), [changes](changelog.md), [site](https://example.org/docs/x)"
    )
    page = "[README](../README.md#in-python) and [methods](methods.md)"
    assert hooks.on_page_markdown(page, Page("guide.md"), None, None) == (
        "[README](front-page.md#in-python) and [methods](methods.md)"
    )


def test_executed_notebooks_are_shown_only_while_their_cells_are_the_stored_ones(tmp_path):
    pytest.importorskip("mkdocs")
    hooks = _tool("hooks")
    stored = ROOT / "notebooks" / "01_quickstart.ipynb"
    executed = tmp_path / "run.ipynb"
    assert not hooks._same_cells(stored, executed)  # absent
    executed.write_text(stored.read_text(encoding="utf-8"), encoding="utf-8")
    assert hooks._same_cells(stored, executed)
    executed.write_text(stored.read_text(encoding="utf-8").replace("import", "import  ", 1), encoding="utf-8")
    assert not hooks._same_cells(stored, executed)  # the notebook changed since it ran


def test_lists_and_tables_under_a_line_of_text_are_set_apart():
    pytest.importorskip("mkdocs")
    hooks = _tool("hooks")
    page = "Outputs:\n- one\n  more\n- two\n\n```\ntext\n- not a list\n```\nA table:\n| a |\n|---|\n"
    assert hooks.blocks_apart(page) == (
        "Outputs:\n\n- one\n  more\n- two\n\n```\ntext\n- not a list\n```\nA table:\n\n| a |\n|---|\n"
    )
