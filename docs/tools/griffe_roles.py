"""A griffe extension for the API reference: the docstrings, written for reading as text, read as pages.

The docstrings name other objects as ``:func:`load```, ``:class:`~spikeglm.relax.EatCubic``` or
``:meth:`fit```. Each becomes a link to the object's entry in the API reference where it has one (a name
is looked up from the docstring's own scope, as Python would), and plain code where it has none (a
private module, another library). A literal block announced by ``::`` keeps one colon, and a table in
reStructuredText's simple form (columns under runs of ``=``) becomes a Markdown table. A parameter typed
by its choices (``format : {"nwb", "npz"}``) shows the default of the signature, not its first choice,
and a default read from the settings (``DEFAULTS["epochs"]``) shows its value.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|obj|exc|const):`(?P<target>[^`]+)`")
_LITERAL = re.compile(r"(?<=\S)::$", flags=re.MULTILINE)
_CHOICES = re.compile(r"^(?P<head>\s*\*{0,2}\w+(?:, \*{0,2}\w+)* : )(?=\{)", flags=re.MULTILINE)
_BORDER = re.compile(r"^ *=+( +=+)+ *$")


def _cells(line: str, starts: list[int]) -> list[str]:
    """The cells of a row, cut where the columns start; a cell that runs past its column's border ends at
    the first space after it."""
    cuts = [0]
    for start in starts[1:]:
        cut = max(start, cuts[-1])
        while 0 < cut < len(line) and not line[cut - 1].isspace():
            cut += 1
        cuts.append(min(cut, len(line)))
    cuts.append(len(line))
    return [line[start:end].strip().replace("|", "\\|") for start, end in itertools.pairwise(cuts)]


def _table(lines: list[str], first: int) -> tuple[list[str], int] | None:
    """The Markdown table of the simple table whose top border is ``lines[first]``, and the line after it.

    A row whose first cell is empty continues the row above it. None where no table closes.
    """
    starts = [match.start() for match in re.finditer(r"=+", lines[first])]
    indent = " " * starts[0]
    header: list[list[str]] = []
    rows: list[list[str]] = []
    for index in range(first + 1, len(lines)):
        line = lines[index]
        if _BORDER.match(line):
            after = lines[index + 1] if index + 1 < len(lines) else ""
            if header or not after.strip():  # the closing border
                columns = zip(*header, strict=True)
                head = [" ".join(cell for cell in column if cell) for column in columns] or [""] * len(starts)
                table = [indent + "| " + " | ".join(head) + " |", indent + "|" + "---|" * len(starts)]
                table += [indent + "| " + " | ".join(row) + " |" for row in rows]
                return table, index + 1
            header, rows = rows, []
        elif not line.strip():
            return None
        else:
            cells = _cells(line, starts)
            if rows and not cells[0]:
                rows[-1] = [f"{above} {cell}".strip() for above, cell in zip(rows[-1], cells, strict=True)]
            else:
                rows.append(cells)
    return None


def rst_tables(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        found = _table(lines, index) if _BORDER.match(lines[index]) else None
        if found is None:
            out.append(lines[index])
            index += 1
        else:
            table, index = found
            out += table
    return "\n".join(out)


def _identifier(obj: griffe.Object, target: str) -> str:
    """The full path of ``target`` as named in the docstring of ``obj``; ``target`` itself if unknown."""
    head, _, rest = target.lstrip(".").partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # a name griffe cannot place: another library's, or a typo shown as it is
        return target
    return f"{resolved}.{rest}" if rest else resolved


#: The sections whose entries griffe reads itself (``name : type`` over an indented description).
_ENTRY_SECTIONS = {
    "parameters",
    "other parameters",
    "returns",
    "yields",
    "receives",
    "raises",
    "warns",
    "attributes",
    "methods",
    "functions",
    "classes",
    "modules",
}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _underline(line: str) -> bool:
    return bool(line.strip()) and set(line.strip()) == {"-"}


def _is_term(line: str, previous: str, following: str) -> bool:
    """Whether ``line`` is a term: its definition is indented four spaces below it, and it starts a block."""
    return (
        bool(line.strip())
        and bool(following.strip())
        and _indent(following) == _indent(line) + 4
        and (not previous.strip() or _underline(previous) or _indent(previous) > _indent(line))
    )


def rst_definitions(text: str) -> str:
    """Definition lists (a term, its definition indented below it) in Markdown's form (``:   definition``),
    outside the sections whose entries griffe reads itself and outside literal blocks (after ``::``)."""
    lines = text.split("\n")
    out: list[str] = []
    section = ""
    inside = -1  # within a literal block or a definition: the lines indented past this are copied as they are
    index = 0
    while index < len(lines):
        line = lines[index]
        previous = lines[index - 1] if index else ""
        following = lines[index + 1] if index + 1 < len(lines) else ""
        index += 1
        if inside >= 0 and (not line.strip() or _indent(line) > inside):
            out.append(line)
            continue
        inside = -1
        if _underline(following):
            section = line.strip().lower()
        if line.rstrip().endswith("::"):
            inside = _indent(line)
        elif section not in _ENTRY_SECTIONS and _is_term(line, previous, following):
            if out and out[-1].strip() and not _underline(out[-1]):
                out.append("")
            out += [line, " " * _indent(line) + ":   " + following.lstrip()]
            inside, index = _indent(line), index + 1
            continue
        out.append(line)
    return "\n".join(out)


def link_roles(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        target = match["target"]
        short = target.startswith("~")
        target = target.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if short else target
        identifier = _identifier(obj, target)
        # An optional reference links where the object has an entry, and is plain code where it has none.
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    text = _CHOICES.sub(r"\g<head>one of ", rst_definitions(rst_tables(text)))
    return _LITERAL.sub(":", _ROLE.sub(replace, text))


_SETTING = re.compile(r"""^DEFAULTS\[["'](?P<name>\w+)["']\]$""")


def _setting_defaults(function: griffe.Function) -> None:
    """Each parameter whose default is ``DEFAULTS["name"]`` given the value it stands for."""
    from spikeglm.settings import DEFAULTS

    for parameter in function.parameters:
        match = _SETTING.match(str(parameter.default))
        if match:
            parameter.default = repr(DEFAULTS[match["name"]])


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = link_roles(obj, obj.docstring.value)
        if isinstance(obj, griffe.Function):
            _setting_defaults(obj)
