"""Plain spike lists: NumPy ``.npz`` archives and ``.csv`` tables with one row per spike.

``.npz``: arrays ``spike_times`` (float, s) and ``unit_ids`` (the unit of each spike, same length), and
optionally ``t_start`` and ``t_stop`` (scalars, s), ``units`` (every unit id in order, so that units
without spikes survive) and ``trials`` (``(n_trials, 2)`` starts and stops, s). Arrays of Python
objects are refused, never unpickled. Before an array is decompressed or read, the size its archive entry
and its ``.npy`` header declare is checked against the read limit (:mod:`spikeglm.io.limits`, counting
every array of the archive and the float64 copy of its values) and against the bytes it really holds
(:func:`read_npy`).

``.csv``: a header and two columns, the unit (header ``unit`` or ``unit_id``) and the spike time in
seconds (``time``, ``spike_time`` or ``t``), in either order. It is text as
:func:`spikeglm.io.text.table_lines` reads it: UTF-8 (or UTF-16 with a byte-order mark), row by row,
no line longer than :data:`~spikeglm.io.text.MAX_TABLE_LINE` characters.

Units come in the order of their first spike in the file (or of ``units``); each unit's times must be
sorted in the file. Grouping the spikes by unit counts about 40 bytes per spike and 1 kB per unit
against the read limit.
"""

from __future__ import annotations

import csv
import math
import tokenize
import zipfile
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from spikeglm.io.limits import Budget, check_size
from spikeglm.io.text import table_lines
from spikeglm.memory import format_bytes
from spikeglm.recording import Recording
from spikeglm.unitids import listing

__all__ = ["group_spikes", "read_csv", "read_npy", "read_npz", "write_csv", "write_npz"]

_UNIT_HEADERS = ("unit", "unit_id")
_TIME_HEADERS = ("time", "spike_time", "t")
#: The kinds of numpy values each array of an ``.npz`` spike list may hold, and their name in messages.
_NPZ_KINDS = (
    ("spike_times", "iuf", "real numbers (s)"),
    ("unit_ids", "iuUS", "numbers or strings"),
    ("units", "iuUS", "numbers or strings"),
    ("t_start", "iuf", "a real number (s)"),
    ("t_stop", "iuf", "a real number (s)"),
    ("trials", "iuf", "real numbers (s)"),
)
#: What grouping a spike list takes per spike (its time, a copy, the sort order and unit index) and per
#: unit (an array and an id), in bytes, counted against the read limit.
_SPIKE_BYTES = 40
_UNIT_BYTES = 1000
#: What a damaged (or unsupported) archive or member raises while it is opened or decompressed.
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error)
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def read_npz(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read a ``.npz`` spike list (see the module's description).

    Raises
    ------
    ValueError
        If the file is not an ``.npz`` archive of plain arrays, misses ``spike_times`` or ``unit_ids``,
        an array is not of the kind its name asks for, or the arrays would take more than the read limit.
    """
    arrays = _npz_arrays(path)
    missing = [name for name in ("spike_times", "unit_ids") if name not in arrays]
    if missing:
        raise ValueError(
            f"{path}: missing array(s) {', '.join(missing)}; an .npz spike list needs spike_times (s) and "
            f"unit_ids (one per spike); found {', '.join(sorted(arrays)) or 'none'}"
        )
    spike_times, unit_ids = (arrays[name] for name in ("spike_times", "unit_ids"))
    if spike_times.shape != unit_ids.shape or spike_times.ndim != 1:
        raise ValueError(
            f"{path}: spike_times {spike_times.shape} and unit_ids {unit_ids.shape} must be 1-D "
            "and equally long"
        )
    for name, kinds, what in _NPZ_KINDS:
        if name in arrays and arrays[name].dtype.kind not in kinds:
            raise ValueError(f"{path}: array {name!r} must hold {what}; got {arrays[name].dtype}")
    span = []
    for name in ("t_start", "t_stop"):
        if name in arrays and arrays[name].size != 1:
            raise ValueError(f"{path}: array {name!r} must be one number (s); got shape {arrays[name].shape}")
        span.append(float(arrays[name].ravel()[0]) if name in arrays else None)
    order = _strings(arrays["units"].ravel(), "units", path) if "units" in arrays else None
    times, ids = group_spikes(spike_times, unit_ids, order, path)
    return Recording(times, ids, *span, trials=arrays.get("trials"), source=path, empty_units=empty_units)


def read_csv(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read a ``.csv`` spike list with a ``unit,time`` header (see the module's description).

    Raises
    ------
    ValueError
        If the file is not text, the header lacks a unit or a time column, or a row is not a unit and a
        number.
    """
    rows = csv.reader(table_lines(path))
    start = 1  # the line on which the row being read starts
    try:
        header = [name.strip().lower() for name in next(rows, [])]
        unit_column, time_column = (
            next((header.index(name) for name in names if name in header), None)
            for names in (_UNIT_HEADERS, _TIME_HEADERS)
        )
        if unit_column is None or time_column is None:
            raise ValueError(
                f"{path}: expected a header with a unit column ({'/'.join(_UNIT_HEADERS)}) and a time column "
                f"in seconds ({'/'.join(_TIME_HEADERS)}); got {header[:10] if header else 'an empty file'}"
            )
        spike_times, codes = array("d"), array("q")
        units: dict[str, int] = {}  # each unit's code, in the order of first appearance
        start = rows.line_num + 1
        for row in rows:
            if len(row) <= max(unit_column, time_column) and row:
                raise ValueError(f"{path}: row {start} has {len(row)} field(s); expected unit and time")
            if row:
                try:
                    spike_times.append(float(row[time_column]))
                except ValueError:
                    raise ValueError(
                        f"{path}: row {start}: time {row[time_column][:40]!r} is not a number"
                    ) from None
                codes.append(units.setdefault(row[unit_column].strip(), len(units)))
            start = rows.line_num + 1
    except csv.Error as error:
        raise ValueError(f"{path}: row {start} is not a readable CSV row ({error})") from None
    times, order = group_spikes(np.frombuffer(spike_times), np.frombuffer(codes, dtype=np.int64), None, path)
    names = list(units)
    return Recording(times, [names[int(code)] for code in order], source=path, empty_units=empty_units)


def group_spikes(
    spike_times: np.ndarray, unit_ids: np.ndarray, order: Sequence | None, path: Path
) -> tuple[list[np.ndarray], list[str]]:
    """Split a spike list into per-unit times (file order kept), units by first spike or by ``order``.

    ``unit_ids`` gives each spike's unit (strings or numbers); ``order`` lists every unit id (as a string,
    or the number it writes out) in the order wanted. Returns the times of each unit and the unit ids as
    strings, in that order.

    Raises
    ------
    ValueError
        If a unit is not in ``order``, or the spikes and units would take more than the read limit.
    """
    check_size(spike_times.size * _SPIKE_BYTES, f"{spike_times.size} spikes, grouped by unit", path)
    unique, first, inverse = np.unique(unit_ids, return_index=True, return_inverse=True)
    check_size(unique.size * _UNIT_BYTES, f"{unique.size} units", path)
    names = _strings(unique, "unit_ids", path)
    order = [names[k] for k in np.argsort(first)] if order is None else [str(unit) for unit in order]
    unlisted = sorted(set(names) - set(order))
    if unlisted:
        raise ValueError(f"{path}: unit_ids {listing(unlisted)} are not in the units array")
    by_unit = np.argsort(inverse, kind="stable")
    parts = np.split(spike_times.astype(np.float64)[by_unit], np.cumsum(np.bincount(inverse))[:-1])
    parts = parts[: len(names)]  # no spikes at all: np.split still returns one empty part
    times = dict(zip(names, parts, strict=True))
    return [times.get(unit, np.empty(0)) for unit in order], order


def read_npy(stream: IO[bytes], stored: int, path: Path, name: str | None = None) -> np.ndarray:
    """An array from a ``.npy`` stream, its declared size checked before anything is allocated.

    Parameters
    ----------
    stream : binary file
        Positioned at the start of the ``.npy`` data.
    stored : int
        The bytes the stream holds (the file's size, or an archive member's declared size).
    path : pathlib.Path
        The file, for messages.
    name : str, optional
        The array's name in an archive, for messages.

    Raises
    ------
    ValueError
        If the stream is not a ``.npy`` array, holds Python objects (never unpickled), declares more than
        it holds or more than the read limit (counting a conversion to float64); the message names the
        file (and ``name``).
    """
    where = f"{path}: array {name!r}" if name else f"{path}:"
    what = f"array {name!r}" if name else "the array"
    try:
        version = np.lib.format.read_magic(stream)
        if version not in _NPY_HEADERS:
            raise ValueError(f".npy format version {version} is not read")
        shape, fortran, dtype = _NPY_HEADERS[version](stream)
    except (ValueError, TypeError, SyntaxError, EOFError, tokenize.TokenError) as error:
        raise ValueError(f"{where} is not a readable .npy array ({error})") from None
    if dtype.hasobject:
        raise ValueError(f"{where} is not a readable .npy array: it holds Python objects, never unpickled")
    if any(size < 0 for size in shape):
        raise ValueError(f"{where} declares the shape {shape}")
    count = math.prod(shape)
    check_size(count * max(dtype.itemsize, 8), f"{what} ({count} values of {dtype})", path)
    nbytes = count * dtype.itemsize
    data = stream.read(nbytes)
    if len(data) < nbytes or nbytes > stored:
        raise ValueError(
            f"{where} declares {count} values of {dtype} ({format_bytes(nbytes)}) but holds only "
            f"{format_bytes(len(data))}; the file is truncated or damaged"
        )
    if dtype.itemsize == 0:
        return np.zeros(shape, dtype)
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, each member's declared size checked before it is decompressed."""
    try:
        archive = zipfile.ZipFile(path)
    except (*_ZIP_ERRORS, ValueError) as error:
        with open(path, "rb") as handle:
            if handle.read(6) == b"\x93NUMPY":
                raise ValueError(f"{path}: holds a single array (.npy), not an .npz archive") from None
        raise ValueError(f"{path}: is not a readable .npz archive ({error})") from None
    arrays = {}
    budget = Budget(path)
    with archive:
        for member in archive.infolist():
            name = member.filename.removesuffix(".npy")
            what = f"array {name!r}"
            budget.charge(member.file_size, f"{what} (decompressed)")
            try:
                with archive.open(member) as stream:
                    arrays[name] = read_npy(stream, member.file_size, path, name)
            except (*_ZIP_ERRORS, UnicodeDecodeError) as error:
                raise ValueError(f"{path}: {what} cannot be decompressed ({error})") from None
    return arrays


def _strings(values: np.ndarray, name: str, path: Path) -> list[str]:
    """Unit ids as strings: numbers written out, bytes decoded as UTF-8."""
    if values.dtype.kind == "S":
        try:
            return [value.decode("utf-8") for value in values.tolist()]
        except UnicodeDecodeError:
            raise ValueError(f"{path}: array {name!r} holds bytes that are not UTF-8 text") from None
    return values.astype(str).tolist()


def _spike_list(recording: Recording) -> tuple[np.ndarray, np.ndarray]:
    """Every spike, unit after unit (each in time order), and the id of its unit."""
    return np.concatenate(recording.spike_times), np.repeat(recording.unit_ids, recording.n_spikes)


def write_npz(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a ``.npz`` spike list with ``t_start``, ``t_stop``, ``units``, ``trials``."""
    spike_times, unit_ids = _spike_list(recording)
    arrays: dict[str, Any] = {
        "spike_times": spike_times,
        "unit_ids": unit_ids,
        "units": recording.unit_ids,
        "t_start": float(recording.t_start),
        "t_stop": float(recording.t_stop),
    }
    if recording.trials is not None:
        arrays["trials"] = recording.trials
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def write_csv(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a ``unit,time`` table, one spike per row, unit after unit.

    A CSV spike list keeps neither ``t_start``, ``t_stop``, trials nor units without spikes.
    """
    spike_times, unit_ids = _spike_list(recording)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit", "time"])
        writer.writerows(zip(unit_ids.tolist(), spike_times.tolist(), strict=True))
