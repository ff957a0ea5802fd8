"""Per-unit text files: one file per unit, one spike time per line, optionally gzip-compressed.

The files are a folder's ``*.txt`` and ``*.txt.gz`` files, the files a glob pattern matches
(``"cells/cell*.dat"``), or a single file. Each file is a unit named by its file name without
``.gz`` and its last suffix (``cell12.txt.gz`` is unit ``cell12``); units come in natural order of
their names (``cell2`` before ``cell10``). Blank lines and lines starting with ``#`` are skipped;
any other line holds one number. Times are in seconds unless ``time_unit`` says otherwise (see
:func:`spikeglm.io._times.to_seconds`) and may be negative; ``t_start`` is 0 s or the first spike if
it is earlier, ``t_stop`` the last spike.
"""

from __future__ import annotations

import glob
import gzip
import re
from pathlib import Path

import numpy as np

from spikeglm.io._times import to_seconds
from spikeglm.recording import Recording

__all__ = ["GLOB_CHARACTERS", "is_pattern", "read", "unit_files"]

#: Characters that make a path a glob pattern.
GLOB_CHARACTERS = "*?["
_SUFFIXES = (".txt", ".txt.gz")


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
        If no file is found, a file is unreadable, a line is not one number, or the time unit must be
        given; the message names the file and line.
    """
    files = unit_files(path)
    raw = [_times(file) for file in files]
    times, stated = to_seconds(raw, time_unit, sampling_rate, path)
    names = [_unit_name(file) for file in files]
    assumed = {
        "files": f"{len(files)} file(s), one unit each, named by file ({files[0].name} ... {files[-1].name})",
        "time unit": stated,
        "span": "from 0 s (or the first spike, if earlier) to the last spike: the files state no span",
    }
    return Recording(times, names, annotations={"assumed": assumed}, source=path, empty_units=empty_units)


def _times(file: Path) -> np.ndarray:
    """The numbers of one file, one per line (blank and ``#`` lines skipped)."""
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rt", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: is not a readable text file ({error})") from None
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{file}: line {number}: {text[:40]!r} is not one spike time") from None
    return np.array(values, dtype=np.float64)


def _unit_name(file: Path) -> str:
    name = file.name[:-3] if file.name.lower().endswith(".gz") else file.name
    return Path(name).stem or name


def _natural(name: str) -> list:
    """A sort key that orders the numbers inside names by value (``cell2`` before ``cell10``)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]
