"""Where the benchmarks write their figures: a JSON file beside the table each one prints.

Every benchmark takes ``--json PATH``; by default it writes ``results/benchmarks/NAME.json`` in the
project (git-ignored), and ``NAME-quick.json`` for a ``--quick`` run, so that a smoke run never replaces
the figures of a full one. The path is checked before the benchmark starts, so that a long run does not
end on an unwritable path, and the file is written atomically: a reader sees the previous file or the
new one, never a part. It may replace an earlier result, never a benchmark script.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from spikeglm.files import atomic_write, check_output

#: The default folder of the JSON files.
FOLDER = Path(__file__).resolve().parent.parent / "results" / "benchmarks"

#: Files a JSON output may never replace.
_INPUTS = tuple(Path(__file__).resolve().parent.glob("*.py"))


def _version(package: str) -> str:
    """The version of an installed ``package``, else its ``__version__`` (spikeglm run from a checkout on
    ``PYTHONPATH``, as on a machine that cannot install it)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return str(importlib.import_module(package).__version__)


def add_option(parser: argparse.ArgumentParser, name: str) -> None:
    """Add ``--json PATH`` to ``parser``; ``name`` names the default file."""
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help=f"where to write the figures as JSON (default {FOLDER}/{name}.json, {name}-quick.json with "
        "--quick); an existing file there is replaced",
    )


def output(path: Path | None, name: str, quick: bool = False) -> Path:
    """The JSON file of this run, known writable (to call before the benchmark starts).

    Parameters
    ----------
    path : Path or None
        The ``--json`` option; None for the default file, whose folder is created.
    name : str
        The benchmark's name, that of the default file.
    quick : bool
        Whether this is a ``--quick`` run (which has its own default file).

    Returns
    -------
    Path
        The path to give :func:`write`.

    Raises
    ------
    ValueError, OSError
        If the path is a benchmark script, a folder, or cannot be written (see
        :func:`spikeglm.files.check_output`).
    """
    if path is None:
        FOLDER.mkdir(parents=True, exist_ok=True)
        path = FOLDER / f"{name}{'-quick' if quick else ''}.json"
    return check_output(path, overwrite=True, inputs=_INPUTS)


def figure(name: str) -> Path:
    """Where a benchmark draws the figure ``name``: in :data:`FOLDER`, created if need be (the JSON file
    may have been sent elsewhere with ``--json``)."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    return FOLDER / name


def write(path: Path, benchmark: str, settings: dict, figures: dict) -> None:
    """Write the figures of a run, with its settings and where it ran, to ``path`` as JSON.

    Parameters
    ----------
    path : Path
        From :func:`output`.
    benchmark : str
        What ran, e.g. ``"poglm throughput"``.
    settings : dict
        The configuration the figures were measured with.
    figures : dict
        The figures: JSON types only.
    """
    document = {
        "benchmark": benchmark,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            **{package: _version(package) for package in ("spikeglm", "torch", "numpy")},
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": settings,
        **figures,
    }
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text), overwrite=True, inputs=_INPUTS)
    print(f"\nfigures written to {path}")
