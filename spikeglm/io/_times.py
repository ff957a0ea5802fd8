"""Spike times as files store them (seconds, milliseconds, sample indices...) turned into seconds.

Shared by the readers of files that do not state their time unit (MATLAB, text, phy): the unit is given
by the caller or assumed to be seconds, and times that would be absurd in seconds are refused rather than
misread. Times that are not real numbers (complex, boolean, text) are refused; so is a sampling rate
that is not a normal positive number, and a unit or rate that puts the times beyond
:data:`LONGEST_TOLD` seconds (or overflows them to infinity).
"""

from __future__ import annotations

from numbers import Real
from pathlib import Path

import numpy as np

from spikeglm.timeunits import unit_seconds

__all__ = ["LONGEST_TOLD", "RATE_OPTION", "to_seconds"]

#: Longest span of spike times (in their unit) read as seconds without being told: one day.
_LONGEST_SECONDS = 86_400.0
#: Whole-number times reaching this far are taken for sample indices unless told otherwise.
_SAMPLE_LIKE = 1_000.0

HINT = "pass time_unit= (--time-unit s|ms|us|samples, with --sampling-rate for samples)"
#: The option that gives the sampling rate, as messages name it.
RATE_OPTION = "sampling_rate= (--sampling-rate)"
#: The furthest from 0 s a time given in a stated unit may lie, in seconds (beyond it, the unit or
#: the rate is wrong; it leaves room for Unix timestamps).
LONGEST_TOLD = 1e12
#: The smallest sampling rate taken, in Hz: the smallest normal double (smaller ones are not numbers that
#: survive arithmetic).
_SMALLEST_RATE = float(np.finfo(np.float64).tiny)


def to_seconds(
    times: list[np.ndarray],
    time_unit: str | None,
    sampling_rate: float | None,
    path: Path | str,
    rate_from: str = RATE_OPTION,
) -> tuple[list[np.ndarray], str]:
    """Spike times per unit in seconds, and a sentence saying which unit they were read in.

    Parameters
    ----------
    times : list of numpy.ndarray
        Each unit's times as stored.
    time_unit : {"s", "ms", "us", "samples"}, optional
        The stored unit; default ``"samples"`` when ``sampling_rate`` is given, else seconds, but only
        when the times look like seconds (a span under a day, not all whole numbers beyond 1000).
    sampling_rate : float, optional
        Samples per second, for ``"samples"``.
    path : pathlib.Path or str
        The file, for messages.
    rate_from : str
        Where ``sampling_rate`` came from, for messages: the option, or the file that states it.

    Raises
    ------
    ValueError
        If the unit or rate is invalid (a rate must be a normal positive number), no unit is given and the
        times do not look like seconds, or the times in seconds reach beyond :data:`LONGEST_TOLD` (or
        overflow); the message names the options (or the file) that resolve it.
    """
    unreal = next((values.dtype for values in map(np.asarray, times) if values.dtype.kind not in "iuf"), None)
    if unreal is not None:
        raise ValueError(f"{path}: the spike times are {unreal}, not real numbers")
    if time_unit is None and sampling_rate is not None:
        time_unit = "samples"
    if time_unit is None:
        _check_plausible_seconds(times, path)
        return times, "s (assumed; time_unit= or --time-unit to change)"
    if sampling_rate is not None and not (
        isinstance(sampling_rate, Real) and np.isfinite(sampling_rate) and sampling_rate >= _SMALLEST_RATE
    ):
        raise ValueError(
            f"{path}: {rate_from}: {sampling_rate!r} is not a normal positive number of samples per second"
        )
    try:
        scale = unit_seconds(time_unit, sampling_rate)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    stated = f"samples at {sampling_rate:g} Hz" if time_unit == "samples" else time_unit
    with np.errstate(over="ignore"):
        seconds = [np.asarray(values, dtype=np.float64) * scale for values in times]
    reach = max((float(np.abs(values).max()) for values in seconds if values.size), default=0.0)
    if not reach <= LONGEST_TOLD:
        check = rate_from if time_unit == "samples" else "time_unit= (--time-unit)"
        raise ValueError(
            f"{path}: in {stated} the times reach {reach:g} s, beyond {LONGEST_TOLD:g} s (30,000 years); "
            f"check {check}"
        )
    return seconds, f"{stated} (as told)"


def _check_plausible_seconds(times: list[np.ndarray], path: Path | str) -> None:
    # Unit by unit, without a copy of every time at once (a unit file can hold tens of millions).
    low, high, whole = np.inf, -np.inf, True
    for part in times:
        values = np.asarray(part, dtype=np.float64).ravel()
        finite = np.isfinite(values)
        low = min(low, float(values.min(where=finite, initial=np.inf)))
        high = max(high, float(values.max(where=finite, initial=-np.inf)))
        whole = whole and bool(np.all((values == np.round(values)) | ~finite))
    if low > high:
        return
    if high - low > _LONGEST_SECONDS:
        raise ValueError(
            f"{path}: the times run from {low:g} to {high:g}, {(high - low) / _LONGEST_SECONDS:.3g} days if "
            f"they were seconds; {HINT}"
        )
    if max(abs(low), abs(high)) >= _SAMPLE_LIKE and whole:
        raise ValueError(
            f"{path}: the times are all whole numbers up to {max(abs(low), abs(high)):g}, like sample "
            f"indices; {HINT}"
        )
