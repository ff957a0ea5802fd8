"""NWB 2.x files (HDF5): the Units table's spike times, read and written with h5py alone.

Reading needs no pynwb. What is read:

- The Units table: the one at the path ``units_table=`` names (e.g. ``"processing/ecephys/units"``),
  else ``/units``, else the only group of neurodata_type Units in the file (found over hard links, as
  :meth:`spikeglm.io._hdf5.Reader.groups` searches), which ``annotations["assumed"]`` then records; a
  file with several elsewhere and no ``/units`` is refused with their list. Every Units table is listed
  in ``annotations["units_tables"]`` (path: number of units, None where its ``id`` cannot tell).
- Its ``spike_times`` with ``spike_times_index`` (ragged: ``index[i]`` is the end offset of
  unit ``i``) and ``id``. Units are named by a string column, the first of ``unit_name``, ``name``,
  ``label`` that holds unique names in valid UTF-8 (or the column given as ``name_column``), else by
  their ids. The other one-value-per-unit columns of numbers or text become the units' annotations (text
  that is not valid UTF-8 is decoded with replacement characters), with the NWB id as ``"nwb_id"``.
- Where each unit was recorded: the Units table's ``electrodes`` column (row numbers of
  ``/general/extracellular_ephys/electrodes``, one per unit or ragged with ``electrodes_index``) gives
  each unit the ``location`` and ``group_name`` of its electrodes, as the annotations ``"location"`` and
  ``"electrode_group"`` (a column of the Units table of the same name comes first).
- The trials: ``start_time`` and ``stop_time`` of the TimeIntervals table ``/intervals/trials``, or of
  the table under ``/intervals`` named by ``trials=`` (e.g. ``"encoding_table"``); an empty table gives
  no trials, and rows that repeat or overlap one another are used with a warning naming them. Every
  readable table is described in ``annotations["interval_tables"]`` (name: rows, first start and last
  stop in s).
- The session: the root datasets ``identifier``, ``session_description`` and ``session_start_time``,
  and the subject's text fields under ``/general/subject`` (``annotations["subject"]``), which results
  written to NWB (:mod:`spikeglm.nwb_results`) repeat.
- ``t_start`` and ``t_stop``: the first start and the last stop of the units' ``obs_intervals`` when the
  table has them; otherwise 0 s (the session's ``timestamps_reference_time``) and the last spike or trial
  end. Units observed over different intervals (or with gaps) are read with a warning: the time a unit
  was not observed counts as silence, and the warning names the span that every unit was observed over.

What is refused, with one line naming the file and the dataset at fault: a file that is not HDF5 or is
truncated or damaged where it is read, or whose heap of variable-length data is damaged (see
:mod:`spikeglm.io._hdf5`); links to other files (external links) and loops of soft links;
datasets of the wrong type or shape (text spike times, one-column ``obs_intervals``, trial columns of
unequal length); ragged indices that do not match their data; electrode rows the electrodes table does
not have; a Units table without ``spike_times``; NaN or infinite ``obs_intervals``; and
datasets whose size would exceed the read budget of :mod:`spikeglm.io.limits`, checked from their
declared shape before anything is read (counted over the whole read).

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

from spikeglm.io._hdf5 import Reader, read_with
from spikeglm.io._hdf5 import kind as value_kind
from spikeglm.recording import Recording
from spikeglm.unitids import NAME_COLUMNS, unit_columns

__all__ = ["ELECTRODES", "SUBJECT_FIELDS", "read", "tables_listing", "write"]

NWB_VERSION = "2.8.0"
_SKIPPED_COLUMNS = {"spike_times", "obs_intervals", "id"}
_ROOT_DATASETS = ("identifier", "session_description", "session_start_time")
#: The subject's text fields (/general/subject) kept in ``annotations["subject"]``.
SUBJECT_FIELDS = (
    "subject_id",
    "species",
    "sex",
    "age",
    "date_of_birth",
    "strain",
    "genotype",
    "weight",
    "description",
)
#: The electrodes table, whose rows a Units table's ``electrodes`` column names.
ELECTRODES = "/general/extracellular_ephys/electrodes"
#: How many rows or units a message lists before it says how many more there are.
_LISTED = 5


def read(
    path: Path,
    *,
    empty_units: str = "drop",
    name_column: str | None = None,
    units: Sequence[str] | None = None,
    trials: str | None = None,
    units_table: str | None = None,
) -> Recording:
    """Read the sorted units of an NWB 2.x file (see the module's description).

    The file is read lazily: the spike times of each unit are read straight from their slice of the
    ragged ``spike_times`` dataset, and with ``units`` only those units' slices are read at all. Every
    dataset's declared size is checked against the read budget (:mod:`spikeglm.io.limits`) first.

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
    units_table : str, optional
        The Units table to read, as its path in the file, e.g. ``"processing/ecephys/units"``; default
        ``/units``, else the file's only Units table elsewhere (an assumption recorded in
        ``annotations["assumed"]``).

    Raises
    ------
    ValueError
        One line naming the file and the dataset at fault: the file is not readable HDF5 (or is
        truncated or damaged where it is read), has no Units table (or no ``/units`` and several
        elsewhere, or none at ``units_table``: the message lists those it has), holds a dataset of the
        wrong type or shape, an inconsistent ragged index, an electrode row the electrodes table does
        not have, an external link or a loop of links, or more than the read budget; or a unit of
        ``units`` is not in it, or it has no table ``trials``.
    """
    return read_with(
        path,
        "HDF5/NWB",
        _File,
        lambda file: file.recording(empty_units, name_column, units, trials, units_table),
    )


class _File(Reader):
    """An open NWB file being read for its units and trials."""

    def recording(
        self,
        empty_units: str,
        name_column: str | None,
        units: Sequence[str] | None,
        trials: str | None,
        units_table: str | None,
    ) -> Recording:
        tables = self.units_tables()
        sizes = {path: self.table_size(group) for path, group in tables.items()}
        table, chosen = self.chosen_table(tables, sizes, units_table)
        where = table.name
        columns = self.names(table)
        for column in ("id", "spike_times", "spike_times_index"):
            if not isinstance(self.member(table, column), h5py.Dataset):
                raise ValueError(f"{self.path}: the Units table {where} has no {column} dataset")
        id_dataset = table["id"]
        if id_dataset.ndim != 1:
            raise self.refuse(
                id_dataset.name, f"should be 1-D (one id per unit); got shape {id_dataset.shape}"
            )
        nwb_ids = [_plain(value) for value in self.values(id_dataset, ("numbers", "text"))]
        names = self.unit_names(table, [str(value) for value in nwb_ids], name_column)
        # Rows of the Units table holding ``units`` (all rows by default).
        rows = unit_columns(units, names, str(self.path), "unknown unit(s) {unknown}; the file has {known}")
        times = self.ragged(table, "spike_times", len(nwb_ids), rows)
        annotations = self.unit_annotations(table, columns, nwb_ids, rows)
        for notes, places in zip(annotations, self.electrodes(table, names, rows), strict=True):
            for key, value in places.items():
                notes.setdefault(key, value)  # a column of the Units table itself comes first
        t_start = t_stop = None
        span = "0 s to the last spike or trial end"
        if "obs_intervals" in columns:
            observed = self.ragged(table, "obs_intervals", len(nwb_ids), width=2)
            t_start, t_stop, span = self.observed_span(observed, names, where) or (None, None, span)
        spans, summaries, described = self.trial_spans(trials)
        attributes = self.session()
        attributes["interval_tables"] = summaries
        attributes["units_tables"] = sizes
        attributes["assumed"] = {"span": span, "trials": described, **chosen}
        return Recording(
            times,
            [names[row] for row in rows],
            t_start,
            t_stop,
            trials=spans,
            annotations=attributes,
            unit_annotations=annotations,
            source=self.path,
            empty_units=empty_units,
        )

    def units_tables(self) -> dict[str, h5py.Group]:
        """Every Units table of the file, by path: ``/units`` (a group there of any type), then every group
        of neurodata_type Units that :meth:`~spikeglm.io._hdf5.Reader.groups` finds from the root."""
        found = {}
        units = self.member(self.handle, "units")
        if isinstance(units, h5py.Group):
            found["/units"] = units
        for where, group in self.groups(self.handle, self.names(self.handle)):
            if where not in found and self.text_attribute(group, "neurodata_type") == "Units":
                found[where] = group
        return found

    def table_size(self, table: h5py.Group) -> int | None:
        """The rows of a table, from its ``id`` dataset; None where that cannot be told."""
        try:
            ids = self.member(table, "id")
        except ValueError:  # a link out of the file or a loop: said where the table is read
            return None
        return int(ids.shape[0]) if isinstance(ids, h5py.Dataset) and ids.ndim == 1 else None

    def chosen_table(
        self, tables: dict[str, h5py.Group], sizes: dict[str, int | None], named: str | None
    ) -> tuple[h5py.Group, dict[str, str]]:
        """The Units table to read: ``named`` (a path in the file), else ``/units``, else the only one of
        ``tables`` (whose units ``sizes`` counts); and what was assumed in choosing it, as
        ``annotations["assumed"]`` words it."""
        listed = tables_listing(sizes)
        if named is not None:
            where = "/" + "/".join(part for part in named.split("/") if part)
            table = self.find(where)
            if not isinstance(table, h5py.Group):
                raise ValueError(
                    f"{self.path}: has no table {where} (units_table=, --units-table); its Units tables are "
                    f"{listed or 'none'}"
                )
            return table, {}
        if "/units" in tables:
            if len(tables) == 1:
                return tables["/units"], {}
            return tables["/units"], {
                "units table": f"/units, of {len(tables)} Units tables ({listed}); units_table= "
                "(--units-table) reads another"
            }
        if len(tables) == 1:
            return next(iter(tables.values())), {"units table": f"{listed}, the only one (no /units)"}
        if not tables:
            raise ValueError(
                f"{self.path}: has no Units table (/units); spikeglm needs sorted units' spike times, and no "
                "group of neurodata_type Units is anywhere else in the file"
            )
        raise ValueError(
            f"{self.path}: has no /units but {len(tables)} Units tables elsewhere: {listed}; choose one "
            "with units_table= (--units-table)"
        )

    def unit_annotations(
        self, table: h5py.Group, columns: list[str], nwb_ids: list, rows: list[int]
    ) -> list[dict[str, Any]]:
        """The annotations of the Units table's ``rows``: the NWB id, and the value of every other column
        that holds one number, flag or text per unit."""
        annotations: list[dict[str, Any]] = [{"nwb_id": nwb_ids[row]} for row in rows]
        for column in columns:
            if column in _SKIPPED_COLUMNS or column.endswith("_index") or f"{column}_index" in columns:
                continue
            dataset = self.member(table, column)
            if (
                isinstance(dataset, h5py.Dataset)
                and dataset.shape == (len(nwb_ids),)
                and value_kind(dataset.dtype) in ("numbers", "booleans", "text")
            ):
                values = self.values(dataset, ("numbers", "booleans", "text"))
                for notes, row in zip(annotations, rows, strict=True):
                    notes[column] = _plain(values[row])
        return annotations

    def electrodes(self, table: h5py.Group, names: list[str], rows: list[int]) -> list[dict[str, str]]:
        """Where each unit of ``rows`` was recorded: the ``location`` and ``group_name`` of its electrodes
        (as ``"location"`` and ``"electrode_group"``; several electrodes' distinct values joined by
        commas), read through the Units table's ``electrodes`` column (:meth:`electrode_rows`). Nothing
        for a unit without electrodes, or for any unit where the column is missing or holds no row
        numbers (e.g. region references)."""
        places: list[dict[str, str]] = [{} for _ in rows]
        found = self.electrode_rows(table, names, rows)
        if found is None:
            return places
        electrodes, chosen = found
        n_rows = self.table_size(electrodes)
        for column, key in (("location", "location"), ("group_name", "electrode_group")):
            texts = self.member(electrodes, column)
            if not isinstance(texts, h5py.Dataset):
                continue
            if texts.shape != (n_rows,):
                raise self.refuse(texts.name, f"should hold one value per row ({n_rows}); got {texts.shape}")
            values = [str(_plain(value)) for value in self.values(texts, ("text",))]
            for notes, parts in zip(places, chosen, strict=True):
                if parts.size:
                    notes[key] = ", ".join(dict.fromkeys(values[int(part)] for part in parts))
        return places

    def electrode_rows(
        self, table: h5py.Group, names: list[str], rows: list[int]
    ) -> tuple[h5py.Group, list[np.ndarray]] | None:
        """The electrodes table and the rows of it of each unit of ``rows``, from the Units table's
        ``electrodes`` column (one row number per unit, or ragged with ``electrodes_index``), checked to
        lie in the electrodes table; None where the column is missing or holds no row numbers."""
        column = self.member(table, "electrodes")
        if not (isinstance(column, h5py.Dataset) and column.dtype.kind in "iu"):
            return None
        if isinstance(self.member(table, "electrodes_index"), h5py.Dataset):
            chosen = self.ragged(table, "electrodes", len(names), rows)
        elif column.shape == (len(names),):
            values = self.values(column).astype(np.float64)
            chosen = [values[row : row + 1] for row in rows]
        else:
            raise self.refuse(
                column.name, f"should hold one electrode row per unit ({len(names)}); got {column.shape}"
            )
        electrodes = self.find(ELECTRODES)
        if not isinstance(electrodes, h5py.Group):
            raise self.refuse(column.name, f"refers to rows of {ELECTRODES}, which the file lacks")
        n_rows = self.table_size(electrodes)
        if n_rows is None:
            raise self.refuse(ELECTRODES, "has no 1-D id dataset to say how many rows it has")
        for row, parts in zip(rows, chosen, strict=True):
            outside = parts[(parts < 0) | (parts >= n_rows)]
            if outside.size:
                raise self.refuse(
                    column.name,
                    f"gives unit {names[row]!r} the electrode row {outside[0]:g}; {ELECTRODES} has "
                    f"{n_rows} rows (0 to {n_rows - 1})",
                )
        return electrodes, chosen

    def trial_spans(self, trials: str | None) -> tuple[np.ndarray | None, dict[str, dict], str]:
        """The trials from the TimeIntervals table ``trials`` (default the one named "trials", if any):
        their spans (None without trials), a summary of every readable table, and what was assumed."""
        tables = self.interval_tables()
        chosen = trials if trials is not None else ("trials" if "trials" in tables else None)
        if chosen is not None and chosen not in tables:
            known = ", ".join(tables) or "none"
            raise ValueError(
                f"{self.path}: no TimeIntervals table {chosen!r} under /intervals; the file has {known}"
            )
        summaries = {}
        for name, group in tables.items():
            if name == chosen:
                summaries[name] = _interval_summary(self.intervals(group))
            else:
                try:
                    summaries[name] = _interval_summary(self.intervals(group))
                except ValueError:
                    continue  # a table not used and not readable is not described
        spans = self.intervals(tables[chosen]) if chosen is not None else None
        listed = ", ".join(f"{name} ({summary['rows']} rows)" for name, summary in summaries.items())
        described = "none"
        if spans is not None and len(spans):
            described = f"/intervals/{chosen} ({len(spans)} rows)"
            self.warn_overlaps(spans, f"/intervals/{chosen}")
        elif spans is not None:
            described, spans = f"none (/intervals/{chosen} is empty)", None
        elif summaries:
            described = f"none (tables: {listed}; trials= or --trials uses one)"
        return spans, summaries, described

    def values(self, dataset: h5py.Dataset, kinds: tuple[str, ...] = ("numbers",)) -> Any:
        """All of ``dataset``, once its kind is one of ``kinds`` and its size fits the read budget."""
        self.at = dataset.name
        kind = value_kind(dataset.dtype)
        if kind not in kinds:
            raise self.refuse(dataset.name, f"holds {kind}, where {' or '.join(kinds)} are expected")
        self.charge(np.prod(dataset.shape, dtype=float) * max(dataset.dtype.itemsize, 8), dataset)
        return dataset[()]

    def charge(self, nbytes: float, dataset: h5py.Dataset) -> None:
        """Count ``nbytes`` more of ``dataset`` against the read budget, refusing what would exceed it."""
        self.budget.charge(nbytes, f"reading {dataset.name} ({dataset.shape} {dataset.dtype})")

    def ragged(
        self, table: h5py.Group, column: str, n_units: int, rows: list[int] | None = None, width: int = 0
    ) -> list[np.ndarray]:
        """The float parts of a ragged column for ``rows`` (default all), checked against its ``_index``.

        Each part holds ``width`` values per row (0: one value, a 1-D column). Only those parts are read
        from the file, one slice each, once their total size fits the budget.
        """
        values = table[column]
        index = self.member(table, f"{column}_index")
        if not isinstance(index, h5py.Dataset):
            raise self.refuse(values.name, f"has no {column}_index dataset")
        where = index.name
        if (
            index.ndim != 1
            or index.shape[0] != n_units
            or value_kind(index.dtype) != "numbers"
            or index.dtype.kind == "f"
        ):
            raise self.refuse(
                where,
                f"should hold {n_units} integer end offsets (one per unit); got {index.shape} {index.dtype}",
            )
        shape = (values.shape[0], width) if width else (values.shape[0],) if values.ndim else ()
        if values.shape != shape or value_kind(values.dtype) != "numbers":
            wanted = f"(n, {width})" if width else "(n,)"
            raise self.refuse(
                values.name, f"should hold numbers of shape {wanted}; got {values.shape} {values.dtype}"
            )
        ends = self.values(index)
        n_values = values.shape[0]
        if n_units and (np.any(ends < 0) or np.any(ends[1:] < ends[:-1]) or ends[-1] != n_values):
            raise self.refuse(
                where,
                f"is inconsistent: the end offsets must rise from 0 to the {n_values} values of {column}; "
                f"got {ends[:_LISTED].tolist()}{' ...' if n_units > _LISTED else ''} ending at {ends[-1]}",
            )
        ends = ends.astype(np.int64)
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        rows = list(range(n_units)) if rows is None else rows
        lengths = ends[rows] - starts[rows]
        self.charge(float(lengths.sum()) * max(width, 1) * 8, values)
        self.at = values.name
        return [values[starts[row] : ends[row]].astype(np.float64) for row in rows]

    def unit_names(self, table: h5py.Group, ids: list[str], name_column: str | None) -> list[str]:
        """The units' names from a string column, or their NWB ids as strings."""
        candidates = NAME_COLUMNS if name_column is None else (name_column,)
        for column in candidates:
            dataset = self.member(table, column)
            usable = (
                isinstance(dataset, h5py.Dataset)
                and dataset.shape == (len(ids),)
                and value_kind(dataset.dtype) == "text"
            )
            if not usable:
                if name_column is not None:
                    raise self.refuse(
                        table.name, f"has no string column {name_column!r} with one name per unit"
                    )
                continue
            names, problem = [], None
            for row, value in enumerate(self.values(dataset, ("text",))):
                try:
                    names.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
                except UnicodeDecodeError:
                    problem = f"row {row} is not valid UTF-8 text"
                    break
            if problem is None and len(set(names)) < len(names):
                problem = "names are not unique"
            if problem is None:
                return names
            where = f"{table.name}/{column}"
            if name_column is not None:
                raise self.refuse(where, f"cannot name the units: {problem}")
            warnings.warn(f"{self.path}: {where}: {problem}; naming the units by id", stacklevel=5)
            return ids
        return ids

    def observed_span(
        self, intervals: list[np.ndarray], names: list[str], table: str
    ) -> tuple[float, float, str] | None:
        """The first start and last stop of the units' observation intervals (of the Units table at the
        path ``table``), and how they were read.

        Warns when units were observed over different spans, or with gaps. None when no unit has any.
        """
        for unit, parts in enumerate(intervals):
            bad = ~np.isfinite(parts).all(axis=1) | (parts[:, 0] > parts[:, 1])
            if bad.any():
                start, stop = parts[int(np.argmax(bad))]
                raise self.refuse(
                    f"{table}/obs_intervals",
                    f"of unit {names[unit]!r} holds the interval [{start}, {stop}] s; each needs finite "
                    "times, start <= stop",
                )
        stated = [(unit, np.sort(parts, axis=0)) for unit, parts in enumerate(intervals) if len(parts)]
        if not stated:
            return None
        firsts = np.array([parts[0, 0] for _, parts in stated])
        lasts = np.array([parts[:, 1].max() for _, parts in stated])
        t_start, t_stop = float(firsts.min()), float(lasts.max())
        partial = [
            names[unit]
            for (unit, parts), first, last in zip(stated, firsts, lasts, strict=True)
            if first > t_start or last < t_stop or np.any(parts[1:, 0] > np.maximum.accumulate(parts[:-1, 1]))
        ]
        span = "the units' obs_intervals"
        if partial:
            common = f"{firsts.max():g} s to {lasts.min():g} s" if firsts.max() < lasts.min() else "none"
            warnings.warn(
                f"{self.path}: {table}/obs_intervals: {len(partial)} of {len(names)} unit(s) were not "
                f"observed over the whole span {t_start:g} s to {t_stop:g} s (or with gaps): "
                f"{_some(partial)}; their time unobserved counts as silence. The span of every unit (gaps "
                f"aside): {common}; a window there (t_start=, t_stop=; --t-start, --t-stop) avoids it",
                stacklevel=5,
            )
            span += f" (not the same for every unit: {len(partial)} of {len(names)} observed for less)"
        return t_start, t_stop, span

    def interval_tables(self) -> dict[str, h5py.Group]:
        """The tables under ``/intervals`` with ``start_time`` and ``stop_time`` datasets, by name."""
        intervals = self.member(self.handle, "intervals")
        if not isinstance(intervals, h5py.Group):
            return {}
        tables = {}
        for name in self.names(intervals):
            table = self.member(intervals, name)
            if isinstance(table, h5py.Group) and all(
                isinstance(self.member(table, column), h5py.Dataset) for column in ("start_time", "stop_time")
            ):
                tables[name] = table
        return tables

    def intervals(self, table: h5py.Group) -> np.ndarray:
        """The ``(rows, 2)`` start and stop times of a TimeIntervals table, checked."""
        columns = [table[column] for column in ("start_time", "stop_time")]
        for column in columns:
            if column.ndim != 1:
                raise self.refuse(column.name, f"should be 1-D (one time per row); got shape {column.shape}")
        if columns[0].shape != columns[1].shape:
            raise self.refuse(
                table.name,
                f"has {columns[0].shape[0]} start_time and {columns[1].shape[0]} stop_time values; a "
                "TimeIntervals table needs one of each per row",
            )
        return np.column_stack([self.values(column) for column in columns]).astype(np.float64)

    def warn_overlaps(self, spans: np.ndarray, name: str) -> None:
        """Warn, naming the rows, when rows of the table ``name`` repeat or overlap earlier ones."""
        order = np.argsort(spans[:, 0], kind="stable")
        ordered = spans[order]
        # A row overlaps an earlier one when it starts before the latest stop of the rows starting before it.
        late = np.flatnonzero(ordered[1:, 0] < np.maximum.accumulate(ordered[:-1, 1])) + 1
        if late.size:
            rows = np.sort(order[late]).tolist()
            warnings.warn(
                f"{self.path}: {name}: {len(rows)} row(s) repeat or overlap an earlier row: rows "
                f"{_some(rows)}; a spike in two trials is counted in each",
                stacklevel=5,
            )

    def session(self) -> dict[str, Any]:
        """The session's description: the root datasets and the NWB version, where they are scalar text,
        and the subject's (``/general/subject``) where it states any."""
        attributes = self.texts(self.handle, _ROOT_DATASETS)
        general = self.member(self.handle, "general")
        subject = self.member(general, "subject") if isinstance(general, h5py.Group) else None
        if isinstance(subject, h5py.Group) and (fields := self.texts(subject, SUBJECT_FIELDS)):
            attributes["subject"] = fields
        self.at = "/ (its nwb_version attribute)"
        attributes["nwb_version"] = ""
        if "nwb_version" in self.handle.attrs:
            # Read only text: HDF5 can crash on a damaged attribute of another type.
            attribute = self.handle.attrs.get_id("nwb_version")
            if attribute.shape == () and value_kind(attribute.dtype) == "text":
                attributes["nwb_version"] = str(_plain(self.handle.attrs["nwb_version"]))
        return attributes

    def texts(self, group: h5py.Group, keys: Sequence[str]) -> dict[str, Any]:
        """The datasets of ``group`` named by ``keys`` that are scalar text, by name."""
        found = {}
        for key in keys:
            dataset = self.member(group, key)
            if (
                isinstance(dataset, h5py.Dataset)
                and dataset.shape == ()
                and value_kind(dataset.dtype) == "text"
            ):
                found[key] = _plain(self.values(dataset, ("text",)))
        return found


def tables_listing(sizes: dict[str, int | None]) -> str:
    """Tables and their units, in words: ``/units (12 units), /processing/ecephys/units (3 units)``."""
    return ", ".join(
        f"{where} ({size} unit{'s' * (size != 1)})" if size is not None else where
        for where, size in sizes.items()
    )


def _interval_summary(spans: np.ndarray) -> dict[str, Any]:
    """Rows, first start and last stop (s) of a TimeIntervals table's spans."""
    finite = spans[np.isfinite(spans).all(axis=1)]
    if len(finite) < len(spans):
        raise ValueError("NaN or infinite times")
    if not len(spans):
        return {"rows": 0, "start_s": None, "stop_s": None}
    return {"rows": len(spans), "start_s": float(spans[:, 0].min()), "stop_s": float(spans[:, 1].max())}


def _some(items: list) -> str:
    """The first few of ``items``, joined, and how many more there are."""
    shown = ", ".join(repr(item) if isinstance(item, str) else str(item) for item in items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _plain(value: Any) -> Any:
    """A Python value from what h5py returns: str for bytes (invalid UTF-8 replaced), int/float/bool for
    numpy scalars."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
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
