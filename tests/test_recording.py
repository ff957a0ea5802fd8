"""Recording: construction, validation messages, and binning checked against a loop over the spikes."""

import numpy as np
import pytest
import quantities as pq

from spikeglm.counts import SpikeCounts
from spikeglm.recording import Recording


def brute_force(recording, starts, n_bins, width, units):
    """Counts (trials, bins, units) by testing every spike against every bin's edges."""
    counts = np.zeros((len(starts), n_bins, len(units)), dtype=np.int64)
    for column, unit in enumerate(units):
        times = recording.spike_times[recording.unit_ids.tolist().index(unit)]
        for t in times:
            for trial, start in enumerate(starts):
                for j in range(n_bins):
                    if start + j * width <= t < start + (j + 1) * width:
                        counts[trial, j, column] += 1
    return counts


def random_recording(seed=0, n_units=3, duration=2.0, **options):
    rng = np.random.default_rng(seed)
    times = {f"n{k}": np.sort(rng.uniform(0, duration, rng.integers(20, 60))) for k in range(n_units)}
    return Recording.from_spike_times(times, t_start=0.0, t_stop=duration, **options)


def test_construction_and_properties():
    recording = Recording([[0.1, 0.25], [0.3]], unit_ids=["a", "b"], t_stop=1.0, annotations={"x": 1})
    assert recording.n_units == 2
    assert recording.unit_ids.tolist() == ["a", "b"]
    assert recording.t_start == 0 * pq.s and recording.t_stop == 1 * pq.s
    assert recording.duration == 1 * pq.s
    assert recording.n_spikes.tolist() == [2, 1]
    assert recording.spike_times[0].dtype == np.float64
    assert not recording.spike_times[0].flags.writeable
    assert recording.annotations == {"x": 1}
    assert recording.unit_annotations == [{}, {}]
    assert recording.trials is None
    assert repr(recording) == "Recording(2 units, 3 spikes, 0 s to 1 s)"


def test_defaults_and_from_spike_times():
    by_dict = Recording.from_spike_times({"a": [0.1, 0.2], "b": np.array([150.0]) * pq.ms}, t_stop="1 s")
    assert by_dict.unit_ids.tolist() == ["a", "b"]
    assert by_dict.spike_times[1].tolist() == [0.15]
    by_list = Recording.from_spike_times([[0.5], [0.7]])
    assert by_list.unit_ids.tolist() == ["0", "1"]
    assert float(by_list.t_start) == 0.0 and float(by_list.t_stop) == 0.7  # default: the last spike
    with_trials = Recording([[0.5]], trials=[[0.0, 0.6], [0.6, 0.9]])
    assert float(with_trials.t_stop) == 0.9  # default: the last trial's end if later
    assert float(Recording([[2.0]], t_start=1500 * pq.ms).t_start) == 1.5


@pytest.mark.parametrize(
    ("times", "options", "message"),
    [
        ([[0.1, np.nan]], {}, "unit '0': 1 NaN or infinite spike time(s), first at index 1"),
        ([[0.1, np.inf]], {}, "unit '0': 1 NaN or infinite"),
        (
            [[0.2], [-0.1, 0.3]],
            {"t_start": 0.0},
            "unit '1': 1 spike(s) outside [t_start, t_stop] = [0, 0.3] s",
        ),
        ([[0.1, 0.3, 0.2]], {}, "unit '0': spike times are not sorted: index 2 (0.2 s) comes after 0.3 s"),
        ([[0.1, 1.5]], {"t_stop": 1.0}, "unit '0': 1 spike(s) outside [t_start, t_stop] = [0, 1] s"),
        ([[0.1, 0.5]], {"t_start": 0.2}, "first at index 0 (0.1 s)"),
        ([[0.1]], {"t_start": 1.0, "t_stop": 0.5}, "need t_start < t_stop"),
        ([[0.1]], {"trials": [[0.5, 0.2]]}, "trials: trial 0 is [0.5, 0.2]; need start < stop"),
        ([[0.1]], {"trials": [0.1, 0.2]}, "trials: expected an (n_trials, 2) array"),
        ([[0.1]], {"trials": [[0.0, 2.0]], "t_stop": 1.0}, "trials: trial 0 [0.0, 2.0] s is outside"),
        ([[[0.1]]], {}, "unit '0': expected 1-D spike times"),
        ([["x"]], {}, "unit '0': spike times are not numbers"),
        ([[0.1], [0.2]], {"unit_ids": ["a", "a"]}, "unit_ids: duplicate id(s) 'a'"),
        ([[0.1]], {"unit_annotations": [{}, {}]}, "2 unit annotation(s) for 1 unit(s)"),
        ([[], []], {}, "none of the 2 unit(s) has spikes"),
    ],
)
def test_validation_messages_name_file_and_unit(times, options, message):
    with pytest.raises(ValueError) as error:
        Recording(times, source="rec.nwb", **options)
    assert str(error.value).startswith("rec.nwb: ")
    assert message in str(error.value)


def test_invalid_empty_units_message():
    with pytest.raises(ValueError, match="empty_units: expected one of drop, keep, error; got 'ignore'"):
        Recording([[0.1]], empty_units="ignore")


def test_empty_units_drop_keep_error():
    times, ids = [[0.1], [], [0.2], []], ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match=r"rec\.csv: dropping 2 unit\(s\) without spikes: 'b', 'd'"):
        dropped = Recording(times, ids, unit_annotations=[{"k": k} for k in range(4)], source="rec.csv")
    assert dropped.unit_ids.tolist() == ["a", "c"]
    assert dropped.unit_annotations == [{"k": 0}, {"k": 2}]
    kept = Recording(times, ids, empty_units="keep")
    assert kept.unit_ids.tolist() == ids and kept.n_spikes.tolist() == [1, 0, 1, 0]
    with pytest.raises(ValueError, match=r"rec\.csv: unit\(s\) 'b', 'd' have no spikes"):
        Recording(times, ids, empty_units="error", source="rec.csv")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bin_whole_recording_matches_brute_force(seed):
    recording = random_recording(seed)
    counts = recording.bin("7 ms")
    width = 0.007
    n_bins = int(2.0 / width)
    assert isinstance(counts, SpikeCounts)
    assert counts.counts.shape == (1, n_bins, 3)
    assert counts.counts.dtype == np.uint8
    expected = brute_force(recording, [0.0], n_bins, width, recording.unit_ids.tolist())
    np.testing.assert_array_equal(counts.counts, expected)
    assert counts.unit_ids.tolist() == ["n0", "n1", "n2"]
    assert counts.metadata["dropped_s"] == pytest.approx(2.0 - n_bins * width)


def test_bin_trial_length_cuts_consecutive_trials_and_drops_the_tail():
    recording = random_recording(3, duration=2.3, source="some/rec.nwb")
    counts = recording.bin("5 ms", trial_length="500 ms", units=["n2", "n0"])
    assert counts.counts.shape == (4, 100, 2)
    starts = counts.metadata["trial_starts_s"]
    np.testing.assert_allclose(starts, [0.0, 0.5, 1.0, 1.5])
    np.testing.assert_array_equal(counts.counts, brute_force(recording, starts, 100, 0.005, ["n2", "n0"]))
    assert counts.unit_ids.tolist() == ["n2", "n0"]
    assert counts.metadata == {
        "source": "some/rec.nwb",
        "bin_size": "5 ms",
        "trial_length": "500 ms",
        "t_start_s": 0.0,
        "t_stop_s": 2.3,
        "trial_starts_s": starts,
        "dropped_s": pytest.approx(0.3),
    }


def test_bin_recording_trials_cut_to_the_shortest():
    trials = [[0.1, 0.6], [0.7, 1.1], [1.2, 1.9]]
    recording = random_recording(4, trials=trials)
    counts = recording.bin("0.01 s")
    assert counts.counts.shape == (3, 40, 3)  # the shortest trial, 0.4 s, holds 40 bins
    expected = brute_force(recording, [0.1, 0.7, 1.2], 40, 0.01, recording.unit_ids.tolist())
    np.testing.assert_array_equal(counts.counts, expected)
    within = recording.bin("10 ms", t_start=0.5, t_stop="2 s")  # only the trials inside the span
    assert within.metadata["trial_starts_s"] == [0.7, 1.2]
    assert recording.bin("10 ms", trial_length="1 s").n_trials == 2  # trial_length comes first


def test_bin_overlapping_trials_count_a_spike_in_each():
    recording = Recording([[0.15, 0.35]], trials=[[0.0, 0.4], [0.1, 0.5]])
    counts = recording.bin("100 ms")
    np.testing.assert_array_equal(counts.counts[:, :, 0], [[0, 1, 0, 1], [1, 0, 1, 0]])


def test_bin_edges_are_left_closed():
    edges = np.arange(20) * 0.005
    recording = Recording([edges, [0.0999]], unit_ids=["edges", "late"], t_stop=0.1)
    counts = recording.bin("5 ms")
    np.testing.assert_array_equal(counts.counts[0, :, 0], np.ones(20))
    assert counts.counts[0, -1, 1] == 1
    at_stop = Recording([[0.05, 0.1]], t_stop=0.1).bin("50 ms")  # a spike at t_stop is after the last bin
    np.testing.assert_array_equal(at_stop.counts[0, :, 0], [0, 1])


def test_bin_count_dtype_grows_with_counts():
    recording = Recording([np.full(300, 0.5)], t_stop=1.0)
    counts = recording.bin("1 s")
    assert counts.counts[0, 0, 0] == 300 and counts.counts.dtype == np.uint16


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bin_size": "3 s"}, "bin: bin_size 3 s is longer than the span binned (2 s)"),
        (
            {"bin_size": "600 ms", "trial_length": "500 ms"},
            "bin: bin_size 600 ms is longer than trial_length 500 ms",
        ),
        (
            {"bin_size": "5 ms", "trial_length": "3 s"},
            "bin: trial_length 3 s is longer than the span binned (2 s)",
        ),
        (
            {"bin_size": "5 ms", "trial_length": "502 ms"},
            "trial_length 502 ms is not a whole number of bins of 5 ms",
        ),
        (
            {"bin_size": "5 ms", "units": ["n0", "zz"]},
            "bin: unknown unit id(s) 'zz'; known: 'n0', 'n1', 'n2'",
        ),
        (
            {"bin_size": "5 ms", "t_stop": 3.0},
            "bin: the span 0 s to 3 s is not a non-empty part of the recording",
        ),
        ({"bin_size": "5 ms", "t_start": 1.0, "t_stop": 1.0}, "bin: the span 1 s to 1 s is not"),
        ({"bin_size": "5"}, "bin_size: give a unit"),
        (
            {"bin_size": "1 ns"},
            "bin: 1 trial(s) x 2000000000 bins x 3 unit(s) of counts would take 5.59 GiB, more than "
            "max_bytes (4 GiB); use a larger bin size, fewer units or a shorter span",
        ),
        (
            {"bin_size": "1 ms", "max_bytes": 1000},
            "counts would take 5.86 KiB, more than max_bytes (1000 bytes)",
        ),
    ],
)
def test_bin_errors(arguments, message):
    recording = random_recording(5, source="rec.nix")
    with pytest.raises(ValueError) as error:
        recording.bin(**arguments)
    assert message in str(error.value)
    if arguments["bin_size"] != "5":  # parse_time's own message names no file
        assert str(error.value).startswith("rec.nix: ")


def test_bin_shortest_trial_shorter_than_a_bin():
    recording = Recording([[0.1]], trials=[[0.0, 0.05], [0.1, 0.5]])
    with pytest.raises(ValueError, match=r"bin_size 100 ms is longer than the shortest trial \(0\.05 s\)"):
        recording.bin("100 ms")
    with pytest.raises(ValueError, match=r"no trial lies inside 0\.2 s to 0\.5 s"):
        recording.bin("10 ms", t_start=0.2)


def test_negative_times_start_the_recording_early():
    recording = Recording([[-2.5, 0.1], [0.3]], trials=[[-3.0, -1.0], [0.0, 0.5]])
    assert float(recording.t_start) == -3.0 and float(recording.t_stop) == 0.5  # the first trial's start
    assert float(Recording([[-2.5, 0.1]]).t_start) == -2.5  # the first spike
    counts = recording.bin("500 ms", trial_length="1 s")
    assert counts.metadata["trial_starts_s"] == [-3.0, -2.0, -1.0]
    assert counts.counts[:, :, 0].tolist() == [[0, 1], [0, 0], [0, 0]]  # -2.5 s: first trial, second bin


def test_window_keeps_the_spikes_and_trials_inside():
    recording = Recording(
        [[0.1, 0.5, 1.0, 1.5], [0.2, 2.5]], ["a", "b"], t_stop=3.0, trials=[[0, 1], [1, 2], [2, 3]]
    )
    window = recording.window(1.0, 2.0)
    assert (float(window.t_start), float(window.t_stop)) == (1.0, 2.0)
    assert window.spike_times[0].tolist() == [1.0, 1.5]  # both ends included
    assert window.n_spikes.tolist() == [2, 0]  # empty units kept by default
    assert window.trials.tolist() == [[1.0, 2.0]]
    with pytest.warns(UserWarning, match="keeps 1 of 3 trials whole and drops 2 \\(1 cut by its ends\\)"):
        assert recording.window(0.5, 2.0).trials.tolist() == [[1.0, 2.0]]
    with pytest.warns(UserWarning, match="keeps 0 of 3 trials whole .* the window is one long trial"):
        assert recording.window(t_stop=0.9).trials is None
    with pytest.warns(UserWarning, match="dropping 1 unit"):
        assert recording.window(1.0, 2.0, empty_units="drop").unit_ids.tolist() == ["a"]
    with pytest.raises(
        ValueError, match=r"window: t_stop=4 s \(--t-stop\) reaches outside the span .* 0 s to 3 s"
    ):
        recording.window(2.0, 4.0)  # past the stated end: silence there was never recorded
    unstated = Recording([[0.1, 0.5, 2.5]])  # a span inferred from the spikes may be stated by the window
    assert (float(unstated.window(-1.0, 4.0).t_start), float(unstated.window(-1.0, 4.0).t_stop)) == (
        -1.0,
        4.0,
    )
    with pytest.raises(ValueError, match=r"window: 3\.5 s to 4 s lies outside the recording \(0 s to 3 s\)"):
        recording.window(3.5, 4.0)
    with pytest.raises(ValueError, match="window: need t_start < t_stop; got 2 s and 1 s"):
        recording.window(2.0, 1.0)


def test_select_active_by_count_and_rate():
    recording = Recording([[0.1] * 10, [0.2] * 3, [0.3] * 25], ["a", "b", "c"], t_stop=10.0)
    assert recording.select_active(min_spikes=5).unit_ids.tolist() == ["a", "c"]
    assert recording.select_active(min_rate=2.0).unit_ids.tolist() == ["c"]  # 25 spikes in 10 s
    assert recording.select_active(min_spikes=5, min_rate=1.5).unit_ids.tolist() == ["c"]
    with pytest.raises(
        ValueError, match=r"rec\.nwb: no unit has at least 30 spikes .* the busiest, 'c', has 25"
    ):
        Recording([[0.1] * 25], ["c"], t_stop=10.0, source="rec.nwb").select_active(min_spikes=30)


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_spikes_match_a_pairwise_count(seed):
    rng = np.random.default_rng(seed)
    grid = np.arange(200) * 0.01  # coarse times, so that units share some by chance
    times = [np.sort(rng.choice(grid, rng.integers(20, 80), replace=False)) for _ in range(5)]
    times[3] = np.sort(np.concatenate([times[3], [times[3][0]]]))  # a repeated time counts once
    recording = Recording(times)
    expected = [
        [i, j, len(np.intersect1d(a, b))]
        for i, a in enumerate(times)
        for j, b in enumerate(times)
        if i < j and len(np.intersect1d(a, b))
    ]
    np.testing.assert_array_equal(recording.shared_spikes(), expected)


def test_suspicious_units_name_few_spikes_and_crosstalk():
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, 200))
    b = np.sort(np.concatenate([a[::2], rng.uniform(0, 100, 50)]))  # half of a's times: crosstalk
    c = np.sort(rng.uniform(0, 100, 150))
    recording = Recording([a, b, c, [5.0, 6.0]], ["a", "b", "c", "d"], t_stop=100.0)
    notes = recording.suspicious_units()
    assert notes[0] == "unit 'd': only 2 spike(s)"
    assert notes[1].startswith(
        "units 'a' and 'b': 100 identical spike times (67% of the smaller unit's spikes)"
    )
    assert len(notes) == 2  # independent units share no time
    assert recording.select_units(["a", "c"]).suspicious_units() == []
