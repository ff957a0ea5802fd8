"""load() and save(): NWB written by pynwb, NIX written by neo, round trips, and every bad input."""

import pickle
import warnings
from datetime import datetime, timezone

import h5py
import neo
import numpy as np
import pytest
import quantities as pq
from neo.io import NixIO

from spikeglm.io import load, save
from spikeglm.recording import Recording

SPIKES = {"a": [0.1, 0.4, 0.45], "b": [0.2], "c": [0.05, 0.3, 0.6, 0.9]}
TRIALS = [[0.0, 0.5], [0.5, 1.0]]


def write_pynwb(path, spikes=SPIKES, trials=TRIALS, names=True, obs_intervals=True, tables=None):
    """An NWB file written by pynwb: units (optionally named, with observation intervals), trials, and
    ``tables``: other TimeIntervals tables, ``{name: [[start, stop], ...]}``."""
    pynwb = pytest.importorskip("pynwb")  # a test dependency only: spikeglm reads NWB with h5py
    from pynwb.epoch import TimeIntervals

    nwbfile = pynwb.NWBFile(
        session_description="pynwb test",
        identifier="id-42",
        session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
    )
    if names and spikes:
        nwbfile.add_unit_column("unit_name", "the unit's name")
    if spikes:
        nwbfile.add_unit_column("quality", "sorting quality")
    for k, (name, times) in enumerate(spikes.items()):
        extra = {"unit_name": name} if names else {}
        if obs_intervals:
            extra["obs_intervals"] = [[0.0, 1.2]]
        nwbfile.add_unit(spike_times=times, quality=f"q{k}", **extra)
    for start, stop in trials or []:
        nwbfile.add_trial(start_time=start, stop_time=stop)
    for name, rows in (tables or {}).items():
        table = TimeIntervals(name=name, description=f"the {name}")
        for start, stop in rows:
            table.add_interval(start_time=start, stop_time=stop)
        nwbfile.add_time_intervals(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return path


def write_neo_nix(path, t_starts=(0.0, 0.0), names=True):
    """A NIX file written by neo: one Block, 2 Segments with 3 SpikeTrains each."""
    rng = np.random.default_rng(0)
    block = neo.Block(name="session")
    for t_start in t_starts:
        segment = neo.Segment()
        for unit in range(3):
            times = t_start + np.sort(rng.uniform(0, 1, 5))
            name = f"unit{unit}" if names else None
            train = neo.SpikeTrain(times * pq.s, t_start=t_start, t_stop=t_start + 1, name=name, channel=unit)
            segment.spiketrains.append(train)
        block.segments.append(segment)
    io = NixIO(str(path), mode="ow")
    io.write_block(block)
    io.close()
    return block


def assert_same(recording, other):
    assert recording.unit_ids.tolist() == other.unit_ids.tolist()
    for mine, theirs in zip(recording.spike_times, other.spike_times, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert float(recording.t_start) == float(other.t_start)
    assert float(recording.t_stop) == float(other.t_stop)


def test_read_nwb_written_by_pynwb(tmp_path):
    recording = load(write_pynwb(tmp_path / "rec.nwb"))
    assert recording.unit_ids.tolist() == ["a", "b", "c"]
    for times, expected in zip(recording.spike_times, SPIKES.values(), strict=True):
        np.testing.assert_array_equal(times, expected)
    np.testing.assert_array_equal(recording.trials, TRIALS)
    assert (float(recording.t_start), float(recording.t_stop)) == (0.0, 1.2)  # from obs_intervals
    assert recording.annotations["identifier"] == "id-42"
    assert recording.annotations["session_description"] == "pynwb test"
    assert recording.unit_annotations[1] == {"nwb_id": 1, "unit_name": "b", "quality": "q1"}
    assert recording.source == str(tmp_path / "rec.nwb")
    assert recording.bin("100 ms").n_trials == 2


def test_read_nwb_without_names_obs_intervals_or_trials(tmp_path):
    path = write_pynwb(tmp_path / "rec.nwb", trials=None, names=False, obs_intervals=False)
    recording = load(path)
    assert recording.unit_ids.tolist() == ["0", "1", "2"]
    assert recording.trials is None
    assert (float(recording.t_start), float(recording.t_stop)) == (0.0, 0.9)  # 0 s to the last spike
    assert load(path, name_column="quality").unit_ids.tolist() == ["q0", "q1", "q2"]
    with pytest.raises(ValueError, match=r"rec\.nwb: /units has no string column 'nope'"):
        load(path, name_column="nope")


def write_sorted_nwb(path, modules, top=None):
    """An NWB file written by pynwb whose Units tables sit in processing modules: ``modules`` is
    ``{module: {unit: (spike times, electrode rows)}}``, and ``top`` the same for ``/units``. Four
    electrodes: rows 0 and 1 in CA1 on shank0, rows 2 and 3 in DG on shank1."""
    pynwb = pytest.importorskip("pynwb")
    from pynwb.misc import Units

    nwbfile = pynwb.NWBFile(
        session_description="sorted twice",
        identifier="id-43",
        session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
    )
    probe = nwbfile.create_device("probe")
    for shank, location in (("shank0", "CA1"), ("shank1", "DG")):
        group = nwbfile.create_electrode_group(shank, description=shank, location=location, device=probe)
        for _ in range(2):
            nwbfile.add_electrode(group=group, location=location)

    def fill(table, units):
        table.add_column("unit_name", "the unit's name")
        for name, (times, electrodes) in units.items():
            table.add_unit(spike_times=times, electrodes=electrodes, unit_name=name)

    for module, units in modules.items():
        table = Units(name="units", description=f"sorted by {module}", electrode_table=nwbfile.electrodes)
        fill(table, units)
        nwbfile.create_processing_module(module, f"spike sorting by {module}").add(table)
    if top is not None:
        nwbfile.units = Units(name="units", description="curated", electrode_table=nwbfile.electrodes)
        fill(nwbfile.units, top)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return path


SORTED = {"x": ([0.1, 0.2], [0]), "y": ([0.3], [1, 2]), "z": ([0.4, 0.5, 0.6], [3])}


def test_the_only_units_table_in_a_processing_module_is_read_with_its_electrodes(tmp_path):
    path = write_sorted_nwb(tmp_path / "rec.nwb", {"ecephys": SORTED})
    recording = load(path)
    assert recording.unit_ids.tolist() == ["x", "y", "z"]
    np.testing.assert_array_equal(recording.spike_times[2], [0.4, 0.5, 0.6])
    assert recording.annotations["assumed"]["units table"] == (
        "/processing/ecephys/units (3 units), the only one (no /units)"
    )
    assert recording.annotations["units_tables"] == {"/processing/ecephys/units": 3}
    places = [(notes["location"], notes["electrode_group"]) for notes in recording.unit_annotations]
    assert places == [("CA1", "shank0"), ("CA1, DG", "shank0, shank1"), ("DG", "shank1")]
    named = load(path, units_table="/processing/ecephys/units/", units=["z"])  # the path, either way
    assert named.unit_ids.tolist() == ["z"] and "units table" not in named.annotations["assumed"]


def test_a_units_table_is_chosen_by_its_path_and_refused_where_the_choice_is_unclear(tmp_path):
    both = write_sorted_nwb(tmp_path / "both.nwb", {"kilosort": SORTED}, top={"good": ([0.2], [2])})
    curated = load(both)  # /units first, the others named
    assert curated.unit_ids.tolist() == ["good"]
    assert curated.unit_annotations[0]["location"] == "DG"
    assert curated.annotations["assumed"]["units table"] == (
        "/units, of 2 Units tables (/units (1 unit), /processing/kilosort/units (3 units)); units_table= "
        "(--units-table) reads another"
    )
    assert load(both, units_table="processing/kilosort/units").unit_ids.tolist() == ["x", "y", "z"]
    with pytest.raises(
        ValueError,
        match=r"both\.nwb: has no table /processing/ecephys/units \(units_table=, --units-table\); its "
        r"Units tables are /units \(1 unit\), /processing/kilosort/units \(3 units\)$",
    ):
        load(both, units_table="processing/ecephys/units")
    two = write_sorted_nwb(tmp_path / "two.nwb", {"kilosort": SORTED, "mountainsort": {"m": ([0.5], [1])}})
    with pytest.raises(
        ValueError,
        match=r"two\.nwb: has no /units but 2 Units tables elsewhere: /processing/kilosort/units "
        r"\(3 units\), /processing/mountainsort/units \(1 unit\); choose one with units_table= "
        r"\(--units-table\)",
    ):
        load(two)
    assert load(two, units_table="processing/mountainsort/units").unit_ids.tolist() == ["m"]
    save(Recording.from_spike_times(SPIKES, t_start=0, t_stop=1), tmp_path / "rec.npz")
    with pytest.raises(ValueError, match=r"option\(s\) units_table do not apply to the npz format"):
        load(tmp_path / "rec.npz", units_table="units")


def test_nwb_round_trip_readable_by_pynwb(tmp_path):
    original = Recording.from_spike_times(
        SPIKES, t_start=0.0, t_stop=1.5, trials=TRIALS, annotations={"session_description": "mine"}
    )
    save(original, tmp_path / "out.nwb")
    again = load(tmp_path / "out.nwb")
    assert_same(original, again)
    np.testing.assert_array_equal(again.trials, TRIALS)
    pynwb = pytest.importorskip("pynwb")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pynwb reads it without complaint
        with pynwb.NWBHDF5IO(str(tmp_path / "out.nwb"), "r") as io:
            nwbfile = io.read()
            assert nwbfile.session_description == "mine"
            assert list(nwbfile.units["unit_name"][:]) == ["a", "b", "c"]
            for k, expected in enumerate(SPIKES.values()):
                np.testing.assert_array_equal(nwbfile.units["spike_times"][k], expected)
            np.testing.assert_array_equal(nwbfile.trials["start_time"][:], [0.0, 0.5])


def test_read_nix_written_by_neo_lays_overlapping_segments_end_to_end(tmp_path):
    block = write_neo_nix(tmp_path / "rec.nix")
    recording = load(tmp_path / "rec.nix")
    assert recording.unit_ids.tolist() == ["unit0", "unit1", "unit2"]
    np.testing.assert_array_equal(recording.trials, [[0.0, 1.0], [1.0, 2.0]])
    assert recording.annotations["segment_offsets_s"] == [0.0, 1.0]
    for unit in range(3):
        first, second = (segment.spiketrains[unit].times.magnitude for segment in block.segments)
        np.testing.assert_allclose(recording.spike_times[unit], np.concatenate([first, second + 1.0]))
    assert recording.unit_annotations[2]["channel"] == 2
    assert recording.bin("10 ms").counts.shape == (2, 100, 3)


def test_read_nix_matches_unnamed_units_by_position(tmp_path):
    write_neo_nix(tmp_path / "rec.nix", t_starts=(0.0, 2.0), names=False)
    recording = load(tmp_path / "rec.nix")
    assert recording.unit_ids.tolist() == ["0", "1", "2"]
    np.testing.assert_array_equal(recording.trials, [[0.0, 1.0], [2.0, 3.0]])  # no overlap: times kept
    assert "segment_offsets_s" not in recording.annotations


def test_nix_round_trip(tmp_path):
    original = Recording.from_spike_times(
        SPIKES, t_stop=1.0, trials=TRIALS, unit_annotations=[{"depth": 10.0}, {}, {"name": "x"}]
    )
    save(original, tmp_path / "out.nix")
    again = load(tmp_path / "out.nix")
    assert_same(original, again)
    np.testing.assert_array_equal(again.trials, TRIALS)
    assert again.unit_annotations[0] == {"depth": 10.0}


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_plain_round_trips(tmp_path, suffix):
    rng = np.random.default_rng(1)
    original = Recording.from_spike_times(
        {f"u,{k}": np.sort(rng.uniform(0, 3, 40)) for k in range(4)}, t_start=0.0, t_stop=3.0
    )
    save(original, tmp_path / f"out{suffix}")
    again = load(tmp_path / f"out{suffix}")
    assert again.unit_ids.tolist() == original.unit_ids.tolist()
    for mine, theirs in zip(original.spike_times, again.spike_times, strict=True):
        np.testing.assert_array_equal(mine, theirs)  # exact: no precision lost
    if suffix == ".npz":
        assert_same(original, again)


def test_npz_keeps_trials_and_empty_units(tmp_path):
    original = Recording([[0.1], []], ["a", "b"], t_stop=1.0, trials=TRIALS, empty_units="keep")
    save(original, tmp_path / "out.npz")
    again = load(tmp_path / "out.npz", empty_units="keep")
    assert again.unit_ids.tolist() == ["a", "b"] and again.n_spikes.tolist() == [1, 0]
    np.testing.assert_array_equal(again.trials, TRIALS)


def test_csv_header_variants(tmp_path):
    path = tmp_path / "spikes.csv"
    path.write_text("Spike_Time, Unit_ID\n0.5,b\n0.1,a\n0.7,b\n")
    recording = load(path)
    assert recording.unit_ids.tolist() == ["b", "a"]  # order of the first spike in the file
    assert recording.spike_times[0].tolist() == [0.5, 0.7]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.nwb: no such file"):
        load(tmp_path / "nothere.nwb")


def test_unknown_extension_and_format(tmp_path):
    path = tmp_path / "spikes.xyz"
    path.write_text("x")
    with pytest.raises(
        ValueError, match=r"spikes\.xyz: unknown extension '\.xyz'; spikeglm reads \.nwb, \.nix"
    ):
        load(path)
    with pytest.raises(ValueError, match=r"spikes\.xyz: unknown format 'hdf'; use one of nwb, nix"):
        load(path, format="hdf")


def test_not_hdf5_and_truncated_nwb(tmp_path):
    garbage = tmp_path / "garbage.nwb"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"garbage\.nwb: is not a readable HDF5/NWB file"):
        load(garbage)
    whole = write_pynwb(tmp_path / "whole.nwb").read_bytes()
    cut = tmp_path / "cut.nwb"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"cut\.nwb: is not a readable HDF5/NWB file"):
        load(cut)


def test_nwb_without_units_table(tmp_path):
    path = write_pynwb(tmp_path / "nounits.nwb", spikes={})
    with pytest.raises(
        ValueError, match=r"nounits\.nwb: has no Units table \(/units\); spikeglm needs sorted units"
    ):
        load(path)


def test_nwb_inconsistent_ragged_index(tmp_path):
    path = write_pynwb(tmp_path / "bad.nwb")
    with h5py.File(path, "r+") as handle:
        handle["units/spike_times_index"][...] = [3, 2, 8]
    with pytest.raises(ValueError, match=r"bad\.nwb: /units/spike_times_index is inconsistent"):
        load(path)


def test_nwb_units_without_spikes_drop_keep_error(tmp_path):
    path = write_pynwb(tmp_path / "empty.nwb", spikes={"a": [0.1], "silent": [], "c": [0.2]})
    with pytest.warns(UserWarning, match=r"empty\.nwb: dropping 1 unit\(s\) without spikes: 'silent'"):
        assert load(path).unit_ids.tolist() == ["a", "c"]
    assert load(path, empty_units="keep").unit_ids.tolist() == ["a", "silent", "c"]
    with pytest.raises(ValueError, match=r"empty\.nwb: unit\(s\) 'silent' have no spikes"):
        load(path, empty_units="error")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "a,0.1\nb,0.3\na,0.05\n",
            "unit 'a': spike times are not sorted: index 1 (0.05 s) comes after 0.1 s",
        ),
        ("a,0.1\nb,nan\n", "unit 'b': 1 NaN or infinite spike time(s)"),
        ("a,0.1\nb,soon\n", "row 3: time 'soon' is not a number"),
        ("a\n", "row 2 has 1 field(s); expected unit and time"),
    ],
)
def test_bad_spike_times_in_csv(tmp_path, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text("unit,time\n" + rows)
    with pytest.raises(ValueError) as error:
        load(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_csv_without_the_expected_header(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("0.1,a\n")
    with pytest.raises(ValueError, match=r"noheader\.csv: expected a header with a unit column"):
        load(path)


def test_spikes_outside_t_start_t_stop_in_npz(tmp_path):
    path = tmp_path / "outside.npz"
    np.savez(path, spike_times=[0.1, 0.5, 2.5], unit_ids=["a", "a", "b"], t_start=0.0, t_stop=2.0)
    with pytest.raises(ValueError, match=r"outside\.npz: unit 'b': 1 spike\(s\) outside \[t_start, t_stop\]"):
        load(path)


def test_npz_with_pickled_objects_or_missing_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, spike_times=[0.1], unit_ids=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"objects\.npz: array 'unit_ids' is not .* it holds Python objects"):
        load(path)
    path = tmp_path / "partial.npz"
    np.savez(path, spike_times=[0.1])
    with pytest.raises(ValueError, match=r"partial\.npz: missing array\(s\) unit_ids"):
        load(path)


def test_bin_errors_name_the_file(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("unit,time\na,0.1\na,0.2\n")
    recording = load(path)
    with pytest.raises(ValueError, match=r"short\.csv: bin: bin_size 1 s is longer than the span binned"):
        recording.bin("1 s")
    with pytest.raises(ValueError, match=r"short\.csv: bin: .* would take .* GiB"):
        recording.bin("1 fs")


class _CreatesMarker:
    """Unpickling an instance opens (creates) the marker file: the proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("format", [None, "neo"])
def test_pickle_is_refused_unread(tmp_path, format):
    marker = tmp_path / "marker"
    path = tmp_path / "block.pkl"
    path.write_bytes(pickle.dumps(_CreatesMarker(marker)))
    with pytest.raises(
        ValueError, match=r"block\.pkl: refusing to unpickle block\.pkl: pickle files can execute code"
    ):
        load(path, format=format)
    assert not marker.exists()


def test_save_refuses_to_overwrite_and_leaves_the_file_intact(tmp_path):
    path = tmp_path / "existing.nwb"
    path.write_bytes(b"precious")
    recording = Recording.from_spike_times(SPIKES)
    for suffix_path in (path, path.with_suffix(".npz"), path.with_suffix(".nix")):
        if not suffix_path.exists():
            suffix_path.write_bytes(b"precious")
        with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
            save(recording, suffix_path)
        assert suffix_path.read_bytes() == b"precious"
    save(recording, path, overwrite=True)
    assert_same(recording, load(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.nix", "existing.npz", "existing.nwb"]


def test_save_unwritable_format_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"out\.smr: spikeglm cannot write the neo format; it writes nwb"):
        save(Recording.from_spike_times(SPIKES), tmp_path / "out.smr")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        save(Recording.from_spike_times(SPIKES), tmp_path / "no" / "out.nwb")
    assert list(tmp_path.iterdir()) == []


def test_nix_through_neos_generic_reader_and_a_corrupt_nix(tmp_path):
    write_neo_nix(tmp_path / "rec.nix")
    generic = load(tmp_path / "rec.nix", format="neo")
    assert_same(load(tmp_path / "rec.nix"), generic)
    corrupt = tmp_path / "corrupt.nix"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError, match=r"corrupt\.nix: is not a readable NIX file"):
        load(corrupt)
    with pytest.raises(ValueError, match=r"corrupt\.nix: neo could not read it \(NixIO"):
        load(corrupt, format="neo")


def test_nwb_reads_only_the_units_asked_for(tmp_path, monkeypatch):
    """units= reads just those units' slices of the ragged spike_times dataset, in the order asked."""
    path = write_pynwb(tmp_path / "rec.nwb")
    full = load(path)
    read_slices = []
    original = h5py.Dataset.__getitem__

    def spy(self, key):
        if self.name == "/units/spike_times":
            read_slices.append(key)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    some = load(path, units=["c", "a"])
    assert some.unit_ids.tolist() == ["c", "a"]
    np.testing.assert_array_equal(some.spike_times[0], full.spike_times[2])
    np.testing.assert_array_equal(some.spike_times[1], full.spike_times[0])
    assert [some.unit_annotations[k]["quality"] for k in (0, 1)] == ["q2", "q0"]
    assert read_slices == [slice(4, 8), slice(0, 3)]  # c's four spikes, then a's three; b's never read
    assert float(some.t_stop) == float(full.t_stop) and some.trials.tolist() == TRIALS


@pytest.mark.parametrize("suffix", [".nwb", ".npz"])
def test_unknown_units_are_named_with_the_file(tmp_path, suffix):
    path = tmp_path / f"rec{suffix}"
    save(Recording.from_spike_times(SPIKES, t_stop=1.0), path)
    assert load(path, units=["b"]).unit_ids.tolist() == ["b"]
    with pytest.raises(ValueError, match=rf"rec\{suffix}.*unknown unit.*'zz'"):
        load(path, units=["a", "zz"])


def test_save_never_replaces_the_file_a_recording_was_read_from(tmp_path):
    path = tmp_path / "rec.npz"
    save(Recording.from_spike_times(SPIKES), path)
    before = path.read_bytes()
    recording = load(path)
    with pytest.raises(ValueError, match=r"rec\.npz: is an input here"):
        save(recording, path, overwrite=True)
    assert path.read_bytes() == before
    save(recording, tmp_path / "copy.npz")  # anywhere else is fine
