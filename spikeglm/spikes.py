"""Spike data: binned spike counts of trials, and the parsing of durations such as ``"5 ms"``.

:class:`SpikeCounts` holds the counts ``(trials, bins, units)`` that the models fit, with the bin size
and an id per unit; :meth:`SpikeCounts.from_array` makes it from an array or a tensor and checks it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import quantities as pq
import torch

__all__ = ["Recording", "SpikeCounts", "parse_time"]

_DURATION = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ]+)?\s*$")
_COUNT_DTYPES = (np.uint8, np.uint16, np.uint32)


def parse_time(value: str | pq.Quantity, name: str = "bin_size") -> pq.Quantity:
    """A positive duration as a scalar :class:`quantities.Quantity`, in the unit it was given in.

    Parameters
    ----------
    value : str or quantities.Quantity
        A number with a time unit: ``"5 ms"``, ``"5ms"``, ``"0.005 s"``, ``"1.5 min"``, ``"20 us"``, or a
        quantity such as ``5 * pq.ms``.
    name : str
        The parameter's name, used in error messages.

    Returns
    -------
    quantities.Quantity
        A float64 scalar, e.g. ``array(5.) * ms``.

    Raises
    ------
    ValueError
        If the value has no unit (a bare number), a unit that is not a time, cannot be read, or is not a
        finite positive duration.
    """
    if isinstance(value, pq.Quantity):
        if value.size != 1:
            raise ValueError(f"{name}: expected a single duration; got {value.size} values")
        quantity = pq.Quantity(float(value.magnitude.item()), value.units)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{name}: cannot read {value!r} as a duration; write e.g. '5 ms'")
        number, unit = match.groups()
        if unit is None:
            raise ValueError(f"{name}: give a unit, e.g. '5 ms'; got {value!r}")
        try:
            quantity = pq.Quantity(float(number), unit.replace("µ", "u").replace("μ", "u"))
        except (LookupError, SyntaxError):
            raise ValueError(f"{name}: unknown unit {unit!r} in {value!r}; use e.g. ms, s or min") from None
    elif isinstance(value, Real):
        raise ValueError(f"{name}: give a unit, e.g. '5 ms'; got {value}")
    else:
        raise ValueError(f"{name}: expected a duration such as '5 ms'; got {type(value).__name__} {value!r}")
    if quantity.simplified.dimensionality != pq.s.dimensionality:
        raise ValueError(f"{name}: {_format(quantity)} is not a time; use e.g. ms, s or min")
    if not np.isfinite(quantity.magnitude) or quantity.magnitude <= 0:
        raise ValueError(f"{name}: must be a positive duration; got {_format(quantity)}")
    return quantity


def listing(names: Sequence[str], shown: int = 5) -> str:
    """Names for a message: all of a few, else the first ``shown`` and how many there are in all."""
    names = list(names)
    text = ", ".join(map(repr, names[:shown]))
    return text if len(names) <= shown else f"{text}, ... ({len(names)} in all)"


class SpikeCounts:
    """Spike counts of ``units`` in ``bins`` of equal size, for one or more trials.

    Prefer :meth:`from_array`, which also takes a single trial or a torch tensor. Instances are
    read-only: the selection methods return new objects.

    Parameters
    ----------
    counts : array_like, shape (trials, bins, units)
        Non-negative whole numbers of any numeric dtype (floats must hold whole values). They are
        stored in the smallest of uint8, uint16 and uint32 that holds the largest count.
    bin_size : str or quantities.Quantity
        Width of a bin, with a unit (see :func:`parse_time`).
    unit_ids : sequence of str, optional
        One unique id per unit (non-strings are converted with ``str``); default ``"0", "1", ...``.
    metadata : dict, optional
        Free-form information about the recording (copied, not interpreted).

    Attributes
    ----------
    counts : numpy.ndarray
        The counts, shape (trials, bins, units), read-only.
    bin_size : quantities.Quantity
        The bin width.
    unit_ids : numpy.ndarray of str
        The unit ids, read-only.
    metadata : dict
        The metadata.

    Raises
    ------
    ValueError
        With the problem and where it is: e.g. ``counts: 3 negative value(s), first at trial 0, bin 12,
        unit 'n2'``.
    """

    def __init__(
        self,
        counts: np.ndarray,
        bin_size: str | pq.Quantity,
        unit_ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        array = np.asarray(counts)
        if array.ndim != 3:
            raise ValueError(f"counts: expected 3 dimensions (trials, bins, units); got shape {array.shape}")
        self.bin_size = parse_time(bin_size, "bin_size")
        self.unit_ids = _unit_ids(unit_ids, array.shape[2])
        self.counts = _compact_counts(array, self.unit_ids)
        self.metadata = dict(metadata or {})

    @classmethod
    def from_array(
        cls,
        array: np.ndarray | torch.Tensor,
        bin_size: str | pq.Quantity = "5 ms",
        unit_ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SpikeCounts:
        """Spike counts from an array of shape (trials, bins, units), or (bins, units) for one trial.

        Parameters
        ----------
        array : numpy.ndarray or torch.Tensor
            The counts, any numeric dtype; floats must hold whole values.
        bin_size : str or quantities.Quantity
            Width of a bin, with a unit, e.g. ``"5 ms"``.
        unit_ids : sequence of str, optional
            One unique id per unit; default ``"0", "1", ...``.
        metadata : dict, optional
            Free-form information about the recording.

        Returns
        -------
        SpikeCounts

        Examples
        --------
        >>> SpikeCounts.from_array(np.zeros((100, 3)), bin_size="5 ms")
        SpikeCounts(1 trial x 100 bins x 3 units, bin_size=5 ms)
        """
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[np.newaxis]
        elif array.ndim != 3:
            raise ValueError(
                "counts: expected a 3-D (trials, bins, units) or 2-D (bins, units) array; "
                f"got shape {array.shape}"
            )
        return cls(array, bin_size, unit_ids, metadata)

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return self.counts.shape[0]

    @property
    def n_bins(self) -> int:
        """Number of bins per trial."""
        return self.counts.shape[1]

    @property
    def n_units(self) -> int:
        """Number of units."""
        return self.counts.shape[2]

    @property
    def trial_duration(self) -> pq.Quantity:
        """Duration of one trial, ``n_bins * bin_size``."""
        return self.n_bins * self.bin_size

    @property
    def duration(self) -> pq.Quantity:
        """Total duration of all trials, ``n_trials * n_bins * bin_size``."""
        return self.n_trials * self.trial_duration

    def to_tensor(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The counts as a new tensor of shape (trials, bins, units)."""
        return torch.from_numpy(self.counts.astype(np.int64)).to(dtype=dtype, device=device)

    def select_trials(self, index: int | slice | Sequence[int] | np.ndarray) -> SpikeCounts:
        """The trials picked by an int, a slice, a sequence of ints or a boolean mask, as new SpikeCounts.

        An int keeps the trial dimension (one trial). ``counts[index]`` does the same.
        """
        trials = np.atleast_1d(np.arange(self.n_trials)[index])
        return self._with_counts(self.counts[trials], self.unit_ids)

    __getitem__ = select_trials

    def to_recording(self, seed: int = 0) -> Recording:
        """Spike times that bin back to these counts: trials end to end from 0 s, spikes spread in bins.

        Trial ``r`` spans ``[r T, (r + 1) T)`` with ``T`` the trial duration, and the ``c`` spikes of a
        bin are placed uniformly at random inside it (``seed``), never on an edge, so that
        ``to_recording().bin(bin_size)`` gives these counts back. The trials become the recording's
        trials table; unit ids and metadata are kept.
        """
        rng = np.random.default_rng(seed)
        width = float(self.bin_size.rescale("s").magnitude)
        trial, bin_, unit = np.nonzero(self.counts)
        repeats = self.counts[trial, bin_, unit].astype(np.int64)
        starts = (np.repeat(trial * self.n_bins + bin_, repeats)) * width
        # Uniform in the open bin: (0.05 .. 0.95) of its width keeps clear of edges and rounding.
        times = starts + width * rng.uniform(0.05, 0.95, size=starts.size)
        owner = np.repeat(unit, repeats)
        spike_times = [np.sort(times[owner == k]) for k in range(self.n_units)]
        duration = self.n_bins * width
        trials = np.column_stack([np.arange(self.n_trials), np.arange(1, self.n_trials + 1)]) * duration
        return Recording(
            spike_times,
            list(self.unit_ids),
            0.0,
            self.n_trials * duration,
            trials=trials,
            annotations=dict(self.metadata),
            empty_units="keep",
        )

    def __len__(self) -> int:
        return self.n_trials

    def select_units(self, ids: str | Iterable[str]) -> SpikeCounts:
        """The given units, in the given order, as new SpikeCounts.

        Raises
        ------
        ValueError
            If an id is not among :attr:`unit_ids`.
        """
        ids = [ids] if isinstance(ids, str) else [str(unit) for unit in ids]
        position = {unit: k for k, unit in enumerate(self.unit_ids)}
        unknown = [unit for unit in ids if unit not in position]
        if unknown:
            raise ValueError(
                f"select_units: unknown unit id(s) {listing(unknown)}; "
                f"known: {listing(self.unit_ids.tolist())}"
            )
        columns = [position[unit] for unit in ids]
        return self._with_counts(self.counts[:, :, columns], ids)

    def split(
        self, test_fraction: float = 0.33, seed: int = 0, shuffle: bool = True
    ) -> tuple[SpikeCounts, SpikeCounts]:
        """Split the trials into a training and a test part.

        Parameters
        ----------
        test_fraction : float
            Share of the trials that go to the test part (rounded to a whole number of trials).
        seed : int
            Seed of the shuffle; the same seed gives the same split.
        shuffle : bool
            Draw the test trials at random; otherwise the last trials are the test part.

        Returns
        -------
        train, test : SpikeCounts
            Disjoint, together all trials, each in the original trial order.

        Raises
        ------
        ValueError
            If ``test_fraction`` is not in (0, 1) or either part would be empty.
        """
        if not 0 < test_fraction < 1:
            raise ValueError(f"split: test_fraction must be between 0 and 1; got {test_fraction}")
        n_test = round(test_fraction * self.n_trials)
        if not 0 < n_test < self.n_trials:
            part = "test" if n_test == 0 else "training"
            raise ValueError(
                f"split: test_fraction={test_fraction} of {self.n_trials} trial(s) "
                f"leaves the {part} part empty"
            )
        order = (
            np.random.default_rng(seed).permutation(self.n_trials) if shuffle else np.arange(self.n_trials)
        )
        n_train = self.n_trials - n_test
        return self.select_trials(np.sort(order[:n_train])), self.select_trials(np.sort(order[n_train:]))

    @classmethod
    def concatenate(cls, parts: Sequence[SpikeCounts]) -> SpikeCounts:
        """Join the trials of several SpikeCounts with the same units, bins per trial and bin size.

        The result has the first part's bin size unit and metadata.

        Raises
        ------
        ValueError
            If no parts are given or they differ in unit ids (and their order), bins or bin size.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("concatenate: no SpikeCounts given")
        first = parts[0]
        for k, part in enumerate(parts[1:], start=1):
            if not np.array_equal(part.unit_ids, first.unit_ids):
                raise ValueError(
                    f"concatenate: part {k} has units {part.unit_ids.tolist()}, "
                    f"part 0 has {first.unit_ids.tolist()}"
                )
            if part.n_bins != first.n_bins:
                raise ValueError(
                    f"concatenate: part {k} has {part.n_bins} bins per trial, part 0 has {first.n_bins}"
                )
            if not np.isclose(
                float(part.bin_size.rescale(first.bin_size.units)), float(first.bin_size), rtol=1e-9
            ):
                raise ValueError(
                    f"concatenate: part {k} has bin_size {_format(part.bin_size)}, "
                    f"part 0 has {_format(first.bin_size)}"
                )
        counts = np.concatenate([part.counts for part in parts], axis=0)
        return cls(counts, first.bin_size, first.unit_ids, first.metadata)

    def _with_counts(self, counts: np.ndarray, unit_ids: Sequence[str]) -> SpikeCounts:
        return type(self)(counts, self.bin_size, unit_ids, self.metadata)

    def __repr__(self) -> str:
        trials = "trial" if self.n_trials == 1 else "trials"
        return (
            f"SpikeCounts({self.n_trials} {trials} x {self.n_bins} bins x {self.n_units} units, "
            f"bin_size={_format(self.bin_size)})"
        )


def _format(quantity: pq.Quantity) -> str:
    """``5 ms`` rather than ``5.0 ms``."""
    return f"{float(quantity.magnitude):g} {quantity.dimensionality.string}"


def _unit_ids(unit_ids: Sequence[str] | None, n_units: int) -> np.ndarray:
    if unit_ids is None:
        ids = [str(k) for k in range(n_units)]
    elif isinstance(unit_ids, str):
        raise ValueError(f"unit_ids: expected one id per unit, got the single string {unit_ids!r}")
    else:
        ids = [str(unit) for unit in unit_ids]
    if len(ids) != n_units:
        raise ValueError(f"unit_ids: {len(ids)} id(s) given for {n_units} unit(s)")
    duplicates = sorted(unit for unit, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"unit_ids: duplicate id(s) {', '.join(map(repr, duplicates))}")
    array = np.array(ids, dtype=str)
    array.flags.writeable = False
    return array


def _compact_counts(array: np.ndarray, unit_ids: np.ndarray) -> np.ndarray:
    """Validate counts of shape (trials, bins, units) and store them in the smallest unsigned dtype."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise ValueError(f"counts: expected real numbers; got dtype {array.dtype}")
    empty = [name for name, size in zip(("trials", "bins", "units"), array.shape, strict=True) if size == 0]
    if empty:
        raise ValueError(f"counts: no {' and no '.join(empty)} (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        _reject(~np.isfinite(array), "NaN or infinite", array, unit_ids)
        _reject(array != np.round(array), "non-integer", array, unit_ids)
    _reject(array < 0, "negative", array, unit_ids)
    largest = array.max()
    for dtype in _COUNT_DTYPES:
        if largest <= np.iinfo(dtype).max:
            compact = array.astype(dtype)
            compact.flags.writeable = False
            return compact
    raise ValueError(
        f"counts: the largest value {largest} exceeds {np.iinfo(_COUNT_DTYPES[-1]).max}; "
        "are these spike counts per bin?"
    )


def _reject(bad: np.ndarray, what: str, array: np.ndarray, unit_ids: np.ndarray) -> None:
    """Raise a ValueError that counts the flagged entries and says where the first one is."""
    if not bad.any():
        return
    trial, bin_, unit = np.unravel_index(np.argmax(bad), bad.shape)
    raise ValueError(
        f"counts: {int(bad.sum())} {what} value(s), first at trial {trial}, bin {bin_}, "
        f"unit {str(unit_ids[unit])!r} (value {array[trial, bin_, unit]})"
    )


_EMPTY_UNITS = ("drop", "keep", "error")


class Recording:
    """Spike times of sorted units on one time line, in seconds, as read from a file.

    Parameters
    ----------
    spike_times : sequence of array_like
        One 1-D array of spike times in seconds per unit, each sorted (non-decreasing); a
        :class:`quantities.Quantity` array is rescaled to seconds.
    unit_ids : sequence of str, optional
        One unique id per unit (non-strings are converted with ``str``); default ``"0", "1", ...``.
    t_start, t_stop : float or str or quantities.Quantity, optional
        The recorded span; a bare number is in seconds. Default: 0 s, and the last spike or the end of
        the last trial, whichever is later.
    trials : array_like, shape (n_trials, 2), optional
        ``[start, stop]`` of each trial in seconds, inside ``[t_start, t_stop]``.
    annotations : dict, optional
        Information about the whole recording (copied, not interpreted).
    unit_annotations : sequence of dict, optional
        Information about each unit (one dict per unit).
    source : str or os.PathLike, optional
        The file the recording came from; error messages and :meth:`bin`'s metadata name it.
    empty_units : {"drop", "keep", "error"}
        What to do with units without spikes: drop them with a warning that names them, keep them, or
        refuse them with a ValueError.

    Attributes
    ----------
    spike_times : list of numpy.ndarray
        Read-only float64 arrays of spike times in seconds, one per unit.
    unit_ids : numpy.ndarray of str
        The unit ids, read-only.
    trials : numpy.ndarray or None
        Read-only ``(n_trials, 2)`` float64 array of trial ``[start, stop]`` in seconds.
    annotations : dict
    unit_annotations : list of dict
    source : str or None

    Raises
    ------
    ValueError
        If a spike time is NaN, infinite or negative, a unit's times are not sorted, a spike lies outside
        ``[t_start, t_stop]``, a trial is empty or outside the recording, ids are duplicated, or (with
        ``empty_units="error"``) a unit has no spikes. The message names the file and the unit.

    Examples
    --------
    >>> rec = Recording([[0.1, 0.25], [0.3]], unit_ids=["a", "b"], t_stop=1.0)
    >>> rec.bin("5 ms", trial_length="500 ms")
    SpikeCounts(2 trials x 100 bins x 2 units, bin_size=5 ms)
    """

    def __init__(
        self,
        spike_times: Sequence[np.ndarray | Sequence[float]],
        unit_ids: Sequence[str] | None = None,
        t_start: float | str | pq.Quantity | None = None,
        t_stop: float | str | pq.Quantity | None = None,
        *,
        trials: np.ndarray | Sequence[Sequence[float]] | None = None,
        annotations: dict[str, Any] | None = None,
        unit_annotations: Sequence[dict[str, Any]] | None = None,
        source: str | os.PathLike | None = None,
        empty_units: str = "drop",
    ) -> None:
        self.source = None if source is None else str(source)
        if empty_units not in _EMPTY_UNITS:
            raise ValueError(f"empty_units: expected one of {', '.join(_EMPTY_UNITS)}; got {empty_units!r}")
        try:
            ids = _unit_ids(unit_ids, len(spike_times)).tolist()
        except ValueError as error:
            raise ValueError(self._where(str(error))) from None
        times = [self._unit_times(values, unit) for values, unit in zip(spike_times, ids, strict=True)]
        unit_annotations = [{} for _ in ids] if unit_annotations is None else list(unit_annotations)
        if len(unit_annotations) != len(ids):
            raise ValueError(
                self._where(f"{len(unit_annotations)} unit annotation(s) for {len(ids)} unit(s)")
            )
        if not any(values.size for values in times):
            raise ValueError(self._where(f"none of the {len(ids)} unit(s) has spikes"))
        self.trials = None if trials is None else self._trials(trials)
        ends = [values[-1] for values in times if values.size]
        ends += [] if self.trials is None else [self.trials[:, 1].max()]
        self._t_start = 0.0 if t_start is None else _seconds(t_start, "t_start")
        self._t_stop = float(max(ends)) if t_stop is None else _seconds(t_stop, "t_stop")
        self._check_span(times, ids)
        empty = [k for k, values in enumerate(times) if values.size == 0]
        if empty and empty_units != "keep":
            names = ", ".join(repr(ids[k]) for k in empty)
            if empty_units == "error":
                raise ValueError(self._where(f"unit(s) {names} have no spikes (empty_units='error')"))
            warnings.warn(self._where(f"dropping {len(empty)} unit(s) without spikes: {names}"), stacklevel=2)
            keep = [k for k in range(len(ids)) if times[k].size]
            times, ids, unit_annotations = (
                [values[k] for k in keep] for values in (times, ids, unit_annotations)
            )
        self.spike_times = times
        self.unit_ids = _unit_ids(ids, len(ids))
        self.annotations = dict(annotations or {})
        self.unit_annotations = [dict(values) for values in unit_annotations]

    @classmethod
    def from_spike_times(
        cls,
        times_per_unit: Mapping[str, np.ndarray | Sequence[float]] | Sequence[np.ndarray | Sequence[float]],
        t_start: float | str | pq.Quantity | None = None,
        t_stop: float | str | pq.Quantity | None = None,
        **options: Any,
    ) -> Recording:
        """A recording from spike times per unit: a dict ``{unit_id: times}`` or a list of arrays.

        Times are in seconds, or quantities of any time unit. ``options`` go to :class:`Recording`
        (``trials``, ``annotations``, ``unit_annotations``, ``source``, ``empty_units``).

        Examples
        --------
        >>> Recording.from_spike_times({"a": [0.1, 0.2], "b": [0.15]}, t_stop="1 s")
        Recording(2 units, 3 spikes, 0 s to 1 s)
        """
        if isinstance(times_per_unit, Mapping):
            return cls(list(times_per_unit.values()), list(times_per_unit), t_start, t_stop, **options)
        return cls(list(times_per_unit), None, t_start, t_stop, **options)

    def select_units(self, ids: str | Iterable[str]) -> Recording:
        """The given units, in the given order, as a new Recording (same span, trials and annotations).

        Raises
        ------
        ValueError
            If an id is not among :attr:`unit_ids` (the message names the file).
        """
        columns = self._columns(ids, "select_units")
        return Recording(
            [self.spike_times[k] for k in columns],
            self.unit_ids[columns].tolist(),
            self._t_start,
            self._t_stop,
            trials=self.trials,
            annotations=self.annotations,
            unit_annotations=[self.unit_annotations[k] for k in columns],
            source=self.source,
            empty_units="keep",
        )

    @property
    def t_start(self) -> pq.Quantity:
        """Start of the recording, in s."""
        return pq.Quantity(self._t_start, "s")

    @property
    def t_stop(self) -> pq.Quantity:
        """End of the recording, in s."""
        return pq.Quantity(self._t_stop, "s")

    @property
    def duration(self) -> pq.Quantity:
        """``t_stop - t_start``, in s."""
        return pq.Quantity(self._t_stop - self._t_start, "s")

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self.spike_times)

    @property
    def n_spikes(self) -> np.ndarray:
        """Number of spikes of each unit."""
        return np.array([times.size for times in self.spike_times])

    def bin(
        self,
        bin_size: str | pq.Quantity,
        trial_length: str | pq.Quantity | None = None,
        t_start: float | str | pq.Quantity | None = None,
        t_stop: float | str | pq.Quantity | None = None,
        units: Sequence[str] | None = None,
        max_bytes: int = 4 * 2**30,
    ) -> SpikeCounts:
        """Count the spikes in bins of equal size, trial by trial.

        Bins are left-closed: bin ``j`` of a trial starting at ``s`` counts the spikes ``t`` with
        ``s + j * bin_size <= t < s + (j + 1) * bin_size``. The trials are, in this order of precedence:

        - ``trial_length`` given: consecutive trials of that length from ``t_start``; the incomplete tail
          is dropped (``metadata["dropped_s"]`` says how much);
        - the recording has :attr:`trials`: one trial per row that lies inside ``[t_start, t_stop]``, each
          starting at its start and all cut to the number of whole bins of the shortest one;
        - otherwise one trial from ``t_start`` with as many whole bins as fit before ``t_stop``.

        Parameters
        ----------
        bin_size : str or quantities.Quantity
            Width of a bin, e.g. ``"5 ms"``.
        trial_length : str or quantities.Quantity, optional
            Length of a trial, a whole number of bins, e.g. ``"500 ms"``.
        t_start, t_stop : float or str or quantities.Quantity, optional
            The span to bin (a bare number is in seconds); default the whole recording.
        units : sequence of str, optional
            The ids of the units to count, in this order; default all.
        max_bytes : int
            Refuse counts that would take more memory than this (default 4 GiB).

        Returns
        -------
        SpikeCounts
            Counts (trials, bins, units); ``metadata`` holds ``source``, ``bin_size``, ``trial_length``,
            ``t_start_s``, ``t_stop_s``, ``trial_starts_s`` and ``dropped_s``.

        Raises
        ------
        ValueError
            If a bin is longer than the span, a trial or the shortest trial; ``trial_length`` is not a whole
            number of bins; the span is outside the recording; a unit id is unknown; or the counts would
            exceed ``max_bytes``.
        """
        size = parse_time(bin_size, "bin_size")
        width = float(size.rescale("s"))
        start = self._t_start if t_start is None else _seconds(t_start, "t_start")
        stop = self._t_stop if t_stop is None else _seconds(t_stop, "t_stop")
        if not self._t_start <= start < stop <= self._t_stop:
            raise ValueError(
                self._where(
                    f"bin: the span {start:g} s to {stop:g} s is not a non-empty part of the recording "
                    f"({self._t_start:g} s to {self._t_stop:g} s)"
                )
            )
        columns = self._columns(units)
        length = None if trial_length is None else parse_time(trial_length, "trial_length")
        span = f"the span binned ({_format(pq.Quantity(stop - start, 's'))})"
        bin_label = f"bin_size {_format(size)}"
        if length is not None:
            seconds = float(length.rescale("s"))
            n_bins = self._whole_bins(seconds, width, f"trial_length {_format(length)}", bin_label)
            if n_bins * width * (1 + 1e-9) < seconds:
                raise ValueError(
                    self._where(
                        f"bin: trial_length {_format(length)} is not a whole number of bins "
                        f"of {_format(size)}"
                    )
                )
            n_trials = self._whole_bins(stop - start, n_bins * width, span, f"trial_length {_format(length)}")
            starts = start + np.arange(n_trials) * (n_bins * width)
        elif self.trials is not None:
            starts, stops = self.trials[(self.trials[:, 0] >= start) & (self.trials[:, 1] <= stop)].T
            if starts.size == 0:
                raise ValueError(self._where(f"bin: no trial lies inside {start:g} s to {stop:g} s"))
            shortest = pq.Quantity(np.min(stops - starts), "s")
            n_bins = self._whole_bins(
                float(shortest), width, f"the shortest trial ({_format(shortest)})", bin_label
            )
        else:
            n_bins = self._whole_bins(stop - start, width, span, bin_label)
            starts = np.array([start])
        metadata = {
            "source": self.source,
            "bin_size": _format(size),
            "trial_length": None if length is None else _format(length),
            "t_start_s": start,
            "t_stop_s": stop,
            "trial_starts_s": starts.tolist(),
            # Time of the span left out of every trial: the incomplete tail, or the trials' ends and gaps.
            "dropped_s": max(0.0, stop - start - len(starts) * n_bins * width),
        }
        counts = self._count(starts, n_bins, width, columns, max_bytes)
        return SpikeCounts(counts, size, self.unit_ids[columns].tolist(), metadata)

    def _count(
        self, starts: np.ndarray, n_bins: int, width: float, columns: list[int], max_bytes: int
    ) -> np.ndarray:
        """Counts (trials, bins, units) of the units in ``columns`` for trials from ``starts``."""
        busiest = max(self.spike_times[k].size for k in columns)
        dtype = next(dtype for dtype in _COUNT_DTYPES if busiest <= np.iinfo(dtype).max)
        shape = (len(starts), n_bins, len(columns))
        size = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        if size > max_bytes:
            raise ValueError(
                self._where(
                    f"bin: {shape[0]} trial(s) x {shape[1]} bins x {shape[2]} unit(s) of counts would take "
                    f"{size / 2**30:.3g} GiB (max_bytes={max_bytes}); use a larger bin size, fewer units "
                    "or a shorter span"
                )
            )
        counts = np.zeros((shape[0] * n_bins, shape[2]), dtype=dtype)
        ends = starts + n_bins * width
        trial_index = np.arange(len(starts))
        for column, unit in enumerate(columns):
            times = self.spike_times[unit]
            first = np.searchsorted(times, starts, side="left")
            lengths = np.searchsorted(times, ends, side="left") - first
            # Every spike of every trial (a spike twice where trials overlap): its trial and its position.
            trial = np.repeat(trial_index, lengths)
            spike = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - first, lengths)
            t, s = times[spike], starts[trial]
            j = np.floor((t - s) / width).astype(np.int64)
            # Make the bin agree exactly with the edges s + j * width despite rounding in the division.
            j -= t < s + j * width
            j += t >= s + (j + 1) * width
            flat, number = np.unique(trial * n_bins + j, return_counts=True)
            counts[flat, column] = number
        return counts.reshape(shape)

    def _whole_bins(self, length: float, width: float, outer: str, inner: str) -> int:
        """Number of whole pieces of ``width`` s (``inner``) in ``length`` s (``outer``); none: ValueError."""
        n_bins = int(np.floor(length / width * (1 + 1e-12)))
        if n_bins == 0:
            raise ValueError(self._where(f"bin: {inner} is longer than {outer}"))
        return n_bins

    def _columns(self, units: str | Iterable[str] | None, caller: str = "bin") -> list[int]:
        if units is None:
            return list(range(self.n_units))
        ids = [units] if isinstance(units, str) else [str(unit) for unit in units]
        position = {unit: k for k, unit in enumerate(self.unit_ids)}
        unknown = [unit for unit in ids if unit not in position]
        if unknown:
            raise ValueError(
                self._where(
                    f"{caller}: unknown unit id(s) {listing(unknown)}; "
                    f"known: {listing(self.unit_ids.tolist())}"
                )
            )
        return [position[unit] for unit in ids]

    def _unit_times(self, values: np.ndarray | Sequence[float], unit: str) -> np.ndarray:
        """One unit's spike times as a read-only float64 array in seconds, checked."""
        if isinstance(values, pq.Quantity):
            values = values.rescale("s").magnitude
        try:
            times = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(self._where(f"unit {unit!r}: spike times are not numbers ({error})")) from None
        if times.ndim != 1:
            raise ValueError(self._where(f"unit {unit!r}: expected 1-D spike times; got shape {times.shape}"))
        for bad, what in ((~np.isfinite(times), "NaN or infinite"), (times < 0, "negative")):
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(
                    self._where(
                        f"unit {unit!r}: {int(bad.sum())} {what} spike time(s), first at index {k} "
                        f"({times[k]})"
                    )
                )
        backwards = np.flatnonzero(np.diff(times) < 0)
        if backwards.size:
            k = int(backwards[0]) + 1
            raise ValueError(
                self._where(
                    f"unit {unit!r}: spike times are not sorted: index {k} ({times[k]} s) comes after "
                    f"{times[k - 1]} s ({backwards.size} place(s)); sort them first"
                )
            )
        times.flags.writeable = False
        return times

    def _trials(self, trials: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        array = np.array(trials, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(self._where(f"trials: expected an (n_trials, 2) array; got shape {array.shape}"))
        bad = ~np.isfinite(array).all(axis=1) | (array[:, 0] >= array[:, 1]) | (array[:, 0] < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                self._where(f"trials: trial {k} is [{array[k, 0]}, {array[k, 1]}]; need 0 <= start < stop")
            )
        array.flags.writeable = False
        return array

    def _check_span(self, times: list[np.ndarray], ids: list[str]) -> None:
        """Check that t_start < t_stop and that every spike and trial lies inside them."""
        if not 0 <= self._t_start < self._t_stop:
            raise ValueError(
                self._where(
                    f"need 0 <= t_start < t_stop; got t_start={self._t_start} s, t_stop={self._t_stop} s"
                )
            )
        span = f"[t_start, t_stop] = [{self._t_start:g}, {self._t_stop:g}] s"
        for unit, values in zip(ids, times, strict=True):
            outside = (values < self._t_start) | (values > self._t_stop)
            if outside.any():
                k = int(np.argmax(outside))
                raise ValueError(
                    self._where(
                        f"unit {unit!r}: {int(outside.sum())} spike(s) outside {span}, first at index {k} "
                        f"({values[k]} s)"
                    )
                )
        if self.trials is not None:
            outside = (self.trials[:, 0] < self._t_start) | (self.trials[:, 1] > self._t_stop)
            if outside.any():
                k = int(np.argmax(outside))
                raise ValueError(
                    self._where(
                        f"trials: trial {k} [{self.trials[k, 0]}, {self.trials[k, 1]}] s is outside {span}"
                    )
                )

    def _where(self, message: str) -> str:
        """Prefix a message with the file the recording came from, if known."""
        return message if self.source is None else f"{self.source}: {message}"

    def __repr__(self) -> str:
        units = "unit" if self.n_units == 1 else "units"
        trials = "" if self.trials is None else f", {len(self.trials)} trials"
        return (
            f"Recording({self.n_units} {units}, {int(self.n_spikes.sum())} spikes, "
            f"{self._t_start:g} s to {self._t_stop:g} s{trials})"
        )


def _seconds(value: float | str | pq.Quantity, name: str) -> float:
    """A time in seconds from a number (already in seconds), a quantity or a string such as ``"2 s"``."""
    if isinstance(value, Real):
        seconds = float(value)
    elif isinstance(value, pq.Quantity) and value.size == 1:
        if value.simplified.dimensionality != pq.s.dimensionality:
            raise ValueError(f"{name}: {value} is not a time")
        seconds = float(value.rescale("s").magnitude.item())
    else:
        seconds = float(parse_time(value, name).rescale("s"))
    if not np.isfinite(seconds):
        raise ValueError(f"{name}: must be finite; got {seconds}")
    return seconds
