"""Hostile and careless NWB files, and windows of time: one line naming the file and what is at fault.

Every file is a small valid one written by spikeglm and then damaged with h5py, with exactly one defect.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_refused, run_cli

import spikeglm as sg
from spikeglm.cli import main

TRIALS = [[0.0, 2.5], [2.5, 5.0], [5.0, 7.5], [7.5, 10.0]]


def small_nwb(path, trials=TRIALS):
    """Three units observed from 0 to 10 s, with four trials."""
    rng = np.random.default_rng(0)
    times = {f"u{k}": np.sort(rng.uniform(0, 10, 40)) for k in range(3)}
    sg.io.save(sg.Recording.from_spike_times(times, t_start=0, t_stop=10, trials=trials), path)
    return path


def damaged(tmp_path, edit, name="small.nwb"):
    """A small NWB file after ``edit(handle)`` has changed it with h5py."""
    path = small_nwb(tmp_path / name)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def replace(handle, name, data, **options):
    del handle[name]
    handle.create_dataset(name, data=data, **options)


# ------------------------------------------------------------------------------------ windows of time


@pytest.mark.slow
def test_cli_refuses_a_window_reaching_outside_the_observed_span(tmp_path):
    path = small_nwb(tmp_path / "small.nwb")
    before = path.read_bytes()
    model = tmp_path / "model.h5"
    result = run_cli("fit", str(path), "-o", str(model), "--t-start", "-5", "--t-stop", "1")
    assert_refused(result, "small.nwb", "--t-start", "0 s to 10 s")
    assert "--t-stop" not in result.stderr  # only the end at fault is named
    assert not model.exists() and path.read_bytes() == before


def test_window_past_a_stated_end_is_refused_and_an_inferred_end_may_move(tmp_path):
    path = small_nwb(tmp_path / "small.nwb")
    with pytest.raises(
        ValueError, match=r"small\.nwb: window: t_stop=12 s \(--t-stop\) reaches outside .* 10 s"
    ):
        sg.load(path, t_start=5, t_stop=12)
    with pytest.raises(ValueError, match=r"t_start=-5 s \(--t-start\) and t_stop=11 s \(--t-stop\)"):
        sg.load(path, t_start=-5, t_stop=11)
    # Without obs_intervals the file states no span: the window may state it.
    with h5py.File(path, "r+") as handle:
        del handle["units/obs_intervals"], handle["units/obs_intervals_index"]
    window = sg.load(path, t_start=-1, t_stop=12)  # every trial inside: no warning
    assert (float(window.t_start), float(window.t_stop)) == (-1.0, 12.0) and len(window.trials) == 4


def test_a_window_that_cuts_trials_says_what_it_kept(tmp_path):
    path = small_nwb(tmp_path / "small.nwb")
    with pytest.warns(
        UserWarning, match=r"small\.nwb: the window 1 s to 6 s keeps 1 of 4 trials whole and drops 3"
    ):
        window = sg.load(path, t_start=1, t_stop=6)
    assert window.trials.tolist() == [[2.5, 5.0]]
    assert window.annotations["assumed"]["trials"] == (
        "/intervals/trials (4 rows); the window 1 s to 6 s keeps 1 of 4 trials whole and drops 3 "
        "(2 cut by its ends)"
    )
    with pytest.warns(UserWarning, match="keeps 0 of 4 trials whole .*the window is one long trial"):
        none_left = sg.load(path, t_start=1, t_stop=2)
    assert none_left.trials is None
    assert "one long trial" in none_left.annotations["assumed"]["trials"]
    assert (
        sg.load(path, t_start=2.5, t_stop=7.5)
        .annotations["assumed"]["trials"]
        .endswith("keeps 2 of 4 trials whole and drops 2")
    )  # trials only outside the window: no warning


@pytest.mark.slow
def test_info_describes_the_trials_of_the_window(tmp_path):
    path = small_nwb(tmp_path / "small.nwb")
    result = run_cli("info", str(path), "--t-start", "1", "--t-stop", "6")
    assert result.returncode == 0, result.stderr
    assert (
        "trials: /intervals/trials (4 rows); the window 1 s to 6 s keeps 1 of 4 trials whole" in result.stdout
    )
    assert "keeps 1 of 4 trials whole" in result.stderr  # the warning
    assert "binned at 5 ms: 1 trials" in result.stdout


# ----------------------------------------------------------------------- damaged datasets: one line each


def link(handle, name, target):
    """Make ``name`` a link to ``target``, in place of what it was."""
    if name in handle:
        del handle[name]
    handle[name] = target


def _string_column(handle, name, values):
    replace(handle, name, np.array(values, dtype=object), dtype=h5py.string_dtype())


DAMAGE = {
    "obs_intervals 1-D": (
        lambda h: replace(h, "units/obs_intervals", [0.0, 10.0, 0.0]),
        r"/units/obs_intervals should hold numbers of shape \(n, 2\); got \(3,\)",
    ),
    "text trial start_time": (
        lambda h: _string_column(h, "intervals/trials/start_time", ["0", "2.5", "5", "x"]),
        r"/intervals/trials/start_time holds text, where numbers are expected",
    ),
    "text spike_times": (
        lambda h: _string_column(h, "units/spike_times", ["0.1"] * h["units/spike_times"].shape[0]),
        r"/units/spike_times should hold numbers of shape \(n,\); got \(120,\) object",
    ),
    "trial columns of unequal length": (
        lambda h: replace(h, "intervals/trials/stop_time", [2.5, 5.0, 7.5]),
        r"/intervals/trials has 4 start_time and 3 stop_time values",
    ),
    "NaN obs_intervals": (
        lambda h: h["units/obs_intervals"].__setitem__(1, [np.nan, 10.0]),
        r"/units/obs_intervals of unit 'u1' holds the interval \[nan, 10.0\] s",
    ),
    "index past the data": (
        lambda h: replace(h, "units/spike_times_index", [40, 80, 500]),
        r"/units/spike_times_index is inconsistent: the end offsets must rise from 0 to the 120 values",
    ),
    "float index": (
        lambda h: replace(h, "units/spike_times_index", [40.0, 80.0, 120.0]),
        r"/units/spike_times_index should hold 3 integer end offsets",
    ),
    "wrapping unsigned index": (
        lambda h: replace(h, "units/spike_times_index", np.array([2**64 - 1, 80, 120], dtype=np.uint64)),
        r"/units/spike_times_index is inconsistent",
    ),
    "2-D ids": (
        lambda h: replace(h, "units/id", [[0, 1, 2]]),
        r"/units/id should be 1-D \(one id per unit\)",
    ),
    "dangling external link": (
        lambda h: link(h, "units/spike_times", h5py.ExternalLink("elsewhere.nwb", "/units/spike_times")),
        r"/units/spike_times is an external link to /units/spike_times in elsewhere\.nwb",
    ),
    "soft link loop": (
        lambda h: (link(h, "units", h5py.SoftLink("/loop")), link(h, "loop", h5py.SoftLink("/units"))),
        r"/units is a link that cannot be followed",
    ),
    "obs_intervals start after stop": (
        lambda h: h["units/obs_intervals"].__setitem__(0, [10.0, 0.0]),
        r"/units/obs_intervals of unit 'u0' holds the interval \[10.0, 0.0\] s",
    ),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_dataset_is_named(tmp_path, case):
    edit, message = DAMAGE[case]
    path = damaged(tmp_path, edit)
    with pytest.raises(ValueError, match=r"^" + str(path).replace(".", r"\.") + ": " + message) as error:
        sg.load(path)
    assert "\n" not in str(error.value)


def moved(handle, to="processing/ecephys/units"):
    """Move the Units table from /units to ``to`` (a table in a processing module, by default)."""
    handle.require_group(to.rsplit("/", 1)[0])
    handle.move("units", to)


def electrodes(handle, rows, n_electrodes=3, ends=None):
    """Give the units the electrode ``rows`` (ragged, with ``ends``, when given) of an electrodes table of
    ``n_electrodes`` rows, in CA1."""
    table = handle.create_group("general/extracellular_ephys/electrodes")
    table.create_dataset("id", data=np.arange(n_electrodes))
    table.create_dataset("location", data=["CA1"] * n_electrodes, dtype=h5py.string_dtype())
    handle.create_dataset("units/electrodes", data=np.array(rows, dtype=np.int64))
    if ends is not None:
        handle.create_dataset("units/electrodes_index", data=np.array(ends, dtype=np.uint8))


ELECTRODES = "/general/extracellular_ephys/electrodes"
UNITS_TABLES = {
    "a named table that is missing": (
        lambda h: None,
        {"units_table": "processing/ecephys/units"},
        r"has no table /processing/ecephys/units \(units_table=, --units-table\); its Units tables are "
        r"/units \(3 units\)$",
    ),
    "a named table behind an external link": (
        lambda h: link(h, "processing/sorted", h5py.ExternalLink("other.nwb", "/units")),
        {"units_table": "processing/sorted"},
        r"/processing/sorted is an external link to /units in other\.nwb",
    ),
    "the only table, without spike_times": (
        lambda h: (moved(h), h.__delitem__("processing/ecephys/units/spike_times")),
        {},
        r"the Units table /processing/ecephys/units has no spike_times dataset$",
    ),
    "a named table without spike_times": (
        lambda h: h.create_group("processing/ecephys/units").create_dataset("id", data=[0, 1]),
        {"units_table": "processing/ecephys/units"},
        r"the Units table /processing/ecephys/units has no spike_times dataset$",
    ),
    "a broken ragged index in a table elsewhere": (
        lambda h: (moved(h), replace(h, "processing/ecephys/units/spike_times_index", [40, 80, 500])),
        {},
        r"/processing/ecephys/units/spike_times_index is inconsistent: the end offsets must rise from 0 "
        r"to the 120 values of spike_times",
    ),
    "an electrode row past the electrodes table": (
        lambda h: electrodes(h, [0, 1, 7]),
        {},
        rf"/units/electrodes gives unit 'u2' the electrode row 7; {ELECTRODES} has 3 rows \(0 to 2\)$",
    ),
    "a negative electrode row, in a table elsewhere": (
        lambda h: (electrodes(h, [0, -1, 2]), moved(h, "processing/sorting/units")),
        {"units_table": "processing/sorting/units"},
        rf"/processing/sorting/units/electrodes gives unit 'u1' the electrode row -1; {ELECTRODES} has 3",
    ),
    "a broken ragged index of electrodes": (
        lambda h: electrodes(h, [0, 1, 2, 2], ends=[1, 5, 4]),
        {},
        r"/units/electrodes_index is inconsistent: the end offsets must rise from 0 to the 4 values of "
        r"electrodes",
    ),
    "electrode rows without an electrodes table": (
        lambda h: h.create_dataset("units/electrodes", data=[0, 0, 1]),
        {},
        rf"/units/electrodes refers to rows of {ELECTRODES}, which the file lacks$",
    ),
    "electrode locations fewer than the electrodes": (
        lambda h: (
            electrodes(h, [0, 1, 2]),
            _string_column(h, "general/extracellular_ephys/electrodes/location", ["CA1", "DG"]),
        ),
        {},
        rf"{ELECTRODES}/location should hold one value per row \(3\); got \(2,\)$",
    ),
}


@pytest.mark.parametrize("case", UNITS_TABLES)
def test_a_faulty_units_table_or_electrode_is_named(tmp_path, case):
    edit, options, message = UNITS_TABLES[case]
    path = damaged(tmp_path, edit)
    with pytest.raises(ValueError, match=r"^" + str(path).replace(".", r"\.") + ": " + message) as error:
        sg.load(path, **options)
    assert "\n" not in str(error.value)


def test_units_get_the_places_of_their_electrodes_and_info_shows_them(tmp_path):
    path = damaged(tmp_path, lambda h: (electrodes(h, [0, 2, 1, 2], ends=[1, 1, 4]), moved(h)))
    with h5py.File(path, "r+") as handle:
        _string_column(handle, "general/extracellular_ephys/electrodes/location", ["CA1", "CA3", "DG"])
    recording = sg.load(path)
    assert [notes.get("location") for notes in recording.unit_annotations] == ["CA1", None, "DG, CA3"]
    result = CliRunner().invoke(main, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "units table: /processing/ecephys/units (3 units), the only one (no /units)" in result.output
    assert "units tables: /processing/ecephys/units (3 units)" in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("u")}
    assert lines["unit"].endswith("  electrode (group)")
    assert lines["u0"].endswith("  CA1") and lines["u2"].endswith("  DG, CA3") and "CA" not in lines["u1"]
    named = CliRunner().invoke(main, ["info", str(path), "--units-table", "processing/ecephys/units"])
    assert named.exit_code == 0 and "units table:" not in named.output, named.output
    missing = CliRunner().invoke(main, ["info", str(path), "--units-table", "units"])
    assert missing.exit_code == 1
    assert (
        "has no table /units (units_table=, --units-table); its Units tables are /processing"
        in missing.output
    )


def test_invalid_utf8_names_fall_back_to_ids_or_are_refused(tmp_path):
    def bad_names(handle):
        replace(handle, "units/unit_name", np.array([b"u0", b"\xff\xfe", b"u2"], dtype="S2"))

    path = damaged(tmp_path, bad_names)
    with pytest.warns(
        UserWarning, match=r"small\.nwb: /units/unit_name: row 1 is not valid UTF-8 text; naming"
    ):
        assert sg.load(path).unit_ids.tolist() == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"small\.nwb: /units/unit_name cannot name the units: row 1 is not"):
        sg.load(path, name_column="unit_name")


def test_invalid_utf8_annotations_are_replaced(tmp_path):
    def bad_text(handle):
        handle.create_dataset("units/location", data=np.array([b"CA1", b"\xff", b"DG"], dtype="S3"))
        replace(handle, "session_description", b"\xffbad", dtype=h5py.string_dtype("utf-8"))

    recording = sg.load(damaged(tmp_path, bad_text))
    assert [notes["location"] for notes in recording.unit_annotations] == ["CA1", "\ufffd", "DG"]
    assert recording.annotations["session_description"] == "\ufffdbad"


def test_links_that_loop_and_references_are_not_followed(tmp_path):
    def loops(handle):
        handle["units/self"] = handle["units"]  # a hard link: /units/self/self/... without end
        handle["intervals/trials/loop"] = h5py.SoftLink("/intervals/trials/loop")
        gone = handle.create_dataset("electrodes_table", data=np.arange(3)).regionref[0:2]
        del handle["electrodes_table"]  # the references now lead nowhere
        handle.create_dataset("units/electrodes", data=[gone] * 3, dtype=h5py.regionref_dtype)

    path = damaged(tmp_path, loops)
    recording = sg.load(path)
    assert recording.n_units == 3 and "electrodes" not in recording.unit_annotations[0]


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_truncated_file_is_named(tmp_path, keep):
    path = small_nwb(tmp_path / "small.nwb")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"small\.nwb: ") as error:
        sg.load(path)
    assert "\n" not in str(error.value)


def huge_spike_times(path):
    """A small file declaring a billion spike times, none written (chunked and compressed)."""
    small_nwb(path)
    with h5py.File(path, "r+") as handle:
        del handle["units/spike_times"]
        handle["units"].create_dataset(
            "spike_times", shape=(10**9,), dtype="f8", chunks=(10**5,), compression="gzip"
        )
        replace(handle, "units/spike_times_index", np.array([1, 2, 10**9], dtype=np.int64))
    return path


def test_a_huge_declared_dataset_is_refused_before_it_is_read(tmp_path):
    path = huge_spike_times(tmp_path / "huge.nwb")
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"huge\.nwb: reading /units/spike_times .* over the read limit"):
        sg.load(path)
    assert sg.load(path, units=["u0", "u1"], empty_units="keep").n_spikes.tolist() == [1, 1]  # lazily


@pytest.mark.slow
def test_cli_refuses_a_huge_declared_dataset_under_a_memory_cap(tmp_path):
    path = huge_spike_times(tmp_path / "huge.nwb")
    before = path.read_bytes()
    result = run_cli("fit", str(path), "-o", str(tmp_path / "model.h5"))
    assert_refused(result, "huge.nwb", "/units/spike_times", "read limit")
    assert path.read_bytes() == before and not (tmp_path / "model.h5").exists()


def test_overlapping_and_repeated_trials_warn_naming_the_rows(tmp_path):
    path = small_nwb(tmp_path / "small.nwb", trials=[[0.0, 2.5], [2.0, 5.0], [5.0, 7.5], [5.0, 7.5]])
    with pytest.warns(
        UserWarning,
        match=r"small\.nwb: /intervals/trials: 2 row\(s\) repeat or overlap an earlier "
        r"row: rows 1, 3",
    ):
        assert len(sg.load(path).trials) == 4


def test_units_observed_over_different_spans_warn(tmp_path):
    def shorter(handle):
        handle["units/obs_intervals"][1] = [2.0, 8.0]
        handle["units/obs_intervals"][2] = [0.0, 12.0]

    path = damaged(tmp_path, shorter)
    with pytest.warns(
        UserWarning,
        match=r"2 of 3 unit\(s\) were not observed over the whole span 0 s to 12 s .*"
        r"'u0', 'u1'.* The span of every unit \(gaps aside\): 2 s to 8 s",
    ):
        recording = sg.load(path)
    assert (float(recording.t_start), float(recording.t_stop)) == (0.0, 12.0)
    assert "not the same for every unit" in recording.annotations["assumed"]["span"]


def test_an_empty_trials_table_gives_no_trials(tmp_path):
    def empty(handle):
        for column in ("start_time", "stop_time", "id"):
            replace(handle, f"intervals/trials/{column}", np.zeros(0))

    recording = sg.load(damaged(tmp_path, empty))
    assert recording.trials is None
    assert recording.annotations["assumed"]["trials"] == "none (/intervals/trials is empty)"


def test_an_nwb_version_that_is_not_text_is_not_read(tmp_path):
    def numeric(handle):
        handle.attrs["nwb_version"] = np.arange(3)

    assert sg.load(damaged(tmp_path, numeric)).annotations["nwb_version"] == ""


def test_a_damaged_heap_of_strings_is_refused_not_followed(tmp_path):
    path = small_nwb(tmp_path / "small.nwb")
    data = bytearray(path.read_bytes())
    heap = data.index(b"GCOL")
    # The first string's size, made longer: every later string is misplaced (HDF5 itself can hang on it).
    data[heap + 24 : heap + 32] = (221).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=rf"small\.nwb: the heap of variable-length data at byte {heap} is damaged"
    ):
        sg.load(path)
