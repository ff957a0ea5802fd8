"""Binned spike counts: :class:`SpikeCounts`, the ``(trials, bins, units)`` counts that the models fit.

A SpikeCounts holds the counts with the bin size and an id per unit; :meth:`SpikeCounts.from_array`
makes it from an array or a tensor and checks it. :meth:`spikeglm.recording.Recording.bin` makes it from
spike times, and :meth:`spikeglm.recording.Recording.from_counts` turns it back into spike times.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import quantities as pq
import torch

from spikeglm.timeunits import format_time, parse_time, seconds
from spikeglm.unitids import UnitIds, check_unit_ids, unit_columns

__all__ = ["COUNT_DTYPES", "SpikeCounts"]

#: The dtypes counts are stored in, smallest first: the first that holds the largest count is used.
COUNT_DTYPES = (np.uint8, np.uint16, np.uint32)
#: The most bins a span may be cut into: past 2^53, bin numbers are no longer exact in floating point (the
#: counts of so many bins could not be held anyway).
MAX_BINS = 2**53


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
        The bin width, in the unit it was given in.
    bin_seconds : float
        The bin width in seconds.
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
        unit_ids: UnitIds | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        array = np.asarray(counts)
        if array.ndim != 3:
            raise ValueError(f"counts: expected 3 dimensions (trials, bins, units); got shape {array.shape}")
        # The bin size is read once. Arithmetic uses its value in seconds; the quantity as given keeps the
        # unit and the exact magnitude that str(bin_size) shows (model files store that string), which
        # rescaling the seconds back would not always reproduce (0.9 ms -> 0.9000000000000001 ms).
        self._bin_size = parse_time(bin_size, "bin_size")
        self._bin_seconds = seconds(self._bin_size, "bin_size")
        self.unit_ids = check_unit_ids(unit_ids, array.shape[2])
        self.counts = _compact_counts(array, self.unit_ids)
        self.metadata = dict(metadata or {})

    @classmethod
    def from_array(
        cls,
        array: np.ndarray | torch.Tensor,
        bin_size: str | pq.Quantity = "5 ms",
        unit_ids: UnitIds | None = None,
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
    def bin_size(self) -> pq.Quantity:
        """Width of a bin, in the unit it was given in, e.g. ``array(5.) * ms``."""
        return self._bin_size

    @property
    def bin_seconds(self) -> float:
        """Width of a bin in seconds."""
        return self._bin_seconds

    @property
    def source(self) -> str:
        """What messages about these counts name: the file they were binned from, else ``"counts"``."""
        return str(self.metadata.get("source") or "counts")

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

    def bin_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the bins lie on the recording's clock, for series of values per bin.

        Returns
        -------
        centres : numpy.ndarray, shape (trials, bins)
            The time of each bin's centre, in s: a trial's start (``metadata["trial_starts_s"]``) plus
            ``(bin + 0.5) * bin_seconds``. Counts that do not say where their trials start (made with
            :meth:`from_array`) are taken as trials one after another from 0 s.
        spans : numpy.ndarray, shape (trials, 2)
            Each trial's start and stop (its start plus ``n_bins * bin_seconds``), in s.

        Raises
        ------
        ValueError
            If a trial starts before the previous one stops (overlapping or unordered trials), as the
            bins' times would then not ascend.
        """
        starts = self.metadata.get("trial_starts_s")
        if starts is None:
            starts = np.arange(self.n_trials) * self.n_bins * self.bin_seconds
        starts = np.asarray(starts, dtype=np.float64)
        stops = starts + self.n_bins * self.bin_seconds
        # a trial may start where the previous one stops, up to rounding
        early = np.flatnonzero(starts[1:] < stops[:-1] - 1e-6 * self.bin_seconds)
        if early.size:
            k = int(early[0]) + 1
            raise ValueError(
                f"{self.source}: trial {k} starts at {starts[k]:g} s, before trial {k - 1} stops at "
                f"{stops[k - 1]:g} s; bins on one time line need trials that neither overlap nor go back"
            )
        centres = starts[:, None] + (np.arange(self.n_bins) + 0.5) * self.bin_seconds
        return centres, np.stack([starts, stops], axis=1)

    def to_tensor(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The counts as a new tensor of shape (trials, bins, units)."""
        return torch.from_numpy(self.counts.astype(np.int64)).to(dtype=dtype, device=device)

    def select_trials(self, index: int | slice | Sequence[int] | np.ndarray) -> SpikeCounts:
        """The trials picked by an int, a slice, a sequence of ints or a boolean mask, as new SpikeCounts.

        An int keeps the trial dimension (one trial). ``counts[index]`` does the same. The metadata's
        ``trial_starts_s`` (where each trial starts in the recording) follow the trials picked.
        """
        trials = np.atleast_1d(np.arange(self.n_trials)[index])
        picked = self._with_counts(self.counts[trials], self.unit_ids)
        starts = self.metadata.get("trial_starts_s")
        if starts is not None and len(starts) == self.n_trials:
            picked.metadata["trial_starts_s"] = [starts[k] for k in trials]
        return picked

    __getitem__ = select_trials

    def __len__(self) -> int:
        return self.n_trials

    def select_units(self, ids: str | Iterable[str]) -> SpikeCounts:
        """The given units, in the given order, as new SpikeCounts.

        Raises
        ------
        ValueError
            If an id is not among :attr:`unit_ids`.
        """
        columns = unit_columns(ids, self.unit_ids, "select_units")
        return self._with_counts(self.counts[:, :, columns], self.unit_ids[columns])

    def split(
        self,
        *,
        train: float | None = None,
        test: float | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ) -> tuple[SpikeCounts, SpikeCounts]:
        """Split the trials into a training and a test part.

        Name the share of one part: ``split(train=0.8)`` and ``split(test=0.2)`` are the same split. With
        neither, 33% of the trials (rounded) are the test part. Every argument is named, so that a bare
        share such as ``split(0.8)``, which could mean either part, is refused.

        One trial (a continuous recording) is cut in time instead: the first bins are the training part
        and the last ``test`` share of them (rounded to whole bins) the test part, each one trial, the
        test part's start time (``trial_starts_s``) where its first bin lies. ``shuffle`` does not apply.

        Parameters
        ----------
        train : float, optional
            Share of the trials that go to the training part (rounded to a whole number of trials).
        test : float, optional
            Share of the trials that go to the test part (rounded to a whole number of trials).
        seed : int
            Seed of the shuffle; the same seed gives the same split.
        shuffle : bool
            Draw the test trials at random; otherwise the last trials are the test part.

        Returns
        -------
        train, test : SpikeCounts
            Disjoint, together all trials (or all bins of the one trial), each in the original order.

        Raises
        ------
        ValueError
            If more than one share is given, the share is not in (0, 1), or either part would be empty
            (the message names the share and the trials or bins).
        """
        shares = {"train": train, "test": test}
        given = {name: share for name, share in shares.items() if share is not None}
        if len(given) > 1:
            raise ValueError(f"split: give the share of one part only; got {', '.join(given)}")
        name, share = next(iter(given.items()), ("test", 0.33))
        if not 0 < share < 1:
            raise ValueError(f"split: {name} must be between 0 and 1; got {share}")
        if self.n_trials == 1:
            return self._split_in_time(name, share)
        n_train = (
            round(share * self.n_trials) if name == "train" else self.n_trials - round(share * self.n_trials)
        )
        if not 0 < n_train < self.n_trials:
            part = "training" if n_train == 0 else "test"
            raise ValueError(
                f"split: {name}={share} of {self.n_trials} trial(s) leaves the {part} part empty"
            )
        order = (
            np.random.default_rng(seed).permutation(self.n_trials) if shuffle else np.arange(self.n_trials)
        )
        return self.select_trials(np.sort(order[:n_train])), self.select_trials(np.sort(order[n_train:]))

    def _split_in_time(self, name: str, share: float) -> tuple[SpikeCounts, SpikeCounts]:
        """:meth:`split` of one trial: its first bins and its last ``share`` (of the part ``name``)."""
        cut = round(share * self.n_bins) if name == "train" else self.n_bins - round(share * self.n_bins)
        if not 0 < cut < self.n_bins:
            part = "training" if cut == 0 else "test"
            raise ValueError(f"split: {name}={share} of {self.n_bins} bins leaves the {part} part empty")
        first = self._with_counts(self.counts[:, :cut], self.unit_ids)
        last = self._with_counts(self.counts[:, cut:], self.unit_ids)
        starts = self.metadata.get("trial_starts_s")
        if starts is not None and len(starts) == 1:
            first.metadata["trial_starts_s"] = [starts[0]]
            last.metadata["trial_starts_s"] = [starts[0] + cut * self.bin_seconds]
        return first, last

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
            if not np.isclose(part.bin_seconds, first.bin_seconds, rtol=1e-9):
                raise ValueError(
                    f"concatenate: part {k} has bin_size {format_time(part.bin_size)}, "
                    f"part 0 has {format_time(first.bin_size)}"
                )
        counts = np.concatenate([part.counts for part in parts], axis=0)
        return cls(counts, first.bin_size, first.unit_ids, first.metadata)

    def _with_counts(self, counts: np.ndarray, unit_ids: UnitIds) -> SpikeCounts:
        return type(self)(counts, self.bin_size, unit_ids, self.metadata)

    def __repr__(self) -> str:
        trials = "trial" if self.n_trials == 1 else "trials"
        return (
            f"SpikeCounts({self.n_trials} {trials} x {self.n_bins} bins x {self.n_units} units, "
            f"bin_size={format_time(self.bin_size)})"
        )


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
    for dtype in COUNT_DTYPES:
        if largest <= np.iinfo(dtype).max:
            compact = array.astype(dtype)
            compact.flags.writeable = False
            return compact
    raise ValueError(
        f"counts: the largest value {largest} exceeds {np.iinfo(COUNT_DTYPES[-1]).max}; "
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
