"""The command line, through click's runner and as a real subprocess."""

import dataclasses
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import click
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import spikeglm as sg
from spikeglm.cli import main
from spikeglm.cli.demo import EXAMPLE
from spikeglm.cli.options import Reading

FAST = ["--epochs", "4", "--samples", "2"]


#: The options of a quick jitter test of the example recording's fit (5 jittered copies).
JITTER = ("--test", "jitter", "--recording", EXAMPLE, "--n-jitter", "5", "--alpha", "0.05")


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "model.h5"
    result = run("fit", EXAMPLE, "-o", path, *FAST, "--hidden", "2")
    assert result.exit_code == 0, result.output
    return path


def test_info_describes_the_recording():
    result = run("info", EXAMPLE)
    assert result.exit_code == 0, result.output
    assert "10 units, 22227 spikes, 80 s" in result.output  # the bundled example's spike count
    assert "trials: 80" in result.output


def test_fit_infer_export_pipeline(fitted_model, tmp_path):
    model = sg.POGLM.load(fitted_model)
    assert model.n_hidden == 2 and len(model.history_) == 4
    assert not Path(str(fitted_model) + ".ckpt.h5").exists()  # the checkpoint goes once the fit is saved
    result = run("infer", fitted_model, EXAMPLE, "-o", tmp_path / "hidden.npz")
    assert result.exit_code == 0, result.output
    assert "in expected counts per 5.0 ms bin and in Hz" in result.output
    with np.load(tmp_path / "hidden.npz", allow_pickle=False) as hidden:
        assert hidden["hidden_rates"].shape == (80, 200, 2)
        assert hidden["trial_starts_s"][:3].tolist() == [0.0, 1.0, 2.0]
        assert str(hidden["hidden_rates_unit"]) == "expected spike count per bin"
        assert str(hidden["hidden_rates_hz_unit"]) == "Hz (spikes per second)"
        np.testing.assert_allclose(hidden["hidden_rates_hz"], hidden["hidden_rates"] / 0.005)
        assert hidden["bin_size_s"] == 0.005
        metadata = json.loads(str(hidden["metadata"]))
        assert metadata["model"] == str(fitted_model) and metadata["bin_size"] == "5.0 ms"
        assert metadata["n_hidden"] == 2 and metadata["recording"] == str(EXAMPLE)
    for suffix in ("csv", "npz", "h5", "graphml", "json"):
        result = run("export", fitted_model, "-o", tmp_path / f"conn.{suffix}")
        assert result.exit_code == 0, result.output
    header = (tmp_path / "conn.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "" and header[-2:] == ["hidden-0", "hidden-1"] and len(header) == 13
    loaded = sg.Connectivity.load(tmp_path / "conn.json")
    assert loaded.metadata["bin_size"] == "5.0 ms" and loaded.metadata["relaxation"] == "eat-cubic"
    assert loaded.metadata["spikeglm_version"] == sg.__version__


def test_a_fit_with_a_latent_factor_infers_its_path(tmp_path):
    result = run("fit", EXAMPLE, "-o", tmp_path / "m.h5", *FAST, "--hidden", "0", "--latent", "1")
    assert result.exit_code == 0, result.output
    assert "epoch 4/4" in result.output  # trained, not solved as a GLM
    result = run("infer", tmp_path / "m.h5", EXAMPLE, "-o", tmp_path / "paths.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "paths.npz", allow_pickle=False) as paths:
        assert paths["latent_mean"].shape == paths["latent_sd"].shape == (80, 200, 1)
        assert paths["latent_loading"].shape == (10, 1) and paths["latent_labels"].tolist() == ["latent-0"]
        assert (paths["latent_sd"] > 0).all() and paths["latent_tau_s"][0] > 0
        assert json.loads(str(paths["metadata"]))["n_latent"] == 1
    conn = sg.Connectivity.load(_exported(tmp_path / "m.h5", tmp_path / "conn.json"))
    assert conn.metadata["latent"]["n_latent"] == 1
    result = run("export", tmp_path / "m.h5", "-o", tmp_path / "edges.json", *JITTER)
    assert result.exit_code == 0, result.output  # the factors' drive is part of the null model
    assert "latent factors" in json.loads((tmp_path / "edges.json").read_text())["significance"]["drive"]
    assert run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--latent", "-1").exit_code == 2
    result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--latent-candidates", "0,1")
    assert result.exit_code != 0 and "--latent-candidates applies only with --hidden auto" in result.output


def test_hidden_auto_chooses_latent_factors_among_the_candidates(tmp_path):
    options = ("--hidden", "auto", "--candidates", "0", "--latent-candidates", "0,1", "--folds", "2")
    result = run("fit", EXAMPLE, "-o", tmp_path / "m.h5", *FAST, *options)
    assert result.exit_code == 0, result.output
    assert "and of latent factors among 0, 1" in result.output
    assert "0 hidden + 1 latent, fold 2/2" in result.output and "hidden + latent" in result.output
    model = sg.POGLM.load(tmp_path / "m.h5")
    assert model.selection_.latent == (0, 1) and model.n_latent == model.selection_.chosen_latent


def _exported(model: Path, path: Path) -> Path:
    result = run("export", model, "-o", path)
    assert result.exit_code == 0, result.output
    return path


def test_outputs_are_never_overwritten_without_asking(fitted_model, tmp_path):
    target = tmp_path / "conn.csv"
    target.write_text("keep me")
    result = run("export", fitted_model, "-o", target)
    assert result.exit_code != 0
    assert "conn.csv: exists; pass --overwrite to replace it" in result.output
    assert target.read_text() == "keep me"
    assert run("export", fitted_model, "-o", target, "--overwrite").exit_code == 0
    assert target.read_text().startswith(",n0")


def test_resume_continues_a_checkpoint(tmp_path):
    counts = sg.load(EXAMPLE).bin("5 ms")
    out = tmp_path / "model.h5"
    checkpoint = tmp_path / "model.h5.ckpt.h5"
    sg.POGLM(n_hidden=1, epochs=2, n_samples=2).fit(counts, checkpoint=checkpoint, checkpoint_every=1)
    result = run("fit", EXAMPLE, "-o", out, "--hidden", "1", "--samples", "2", "--epochs", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert len(sg.POGLM.load(out).history_) == 4 and not checkpoint.exists()


@pytest.mark.parametrize("objective", ["FIVO", "likelihood"])
def test_the_particle_objectives_and_smoothing_family_from_the_command_line(tmp_path, objective):
    out = tmp_path / "model.h5"
    args = ["--hidden", "1", "--bin-size", "20 ms", "--epochs", "2", "--samples", "4"]
    result = run("fit", EXAMPLE, "-o", out, *args, "--objective", objective, "--variational", "smoothing")
    assert result.exit_code == 0, result.output
    model = sg.POGLM.load(out)
    settings = model.get_params()
    wanted = [objective.lower(), "smoothing", 4]
    assert [settings[k] for k in ("objective", "variational", "n_samples")] == wanted
    assert len(model.history_) == 2 and np.isfinite(model.history_[-1].objective)


def test_config_file_supplies_defaults(tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text('hidden = 1\nepochs = 3\nsamples = 2\nbin-size = "10 ms"\n')
    out = tmp_path / "model.h5"
    result = run("fit", EXAMPLE, "-o", out, "--config", config, "--epochs", "2")
    assert result.exit_code == 0, result.output
    model = sg.POGLM.load(out)
    assert model.n_hidden == 1 and len(model.history_) == 2  # the command line wins over the file
    assert model.bin_size_ == "10.0 ms"
    config.write_text("hiden = 1\n")
    result = run("fit", EXAMPLE, "-o", tmp_path / "other.h5", "--config", config)
    assert result.exit_code != 0 and "unknown option(s) hiden" in result.output


def test_an_own_history_basis_is_fitted_kept_and_refused_without_its_window(tmp_path):
    out = tmp_path / "own.h5"
    result = run(
        "fit", EXAMPLE, "-o", out, "--hidden", "0", "--self-basis", "raised-cosine", "--self-window", "20"
    )
    assert result.exit_code == 0, result.output
    basis = sg.POGLM.load(out).checked_settings().basis
    assert basis == sg.basis.OwnHistory(sg.basis.Exponential(), sg.basis.RaisedCosine(window=20))
    result = run("export", out, "-o", tmp_path / "conn.csv", *JITTER)
    assert result.exit_code == 0, result.output
    result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--hidden", "0", "--self-basis", "raw")
    assert result.exit_code == 1 and "--self-basis) needs self_window (--self-window)" in result.output
    for bad in ("0", "-3", "long"):
        result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--self-basis", "raw", "--self-window", bad)
        assert result.exit_code == 2 and "--self-window" in result.output, bad
    result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--self-basis", "cosine", "--self-window", "9")
    assert result.exit_code == 2 and "--self-basis" in result.output


def test_penalty_options_fit_and_refuse_bad_strengths(tmp_path):
    out = tmp_path / "ridge.h5"
    result = run(
        "fit", EXAMPLE, "-o", out, "--hidden", "0", "--penalty", "ridge", "--penalty-strength", "1e-3"
    )
    assert result.exit_code == 0, result.output
    model = sg.POGLM.load(out)
    assert (model.penalty, model.penalty_strength) == ("ridge", 1e-3)
    for bad in ("fast", "-1", "0", "nan", "inf"):
        result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--hidden", "0", "--penalty-strength", bad)
        assert result.exit_code == 2 and "--penalty-strength" in result.output, bad
    result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--penalty", "group-lasso")  # two hidden neurons
    assert result.exit_code != 0 and "(--penalty) applies to fits without hidden neurons" in result.output
    assert "use penalty='ridge'" in result.output
    config = tmp_path / "fit.toml"
    config.write_text("penalty-strength = true\n")
    result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--config", config)
    assert result.exit_code != 0 and "option penalty_strength must be a number or 'cv'" in result.output
    assert not (tmp_path / "bad.h5").exists()


def test_simulate_writes_recording_and_truth(tmp_path):
    out = tmp_path / "sim.nwb"
    result = run("simulate", "-o", out, "--visible", "4", "--hidden", "1", "--trials", "3", "--bins", "50")
    assert result.exit_code == 0, result.output
    recording = sg.load(out)
    assert recording.n_units == 4 and len(recording.trials) == 3
    truth = sg.Connectivity.load(tmp_path / "sim_truth.json")
    assert (truth.n_visible, truth.n_hidden) == (4, 1)


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    return path


def _no_units(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.7.0"
        f.create_group("acquisition")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: _corrupt(d / "broken.nwb"), "broken.nwb: is not a readable HDF5/NWB file"),
        (lambda d: _no_units(d / "empty.nwb"), "empty.nwb"),
        (lambda d: _text(d / "spikes.xyz", "1,2"), "spikes.xyz: unknown extension '.xyz'"),
    ],
    ids=["corrupt-hdf5", "no-units-table", "unknown-extension"],
)
def test_bad_recordings_give_one_line_and_no_output(tmp_path, make, message):
    bad = make(tmp_path)
    out = tmp_path / "model.h5"
    result = run("fit", bad, "-o", out, *FAST)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeglm: error:") and message in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_bin_size_larger_than_the_trials_is_refused(tmp_path):
    result = run("fit", EXAMPLE, "-o", tmp_path / "m.h5", "--bin-size", "2 s", *FAST)
    assert result.exit_code == 1 and "spikeglm: error:" in result.output
    assert not (tmp_path / "m.h5").exists()


def test_debug_shows_the_traceback(tmp_path):
    bad = _corrupt(tmp_path / "broken.nwb")
    result = run("--debug", "info", bad)
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


@pytest.mark.slow
def test_python_dash_m_and_version():
    result = subprocess.run(
        [sys.executable, "-m", "spikeglm", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"spikeglm, version {sg.__version__}"
    for command in ("info", "fit", "infer", "export", "simulate", "plot", "demo"):
        help_text = subprocess.run(
            [sys.executable, "-m", "spikeglm", command, "--help"], capture_output=True, text=True, check=True
        ).stdout
        assert "Example: spikeglm" in help_text, command


def test_real_subprocess_reports_errors_on_stderr(tmp_path):
    bad = _corrupt(tmp_path / "broken.nwb")
    result = subprocess.run(
        [sys.executable, "-m", "spikeglm", "info", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().startswith("spikeglm: error:") and "broken.nwb" in result.stderr


@pytest.mark.parametrize(("choice", "exit_code"), [("drop", 0), ("error", 1)])
def test_units_without_spikes(tmp_path, choice, exit_code):
    recording = sg.Recording([[0.1, 0.5, 0.9], []], ["busy", "silent"], 0.0, 1.0, empty_units="keep")
    path = tmp_path / "rec.npz"
    sg.save(recording, path)
    out = tmp_path / "model.h5"
    arguments = ("fit", path, "-o", out, "--hidden", "1", "--empty-units", choice, *FAST)
    if choice == "drop":  # not an error, but never silent: a warning names the unit dropped
        with pytest.warns(UserWarning, match=r"dropping 1 unit\(s\) without spikes: 'silent'"):
            result = run(*arguments)
    else:
        result = run(*arguments)
        assert "spikeglm: error:" in result.output and "silent" in result.output
    assert result.exit_code == exit_code, result.output
    assert out.exists() == (exit_code == 0)
    if exit_code == 0:
        assert sg.POGLM.load(out).unit_ids_ == ["busy"]


def test_plot_writes_a_figure(fitted_model, tmp_path):
    out = tmp_path / "fit.png"
    truth = EXAMPLE.with_name("example_truth.json")
    result = run("plot", fitted_model, "--recording", EXAMPLE, "--truth", truth, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run("plot", fitted_model, "-o", out)
    assert again.exit_code != 0 and "exists; pass --overwrite" in again.output


def test_demo_runs_the_pipeline_on_the_bundled_data(fitted_model, tmp_path):
    result = run("demo", "--epochs", "3", "-o", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    assert "test log-likelihood per neuron-bin" in result.output and "AUROC" in result.output
    assert "scoring the true network for comparison" in result.output
    for name in ("model.h5", "hidden.npz", "connectivity.csv", "fit.png"):
        assert (tmp_path / "demo" / name).exists() and str(tmp_path / "demo" / name) in result.output
    # the demo's hidden rates hold what infer writes
    assert run("infer", fitted_model, EXAMPLE, "-o", tmp_path / "infer.npz").exit_code == 0
    with np.load(tmp_path / "demo" / "hidden.npz") as demo, np.load(tmp_path / "infer.npz") as inferred:
        assert sorted(demo.files) == sorted(inferred.files)
        assert demo["hidden_rates"].shape == (80, 200, 2)
        assert json.loads(str(demo["metadata"]))["recording"] == str(EXAMPLE)


def test_every_option_says_what_it_does():
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"spikeglm {name} {param.opts[-1]} has no help text"


def test_a_module_per_command_each_with_overwrite():
    assert sorted(main.commands) == ["demo", "export", "fit", "infer", "info", "plot", "simulate"]
    for name, command in main.commands.items():
        assert command.callback.__module__ == f"spikeglm.cli.{name}"
        flags = [p for p in command.params if isinstance(p, click.Option) and "--overwrite" in p.opts]
        assert (name == "info") != bool(flags), name


def test_the_reading_options_reach_a_command_as_one_reading():
    reading = Reading(**{field.name: None for field in dataclasses.fields(Reading)})
    given = dataclasses.replace(reading, label="good, mua", min_spikes=0, read_limit="2GB").given()
    assert given == {"label": ["good", "mua"], "min_spikes": 0, "read_limit": "2GB"}
    recorded = dataclasses.replace(reading, t_stop=5.0, read_limit="2GB").recorded()
    assert recorded == {"t_stop": 5.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.label = "good"


def test_every_command_writes_to_dash_o():
    for name, command in main.commands.items():
        writes = [p for p in command.params if isinstance(p, click.Option) and "--output" in p.opts]
        assert name == "info" or (writes and "-o" in writes[0].opts), name


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``spikeglm ... | head``: the reader goes away first; no traceback, the status of SIGPIPE."""
    process = subprocess.Popen(
        [sys.executable, "-m", "spikeglm", "info", str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # before the command writes anything
    _, err = process.communicate(timeout=120)
    assert err.decode() == ""
    assert process.returncode == 141


def test_export_graphml_leaves_out_self_loops_unless_asked(fitted_model, tmp_path):
    graphml = "{http://graphml.graphdrawing.org/xmlns}"

    def edges(path):
        return [(e.get("source"), e.get("target")) for e in ET.parse(path).getroot().iter(f"{graphml}edge")]

    assert run("export", fitted_model, "-o", tmp_path / "plain.graphml", "--threshold", "0").exit_code == 0
    result = run("export", fitted_model, "-o", tmp_path / "loops.graphml", "--threshold", "0", "--self-loops")
    assert result.exit_code == 0, result.output
    plain, loops = edges(tmp_path / "plain.graphml"), edges(tmp_path / "loops.graphml")
    assert all(source != target for source, target in plain) and len(plain) == 12 * 11
    assert len(loops) == 12 * 12
    bad = run("export", fitted_model, "-o", tmp_path / "c.csv", "--self-loops")
    assert bad.exit_code == 2 and "applies to .graphml exports only" in bad.output


def test_a_continuous_recording_is_fitted_whole_in_segments(tmp_path):
    """Without trials the recording is one long trial, fitted in segments; infer covers every bin."""
    _, counts, _ = sg.synthetic.network(
        "sparse-ei", seed=1, n_visible=5, n_hidden=1, n_train=1, n_test=1, n_bins=3000
    )
    spikes = sg.Recording.from_counts(counts)
    continuous = sg.Recording(spikes.spike_times, list(spikes.unit_ids), 0.0, spikes.t_stop)
    sg.save(continuous, tmp_path / "long.nwb")
    model_path = tmp_path / "model.h5"
    result = run(
        "fit", tmp_path / "long.nwb", "-o", model_path, *FAST, "--hidden", "1", "--segment-bins", "500"
    )
    assert result.exit_code == 0, result.output
    assert "1 trials x 3000 bins x 5 units" in result.output
    model = sg.POGLM.load(model_path)
    assert model.fit_options_["segment_bins"] == 500 and model.data_["trial_length"] is None
    result = run("infer", model_path, tmp_path / "long.nwb", "-o", tmp_path / "hidden.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "hidden.npz", allow_pickle=False) as hidden:
        assert hidden["hidden_rates"].shape == (1, 3000, 1)
        assert np.all(hidden["hidden_rates"] > 0)
    # The raster of a 15 s trial is drawn in 2 s pages: page 7 is the last (half) one.
    recording = tmp_path / "long.nwb"
    assert (
        run("plot", model_path, "--recording", recording, "--page", "7", "-o", tmp_path / "p.png").exit_code
        == 0
    )
    late = run("plot", model_path, "--recording", recording, "--page", "8", "-o", tmp_path / "q.png")
    assert late.exit_code != 0 and "page must be in 0..7" in late.output and not (tmp_path / "q.png").exists()
    other = run("plot", model_path, "--recording", recording, "--trial", "1", "-o", tmp_path / "q.png")
    assert other.exit_code != 0 and "trial must be in 0..0" in other.output


def test_fit_reads_only_the_chosen_units(tmp_path):
    out = tmp_path / "model.h5"
    result = run("fit", EXAMPLE, "-o", out, *FAST, "--hidden", "1", "--units", "n4, n2")
    assert result.exit_code == 0, result.output
    assert sg.POGLM.load(out).unit_ids_ == ["n4", "n2"]
    bad = run("fit", EXAMPLE, "-o", out, *FAST, "--units", "n4,zz", "--overwrite")
    assert bad.exit_code != 0 and "example.nwb: unknown unit(s) 'zz'" in bad.output


def test_fit_with_hidden_auto_chooses_by_cross_validation_and_keeps_the_table(tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text('hidden = "auto"\ncandidates = "0,1"\nfolds = 2\njobs = 2\n')  # two worker processes
    out = tmp_path / "m.h5"
    result = run("fit", EXAMPLE, "-o", str(out), *FAST, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "0 hidden, fold 2/2" in result.output and "<- chosen" in result.output
    model = sg.POGLM.load(out)
    assert model.selection_.candidates == (0, 1) and model.n_hidden == model.selection_.chosen
    assert model.selection_.fold_scores.shape == (2, 2)
    bad = run("fit", EXAMPLE, "-o", str(tmp_path / "x.h5"), "--hidden", "-1")
    assert bad.exit_code != 0 and "-1 is negative" in bad.output and not (tmp_path / "x.h5").exists()
    bad = run("fit", EXAMPLE, "-o", str(tmp_path / "x.h5"), "--jobs", "2")
    assert bad.exit_code != 0 and "--jobs applies only with --hidden auto" in bad.output
    bad = run("fit", EXAMPLE, "-o", str(tmp_path / "x.h5"), "--hidden", "auto", "--jobs", "0")
    assert bad.exit_code != 0 and "n_jobs (--jobs): 0 is not a number of processes" in bad.output


@pytest.mark.slow
def test_fit_with_bootstrap_stores_standard_errors_that_export_tests(tmp_path):
    out, edges = tmp_path / "m.h5", tmp_path / "edges.csv"
    result = run("fit", EXAMPLE, "-o", out, *FAST, "--hidden", "1", "--units", "n0,n1,n2", "--bootstrap", "2")
    assert result.exit_code == 0, result.output
    assert "bootstrap refit 2/2" in result.output
    model = sg.POGLM.load(out)
    assert model.strength_se_.shape == (4, 4) and np.all(np.isfinite(model.strength_se_))
    assert model.strength_se_source_ == {"method": "bootstrap", "n_boot": 2, "seed": 0}
    exported = run("export", out, "-o", edges, "--alpha", "0.05")
    assert exported.exit_code == 0, exported.output
    assert len(edges.read_text().splitlines()) == 1 + 16
    bad = run("fit", EXAMPLE, "-o", tmp_path / "x.h5", *FAST, "--bootstrap", "1")
    assert bad.exit_code != 0 and "--bootstrap" in bad.output and "at least 2 refits" in bad.output


def test_covariate_options_fit_export_and_refuse_bad_ones(tmp_path):
    times = np.arange(0.0, 80.0, 0.01)
    speed = tmp_path / "speed.csv"
    speed.write_text("time,speed\n" + "\n".join(f"{t:.2f},{np.sin(t):.6f}" for t in times))
    out = tmp_path / "cov.h5"
    result = run(
        "fit", EXAMPLE, "-o", out, "--hidden", "0",
        "--covariate", "cue=trials.start_time@around(before=0, after=50 ms, n_basis=3)",
        "--covariate", f"speed={speed}@instant",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = sg.POGLM.load(out)
    assert [c["name"] for c in model.covariates_] == ["cue", "speed"]
    assert [c["kernel"]["name"] for c in model.covariates_] == ["around", "instant"]
    assert model.covariates_[0]["kernel"]["after"] == "50 ms" and model.covariates_[0]["n_features"] == 3
    exported = tmp_path / "edges.csv"
    result = run("export", out, "-o", exported, *JITTER)
    assert result.exit_code == 0, result.output  # the covariates read again beside the recording
    for bad, message in [
        ("speed", "is not NAME=WHERE"),
        ("speed=acquisition", "expected a TimeSeries path"),
        ("speed=/acquisition/x@wavelet", "unknown kernel 'wavelet'"),
        ("speed=/acquisition/x@lags(window)", "is not option=value"),
        ("speed=/acquisition/x@lags(width=3)", "unexpected keyword argument 'width'"),
    ]:
        result = run("fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--hidden", "0", "--covariate", bad)
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
    result = run(
        "fit", EXAMPLE, "-o", tmp_path / "bad.h5", "--hidden", "0", "--covariate", "x=/acquisition/none"
    )
    assert result.exit_code == 1 and "/acquisition/none" in result.output
    assert not (tmp_path / "bad.h5").exists()


def test_simulate_writes_a_stimulus_that_fit_takes_as_a_covariate(tmp_path):
    out = tmp_path / "stim.nwb"
    result = run(
        "simulate", "-o", out, "--visible", "4", "--hidden", "0", "--stimulus", "strong", "--trials", "6"
    )
    assert result.exit_code == 0, result.output
    stimulus = tmp_path / "stim_stimulus.csv"
    rows = np.loadtxt(stimulus, delimiter=",", skiprows=1)
    assert rows.shape == (6 * 2000, 2) and rows[0, 0] == pytest.approx(0.0025)
    model_path = tmp_path / "m.h5"
    result = run(
        "fit", out, "-o", model_path, "--hidden", "0", "--covariate", f"stimulus={stimulus}@lags(window=0.1)",
        "--bootstrap", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "bootstrap refit 2/2" in result.output  # the simulations read the stimulus on each trial's clock
    assert sg.POGLM.load(model_path).strength_se_source_["method"] == "bootstrap"
    fitted = np.array(sg.POGLM.load(model_path).connectivity().metadata["covariates"][0]["values"])
    truth = np.array(sg.Connectivity.load(tmp_path / "stim_truth.json").metadata["covariates"][0]["values"])
    assert np.corrcoef(fitted.ravel(), truth.ravel())[0, 1] > 0.9
    result = run("simulate", "-o", tmp_path / "x.nwb", "--protocol", "sparse-ei", "--stimulus", "weak")
    assert result.exit_code == 2 and "--stimulus" in result.output
