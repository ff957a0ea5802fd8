"""Spike trains that labs hold in memory: pynapple's TsGroup, SpikeInterface's sortings and neo's objects,
read by Recording.from_pynapple, from_spikeinterface, from_neo and by load(obj). Each toolkit's reading of
a file must give what spikeglm's own reader of that file gives."""

import warnings

import neo
import numpy as np
import pytest
import quantities as pq
from neo.io import NixIO
from test_readers import LABELS, TIMES, assert_units, write_phy

import spikeglm as sg
from spikeglm import Recording

NWB = sg.examples.path("example.nwb")
NIX = sg.examples.path("example.nix")


def assert_same(recording, expected, trials_atol=0.0):
    """Two recordings hold the same units in the same order, the same spikes, span and trials."""
    assert recording.unit_ids.tolist() == expected.unit_ids.tolist()
    for ours, theirs in zip(recording.spike_times, expected.spike_times, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert float(recording.t_start) == pytest.approx(float(expected.t_start), abs=1e-12)
    assert float(recording.t_stop) == pytest.approx(float(expected.t_stop), abs=1e-12)
    if expected.trials is None:
        assert recording.trials is None
    else:
        np.testing.assert_allclose(recording.trials, expected.trials, rtol=0, atol=trials_atol)


def assert_same_counts(counts, expected):
    assert counts.unit_ids.tolist() == expected.unit_ids.tolist()
    assert counts.counts.shape == expected.counts.shape
    np.testing.assert_array_equal(counts.counts, expected.counts)


# ------------------------------------------------------------------------------------------- pynapple


@pytest.fixture(name="nap")
def _nap():
    return pytest.importorskip("pynapple", reason="pynapple (the pynapple extra) is not installed")


@pytest.fixture(name="example_nwb_in_pynapple")
def _example_nwb_in_pynapple(nap):
    with warnings.catch_warnings():
        # pynapple's NWB loader shortens each trial that ends where the next starts by 1 us, and says so.
        warnings.simplefilter("ignore", UserWarning)
        data = nap.load_file(str(NWB))
        return data["units"], data["trials"]


def test_pynapple_reading_of_the_example_nwb_bins_as_spikeglms_reading(example_nwb_in_pynapple):
    units, trials = example_nwb_in_pynapple
    recording = Recording.from_pynapple(units, trials=trials)
    expected = sg.load(NWB)
    # Named by the unit_name column (n0..n9) in the order of the TsGroup's keys (the NWB ids 0..9).
    assert list(units.keys()) == list(range(10))
    assert_same(recording, expected, trials_atol=1.01e-6)  # pynapple's 1 us shortening of trial ends
    assert [notes["tsgroup_key"] for notes in recording.unit_annotations] == list(range(10))
    assert_same_counts(recording.bin("5 ms", trial_length="1 s"), expected.bin("5 ms", trial_length="1 s"))
    # By the trials themselves: each of pynapple's is 1 us short of a whole second, so one bin fewer.
    ours, theirs = recording.bin("5 ms"), expected.bin("5 ms")
    assert ours.counts.shape == (80, 199, 10) and theirs.counts.shape == (80, 200, 10)
    np.testing.assert_array_equal(ours.counts, theirs.counts[:, :199])
    loaded = sg.load(units, trials=trials)
    assert_same(loaded, recording, trials_atol=0.0)
    assert loaded.annotations["assumed"]["format"] == "pynapple"
    assert loaded.annotations["assumed"]["units"] == "named by the metadata column 'unit_name'"


def test_pynapple_time_support_gives_the_span_and_several_intervals_give_trials(nap):
    times = {4: np.array([0.1, 0.5, 2.2]), 9: np.array([0.2, 2.5])}
    group = nap.TsGroup({key: nap.Ts(values) for key, values in times.items()})
    one = Recording.from_pynapple(group)
    assert one.unit_ids.tolist() == ["4", "9"] and one.trials is None
    assert (float(one.t_start), float(one.t_stop)) == (0.1, 2.5)  # pynapple's support: first to last spike
    assert one.annotations["assumed"]["units"] == "named by the TsGroup's keys"
    support = nap.IntervalSet(start=[0.0, 2.0], end=[1.0, 3.0])
    several = Recording.from_pynapple(nap.TsGroup(group.data, time_support=support))
    np.testing.assert_array_equal(several.trials, [[0.0, 1.0], [2.0, 3.0]])
    assert (float(several.t_start), float(several.t_stop)) == (0.0, 3.0)
    assert several.bin("0.5 s").counts[:, :, 0].tolist() == [[1, 1], [1, 0]]
    widened = Recording.from_pynapple(group, trials=np.array([[-1.0, 0.0], [2.0, 4.0]]))
    assert (float(widened.t_start), float(widened.t_stop)) == (-1.0, 4.0)


def test_pynapple_metadata_names_and_labels_the_units(nap):
    group = nap.TsGroup(
        {1: nap.Ts(np.array([0.1, 0.3])), 2: nap.Ts(np.array([0.2, 0.25])), 7: nap.Ts(np.array([0.35, 0.4]))},
        # label is not unique: a label, not a name.
        metadata={"label": np.array(["good", "mua", "good"]), "depth": np.array([10.0, 20.0, 30.0])},
    )
    recording = Recording.from_pynapple(group)
    assert recording.unit_ids.tolist() == ["1", "2", "7"]
    assert recording.annotations["assumed"]["units"] == "named by the TsGroup's keys (label: not unique text)"
    assert recording.unit_annotations[2] == {"tsgroup_key": 7, "label": "good", "depth": 30.0}
    good = sg.load(group, label="good", t_start=0.1, t_stop=0.4)
    assert good.unit_ids.tolist() == ["1", "7"]
    assert good.annotations["assumed"]["units kept"] == "2 of 3: labelled good"
    group.set_info(name=np.array(["a", "b", "c"]))
    assert Recording.from_pynapple(group).unit_ids.tolist() == ["a", "b", "c"]


def test_pynapple_objects_are_not_changed(nap):
    times = np.array([0.1, 0.5, 0.9])
    group = nap.TsGroup({5: nap.Ts(times.copy())}, metadata={"quality": np.array(["good"])})
    trials = nap.IntervalSet(start=[0.0, 0.5], end=[0.4, 1.0])
    before = group.metadata.copy()
    recording = Recording.from_pynapple(group, trials=trials)
    assert not recording.spike_times[0].flags.writeable
    assert group[5].t.flags.writeable and group[5].t.tolist() == times.tolist()
    assert group.metadata.equals(before) and trials.values.tolist() == [[0.0, 0.4], [0.5, 1.0]]


def test_pynapple_hostile_input(nap):
    with pytest.raises(TypeError, match=r'expected a pynapple TsGroup .*pip install "spikeglm\[pynapple\]"'):
        Recording.from_pynapple(nap.Ts(np.array([0.1, 0.2])))
    with pytest.raises(TypeError, match=r"from_pynapple: expected a pynapple TsGroup.*; got dict"):
        Recording.from_pynapple({"a": [0.1]})
    with pytest.raises(ValueError, match=r"^pynapple TsGroup: has no units$"):
        Recording.from_pynapple(nap.TsGroup({}, time_support=nap.IntervalSet(0, 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynapple's own doubts about such times
        nan = nap.TsGroup({3: nap.Ts(np.array([0.1, 0.2])), 8: nap.Ts(np.array([0.1, np.nan]))})
        infinite = nap.TsGroup({3: nap.Ts(np.array([0.1, 0.2])), 4: nap.Ts(np.array([0.1, np.inf]))})
    with pytest.raises(ValueError, match=r"unit '8': 1 NaN or infinite spike time\(s\), first at index 1"):
        Recording.from_pynapple(nan)
    with pytest.raises(
        ValueError, match=r"unit '4': 1 NaN or infinite spike time\(s\), first at index 1 \(inf\)"
    ):
        Recording.from_pynapple(infinite)
    group = nap.TsGroup({1: nap.Ts(np.array([0.1, 0.2]))})
    with pytest.raises(ValueError, match=r"^trials: expected intervals of shape \(n, 2\); got shape \(3,\)"):
        Recording.from_pynapple(group, trials=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"^trials: trial 0 is \[1.0, 0.5\]; need start < stop"):
        Recording.from_pynapple(group, trials=[[1.0, 0.5]])
    with pytest.raises(ValueError, match=r"option\(s\) segment_index do not apply to a pynapple object"):
        sg.load(group, segment_index=0)


# -------------------------------------------------------------------------------------- SpikeInterface


@pytest.fixture(name="si")
def _si():
    return pytest.importorskip("spikeinterface.core", reason="spikeinterface (its extra) is not installed")


@pytest.fixture(name="read_phy")
def _read_phy(si):
    extractors = pytest.importorskip("spikeinterface.extractors", reason="spikeinterface's extractors")
    return extractors.read_phy


def phy_folder(path, labelled):
    """A phy folder that SpikeInterface reads: params.py of literals alone (SpikeInterface runs it), and
    with ``labelled`` every cluster labelled."""
    folder = write_phy(path, labels=None, params=False)
    (folder / "params.py").write_text("dat_path = 'raw.bin'\nn_channels_dat = 32\nsample_rate = 30000.0\n")
    if labelled:  # every cluster labelled: SpikeInterface leaves out the clusters its table lacks
        rows = "".join(f"{unit}\t{label}\n" for unit, label in LABELS.items())
        (folder / "cluster_group.tsv").write_text(f"cluster_id\tgroup\n{rows}")
    return folder


@pytest.mark.parametrize("labelled", [True, False])
def test_spikeinterface_reading_of_a_phy_folder_is_spikeglms_reading(tmp_path, read_phy, labelled):
    folder = phy_folder(tmp_path / "sorted", labelled)
    sorting = read_phy(folder)
    recording = Recording.from_spikeinterface(sorting)
    expected = sg.load(folder)
    assert_units(recording, TIMES)
    assert_same(recording, expected)
    labels = [notes["label"] for notes in recording.unit_annotations]
    assert labels == [notes["label"] for notes in expected.unit_annotations]
    assert labels == (list(LABELS.values()) if labelled else ["unsorted"] * 3)
    assert_same_counts(recording.bin("1 ms"), expected.bin("1 ms"))
    loaded = sg.load(sorting, label="good" if labelled else None)
    assert loaded.unit_ids.tolist() == (["3", "12"] if labelled else ["3", "7", "12"])
    assert loaded.annotations["assumed"]["format"] == "spikeinterface"


def test_spikeinterface_label_of_nothing_is_refused_naming_the_labels(tmp_path, read_phy):
    sorting = read_phy(phy_folder(tmp_path / "sorted", labelled=False))
    with pytest.raises(
        ValueError, match=r"the spikeinterface object given to load: no unit is labelled 'good'"
    ):
        sg.load(sorting, label="good")


def test_spikeinterface_segments_are_trials_laid_end_to_end(si):
    sorting = si.NumpySorting.from_unit_dict(
        [{"a": np.array([10, 300]), "b": np.array([20])}, {"a": np.array([5]), "b": np.array([7, 900])}],
        sampling_frequency=1000.0,
    )
    sorting.set_property("quality", ["good", "mua"])
    recording = Recording.from_spikeinterface(sorting)
    # Segment 0 spans 0 s to its last spike (0.3 s); segment 1, on its own clock from 0 s, follows it.
    np.testing.assert_allclose(recording.trials, [[0.0, 0.3], [0.3, 1.2]])
    np.testing.assert_allclose(recording.spike_times[0], [0.01, 0.3, 0.305])
    np.testing.assert_allclose(recording.spike_times[1], [0.02, 0.307, 1.2])
    assert recording.annotations["segment_offsets_s"] == [0.0, 0.3]
    assert [notes["label"] for notes in recording.unit_annotations] == ["good", "mua"]
    alone = Recording.from_spikeinterface(sorting, segment_index=1)
    assert alone.trials is None and alone.annotations["assumed"]["segments"] == "segment 1 of 2"
    np.testing.assert_allclose(alone.spike_times[1], [0.007, 0.9])
    assert_same(sg.load(sorting, segment_index=1), alone)
    assert sorting.get_unit_ids().tolist() == ["a", "b"] and sorting.get_property("quality").tolist() == [
        "good",
        "mua",
    ]


def test_spikeinterface_times_and_span_follow_a_registered_recordings_clock(si):
    recording = si.NumpyRecording(np.zeros((1000, 1), dtype="float32"), sampling_frequency=1000.0)
    recording.set_times(100.0 + np.arange(1000) / 1000.0, segment_index=0)
    sorting = si.NumpySorting.from_unit_dict({"a": np.array([10, 500]), "b": np.array([20])}, 1000.0)
    sorting.register_recording(recording)
    ours = Recording.from_spikeinterface(sorting)
    np.testing.assert_allclose(ours.spike_times[0], [100.01, 100.5])
    # From the first sample to the end SpikeInterface gives the recording, not to the last spike.
    assert float(ours.t_start) == 100.0 and float(ours.t_stop) == pytest.approx(100.999)


def test_spikeinterface_hostile_input(si):
    sorting = si.NumpySorting.from_unit_dict([{"a": np.array([10])}, {"a": np.array([5])}], 1000.0)
    for index in (2, -1):
        with pytest.raises(
            ValueError, match=rf"^segment_index={index} is out of range: the sorting has 2 segment"
        ):
            Recording.from_spikeinterface(sorting, segment_index=index)
    with pytest.raises(ValueError, match=r"^segment_index: expected a whole number; got True"):
        Recording.from_spikeinterface(sorting, segment_index=True)
    empty = si.NumpySorting.from_unit_dict([{}], 1000.0)
    with pytest.raises(ValueError, match=r"^SpikeInterface sorting: has no units$"):
        Recording.from_spikeinterface(empty)
    with pytest.raises(TypeError, match=r'expected a SpikeInterface sorting .*"spikeglm\[spikeinterface\]"'):
        Recording.from_spikeinterface(np.zeros(3))
    with pytest.raises(ValueError, match=r"option\(s\) trials do not apply to a spikeinterface object "):
        sg.load(sorting, trials="trials")


def test_units_without_spikes_follow_empty_units(si):
    sorting = si.NumpySorting.from_unit_dict(
        {"a": np.array([10, 20]), "silent": np.array([], dtype=int)}, 1000.0
    )
    with pytest.warns(UserWarning, match=r"dropping 1 unit\(s\) without spikes: 'silent'"):
        assert sg.load(sorting).unit_ids.tolist() == ["a"]
    assert Recording.from_spikeinterface(sorting, empty_units="keep").n_spikes.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"unit\(s\) 'silent' have no spikes \(empty_units='error'\)"):
        sg.load(sorting, empty_units="error")


class Sorting:
    """The methods of a SpikeInterface sorting, over given times in seconds (one segment)."""

    def __init__(self, ids, times):
        self.ids, self.times = ids, times

    def get_unit_ids(self):
        return self.ids

    def get_num_segments(self):
        return 1

    def get_sampling_frequency(self):
        return 1000.0

    def get_unit_spike_train(self, unit_id, segment_index=None, return_times=False):
        return self.times[self.ids.index(unit_id)]


def test_a_sorting_with_duplicate_unsorted_or_nan_times_is_refused_naming_the_unit():
    with pytest.raises(ValueError, match=r"segment 0 has several units with the id\(s\) '4'"):
        Recording.from_spikeinterface(Sorting([4, "4"], [np.array([0.1]), np.array([0.2])]))
    with pytest.raises(ValueError, match=r"unit 'b': spike times are not sorted: index 1 \(0.1 s\)"):
        Recording.from_spikeinterface(Sorting(["a", "b"], [np.array([0.1]), np.array([0.3, 0.1])]))
    with pytest.raises(ValueError, match=r"unit 'a': 1 NaN or infinite spike time"):
        Recording.from_spikeinterface(Sorting(["a"], [np.array([0.1, np.nan])]))


# ------------------------------------------------------------------------------------------------ neo


def read_nix(path):
    io = NixIO(str(path), mode="ro")
    try:
        return io.read(lazy=False)
    finally:
        io.close()


def test_neo_reading_of_the_example_nix_is_spikeglms_reading():
    blocks = read_nix(NIX)
    expected = sg.load(NIX)
    for given in (blocks, blocks[0], blocks[0].segments[0], list(blocks[0].segments[0].spiketrains)):
        recording = Recording.from_neo(given)
        assert_same(recording, expected)
        assert_same_counts(
            recording.bin("5 ms", trial_length="1 s"), expected.bin("5 ms", trial_length="1 s")
        )
    loaded = sg.load(blocks[0], units=["n3", "n1"])
    assert loaded.unit_ids.tolist() == ["n3", "n1"] and loaded.annotations["assumed"]["format"] == "neo"
    assert loaded.annotations["name"] == expected.annotations["name"]


def two_trials():
    """A Block of two Segments on their own clocks, each [0, 1] s, units named a and b."""
    block = neo.Block(name="session")
    for shift in (0.0, 0.5):
        segment = neo.Segment()
        segment.spiketrains.append(
            neo.SpikeTrain([0.1 + shift, 0.2 + shift], t_stop=1.0, units="s", name="a")
        )
        segment.spiketrains.append(
            neo.SpikeTrain([300.0], t_stop=1000.0, units="ms", name="b", quality="good")
        )
        block.segments.append(segment)
    return block


def test_neo_segments_in_memory_become_the_trials_a_file_of_them_gives(tmp_path):
    block = two_trials()
    recording = Recording.from_neo(block)
    np.testing.assert_array_equal(recording.trials, [[0.0, 1.0], [1.0, 2.0]])
    np.testing.assert_allclose(recording.spike_times[0], [0.1, 0.2, 1.6, 1.7])
    assert recording.unit_annotations[1] == {"quality": "good"}
    io = NixIO(str(tmp_path / "trials.nix"), mode="ow")
    io.write_block(block)
    io.close()
    assert_same(recording, sg.load(tmp_path / "trials.nix"))
    assert block.segments[1].spiketrains[0].magnitude.tolist() == [0.6, 0.7]  # not shifted in place


def test_neo_hostile_input():
    with pytest.raises(ValueError, match=r"segment 0 has several units with the id\(s\) 'a'"):
        Recording.from_neo([neo.SpikeTrain([0.1], t_stop=1, units="s", name="a")] * 2)
    unsorted = neo.SpikeTrain([0.5, 0.1], t_stop=1, units="s", name="late")
    with pytest.raises(ValueError, match=r"unit 'late': spike times are not sorted"):
        Recording.from_neo([unsorted])
    with pytest.raises(ValueError, match=r"^neo objects: has no spike trains"):
        Recording.from_neo(neo.Block())
    with pytest.raises(
        TypeError, match=r"from_neo: expected a neo Block, Segment, list of Blocks or list of Spike"
    ):
        Recording.from_neo([])
    with pytest.raises(TypeError, match=r"expected a neo Block.*; got neo.core.analogsignal.AnalogSignal"):
        Recording.from_neo(neo.AnalogSignal([[1.0]], units="mV", sampling_rate=1 * pq.kHz))


# ----------------------------------------------------------------------------------------------- load


def test_load_refuses_what_it_cannot_read_naming_what_it_can(tmp_path):
    with pytest.raises(TypeError, match=r"cannot read 'dict' objects; expected a path .* pynapple TsGroup"):
        sg.load({"a": [0.1]})
    with pytest.raises(TypeError, match=r"SpikeInterface sorting .*or a neo Block, Segment"):
        sg.load(np.array([0.1, 0.2]))
    block = two_trials()
    with pytest.raises(ValueError, match=r"^the neo object given to load: read_limit= applies to files"):
        sg.load(block, read_limit="1 GB")
    with pytest.raises(ValueError, match=r"^the neo object given to load: format= applies to files"):
        sg.load(block, format="nix")
    window = sg.load(block, t_start=1.0, t_stop=2.0, min_spikes=2)
    assert window.unit_ids.tolist() == ["a"] and window.annotations["assumed"]["window"] == "1 s to 2 s"
