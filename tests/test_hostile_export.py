"""A model records the data it was fitted on, and the tests of its couplings refuse other data.

The jitter test and the parametric bootstrap hold only for the counts of the fit: given another
recording of the same units, they must refuse it with one line naming the recording and the difference,
and write nothing. A model file of an earlier release, which does not record its data, gives a warning.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import assert_refused, run_cli

import spikeglm as sg
from spikeglm import modelfile
from spikeglm.cli import main
from spikeglm.model import Network
from spikeglm.provenance import counts_fingerprint

#: Trials of the recordings, and those the fit keeps (--t-stop: a reading option the model records).
TRIALS, KEPT = 10, 8
#: The trials' length in bins of 5 ms, so that a trial lasts 1 s.
BINS = 200

#: The options of export that run the jitter test (few copies: the tests check refusals, not p-values).
JITTER_TEST = ["--alpha", "0.05", "--test", "jitter", "--n-jitter", "5"]


def simulated(seed: int) -> sg.SpikeCounts:
    """3 neurons, the first exciting the second: one simulation of the same units per seed."""
    network = Network(3, 0, sg.basis.get("exponential"), link="softplus")
    with torch.no_grad():
        network.bias.fill_(float(np.log(np.expm1(0.1))))
        network.weight[1, 0, 0] = 1.0
    counts = network.simulate(TRIALS, BINS, generator=torch.Generator().manual_seed(seed))
    return sg.SpikeCounts.from_array(counts.numpy(), bin_size="5 ms", unit_ids=["a", "b", "c"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """``fit.npz`` (the recording), ``other.npz`` (another simulation of its units) and ``m.h5``, a GLM
    fitted on the command line to the first KEPT trials of ``fit.npz``."""
    folder = tmp_path_factory.mktemp("provenance")
    for name, seed in (("fit.npz", 0), ("other.npz", 1)):
        sg.save(sg.Recording.from_counts(simulated(seed)), folder / name)
    arguments = ["fit", str(folder / "fit.npz"), "-o", str(folder / "m.h5"), "--hidden", "0"]
    result = CliRunner().invoke(main, [*arguments, "--t-stop", str(float(KEPT))])
    assert result.exit_code == 0, result.output
    return folder


def read(model: sg.POGLM, recording) -> sg.SpikeCounts:
    """The counts of ``recording`` read and binned as the model's fit read its recording."""
    return model.bin_like(sg.load(recording, t_stop=float(KEPT)))


def test_the_fit_records_its_data_and_the_model_file_keeps_it(folder, tmp_path):
    model = sg.POGLM.load(folder / "m.h5")
    recorded = model.fitted_on_
    assert recorded["source"] == str(folder / "fit.npz") and recorded["reading"]["t_stop"] == KEPT
    assert recorded["shape"] == [KEPT, BINS, 3] and recorded["unit_ids"] == ["a", "b", "c"]
    assert recorded["counts_sha256"] == counts_fingerprint(read(model, folder / "fit.npz"))["counts_sha256"]
    assert model.connectivity().metadata["fitted_on"] == recorded
    model.save(tmp_path / "copy.h5")
    assert sg.POGLM.load(tmp_path / "copy.h5").fitted_on_ == recorded


def test_tests_of_the_couplings_refuse_other_counts_and_take_the_fit_s(folder):
    model = sg.POGLM.load(folder / "m.h5")
    conn = model.connectivity()
    other = read(model, folder / "other.npz")
    differ = (
        r"other\.npz: is not the recording the model was fitted on \(.*fit\.npz\): the binned counts differ "
        r"\(sha256 \w{12}\.\.\. here, \w{12}\.\.\. in the fit\); "
        "the unit ids, bin size and trial layout agree; "
    )
    with pytest.raises(ValueError, match=differ + "the jitter test needs the counts of the fit"):
        conn.significance(method="jitter", counts=other, n_jitter=5)
    with pytest.raises(ValueError, match=differ + "the parametric bootstrap needs the counts"):
        sg.bootstrap_se(model, other, n_boot=2)
    whole = model.bin_like(sg.load(folder / "fit.npz"))  # all trials: not as the fit read it
    with pytest.raises(
        ValueError,
        match=rf"the trial layout differs \({TRIALS} trials x {BINS} bins x 3 units here, {KEPT} tr",
    ):
        conn.significance(method="jitter", counts=whole, n_jitter=5)
    table = conn.significance(method="jitter", counts=read(model, folder / "fit.npz"), n_jitter=5)
    assert len(table) == 9 and np.isfinite(table[~table["self"]]["p"]).all()
    assert np.isfinite(model.score(other))  # scoring held-out data stays allowed


def test_export_refuses_a_recording_the_model_was_not_fitted_on(folder, tmp_path):
    model, other, edges = folder / "m.h5", folder / "other.npz", tmp_path / "edges.csv"
    before = model.read_bytes(), other.read_bytes()
    arguments = ["export", str(model), "-o", str(edges), *JITTER_TEST]
    result = CliRunner().invoke(main, [*arguments, "--recording", str(other)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"spikeglm: error: {other}: is not the recording the model was fitted on")
    assert "binned counts differ" in result.output and "Traceback" not in result.output
    assert not edges.exists() and (model.read_bytes(), other.read_bytes()) == before
    # the recording of the fit, read with the options the fit recorded (--t-stop), is taken
    result = CliRunner().invoke(main, [*arguments, "--recording", str(folder / "fit.npz")])
    assert result.exit_code == 0, result.output
    assert len(edges.read_text().splitlines()) == 1 + 9


@pytest.mark.slow
def test_export_refuses_another_recording_end_to_end(folder, tmp_path):
    edges = tmp_path / "edges.csv"
    before = (folder / "m.h5").read_bytes()
    result = run_cli(
        "export", str(folder / "m.h5"), "-o", str(edges), "--alpha", "0.05", "--test", "jitter",
        "--recording", str(folder / "other.npz"),
    )  # fmt: skip
    assert_refused(result, "other.npz", "binned counts differ", "unit ids, bin size and trial layout agree")
    assert not edges.exists() and (folder / "m.h5").read_bytes() == before


def _rewritten(model: sg.POGLM, path, **config) -> sg.POGLM:
    """``model`` written to ``path`` with its config changed by ``config`` (None: the field left out, as
    in the files of earlier releases), and loaded back."""
    changed = {**model._config(), **config}
    changed = {key: value for key, value in changed.items() if value is not None}
    states = {"network": model.network_.state_dict(), "posterior": model.posterior_.state_dict()}
    modelfile.write(path, changed, states, model.history_, None, overwrite=False)
    return sg.POGLM.load(path)


def test_a_model_file_that_does_not_record_its_data_gives_a_warning(folder, tmp_path):
    model = sg.POGLM.load(folder / "m.h5")
    old = _rewritten(model, tmp_path / "old.h5", fitted_on=None)
    assert old.fitted_on_ is None and old.connectivity().metadata["fitted_on"] is None
    other = read(model, folder / "other.npz")
    with pytest.warns(UserWarning, match="other.npz: the model does not record the data it was fitted on"):
        table = old.connectivity().significance(method="jitter", counts=other, n_jitter=5)
    assert len(table) == 9
    edges = tmp_path / "edges.csv"
    arguments = [*JITTER_TEST, "--recording", str(folder / "other.npz")]
    with pytest.warns(UserWarning, match="jitter test assumes these are its counts"):
        result = CliRunner().invoke(main, ["export", str(tmp_path / "old.h5"), "-o", str(edges), *arguments])
    assert result.exit_code == 0 and edges.exists(), result.output


@pytest.mark.parametrize(
    ("fitted_on", "wanted"),
    [
        ({"counts_sha256": "0" * 64}, "unit_ids, bin_size, shape, counts_sha256, source and reading"),
        ("a hash", "'a hash'"),
    ],
)
def test_a_damaged_record_of_the_data_is_refused(folder, tmp_path, fitted_on, wanted):
    model = sg.POGLM.load(folder / "m.h5")
    with pytest.raises(ValueError, match=rf"bad\.h5: config field 'fitted_on' must be .*{wanted}"):
        _rewritten(model, tmp_path / "bad.h5", fitted_on=fitted_on)


def test_export_takes_no_reading_option_from_a_model_but_those_that_decide_what_is_read(folder, tmp_path):
    # a model file may not raise the memory bound of a reading (or pass sg.load what it likes)
    model = sg.POGLM.load(folder / "m.h5")
    reading = {**model.fitted_on_["reading"], "read_limit": "1 TB"}
    _rewritten(model, tmp_path / "wide.h5", fitted_on={**model.fitted_on_, "reading": reading})
    edges = tmp_path / "edges.csv"
    arguments = ["-o", str(edges), "--alpha", "0.05", "--test", "jitter", "--n-jitter", "5"]
    arguments += ["--recording", str(folder / "fit.npz")]
    result = CliRunner().invoke(main, ["export", str(tmp_path / "wide.h5"), *arguments])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "wide.h5: records the reading option(s) read_limit, unknown" in result.output
    assert not edges.exists()
    # the bound is the command line's
    result = CliRunner().invoke(main, ["export", str(folder / "m.h5"), *arguments, "--read-limit", "lots"])
    assert result.exit_code == 1 and "cannot read 'lots' as a size" in result.output, result.output
    assert not edges.exists()
