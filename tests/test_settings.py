"""The estimator's settings: checked once where they enter, named in any spelling, read and changed."""

import dataclasses
import inspect

import numpy as np
import pytest
from sklearn.base import clone

import spikeglm as sg
import spikeglm.cli.fit
from spikeglm.inference import TRAINING_SETTINGS, TrainingConfig
from spikeglm.options import Registry
from spikeglm.settings import SETTINGS


def small_counts(seed: int = 0) -> sg.SpikeCounts:
    rng = np.random.default_rng(seed)
    return sg.SpikeCounts.from_array(rng.poisson(0.3, (6, 40, 3)), bin_size="5 ms")


def test_registry_matches_any_spelling_and_lists_the_names():
    kinds = Registry("kind", {"one-two": 1, "three": 3})
    assert kinds.name(" One_Two ") == "one-two" and kinds["THREE"] == 3
    assert kinds.name(3) == "three"  # the entry itself stands for its name
    assert "one_two" in kinds and "four" not in kinds
    with pytest.raises(ValueError, match="unknown kind 'four'; choose one of one-two, three"):
        kinds["four"]


@pytest.mark.parametrize(
    ("setting", "given", "canonical"),
    [
        ("relaxation", "Exact", "exact"),
        ("relaxation", sg.relax.EatSigmoid, "eat-sigmoid"),
        ("link", "Softplus", "softplus"),
        ("variational", "Forward_Backward", "forward-backward"),
        ("objective", "IWAE", "iwae"),
    ],
)
def test_named_settings_are_kept_as_given_and_checked_to_their_canonical_name(setting, given, canonical):
    model = sg.POGLM(**{setting: given})
    assert model.get_params()[setting] is given  # the scikit-learn contract: stored unchanged
    checked = model.checked_settings()
    assert getattr(checked.training if setting in TRAINING_SETTINGS else checked, setting) == canonical


def test_an_exact_relaxation_in_any_case_fits_by_the_score_function():
    model = sg.POGLM(n_hidden=1, relaxation="Exact", epochs=2, n_samples=2)
    assert model.training.sampler.score_function
    model.fit(small_counts())  # once failed inside a step: "exact" was compared as a string
    assert len(model.history_) == 2
    assert sg.POGLM(basis="Raised_Cosine").checked_settings().basis.name == "raised-cosine"


def test_settings_are_checked_by_fit():
    counts = small_counts()
    with pytest.raises(ValueError, match="n_samples must be a whole number >= 1; got 0"):
        sg.POGLM(n_samples=0).fit(counts)
    with pytest.raises(ValueError, match="lr must be a finite number > 0; got -1"):
        sg.POGLM(lr=-1).fit(counts)
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1; got 2\.5"):
        sg.POGLM(batch_size=2.5).fit(counts)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0; got 0"):
        sg.POGLM(relaxation="gumbel-softmax", temperature=0).fit(counts)
    # A number setting that also takes words names them in its refusal.
    with pytest.raises(ValueError, match="latent_tau must be a finite number > 0 or 'auto'; got 'fast'"):
        sg.POGLM(n_latent=1, latent_tau="fast").fit(counts)
    with pytest.raises(ValueError, match="window must be a whole number >= 1 or 'auto'; got 0"):
        sg.POGLM(window=0).fit(counts)
    with pytest.raises(ValueError, match="EatCubic: `temperature` must be <= 1"):  # its own check
        sg.POGLM(temperature=1.5).fit(counts)
    assert sg.POGLM(n_hidden=np.int64(2), epochs=np.int32(3)).get_params()["epochs"] == 3
    with pytest.raises(ValueError, match="seed must be a whole number >= 0"):
        TrainingConfig(seed=-1)


def test_get_set_params_and_clone():
    model = sg.POGLM(n_hidden=1, link="exp", epochs=7, basis_options={"decay": 0.5})
    params = model.get_params()
    assert params["epochs"] == 7 and params["link"] == "exp" and params["basis_options"] == {"decay": 0.5}
    twin = model.clone()
    assert twin is not model and twin.get_params().keys() == params.keys()
    assert twin.checked_settings().basis.to_dict() == model.checked_settings().basis.to_dict()
    assert twin.training == model.training
    model.set_params(epochs=9, window=8)
    basis = model.checked_settings().basis
    assert model.training.epochs == 9 and basis.window == 8 and basis.decay == 0.5
    with pytest.raises(ValueError, match="unknown setting"):
        model.set_params(epoch=3)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        model.set_params(lr=0)


def test_set_params_keeps_a_fit_and_the_fit_keeps_its_record():
    model = sg.POGLM(n_hidden=1, epochs=2, n_samples=2).fit(small_counts())
    weights = model.network_.weight.detach().clone()
    model.set_params(epochs=5)
    assert (model.network_.weight == weights).all() and model.fit_options_["epochs"] == 2


def test_fit_refuses_settings():
    model = sg.POGLM(n_hidden=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epochs'"):
        model.fit(small_counts(), epochs=2)
    assert model.network_ is None and model.epochs == sg.POGLM().epochs


def test_a_loaded_model_has_the_settings_it_was_fitted_with(tmp_path):
    model = sg.POGLM(n_hidden=1, epochs=3, lr=0.05, segment_bins=20, n_samples=2).fit(small_counts())
    model.save(tmp_path / "m.h5")
    loaded = sg.POGLM.load(tmp_path / "m.h5")
    assert loaded.get_params()["lr"] == 0.05 and loaded.segment_bins == 20
    assert loaded.training == model.training
    np.testing.assert_array_equal(loaded.infer(small_counts(1)), model.infer(small_counts(1)))


def test_bin_like_bins_a_recording_as_the_fit_was(tmp_path):
    rng = np.random.default_rng(2)
    times = {name: np.sort(rng.uniform(0, 2, 40)) for name in ("b", "a", "c")}
    recording = sg.Recording.from_spike_times(times, t_start=0, t_stop=2)
    counts = recording.bin("10 ms", trial_length="0.5 s").select_units(["c", "a"])
    model = sg.POGLM(n_hidden=1, epochs=1, n_samples=2).fit(counts)
    again = model.bin_like(recording)
    assert list(again.unit_ids) == ["c", "a"] and again.bin_seconds == 0.01
    np.testing.assert_array_equal(again.counts, counts.counts)
    assert model.bin_seconds == 0.01
    with pytest.raises(ValueError, match="'c'"):
        model.bin_like(recording.select_units(["a", "b"]))


def test_every_setting_is_declared_once_and_read_from_its_declaration():
    parameters = inspect.signature(sg.POGLM).parameters
    assert set(parameters) == set(SETTINGS)
    assert all(parameters[name].default == setting.default for name, setting in SETTINGS.items())
    fields = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    assert all(fields[name] == setting.default for name, setting in TRAINING_SETTINGS.items())
    options = {param.name: param for param in spikeglm.cli.fit.fit.params}
    for name, setting in SETTINGS.items():
        if name in options:
            assert options[name].default == setting.default and options[name].help == setting.help, name


def test_the_constructor_stores_its_arguments_and_set_params_refuses_without_changing_anything():
    basis = sg.basis.get("raw", window=3)
    model = sg.POGLM(n_hidden=np.int64(1), basis=basis, link="EXP", tol=None)
    assert type(model.n_hidden) is np.int64 and model.basis is basis
    assert model.link == "EXP" and model.tol is None
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        model.set_params(lr=0, epochs=3)
    assert model.get_params()["lr"] == 0.05 and model.get_params()["epochs"] == 500


def test_scikit_learn_clones_the_estimator_and_the_clone_fits_the_same():
    model = sg.POGLM(n_hidden=3, link="exp")
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    model.set_params(n_hidden=1, epochs=3, n_samples=2, seed=4)
    twin = clone(model)
    counts = small_counts()
    model.fit(counts)
    twin.fit(counts)
    np.testing.assert_array_equal(model.connectivity().strength, twin.connectivity().strength)
    assert model.score(counts, n_particles=20) == twin.score(counts, n_particles=20)
