"""The estimator with latent factors: settings, model files, exports, inference of the paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm.basis import get
from spikeglm.inference import solve_glm
from spikeglm.latent import MarkovGaussian
from spikeglm.model import Network
from spikeglm.segments import Segments
from spikeglm.significance import jitter_table, strength_se
from spikeglm.variational import laplace_latent


@pytest.fixture(scope="module")
def fitted():
    """A model with one latent factor and one hidden neuron, fitted briefly to small counts."""
    counts = sg.SpikeCounts.from_array(np.random.default_rng(0).poisson(0.3, (3, 80, 4)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=1, n_latent=1, latent_tau=12.0, epochs=3, seed=0).fit(counts)
    return model, counts


def test_the_settings_are_checked_with_their_names():
    counts = sg.SpikeCounts.from_array(np.zeros((2, 20, 3)), bin_size="5 ms")
    with pytest.raises(ValueError, match="n_latent must be a whole number >= 0; got -1"):
        sg.POGLM(n_latent=-1).fit(counts)
    with pytest.raises(ValueError, match="latent_tau"):
        sg.POGLM(n_latent=1, latent_tau=0.0).fit(counts)
    assert "n_latent=2" in repr(sg.POGLM(n_latent=2)) and "n_latent" not in repr(sg.POGLM())


def test_a_fit_with_factors_and_no_hidden_neuron_is_trained_not_solved():
    counts = sg.SpikeCounts.from_array(np.random.default_rng(1).poisson(0.3, (3, 80, 4)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, n_latent=1, epochs=4, seed=0).fit(counts)
    assert "L-BFGS" not in model.stopped_ and len(model.history_) == 4
    assert model.network_.loading.shape == (4, 1)
    assert float(model.network_.loading.detach().abs().sum()) > 0


def test_a_fit_with_factors_alone_stops_once_an_epoch_rises_within_its_noise():
    """Its network is solved after training, so training stops at the first epoch that does not raise the
    objective beyond its noise (segment groups compared with the epoch before), long before the plateau
    rule would; with fewer than 8 segments the plateau rule stays."""
    counts = sg.SpikeCounts.from_array(np.random.default_rng(3).poisson(0.3, (16, 100, 4)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, n_latent=1, seed=0).fit(counts)
    assert model.stopped_.startswith("converged: the objective rose by less than 2 standard errors")
    assert 2 <= len(model.history_) < 20
    few = sg.SpikeCounts.from_array(counts.counts[:4], bin_size="5 ms")
    plateau = sg.POGLM(n_hidden=0, n_latent=1, seed=0).fit(few)
    assert plateau.stopped_.startswith("converged: the smoothed objective")
    hidden = sg.POGLM(n_hidden=1, n_latent=1, seed=0, epochs=3, tol=1e-9).fit(counts)
    assert (
        hidden.stopped_ == "ran the 3 epochs set"
    )  # hidden neurons: the plateau rule, whatever the segments


def test_only_a_start_whose_couplings_are_solved_again_is_solved_loosely(monkeypatch):
    """Without hidden neurons the couplings are solved exactly after training: the start's GLM stops at a
    gradient of START_TOLERANCE_GRAD per spike, the final solve at GLM_TOLERANCE_GRAD; with hidden
    neurons, whose couplings are trained, the start is the exact GLM."""
    import spikeglm.inference.start as start
    from spikeglm.inference.glm import GLM_TOLERANCE_GRAD

    solved = start.solve_glm
    tolerances: list[float] = []

    def recording(*args, **kwargs):
        tolerances.append(kwargs.get("tolerance_grad", GLM_TOLERANCE_GRAD))
        return solved(*args, **kwargs)

    monkeypatch.setattr(start, "solve_glm", recording)
    counts = sg.SpikeCounts.from_array(np.random.default_rng(4).poisson(0.3, (3, 80, 4)), bin_size="5 ms")
    sg.POGLM(n_hidden=0, n_latent=1, epochs=2, seed=0).fit(counts)
    sg.POGLM(n_hidden=1, n_latent=1, epochs=2, seed=0).fit(counts)
    assert tolerances == [start.START_TOLERANCE_GRAD, GLM_TOLERANCE_GRAD] and 1e-7 < tolerances[0]


def test_the_model_file_keeps_the_factors(fitted, tmp_path):
    model, counts = fitted
    model.save(tmp_path / "model.h5")
    loaded = sg.POGLM.load(tmp_path / "model.h5")
    assert (loaded.n_latent, loaded.latent_tau) == (1, 12.0)
    for name, value in model.network_.state_dict().items():
        torch.testing.assert_close(loaded.network_.state_dict()[name], value, rtol=0, atol=0)
    for before, after in zip(model.infer_latent(counts), loaded.infer_latent(counts), strict=True):
        np.testing.assert_array_equal(before, after)


def test_infer_latent_gives_a_mean_and_sd_per_bin(fitted):
    model, counts = fitted
    mean, sd = model.infer_latent(counts)
    assert mean.shape == sd.shape == (3, 80, 1) and mean.dtype == np.float32
    # Unit variance under the prior: the posterior's sd is positive and below the prior's.
    assert (sd > 0).all() and (sd <= 1 + 1e-5).all() and np.isfinite(mean).all()
    # Each trial is one path: the Laplace posterior of that trial alone, given the hidden neurons' means.
    network, posterior = model.network_, model.posterior_
    visible = torch.tensor(counts.counts[1])
    start = posterior.latent_posterior(network, visible.float())
    q = laplace_latent(network, visible, start, torch.from_numpy(model.infer(counts)[1]))
    np.testing.assert_allclose(mean[1], q.mean.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"no latent factors \(n_latent=0\)"):
        sg.POGLM(n_hidden=1, epochs=1).fit(counts).infer_latent(counts)


def test_the_connectivity_records_the_factors_and_rebuilds_them(fitted):
    model, _ = fitted
    conn = model.connectivity()
    latent = conn.metadata["latent"]
    assert latent["n_latent"] == 1 and np.shape(latent["loading"]) == (5, 1)
    np.testing.assert_allclose(
        latent["tau_bins"], model.network_.latent_prior.tau.detach().numpy(), rtol=1e-6
    )
    rebuilt = sg.POGLM.from_connectivity(conn)
    torch.testing.assert_close(rebuilt.network_.loading, model.network_.loading.detach())
    torch.testing.assert_close(rebuilt.network_.latent_prior.tau, model.network_.latent_prior.tau.detach())
    metadata = {**conn.metadata, "latent": {"loading": [[0.1]], "tau_bins": [5.0]}}
    wrong = sg.Connectivity(
        conn.weights,
        conn.basis_matrix,
        conn.bias,
        labels=conn.labels,
        visible=conn.visible,
        metadata=metadata,
    )
    with pytest.raises(ValueError, match=r"loading must be \(5, K\)"):
        sg.POGLM.from_connectivity(wrong)


def test_the_memory_estimate_counts_the_factors():
    model = sg.POGLM(n_hidden=0, n_latent=2)
    with_factors = model.fit_memory(1, 10_000, 20)
    without = sg.POGLM(n_hidden=0).fit_memory(1, 10_000, 20)
    assert with_factors["step"] > without["step"] and "scoring" not in with_factors
    assert (
        sg.POGLM(n_hidden=0, n_latent=2).fit_memory(
            1, 10_000, 20, score_trials=1, score_bins=10_000, n_particles=100
        )["scoring"]
        > 0
    )


def small_glm(generator: torch.Generator) -> Network:
    """A GLM of 3 neurons (exp link, couplings of sd 0.3, biases -1.5) to simulate from."""
    network = Network(3, 0, get("exponential", window=5), "exp")
    with torch.no_grad():
        network.weight.normal_(0, 0.3, generator=generator)
        network.bias.fill_(-1.5)
    return network


def test_the_standard_errors_given_a_drive_are_those_of_the_glm_with_it_in_the_biases():
    generator = torch.Generator().manual_seed(0)
    shifted = small_glm(generator)
    counts = Segments(shifted.simulate(4, 300, generator=generator), length=100, context=5)
    drive = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    latent = Network(3, 0, shifted.basis, "exp", n_latent=1)
    latent.load_state_dict(
        {
            **shifted.state_dict(),
            **{k: v for k, v in latent.state_dict().items() if "latent" in k or k == "loading"},
        }
    )
    with torch.no_grad():
        latent.bias -= drive.float()
    given = strength_se(latent, counts, offset=lambda batch: drive.expand(*batch.visible.shape[:-1], 3))
    np.testing.assert_allclose(given, strength_se(shifted, counts), rtol=1e-6)  # float32 biases
    with pytest.raises(ValueError, match="needs their drive"):
        strength_se(latent, counts)


def test_a_fit_with_factors_and_no_hidden_neuron_has_wald_tests():
    counts = sg.SpikeCounts.from_array(np.random.default_rng(2).poisson(0.3, (4, 100, 3)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, n_latent=1, epochs=3, seed=0).fit(counts)
    assert model.strength_se_.shape == (3, 3) and np.isfinite(model.strength_se_).all()
    conn = model.connectivity()
    assert "given the latent factors' posterior mean path" in conn.metadata["se_method"]
    assert len(conn.significance()) == 9


def test_the_laplace_path_is_the_posterior_mode():
    """At the path laplace_latent returns, the gradient of log p(x | f) + log p(f) vanishes (exp link:
    the Fisher and the observed curvature agree, so scoring converges to the mode)."""

    generator = torch.Generator().manual_seed(3)
    network = Network(6, 0, get("exponential", window=5), "exp", n_latent=2, latent_tau=[8.0, 30.0])
    with torch.no_grad():
        network.weight.normal_(0, 0.2, generator=generator)
        network.bias.fill_(-1.0)
        network.loading.normal_(0, 0.6, generator=generator)
    visible = network.simulate(1, 200, generator=generator)[0]
    flat = MarkovGaussian(
        network.latent_prior,
        torch.zeros(200, 2, dtype=torch.float64),
        torch.zeros(200, 2, dtype=torch.float64),
    )
    path = laplace_latent(network, visible, flat).mean.clone().requires_grad_(True)

    def log_joint(f: torch.Tensor) -> torch.Tensor:
        network64 = network.double()
        value = network64.log_likelihood(visible.double(), latent=f).sum() + network64.latent_prior.log_prob(
            f
        )
        network.float()
        return value

    (gradient,) = torch.autograd.grad(log_joint(path), path)
    zero = torch.zeros(200, 2, dtype=torch.float64, requires_grad=True)
    (at_prior,) = torch.autograd.grad(log_joint(zero), zero)
    assert float(gradient.abs().max()) < 1e-6 * float(at_prior.abs().max()) + 1e-8


def test_the_laplace_paths_of_a_batch_are_each_segments_own():
    """laplace_paths steps every segment of a batch at once: each path equals laplace_latent's of its
    segment alone to the steps' tolerance (LAPLACE_TOL: the batch stops when its slowest segment does),
    for one factor and for two; a segment whose bins are all unscored carries no
    potential, and its path is the prior's mean, zero."""
    from spikeglm.segments import Batch
    from spikeglm.variational import LAPLACE_TOL, laplace_paths

    generator = torch.Generator().manual_seed(5)
    for taus in ([12.0], [8.0, 30.0]):
        network = Network(5, 0, get("exponential", window=5), "softplus", n_latent=len(taus), latent_tau=taus)
        with torch.no_grad():
            network.weight.normal_(0, 0.2, generator=generator)
            network.bias.fill_(-1.0)
            network.loading.normal_(0, 0.6, generator=generator)
        visible = network.simulate(3, 150, generator=generator)
        flat = torch.zeros(3, 150, len(taus), dtype=torch.float64)
        start = MarkovGaussian(network.latent_prior, flat, flat)
        scored = torch.ones(3, 150)
        scored[2] = 0.0
        batch = Batch(visible, None, scored, None)
        paths = laplace_paths(network, batch, start).mean
        for segment in range(2):
            alone = MarkovGaussian(network.latent_prior, flat[segment], flat[segment])
            expected = laplace_latent(network, visible[segment], alone).mean
            torch.testing.assert_close(paths[segment], expected, rtol=0, atol=LAPLACE_TOL)
        assert float(paths[2].abs().max()) < 1e-12


def test_the_bootstrap_draws_new_paths_and_the_jitter_test_needs_the_drive():
    sim = sg.synthetic.network(
        "balanced", seed=2, n_visible=5, n_hidden=0, shared_drive="strong", duration="1 min"
    )
    model = sg.POGLM(n_hidden=0, n_latent=1, epochs=3, seed=0).fit(sim.train)
    simulate, paths = model.network_.simulate, []

    def spy(*args, latent=None, **kwargs):
        paths.append(latent)
        return simulate(*args, latent=latent, **kwargs)

    model.network_.simulate = spy
    se = sg.bootstrap_se(model, sim.train, n_boot=2, seed=0)
    assert se.shape == (5, 5) and np.isfinite(se).all() and (se > 0).all()
    assert model.strength_se_source_["method"] == "bootstrap"
    # Each refit's recording has a path of its own, of the prior's law (unit variance).
    assert [tuple(p.shape) for p in paths] == [(sim.train.n_trials, sim.train.n_bins, 1)] * 2
    assert not torch.equal(paths[0], paths[1]) and 0.5 < float(paths[0].var()) < 1.5
    conn = model.connectivity()
    with pytest.raises(ValueError, match=r"has latent factors, .* pass drive=model.known_drive\(counts"):
        conn.significance(method="jitter", counts=sim.train)
    drive = model.known_drive(sim.train)
    assert drive.shape == sim.train.counts.shape
    np.testing.assert_array_equal(drive, model.latent_drive(sim.train))  # no covariate: the factors' alone
    table, settings = conn.test_couplings(0.05, "jitter", counts=sim.train, drive=drive, n_jitter=5)
    assert len(table) == 25 and "latent factors" in settings["drive"]


def test_the_jitter_test_given_a_drive_is_that_of_the_glm_with_it_in_the_biases():

    rng = np.random.default_rng(4)
    weights, basis = rng.normal(0, 0.3, (3, 3, 1)), np.ones((1, 4)) / 4
    counts = rng.poisson(0.3, (4, 300, 3)).astype(float)
    drive = np.array([0.2, -0.1, 0.3])
    bias = np.full(3, -1.2)
    options = {"alpha": 0.05, "n_jitter": 9, "seed": 1}
    given = jitter_table(
        weights,
        basis,
        bias - drive,
        "exp",
        counts,
        ["a", "b", "c"],
        **options,
        drive=np.broadcast_to(drive, counts.shape),
    )
    plain = jitter_table(weights, basis, bias, "exp", counts, ["a", "b", "c"], **options)
    for column in ("strength", "se", "z", "p"):
        np.testing.assert_allclose(given[column], plain[column], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="drive must have the counts' shape"):
        jitter_table(weights, basis, bias, "exp", counts, ["a", "b", "c"], **options, drive=drive)


def test_too_many_factors_are_refused_before_the_fit_naming_the_setting():
    counts = sg.SpikeCounts.from_array(np.zeros((20, 2000, 3)), bin_size="5 ms")
    with pytest.raises(ValueError, match=r"n_latent=4 \(--latent\) is more than the 3 units.*at most 3"):
        sg.POGLM(n_hidden=0, n_latent=4).fit(counts)
    wide = sg.SpikeCounts.from_array(np.zeros((40, 2000, 3000), dtype=np.uint8), bin_size="5 ms")
    with pytest.raises(ValueError, match=r"use fewer latent factors than n_latent=3000 \(--latent\)"):
        sg.POGLM(n_hidden=0, n_latent=3000, part_bins=2**20, batch_size=64).fit(wide)
    with pytest.raises(ValueError, match="latent must be a whole number >= 0"):
        sg.select_hidden(counts, candidates=(0,), folds=2, latent=(-1,))
    with pytest.raises(ValueError, match="give at least one number of latent factors"):
        sg.select_hidden(counts, candidates=(0,), folds=2, latent=())


def test_a_fit_with_factors_alone_draws_one_path_per_step_by_default():
    from spikeglm.inference.config import HIDDEN_SAMPLES, LATENT_SAMPLES, TrainingConfig

    assert sg.POGLM(n_hidden=0, n_latent=1).training.n_samples == LATENT_SAMPLES == 1
    assert sg.POGLM(n_hidden=2, n_latent=1).training.n_samples == HIDDEN_SAMPLES == 5
    assert sg.POGLM(n_hidden=0, n_latent=1, n_samples=3).training.n_samples == 3
    assert sg.POGLM().get_params()["n_samples"] is None and TrainingConfig().n_samples == HIDDEN_SAMPLES


def test_the_glm_solve_given_a_known_path_is_the_glm_with_it_in_the_biases():
    generator = torch.Generator().manual_seed(5)
    truth = small_glm(generator)
    counts = truth.simulate(4, 400, generator=generator)
    plain = Network(3, 0, truth.basis, "exp")
    solve_glm(plain, counts)
    latent = Network(3, 0, truth.basis, "exp", n_latent=1)
    with torch.no_grad():  # started where the plain solve starts, in the shifted coordinates
        latent.loading.copy_(torch.tensor([[0.5], [-0.2], [0.1]]))
        latent.bias.copy_(-0.8 * latent.loading[:, 0])
    loading_before = latent.loading.detach().clone()
    solve_glm(latent, counts, latent=lambda batch: torch.full((*batch.visible.shape[:-1], 1), 0.8))
    torch.testing.assert_close(latent.weight, plain.weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(latent.bias + 0.8 * loading_before[:, 0], plain.bias, rtol=1e-4, atol=1e-4)
    assert torch.equal(latent.loading.detach(), loading_before) and latent.loading.requires_grad
    with pytest.raises(ValueError, match="needs their path"):
        solve_glm(latent, counts)


def test_the_start_reads_the_drives_time_constant_from_the_glms_errors():
    """A strong shared drive of time constant 0.5 s (100 bins at 5 ms, 99 measured on the path itself):
    the errors of the GLM along its component decay at 70-130 bins in 10 minutes; without a drive there is
    no component to read."""
    from spikeglm.inference.start import error_time_constants, shared_components

    for drive, expected in (("strong", (70.0, 130.0)), (0.0, None)):
        sim = sg.synthetic.network(
            "balanced", seed=0, n_visible=20, n_hidden=0, shared_drive=drive, duration="10 min"
        )
        counts = torch.as_tensor(np.array(sim.train.counts))
        segments = Segments(counts, length=1000, context=5)
        glm = Network(20, 0, get("exponential", 5), "softplus")
        glm.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
        solve_glm(glm, segments, max_iterations=200)
        components, _ = shared_components(glm, segments, 1)
        if expected is None:
            assert components.shape[1] == 0  # no shared input: no factor to read
            continue
        (tau,) = error_time_constants(glm, segments, components).tolist()
        assert expected[0] < tau < expected[1]


def test_the_time_constants_are_held_through_the_first_rate_of_learning():
    """Held for the first quarter of the epochs when no plateau lowers the rate (tol=None); then learned."""
    counts = sg.SpikeCounts.from_array(np.random.default_rng(2).poisson(0.3, (4, 200, 4)), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, n_latent=1, latent_tau=15.0, epochs=8, tol=None, seed=0)
    taus: list[float] = []
    model.fit(
        counts,
        progress=False,
        callback=lambda _: taus.append(float(model.network_.latent_prior.tau.detach())),
    )
    assert taus[0] == taus[1] == pytest.approx(15.0, rel=1e-6)  # the first 2 of 8 epochs
    assert taus[-1] != pytest.approx(15.0, rel=1e-3)


def test_the_decay_time_of_an_exponential_autocovariance_is_its_time_constant():
    from spikeglm.inference.start import decay_time

    lags = [12, 24, 48, 96, 192, 384]
    values = 0.05 * torch.exp(-torch.tensor(lags, dtype=torch.float64) / 80.0)
    assert decay_time(lags, values, 6.0) == pytest.approx(80.0, rel=1e-9)  # lags beyond 0.2 x C(12) unread
    values[3:] = -0.01  # noise past the decay does not count
    assert decay_time(lags, values, 6.0) == pytest.approx(80.0, rel=1e-9)
    flat = torch.full((6,), 0.05, dtype=torch.float64)
    assert decay_time(lags, flat, 6.0) == 2 * 384  # slower than the lags read: the longest it can say
    assert decay_time(lags, flat * torch.linspace(1.0, 1.5, 6, dtype=torch.float64), 6.0) == 2 * 384
    assert np.isnan(decay_time(lags, -values, 6.0))  # no positive autocovariance
    assert np.isnan(decay_time(lags, flat * torch.tensor([1.0, 0.1, 0, 0, 0, 0]), 6.0))  # too fast to read
