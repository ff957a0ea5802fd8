"""Times with units: parsing durations, reading times in seconds, writing them in messages."""

import numpy as np
import pytest
import quantities as pq

from spikeglm.timeunits import format_time, parse_time, seconds


@pytest.mark.parametrize(
    ("value", "magnitude", "unit"),
    [
        ("5 ms", 5.0, "ms"),
        ("5ms", 5.0, "ms"),
        (" 0.005 s ", 0.005, "s"),
        ("1.5 min", 1.5, "min"),
        ("1e-3 s", 0.001, "s"),
        ("20 us", 20.0, "us"),
        ("20 µs", 20.0, "us"),
        (5 * pq.ms, 5.0, "ms"),
        (pq.Quantity([2], "s"), 2.0, "s"),
    ],
)
def test_parse_time(value, magnitude, unit):
    quantity = parse_time(value)
    assert isinstance(quantity, pq.Quantity)
    assert quantity.shape == ()
    assert float(quantity.magnitude) == pytest.approx(magnitude)
    assert quantity.dimensionality.string == unit


def test_parse_time_units_are_interchangeable():
    assert float(parse_time("5 ms").rescale(pq.s)) == pytest.approx(float(parse_time("0.005 s")))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "bin_size: give a unit, e.g. '5 ms'; got 5"),
        (0.005, "bin_size: give a unit, e.g. '5 ms'; got 0.005"),
        ("5", "bin_size: give a unit, e.g. '5 ms'; got '5'"),
        ("5 Hz", "bin_size: 5 Hz is not a time"),
        (3 * pq.m, "bin_size: 3 m is not a time"),
        ("5 blinks", "bin_size: unknown unit 'blinks' in '5 blinks'"),
        ("five ms", "bin_size: cannot read 'five ms' as a duration"),
        ("5 ms * 2", "bin_size: cannot read '5 ms * 2' as a duration"),
        ("0 ms", "bin_size: must be a positive duration; got 0 ms"),
        ("-5 ms", "bin_size: must be a positive duration; got -5 ms"),
        (np.inf * pq.s, "bin_size: must be a positive duration"),
        (pq.Quantity([1, 2], "s"), "bin_size: expected a single duration; got 2 values"),
        (None, "bin_size: expected a duration such as '5 ms'"),
    ],
)
def test_parse_time_errors(value, message):
    with pytest.raises(ValueError) as error:
        parse_time(value)
    assert message in str(error.value)


def test_parse_time_names_the_parameter():
    with pytest.raises(ValueError, match=r"^trial_length: give a unit"):
        parse_time(500, name="trial_length")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (2, 2.0), (1.5, 1.5), ("250 ms", 0.25), (1500 * pq.ms, 1.5), (pq.Quantity([2], "s"), 2.0)],
)
def test_seconds(value, expected):
    assert seconds(value, "t_start") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.inf, "t_stop: must be finite; got inf"),
        (3 * pq.m, "t_stop: 3.0 m is not a time"),
        ("2", "t_stop: give a unit, e.g. '5 ms'; got '2'"),
    ],
)
def test_seconds_errors(value, message):
    with pytest.raises(ValueError) as error:
        seconds(value, "t_stop")
    assert message in str(error.value)


def test_format_time_drops_a_trailing_zero():
    assert format_time(parse_time("5 ms")) == "5 ms"
    assert format_time(parse_time("0.25 s")) == "0.25 s"
