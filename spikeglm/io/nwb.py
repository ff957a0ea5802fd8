"""NWB 2.x files (HDF5): the Units table's spike times, read and written with h5py alone.

Reading needs no pynwb. What is read:

- ``/units``: ``spike_times`` with ``spike_times_index`` (ragged: ``index[i]`` is the end offset of
  unit ``i``) and ``id``. Units are named by a string column, the first of ``unit_name``, ``name``,
  ``label`` that holds unique names (or the column given as ``name_column``), else by their ids. The
  other one-value-per-unit columns become the units' annotations, with the NWB id as ``"nwb_id"``.
- The trials: ``start_time`` and ``stop_time`` of the TimeIntervals table ``/intervals/trials``, or of
  the table under ``/intervals`` named by ``trials=`` (e.g. ``"encoding_table"``). Every table found
  is described in ``annotations["interval_tables"]`` (name: rows, first start and last stop in s).
- ``t_start`` and ``t_stop``: the first start and the last stop of the units' ``obs_intervals`` when the
  table has them; otherwise 0 s (the session's ``timestamps_reference_time``) and the last spike or trial end.

Writing makes a minimal NWB 2.x file that pynwb reads: the required root datasets, a Units table with
``unit_name``, ``spike_times`` and ``obs_intervals`` (``[t_start, t_stop]`` for every unit), and the trials.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spikeglm.recording import Recording
from spikeglm.unitids import unit_columns

__all__ = ["read", "write"]

NWB_VERSION = "2.8.0"
_NAME_COLUMNS = ("unit_name", "name", "label")
_SKIPPED_COLUMNS = {"spike_times", "obs_intervals", "id"}
_ROOT_DATASETS = ("identifier", "session_description", "session_start_time")


def read(
    path: Path,
    *,
    empty_units: str = "drop",
    name_column: str | None = None,
    units: Sequence[str] | None = None,
    trials: str | None = None,
) -> Recording:
    """Read the sorted units of an NWB 2.x file (see the module's description).

    The file is read lazily: the spike times of each unit are read straight from their slice of the
    ragged ``spike_times`` dataset, and with ``units`` only those units' slices are read at all.

    Parameters
    ----------
    path : pathlib.Path
        The ``.nwb`` file.
    empty_units : {"drop", "keep", "error"}
        What to do with units without spikes (see :class:`~spikeglm.recording.Recording`).
    name_column : str, optional
        The Units table's column that names the units; default the first of ``unit_name``, ``name``,
        ``label`` holding unique strings, else the ids.
    units : sequence of str, optional
        The units to read (by name), in this order; default all.
    trials : str, optional
        The TimeIntervals table under ``/intervals`` whose rows are the trials; default ``"trials"``
        when the file has it, else no trials.

    Raises
    ------
    ValueError
        If the file is not readable HDF5, has no Units table, its ragged index is inconsistent, a
        unit of ``units`` is not in it, or it has no table ``trials``.
    """
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: is not a readable HDF5/NWB file ({error})") from None
    try:
        with handle:
            return _read(handle, path, empty_units, name_column, units, trials)
    except OSError as error:
        raise ValueError(f"{path}: is not a readable HDF5/NWB file ({error})") from None


def _read(
    handle: h5py.File,
    path: Path,
    empty_units: str,
    name_column: str | None,
    units: Sequence[str] | None,
    trials: str | None,
) -> Recording:
    table = handle.get("units")
    if not isinstance(table, h5py.Group):
        raise ValueError(f"{path}: has no Units table (/units); spikeglm needs sorted units' spike times")
    for column in ("id", "spike_times", "spike_times_index"):
        if not isinstance(table.get(column), h5py.Dataset):
            raise ValueError(f"{path}: the Units table (/units) has no {column} dataset")
    nwb_ids = table["id"][()]
    names = _unit_names(table, nwb_ids, name_column, path)
    # Rows of the Units table holding ``units`` (all rows by default).
    rows = unit_columns(units, names, str(path), "unknown unit(s) {unknown}; the file has {known}")
    times = _ragged(table, "spike_times", len(nwb_ids), path, rows)
    annotations = [{"nwb_id": _plain(nwb_ids[row])} for row in rows]
    for column, dataset in table.items():
        if column in _SKIPPED_COLUMNS or column.endswith("_index") or f"{column}_index" in table:
            continue
        if isinstance(dataset, h5py.Dataset) and dataset.shape == (len(nwb_ids),):
            for values, value in zip(annotations, dataset[()][rows], strict=True):
                values[column] = _plain(value)
    t_start = t_stop = None
    if "obs_intervals" in table:
        intervals = np.concatenate(_ragged(table, "obs_intervals", len(nwb_ids), path))
        if intervals.size:
            t_start, t_stop = float(np.min(intervals[:, 0])), float(np.max(intervals[:, 1]))
    tables = _interval_tables(handle)
    chosen = trials if trials is not None else ("trials" if "trials" in tables else None)
    if chosen is not None and chosen not in tables:
        known = ", ".join(tables) or "none"
        raise ValueError(f"{path}: no TimeIntervals table {chosen!r} under /intervals; the file has {known}")
    spans = None
    if chosen is not None:
        spans = np.column_stack([tables[chosen]["start_time"][()], tables[chosen]["stop_time"][()]])
    attributes = {key: _plain(handle[key][()]) for key in _ROOT_DATASETS if key in handle}
    attributes["nwb_version"] = _plain(handle.attrs.get("nwb_version", ""))
    attributes["interval_tables"] = {name: _interval_summary(table) for name, table in tables.items()}
    listed = ", ".join(
        f"{name} ({table['rows']} rows)" for name, table in attributes["interval_tables"].items()
    )
    described = "none"
    if spans is not None:
        described = f"/intervals/{chosen} ({len(spans)} rows)"
    elif tables:
        described = f"none (tables: {listed}; trials= or --trials uses one)"
    span = "the units' obs_intervals" if t_start is not None else "0 s to the last spike or trial end"
    attributes["assumed"] = {"span": span, "trials": described}
    return Recording(
        times,
        [names[row] for row in rows],
        t_start,
        t_stop,
        trials=spans,
        annotations=attributes,
        unit_annotations=annotations,
        source=path,
        empty_units=empty_units,
    )


def _interval_tables(handle: h5py.File) -> dict[str, h5py.Group]:
    """The tables under ``/intervals`` with ``start_time`` and ``stop_time`` columns, by name."""
    intervals = handle.get("intervals")
    if not isinstance(intervals, h5py.Group):
        return {}
    return {
        name: table
        for name, table in intervals.items()
        if isinstance(table, h5py.Group)
        and all(isinstance(table.get(column), h5py.Dataset) for column in ("start_time", "stop_time"))
    }


def _interval_summary(table: h5py.Group) -> dict[str, Any]:
    """Rows, first start and last stop (s) of a TimeIntervals table."""
    starts, stops = table["start_time"][()], table["stop_time"][()]
    if not len(starts):
        return {"rows": 0, "start_s": None, "stop_s": None}
    return {"rows": len(starts), "start_s": float(np.nanmin(starts)), "stop_s": float(np.nanmax(stops))}


def _ragged(
    units: h5py.Group, column: str, n_units: int, path: Path, rows: list[int] | None = None
) -> list[np.ndarray]:
    """The parts of a ragged column for ``rows`` (default all), checked against its ``_index`` offsets.

    Only those parts are read from the file, one slice each.
    """
    values = units[column]
    index = units.get(f"{column}_index")
    if not isinstance(index, h5py.Dataset):
        raise ValueError(f"{path}: /units/{column} has no {column}_index dataset")
    ends = index[()]
    where = f"{path}: /units/{column}_index"
    if ends.ndim != 1 or len(ends) != n_units or not np.issubdtype(ends.dtype, np.integer):
        raise ValueError(
            f"{where} should hold {n_units} integer end offsets (one per unit); got {ends.shape}"
        )
    if np.any(np.diff(ends.astype(np.int64)) < 0) or (n_units and (ends[0] < 0 or ends[-1] != len(values))):
        raise ValueError(
            f"{where} is inconsistent: the end offsets must rise from 0 to the {len(values)} values of "
            f"{column}; got {ends[:5].tolist()}{' ...' if n_units > 5 else ''} ending at "
            f"{ends[-1] if n_units else None}"
        )
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    rows = range(n_units) if rows is None else rows
    return [values[starts[row] : int(ends[row])].astype(np.float64) for row in rows]


def _unit_names(units: h5py.Group, nwb_ids: np.ndarray, name_column: str | None, path: Path) -> list[str]:
    """The units' names from a string column, or their NWB ids as strings."""
    ids = [str(value) for value in nwb_ids]
    candidates = _NAME_COLUMNS if name_column is None else (name_column,)
    for column in candidates:
        dataset = units.get(column)
        usable = (
            isinstance(dataset, h5py.Dataset)
            and dataset.shape == (len(ids),)
            and h5py.check_string_dtype(dataset.dtype) is not None
        )
        if not usable:
            if name_column is not None:
                raise ValueError(
                    f"{path}: /units has no string column {name_column!r} with one name per unit"
                )
            continue
        names = [_plain(value) for value in dataset[()]]
        if len(set(names)) == len(names):
            return names
        warnings.warn(
            f"{path}: names in /units/{column} are not unique; naming the units by id", stacklevel=4
        )
        return ids
    return ids


def _plain(value: Any) -> Any:
    """A Python value from what h5py returns: str for bytes, int/float/bool for numpy scalars."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_plain(item) for item in value]
    return value


def write(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a minimal NWB 2.x file that pynwb can read.

    ``annotations["session_description"]``, ``["identifier"]`` and ``["session_start_time"]`` (ISO 8601)
    are used when present; unit annotations are not written.
    """
    now = datetime.now(timezone.utc).isoformat()
    notes = recording.annotations
    start_time = str(notes.get("session_start_time", now))
    n_units = recording.n_units
    with h5py.File(path, "w") as handle:
        _typed(handle, "NWBFile", "core").attrs["nwb_version"] = NWB_VERSION
        _text(handle, "identifier", str(notes.get("identifier", uuid.uuid4())))
        _text(handle, "session_description", str(notes.get("session_description", "written by spikeglm")))
        _text(handle, "session_start_time", start_time)
        _text(handle, "timestamps_reference_time", start_time)
        handle.create_dataset("file_create_date", data=[now], dtype=h5py.string_dtype())
        for group in ("acquisition", "analysis", "general", "processing", "stimulus/presentation"):
            handle.create_group(group)
        handle.create_group("stimulus/templates")
        units = _table(handle.create_group("units"), "Units", "spike-sorted units", n_units)
        _column(
            units, "unit_name", recording.unit_ids.tolist(), "name of the unit", dtype=h5py.string_dtype()
        )
        ends = np.cumsum(recording.n_spikes)
        _column(
            units,
            "spike_times",
            np.concatenate(recording.spike_times),
            "the spike times in seconds",
            ends=ends,
        )
        span = [[float(recording.t_start), float(recording.t_stop)]] * n_units
        _column(units, "obs_intervals", span, "the observation interval", ends=np.arange(1, n_units + 1))
        if recording.trials is not None:
            trials = handle.create_group("intervals/trials")
            _table(trials, "TimeIntervals", "trials", len(recording.trials))
            _column(trials, "start_time", recording.trials[:, 0], "start of the trial in seconds")
            _column(trials, "stop_time", recording.trials[:, 1], "stop of the trial in seconds")


def _typed(obj: h5py.HLObject, neurodata_type: str, namespace: str) -> h5py.HLObject:
    obj.attrs["neurodata_type"] = neurodata_type
    obj.attrs["namespace"] = namespace
    obj.attrs["object_id"] = str(uuid.uuid4())
    return obj


def _text(group: h5py.Group, name: str, value: str) -> None:
    group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _table(group: h5py.Group, neurodata_type: str, description: str, n_rows: int) -> h5py.Group:
    """An empty DynamicTable with ids 0..n_rows-1; :func:`_column` adds its columns."""
    _typed(group, neurodata_type, "core")
    group.attrs["description"] = description
    group.attrs["colnames"] = np.array([], dtype=h5py.string_dtype())
    _typed(
        group.create_dataset("id", data=np.arange(n_rows, dtype=np.int64)),
        "ElementIdentifiers",
        "hdmf-common",
    )
    return group


def _column(
    table: h5py.Group,
    name: str,
    data: Any,
    description: str,
    *,
    ends: np.ndarray | None = None,
    dtype: Any = None,
) -> None:
    """Add a VectorData column (ragged, with a VectorIndex of end offsets, when ``ends`` is given)."""
    column = _typed(table.create_dataset(name, data=data, dtype=dtype), "VectorData", "hdmf-common")
    column.attrs["description"] = description
    if ends is not None:
        index = _typed(
            table.create_dataset(f"{name}_index", data=ends.astype(np.min_scalar_type(ends.max(initial=0)))),
            "VectorIndex",
            "hdmf-common",
        )
        index.attrs["description"] = f"Index for VectorData '{name}'"
        index.attrs["target"] = column.ref
    table.attrs["colnames"] = np.append(table.attrs["colnames"], name).astype(h5py.string_dtype())
