"""Covariates' raw data: signals sampled in time and event times, read from files and objects.

A :class:`Signal` is values sampled at known times (a stimulus, running speed, pupil size); an
:class:`Events` is a sorted list of times (cue onsets, rewards). Both are plain records in seconds,
checked when made: times finite (and strictly increasing for a signal), values finite numbers of shape
``(samples,)`` or ``(samples, channels)``, and a ``source`` naming where they came from. A source that
holds one channel as a column (neo's signals always do) gives it as a 1-D signal.

Where they come from:

- :func:`nwb_timeseries`: any NWB TimeSeries by its path in the file (``/acquisition/running_speed``,
  ``/processing/behavior/Position/pos``), read with h5py alone. Its times are ``timestamps``, or
  ``starting_time`` and its ``rate``; its values are ``data`` times its ``conversion`` plus its ``offset``.
- :func:`nwb_events`: one column of times of an NWB intervals table (``trials``, ``stim_on_time``).
  Rows without a time (NaN: trials without that event) are dropped with a warning.
- :func:`neo_signal`, :func:`neo_events`: neo's AnalogSignal and IrregularlySampledSignal, Event and
  Epoch, their times rescaled to seconds.
- :func:`pynapple_signal`, :func:`pynapple_events`: pynapple's Tsd, TsdFrame and Ts, recognised by
  their attributes (``.t`` or ``.times()``, ``.values`` or ``.d``); pynapple itself is not imported.

NWB files are read as the other readers read them (:mod:`spikeglm.io.nwb`): each dataset's declared size
is checked against the read budget (:mod:`spikeglm.io.limits`) before it is read, links into other
files are refused, and every refusal is a ``ValueError`` of one line naming the file and the dataset.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spikeglm.io._hdf5 import Reader, read_with, reason
from spikeglm.io._hdf5 import kind as value_kind
from spikeglm.io.limits import check_size

__all__ = [
    "Events",
    "Signal",
    "neo_events",
    "neo_signal",
    "nwb_events",
    "nwb_timeseries",
    "pynapple_events",
    "pynapple_signal",
    "pynapple_times",
    "text_source",
]

#: The groups of an NWB file searched for TimeSeries when the one asked for is missing.
_SERIES_ROOTS = ("acquisition", "stimulus", "processing")
#: How many names a message lists before it says how many more there are.
_LISTED = 20


@dataclass(frozen=True)
class Signal:
    """A signal sampled in time.

    Attributes
    ----------
    times : numpy.ndarray
        float64 seconds, finite and strictly increasing, one per sample.
    values : numpy.ndarray
        float64, finite, shape ``(samples,)`` or ``(samples, channels)``.
    source : str
        Where it came from, e.g. ``"/data/session.nwb:/acquisition/running_speed"``.
    unit : str or None
        The values' unit where the source states it.

    Raises
    ------
    ValueError
        One line naming ``source``, when the times or values break the rules above.
    """

    times: np.ndarray
    values: np.ndarray
    source: str
    unit: str | None = None

    def __post_init__(self) -> None:
        times = _numbers(self.times, f"{self.source}: times")
        values = _numbers(self.values, f"{self.source}: values")
        if values.ndim not in (1, 2) or values.size == 0:
            raise ValueError(
                f"{self.source}: values should be (samples,) or (samples, channels), with at least one "
                f"sample and channel; got shape {values.shape}"
            )
        if times.shape != values.shape[:1]:
            raise ValueError(
                f"{self.source}: {times.size} time(s) of shape {times.shape} for {values.shape[0]} "
                "sample(s): one time per sample is needed"
            )
        _check_finite(values, f"{self.source}: values")
        _check_increasing(times, f"{self.source}: times")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class Events:
    """Times of events, in seconds.

    Attributes
    ----------
    times : numpy.ndarray
        float64 seconds, 1-D, finite and sorted (events may share a time).
    source : str
        Where they came from, e.g. ``"/data/session.nwb:/intervals/trials/stim_on_time"``.

    Raises
    ------
    ValueError
        One line naming ``source``, when the times are not 1-D, not finite or not sorted.
    """

    times: np.ndarray
    source: str

    def __post_init__(self) -> None:
        times = _numbers(self.times, f"{self.source}: times")
        if times.ndim != 1:
            raise ValueError(f"{self.source}: times should be 1-D; got shape {times.shape}")
        _check_finite(times, f"{self.source}: times")
        if np.any(np.diff(times) < 0):
            raise ValueError(f"{self.source}: times should be sorted")
        object.__setattr__(self, "times", times)


def _numbers(raw: Any, where: str) -> np.ndarray:
    """``raw`` as a float64 array, refusing what does not hold numbers (or booleans)."""
    array = np.asarray(raw)
    if array.dtype.kind not in "iufb":
        raise ValueError(f"{where} should be numbers; got values of type {array.dtype}")
    return array.astype(np.float64, copy=False)


def _check_finite(values: np.ndarray, where: str) -> None:
    """Refuse NaN or infinite ``values``, saying how many and the index of the first."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        index = first[0] if len(first) == 1 else first
        raise ValueError(f"{where}: {int(bad.sum())} NaN or infinite value(s), the first at index {index}")


def _check_increasing(times: np.ndarray, where: str) -> None:
    """Refuse times that are not finite, not 1-D or do not strictly increase, naming the first at fault."""
    if times.ndim != 1:
        raise ValueError(f"{where} should be 1-D; got shape {times.shape}")
    _check_finite(times, where)
    late = np.flatnonzero(np.diff(times) <= 0)
    if late.size:
        at = int(late[0]) + 1
        raise ValueError(
            f"{where} should strictly increase; time {at} ({float(times[at])!r} s) is not after time "
            f"{at - 1} ({float(times[at - 1])!r} s)"
        )


def _one_channel(values: np.ndarray) -> np.ndarray:
    """A ``(samples, 1)`` array as ``(samples,)``; any other as it is."""
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


# ---------------------------------------------------------------------------------------------- NWB


def nwb_timeseries(path: str | Path, name: str) -> Signal:
    """An NWB TimeSeries of the file ``path``, by its path in the file.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.nwb`` file (HDF5).
    name : str
        The TimeSeries group, e.g. ``"/acquisition/running_speed"``, ``"/stimulus/presentation/x"`` or
        ``"processing/behavior/Position/pos"`` (the leading ``/`` may be left out).

    Returns
    -------
    Signal
        Times from ``timestamps`` (seconds), or ``starting_time + arange(samples) / rate``; values
        ``data * conversion + offset`` (the attributes of ``data``; 1 and 0 where absent), 1-D for one
        channel; the unit is the ``unit`` attribute of ``data``. The source is ``"<path>:<name>"``.

    Raises
    ------
    ValueError
        One line naming the file and the dataset at fault: the file is not readable HDF5; ``name`` is
        not in it (the message lists the TimeSeries under ``/acquisition``, ``/stimulus`` and
        ``/processing``), is not a group or has no ``data``; ``data`` holds text, is empty or not 1-D or
        2-D; timestamps do not match the samples, are not finite or do not strictly increase; ``rate`` is
        not positive; ``data`` holds NaN or infinite values; a link leads into another file; or a dataset
        would exceed the read budget (:mod:`spikeglm.io.limits`).
    """
    return read_with(Path(path), "HDF5/NWB", _NwbFile, lambda file: file.timeseries(name))


def nwb_events(path: str | Path, table: str, column: str) -> Events:
    """Event times from one column of an NWB intervals table.

    Rows whose value is NaN (trials without that event) are dropped with a warning naming how many; the
    times are sorted.

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.nwb`` file (HDF5).
    table : str
        A table under ``/intervals``: ``"trials"``, or ``"/intervals/trials"``.
    column : str
        A column of one number per row, in seconds: ``"start_time"``, or a custom one such as
        ``"stim_on_time"``.

    Raises
    ------
    ValueError
        One line naming the file and the dataset at fault: no such table (the message lists the tables)
        or column (it lists the columns); the column is ragged (indexed), not 1-D, holds anything but
        numbers, or holds infinite values; or it would exceed the read budget.
    """
    path = Path(path)
    times, dropped, where = read_with(path, "HDF5/NWB", _NwbFile, lambda file: file.events(table, column))
    if dropped:
        warnings.warn(
            f"{path}: {where}: dropped {dropped} of {len(times) + dropped} row(s) without a time (NaN)",
            stacklevel=2,
        )
    return Events(np.sort(times), f"{path}:{where}")


class _NwbFile(Reader):
    """An open NWB file being read for a TimeSeries or a column of an intervals table."""

    def numbers(self, dataset: h5py.Dataset, booleans: bool = False) -> np.ndarray:
        """All of ``dataset`` as float64, once it holds numbers and its size fits the read budget."""
        self.at = dataset.name
        kind = value_kind(dataset.dtype)
        if kind != "numbers" and not (booleans and kind == "booleans"):
            raise self.refuse(dataset.name, f"holds {kind}, where numbers are expected")
        if dataset.shape is None:
            raise self.refuse(dataset.name, "holds no values (an empty dataspace)")
        # What the file holds, and its float64 copy where it holds another type.
        per_value = dataset.dtype.itemsize + (0 if dataset.dtype == np.float64 else 8)
        self.budget.charge(
            float(np.prod(dataset.shape, dtype=float)) * per_value,
            f"reading {dataset.name} ({dataset.shape} {dataset.dtype})",
        )
        return np.asarray(dataset[()], dtype=np.float64)

    def attribute(self, obj: h5py.HLObject, name: str, default: float) -> float:
        """The number in the attribute ``name`` of ``obj`` (``default`` without it), finite."""
        self.at = f"{obj.name} (its {name} attribute)"
        if name not in obj.attrs:
            return default
        # Check the type before reading: HDF5 can crash on a damaged attribute of another type.
        stored = obj.attrs.get_id(name)
        if stored.shape not in ((), (1,)) or value_kind(stored.dtype) != "numbers":
            raise self.refuse(
                obj.name, f"has a {name} attribute of shape {stored.shape} {stored.dtype}; expected a number"
            )
        value = float(np.asarray(obj.attrs[name]).reshape(-1)[0])
        if not np.isfinite(value):
            raise self.refuse(obj.name, f"has {name} = {value}; expected a finite number")
        return value

    def timeseries(self, name: str) -> Signal:
        """The TimeSeries at ``name`` (see :func:`nwb_timeseries`)."""
        full = "/" + "/".join(part for part in name.split("/") if part)
        group = self.find(full)
        if group is None:
            raise ValueError(f"{self.path}: has no TimeSeries {full}; {self.series_listing()}")
        if not isinstance(group, h5py.Group):
            raise self.refuse(full, "is a dataset, not a TimeSeries (a group holding data and timestamps)")
        data = self.member(group, "data")
        if not isinstance(data, h5py.Dataset):
            raise self.refuse(full, "has no data dataset: it is not a TimeSeries")
        if data.shape is None or len(data.shape) not in (1, 2) or 0 in data.shape:
            raise self.refuse(
                data.name, f"should hold (samples,) or (samples, channels), not empty; got shape {data.shape}"
            )
        times = self.sample_times(group, data.shape[0])
        conversion = self.attribute(data, "conversion", 1.0)
        offset = self.attribute(data, "offset", 0.0)
        if conversion == 0:
            raise self.refuse(data.name, "has conversion = 0, which makes every value the offset")
        values = self.numbers(data, booleans=True)
        _check_finite(values, f"{self.path}: {data.name}")
        values = values * conversion + offset
        _check_finite(values, f"{self.path}: {data.name} times its conversion {conversion!r}")
        unit = self.text_attribute(data, "unit")
        return Signal(times, _one_channel(values), f"{self.path}:{full}", unit)

    def sample_times(self, group: h5py.Group, n_samples: int) -> np.ndarray:
        """The times of the ``n_samples`` samples of the TimeSeries ``group``, in seconds, checked."""
        stamps = self.member(group, "timestamps")
        if isinstance(stamps, h5py.Dataset):
            if stamps.shape != (n_samples,):
                raise self.refuse(
                    stamps.name,
                    f"has shape {stamps.shape} for the {n_samples} sample(s) of data: one timestamp per "
                    "sample is needed",
                )
            times = self.numbers(stamps)
            _check_increasing(times, f"{self.path}: {stamps.name}")
            return times
        start = self.member(group, "starting_time")
        if not isinstance(start, h5py.Dataset):
            raise self.refuse(
                group.name, "has neither timestamps nor starting_time: its samples have no times"
            )
        if start.shape not in ((), (1,)):
            raise self.refuse(start.name, f"should be one number; got shape {start.shape}")
        first = float(self.numbers(start).reshape(-1)[0])
        rate = self.attribute(start, "rate", 0.0)
        if rate <= 0:
            raise self.refuse(start.name, f"has rate {rate!r} Hz; the sampling rate must be positive")
        self.budget.charge(8.0 * n_samples, f"the {n_samples} sample times of {group.name}")
        times = first + np.arange(n_samples) / rate
        _check_increasing(times, f"{self.path}: {start.name} (at {rate!r} Hz)")
        return times

    def series_listing(self) -> str:
        """The TimeSeries the file holds, in words, for a message.

        A group is a TimeSeries when it has ``data`` and ``timestamps`` or ``starting_time``; the groups
        are those under the roots that :meth:`~spikeglm.io._hdf5.Reader.groups` reaches.
        """
        found = []
        for at, group in self.groups(self.handle, _SERIES_ROOTS):
            keys = set(group.keys())  # names only: no link is followed
            if "data" in keys and keys & {"timestamps", "starting_time"}:
                found.append(at)
        if not found:
            return "it holds none under /" + ", /".join(_SERIES_ROOTS)
        return f"it holds {_some(sorted(found))}"

    def events(self, table: str, column: str) -> tuple[np.ndarray, int, str]:
        """The numbers of ``column`` of the intervals table ``table`` without its NaN rows, how many rows
        were NaN, and the column's path (see :func:`nwb_events`)."""
        name = table.strip("/")
        name = name.removeprefix("intervals/")
        intervals = self.member(self.handle, "intervals")
        if not isinstance(intervals, h5py.Group):
            raise ValueError(f"{self.path}: has no /intervals group, so no table {table!r}")
        group = self.member(intervals, name)
        if not isinstance(group, h5py.Group):
            tables = [key for key in intervals if isinstance(intervals.get(key, getlink=True), h5py.HardLink)]
            known = _some(sorted(tables)) if tables else "none"
            raise ValueError(f"{self.path}: has no table /intervals/{name}; its tables are {known}")
        dataset = self.member(group, column)
        if not isinstance(dataset, h5py.Dataset):
            columns = [key for key in group if key != "id" and not key.endswith("_index")]
            known = _some(sorted(columns)) if columns else "none"
            raise self.refuse(group.name, f"has no column {column!r}; its columns are {known}")
        indexed = column.removesuffix("_index") if column.endswith("_index") else None
        if f"{column}_index" in group or (indexed and indexed in group):
            what = (
                f"the index of the ragged column {indexed}"
                if indexed
                else f"ragged (indexed by {column}_index)"
            )
            raise self.refuse(
                dataset.name,
                f"is {what}: several values per row; event times need a column of one time per row",
            )
        if dataset.shape is None or len(dataset.shape) != 1:
            raise self.refuse(dataset.name, f"should hold one time per row; got shape {dataset.shape}")
        values = self.numbers(dataset)
        missing = np.isnan(values)
        _check_finite(values[~missing], f"{self.path}: {dataset.name} (its rows with a time)")
        return values[~missing], int(missing.sum()), dataset.name


def _some(items: list[str]) -> str:
    """The first few of ``items``, quoted and joined, and how many more there are."""
    shown = ", ".join(repr(item) for item in items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


# ---------------------------------------------------------------------------------------------- neo


def neo_signal(signal: Any) -> Signal:
    """A neo ``AnalogSignal`` or ``IrregularlySampledSignal`` as a :class:`Signal`.

    Times are the signal's ``times`` rescaled to seconds (for an AnalogSignal, ``t_start`` plus the
    samples over ``sampling_rate``, in whatever units those are given); values its magnitudes, in its
    units (``unit``), 1-D for one channel. The source is ``"neo AnalogSignal '<name>'"``.

    Raises
    ------
    ValueError
        One line naming the signal: it is not a 2-D neo signal (an Event, say), its times are not in a
        unit of time, or its times or values are not finite, its times do not strictly increase, or it
        has no samples.

    Examples
    --------
    >>> import neo, quantities as pq
    >>> speed = neo.AnalogSignal([[1.0], [2.0]], units="cm/s", sampling_rate=1 * pq.kHz, t_start=5 * pq.ms)
    >>> signal = neo_signal(speed)
    >>> signal.times.tolist(), signal.values.tolist(), signal.unit
    ([0.005, 0.006], [1.0, 2.0], 'cm/s')
    """
    source = _neo_source(signal)
    magnitude = getattr(signal, "magnitude", None)
    dimensions = 0 if magnitude is None else np.ndim(magnitude)
    if dimensions != 2 or not hasattr(signal, "times"):
        raise ValueError(
            f"{source}: expected a neo AnalogSignal or IrregularlySampledSignal (samples x channels); got "
            f"{type(signal).__name__} of {dimensions} dimension(s)"
        )
    times = _neo_seconds(signal.times, source)
    values = np.array(_numbers(magnitude, f"{source}: values"))  # a copy: neo's data stays neo's
    units = getattr(signal, "dimensionality", None)
    unit = getattr(units, "string", None)
    return Signal(times, _one_channel(values), source, unit if isinstance(unit, str) else None)


def neo_events(event: Any) -> Events:
    """The times of a neo ``Event`` (or the start times of an ``Epoch``), in seconds, sorted.

    Raises
    ------
    ValueError
        One line naming the object: it has no 1-D times (a signal, say), they are not in a unit of time,
        or they are not finite.
    """
    source = _neo_source(event)
    magnitude = getattr(event, "magnitude", None)
    if not hasattr(event, "times") or magnitude is None or np.ndim(magnitude) != 1:
        raise ValueError(f"{source}: expected a neo Event or Epoch (1-D times); got {type(event).__name__}")
    return Events(np.sort(_neo_seconds(event.times, source)), source)


def _neo_source(obj: Any) -> str:
    """``"neo <class> '<name>'"``, naming a neo object in a message and as a source."""
    name = getattr(obj, "name", None)
    return f"neo {type(obj).__name__} " + (repr(str(name)) if name else "(unnamed)")


def _neo_seconds(times: Any, source: str) -> np.ndarray:
    """A quantity of times in seconds, as a float64 array; refused when not in a unit of time."""
    try:
        seconds = times.rescale("s").magnitude
    except (AttributeError, TypeError, ValueError) as error:
        found = getattr(times, "dimensionality", type(times).__name__)
        raise ValueError(
            f"{source}: its times ({found}) cannot be rescaled to seconds ({reason(error)})"
        ) from None
    return np.array(_numbers(seconds, f"{source}: times"))


# ----------------------------------------------------------------------------------------- pynapple


def pynapple_signal(tsd: Any) -> Signal:
    """A pynapple ``Tsd`` or ``TsdFrame`` as a :class:`Signal` (pynapple is not imported).

    Times are ``tsd.t`` (else ``tsd.times()``), which pynapple keeps in seconds; values ``tsd.values``
    (else ``tsd.d``), 1-D for one column. Pynapple states no unit. The source is ``"pynapple Tsd"``.

    Raises
    ------
    ValueError
        One line naming the object: it has no times or no values (a ``Ts`` has none), values of more
        than two dimensions (a ``TsdTensor``) or that are not numbers, times or values that are not
        finite, or times that do not strictly increase.
    """
    source = f"pynapple {type(tsd).__name__}"
    times = pynapple_times(tsd, source)
    raw = getattr(tsd, "values", None)
    if raw is None:
        raw = getattr(tsd, "d", None)
    if raw is None or callable(raw):
        raise ValueError(f"{source}: has no values (.values or .d); expected a pynapple Tsd or TsdFrame")
    values = np.array(_numbers(raw, f"{source}: values"))  # a copy: pynapple's data stays pynapple's
    return Signal(times, _one_channel(values), source, None)


def pynapple_events(ts: Any) -> Events:
    """The times of a pynapple ``Ts`` (or of a ``Tsd``'s samples), in seconds, sorted.

    Raises
    ------
    ValueError
        One line naming the object: it has no times (``.t`` or ``.times()``), or they are not 1-D
        finite numbers.
    """
    source = f"pynapple {type(ts).__name__}"
    return Events(np.sort(pynapple_times(ts, source)), source)


def pynapple_times(obj: Any, source: str) -> np.ndarray:
    """The times of a pynapple object, in seconds: ``obj.t``, else ``obj.times()``, as a float64 array (a
    copy); ``source`` names it in messages."""
    times = getattr(obj, "t", None)
    if times is None:
        method = getattr(obj, "times", None)
        try:
            times = method() if callable(method) else method
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: its times() failed ({reason(error)})") from None
    if times is None:
        raise ValueError(f"{source}: has no times (.t or .times()); expected a pynapple Ts, Tsd or TsdFrame")
    return np.array(_numbers(times, f"{source}: times"))


def text_source(path: str | Path) -> Signal | Events:
    """A text file of numbers separated by commas, spaces or tabs (a header line of names is skipped):
    one column of event times in seconds, or two, the sample times in seconds and the signal's values.

    Raises
    ------
    ValueError
        One line naming the file: larger than the read budget (checked from its size before it is read),
        not numbers, neither one nor two columns, or times and values that break the rules of
        :class:`Signal` and :class:`Events`.
    """
    path = Path(path)
    check_size(path.stat().st_size * 2, "the text", path)  # floats take about twice the text's bytes
    text = path.read_text(encoding="utf-8", errors="strict").replace(",", " ").replace("\t", " ")
    lines = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and not _is_number(lines[0][0]):
        lines = lines[1:]  # a header
    widths = {len(line) for line in lines}
    if not lines or len(widths) != 1 or widths.pop() not in (1, 2):
        raise ValueError(f"{path}: expected rows of one column (event times) or two (time, value)")
    try:
        table = np.array(lines, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: not numbers ({reason(error)})") from None
    if table.shape[1] == 1:
        return Events(np.sort(table[:, 0]), str(path))
    return Signal(table[:, 0], table[:, 1], str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
