"""phy and Kilosort output folders, read with numpy and plain text (``params.py`` is parsed, never run).

What is read from the folder:

- ``spike_times.npy``: each spike's time as a sample index (phy's convention), or in ``time_unit``.
- ``spike_clusters.npy``: each spike's cluster after curation; without it, ``spike_templates.npy``
  (Kilosort's template of each spike, before any curation). A cluster is a unit; its id is the
  cluster number.
- ``params.py``: ``sample_rate`` in Hz. The file is parsed as Python syntax and only literal assignments
  (``sample_rate = 30000.0``) are read; nothing in it is executed. ``sampling_rate=`` supplies the
  rate when the file lacks it, and overrides it.
- ``cluster_group.tsv`` (phy's curated labels) or, without it, ``cluster_info.tsv`` (phy 2's table of
  every cluster: its curated ``group``, and Kilosort's ``KSLabel`` where the group is empty) or
  ``cluster_KSLabel.tsv`` (Kilosort's): each cluster's label (``good``, ``mua``, ``noise``...), kept as
  the unit annotation ``"label"``; clusters missing from the table are labelled ``unsorted``.
  :func:`spikeglm.io.load` keeps units by label with ``label=``.

Units come in increasing order of cluster id. The folder does not state the recording's length:
``t_start`` is 0 s and ``t_stop`` the last spike.

The ``.npy`` files are read as :func:`spikeglm.io.plain.read_npy` reads them (header checked against
the read limit and the file's size first; never unpickled); spike times must be real numbers and
cluster ids whole numbers. The text files are UTF-8 (or UTF-16 with a byte-order mark); ``params.py``
is at most 1 MiB, and the label tables are read row by row (see :func:`spikeglm.io.text.table_lines`).
"""

from __future__ import annotations

import ast
import csv
import reprlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from spikeglm.io._times import RATE_OPTION, to_seconds
from spikeglm.io.plain import group_spikes, read_npy
from spikeglm.io.text import read_text_file, table_lines
from spikeglm.recording import Recording

__all__ = ["is_phy_folder", "read"]

#: The tables of labels, the first present read: file, column, and a column read where that one is empty.
_LABEL_FILES = (
    ("cluster_group.tsv", "group", None),
    ("cluster_info.tsv", "group", "KSLabel"),
    ("cluster_KSLabel.tsv", "KSLabel", None),
)
_PARAMS_RATE = "params.py sample_rate"
#: The longest ``params.py`` read, in bytes: phy writes a few lines.
_PARAMS_BYTES = 1 << 20


def is_phy_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding ``spike_times.npy``."""
    return path.is_dir() and (path / "spike_times.npy").is_file()


def read(
    path: Path,
    *,
    empty_units: str = "drop",
    sampling_rate: float | None = None,
    time_unit: str | None = None,
) -> Recording:
    """Read the sorted units of a phy or Kilosort folder (see the module's description).

    Parameters
    ----------
    path : pathlib.Path
        The folder.
    empty_units : {"drop", "keep", "error"}
        Clusters without spikes cannot occur here (a cluster is known by its spikes); kept for the
        common reader interface.
    sampling_rate : float, optional
        Samples per second, instead of ``params.py``'s ``sample_rate``.
    time_unit : {"samples", "s", "ms", "us"}, optional
        The unit of ``spike_times.npy``; default ``"samples"``.

    Raises
    ------
    ValueError
        If a file is missing or unreadable, the arrays disagree in length, or the sampling rate is
        unknown; the message names the file and the option that resolves it.
    """
    times = _array(path / "spike_times.npy", "iuf", "real-numbered spike times")
    cluster_file = path / "spike_clusters.npy"
    if not cluster_file.is_file():
        cluster_file = path / "spike_templates.npy"
        if not cluster_file.is_file():
            raise ValueError(
                f"{path}: has spike_times.npy but neither spike_clusters.npy nor spike_templates.npy"
            )
    clusters = _array(cluster_file, "iu", "whole-number cluster ids")
    if times.shape != clusters.shape:
        raise ValueError(
            f"{path}: spike_times.npy holds {times.size} spikes but {cluster_file.name} {clusters.size}"
        )
    assumed: dict[str, str] = {}
    time_unit = time_unit or "samples"
    rate_from = RATE_OPTION
    if time_unit == "samples" and sampling_rate is None:
        sampling_rate = _sample_rate(path)
        rate_from = _PARAMS_RATE
    per_unit, names = group_spikes(times, clusters, np.unique(clusters).tolist(), path)
    per_unit, stated = to_seconds(per_unit, time_unit, sampling_rate, path, rate_from)
    assumed["time unit"] = stated.replace("as told", _PARAMS_RATE) if rate_from == _PARAMS_RATE else stated
    labels, label_file = _labels(path)
    unit_labels = [labels.get(unit, "unsorted") for unit in names]
    tally = ", ".join(f"{count} {label}" for label, count in Counter(unit_labels).most_common())
    assumed["units"] = f"clusters of {cluster_file.name}" + (
        f"; labels from {label_file}: {tally} (label= or --label keeps some)" if label_file else "; no labels"
    )
    assumed["span"] = "0 s to the last spike (the folder states no recording length)"
    return Recording(
        per_unit,
        names,
        0.0,
        None,
        annotations={"assumed": assumed},
        unit_annotations=[{"label": label} for label in unit_labels],
        source=path,
        empty_units=empty_units,
    )


def _array(path: Path, kinds: str, what: str) -> np.ndarray:
    """A 1-D array (or an ``(n, 1)`` column) of one of numpy's ``kinds`` from a ``.npy`` file, never
    unpickled, its declared size checked before it is read."""
    try:
        with open(path, "rb") as stream:
            array = read_npy(stream, path.stat().st_size, path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{path}: expected one value per spike; got an array of shape {array.shape}")
    if array.dtype.kind not in kinds:
        raise ValueError(f"{path}: expected {what}; got {array.dtype}")
    return array


def _sample_rate(path: Path) -> float:
    """``sample_rate`` from ``params.py``, read as literals (never executed)."""
    where = path / "params.py"
    hint = "pass sampling_rate= (--sampling-rate HZ)"
    if not where.is_file():
        raise ValueError(f"{path}: has no params.py to give the sampling rate; {hint}")
    rate = _literals(read_text_file(where, _PARAMS_BYTES), where).get("sample_rate")
    try:
        value = float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else np.nan
    except OverflowError:  # a whole number with hundreds of digits
        value = np.inf
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{where}: no positive sample_rate (got {reprlib.repr(rate)}); {hint}")
    return value


def _literals(text: str, where: Path) -> dict[str, Any]:
    """The ``name = literal`` assignments of Python source, parsed but not executed."""
    try:
        tree = ast.parse(text, filename=str(where))
    except SyntaxError as error:
        raise ValueError(f"{where}: is not readable Python ({error.msg}, line {error.lineno})") from None
    except (ValueError, MemoryError, RecursionError):  # a null byte, or nesting too deep for the parser
        raise ValueError(f"{where}: is not readable Python (nested too deeply, or not text)") from None
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue  # an expression, not a literal: left unread
    return values


def _labels(path: Path) -> tuple[dict[str, str], str | None]:
    """Each cluster's label from the first label table present, and that table's name."""
    for name, column, fallback in _LABEL_FILES:
        where = path / name
        if not where.is_file():
            continue
        try:
            rows = [row for row in csv.reader(table_lines(where), delimiter="\t") if row]
        except csv.Error as error:
            raise ValueError(f"{where}: is not a readable table ({error})") from None
        header = [field.strip() for field in rows[0]] if rows else []
        if "cluster_id" not in header or column not in header:
            raise ValueError(f"{where}: expected the columns cluster_id and {column}; got {header}")
        ids, labels = header.index("cluster_id"), header.index(column)
        second = header.index(fallback) if fallback in header else labels
        short = next((k for k, row in enumerate(rows[1:]) if len(row) <= max(ids, labels, second)), None)
        if short is not None:
            raise ValueError(
                f"{where}: row {short + 2} has {len(rows[short + 1])} field(s); expected {len(header)}"
            )
        return {
            row[ids].strip(): row[labels].strip() or row[second].strip() or "unsorted" for row in rows[1:]
        }, name
    return {}, None
