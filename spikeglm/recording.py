"""Spike times: :class:`Recording`, the sorted units' spike times on one time line, as read from a file.

:meth:`Recording.bin` counts them in bins of equal size, trial by trial, into
:class:`~spikeglm.counts.SpikeCounts`; :meth:`Recording.from_counts` spreads counts back into spike times.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import quantities as pq

from spikeglm.counts import COUNT_DTYPES, MAX_BINS, SpikeCounts
from spikeglm.memory import available_memory, format_bytes
from spikeglm.timeunits import format_time, parse_time, seconds
from spikeglm.unitids import UnitIds, check_unit_ids, unit_columns

__all__ = ["Recording"]

_EMPTY_UNITS = ("drop", "keep", "error")
#: A unit is refused when more than half of its spike times, and at least this many, repeat the time
#: before them: several spikes of one neuron in the same instant are impossible.
REPEATS_REFUSED = 1000
#: :meth:`Recording.suspicious_units` notes the times at which more than this many units spike at once,
#: and leaves them out of the comparison of pairs of units.
CROWD = 16


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
        The recorded span; a bare number is in seconds. Times may be negative (before the file's
        reference time). Default: 0 s or the first spike or trial start, whichever is earlier, and the
        last spike or the end of the last trial, whichever is later.
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
        If a spike time is not a real number or is NaN or infinite, a unit's times are not sorted or
        mostly repeat one another (:data:`REPEATS_REFUSED`), a spike lies outside
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
        unit_ids: UnitIds | None = None,
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
            ids = check_unit_ids(unit_ids, len(spike_times)).tolist()
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
        firsts = [0.0] + [values[0] for values in times if values.size]
        firsts += [] if self.trials is None else [self.trials[:, 0].min()]
        ends = [values[-1] for values in times if values.size]
        ends += [] if self.trials is None else [self.trials[:, 1].max()]
        self._t_start = float(min(firsts)) if t_start is None else seconds(t_start, "t_start")
        self._t_stop = float(max(ends)) if t_stop is None else seconds(t_stop, "t_stop")
        # Whether each end was stated (by the file or the caller) rather than inferred from spikes and trials.
        self._stated = (t_start is not None, t_stop is not None)
        self._check_span(times, ids)
        empty = [k for k, values in enumerate(times) if values.size == 0]
        if empty and empty_units != "keep":
            names = ", ".join(repr(ids[k]) for k in empty)
            if empty_units == "error":
                raise ValueError(self._where(f"unit(s) {names} have no spikes (empty_units='error')"))
            warnings.warn(self._where(f"dropping {len(empty)} unit(s) without spikes: {names}"), stacklevel=2)
            keep = [k for k in range(len(ids)) if times[k].size]
            times = [times[k] for k in keep]
            ids = [ids[k] for k in keep]
            unit_annotations = [unit_annotations[k] for k in keep]
        self.spike_times = times
        self.unit_ids = check_unit_ids(ids, len(ids))
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

    @classmethod
    def from_pynapple(cls, group: Any, trials: Any = None, *, empty_units: str = "drop") -> Recording:
        """A recording from a pynapple ``TsGroup`` (pynapple is an optional extra:
        ``pip install "spikeglm[pynapple]"``); the group is read, not changed.

        Units come in the order of the group's keys, named by the metadata column ``unit_name``,
        ``name`` or ``label`` (the first holding unique text, as pynapple's NWB loader gives them), else
        by their keys; the other metadata columns but ``rate`` become :attr:`unit_annotations` (with the
        key as ``"tsgroup_key"``), so that a ``quality`` or ``label`` column serves
        ``spikeglm.load(..., label=...)``. The span runs from the first start to the last end of the
        group's time support and the trials. See :mod:`spikeglm.io.objects`.

        Parameters
        ----------
        group : pynapple.TsGroup
        trials : pynapple.IntervalSet or array_like, shape (n_trials, 2), optional
            The trials, ``[start, end]`` in s; default the intervals of the time support where it has
            several, else none.
        empty_units : {"drop", "keep", "error"}
            Units without spikes (see :class:`Recording`).

        Raises
        ------
        TypeError
            If ``group`` is not a TsGroup, naming the extra.
        ValueError
            If the group has no units, a unit's times are not finite, sorted numbers, or the trials are
            not intervals inside the span; the message names the unit or ``trials``.
        """
        from spikeglm.io.objects import pynapple_parts

        return cls(**pynapple_parts(group, trials), empty_units=empty_units)

    @classmethod
    def from_spikeinterface(
        cls, sorting: Any, segment_index: int | None = None, *, empty_units: str = "drop"
    ) -> Recording:
        """A recording from a SpikeInterface sorting (SpikeInterface is an optional extra:
        ``pip install "spikeglm[spikeinterface]"``); the sorting is read, not changed.

        Units come in the order of ``sorting.get_unit_ids()``, their times in seconds as the sorting
        gives them (``get_unit_spike_train(..., return_times=True)``: its recording's times, else the
        samples over its sampling frequency). Their properties of one simple value per unit become
        :attr:`unit_annotations`, with the label (``quality``, else ``KSLabel``; ``unsorted`` where a unit
        has none) as ``"label"``, as phy folders are read. See :mod:`spikeglm.io.objects`.

        Parameters
        ----------
        sorting : spikeinterface.BaseSorting
        segment_index : int, optional
            Read this segment alone, as one recording without trials. By default every segment is read,
            each a trial on its own clock: segments that overlap in time (each starting at 0 s) are laid
            end to end, as neo's Segments are (``annotations["segment_offsets_s"]``). A segment spans its
            registered recording, else its start to its last spike.
        empty_units : {"drop", "keep", "error"}
            Units without spikes (see :class:`Recording`).

        Raises
        ------
        TypeError
            If ``sorting`` is not a sorting, naming the extra.
        ValueError
            If ``segment_index`` is out of range, the sorting has no units, or a unit's times are not
            finite and sorted; the message names the parameter or the unit.
        """
        from spikeglm.io.objects import spikeinterface_parts

        return cls(**spikeinterface_parts(sorting, segment_index), empty_units=empty_units)

    @classmethod
    def from_neo(cls, obj: Any, *, empty_units: str = "drop") -> Recording:
        """A recording from neo objects: a ``Block`` (or a list of Blocks, as neo's IOs read them), a
        ``Segment`` or a list of ``SpikeTrain``; they are read, not changed.

        As files read through neo are: with two or more Segments each is a trial, laid end to end where
        they overlap, and the SpikeTrains of one unit are matched across Segments by ``name`` (else
        their ``unit_id`` or ``unit_name`` annotation, else their position). A list of SpikeTrains is
        one Segment from their first start to their last stop. See :mod:`spikeglm.io.objects`.

        Raises
        ------
        TypeError
            If ``obj`` is none of those.
        ValueError
            If it holds no spike trains, a Segment holds two spike trains of one name, or a unit's times
            are not finite and sorted.

        Examples
        --------
        >>> import neo
        >>> trains = [neo.SpikeTrain([0.1, 0.4], t_stop=1, units="s", name="a"),
        ...           neo.SpikeTrain([250], t_stop=1000, units="ms", name="b")]
        >>> Recording.from_neo(trains).unit_ids.tolist()
        ['a', 'b']
        """
        from spikeglm.io.objects import neo_parts

        return cls(**neo_parts(obj), empty_units=empty_units)

    @classmethod
    def from_counts(cls, counts: SpikeCounts, seed: int = 0) -> Recording:
        """Spike times that bin back to ``counts``: trials end to end from 0 s, spikes spread in bins.

        Trial ``r`` spans ``[r T, (r + 1) T)`` with ``T`` the trial duration, and the ``c`` spikes of a
        bin are placed uniformly at random inside it (``seed``), never on an edge, so that
        ``Recording.from_counts(counts).bin(counts.bin_size)`` gives the counts back. The trials become
        the recording's trials table; unit ids and metadata are kept.
        """
        rng = np.random.default_rng(seed)
        width = counts.bin_seconds
        trial, bin_, unit = np.nonzero(counts.counts)
        repeats = counts.counts[trial, bin_, unit].astype(np.int64)
        starts = (np.repeat(trial * counts.n_bins + bin_, repeats)) * width
        # Uniform in the open bin: (0.05 .. 0.95) of its width keeps clear of edges and rounding.
        times = starts + width * rng.uniform(0.05, 0.95, size=starts.size)
        owner = np.repeat(unit, repeats)
        spike_times = [np.sort(times[owner == k]) for k in range(counts.n_units)]
        duration = counts.n_bins * width
        trials = np.column_stack([np.arange(counts.n_trials), np.arange(1, counts.n_trials + 1)]) * duration
        return cls(
            spike_times,
            list(counts.unit_ids),
            0.0,
            counts.n_trials * duration,
            trials=trials,
            annotations=dict(counts.metadata),
            empty_units="keep",
        )

    def select_units(self, ids: str | Iterable[str]) -> Recording:
        """The given units, in the given order, as a new Recording (same span, trials and annotations).

        Raises
        ------
        ValueError
            If an id is not among :attr:`unit_ids` (the message names the file).
        """
        columns = unit_columns(ids, self.unit_ids, self._where("select_units"))
        selected = Recording(
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
        selected._stated = self._stated
        return selected

    def window(
        self,
        t_start: float | str | pq.Quantity | None = None,
        t_stop: float | str | pq.Quantity | None = None,
        *,
        empty_units: str = "keep",
    ) -> Recording:
        """The part of the recording from ``t_start`` to ``t_stop``, as a new Recording.

        Spikes with ``t_start <= t <= t_stop`` are kept, and the trials that lie wholly inside; the new
        recording spans exactly the window. The window must lie inside the span the recording was
        observed over (the file's stated span, e.g. an NWB file's ``obs_intervals``): silence outside it
        was never recorded. Only an end the file does not state (a span inferred from the first or last
        spike or trial) may be moved out by the window, to state the true span of the recording.

        A window that cuts trials or leaves none whole warns, saying how many trials it kept whole and
        how many it dropped, and so does ``annotations["assumed"]["trials"]``; with no trial left, the
        window is one long trial.

        Parameters
        ----------
        t_start, t_stop : float or str or quantities.Quantity, optional
            The window (a bare number is in seconds); default the recording's own start and stop.
        empty_units : {"keep", "drop", "error"}
            Units without spikes in the window (see :class:`Recording`).

        Raises
        ------
        ValueError
            If the window is empty, lies outside the recording, reaches past an end the recording
            states, or holds no spikes at all; the message names ``t_start`` or ``t_stop``.
        """
        start = self._t_start if t_start is None else seconds(t_start, "t_start")
        stop = self._t_stop if t_stop is None else seconds(t_stop, "t_stop")
        span = f"the recording ({self._t_start:g} s to {self._t_stop:g} s)"
        if not start < stop:
            raise ValueError(self._where(f"window: need t_start < t_stop; got {start:g} s and {stop:g} s"))
        if stop <= self._t_start or start >= self._t_stop:
            raise ValueError(self._where(f"window: {start:g} s to {stop:g} s lies outside {span}"))
        beyond = [
            f"{name}={value:g} s ({option})"
            for name, value, option, outside in (
                ("t_start", start, "--t-start", self._stated[0] and start < self._t_start),
                ("t_stop", stop, "--t-stop", self._stated[1] and stop > self._t_stop),
            )
            if outside
        ]
        if beyond:
            raise ValueError(
                self._where(
                    f"window: {' and '.join(beyond)} reaches outside the span the recording was observed "
                    f"over, {self._t_start:g} s to {self._t_stop:g} s (outside it nothing was recorded, not "
                    "even silence); choose a window inside it"
                )
            )
        times = [
            values[np.searchsorted(values, start) : np.searchsorted(values, stop, side="right")]
            for values in self.spike_times
        ]
        trials, annotations = None, dict(self.annotations)
        if self.trials is not None:
            trials, annotations["assumed"] = self._window_trials(self.trials, start, stop)
        return Recording(
            times,
            self.unit_ids.tolist(),
            start,
            stop,
            trials=trials,
            annotations=annotations,
            unit_annotations=self.unit_annotations,
            source=self.source,
            empty_units=empty_units,
        )

    def _window_trials(
        self, trials: np.ndarray, start: float, stop: float
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        """The ``trials`` (this recording's) wholly inside ``[start, stop]`` (None if none), and
        ``annotations["assumed"]`` saying so; warns when the window cuts trials or keeps none."""
        whole = (trials[:, 0] >= start) & (trials[:, 1] <= stop)
        cut = ~whole & (trials[:, 0] < stop) & (trials[:, 1] > start)
        kept, total = int(whole.sum()), len(trials)
        assumed = dict(self.annotations.get("assumed", {}))
        told = assumed.get("trials", f"{total} trials")
        done = f"the window {start:g} s to {stop:g} s keeps {kept} of {total} trials whole"
        done += f" and drops {total - kept}"
        if cut.any():
            done += f" ({int(cut.sum())} cut by its ends)"
        if not kept:
            done += "; with no trial left, the window is one long trial"
        assumed["trials"] = f"{told}; {done}"
        if cut.any() or not kept:
            warnings.warn(self._where(done), stacklevel=3)
        return (trials[whole] if kept else None), assumed

    def select_active(self, min_spikes: int = 0, min_rate: float = 0.0) -> Recording:
        """The units with at least ``min_spikes`` spikes and a mean rate of at least ``min_rate`` Hz.

        The rate is the number of spikes over :attr:`duration`. Returns a new Recording.

        Raises
        ------
        ValueError
            If no unit passes (the message names the busiest unit).
        """
        rates = self.n_spikes / float(self.duration)
        keep = (self.n_spikes >= min_spikes) & (rates >= min_rate)
        if not keep.any():
            busiest = int(np.argmax(self.n_spikes))
            raise ValueError(
                self._where(
                    f"no unit has at least {min_spikes} spikes and {min_rate:g} Hz; the busiest, "
                    f"{self.unit_ids.tolist()[busiest]!r}, has {self.n_spikes[busiest]} spikes "
                    f"({rates[busiest]:.3g} Hz)"
                )
            )
        return self.select_units(self.unit_ids[keep].tolist())

    def shared_spikes(self, max_units: int | None = None) -> np.ndarray:
        """Identical spike times of pairs of units, in sparse form: an ``(n_pairs, 3)`` int64 array.

        Each row ``(i, j, count)`` (``i < j``, positions in :attr:`unit_ids`) counts the times at which
        both units ``i`` and ``j`` have a spike; pairs that share no time have no row, and rows come in
        order of ``i``, then ``j``. A unit's repeated time counts once. Many shared times betray
        electrical crosstalk, or one neuron sorted twice. The rows take memory in proportion to the
        pairs that share a time, never to the square of the number of units.

        Parameters
        ----------
        max_units : int, optional
            Leave out the times at which more than this many units spike at once (an artifact on every
            channel): a time shared by ``k`` units makes ``k (k - 1) / 2`` pairs. Default: none left out.
        """
        return self._pairs(*self._coincidences()[1:], max_units)

    def _pairs(
        self, owners: np.ndarray, starts: np.ndarray, sizes: np.ndarray, max_units: int | None
    ) -> np.ndarray:
        """:meth:`shared_spikes` from :meth:`_coincidences`."""
        if max_units is not None:
            sizes = np.where(sizes > max_units, 1, sizes)
        codes = [np.empty(0, dtype=np.int64)]
        for size in np.unique(sizes[sizes > 1]).tolist():
            first, second = np.triu_indices(size, 1)
            group = starts[sizes == size][:, None]
            # Within a time, owners are sorted: the first of a pair is the smaller unit.
            codes.append((owners[group + first] * self.n_units + owners[group + second]).ravel())
        pairs, counts = np.unique(np.concatenate(codes), return_counts=True)
        return np.column_stack([pairs // self.n_units, pairs % self.n_units, counts]).astype(np.int64)

    def suspicious_units(self, few_spikes: int = 20, shared_fraction: float = 0.1) -> list[str]:
        """Warnings about units that may not be single neurons, one sentence each.

        Parameters
        ----------
        few_spikes : int
            A unit with fewer spikes than this is named.
        shared_fraction : float
            Two units are named when at least this share of the smaller one's spikes (and at least 3)
            fall at times where the other also has a spike (see :meth:`shared_spikes`).

        Returns
        -------
        list of str
            Units with few spikes, units with repeated spike times (a neuron cannot fire twice at
            once), the times at which more than :data:`CROWD` units spike at once (left out of the
            comparison of pairs), then pairs by the number of times they share, most first; empty when
            nothing looks wrong.
        """
        ids = self.unit_ids.tolist()
        notes = [
            f"unit {unit!r}: only {n} spike(s)"
            for unit, n in zip(ids, self.n_spikes, strict=True)
            if n < few_spikes
        ]
        for unit, values in zip(ids, self.spike_times, strict=True):
            repeats = np.count_nonzero(np.diff(values) == 0)
            if repeats:
                notes.append(
                    f"unit {unit!r}: {repeats} spike(s) at the same time as its previous spike (a neuron "
                    "cannot fire twice at once)"
                )
        times, owners, starts, sizes = self._coincidences()
        crowded = starts[sizes > CROWD]
        if crowded.size:
            notes.append(
                f"{crowded.size} time(s) at which more than {CROWD} units spike at once (first at "
                f"{times[crowded[0]]:g} s): an artifact on every channel, left out of the pairs below"
            )
        shared = self._pairs(owners, starts, sizes, CROWD)
        first, second, count = shared.T
        smaller = np.minimum(self.n_spikes[first], self.n_spikes[second])
        flagged = np.flatnonzero((count >= 3) & (count >= shared_fraction * smaller))
        for k in flagged[np.argsort(-count[flagged], kind="stable")]:
            notes.append(
                f"units {ids[first[k]]!r} and {ids[second[k]]!r}: {count[k]} identical spike times "
                f"({count[k] / smaller[k]:.0%} of the smaller unit's spikes): crosstalk, or one neuron "
                "sorted twice"
            )
        return notes

    def _coincidences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every spike time once per unit, sorted by time then unit: the times, their units, and where
        each distinct time starts and how many units share it."""
        owners = np.repeat(np.arange(self.n_units), self.n_spikes)
        times = np.concatenate(self.spike_times)
        order = np.lexsort((owners, times))
        times, owners = times[order], owners[order]
        first = np.ones(times.size, dtype=bool)
        first[1:] = (times[1:] != times[:-1]) | (owners[1:] != owners[:-1])
        times, owners = times[first], owners[first]
        starts = np.flatnonzero(np.r_[True, times[1:] != times[:-1]])
        return times, owners, starts, np.diff(np.r_[starts, times.size])

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
        width = seconds(size, "bin_size")
        start = self._t_start if t_start is None else seconds(t_start, "t_start")
        stop = self._t_stop if t_stop is None else seconds(t_stop, "t_stop")
        if not self._t_start <= start < stop <= self._t_stop:
            raise ValueError(
                self._where(
                    f"bin: the span {start:g} s to {stop:g} s is not a non-empty part of the recording "
                    f"({self._t_start:g} s to {self._t_stop:g} s)"
                )
            )
        columns = unit_columns(units, self.unit_ids, self._where("bin"))
        length = None if trial_length is None else parse_time(trial_length, "trial_length")
        span = f"the span binned ({format_time(pq.Quantity(stop - start, 's'))})"
        bin_label = f"bin_size {format_time(size)}"
        if length is not None:
            starts, n_bins = self._fixed_trials(length, size, start, stop, span)
        elif self.trials is not None:
            starts, stops = self.trials[(self.trials[:, 0] >= start) & (self.trials[:, 1] <= stop)].T
            if starts.size == 0:
                raise ValueError(self._where(f"bin: no trial lies inside {start:g} s to {stop:g} s"))
            shortest = pq.Quantity(np.min(stops - starts), "s")
            n_bins = self._whole_bins(
                float(shortest), width, f"the shortest trial ({format_time(shortest)})", bin_label
            )
        else:
            n_bins = self._whole_bins(stop - start, width, span, bin_label)
            starts = np.array([start])
        metadata = {
            "source": self.source,
            "bin_size": format_time(size),
            "trial_length": None if length is None else format_time(length),
            "t_start_s": start,
            "t_stop_s": stop,
            "trial_starts_s": starts.tolist(),
            # Time of the span left out of every trial: the incomplete tail, or the trials' ends and gaps.
            "dropped_s": max(0.0, stop - start - len(starts) * n_bins * width),
        }
        counts = self._count(starts, n_bins, width, columns, max_bytes)
        return SpikeCounts(counts, size, self.unit_ids[columns].tolist(), metadata)

    def _fixed_trials(
        self, length: pq.Quantity, size: pq.Quantity, start: float, stop: float, span: str
    ) -> tuple[np.ndarray, int]:
        """Where consecutive trials of ``length`` from ``start`` to ``stop`` (the ``span``, for messages)
        start, and their bins of ``size`` each; refused unless a trial is a whole number of bins and at
        least one fits."""
        width, length_s = seconds(size, "bin_size"), seconds(length, "trial_length")
        label = f"trial_length {format_time(length)}"
        n_bins = self._whole_bins(length_s, width, label, f"bin_size {format_time(size)}")
        if n_bins * width * (1 + 1e-9) < length_s:
            raise ValueError(
                self._where(f"bin: {label} is not a whole number of bins of {format_time(size)}")
            )
        n_trials = self._whole_bins(stop - start, n_bins * width, span, label)
        return start + np.arange(n_trials) * (n_bins * width), n_bins

    def _count(
        self, starts: np.ndarray, n_bins: int, width: float, columns: list[int], max_bytes: int
    ) -> np.ndarray:
        """Counts (trials, bins, units) of the units in ``columns`` for trials from ``starts``."""
        busiest = max(self.spike_times[k].size for k in columns)
        dtype = next(dtype for dtype in COUNT_DTYPES if busiest <= np.iinfo(dtype).max)
        shape = (len(starts), n_bins, len(columns))
        size = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        available = available_memory()
        if size > min(max_bytes, available):
            bound = (
                f"max_bytes ({format_bytes(max_bytes)})"
                if size > max_bytes
                else f"the {format_bytes(available)} of memory available"
            )
            raise ValueError(
                self._where(
                    f"bin: {shape[0]} trial(s) x {shape[1]} bins x {shape[2]} unit(s) of counts would take "
                    f"{format_bytes(size)}, more than {bound}; "
                    "use a larger bin size, fewer units or a shorter span (--bin-size, --units, "
                    "--t-start/--t-stop)"
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
        ratio = length / width * (1 + 1e-12)
        if not ratio < MAX_BINS:  # also an infinite ratio, from a bin size near zero
            many = f"{ratio:.3g}" if np.isfinite(ratio) else "more than 1e308"
            raise ValueError(
                self._where(f"bin: {inner} makes {many} bins of {outer}; use a larger bin_size (--bin-size)")
            )
        n_bins = int(np.floor(ratio))
        if n_bins == 0:
            raise ValueError(self._where(f"bin: {inner} is longer than {outer}"))
        return n_bins

    def _unit_times(self, values: np.ndarray | Sequence[float], unit: str) -> np.ndarray:
        """One unit's spike times as a read-only float64 array in seconds, checked."""
        if isinstance(values, pq.Quantity):
            values = values.rescale("s").magnitude
        if isinstance(values, np.ndarray) and values.dtype.kind not in "iufO":
            raise ValueError(
                self._where(f"unit {unit!r}: spike times must be real numbers; got {values.dtype}")
            )
        try:
            times = np.array(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(self._where(f"unit {unit!r}: spike times are not numbers ({error})")) from None
        if times.ndim != 1:
            raise ValueError(self._where(f"unit {unit!r}: expected 1-D spike times; got shape {times.shape}"))
        bad = ~np.isfinite(times)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                self._where(
                    f"unit {unit!r}: {int(bad.sum())} NaN or infinite spike time(s), first at index {k} "
                    f"({times[k]})"
                )
            )
        backwards = np.flatnonzero(times[1:] < times[:-1])  # no array of differences: units can be large
        if backwards.size:
            k = int(backwards[0]) + 1
            raise ValueError(
                self._where(
                    f"unit {unit!r}: spike times are not sorted: index {k} ({times[k]} s) comes after "
                    f"{times[k - 1]} s ({backwards.size} place(s)); sort them first"
                )
            )
        repeats = np.count_nonzero(times[1:] == times[:-1])
        if repeats >= REPEATS_REFUSED and repeats > times.size / 2:
            raise ValueError(
                self._where(
                    f"unit {unit!r}: {repeats} of its {times.size} spike times repeat the time before them; "
                    "a neuron cannot fire twice at once, so this is not a spike train (check how the file "
                    "was written)"
                )
            )
        times.flags.writeable = False
        return times

    def _trials(self, trials: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        array = np.array(trials, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
            raise ValueError(self._where(f"trials: expected an (n_trials, 2) array; got shape {array.shape}"))
        bad = ~np.isfinite(array).all(axis=1) | (array[:, 0] >= array[:, 1])
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                self._where(f"trials: trial {k} is [{array[k, 0]}, {array[k, 1]}]; need start < stop")
            )
        array.flags.writeable = False
        return array

    def _check_span(self, times: list[np.ndarray], ids: list[str]) -> None:
        """Check that t_start < t_stop and that every spike and trial lies inside them."""
        if not self._t_start < self._t_stop:
            raise ValueError(
                self._where(f"need t_start < t_stop; got t_start={self._t_start} s, t_stop={self._t_stop} s")
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
