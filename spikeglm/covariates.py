"""Known inputs to the neurons: a stimulus, the animal's speed, the onsets of trials' events.

A :class:`Covariate` is a signal sampled in time, event times, or values already binned like the counts,
with a :class:`Kernel` that says how it enters every neuron's rate. The fit aligns each covariate to the
bins of the counts and turns it into columns of a design (:func:`covariate_design`); the network weighs
them per neuron (``covariate_weight``, beside the bias and the couplings), so that the stimulus is
modelled as the stimulus and is not read as coupling or as hidden neurons.

Kernels (``KERNELS``):

==============  =========================================================================================
``"lags"``      :class:`Lags`: a causal filter of a signal over lags ``0..window`` (a stimulus filter),
                raised-cosine bumps in log time
``"around"``    :class:`Around`: a kernel from ``before`` an event to ``after`` it (events known ahead,
                such as a cue's onset), raised-cosine bumps equally spaced
``"instant"``   :class:`Instant`: the value in the same bin, linearly (speed, pupil size)
``"spline"``    :class:`Spline`: a smooth function of the value in the same bin (a tuning curve), cubic
                B-splines over the range seen in the fit
==============  =========================================================================================

Signals are scaled by their standard deviation over the fitted bins (recorded, and applied again to new
counts), so that their weights are well conditioned; kernels are reported per unit of the signal as
given.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from spikeglm.basis import RaisedCosine
from spikeglm.counts import SpikeCounts
from spikeglm.io import signals
from spikeglm.options import Registry, whole
from spikeglm.timeunits import parse_time, seconds

__all__ = [
    "KERNELS",
    "Around",
    "Covariate",
    "Design",
    "Instant",
    "Kernel",
    "Lags",
    "Spline",
    "covariate_design",
    "kernel_curves",
    "kernel_from_dict",
    "kernel_functions",
    "kernel_metadata",
]

#: The points over which a spline's tuning curve is reported.
SPLINE_POINTS = 50
#: The most bins a kernel may reach, and the most B-splines of a spline.
MAX_KERNEL_BINS, MAX_SPLINES = 10**5, 100
#: The fields of a covariate's record (:class:`Design`).
RECORD_FIELDS = ("name", "kind", "source", "kernel", "scale", "span", "n_features")


def _seconds(length: str | float | int, name: str) -> float:
    """A length given as a time (``"100 ms"``, or seconds as a number), in seconds, checked."""
    if isinstance(length, bool) or not isinstance(length, (str, Real)):
        raise ValueError(f"{name} must be a time such as '100 ms'; got {length!r}")
    value = float(length) if isinstance(length, Real) else seconds(parse_time(length, name), name)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite time of 0 or more; got {length!r}")
    return value


def _bins(length: str | float | int, name: str, bin_seconds: float) -> int:
    """A length given as a time in whole bins, rounded; at most :data:`MAX_KERNEL_BINS`."""
    bins = round(_seconds(length, name) / bin_seconds)
    if bins > MAX_KERNEL_BINS:
        raise ValueError(
            f"{name}={length!r} reaches {bins:,} bins; a kernel reaches at most {MAX_KERNEL_BINS:,}"
        )
    return bins


def _time_text(length: str | float | int) -> str | float:
    """A length as given, kept for the model file (numbers are seconds)."""
    return length if isinstance(length, str) else float(length)


def _filter(values: np.ndarray, functions: np.ndarray, first: int) -> np.ndarray:
    """``out[r, t, b] = sum_j functions[b, j] * values[r, t - (first + j)]``, zero outside the trial.

    ``values`` (trials, bins), ``functions`` (n, P) over the offsets ``first .. first + P - 1`` (bins after
    the value that a column reaches: 0 and up is causal). Returns float64 (trials, bins, n).
    """
    width = functions.shape[1]
    last = first + width - 1
    left, right = max(last, 0), max(-first, 0)
    series = F.pad(torch.from_numpy(values)[:, None], (left, right))
    kernel = torch.from_numpy(functions[:, ::-1].copy())[:, None]  # conv1d correlates
    start = left - last
    out = F.conv1d(series, kernel)[..., start : start + values.shape[1]]
    return out.permute(0, 2, 1).numpy()


class Kernel(ABC):
    """How a covariate enters every neuron's predictor: ``n_features`` columns of the design.

    Subclasses set :attr:`name` and :attr:`scaled` (whether the signal is divided by its standard
    deviation before its columns are made) and implement :meth:`functions`, :meth:`columns` and
    :meth:`_arguments`.
    """

    name: ClassVar[str]
    #: Whether the values are divided by their standard deviation over the fit (signals' kernels).
    scaled: ClassVar[bool] = True

    @abstractmethod
    def functions(
        self, bin_seconds: float, span: tuple[float, float] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's axis (seconds of lag or offset, or values of the signal) and its functions over it,
        shape (n_features, points): the weights of a neuron times these are its kernel."""

    @abstractmethod
    def columns(self, values: np.ndarray, bin_seconds: float, span: tuple[float, float] | None) -> np.ndarray:
        """The design columns of per-bin values (trials, bins): float64 (trials, bins, n_features)."""

    @abstractmethod
    def _arguments(self) -> dict[str, Any]:
        """Constructor arguments as plain JSON values."""

    def to_dict(self) -> dict[str, Any]:
        """The name and constructor arguments; :func:`kernel_from_dict` inverts it."""
        return {"name": self.name, **self._arguments()}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._arguments().items())
        return f"{type(self).__name__}({arguments})"


class Lags(Kernel):
    """A causal filter over the lags ``0..window``: the signal now and in the bins before.

    Parameters
    ----------
    window : str or float
        How far back the filter reaches, a time (``"200 ms"``) or seconds; at least one bin.
    n_basis : int
        Raised-cosine bumps in log time over the lags (fewer when the window has fewer bins).
    """

    name = "lags"

    def __init__(self, window: str | float = "100 ms", n_basis: int = 4) -> None:
        _seconds(window, "window")
        self.window, self.n_basis = window, whole(n_basis, "n_basis")

    def functions(self, bin_seconds, span=None):
        lags = _bins(self.window, "window", bin_seconds) + 1  # 0..window
        matrix = RaisedCosine(lags, min(self.n_basis, lags)).matrix(torch.float64).numpy()
        return np.arange(lags) * bin_seconds, matrix

    def columns(self, values, bin_seconds, span=None):
        return _filter(values, self.functions(bin_seconds)[1], 0)

    def _arguments(self):
        return {"window": _time_text(self.window), "n_basis": self.n_basis}


class Around(Kernel):
    """A kernel from ``before`` an event to ``after`` it, for events known ahead (a cue, a reward).

    Parameters
    ----------
    before, after : str or float
        How far the kernel reaches before and after the event, times or seconds.
    n_basis : int
        Raised-cosine bumps equally spaced over the window (fewer when it has fewer bins).
    """

    name = "around"
    scaled = False

    def __init__(self, before: str | float = 0.0, after: str | float = "500 ms", n_basis: int = 6) -> None:
        _seconds(before, "before"), _seconds(after, "after")
        self.before, self.after, self.n_basis = before, after, whole(n_basis, "n_basis")

    def _offsets(self, bin_seconds: float) -> np.ndarray:
        before = _bins(self.before, "before", bin_seconds)
        return np.arange(-before, _bins(self.after, "after", bin_seconds) + 1)

    def functions(self, bin_seconds, span=None):
        offsets = self._offsets(bin_seconds)
        n = min(self.n_basis, len(offsets))
        if n == 1:
            return offsets * bin_seconds, np.ones((1, len(offsets)))
        centres = np.linspace(offsets[0], offsets[-1], n)
        spacing = centres[1] - centres[0]
        phase = np.clip(np.pi * (offsets[None, :] - centres[:, None]) / (2 * spacing), -np.pi, np.pi)
        return offsets * bin_seconds, (1 + np.cos(phase)) / 2

    def columns(self, values, bin_seconds, span=None):
        offsets = self._offsets(bin_seconds)
        return _filter(values, self.functions(bin_seconds)[1], int(offsets[0]))

    def _arguments(self):
        return {"before": _time_text(self.before), "after": _time_text(self.after), "n_basis": self.n_basis}


class Instant(Kernel):
    """The signal's value in the same bin, one weight per neuron."""

    name = "instant"

    def functions(self, bin_seconds, span=None):
        return np.zeros(1), np.ones((1, 1))

    def columns(self, values, bin_seconds, span=None):
        return values[..., None]

    def _arguments(self):
        return {}


class Spline(Kernel):
    """A smooth function of the signal's value in the same bin: cubic B-splines over the range the fit saw.

    The first function is left out (its level is the bias's), so the curve is relative to the lowest
    value; values of new counts outside the fitted range take the curve's value at its nearer end.

    Parameters
    ----------
    n_basis : int
        B-splines over the range (at least 4); the design has ``n_basis - 1`` columns.
    """

    name = "spline"
    scaled = False

    def __init__(self, n_basis: int = 6) -> None:
        self.n_basis = whole(n_basis, "n_basis", minimum=4)
        if self.n_basis > MAX_SPLINES:
            raise ValueError(f"n_basis of a spline must be at most {MAX_SPLINES}; got {n_basis}")

    def _design(self, x: np.ndarray, span: tuple[float, float]) -> np.ndarray:
        from scipy.interpolate import BSpline

        low, high = span
        inner = np.linspace(low, high, self.n_basis - 2)
        knots = np.concatenate([[low] * 3, inner, [high] * 3])
        clipped = np.clip(x, low, high)
        return BSpline.design_matrix(clipped, knots, 3).toarray()[:, 1:]

    def functions(self, bin_seconds, span=None):
        assert span is not None
        grid = np.linspace(*span, SPLINE_POINTS)
        return grid, self._design(grid, span).T

    def columns(self, values, bin_seconds, span=None):
        assert span is not None
        return self._design(values.reshape(-1), span).reshape(*values.shape, -1)

    def _arguments(self):
        return {"n_basis": self.n_basis}


#: The kernels a covariate can take, by name.
KERNELS: Registry[type[Kernel]] = Registry(
    "kernel", {"lags": Lags, "around": Around, "instant": Instant, "spline": Spline}
)


def kernel_from_dict(spec: dict[str, Any]) -> Kernel:
    """Rebuild a kernel from :meth:`Kernel.to_dict`."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a kernel description must be a dict with a 'name'; got {spec!r}")
    return KERNELS[spec["name"]](**{key: value for key, value in spec.items() if key != "name"})


def _kernel(kernel: Kernel | str) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, str):
        return KERNELS[kernel]()
    raise ValueError(f"kernel must be a Kernel or one of {', '.join(KERNELS.names())}; got {kernel!r}")


def _finite(array: Any, what: str) -> np.ndarray:
    """``array`` as float64, refusing what is not numeric or not finite, naming ``what`` and the place."""
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be numbers: {error}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: {int(bad.sum())} missing or infinite value(s), the first at index {where}")
    return values


@dataclass(frozen=True)
class Covariate:
    """A known input, and the kernel through which it drives every neuron.

    Make one with :meth:`signal`, :meth:`events` or :meth:`binned` from arrays, or read one with
    :meth:`from_nwb`, :meth:`from_neo` or :meth:`from_pynapple`.

    Attributes
    ----------
    name : str
        Unique among a fit's covariates: how scoring and exports refer to it.
    kind : {"signal", "events", "binned"}
    kernel : Kernel
    values : numpy.ndarray or None
        A signal's samples, or the binned values (trials, bins).
    times : numpy.ndarray or None
        A signal's sample times or the event times, in seconds on the recording's clock.
    source : str
        Where it came from (an array, a file and its path), as the model file records it.
    """

    name: str
    kind: str
    kernel: Kernel
    values: np.ndarray | None = None
    times: np.ndarray | None = None
    source: str = "array"

    @classmethod
    def signal(
        cls,
        name: str,
        values: Any,
        times: Any = None,
        *,
        rate: float | None = None,
        start: float = 0.0,
        kernel: Kernel | str = "lags",
        source: str = "array",
    ) -> Covariate:
        """A signal sampled in time: at ``times`` (seconds), or at ``rate`` Hz from ``start``.

        A signal sampled faster than the bins is averaged over each bin (a bin without a sample takes the
        signal interpolated at its centre); a slower one is interpolated linearly at the bins' centres.
        """
        values = _finite(values, f"covariate {name!r}: values")
        if values.ndim != 1 or len(values) == 0:
            raise ValueError(
                f"covariate {name!r}: values must be one non-empty row; got shape {values.shape}"
            )
        if (times is None) == (rate is None):
            raise ValueError(f"covariate {name!r}: give either the sample times or the sampling rate")
        if times is None:
            rate = float(rate)  # type: ignore[arg-type]
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"covariate {name!r}: rate must be a positive number of Hz; got {rate!r}")
            times = float(start) + np.arange(len(values)) / rate
        times = _finite(times, f"covariate {name!r}: times")
        if times.shape != values.shape:
            raise ValueError(f"covariate {name!r}: {len(times)} times for {len(values)} values")
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"covariate {name!r}: the sample times must increase")
        return cls(_name(name), "signal", _kernel(kernel), values, times, source)

    @classmethod
    def events(
        cls, name: str, times: Any, *, kernel: Kernel | str = "around", source: str = "array"
    ) -> Covariate:
        """Event times (seconds): each bin counts the events in it, and the kernel spreads them."""
        times = np.sort(_finite(times, f"covariate {name!r}: times").reshape(-1))
        return cls(_name(name), "events", _kernel(kernel), None, times, source)

    @classmethod
    def binned(
        cls, name: str, values: Any, *, kernel: Kernel | str = "lags", source: str = "array"
    ) -> Covariate:
        """Values already per bin of the counts: shape (trials, bins), or (bins,) for one trial."""
        values = _finite(values, f"covariate {name!r}: values")
        values = values[None] if values.ndim == 1 else values
        if values.ndim != 2:
            raise ValueError(f"covariate {name!r}: binned values must be (trials, bins); got {values.shape}")
        return cls(_name(name), "binned", _kernel(kernel), values, None, source)

    @classmethod
    def from_source(
        cls,
        name: str,
        source: signals.Signal | signals.Events,
        *,
        kernel: Kernel | str | None = None,
        channel: int | None = None,
    ) -> Covariate:
        """A covariate from a :class:`~spikeglm.io.signals.Signal` (default kernel ``"lags"``; a signal
        of several channels needs ``channel``) or :class:`~spikeglm.io.signals.Events` (``"around"``)."""
        if isinstance(source, signals.Events):
            return cls.events(name, source.times, kernel=kernel or "around", source=source.source)
        values, where = source.values, source.source
        if values.ndim == 2:
            if channel is None or not 0 <= channel < values.shape[1]:
                raise ValueError(
                    f"covariate {name!r}: {where} has {values.shape[1]} channels; pick one with channel= "
                    f"(0 to {values.shape[1] - 1})"
                )
            values, where = values[:, channel], f"{where} channel {channel}"
        return cls.signal(name, values, source.times, kernel=kernel or "lags", source=where)

    @classmethod
    def from_nwb(
        cls,
        name: str,
        path: str,
        series: str | None = None,
        *,
        table: str | None = None,
        column: str | None = None,
        kernel: Kernel | str | None = None,
        channel: int | None = None,
    ) -> Covariate:
        """A covariate read from an NWB file: the TimeSeries at ``series`` (e.g.
        ``"/acquisition/running_speed"``), or the event times of ``column`` of the intervals ``table``
        (e.g. ``table="trials", column="stim_on_time"``). See :mod:`spikeglm.io.signals`."""
        if (series is None) == (table is None or column is None):
            raise ValueError(f"covariate {name!r}: give either series= or table= and column= of {path}")
        if series is not None:
            found: signals.Signal | signals.Events = signals.nwb_timeseries(path, series)
        else:
            found = signals.nwb_events(path, str(table), str(column))
        return cls.from_source(name, found, kernel=kernel, channel=channel)

    @classmethod
    def from_neo(
        cls, name: str, obj: Any, *, kernel: Kernel | str | None = None, channel: int | None = None
    ) -> Covariate:
        """A covariate from a neo ``AnalogSignal`` or ``IrregularlySampledSignal`` (a signal) or an
        ``Event`` or ``Epoch`` (events)."""
        import neo

        if isinstance(obj, neo.Event | neo.Epoch):
            return cls.from_source(name, signals.neo_events(obj), kernel=kernel)
        return cls.from_source(name, signals.neo_signal(obj), kernel=kernel, channel=channel)

    @classmethod
    def from_pynapple(
        cls, name: str, obj: Any, *, kernel: Kernel | str | None = None, channel: int | None = None
    ) -> Covariate:
        """A covariate from a pynapple ``Tsd`` or ``TsdFrame`` (a signal) or ``Ts`` (events)."""
        if getattr(obj, "values", None) is None and getattr(obj, "d", None) is None:
            return cls.from_source(name, signals.pynapple_events(obj), kernel=kernel)
        return cls.from_source(name, signals.pynapple_signal(obj), kernel=kernel, channel=channel)

    def per_bin(self, counts: SpikeCounts) -> np.ndarray:
        """The covariate on the bins of ``counts``, float64 (trials, bins)."""
        if self.kind == "binned":
            assert self.values is not None
            if self.values.shape != (counts.n_trials, counts.n_bins):
                raise ValueError(
                    f"covariate {self.name!r}: binned values of shape {self.values.shape} do not match the "
                    f"counts' {counts.n_trials} trial(s) x {counts.n_bins} bins"
                )
            return self.values
        edges = _bin_edges(counts, self.name)
        assert self.times is not None
        if self.kind == "events":
            found = np.searchsorted(self.times, edges, side="left")
            return np.diff(found, axis=1).astype(np.float64)
        assert self.values is not None
        return _resample(self.name, self.times, self.values, edges)


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a covariate's name must be a non-empty string without outer spaces; got {name!r}")
    return name


def _bin_edges(counts: SpikeCounts, name: str) -> np.ndarray:
    """The edges of every bin of ``counts`` in seconds on the recording's clock, (trials, bins + 1)."""
    starts = counts.metadata.get("trial_starts_s")
    if starts is None or len(starts) != counts.n_trials:
        if counts.n_trials != 1:
            raise ValueError(
                f"covariate {name!r} is given in time, but these counts carry no trial start times "
                "(metadata 'trial_starts_s'); give it per bin with Covariate.binned, one row per trial"
            )
        starts = [0.0]
    offsets = np.arange(counts.n_bins + 1) * counts.bin_seconds
    return np.asarray(starts, dtype=np.float64)[:, None] + offsets


def _resample(name: str, times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """A signal's mean in each bin, or its linear interpolation at the centre of a bin with no sample;
    bins beyond the samples (by more than a sample's spacing) are refused."""
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else float(edges[0, 1] - edges[0, 0])
    low, high = times[0] - spacing, times[-1] + spacing  # a sample stands for a spacing either side
    if edges[:, 0].min() < low - 1e-9 or edges[:, -1].max() > high + 1e-9:
        trial = int(np.argmax((edges[:, 0] < low - 1e-9) | (edges[:, -1] > high + 1e-9)))
        raise ValueError(
            f"covariate {name!r} covers {low:.6g} s to {high:.6g} s, but trial {trial} runs from "
            f"{edges[trial, 0]:.6g} s to {edges[trial, -1]:.6g} s; give values over every trial, or keep "
            "the trials it covers"
        )
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    between = np.interp(centres, times, values)
    if spacing >= edges[0, 1] - edges[0, 0]:  # no more than a sample per bin: read the signal between them
        return between
    totals = np.concatenate([[0.0], np.cumsum(values)])
    found = np.searchsorted(times, edges, side="left")
    number = np.diff(found, axis=1)
    sums = np.diff(totals[found], axis=1)
    return np.where(number > 0, sums / np.maximum(number, 1), between)


@dataclass(frozen=True)
class Design:
    """The covariates' columns on the bins of some counts, and what was fixed in making them.

    Attributes
    ----------
    columns : torch.Tensor
        float32 (trials, bins, n_features), the covariates' columns side by side in :attr:`records` order.
    records : tuple of dict
        One per covariate: ``name``, ``kind``, ``source``, ``kernel`` (its dict), ``scale`` (what the
        signal was divided by), ``span`` (a spline's range, else None) and ``n_features``: what a model
        file stores and what new counts are aligned by.
    """

    columns: torch.Tensor
    records: tuple[dict[str, Any], ...]

    @property
    def n_features(self) -> int:
        return self.columns.shape[-1]


def covariate_design(
    covariates: Sequence[Covariate],
    counts: SpikeCounts,
    fitted: Sequence[dict[str, Any]] | None = None,
) -> Design:
    """The design of ``covariates`` on the bins of ``counts``.

    Without ``fitted`` (a fit), each signal's scale and each spline's range are taken from these counts;
    with it (the records of a fit: scoring, inference), the covariates must be the fit's, by name, and
    their scales and ranges are the fit's.

    Raises
    ------
    ValueError
        One line naming the covariate at fault: a name given twice, a covariate the fit did not have or
        one it had that is missing, a constant signal, values that do not cover the counts.
    """
    given = list(covariates)
    names = [c.name for c in given if isinstance(c, Covariate)]
    if len(names) != len(given):
        raise ValueError(
            "covariates must be a list of spikeglm.Covariate (Covariate.signal, .events, .binned)"
        )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"covariates: the name(s) {', '.join(map(repr, twice))} are given more than once")
    if fitted is not None:
        given = _as_fitted(given, fitted)
    columns, records = [], []
    for k, covariate in enumerate(given):
        values = covariate.per_bin(counts)
        record = (
            {key: fitted[k][key] for key in RECORD_FIELDS}
            if fitted is not None
            else _record(covariate, values)
        )
        span = None if record["span"] is None else tuple(record["span"])
        made = covariate.kernel.columns(values / record["scale"], counts.bin_seconds, span)
        columns.append(torch.from_numpy(made.astype(np.float32)))
        records.append({**record, "n_features": made.shape[-1]})
    empty = torch.zeros(counts.n_trials, counts.n_bins, 0)
    return Design(torch.cat(columns, dim=-1) if columns else empty, tuple(records))


def _record(covariate: Covariate, values: np.ndarray) -> dict[str, Any]:
    """What a fit fixes of one covariate from its values on the fit's bins."""
    scale, span = 1.0, None
    if np.ptp(values) == 0:
        raise ValueError(
            f"covariate {covariate.name!r} is constant over the counts ({values.flat[0]:.6g}): it adds "
            "nothing the bias does not"
        )
    if covariate.kernel.scaled:
        scale = float(values.std())
    if isinstance(covariate.kernel, Spline):
        span = [float(values.min()), float(values.max())]
    return {
        "name": covariate.name,
        "kind": covariate.kind,
        "source": covariate.source,
        "kernel": covariate.kernel.to_dict(),
        "scale": scale,
        "span": span,
    }


def _as_fitted(given: list[Covariate], fitted: Sequence[dict[str, Any]]) -> list[Covariate]:
    """The given covariates in the fit's order, refusing a missing or an unknown one; each takes the
    fit's kernel (the model file's, so that the columns are the fit's)."""
    by_name = {c.name: c for c in given}
    expected = [record["name"] for record in fitted]
    missing = [name for name in expected if name not in by_name]
    unknown = [name for name in by_name if name not in expected]
    if missing or unknown:
        said = f"this model was fitted with covariates {', '.join(map(repr, expected)) or 'none'}"
        if missing:
            raise ValueError(
                f"{said}; give {', '.join(map(repr, missing))} for these counts too (covariates=)"
            )
        raise ValueError(f"{said}; {', '.join(map(repr, unknown))} is not one of them")
    ordered = []
    for record in fitted:
        covariate = by_name[record["name"]]
        kernel = kernel_from_dict(record["kernel"])
        ordered.append(Covariate(covariate.name, covariate.kind, kernel, covariate.values, covariate.times))
    return ordered


def _scaled_functions(record: dict[str, Any], bin_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """One covariate's kernel axis and its functions over it divided by its scale, (n_features, points): a
    neuron's kernel is its weights of that covariate times these."""
    span = None if record["span"] is None else tuple(record["span"])
    axis, functions = kernel_from_dict(record["kernel"]).functions(bin_seconds, span)
    return axis, functions / record["scale"]


def kernel_curves(
    records: Sequence[dict[str, Any]], weight: np.ndarray, bin_seconds: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each covariate's kernel on every neuron: name -> (axis, values (neurons, points)), in units of the
    covariate as given (per unit of a signal, per event). ``weight`` is (neurons, n_features)."""
    curves, first = {}, 0
    for record in records:
        axis, functions = _scaled_functions(record, bin_seconds)
        curves[record["name"]] = (axis, weight[:, first : first + record["n_features"]] @ functions)
        first += record["n_features"]
    return curves


def kernel_functions(records: Sequence[dict[str, Any]], bin_seconds: float) -> list[np.ndarray]:
    """Each covariate's functions over its axis divided by its scale, (n_features, points): a kernel is a
    neuron's weights of that covariate times these (what its standard errors are carried through)."""
    return [_scaled_functions(record, bin_seconds)[1] for record in records]


def kernel_metadata(
    records: Sequence[dict[str, Any]],
    weight: np.ndarray,
    bin_seconds: float,
    errors: dict[str, list] | None = None,
) -> list[dict[str, Any]]:
    """Each covariate's record with its ``weight`` (neurons x its columns), its kernel on every neuron over
    its ``axis`` (``values``, per unit of the covariate as given; ``axis_unit`` seconds, or the value for a
    spline) and the kernel's standard errors ``se`` (rows of ``errors[name]``; None without): what a
    connectivity's metadata hold under ``covariates``."""
    curves, kernels, first = kernel_curves(records, weight, bin_seconds), [], 0
    for record in records:
        axis, values = curves[record["name"]]
        kernels.append(
            {
                **record,
                "weight": weight[:, first : first + record["n_features"]].tolist(),
                "axis": axis.tolist(),
                "axis_unit": "value" if record["kernel"]["name"] == "spline" else "s",
                "values": values.tolist(),
                "se": None if errors is None else errors[record["name"]],
            }
        )
        first += record["n_features"]
    return kernels


def check_records(records: Any, bin_seconds: float) -> None:
    """Refuse covariate records (as :class:`Design` holds them, read back from a file) that are not
    complete and consistent: each kernel rebuilt and its columns counted again. ValueError naming the
    covariate and the field."""
    if not isinstance(records, list):
        raise ValueError(f"must be a list of covariate records; got {type(records).__name__}")
    names = set()
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str) or record["name"] in names:
            raise ValueError("each covariate record must be an object with a unique 'name'")
        names.add(record["name"])
        where = f"covariate {record['name']!r}"
        if record.get("kind") not in ("signal", "events", "binned") or not isinstance(
            record.get("source"), str
        ):
            raise ValueError(f"{where}: 'kind' must be signal, events or binned and 'source' a string")
        scale, span = record.get("scale"), record.get("span")
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale <= 0
        ):
            raise ValueError(f"{where}: 'scale' must be a number > 0; got {scale!r}")
        if span is not None and not (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in span)
            and span[0] < span[1]
        ):
            raise ValueError(f"{where}: 'span' must be null or [low, high] with low < high; got {span!r}")
        try:
            kernel = kernel_from_dict(record.get("kernel"))  # type: ignore[arg-type]  # it checks
            columns = kernel.functions(bin_seconds, None if span is None else tuple(span))[1].shape[0]
        except (TypeError, ValueError, AssertionError) as error:
            raise ValueError(f"{where}: 'kernel': {error}") from None
        if record.get("n_features") != columns:
            raise ValueError(
                f"{where}: 'n_features' is {record.get('n_features')!r}; its kernel makes {columns}"
            )
