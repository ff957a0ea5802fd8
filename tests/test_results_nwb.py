"""Results written to a new NWB file (spikeglm.nwb_results, infer and export -o x.nwb) and the hidden
rates as a pynapple TsdFrame: read back by pynwb and pynapple, checked by the NWB inspector, equal to
what the library computes, and written by the rules of every output."""

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import hide_module

import spikeglm as sg
from spikeglm.cli import main
from spikeglm.cli.demo import EXAMPLE

pynwb = pytest.importorskip("pynwb")

#: The subject that the test recording states, which the results must repeat.
SUBJECT = {"subject_id": "sim-1", "species": "Mus musculus", "sex": "U", "age": "P90D"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nwbout")


@pytest.fixture(scope="module")
def recording(folder) -> Path:
    """The bundled example with a subject, as an NWB recording from a lab states one."""
    path = folder / "recording.nwb"
    shutil.copy(EXAMPLE, path)
    with h5py.File(path, "a") as file:
        subject = file.require_group("general").create_group("subject")
        subject.attrs.update(neurodata_type="Subject", namespace="core", object_id=str(uuid.uuid4()))
        for key, value in SUBJECT.items():
            subject.create_dataset(key, data=value, dtype=h5py.string_dtype())
    return path


@pytest.fixture(scope="module")
def glm(folder, recording) -> Path:
    path = folder / "glm.h5"
    result = run("fit", recording, "-o", path, "--hidden", "0")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def hidden(folder, recording) -> Path:
    """A model with a hidden neuron and a latent factor, briefly fitted."""
    path = folder / "hidden.h5"
    options = ("--hidden", "1", "--latent", "1", "--epochs", "2", "--samples", "2")
    result = run("fit", recording, "-o", path, *options)
    assert result.exit_code == 0, result.output
    return path


def written(*args) -> Path:
    """Run a command that writes ``-o OUTPUT`` and return OUTPUT."""
    result = run(*args)
    assert result.exit_code == 0, result.output
    return Path(args[args.index("-o") + 1])


def critical(path: Path) -> list[str]:
    """The checks of the NWB inspector that find something critical in ``path``."""
    nwbinspector = pytest.importorskip("nwbinspector")
    messages = nwbinspector.inspect_nwbfile(nwbfile_path=path)
    return [m.check_function_name for m in messages if m.importance == nwbinspector.Importance.CRITICAL]


def read(path: Path) -> dict:
    """The processing module's contents: series as (times, data), tables as dicts of columns, and the
    settings as JSON values."""
    with pynwb.NWBHDF5IO(path, "r") as io:
        nwbfile = io.read()
        module = nwbfile.processing["spikeglm"]
        found: dict = {"start": nwbfile.session_start_time, "subject": nwbfile.subject}
        for name, item in module.data_interfaces.items():
            if isinstance(item, pynwb.TimeSeries):
                found[name] = (item.get_timestamps()[:], item.data[:], item.unit)
            else:
                found[name] = {column: item[column][:] for column in item.colnames}
                found[name + ".description"] = item.description
        settings = found.pop("settings")
        found["settings"] = dict(zip(settings["key"], map(json.loads, settings["value"]), strict=True))
        found["subject"] = {key: getattr(found["subject"], key, None) for key in SUBJECT}
    return found


def assert_table_equal(table: dict, expected) -> None:
    names = expected.dtype.names if hasattr(expected, "dtype") else list(expected)
    assert list(table) == list(names)
    for name in names:
        got, want = np.asarray(table[name]), np.asarray(expected[name])
        if want.dtype.kind in "OU":
            assert got.astype(str).tolist() == want.astype(str).tolist(), name
        elif want.dtype.kind == "b":
            np.testing.assert_array_equal(got.astype(bool), want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True, err_msg=name)


def test_export_of_a_glm_holds_the_table_of_its_tests(glm, recording, folder):
    before = digest(recording)
    out = written("export", glm, "-o", folder / "glm.nwb", "--alpha", "0.01", "--recording", recording)
    assert digest(recording) == before
    assert critical(out) == []
    found = read(out)
    conn = sg.POGLM.load(glm).connectivity()
    assert_table_equal(found["couplings"], conn.significance(0.01))
    assert (
        '"test": "wald"' in found["couplings.description"]
        and '"alpha": 0.01' in found["couplings.description"]
    )
    settings = found["settings"]
    assert settings["test.test"] == "wald" and settings["test.alpha"] == 0.01
    assert settings["model.n_hidden"] == 0 and settings["fit.bin_size"] == "5.0 ms"
    assert settings["source.recording"] == str(recording) and settings["spikeglm"] == sg.__version__
    assert found["subject"] == SUBJECT
    assert found["start"].isoformat() == sg.load(recording).annotations["session_start_time"]
    assert "hidden_rates" not in found  # no hidden neuron: no rates
    np.testing.assert_allclose(found["binned_trials"]["start_time"], np.arange(80.0))


@pytest.mark.slow  # two writes of a model with a latent factor, each inferring its paths
def test_infer_and_export_write_the_hidden_rates_and_latent_paths(hidden, recording, folder):
    before = digest(recording)
    inferred = written("infer", hidden, recording, "-o", folder / "rates.nwb")
    exported = written("export", hidden, "-o", folder / "results.nwb", "--recording", recording)
    assert digest(recording) == before
    model = sg.POGLM.load(hidden)
    counts = model.bin_like(sg.load(recording))
    rates = model.infer(counts)
    mean, sd = model.infer_latent(counts)
    centres, _ = counts.bin_times()
    for out in (inferred, exported):
        assert critical(out) == []
        found = read(out)
        times, data, unit = found["hidden_rates"]
        assert unit == "Hz" and data.shape == (80 * 200, 1)
        np.testing.assert_allclose(data * counts.bin_seconds, rates.reshape(-1, 1), rtol=1e-6)
        np.testing.assert_allclose(times, centres.reshape(-1), atol=1e-9)
        np.testing.assert_allclose(found["latent_mean"][1], mean.reshape(-1, 1), rtol=1e-6)
        np.testing.assert_allclose(found["latent_sd"][1], sd.reshape(-1, 1), rtol=1e-6)
        assert found["latent_factors"]["label"].tolist() == ["latent-0"]
        assert found["latent_factors"]["tau_s"][0] > 0
        # no standard errors and no test asked: the strengths alone
        assert_table_equal(found["couplings"], model.connectivity().pairs())
        assert found["settings"]["model.n_latent"] == 1 and found["settings"]["source.model"] == str(hidden)
        frame = pytest.importorskip("pynapple").load_file(str(out))["hidden_rates"]
        np.testing.assert_allclose(frame.values[:] * counts.bin_seconds, rates.reshape(-1, 1), rtol=1e-6)
        np.testing.assert_allclose(frame.t, centres.reshape(-1), atol=1e-6)


def test_an_export_without_a_recording_holds_couplings_and_settings_but_no_subject(hidden, folder):
    out = written("export", hidden, "-o", folder / "couplings.nwb")
    found = read(out)
    assert "hidden_rates" not in found and "binned_trials" not in found
    assert found["couplings"]["pre"].tolist()[:2] == ["n0", "n1"]
    # the only thing the inspector asks for is the subject, which no input named
    assert set(critical(out)) == {"check_subject_exists"}


def test_a_group_lasso_export_holds_each_couplings_entry_strength_and_no_test(recording, folder):
    model_path = written(
        "fit",
        recording,
        "-o",
        folder / "lasso.h5",
        "--hidden",
        "0",
        "--penalty",
        "group-lasso",
        "--penalty-strength",
        "1e-3",
    )
    found = read(written("export", model_path, "-o", folder / "lasso.nwb"))
    model = sg.POGLM.load(model_path)
    assert_table_equal(found["couplings"], model.connectivity().pairs())
    assert "entry_strength" in found["couplings"] and "fit.entry_strength" not in found["settings"]
    assert found["settings"]["fit.penalty"] == "group-lasso"


def test_the_bundled_recording_with_its_subject_given_leaves_the_inspector_nothing_critical(
    glm, folder, recording
):
    """The bundled example names no subject; --subject states one, and the file is then clean."""
    fields = ("subject_id=sim-18", "species=Mus musculus", "sex=U", "age=P90D", "description=simulated")
    given = [part for field in fields for part in ("--subject", field)]
    out = written("infer", glm, EXAMPLE, "-o", folder / "stated.nwb", *given)
    assert critical(out) == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        subject = io.read().subject
        assert (subject.subject_id, subject.species, subject.age) == ("sim-18", "Mus musculus", "P90D")
    # over a recording's own subject, field by field
    out = written("export", glm, "-o", folder / "over.nwb", "--recording", recording, "--subject", "sex=F")
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        subject = io.read().subject
        assert (subject.sex, subject.subject_id) == ("F", SUBJECT["subject_id"])  # the rest kept


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--subject", "colour=red"), "'colour' is no field of NWB's subject"),
        (("--subject", "species"), "expected FIELD=VALUE"),
        (("--subject", "=m12"), "expected FIELD=VALUE"),
    ],
)
def test_a_subject_field_nwb_does_not_know_is_refused_before_any_work(glm, folder, options, message):
    result = run("export", glm, "-o", folder / "refused.nwb", *options)
    assert result.exit_code == 2 and message in result.output
    assert not (folder / "refused.nwb").exists()


def test_a_subject_applies_to_nwb_outputs_only(glm, folder):
    for command in (("export", glm), ("infer", glm, EXAMPLE)):
        out = folder / "refused.npz" if command[0] == "infer" else folder / "refused.csv"
        result = run(*command, "-o", out, "--subject", "sex=F")
        assert result.exit_code == 2 and "applies to .nwb outputs only" in result.output
        assert not out.exists()
    model = sg.POGLM.load(glm)
    with pytest.raises(ValueError, match="NWB's subject has no field 'colour'"):
        sg.nwb_results.save_results(folder / "lib.nwb", model, subject={"colour": "red"})


def test_as_pynapple_gives_the_rates_at_the_bins_centres(hidden, recording):
    model = sg.POGLM.load(hidden)
    counts = model.bin_like(sg.load(recording)).select_trials([3, 5, 6])
    nap = pytest.importorskip("pynapple")
    frame = model.infer(counts, as_pynapple=True)
    rates = model.infer(counts)
    assert isinstance(frame, nap.TsdFrame) and list(frame.columns) == ["hidden-0"]
    np.testing.assert_array_equal(frame.values, rates.reshape(-1, 1))
    np.testing.assert_allclose(
        frame.t, np.concatenate([s + 0.0025 + 0.005 * np.arange(200) for s in (3, 5, 6)])
    )
    # trials 5 and 6 touch: pynapple's closed intervals part them by its precision, 1 us
    np.testing.assert_allclose(frame.time_support.start, [3, 5, 6])
    np.testing.assert_allclose(frame.time_support.end, [4, 6 - 1e-6, 7])


def test_trials_apart_keep_each_bins_time_and_a_model_with_errors_is_tested(glm, recording, tmp_path):
    model = sg.POGLM.load(glm)
    counts = model.bin_like(sg.load(recording)).select_trials([3, 5, 6])
    sg.nwb_results.save_results(tmp_path / "r.nwb", model, counts)
    found = read(tmp_path / "r.nwb")
    np.testing.assert_allclose(found["binned_trials"]["start_time"], [3, 5, 6])
    assert "hidden_rates" not in found  # a GLM: no hidden neuron
    # no test asked: the default Wald tests, said to be the default
    assert_table_equal(found["couplings"], model.connectivity().significance(0.05))
    assert found["settings"]["test.test"] == "wald"
    assert found["settings"]["test.default"] == "the Wald tests at 0.05 where there are standard errors"
    hidden = sg.POGLM(n_hidden=1, epochs=1, n_samples=2).fit(counts)
    sg.nwb_results.save_results(tmp_path / "h.nwb", hidden, counts)
    times, data, _ = read(tmp_path / "h.nwb")["hidden_rates"]
    np.testing.assert_allclose(times, counts.bin_times()[0].reshape(-1))  # trials 3 and 5 are apart
    np.testing.assert_allclose(data * counts.bin_seconds, hidden.infer(counts).reshape(-1, 1), rtol=1e-6)


def test_counts_without_trial_starts_are_trials_one_after_another_and_overlaps_are_refused():
    counts = sg.SpikeCounts.from_array(np.zeros((2, 4, 1)), "0.5 s")
    centres, spans = counts.bin_times()
    np.testing.assert_allclose(centres, [[0.25, 0.75, 1.25, 1.75], [2.25, 2.75, 3.25, 3.75]])
    np.testing.assert_allclose(spans, [[0, 2], [2, 4]])
    overlapping = sg.SpikeCounts.from_array(np.zeros((2, 4, 1)), "0.5 s", metadata={"trial_starts_s": [0, 1]})
    with pytest.raises(ValueError, match="trial 1 starts at 1 s, before trial 0 stops at 2 s"):
        overlapping.bin_times()


def test_the_recording_is_never_the_output(hidden, recording):
    before = digest(recording)
    result = run("infer", hidden, recording, "-o", recording, "--overwrite")
    assert result.exit_code == 1 and "is an input here" in result.output
    result = run("export", hidden, "-o", recording, "--recording", recording, "--overwrite")
    assert result.exit_code == 1 and "is an input here" in result.output
    assert digest(recording) == before


def test_an_existing_output_is_kept_unless_overwrite(glm, folder):
    target = folder / "kept.nwb"
    target.write_text("keep me")
    result = run("export", glm, "-o", target, "--alpha", "0.05")
    assert result.exit_code == 1 and "kept.nwb: exists; pass --overwrite" in result.output
    assert target.read_text() == "keep me"
    assert run("export", glm, "-o", target, "--alpha", "0.05", "--overwrite").exit_code == 0
    assert read(target)["settings"]["test.alpha"] == 0.05


def test_a_failed_write_leaves_no_part_and_the_old_file(glm, tmp_path, monkeypatch):
    model = sg.POGLM.load(glm)
    old = tmp_path / "old.nwb"
    old.write_text("earlier results")

    def broken(self, container, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        sg.nwb_results.save_results(tmp_path / "new.nwb", model)
    with pytest.raises(OSError, match="disk full"):
        sg.nwb_results.save_results(old, model, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.nwb"]
    assert old.read_text() == "earlier results"


def test_threshold_and_self_loops_do_not_apply_to_nwb(glm, tmp_path):
    result = run("export", glm, "-o", tmp_path / "r.nwb", "--threshold", "0.1")
    assert result.exit_code == 2 and "applies to .graphml exports only" in result.output
    assert not (tmp_path / "r.nwb").exists()


def test_without_pynwb_the_message_names_the_extra(glm, recording, tmp_path, monkeypatch):
    hide_module(monkeypatch, "pynwb")
    result = run("infer", glm, recording, "-o", tmp_path / "r.nwb")
    assert result.exit_code == 1 and 'pip install "spikeglm[nwb]"' in result.output
    with pytest.raises(ModuleNotFoundError, match=r"needs pynwb, an optional extra: .*spikeglm\[nwb\]"):
        sg.nwb_results.save_results(tmp_path / "r.nwb", sg.POGLM.load(glm))
    assert list(tmp_path.iterdir()) == []


def test_without_pynapple_the_message_names_the_extra(hidden, recording, monkeypatch):
    model = sg.POGLM.load(hidden)
    counts = model.bin_like(sg.load(recording)).select_trials([0])
    hide_module(monkeypatch, "pynapple")
    with pytest.raises(ModuleNotFoundError, match=r"spikeglm\[pynapple\]"):
        model.infer(counts, as_pynapple=True)


@pytest.mark.parametrize(
    "session, message",
    [
        (
            {"subject": {"date_of_birth": "last spring"}},
            "subject's date_of_birth is 'last spring', not an ISO",
        ),
        ({"subject": {"subject_id": "a\x00b"}}, r"subject's subject_id 'a\\x00b' holds a zero character"),
        ({"session_start_time": "noon"}, "session_start_time is 'noon', not an ISO 8601 time"),
    ],
)
def test_a_session_nwb_cannot_state_is_refused_before_any_file(glm, tmp_path, session, message):
    with pytest.raises(ValueError, match=message):
        sg.nwb_results.save_results(tmp_path / "r.nwb", sg.POGLM.load(glm), session=session)
    assert list(tmp_path.iterdir()) == []


def test_the_reader_keeps_the_subjects_text_fields_only(recording, tmp_path):
    assert sg.load(recording).annotations["subject"] == SUBJECT
    odd = tmp_path / "odd.nwb"
    shutil.copy(recording, odd)
    with h5py.File(odd, "a") as file:
        subject = file["general/subject"]
        del subject["age"]
        subject.create_dataset("age", data=90)  # a number, not NWB's ISO 8601 duration: not kept
        subject.create_dataset("weight", data="20 g", dtype=h5py.string_dtype())
        subject.create_dataset("mood", data="calm", dtype=h5py.string_dtype())  # not a field of NWB's
        subject.create_dataset("strain", data=["a", "b"], dtype=h5py.string_dtype())  # not scalar
    kept = {**{k: v for k, v in SUBJECT.items() if k != "age"}, "weight": "20 g"}
    assert sg.load(odd).annotations["subject"] == kept
    assert "subject" not in sg.load(EXAMPLE).annotations
