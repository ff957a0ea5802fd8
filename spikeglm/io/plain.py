"""Plain spike lists: NumPy ``.npz`` archives and ``.csv`` tables with one row per spike.

``.npz``: arrays ``spike_times`` (float, s) and ``unit_ids`` (the unit of each spike, same length), and
optionally ``t_start`` and ``t_stop`` (scalars, s), ``units`` (every unit id in order, so that units
without spikes survive) and ``trials`` (``(n_trials, 2)`` starts and stops, s). Always loaded with
``allow_pickle=False``.

``.csv``: a header and two columns, the unit (header ``unit`` or ``unit_id``) and the spike time in
seconds (``time``, ``spike_time`` or ``t``), in either order.

Units come in the order of their first spike in the file (or of ``units``); each unit's times must be
sorted in the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from spikeglm.recording import Recording
from spikeglm.unitids import listing

__all__ = ["group_spikes", "read_csv", "read_npz", "write_csv", "write_npz"]

_UNIT_HEADERS = ("unit", "unit_id")
_TIME_HEADERS = ("time", "spike_time", "t")


def read_npz(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read a ``.npz`` spike list (see the module's description).

    Raises
    ------
    ValueError
        If the file is not an ``.npz`` archive of plain arrays or misses ``spike_times`` or ``unit_ids``.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as error:
        # A pickled payload, a corrupt archive or a plain .npy all end up here.
        raise ValueError(f"{path}: is not a readable .npz archive of plain arrays ({error})") from None
    except AttributeError:
        raise ValueError(f"{path}: holds a single array (.npy), not an .npz archive") from None
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
    order = arrays["units"].astype(str).tolist() if "units" in arrays else None
    times, ids = group_spikes(spike_times, unit_ids.astype(str), order, path)
    return Recording(
        times,
        ids,
        *(float(arrays[name]) if name in arrays else None for name in ("t_start", "t_stop")),
        trials=arrays.get("trials"),
        source=path,
        empty_units=empty_units,
    )


def read_csv(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read a ``.csv`` spike list with a ``unit,time`` header (see the module's description).

    Raises
    ------
    ValueError
        If the header lacks a unit or a time column, or a row is not a unit and a number.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = [name.strip().lower() for name in rows[0]] if rows else []
    columns = [
        next((header.index(name) for name in names if name in header), None)
        for names in (_UNIT_HEADERS, _TIME_HEADERS)
    ]
    if None in columns:
        raise ValueError(
            f"{path}: expected a header with a unit column ({'/'.join(_UNIT_HEADERS)}) and a time column in "
            f"seconds ({'/'.join(_TIME_HEADERS)}); got {rows[0] if rows else 'an empty file'}"
        )
    unit_column, time_column = columns
    body = [row for row in rows[1:] if row]
    short = next((k for k, row in enumerate(body) if len(row) <= max(columns)), None)
    if short is not None:
        raise ValueError(f"{path}: row {short + 2} has {len(body[short])} field(s); expected unit and time")
    spike_times = np.empty(len(body))
    for k, row in enumerate(body):
        try:
            spike_times[k] = float(row[time_column])
        except ValueError:
            raise ValueError(f"{path}: row {k + 2}: time {row[time_column]!r} is not a number") from None
    unit_ids = np.array([row[unit_column].strip() for row in body], dtype=str)
    return Recording(*group_spikes(spike_times, unit_ids, None, path), source=path, empty_units=empty_units)


def group_spikes(
    spike_times: np.ndarray, unit_ids: np.ndarray, order: list | None, path: Path
) -> tuple[list[np.ndarray], list]:
    """Split a spike list into per-unit times (file order kept), units by first spike or by ``order``.

    ``unit_ids`` gives each spike's unit (strings or numbers); ``order`` lists every unit (of the same
    type) in the order wanted. Returns the times of each unit and the units, in that order.
    """
    names, first, inverse = np.unique(unit_ids, return_index=True, return_inverse=True)
    if order is None:
        order = names[np.argsort(first)].tolist()
    unlisted = sorted(set(names.tolist()) - set(order))
    if unlisted:
        raise ValueError(f"{path}: unit_ids {listing(unlisted)} are not in the units array")
    by_unit = np.argsort(inverse, kind="stable")
    parts = np.split(spike_times.astype(np.float64)[by_unit], np.cumsum(np.bincount(inverse))[:-1])
    parts = parts[: len(names)]  # no spikes at all: np.split still returns one empty part
    times = dict(zip(names.tolist(), parts, strict=True))
    return [times.get(unit, np.empty(0)) for unit in order], order


def _spike_list(recording: Recording) -> tuple[np.ndarray, np.ndarray]:
    """Every spike, unit after unit (each in time order), and the id of its unit."""
    return np.concatenate(recording.spike_times), np.repeat(recording.unit_ids, recording.n_spikes)


def write_npz(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a ``.npz`` spike list with ``t_start``, ``t_stop``, ``units``, ``trials``."""
    spike_times, unit_ids = _spike_list(recording)
    trials = {} if recording.trials is None else {"trials": recording.trials}
    with open(path, "wb") as handle:
        np.savez(
            handle,
            spike_times=spike_times,
            unit_ids=unit_ids,
            units=recording.unit_ids,
            t_start=float(recording.t_start),
            t_stop=float(recording.t_stop),
            **trials,
        )


def write_csv(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a ``unit,time`` table, one spike per row, unit after unit.

    A CSV spike list keeps neither ``t_start``, ``t_stop``, trials nor units without spikes.
    """
    spike_times, unit_ids = _spike_list(recording)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit", "time"])
        writer.writerows(zip(unit_ids.tolist(), spike_times.tolist(), strict=True))
