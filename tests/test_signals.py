"""Covariates' raw data (spikeglm.io.signals): NWB TimeSeries and intervals columns, neo and pynapple
objects, and every refusal, one line naming the file (or object) and the dataset at fault."""

from __future__ import annotations

import re
import warnings
from datetime import datetime, timezone

import h5py
import neo
import numpy as np
import pytest
import quantities as pq

from spikeglm.io.limits import reading
from spikeglm.io.signals import (
    Events,
    Signal,
    neo_events,
    neo_signal,
    nwb_events,
    nwb_timeseries,
    pynapple_events,
    pynapple_signal,
)

SPEED_TIMES = [0.0, 0.1, 0.25, 0.4, 0.7]
SPEED = [1.0, 2.0, 3.5, 4.0, 0.5]
STIM = [[1, 2], [3, 4], [5, 6]]  # int16 samples x channels, conversion 0.5, offset 1
STIM_ON = [0.2, np.nan, 2.3]  # the second trial had no stimulus
SERIES = ("/acquisition/running_speed", "/processing/behavior/Position/pos", "/stimulus/presentation/stim")


def write_nwb(path):
    """An NWB file written by pynwb: a TimeSeries with timestamps, one with starting_time, rate and
    conversion, a SpatialSeries in a processing module, and trials with custom columns."""
    pynwb = pytest.importorskip("pynwb")
    from pynwb.behavior import Position, SpatialSeries

    nwbfile = pynwb.NWBFile(
        session_description="covariates",
        identifier="signals-1",
        session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
    )
    nwbfile.add_acquisition(
        pynwb.TimeSeries(name="running_speed", data=np.array(SPEED), unit="cm/s", timestamps=SPEED_TIMES)
    )
    stim = pynwb.TimeSeries(
        name="stim",
        data=np.array(STIM, dtype=np.int16),
        unit="V",
        conversion=0.5,
        offset=1.0,
        starting_time=2.0,
        rate=100.0,
    )
    nwbfile.add_stimulus(stim)
    position = Position(
        spatial_series=SpatialSeries(
            name="pos", data=np.zeros((3, 2)), reference_frame="corner", timestamps=[0.0, 1.0, 2.0]
        )
    )
    nwbfile.create_processing_module("behavior", "behaviour").add(position)
    nwbfile.add_trial_column("stim_on_time", "when the stimulus came on")
    nwbfile.add_trial_column("outcome", "what the animal did")
    nwbfile.add_trial_column("licks", "lick times", index=True)
    for row, (start, on) in enumerate(zip([0.0, 1.0, 2.0], STIM_ON, strict=True)):
        nwbfile.add_trial(
            start_time=start, stop_time=start + 1, stim_on_time=on, outcome=f"o{row}", licks=[start + 0.5]
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return path


@pytest.fixture(name="nwb")
def _nwb(tmp_path):
    return write_nwb(tmp_path / "session.nwb")


def edit(path, change):
    """``path`` after ``change(handle)`` has changed it with h5py."""
    with h5py.File(path, "r+") as handle:
        change(handle)
    return path


def replace(handle, name, data, **options):
    del handle[name]
    handle.create_dataset(name, data=data, **options)


# ------------------------------------------------------------------------------------------- NWB read


def test_timeseries_with_timestamps(nwb):
    signal = nwb_timeseries(nwb, "/acquisition/running_speed")
    assert signal.times.tolist() == SPEED_TIMES and signal.values.tolist() == SPEED
    assert signal.times.dtype == signal.values.dtype == np.float64
    assert signal.unit == "cm/s" and signal.source == f"{nwb}:/acquisition/running_speed"
    same = nwb_timeseries(str(nwb), "acquisition/running_speed/")  # no leading slash, a trailing one
    assert same.values.tolist() == SPEED and same.source == signal.source


def test_timeseries_with_starting_time_rate_conversion_and_offset(nwb):
    signal = nwb_timeseries(nwb, "/stimulus/presentation/stim")
    assert signal.times.tolist() == [2.0, 2.0 + 1 / 100, 2.0 + 2 / 100]
    assert signal.values.shape == (3, 2)
    assert signal.values.tolist() == (np.array(STIM) * 0.5 + 1.0).tolist()
    assert signal.unit == "V"


def test_timeseries_deep_in_a_processing_module(nwb):
    signal = nwb_timeseries(nwb, "/processing/behavior/Position/pos")
    assert signal.values.shape == (3, 2) and signal.times.tolist() == [0.0, 1.0, 2.0]


def test_one_channel_is_one_dimensional(nwb):
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/data", np.array(SPEED)[:, None]))
    assert nwb_timeseries(nwb, "/acquisition/running_speed").values.tolist() == SPEED


def test_event_times_from_a_custom_column_drop_nan_rows(nwb):
    with pytest.warns(UserWarning, match=r"session\.nwb: /intervals/trials/stim_on_time: dropped 1 of 3 row"):
        events = nwb_events(nwb, "trials", "stim_on_time")
    assert events.times.tolist() == [0.2, 2.3]
    assert events.source == f"{nwb}:/intervals/trials/stim_on_time"
    starts = nwb_events(nwb, "/intervals/trials", "start_time")
    assert starts.times.tolist() == [0.0, 1.0, 2.0]


# ----------------------------------------------------------------------------------- NWB refusals


def one_line(error):
    assert "\n" not in str(error.value)


def test_missing_series_lists_those_the_file_holds(nwb):
    with pytest.raises(
        ValueError, match=r"session\.nwb: has no TimeSeries /acquisition/speed; it holds"
    ) as e:
        nwb_timeseries(nwb, "acquisition/speed")
    for name in SERIES:
        assert repr(name) in str(e.value)
    one_line(e)


def test_the_list_of_series_survives_hard_links_that_loop(nwb):
    def loop(handle):
        for k in range(30):
            handle[f"acquisition/loop{k}"] = handle["acquisition"]

    edit(nwb, loop)
    with pytest.raises(ValueError, match=r"it holds '/acquisition/running_speed', '/processing/") as e:
        nwb_timeseries(nwb, "/acquisition/nothing")
    assert "loop" not in str(e.value)  # each group is listed once, by its shortest path
    assert nwb_timeseries(nwb, "/acquisition/loop3/loop4/running_speed").values.tolist() == SPEED


def test_a_dataset_or_a_group_without_data_is_not_a_timeseries(nwb):
    with pytest.raises(ValueError, match=r"/acquisition/running_speed/data is a dataset, not a TimeSeries"):
        nwb_timeseries(nwb, "/acquisition/running_speed/data")
    with pytest.raises(ValueError, match=r"session\.nwb: /processing/behavior has no data dataset"):
        nwb_timeseries(nwb, "/processing/behavior")


def test_nan_data_is_refused_with_count_and_first_index(nwb):
    def poison(handle):
        data = np.array(SPEED)
        data[[2, 4]] = [np.nan, np.inf]
        replace(handle, "acquisition/running_speed/data", data)

    edit(nwb, poison)
    with pytest.raises(
        ValueError,
        match=r"session\.nwb: /acquisition/running_speed/data: 2 NaN or infinite value\(s\), the first at "
        r"index 2$",
    ):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_non_increasing_timestamps_are_refused(nwb):
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/timestamps", [0.0, 0.1, 0.1, 0.4, 0.7]))
    with pytest.raises(
        ValueError,
        match=r"session\.nwb: /acquisition/running_speed/timestamps should strictly increase; time 2 "
        r"\(0\.1 s\) is not after time 1",
    ):
        nwb_timeseries(nwb, "/acquisition/running_speed")
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/timestamps", [0.0, np.nan, 0.2, 0.4, 0.7]))
    with pytest.raises(ValueError, match=r"timestamps: 1 NaN or infinite value\(s\), the first at index 1"):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_timestamps_of_another_length_are_refused(nwb):
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/timestamps", [0.0, 0.1, 0.2]))
    with pytest.raises(
        ValueError,
        match=r"session\.nwb: /acquisition/running_speed/timestamps has shape \(3,\) for the 5 sample\(s\)",
    ):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_text_data_and_empty_data_are_refused(nwb):
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/data", ["a"] * 5, dtype=h5py.string_dtype()))
    with pytest.raises(ValueError, match=r"/acquisition/running_speed/data holds text, where numbers are"):
        nwb_timeseries(nwb, "/acquisition/running_speed")
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/data", np.zeros(0)))
    with pytest.raises(ValueError, match=r"/acquisition/running_speed/data should hold .*got shape \(0,\)"):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_a_rate_that_is_not_positive_is_refused(nwb):
    def stop(handle):
        handle["stimulus/presentation/stim/starting_time"].attrs["rate"] = 0.0

    edit(nwb, stop)
    with pytest.raises(
        ValueError, match=r"/stimulus/presentation/stim/starting_time has rate 0\.0 Hz; the sampling rate"
    ):
        nwb_timeseries(nwb, "/stimulus/presentation/stim")


def test_a_series_without_times_is_refused(nwb):
    edit(nwb, lambda h: h.__delitem__("acquisition/running_speed/timestamps"))
    with pytest.raises(ValueError, match=r"running_speed has neither timestamps nor starting_time"):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_external_links_are_refused(nwb, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.arange(5.0)

    def link(handle):
        del handle["acquisition/running_speed/data"]
        handle["acquisition/running_speed/data"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")

    edit(nwb, link)
    with pytest.raises(ValueError, match=r"/acquisition/running_speed/data is an external link to /x in"):
        nwb_timeseries(nwb, "/acquisition/running_speed")


def test_a_dataset_over_the_read_budget_is_refused_before_it_is_read(nwb):
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/data", np.zeros(1000)))
    edit(nwb, lambda h: replace(h, "acquisition/running_speed/timestamps", np.arange(1000.0)))
    with (
        reading("10 KB"),
        pytest.raises(
            ValueError,
            match=r"session\.nwb: reading /acquisition/running_speed/data \(\(1000,\) float64\) with what "
            r"was read before it would take .* over the read limit",
        ),
    ):
        nwb_timeseries(nwb, "/acquisition/running_speed")
    with reading("1 MB"):
        assert nwb_timeseries(nwb, "/acquisition/running_speed").values.shape == (1000,)


def test_missing_table_or_column_lists_what_exists(nwb):
    with pytest.raises(
        ValueError, match=r"session\.nwb: has no table /intervals/epochs; its tables are 'trials'"
    ):
        nwb_events(nwb, "epochs", "start_time")
    with pytest.raises(
        ValueError, match=r"/intervals/trials has no column 'stim_off_time'; its columns are"
    ) as e:
        nwb_events(nwb, "trials", "stim_off_time")
    assert "'stim_on_time'" in str(e.value) and "'start_time'" in str(e.value)


def test_text_ragged_and_infinite_columns_are_refused(nwb):
    with pytest.raises(ValueError, match=r"/intervals/trials/outcome holds text, where numbers are expected"):
        nwb_events(nwb, "trials", "outcome")
    with pytest.raises(ValueError, match=r"/intervals/trials/licks is ragged \(indexed by licks_index\)"):
        nwb_events(nwb, "trials", "licks")
    with pytest.raises(ValueError, match=r"licks_index is the index of the ragged column licks: several"):
        nwb_events(nwb, "trials", "licks_index")

    def infinite(handle):
        handle["intervals/trials/stim_on_time"][2] = np.inf

    edit(nwb, infinite)
    with pytest.raises(ValueError, match=r"stim_on_time \(its rows with a time\): 1 NaN or infinite"):
        nwb_events(nwb, "trials", "stim_on_time")


def test_a_file_without_intervals_and_a_file_that_is_not_hdf5(tmp_path, nwb):
    edit(nwb, lambda h: h.__delitem__("intervals"))
    with pytest.raises(ValueError, match=r"session\.nwb: has no /intervals group, so no table 'trials'"):
        nwb_events(nwb, "trials", "start_time")
    text = tmp_path / "notes.nwb"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"notes\.nwb: is not a readable HDF5/NWB file"):
        nwb_timeseries(text, "/acquisition/x")


# ------------------------------------------------------------------------------------------------ neo


def test_neo_analog_signal_in_ms_gives_seconds():
    speed = neo.AnalogSignal(
        np.array([[1.0], [2.0], [4.0]]), units="cm/s", sampling_rate=2 * pq.kHz, t_start=10 * pq.ms, name="v"
    )
    signal = neo_signal(speed)
    np.testing.assert_allclose(signal.times, [0.010, 0.0105, 0.011], rtol=0, atol=1e-15)
    assert signal.values.tolist() == [1.0, 2.0, 4.0] and signal.unit == "cm/s"
    assert signal.source == "neo AnalogSignal 'v'"
    signal.values[0] = 9.0  # a copy: the neo object keeps its data
    assert float(speed.magnitude[0, 0]) == 1.0


def test_neo_signals_of_several_channels_and_irregular_times():
    lfp = neo.AnalogSignal(np.ones((4, 3)), units="mV", sampling_rate=1 * pq.Hz)
    assert neo_signal(lfp).values.shape == (4, 3) and neo_signal(lfp).source == "neo AnalogSignal (unnamed)"
    irregular = neo.IrregularlySampledSignal([5.0, 20.0, 30.0] * pq.ms, [1.0, 2.0, 3.0], units="mV")
    signal = neo_signal(irregular)
    np.testing.assert_allclose(signal.times, [0.005, 0.020, 0.030])
    assert signal.values.tolist() == [1.0, 2.0, 3.0] and signal.unit == "mV"


def test_neo_events_and_epochs_in_seconds():
    event = neo.Event([300.0, 100.0, 200.0] * pq.ms, name="cue")
    events = neo_events(event)
    np.testing.assert_allclose(events.times, [0.1, 0.2, 0.3])
    assert events.source == "neo Event 'cue'"
    epoch = neo.Epoch([1.0, 2.0] * pq.s, durations=[0.5, 0.5] * pq.s)
    assert neo_events(epoch).times.tolist() == [1.0, 2.0]


def test_neo_refusals_name_the_object():
    event = neo.Event([0.1] * pq.s, name="cue")
    with pytest.raises(ValueError, match=r"neo Event 'cue': expected a neo AnalogSignal or Irregularly"):
        neo_signal(event)
    lfp = neo.AnalogSignal(np.ones((4, 1)), units="mV", sampling_rate=1 * pq.Hz, name="lfp")
    with pytest.raises(ValueError, match=r"neo AnalogSignal 'lfp': expected a neo Event or Epoch"):
        neo_events(lfp)
    bad = neo.AnalogSignal(np.array([[1.0], [np.nan]]), units="mV", sampling_rate=1 * pq.Hz, name="x")
    with pytest.raises(ValueError, match=r"neo AnalogSignal 'x': values: 1 NaN or infinite value\(s\)"):
        neo_signal(bad)


# ------------------------------------------------------------------------------------------- pynapple


class FakeTsd:
    """What pynapple's Tsd and TsdFrame show: times ``t`` in seconds, ``values`` and ``d``."""

    def __init__(self, t, d):
        self.t = np.asarray(t, dtype=float)
        self.values = self.d = np.asarray(d)


class FakeTimesOnly:
    """Times through ``times()`` and data through ``d`` alone."""

    def __init__(self, t, d=None):
        self._t = np.asarray(t, dtype=float)
        if d is not None:
            self.d = np.asarray(d)

    def times(self):
        return self._t


def test_duck_typed_pynapple_signals():
    signal = pynapple_signal(FakeTsd([0.0, 0.5, 1.0], [3, 4, 5]))
    assert signal.times.tolist() == [0.0, 0.5, 1.0] and signal.values.tolist() == [3.0, 4.0, 5.0]
    assert signal.unit is None and signal.source == "pynapple FakeTsd"
    frame = pynapple_signal(FakeTsd([0.0, 1.0], [[1, 2], [3, 4]]))
    assert frame.values.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert pynapple_signal(FakeTsd([0.0, 1.0], [[1], [2]])).values.tolist() == [1.0, 2.0]
    other = pynapple_signal(FakeTimesOnly([1.0, 2.0], [7.0, 8.0]))
    assert other.times.tolist() == [1.0, 2.0] and other.values.tolist() == [7.0, 8.0]


def test_duck_typed_pynapple_events_and_refusals():
    assert pynapple_events(FakeTimesOnly([2.0, 1.0])).times.tolist() == [1.0, 2.0]
    assert pynapple_events(FakeTsd([0.5, 1.5], [0, 0])).times.tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match=r"pynapple FakeTimesOnly: has no values \(\.values or \.d\)"):
        pynapple_signal(FakeTimesOnly([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"pynapple object: has no times"):
        pynapple_events(object())
    with pytest.raises(ValueError, match=r"pynapple FakeTsd: times should strictly increase; time 1"):
        pynapple_signal(FakeTsd([1.0, 1.0], [1.0, 2.0]))
    with pytest.raises(ValueError, match=r"pynapple FakeTsd: values should be \(samples,\) or"):
        pynapple_signal(FakeTsd([0.0, 1.0], np.zeros((2, 2, 2))))
    with pytest.raises(ValueError, match=r"pynapple FakeTsd: values should be numbers; got values of type"):
        pynapple_signal(FakeTsd([0.0, 1.0], ["a", "b"]))


def test_real_pynapple():
    nap = pytest.importorskip("pynapple")
    tsd = nap.Tsd(t=np.array([0.0, 0.1, 0.3]), d=np.array([1.0, 2.0, 3.0]))
    signal = pynapple_signal(tsd)
    assert signal.times.tolist() == [0.0, 0.1, 0.3] and signal.values.tolist() == [1.0, 2.0, 3.0]
    frame = pynapple_signal(nap.TsdFrame(t=np.array([0.0, 1.0]), d=np.ones((2, 3))))
    assert frame.values.shape == (2, 3)
    assert pynapple_events(nap.Ts(t=np.array([0.2, 0.5]))).times.tolist() == [0.2, 0.5]
    with pytest.raises(ValueError, match="has no values"):
        pynapple_signal(nap.Ts(t=np.array([0.5, 0.7])))


# ---------------------------------------------------------------------------------------- the records


def test_records_check_what_they_hold():
    with pytest.raises(ValueError, match=re.escape("x: 2 time(s) of shape (2,) for 3 sample(s)")):
        Signal(np.array([0.0, 1.0]), np.zeros(3), "x", None)
    with pytest.raises(ValueError, match=r"^x: times should be sorted$"):
        Events(np.array([1.0, 0.0]), "x")
    assert Events(np.array([1, 1, 2]), "x").times.dtype == np.float64


def test_text_sources_are_read_as_times_or_times_and_values_and_hostile_ones_refused(tmp_path):
    from spikeglm.io.signals import text_source

    events = tmp_path / "licks.csv"
    events.write_text("time\n2.5\n0.5\n")
    assert list(text_source(events).times) == [0.5, 2.5]
    signal = tmp_path / "speed.txt"
    signal.write_text("# speed\n0.0\t1.0\n0.1\t2.0\n")
    found = text_source(signal)
    assert isinstance(found, Signal) and list(found.values) == [1.0, 2.0]
    for name, text, message in [
        ("ragged.csv", "0,1\n1\n", "expected rows of one column"),
        ("three.csv", "0,1,2\n", "expected rows of one column"),
        ("words.csv", "time\n1\nsoon\n", "not numbers"),
        ("back.csv", "0,1\n0,2\n", "times"),
        ("nan.csv", "0,1\n1,nan\n", "values"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(str(path)) + r": .*" + message):
            text_source(path)
    large = tmp_path / "large.csv"
    large.write_text("0.0,1.0\n" * 2000)
    with reading("10 KB"), pytest.raises(ValueError, match=r"large\.csv.*read limit"):
        text_source(large)
