"""The training objectives: a contract every registered objective keeps, and one added from here alone."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm import smc
from spikeglm.inference import OBJECTIVES, Objective, TrainingConfig
from spikeglm.model import Network
from spikeglm.segments import Batch
from spikeglm.variational import Posterior, log_weights


def small_problem(seed: int = 0) -> tuple[Network, Posterior, torch.Tensor]:
    """2 visible and 1 hidden neuron, 4 trials of 40 bins simulated from the network itself."""
    generator = torch.Generator().manual_seed(seed)
    network = Network(2, 1, sg.basis.get("exponential", window=3), link="softplus")
    with torch.no_grad():
        network.weight.normal_(0.0, 0.5, generator=generator)
        network.bias.fill_(-1.0)
    visible = network.simulate(4, 40, generator=generator)[..., :2].float()
    posterior = Posterior("forward-backward", 2, 1, network.basis_matrix, "softplus")
    posterior.init_rates(0.3, 0.1, generator)
    return network, posterior, visible


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_gives_a_differentiable_loss_and_a_float64_estimate(name):
    """The interface: a scalar surrogate whose gradient reaches the network and the posterior (the
    likelihood's reaches the posterior through its wake step), and the objective's value of each
    segment, float64, without gradient."""
    network, posterior, visible = small_problem()
    differentiate_loss(name, network, posterior, visible)
    assert_reached(network.weight, network.bias, posterior.bias, posterior.past)


def differentiate_loss(name: str, network: Network, posterior: Posterior, visible: torch.Tensor) -> None:
    """The objective ``name``'s loss of one batch, checked (a finite scalar surrogate with a gradient, a
    float64 estimate without), and differentiated."""
    objective = TrainingConfig(objective=name, n_samples=4).make_objective()
    torch.manual_seed(0)
    surrogate, estimate = objective.loss(network, posterior, Batch(visible))
    assert surrogate.shape == () and surrogate.requires_grad and math.isfinite(float(surrogate.detach()))
    assert (
        estimate.shape == visible.shape[:1] and estimate.dtype == torch.float64 and not estimate.requires_grad
    )
    surrogate.backward()


def assert_reached(*parameters: torch.Tensor) -> None:
    """Every parameter has a finite gradient, not all zero."""
    for parameter in parameters:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0


def small_latent_problem(n_hidden: int, seed: int = 0) -> tuple[Network, Posterior, torch.Tensor]:
    """2 visible neurons (and ``n_hidden``) driven by one latent factor, 4 trials of 40 bins, float32."""
    generator = torch.Generator().manual_seed(seed)
    network = Network(2, n_hidden, sg.basis.get("exponential", window=3), link="softplus", n_latent=1)
    with torch.no_grad():
        network.weight.normal_(0.0, 0.5, generator=generator)
        network.bias.fill_(-1.0)
        network.loading.fill_(0.5)
    visible = torch.poisson(torch.full((4, 40, 2), 0.4), generator=generator)
    posterior = Posterior("forward-backward", 2, n_hidden, network.basis_matrix, "softplus", n_latent=1)
    posterior.init_rates(0.3, 0.1, generator)
    return network, posterior, visible


@pytest.mark.parametrize("n_hidden", [0, 1])
@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_reaches_the_latent_factors(name, n_hidden):
    """With a latent factor (and with or without a hidden neuron) every objective gives a finite scalar
    surrogate whose gradient reaches the loading, the prior's time constant and the posterior's encoder of
    the factor (the likelihood's reaches the encoder through its wake step), and a float64 estimate."""
    network, posterior, visible = small_latent_problem(n_hidden)
    differentiate_loss(name, network, posterior, visible)
    encoder = posterior.latent_encoder
    assert network.loading is not None and network.latent_prior is not None and encoder is not None
    assert_reached(
        network.loading,
        network.latent_prior.log_tau,
        encoder.mean_weight,
        encoder.mean_bias,
        encoder.precision_weight,
        encoder.precision_bias,
    )


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_objective_estimates_at_most_the_log_likelihood(name):
    """Each estimate lies below log p(x) in expectation (the bounds) or on it (the likelihood): over 40
    draws of 64 samples, the mean is at most log p(x) + 4 standard errors, and the particle objectives
    come within 2% of it. log p(x) is the particle filter's with 20,000 particles (its own Monte Carlo
    error is below 0.05 nats here)."""
    network, posterior, visible = small_problem()
    exact = smc.log_likelihood(network, visible, n_particles=20_000, n_runs=4, seed=1).per_trial.sum()
    objective = TrainingConfig(objective=name, n_samples=64).make_objective()
    torch.manual_seed(1)
    with torch.no_grad():
        draws = np.array(
            [float(objective.loss(network, posterior, Batch(visible))[1].sum()) for _ in range(40)]
        )
    mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))
    assert mean <= exact + 4 * se + 0.05
    if objective.particles:
        assert abs(mean - exact) < 0.02 * abs(exact)


class NoHiddenSpikes(Objective):
    """A toy: the log-likelihood of the visible counts as if the hidden neurons never fired."""

    def loss(self, network, posterior, batch):
        hidden = torch.zeros(*batch.visible.shape[:-1], network.n_hidden)
        log_p = network.log_likelihood(batch.visible, hidden).sum(dim=(-2, -1))
        return -log_p.mean(), log_p.detach().double()


@pytest.fixture
def toy():
    OBJECTIVES.register("no-hidden-spikes", NoHiddenSpikes)
    try:
        yield "no-hidden-spikes"
    finally:
        OBJECTIVES.unregister("no-hidden-spikes")


def test_an_objective_registered_here_is_fitted_by_the_estimator(toy, diffpoglm):
    """One class and one registry line: the estimator takes the new name, the loop follows its loss
    (the objective it records rises), and the name is kept with the fit."""
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=1, objective="No_Hidden_Spikes", epochs=30, tol=None, seed=0).fit(train)
    objectives = [record.objective for record in model.history_]
    assert len(objectives) == 30 and objectives[-1] > objectives[0] + 0.01
    assert model.fit_options_["objective"] == toy
    assert model.fit_memory(train.n_trials, train.n_bins, train.n_units)["step"] > 0


def test_a_registry_refuses_a_taken_or_uncanonical_name(toy):
    with pytest.raises(ValueError, match="registered already"):
        OBJECTIVES.register(toy, NoHiddenSpikes)
    with pytest.raises(ValueError, match="canonical name"):
        OBJECTIVES.register("My_Bound", NoHiddenSpikes)
    with pytest.raises(TypeError, match="abstract"):
        Objective(1, TrainingConfig().sampler)  # type: ignore[abstract]


def test_a_relaxed_objectives_record_is_the_bound_of_exact_draws():
    """Real-valued relaxed counts make log-weights that bound nothing (a fit can raise them with hidden
    counts the model cannot produce), so the ELBO's record, which the stopping rule reads, is that of exact
    integer draws. Over 2,000 batches, its mean lies within 4 standard errors of the exact-draw ELBO (4,000
    draws), and the relaxed draws' mean lies above both, by more than 3 standard errors of the record."""
    network, posterior, visible = small_problem()
    objective = TrainingConfig(objective="elbo", n_samples=4).make_objective()
    assert objective.sampler.real_valued
    batch, law = Batch(visible), objective.sampler.law
    torch.manual_seed(0)
    with torch.no_grad():
        record = np.array([float(objective.loss(network, posterior, batch)[1].sum()) for _ in range(2000)])
        exact, relaxed = (
            np.array([float(log_weights(network, posterior, batch, 1, drawn)[0].sum()) for _ in range(4000)])
            for drawn in (None, law)
        )

    def mean_se(draws: np.ndarray) -> tuple[float, float]:
        return draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))

    (r, r_se), (e, e_se), (x, x_se) = mean_se(record), mean_se(exact), mean_se(relaxed)
    assert abs(r - e) < 4 * math.hypot(r_se, e_se)
    assert x - r > 3 * math.hypot(r_se, x_se)
    assert x - e > 3 * math.hypot(e_se, x_se)


@pytest.mark.parametrize("family", ["forward-backward", "forward-self"])
def test_the_visible_history_filtered_once_gives_the_same_log_weights(family, monkeypatch):
    """The posterior and the network read the visible counts through one basis: filtered once, the
    log-weights and their gradients are those of filtering them for each (and the filter runs once less)."""
    from spikeglm import basis as basis_module
    from spikeglm import model as model_module
    from spikeglm import variational

    basis = sg.basis.get("raised-cosine", window=12, n_basis=3)
    generator = torch.Generator().manual_seed(1)
    network = Network(4, 2, basis, "softplus")
    with torch.no_grad():
        network.weight.normal_(0.0, 0.3, generator=generator)
        network.bias.fill_(-1.5)
    posterior = Posterior(family, 4, 2, network.basis_matrix, "softplus")
    posterior.init_rates(0.3, 0.1, generator)
    visible = network.simulate(3, 60, generator=generator)[..., :4].float()
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return basis_module.history(*args, **kwargs)

    monkeypatch.setattr(variational, "history", counted)
    monkeypatch.setattr(model_module, "history", counted)
    results = {}
    for shared in (True, False):
        if not shared:
            monkeypatch.setattr(variational, "shared_history", lambda *args: None)
        calls.clear()
        torch.manual_seed(0)
        log_w, log_q = log_weights(network, posterior, visible, 5)
        gradients = torch.autograd.grad(log_w.sum(), [network.weight, posterior.past])
        results[shared] = (log_w, log_q, *gradients, len(calls))
    for one, other in zip(results[True][:4], results[False][:4], strict=True):
        torch.testing.assert_close(one, other, rtol=1e-6, atol=1e-6)
    assert results[True][4] == results[False][4] - 1


def test_the_visible_counts_log_pmf_is_the_elementwise_one_summed():
    """``visible_log_pmf`` takes the log of the rates at the counts above 0 alone: it is the Poisson
    log-pmf summed over the bins (weighed by the scored mask) and the neurons, for every sample, with a
    rate underflowed to 0 read as the smallest float, and the same gradient with respect to the rates.
    Float32 terms summed in another order: 1e-5 relative."""
    from spikeglm.relax import poisson_log_pmf
    from spikeglm.variational import visible_log_pmf

    generator = torch.Generator().manual_seed(2)
    visible = torch.poisson(torch.full((3, 20, 4), 0.6), generator=generator)
    rates = torch.rand(5, 3, 20, 4, generator=generator) * 2
    rates[1, 0, 3, 2] = 0.0  # underflowed, where a count may be above 0
    visible[0, 3, 2] = 2.0
    rates.requires_grad_()
    scored = (torch.rand(3, 20, generator=generator) > 0.3).float()
    for mask in (None, scored):
        weight = 1.0 if mask is None else mask[..., None]
        expected = (poisson_log_pmf(visible, rates) * weight).sum(dim=(-2, -1))
        found = visible_log_pmf(visible, rates, mask)
        torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-4)
        grads = [torch.autograd.grad(value.sum(), rates)[0] for value in (found, expected)]
        torch.testing.assert_close(*grads, rtol=1e-5, atol=1e-5)


def test_the_log_weights_are_the_complete_data_likelihood_over_q_at_relaxed_draws():
    """At relaxed (real-valued) hidden counts, ``log_weights`` is ``log p(x, z) - log q(z | x)`` with every
    term, the hidden counts' log-factorials included, in value and in gradient (they cancel, and are left
    out of both), and its ``log q`` differs from the full one by those factorials alone. Float64: 1e-9."""
    from spikeglm.relax import EatCubic, poisson_log_pmf

    network, posterior, visible = small_problem(3)
    network, posterior, visible = network.double(), posterior.double(), visible.double()
    law = functools.partial(EatCubic, temperature=0.5)
    parameters = [posterior.past, network.weight]
    torch.manual_seed(0)
    log_w, log_q = log_weights(network, posterior, visible, 6, law)
    torch.manual_seed(0)
    hidden, q_rate = posterior.sample(visible, 6, law)
    assert not torch.equal(hidden, hidden.round())  # relaxed: the factorials are not those of integers
    full_q = poisson_log_pmf(hidden, q_rate).sum(dim=(-2, -1))
    expected = network.log_likelihood(visible, hidden).sum(dim=(-2, -1)) - full_q
    torch.testing.assert_close(log_w, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(full_q - log_q, -torch.lgamma(hidden + 1).sum(dim=(-2, -1)))
    found, wanted = (
        torch.autograd.grad(value.sum(), parameters, retain_graph=True) for value in (log_w, expected)
    )
    for one, other in zip(found, wanted, strict=True):
        torch.testing.assert_close(one, other, rtol=1e-9, atol=1e-9)
