"""The public recordings of ../shared/data read as their READMEs describe them: units, spikes, span,
trial tables and rates. Each test skips, saying why, where its folder is absent (the data are not part
of the project)."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spikeglm.cli import main
from spikeglm.io import load

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(name: str) -> Path:
    """The folder ``name`` of the shared public recordings, or a skip that says it is absent."""
    folder = DATA / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent: the public recordings of ../shared/data are not shipped")
    return folder


def info(*args) -> str:
    result = CliRunner().invoke(main, ["info", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def test_rat_hippocampus_cell_array():
    path = shared("rat-hippocampus-tetrode-16units") / "all_unit.mat"
    recording = load(path)
    assert recording.n_units == 16 and recording.n_spikes.sum() == 35_112
    assert (recording.n_spikes.min(), recording.n_spikes.max()) == (485, 5_230)
    first = min(times[0] for times in recording.spike_times)
    assert round(first, 2) == 0.70 and round(float(recording.t_stop), 2) == 998.18
    output = info(path)
    assert "16 units, 35112 spikes" in output and "unit_t: a cell array of 16 units" in output
    assert "time unit: s (assumed" in output


@pytest.mark.parametrize(
    ("name", "units", "spikes", "first", "last"),
    [
        ("Feb1312da06spks.mat", 125, 17_059, 0.0006, 89.98),
        ("Jan1312da04spks.mat", 102, 12_503, 0.041, 80.0),
        ("Jan1912da02spks.mat", 102, 11_864, 0.015, 89.99),
    ],
)
def test_aplysia_id_time_rows(name, units, spikes, first, last):
    path = shared("aplysia-pedal-ganglion-vsd") / name
    recording = load(path)
    assert recording.n_units == units and recording.n_spikes.sum() == spikes
    assert recording.unit_ids[0] == "1" and recording.unit_ids[-1] == str(units)  # ids as in the file
    earliest = min(times[0] for times in recording.spike_times)
    assert earliest == pytest.approx(first, abs=5e-4) and float(recording.t_stop) == pytest.approx(
        last, abs=0.01
    )
    rate = recording.n_spikes.sum() / units / float(recording.duration)
    assert 1.2 < rate < 1.8  # the README: ~1.5-1.7 Hz per neuron (over 80 s; two files run to 90 s)
    assert f"{units} units, {spikes} spikes" in info(path, "--bin-size", "10 ms")


def test_glmcc_text_files_in_ms_with_negative_times():
    folder = shared("glmcc-kobayashi-sim-20")
    with pytest.raises(ValueError, match=r"117 days if they were seconds; pass time_unit="):
        load(folder)  # milliseconds are not taken for seconds
    recording = load(folder, time_unit="ms")
    assert recording.n_units == 20 and recording.n_spikes.sum() == 445_945
    assert recording.unit_ids.tolist() == [f"cell{k}" for k in range(20)]
    assert float(recording.t_start) == pytest.approx(-99.981) and float(recording.t_stop) == pytest.approx(
        9999.982
    )
    window = load(folder, time_unit="ms", t_start=0, t_stop=5400)
    rates = window.n_spikes / 5400
    assert round(rates.min(), 2) == 0.73 and round(rates.max(), 2) == 4.26  # GLMCC's window
    output = info(folder, "--time-unit", "ms", "--t-start", "0", "--t-stop", "5400", "--bin-size", "20 ms")
    assert "20 units" in output and "window: 0 s to 5400 s" in output and "time unit: ms (as told)" in output


def test_human_mtl_nwb_trial_tables():
    path = shared("human-mtl-35units-nwb") / "sub-4_ses-4_ecephys_image.nwb"
    recording = load(path)
    assert recording.n_units == 35 and recording.n_spikes.sum() == 214_278 and recording.trials is None
    assert round(float(recording.t_stop)) == 2821
    tables = recording.annotations["interval_tables"]
    assert {name: table["rows"] for name, table in tables.items()} == {
        "encoding_table": 90,
        "recognition_table": 180,
        "timediscrimination_table": 180,
    }
    assert (
        round(tables["recognition_table"]["start_s"]) == 1247
        and round(tables["recognition_table"]["stop_s"]) == 1875
    )
    encoding = load(path, trials="encoding_table")
    assert len(encoding.trials) == 90 and encoding.trials.min() >= 1 and encoding.trials.max() <= 940
    rates = recording.n_spikes / float(recording.duration)
    assert 0.17 < rates.min() and rates.max() < 7.4 and round(float(np.median(rates)), 1) == 1.3
    # Three rows of this table overlap earlier ones (the README's own numbers hold all the same).
    with pytest.warns(UserWarning, match=r"timediscrimination_table: 3 row\(s\) repeat or overlap"):
        output = info(path, "--trials", "timediscrimination_table", "--min-rate", "1")
    assert "trials: /intervals/timediscrimination_table (180 rows)" in output and "trials: 180," in output
    assert "interval tables: encoding_table (90 rows" in output


def test_neo_vendor_files_and_plexon_crosstalk():
    folder = shared("neo-vendor-samples")
    nex = load(folder / "File_neuroexplorer_1.nex")
    assert nex.n_units == 6 and nex.n_spikes.sum() == 45_437 and round(float(nex.t_stop)) == 5196
    plx = load(folder / "File_plexon_3.plx")
    assert plx.n_units == 30 and plx.n_spikes.sum() == 8_351 and round(float(plx.t_stop), 1) == 600.8
    notes = plx.suspicious_units()
    assert sum("only" in note for note in notes) == int((plx.n_spikes < 20).sum()) >= 3
    assert any("identical spike times" in note for note in notes)  # threshold crossings on several channels
    output = info(folder / "File_plexon_3.plx", "--bin-size", "10 ms")
    assert "suspicious units" in output and "more" in output
    assert plx.n_units > load(folder / "File_plexon_3.plx", min_spikes=20).n_units
