"""Readers of the spike-sorting outputs labs hold: phy/Kilosort folders, MATLAB files (v5 and v7.3),
per-unit text files, NWB trial tables; the options of load() that choose a window or units; and the
command line's reading options. Every file is written here, in the layouts the readers must know."""

import gzip

import h5py
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner
from test_io import write_pynwb

from spikeglm.cli import main
from spikeglm.io import load
from spikeglm.timeunits import unit_seconds

RATE = 30_000.0
# Per unit: spike times in seconds, on the sample grid of RATE.
TIMES = {
    "3": np.array([30, 900, 3000, 45_000]) / RATE,
    "7": np.array([150, 151, 60_000]) / RATE,
    "12": np.array([10, 20, 40, 80, 90_000]) / RATE,
}
LABELS = {"3": "good", "7": "noise", "12": "good"}
BY_POSITION = {str(k + 1): times for k, times in enumerate(TIMES.values())}  # named as MATLAB counts


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_units(recording, expected):
    """The recording holds exactly ``expected`` (unit -> times in s), in that order."""
    assert recording.unit_ids.tolist() == list(expected)
    for unit, times in zip(recording.unit_ids, recording.spike_times, strict=True):
        np.testing.assert_allclose(times, expected[unit], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------- phy/Kilosort


def write_phy(folder, clusters_file="spike_clusters.npy", labels=("cluster_group.tsv", "group"), params=True):
    """A phy folder: spikes in time order as sample indices, their clusters, params.py and labels."""
    folder.mkdir(exist_ok=True)
    samples = np.concatenate([np.round(times * RATE) for times in TIMES.values()]).astype(np.uint64)
    clusters = np.repeat([int(unit) for unit in TIMES], [len(times) for times in TIMES.values()]).astype(
        np.int32
    )
    order = np.argsort(samples, kind="stable")
    np.save(folder / "spike_times.npy", samples[order][:, None])  # Kilosort writes an (n, 1) column
    np.save(folder / clusters_file, clusters[order])
    np.save(folder / "amplitudes.npy", np.ones(len(samples)))
    if params:
        marker = folder / "executed"
        (folder / "params.py").write_text(
            f"dat_path = 'raw.bin'\nn_channels_dat = 32\ndtype = 'int16'\noffset = 0\nsample_rate = {RATE}\n"
            f"hp_filtered = False\nopen({str(marker)!r}, 'w')  # never run\n"
        )
    if labels:
        name, column = labels
        rows = "".join(
            f"{unit}\t{label}\n" for unit, label in LABELS.items() if unit != "12"
        )  # 12 unlabelled
        (folder / name).write_text(f"cluster_id\t{column}\n{rows}")
    return folder


def test_phy_folder_is_found_and_read_without_running_params(tmp_path):
    folder = write_phy(tmp_path / "sorted")
    recording = load(folder)
    assert_units(recording, TIMES)  # units in the order of their cluster number
    assert [notes["label"] for notes in recording.unit_annotations] == ["good", "noise", "unsorted"]
    assert (float(recording.t_start), float(recording.t_stop)) == (0.0, 90_000 / RATE)
    assumed = recording.annotations["assumed"]
    assert assumed["format"] == "phy"
    assert assumed["time unit"] == "samples at 30000 Hz (params.py sample_rate)"
    assert "labels from cluster_group.tsv: 1 good, 1 noise, 1 unsorted" in assumed["units"]
    assert not (folder / "executed").exists()


def test_phy_keeps_units_by_label(tmp_path):
    folder = write_phy(tmp_path / "sorted")
    good = load(folder, label="good")
    assert good.unit_ids.tolist() == ["3"]
    assert good.annotations["assumed"]["units kept"] == "1 of 3: labelled good"
    assert load(folder, label=["good", "unsorted"]).unit_ids.tolist() == ["3", "12"]
    with pytest.raises(
        ValueError,
        match=r"sorted: no unit is labelled 'mua'; the labels \(label\) are 'good', 'noise', 'unsorted'",
    ):
        load(folder, label="mua")


def test_phy2_cluster_info_gives_the_curated_group_else_kilosorts_label(tmp_path):
    folder = write_phy(tmp_path / "phy2", labels=None)
    (folder / "cluster_info.tsv").write_text(
        "cluster_id\tKSLabel\tch\tdepth\tgroup\tn_spikes\n"
        "7\tgood\t3\t40.0\tnoise\t2\n"  # curated: noise, whatever Kilosort said
        "3\tmua\t5\t80.0\t\t3\n"  # not curated: Kilosort's label
    )
    recording = load(folder)
    labels = {
        unit: notes["label"]
        for unit, notes in zip(recording.unit_ids, recording.unit_annotations, strict=True)
    }
    assert labels == {"3": "mua", "7": "noise", "12": "unsorted"}
    assert "labels from cluster_info.tsv" in recording.annotations["assumed"]["units"]
    (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n3\tgood\n")  # phy's own table first
    assert load(folder, label="good").unit_ids.tolist() == ["3"]


def test_kilosort_templates_and_labels_and_a_rate_given(tmp_path):
    folder = write_phy(
        tmp_path / "ks",
        clusters_file="spike_templates.npy",
        labels=("cluster_KSLabel.tsv", "KSLabel"),
        params=False,
    )
    with pytest.raises(
        ValueError, match=r"ks: has no params\.py to give the sampling rate; pass sampling_rate="
    ):
        load(folder)
    recording = load(folder, sampling_rate=RATE / 2)  # a rate given: twice the times
    assert_units(recording, {unit: 2 * times for unit, times in TIMES.items()})
    assert "labels from cluster_KSLabel.tsv" in recording.annotations["assumed"]["units"]
    assert recording.annotations["assumed"]["time unit"] == "samples at 15000 Hz (as told)"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "spike_clusters.npy").unlink(), "has spike_times.npy but neither spike_clusters.npy"),
        (
            lambda f: np.save(f / "spike_clusters.npy", np.zeros(3, int)),
            "holds 12 spikes but spike_clusters.npy 3",
        ),
        (
            lambda f: (f / "params.py").write_text("sample_rate = 'fast'\n"),
            "params.py: no positive sample_rate",
        ),
        (lambda f: (f / "params.py").write_text("sample_rate = (\n"), r"params.py: is not readable Python"),
        (
            lambda f: (f / "cluster_group.tsv").write_text("id\tgroup\n1\tgood\n"),
            "expected the columns cluster_id",
        ),
        (
            lambda f: np.save(f / "spike_clusters.npy", np.array([{"a": 1}] * 12, dtype=object)),
            r"spike_clusters\.npy: is not a readable \.npy array",
        ),
    ],
    ids=["no-clusters", "lengths", "bad-rate", "bad-params", "bad-tsv", "pickled"],
)
def test_phy_errors_name_the_file(tmp_path, damage, message):
    folder = write_phy(tmp_path / "sorted")
    damage(folder)
    with pytest.raises(ValueError, match=message):
        load(folder)


# --------------------------------------------------------------------------------------------- MATLAB v5


def id_time_rows(order="id,time"):
    """An [id, time] array of TIMES, ids as numbers, rows by unit (as MATLAB users write them)."""
    rows = np.array([[float(unit), t] for unit, times in TIMES.items() for t in times])
    return rows if order == "id,time" else rows[:, ::-1]


def cell_of(times):
    cell = np.empty((1, len(times)), dtype=object)
    for k, values in enumerate(times):
        cell[0, k] = np.asarray(values, dtype=np.float64)[:, None]  # column vectors
    return cell


@pytest.mark.parametrize("order", ["id,time", "time,id"])
def test_mat_id_time_rows_either_column_order(tmp_path, order):
    path = tmp_path / "rows.mat"
    scipy.io.savemat(path, {"spks": id_time_rows(order)})
    recording = load(path)
    assert_units(recording, {unit: TIMES[unit] for unit in sorted(TIMES, key=int)})
    assumed = recording.annotations["assumed"]
    assert assumed["format"] == "mat"
    assert assumed["variable"].startswith(f"spks: [{order.replace(',', ', ')}] rows of 12 spikes")
    assert assumed["time unit"] == "s (assumed; time_unit= or --time-unit to change)"
    scipy.io.savemat(path, {"spks": id_time_rows(order).T})  # 2 x n: the transpose
    assert_units(load(path), {unit: TIMES[unit] for unit in sorted(TIMES, key=int)})


def test_mat_column_order_that_cannot_be_told(tmp_path):
    path = tmp_path / "rows.mat"
    rows = np.array([[1, 10], [1, 20], [2, 20], [2, 40]], dtype=float)  # both whole, 2 and 3 distinct
    scipy.io.savemat(path, {"spks": rows})
    with pytest.raises(
        ValueError, match=r"rows\.mat: spks: cannot tell which column holds the unit ids .*--columns"
    ):
        load(path)
    recording = load(path, columns="id,time")
    assert recording.unit_ids.tolist() == ["1", "2"] and recording.spike_times[1].tolist() == [20.0, 40.0]
    recording = load(path, columns="time,id")
    assert recording.unit_ids.tolist() == ["10", "20", "40"]
    assert recording.spike_times[1].tolist() == [1.0, 2.0]


def test_mat_cell_array_and_time_units(tmp_path):
    path = tmp_path / "cells.mat"
    ms = [times * 1000 for times in TIMES.values()]
    scipy.io.savemat(path, {"unit_t": cell_of(ms)})
    recording = load(path, time_unit="ms")
    assert_units(recording, {str(k + 1): times for k, times in enumerate(TIMES.values())})  # from 1
    assert (
        recording.annotations["assumed"]["variable"]
        == "unit_t: a cell array of 3 units, named 1 to 3 (MATLAB v5, scipy.io)"
    )
    assert recording.annotations["assumed"]["time unit"] == "ms (as told)"
    samples = [np.round(times * RATE) for times in TIMES.values()]
    scipy.io.savemat(path, {"unit_t": cell_of(samples)})
    with pytest.raises(
        ValueError, match=r"cells\.mat: the times run from 10 to 90000, 1\.04 days if they were seconds"
    ):
        load(path)
    assert_units(load(path, time_unit="samples", sampling_rate=RATE), BY_POSITION)
    assert_units(load(path, sampling_rate=RATE), BY_POSITION)  # samples implied
    with pytest.raises(ValueError, match=r"cells\.mat: time_unit='samples' needs sampling_rate"):
        load(path, time_unit="samples")


def test_mat_struct_layouts(tmp_path):
    path = tmp_path / "structs.mat"
    units = np.zeros((1, 3), dtype=[("name", object), ("ts", object), ("channel", object)])
    for k, (unit, times) in enumerate(TIMES.items()):
        units[0, k] = (f"u{unit}", times[:, None], float(k))
    scipy.io.savemat(path, {"units": units})
    recording = load(path)
    assert_units(recording, {f"u{unit}": times for unit, times in TIMES.items()})
    assert (
        "struct array of 3 units, times in .ts, named by .name"
        in recording.annotations["assumed"]["variable"]
    )
    by_field = {f"cell{unit}": times for unit, times in TIMES.items()}
    scipy.io.savemat(path, {"spikes": by_field})  # a scalar struct: one field per unit
    assert_units(load(path), by_field)


def test_mat_variable_found_inside_a_struct_or_named(tmp_path):
    path = tmp_path / "nested.mat"
    data = {"fs": RATE, "spikes": cell_of(TIMES.values()), "name": "session 1"}
    scipy.io.savemat(path, {"data": data, "notes": "none"})
    recording = load(path)
    assert recording.annotations["assumed"]["variable"].startswith("data.spikes: a cell array of 3 units")
    scipy.io.savemat(path, {"data": data, "trials": np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])})
    with pytest.raises(
        ValueError,
        match=r"several variables could hold the spike times \(data\.spikes, trials\); .*--variable",
    ):
        load(path)
    assert load(path, variable="data.spikes").n_units == 3
    with pytest.raises(ValueError, match=r"nested\.mat: no variable 'x'; the file has data, trials"):
        load(path, variable="x")
    with pytest.raises(
        ValueError, match=r"nested\.mat: data has no field 'spks' \(its fields: fs, spikes, name\)"
    ):
        load(path, variable="data.spks")
    with pytest.raises(ValueError, match=r"nested\.mat: data\.name is a str, not an \[id, time\]"):
        load(path, variable="data.name")


def test_mat_without_spike_times_or_from_neo(tmp_path):
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"image": np.ones((4, 5)), "fs": 1000.0})
    with pytest.raises(
        ValueError, match=r"other\.mat: no variable holds spike times .* \(variables: image: a 4x5 float64"
    ):
        load(path)
    scipy.io.savemat(path, {"block": {"segments": cell_of([[1.0]]), "name": "b"}})
    with pytest.raises(ValueError, match=r"other\.mat: is a neo MATLAB file .*--format neo"):
        load(path, format="mat")  # asked for by name: the MATLAB reader's own answer
    path.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match=r"other\.mat: is not a readable MATLAB file"):
        load(path)


def test_a_mat_file_neo_wrote_is_read_through_neo(tmp_path):
    neo = pytest.importorskip("neo")
    quantities = pytest.importorskip("quantities")
    block = neo.Block(name="session")
    for start in (0.0, 10.0):
        segment = neo.Segment()
        for unit, offset in (("a", 0.5), ("b", 1.25)):
            times = (start + offset + np.arange(4) * 2.0) * quantities.s
            train = neo.SpikeTrain(times, t_start=start * quantities.s, t_stop=(start + 10) * quantities.s)
            train.name = unit
            segment.spiketrains.append(train)
        block.segments.append(segment)
    path = tmp_path / "neo.mat"
    neo.io.NeoMatlabIO(str(path)).write_block(block)
    recording = load(path)
    through_neo = load(path, format="neo")
    assert recording.annotations["assumed"]["format"] == "neo"
    assert list(recording.unit_ids) == list(through_neo.unit_ids) and recording.n_units == 2
    np.testing.assert_array_equal(recording.bin("5 ms").counts, through_neo.bin("5 ms").counts)
    assert recording.bin("5 ms").counts.sum() == 16 and len(recording.trials) == 2
    with pytest.raises(ValueError, match=r"neo\.mat: is a neo MATLAB file"):
        load(path, time_unit="ms")  # MATLAB options: the MATLAB reader was meant


# ------------------------------------------------------------------------------------------- MATLAB v7.3


class StructArray(list):
    """A MATLAB struct array to write: one dict per element."""


def write_v73(path, variables):
    """A MATLAB v7.3 file laid out as MATLAB writes it: HDF5 after a 512-byte header, arrays transposed,
    cells as references into #refs#, structs as groups, struct arrays as groups of reference fields."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        refs = handle.create_group("#refs#")

        def stored(value):
            name = f"r{len(refs)}"
            put(refs, name, value)
            return refs[name].ref

        def put(group, name, value):
            if isinstance(value, StructArray):
                fields = group.create_group(name)
                fields.attrs["MATLAB_class"] = np.bytes_("struct")
                for field in value[0]:
                    references = [stored(element[field]) for element in value]
                    fields.create_dataset(field, data=np.array(references, dtype=h5py.ref_dtype)[:, None])
            elif isinstance(value, dict):
                fields = group.create_group(name)
                fields.attrs["MATLAB_class"] = np.bytes_("struct")
                names = [np.array(list(field), dtype="S1") for field in value]
                fields.attrs.create("MATLAB_fields", names, dtype=h5py.vlen_dtype(np.dtype("S1")))
                for field, inner in value.items():
                    put(fields, field, inner)
            elif isinstance(value, list):
                references = np.array([stored(item) for item in value], dtype=h5py.ref_dtype)[:, None]
                group.create_dataset(name, data=references).attrs["MATLAB_class"] = np.bytes_("cell")
            elif isinstance(value, str):
                codes = np.array([ord(c) for c in value], dtype=np.uint16)[:, None]
                group.create_dataset(name, data=codes).attrs["MATLAB_class"] = np.bytes_("char")
            else:
                array = np.atleast_2d(np.asarray(value, dtype=np.float64))
                group.create_dataset(name, data=array.T).attrs["MATLAB_class"] = np.bytes_("double")

        for name, value in variables.items():
            put(handle, name, value)
    with open(path, "r+b") as handle:
        handle.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Nov 26 08:00:00 2026 HDF5 schema 1.00 ."
        )


def test_mat_v73_layouts(tmp_path):
    path = tmp_path / "v73.mat"
    write_v73(path, {"spks": id_time_rows()})  # MATLAB's n x 2, stored 2 x n
    recording = load(path)
    assert_units(recording, {unit: TIMES[unit] for unit in sorted(TIMES, key=int)})
    assert recording.annotations["assumed"]["variable"].endswith("(MATLAB v7.3, h5py)")
    write_v73(path, {"unit_t": [times * 1000 for times in TIMES.values()], "label": "session"})
    assert_units(load(path, time_unit="ms"), BY_POSITION)
    elements = StructArray({"name": f"u{unit}", "times": times} for unit, times in TIMES.items())
    write_v73(path, {"units": elements})
    assert_units(load(path), {f"u{unit}": times for unit, times in TIMES.items()})
    write_v73(path, {"data": {"fs": RATE, "spikes": {f"c{unit}": times for unit, times in TIMES.items()}}})
    recording = load(path)
    assert recording.annotations["assumed"]["variable"].startswith("data.spikes: a struct of 3 units")
    assert_units(recording, {f"c{unit}": times for unit, times in TIMES.items()})


# ------------------------------------------------------------------------------------ per-unit text files


def write_text_units(folder):
    """cell0.txt.gz, cell2.txt and cell10.txt (times in ms, some negative), and a README to ignore."""
    folder.mkdir()
    with gzip.open(folder / "cell0.txt.gz", "wt") as handle:
        handle.write("-99.5\n-0.25\n12.125\n")
    (folder / "cell10.txt").write_text("# cell 10\n5.0\n\n7.5\n")
    (folder / "cell2.txt").write_text("1.0\n")
    (folder / "README.md").write_text("not spikes\n")
    return folder


def test_text_folder_gzip_natural_order_and_negative_times(tmp_path):
    folder = write_text_units(tmp_path / "cells")
    recording = load(folder, time_unit="ms")
    expected = {"cell0": [-0.0995, -0.00025, 0.012125], "cell2": [0.001], "cell10": [0.005, 0.0075]}
    assert_units(recording, expected)
    assert (float(recording.t_start), float(recording.t_stop)) == pytest.approx((-0.0995, 0.012125))
    assumed = recording.annotations["assumed"]
    assert assumed["format"] == "text" and assumed["time unit"] == "ms (as told)"
    assert assumed["files"].startswith("3 file(s), one unit each")
    pattern = load(str(tmp_path / "cells" / "cell1*"), time_unit="ms")  # a glob: cell10 only
    assert pattern.unit_ids.tolist() == ["cell10"]
    assert load(folder / "cell0.txt.gz").unit_ids.tolist() == ["cell0"]  # one file, seconds assumed


def test_text_errors_name_the_file_and_line(tmp_path):
    folder = write_text_units(tmp_path / "cells")
    (folder / "cell2.txt").write_text("1.0\n2.0 3.0\n")
    with pytest.raises(ValueError, match=r"cell2\.txt: line 2: '2\.0 3\.0' is not one spike time"):
        load(folder)
    (folder / "cell2.txt").write_text("3.0\n1.0\n")
    with pytest.raises(ValueError, match=r"cells: unit 'cell2': spike times are not sorted"):
        load(folder)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(
        ValueError, match=r"empty: holds no \.txt or \.txt\.gz files; name the unit files with a glob"
    ):
        load(tmp_path / "empty", format="text")
    with pytest.raises(ValueError, match=r"nothing\*\.txt: no file matches this pattern"):
        load(tmp_path / "nothing*.txt")
    (tmp_path / "long.txt").write_text("-99981.0\n9999982.5\n")  # ms, unstated: 117 days as seconds
    with pytest.raises(
        ValueError, match=r"long\.txt: the times run from -99981 to 9\.99998e\+06, 117 days .*--time-unit"
    ):
        load(tmp_path / "long.txt")


def test_format_forced_and_options_that_do_not_apply(tmp_path):
    path = tmp_path / "unit.dat"
    path.write_text("0.5\n1.5\n")
    assert load(path, format="text").spike_times[0].tolist() == [0.5, 1.5]
    with pytest.raises(
        ValueError,
        match=r"unit\.dat: option\(s\) variable do not apply to the text format \(it takes time_unit, "
        r"sampling_rate\)",
    ):
        load(path, format="text", variable="x")
    with pytest.raises(ValueError, match=r"unit\.dat: option\(s\) trials do not apply to the text format"):
        load(path, format="text", trials="encoding_table")
    with pytest.raises(ValueError, match=r"time_unit: expected one of s, ms, us, samples; got 'min'"):
        load(path, format="text", time_unit="min")


# ------------------------------------------------------------------------------ NWB tables, windows, units


def nwb_with_tables(tmp_path):
    spikes = {"a": [0.1, 1.1, 2.1, 3.1, 4.1], "b": [0.5, 4.5], "c": [1.0, 2.0, 3.0]}
    tables = {"encoding_table": [[0.0, 1.0], [2.0, 3.0]], "recognition_table": [[3.0, 4.0]]}
    return write_pynwb(
        tmp_path / "tables.nwb", spikes=spikes, trials=None, obs_intervals=False, tables=tables
    )


def test_nwb_trials_from_any_time_intervals_table(tmp_path):
    path = nwb_with_tables(tmp_path)
    plain = load(path)
    assert plain.trials is None
    assert plain.annotations["interval_tables"] == {
        "encoding_table": {"rows": 2, "start_s": 0.0, "stop_s": 3.0},
        "recognition_table": {"rows": 1, "start_s": 3.0, "stop_s": 4.0},
    }
    assert plain.annotations["assumed"]["trials"].startswith(
        "none (tables: encoding_table (2 rows), recognition"
    )
    encoding = load(path, trials="encoding_table")
    assert encoding.trials.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert encoding.annotations["assumed"]["trials"] == "/intervals/encoding_table (2 rows)"
    assert encoding.bin("100 ms").counts.shape == (2, 10, 3)
    with pytest.raises(
        ValueError,
        match=r"tables\.nwb: no TimeIntervals table 'trials' under /intervals; the file has encoding_table, "
        "recognition_table",
    ):
        load(path, trials="trials")


def test_window_and_unit_filters_in_load(tmp_path):
    path = nwb_with_tables(tmp_path)
    with pytest.warns(UserWarning, match=r"tables\.nwb: dropping 1 unit\(s\) without spikes: 'b'"):
        assert load(path, t_start=1.0, t_stop=3.5).unit_ids.tolist() == ["a", "c"]
    window = load(path, t_start=1.0, t_stop=3.5, trials="encoding_table", empty_units="keep")
    assert (float(window.t_start), float(window.t_stop)) == (1.0, 3.5)
    assert window.n_spikes.tolist() == [3, 0, 3] and window.trials.tolist() == [[2.0, 3.0]]
    assert window.annotations["assumed"]["window"] == "1 s to 3.5 s"
    busy = load(path, min_spikes=3)
    assert busy.unit_ids.tolist() == ["a", "c"]
    assert busy.annotations["assumed"]["units kept"] == "2 of 3: with at least 3 spikes"
    assert load(path, min_rate=1.0).unit_ids.tolist() == ["a"]  # 5 spikes in 4.5 s
    assert load(path, label=["q2", "q0"]).unit_ids.tolist() == ["a", "c"]  # the quality column
    with pytest.raises(
        ValueError, match=r"no unit is labelled 'good'; the labels \(quality\) are 'q0', 'q1', 'q2'"
    ):
        load(path, label="good")
    with pytest.raises(ValueError, match=r"cells: its units carry no labels; label= \(--label\)"):
        load(write_text_units(tmp_path / "cells"), label="good")


def test_unit_seconds():
    assert unit_seconds("ms") == 1e-3 and unit_seconds("samples", 20_000) == 1 / 20_000
    with pytest.raises(ValueError, match="sampling_rate: only used with time_unit='samples'"):
        unit_seconds("s", 1000.0)
    with pytest.raises(ValueError, match="sampling_rate: must be a positive number"):
        unit_seconds("samples", -5.0)


# ------------------------------------------------------------------------------------------ command line


def test_info_states_what_it_assumed_and_flags_units(tmp_path):
    folder = write_phy(tmp_path / "sorted")
    result = run("info", folder)
    assert result.exit_code == 0, result.output
    assert "3 units, 12 spikes, 3 s (0 s to 3 s)" in result.output
    assert "  time unit: samples at 30000 Hz (params.py sample_rate)" in result.output
    assert "unit 7: only 3 spike(s)" not in result.output and "unit '7': only 3 spike(s)" in result.output
    result = run("info", folder, "--label", "good,unsorted", "--min-spikes", "5")
    assert result.exit_code == 0, result.output
    assert (
        "1 units, 5 spikes" in result.output
        and "units kept: 1 of 3: labelled good or unsorted; with at least 5 spikes" in result.output
    )


def test_info_lists_nwb_tables_and_takes_one_as_trials(tmp_path):
    path = nwb_with_tables(tmp_path)
    result = run("info", path, "--bin-size", "100 ms")
    assert result.exit_code == 0, result.output
    assert (
        "interval tables: encoding_table (2 rows, 0 to 3 s), recognition_table (1 rows, 3 to 4 s)"
        in result.output
    )
    result = run("info", path, "--trials", "encoding_table", "--bin-size", "100 ms")
    assert "trials: 2, 1 to 1 s long" in result.output and "2 trials x 10 bins" in result.output
    result = run("info", path, "--trials", "nope")
    assert result.exit_code == 1 and "no TimeIntervals table 'nope'" in result.output


def test_cli_reads_mat_and_text_with_their_options(tmp_path):
    path = tmp_path / "rows.mat"
    scipy.io.savemat(path, {"a": id_time_rows(), "b": id_time_rows()})
    result = run("info", path)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--variable NAME" in result.output
    result = run("info", path, "--variable", "b", "--bin-size", "10 ms")
    assert result.exit_code == 0 and "3 units, 12 spikes" in result.output
    folder = write_text_units(tmp_path / "cells")
    result = run(
        "info",
        f"{folder}/cell*",
        "--time-unit",
        "ms",
        "--t-start",
        "-0.05",
        "--t-stop",
        "0.01",
        "--bin-size",
        "1 ms",
    )
    assert result.exit_code == 0, result.output
    assert (
        "3 units, 4 spikes, 0.06 s (-0.05 s to 0.01 s)" in result.output
        and "window: -0.05 s to 0.01 s" in result.output
    )
    result = run("info", folder / "cell2.txt", "--format", "mat")
    assert result.exit_code == 1 and "cell2.txt: is not a readable MATLAB file" in result.output


def test_fit_and_infer_take_the_reading_options(tmp_path):
    folder = write_text_units(tmp_path / "cells")
    reading = ["--time-unit", "ms", "--t-start", "-0.1", "--t-stop", "0.02"]
    out = tmp_path / "model.h5"
    result = run("fit", folder, "-o", out, *reading, "--bin-size", "1 ms", "--hidden", "1", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "1 trials x 120 bins x 3 units" in result.output
    result = run("infer", out, folder, "-o", tmp_path / "hidden.npz", *reading)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "hidden.npz") as hidden:
        assert hidden["hidden_rates"].shape == (1, 120, 1)
