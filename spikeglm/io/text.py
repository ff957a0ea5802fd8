"""Per-unit text files: one file per unit, one spike time per line, optionally gzip-compressed.

The files are a folder's ``*.txt`` and ``*.txt.gz`` files, the files a glob pattern matches
(``"cells/cell*.dat"``), or a single file. Each file is a unit named by its file name without
``.gz`` and its last suffix (``cell12.txt.gz`` is unit ``cell12``); units come in natural order of
their names (``cell2`` before ``cell10``). Blank lines and lines starting with ``#`` are skipped;
any other line holds one number. Times are in seconds unless ``time_unit`` says otherwise (see
:func:`spikeglm.io._times.to_seconds`) and may be negative; ``t_start`` is 0 s or the first spike if
it is earlier, ``t_stop`` the last spike.

The files are UTF-8 (a byte-order mark, as Excel writes, is dropped) or UTF-16 with a byte-order mark;
other bytes are refused, naming the byte's offset. They are read in chunks, never whole: a line longer
than :data:`MAX_LINE` characters is refused as soon as it is met, and the decompressed text together
with the times parsed from it count against the read limit (:mod:`spikeglm.io.limits`), over all the
files of one read. The CSV and phy readers decode their text the same way (:func:`decode_text`,
:func:`table_lines`).
"""

from __future__ import annotations

import codecs
import glob
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from spikeglm.io._times import to_seconds
from spikeglm.io.limits import Budget
from spikeglm.memory import format_bytes
from spikeglm.recording import Recording

__all__ = [
    "GLOB_CHARACTERS",
    "MAX_LINE",
    "MAX_TABLE_LINE",
    "decode_text",
    "is_pattern",
    "read",
    "read_text_file",
    "table_lines",
    "unit_files",
]

#: Characters that make a path a glob pattern.
GLOB_CHARACTERS = "*?["
#: The longest line a unit file may hold, in characters: a spike time is a short number.
MAX_LINE = 100
#: The longest line of a table (a CSV spike list, phy's tab-separated files), in characters.
MAX_TABLE_LINE = 10_000
_SUFFIXES = (".txt", ".txt.gz")
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
#: How much of a unit file is read at a time, in bytes.
_CHUNK = 1 << 20
#: White space, as numpy and Python read numbers: between them, or around them on their line.
_WHITE_SPACE = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)
#: A line that holds only a comment.
_COMMENT = re.compile(rb"^[ \t\r\x0b\x0c]*#[^\n]*", re.MULTILINE)


def is_pattern(path: str | Path) -> bool:
    """Whether ``path`` is a glob pattern rather than the name of a file or folder that exists."""
    return any(character in str(path) for character in GLOB_CHARACTERS) and not Path(path).exists()


def unit_files(path: Path) -> list[Path]:
    """The files of the units: a folder's text files, a pattern's matches or the file, in natural order.

    Raises
    ------
    ValueError
        If there are none.
    """
    if is_pattern(path):
        files = [Path(name) for name in glob.glob(str(path)) if Path(name).is_file()]
        where = "no file matches this pattern"
    elif path.is_dir():
        files = [
            child
            for child in path.iterdir()
            if child.is_file() and not child.name.startswith(".") and child.name.lower().endswith(_SUFFIXES)
        ]
        where = "holds no .txt or .txt.gz files; name the unit files with a glob pattern, e.g. 'folder/*.dat'"
    else:
        files = [path]
    if not files:
        raise ValueError(f"{path}: {where}")
    return sorted(files, key=lambda file: _natural(_unit_name(file)))


def read(
    path: Path,
    *,
    empty_units: str = "drop",
    time_unit: str | None = None,
    sampling_rate: float | None = None,
) -> Recording:
    """Read per-unit text files (see the module's description).

    Parameters
    ----------
    path : pathlib.Path
        A folder, a glob pattern or a file.
    empty_units : {"drop", "keep", "error"}
        Units whose file holds no times.
    time_unit : {"s", "ms", "us", "samples"}, optional
        The unit of the times in the files; default seconds (refused when they do not look like seconds).
    sampling_rate : float, optional
        Samples per second, for ``time_unit="samples"``.

    Raises
    ------
    ValueError
        If no file is found, a file is unreadable or not text, a line is not one number or is longer than
        :data:`MAX_LINE`, the files exceed the read limit, or the time unit must be given; the message
        names the file and line.
    """
    files = unit_files(path)
    budget = Budget(path)
    raw = [_times(file, budget) for file in files]
    times, stated = to_seconds(raw, time_unit, sampling_rate, path)
    names = [_unit_name(file) for file in files]
    assumed = {
        "files": f"{len(files)} file(s), one unit each, named by file ({files[0].name} ... {files[-1].name})",
        "time unit": stated,
        "span": "from 0 s (or the first spike, if earlier) to the last spike: the files state no span",
    }
    return Recording(times, names, annotations={"assumed": assumed}, source=path, empty_units=empty_units)


def decode_text(data: bytes, path: str | Path) -> str:
    """The text of a file's bytes: UTF-8 (a byte-order mark is dropped) or UTF-16 with its byte-order mark.

    Raises
    ------
    ValueError
        If the bytes are not text in one of these encodings; the message names the file and the offset of
        the first byte that cannot be decoded.
    """
    encoding, skip = _encoding(data)
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as error:
        raise ValueError(_undecodable(path, error, skip)) from None


def read_text_file(path: Path, max_bytes: int) -> str:
    """A whole small text file (see :func:`decode_text`) of at most ``max_bytes`` bytes.

    Raises
    ------
    ValueError
        If the file is longer, unreadable or not text; the message names the file.
    """
    try:
        if path.stat().st_size > max_bytes:
            raise ValueError(f"{path}: is longer than {format_bytes(max_bytes)}; it should be a few lines")
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    return decode_text(data, path)


def table_lines(path: Path, max_line: int = MAX_TABLE_LINE) -> Iterator[str]:
    """The lines of a text table (see :func:`decode_text`), each ending in ``"\\n"``, read in chunks.

    The text read counts against the read limit as it is read.

    Raises
    ------
    ValueError
        If the file is unreadable, not text, over the read limit, or a line is longer than ``max_line``
        characters; the message names the file (and the line).
    """
    budget = Budget(path)
    blocks = _line_blocks(
        path, budget, "the table's text", max_line, "a row of a table is a few short fields"
    )
    for block, _ in blocks:
        for line in block.decode("utf-8").split("\n"):
            yield line + "\n"


def _encoding(data: bytes) -> tuple[str, int]:
    """The encoding a file's first bytes announce by their byte-order mark (default UTF-8), and its length."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return encoding, len(mark)
    return "utf-8", 0


def _undecodable(path: str | Path, error: UnicodeDecodeError, before: int) -> str:
    """The refusal of text that cannot be decoded, ``before`` bytes of the file preceding what was decoded."""
    byte = error.object[error.start : error.start + 1]
    shown = f" (0x{byte[0]:02x})" if byte else ""
    return (
        f"{path}: is not {error.encoding.upper()} text: byte {before + error.start}{shown} cannot be "
        "decoded; save the file as UTF-8"
    )


#: What the unit files' reading charges to the read budget: their decompressed text, then the parsed times.
_UNIT_TEXT = "the unit files' text and spike times"


def _times(file: Path, budget: Budget) -> np.ndarray:
    """The numbers of one file, one per line (blank and ``#`` lines skipped), read in bounded chunks."""
    parts = []
    for block, line in _line_blocks(
        file, budget, _UNIT_TEXT, MAX_LINE, "a unit file holds one spike time per line"
    ):
        parts.append(_numbers(file, block, line))
        budget.charge(parts[-1].nbytes, _UNIT_TEXT, file)
    return np.concatenate(parts)


def _line_blocks(
    file: Path, budget: Budget, what: str, max_line: int, why: str
) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines of a file (gzip-compressed if its name ends in ``.gz``) as UTF-8, without their
    last newline, and the number of each block's first line; the last block is the end of the file.

    A line longer than ``max_line`` characters is refused (``why`` says why) as soon as it is met.
    """
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    line = 1  # the number of the first line not yet given
    rest = b""
    try:
        with opener(file, "rb") as handle:
            for chunk in _decoded_chunks(file, handle, budget, what):
                block, newline, rest = (rest + chunk).rpartition(b"\n")
                # The lengths of the whole lines, then of the start of the next one.
                lengths = np.r_[np.diff(_newlines(block + newline), prepend=-1) - 1, len(rest)]
                if lengths.max() > max_line:
                    first = line + int(np.argmax(lengths > max_line))
                    raise ValueError(f"{file}: line {first} is longer than {max_line} characters; {why}")
                if newline:
                    yield block, line
                    line += lengths.size - 1
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{file}: is not a readable text file ({error})") from None
    yield rest, line


def _decoded_chunks(file: Path, handle: io.BufferedIOBase, budget: Budget, what: str) -> Iterator[bytes]:
    """The file's bytes in chunks, as UTF-8 (checked; a UTF-16 file is re-encoded), charged to ``budget``."""
    first = handle.read(_CHUNK)
    encoding, skip = _encoding(first)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, chunk = skip, first[skip:]
    while True:
        budget.charge(len(chunk), what, file)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as error:
            raise ValueError(_undecodable(file, error, offset)) from None
        if not chunk:
            return
        yield chunk if encoding == "utf-8" else text.encode("utf-8")
        offset += len(chunk)
        chunk = handle.read(_CHUNK)


def _newlines(block: bytes) -> np.ndarray:
    """The positions of the newlines in ``block``."""
    return np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))


def _numbers(file: Path, block: bytes, line: int) -> np.ndarray:
    """The numbers of whole lines of text, the first being line ``line``; a bad line is named by number."""
    if b"#" in block:
        block = _COMMENT.sub(b"", block)  # the line stays, blank
    # numpy parses the block at once when no line holds two words (each word starts after white space or
    # a line's start); then one number per word means one per non-blank line.
    data = np.frombuffer(block, dtype=np.uint8)
    space = np.isin(data, _WHITE_SPACE)
    starts = np.flatnonzero(~space & np.r_[True, space[:-1]])
    line_of_word = np.cumsum(data == ord("\n"))[starts]
    if np.all(np.diff(line_of_word) > 0):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            try:
                values = np.fromstring(block, dtype=np.float64, sep=" ")
            except (ValueError, DeprecationWarning):
                values = None
        if values is not None and values.size == starts.size:
            return values
    # Line by line, to name the line at fault.
    parsed: list[float] = []
    for number, text in enumerate(block.split(b"\n"), start=line):
        text = text.strip()
        if not text or text.startswith(b"#"):
            continue
        try:
            parsed.append(float(text))
        except ValueError:
            shown = text[:40].decode("utf-8", "replace")
            raise ValueError(f"{file}: line {number}: {shown!r} is not one spike time") from None
    return np.array(parsed, dtype=np.float64)


def _unit_name(file: Path) -> str:
    name = file.name[:-3] if file.name.lower().endswith(".gz") else file.name
    return Path(name).stem or name


def _natural(name: str) -> list:
    """A sort key that orders the numbers inside names by value (``cell2`` before ``cell10``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]
