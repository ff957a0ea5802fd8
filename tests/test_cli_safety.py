"""The command line never destroys an input, refuses bad options before any work, and says why in one line.

Each refusal is checked for its exit status (1, or click's 2 for a bad option), its message, that
nothing was written and that every input is byte-identical afterwards.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import spikeglm as sg
from spikeglm.cli import main
from spikeglm.files import exclusive_lock

FAST = ["--epochs", "2", "--samples", "2"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refused(result, *phrases: str, status: int = 1) -> str:
    """The one-line error of a refused command, checked for its status and phrases."""
    assert result.exit_code == status, result.output
    if status == 1:  # the error is one line, and the last
        errors = [line for line in result.output.splitlines() if line.startswith("spikeglm: error:")]
        assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    return result.output


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """A small recording (.npz) and a model fitted to it."""
    folder = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(0)
    times = {f"u{k}": np.sort(rng.uniform(0, 4, 40)) for k in range(3)}
    recording = folder / "small.npz"
    sg.save(sg.Recording.from_spike_times(times, t_start=0, t_stop=4), recording)
    model = folder / "m.h5"
    result = run("fit", recording, "-o", model, "--hidden", "1", "--trial-length", "1 s", *FAST)
    assert result.exit_code == 0, result.output
    return recording, model


def test_fit_refuses_to_write_over_its_recording(small, tmp_path):
    recording, _ = small
    before = digest(recording)
    refused(run("fit", recording, "-o", recording, "--overwrite", *FAST), "is an input here")
    link = tmp_path / "link.npz"
    link.symlink_to(recording)
    refused(run("fit", link, "-o", recording, "--overwrite", *FAST), "is an input")
    refused(run("fit", recording, "-o", link, "--overwrite", *FAST), "is an input")
    dotted = recording.parent / ".." / recording.parent.name / recording.name
    refused(run("fit", recording, "-o", dotted, "--overwrite", *FAST), "is an input")
    assert digest(recording) == before
    assert listing(tmp_path) == ["link.npz"]


def test_infer_export_and_plot_refuse_to_write_over_the_model(small, tmp_path):
    recording, model = small
    before = digest(model), digest(recording)
    refused(run("infer", model, recording, "-o", model, "--overwrite"), "is an input")
    refused(run("infer", model, recording, "-o", recording, "--overwrite"), "is an input")
    refused(run("export", model, "-o", model, "--overwrite"), "is an input")
    refused(run("plot", model, "--recording", recording, "-o", model, "--overwrite"), "is an input")
    assert (digest(model), digest(recording)) == before


def test_outputs_that_are_not_regular_files_are_refused(small, tmp_path):
    _, model = small
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    refused(run("export", model, "-o", fifo, "--overwrite"), "not a regular file")
    assert fifo.is_fifo()
    refused(run("export", model, "-o", os.devnull, "--overwrite"), "not a regular file")
    assert Path(os.devnull).is_char_device()
    (tmp_path / "folder.csv").mkdir()
    refused(run("export", model, "-o", tmp_path / "folder.csv", "--overwrite"), "is a directory", status=2)


def test_demo_keeps_earlier_results_unless_asked(tmp_path):
    (tmp_path / "model.h5").write_text("my earlier results")
    refused(run("demo", "-o", tmp_path, "--epochs", "1"), "model.h5: exists", "--overwrite")
    assert (tmp_path / "model.h5").read_text() == "my earlier results"
    assert listing(tmp_path) == ["model.h5"]
    # the option's old name is gone: refused as a bad option, which points to its new name
    refused(run("demo", "--out", tmp_path, "--epochs", "1"), "--out", "--output", status=2)
    assert (tmp_path / "model.h5").read_text() == "my earlier results"


def test_an_existing_checkpoint_is_never_replaced_unasked(small, tmp_path):
    recording, _ = small
    out = tmp_path / "m.h5"
    checkpoint = tmp_path / "m.h5.ckpt.h5"
    checkpoint.write_text("a file of the user's")
    refused(run("fit", recording, "-o", out, *FAST), "m.h5.ckpt.h5: a checkpoint", "--resume", "--overwrite")
    assert checkpoint.read_text() == "a file of the user's"
    assert listing(tmp_path) == ["m.h5.ckpt.h5"]
    # --resume reads it, and refuses it as it is no model file
    refused(run("fit", recording, "-o", out, "--resume", *FAST), "m.h5.ckpt.h5")
    assert checkpoint.read_text() == "a file of the user's"
    # --overwrite starts afresh, and the checkpoint goes once the model is saved
    result = run("fit", recording, "-o", out, "--overwrite", "--trial-length", "1 s", *FAST)
    assert result.exit_code == 0, result.output
    assert listing(tmp_path) == ["m.h5"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--checkpoint-every", "0"),
        ("--batch-size", "0"),
        ("--part-bins", "0"),
        ("--segment-bins", "0"),
        ("--samples", "0"),
        ("--hidden", "-1"),
        ("--temperature", "0"),
        ("--lr", "-0.1"),
        ("--window", "0"),
    ],
)
def test_bad_numbers_are_refused_before_anything_is_written(small, tmp_path, option, value):
    recording, _ = small
    result = run("fit", recording, "-o", tmp_path / "m.h5", option, value)
    refused(result, option, status=2)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("setting", "phrase"),
    [
        ("hidden = 2.7", "hidden must be a whole number"),
        ("hidden = true", "hidden must be a whole number"),
        ("lr = true", "lr must be a number"),
        ("epochs = '3'", "epochs must be a whole number"),
        ("resume = 1", "resume must be true or false"),
        ("link = 1", "link must be a string"),
        ("units = [1, 2]", "units must be a string or a list of strings"),
    ],
)
def test_config_values_must_have_the_right_type(small, tmp_path, setting, phrase):
    recording, _ = small
    config = tmp_path / "fit.toml"
    config.write_text(setting + "\n")
    result = run("fit", recording, "-o", tmp_path / "m.h5", "--config", config)
    refused(result, phrase, "fit.toml", status=2)
    assert listing(tmp_path) == ["fit.toml"]


def test_unit_names_with_commas_and_spaces_work_end_to_end(tmp_path):
    rng = np.random.default_rng(1)
    names = ["a,b", " padded ", "plain"]
    times = {name: np.sort(rng.uniform(0, 3, 30)) for name in names}
    recording = tmp_path / "odd.npz"
    sg.save(sg.Recording.from_spike_times(times, t_start=0, t_stop=3), recording)
    model = tmp_path / "m.h5"
    chosen = '["plain", "a,b", " padded "]'
    result = run("fit", recording, "-o", model, "--units", chosen, "--trial-length", "1 s", *FAST)
    assert result.exit_code == 0, result.output
    assert sg.POGLM.load(model).unit_ids_ == ["plain", "a,b", " padded "]
    result = run("infer", model, recording, "-o", tmp_path / "hidden.npz")
    assert result.exit_code == 0, result.output
    result = run("plot", model, "--recording", recording, "-o", tmp_path / "fit.png")
    assert result.exit_code == 0, result.output
    # the same from a TOML config, as a list
    config = tmp_path / "fit.toml"
    config.write_text('units = ["a,b", "plain"]\ntrial_length = "1 s"\nepochs = 1\n')
    result = run("fit", recording, "-o", tmp_path / "m2.h5", "--config", config)
    assert result.exit_code == 0, result.output
    assert sg.POGLM.load(tmp_path / "m2.h5").unit_ids_ == ["a,b", "plain"]


def test_an_unknown_unit_among_thousands_gives_a_short_message(tmp_path):
    times = {f"unit{k}": [0.5 + k * 1e-4] for k in range(10_000)}
    recording = tmp_path / "many.npz"
    sg.save(sg.Recording.from_spike_times(times, t_start=0, t_stop=2), recording)
    output = refused(
        run("fit", recording, "-o", tmp_path / "m.h5", "--units", "nope"), "nope", "10000 in all"
    )
    assert len(output) < 400


def test_an_unwritable_output_is_found_before_the_fit(small, tmp_path):
    recording, _ = small
    long_name = tmp_path / ("x" * 300 + ".h5")
    refused(run("fit", recording, "-o", long_name, *FAST), "cannot be written", "too long")
    refused(run("fit", recording, "-o", tmp_path / "absent" / "m.h5", *FAST), "no such folder")
    assert listing(tmp_path) == []


def test_stale_temporaries_of_killed_writers_are_removed(small, tmp_path):
    _, model = small
    stale = tmp_path / ".conn.csv.999999999.0123456789ab.tmp"  # no process has that number
    stale.write_text("left by a killed export")
    mine = tmp_path / f".conn.csv.{os.getpid()}.0123456789ab.tmp"  # a live writer's: kept
    mine.write_text("being written")
    result = run("export", model, "-o", tmp_path / "conn.csv")
    assert result.exit_code == 0, result.output
    assert listing(tmp_path) == sorted(["conn.csv", mine.name])


def test_a_second_fit_to_the_same_output_is_refused_at_once(small, tmp_path):
    recording, _ = small
    out = tmp_path / "m.h5"
    with exclusive_lock(Path(str(out) + ".ckpt.h5"), "fitting"):  # as a running fit to m.h5 holds it
        refused(run("fit", recording, "-o", out, *FAST), "m.h5.ckpt.h5: another process is fitting")
    assert listing(tmp_path) == []


def test_an_interrupt_before_training_promises_no_checkpoint(small, tmp_path, monkeypatch):
    recording, _ = small

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sg.POGLM, "_fit", interrupted)
    result = run("fit", recording, "-o", tmp_path / "m.h5", *FAST)
    assert result.exit_code == 130
    assert "nothing was written" in result.output and "--resume" not in result.output
    assert listing(tmp_path) == []


def test_resume_refuses_other_data_and_options(small, tmp_path):
    recording, _ = small
    out = tmp_path / "m.h5"
    base = ["--hidden", "1", "--trial-length", "1 s", "--samples", "2"]
    counts = sg.load(recording).bin("5 ms", trial_length="1 s")
    model = sg.POGLM(n_hidden=1)
    model.set_params(n_samples=2, epochs=1).fit(counts, checkpoint=str(out) + ".ckpt.h5", checkpoint_every=1)
    checkpoint = Path(str(out) + ".ckpt.h5")
    before = digest(checkpoint)
    cases = [
        (["--link", "exp"], "link 'softplus' (now 'exp')"),
        (["--bin-size", "10 ms"], "bin_size '5.0 ms' (now '10.0 ms')"),
        (["--units", "u2,u1,u0"], "unit_ids"),
        (["--lr", "0.1"], "lr 0.05 (now 0.1)"),
        (["--trial-length", "0.5 s"], "counts_sha256"),
    ]
    for extra, phrase in cases:  # (the last of a repeated option counts)
        result = run("fit", recording, "-o", out, "--epochs", "3", "--resume", *base, *extra)
        refused(result, "the checkpoint was made with other data or options", phrase)
        assert digest(checkpoint) == before
    result = run("fit", recording, "-o", out, "--epochs", "3", "--resume", *base)
    assert result.exit_code == 0, result.output
    assert "m.h5.ckpt.h5: 1 of at most 3 epochs done; on at epoch 2" in result.output
    assert len(sg.POGLM.load(out).history_) == 3


@pytest.mark.slow
def test_sigterm_stops_a_fit_with_a_checkpoint(small, tmp_path):
    recording, _ = small
    out = tmp_path / "m.h5"
    args = ["--hidden", "1", "--trial-length", "1 s", "--samples", "2", "--checkpoint-every", "1000"]
    command = [sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(out), *args]
    process = subprocess.Popen(
        [*command, "--epochs", "100000", "--tol", "0"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    line = ""
    while "epoch" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()  # the progress line shows once training runs
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "the fit so far is in" in err
    checkpoint = Path(str(out) + ".ckpt.h5")
    assert checkpoint.exists() and not out.exists()
    assert sg.POGLM.load(checkpoint).history_  # it holds the epochs done
