"""Times and durations with units: the one place where ``"5 ms"``, ``"0.5 s"`` or a quantity is read.

:func:`parse_time` reads a positive duration (a bin size, a trial length) and keeps the unit it was given
in; :func:`seconds` reads a point in time or a duration as a float in seconds, where a bare number is
already in seconds (``t_start``, ``t_stop``); :func:`format_time` writes a quantity for a message;
:func:`unit_seconds` says how many seconds one unit of the times stored in a file is (``"ms"``, or
``"samples"`` at a sampling rate).
"""

from __future__ import annotations

import re
from numbers import Real

import numpy as np
import quantities as pq

__all__ = ["TIME_UNITS", "format_time", "parse_time", "seconds", "unit_seconds"]

#: The units of spike times stored in files: seconds, milliseconds, microseconds, or sample indices.
TIME_UNITS = ("s", "ms", "us", "samples")

_DURATION = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµμ]+)?\s*$")


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
        raise ValueError(f"{name}: {format_time(quantity)} is not a time; use e.g. ms, s or min")
    if not np.isfinite(quantity.magnitude) or quantity.magnitude <= 0:
        raise ValueError(f"{name}: must be a positive duration; got {format_time(quantity)}")
    return quantity


def seconds(value: float | str | pq.Quantity, name: str) -> float:
    """A time in seconds from a number (already in seconds), a quantity or a string such as ``"2 s"``.

    Parameters
    ----------
    value : float or str or quantities.Quantity
        A bare number is taken as seconds; a quantity may have any time unit; a string is read by
        :func:`parse_time` (so it must be a positive duration with a unit).
    name : str
        The parameter's name, used in error messages.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the value is not finite, a quantity is not a time, or a string cannot be read.
    """
    if isinstance(value, Real):
        result = float(value)
    elif isinstance(value, pq.Quantity) and value.size == 1:
        if value.simplified.dimensionality != pq.s.dimensionality:
            raise ValueError(f"{name}: {value} is not a time")
        result = float(value.rescale("s").magnitude.item())
    else:
        result = float(parse_time(value, name).rescale("s"))
    if not np.isfinite(result):
        raise ValueError(f"{name}: must be finite; got {result}")
    return result


def format_time(quantity: pq.Quantity) -> str:
    """A scalar quantity for a message: ``5 ms`` rather than ``5.0 ms``."""
    return f"{float(quantity.magnitude):g} {quantity.dimensionality.string}"


def unit_seconds(time_unit: str, sampling_rate: float | None = None) -> float:
    """Seconds per unit of stored spike times: ``"s"`` 1, ``"ms"`` 1e-3, ``"us"`` 1e-6, ``"samples"`` 1/rate.

    Parameters
    ----------
    time_unit : {"s", "ms", "us", "samples"}
    sampling_rate : float, optional
        Samples per second; needed by, and only by, ``"samples"``.

    Raises
    ------
    ValueError
        If the unit is unknown, ``"samples"`` comes without a positive finite ``sampling_rate``, or a
        rate comes with another unit. The message names the options ``time_unit`` and ``sampling_rate``.
    """
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit: expected one of {', '.join(TIME_UNITS)}; got {time_unit!r}")
    if time_unit != "samples":
        if sampling_rate is not None:
            raise ValueError(
                f"sampling_rate: only used with time_unit='samples'; got time_unit={time_unit!r}"
            )
        return {"s": 1.0, "ms": 1e-3, "us": 1e-6}[time_unit]
    if sampling_rate is None:
        raise ValueError("time_unit='samples' needs sampling_rate (samples per second)")
    if not (isinstance(sampling_rate, Real) and np.isfinite(sampling_rate) and sampling_rate > 0):
        raise ValueError(
            f"sampling_rate: must be a positive number of samples per second; got {sampling_rate!r}"
        )
    return 1.0 / float(sampling_rate)
