"""Spike times as files store them (seconds, milliseconds, sample indices...) turned into seconds.

Shared by the readers of files that do not state their time unit (MATLAB, text): the unit is given by
the caller or assumed to be seconds, and times that would be absurd in seconds are refused rather than
misread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeglm.timeunits import unit_seconds

__all__ = ["to_seconds"]

#: Longest span of spike times (in their unit) read as seconds without being told: one day.
_LONGEST_SECONDS = 86_400.0
#: Whole-number times reaching this far are taken for sample indices unless told otherwise.
_SAMPLE_LIKE = 1_000.0

HINT = "pass time_unit= (--time-unit s|ms|us|samples, with --sampling-rate for samples)"


def to_seconds(
    times: list[np.ndarray], time_unit: str | None, sampling_rate: float | None, path: Path | str
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

    Raises
    ------
    ValueError
        If the unit or rate is invalid, or no unit is given and the times do not look like seconds; the
        message names the options that resolve it.
    """
    if time_unit is None and sampling_rate is not None:
        time_unit = "samples"
    if time_unit is None:
        _check_plausible_seconds(times, path)
        return times, "s (assumed; time_unit= or --time-unit to change)"
    try:
        scale = unit_seconds(time_unit, sampling_rate)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    stated = f"samples at {sampling_rate:g} Hz" if time_unit == "samples" else time_unit
    return [values * scale for values in times], f"{stated} (as told)"


def _check_plausible_seconds(times: list[np.ndarray], path: Path | str) -> None:
    values = np.concatenate([np.asarray(part, dtype=np.float64).ravel() for part in times])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    low, high = float(values.min()), float(values.max())
    if high - low > _LONGEST_SECONDS:
        raise ValueError(
            f"{path}: the times run from {low:g} to {high:g}, {(high - low) / _LONGEST_SECONDS:.3g} days if "
            f"they were seconds; {HINT}"
        )
    if max(abs(low), abs(high)) >= _SAMPLE_LIKE and np.all(values == np.round(values)):
        raise ValueError(
            f"{path}: the times are all whole numbers up to {max(abs(low), abs(high)):g}, like sample "
            f"indices; {HINT}"
        )
