"""The particle filter with latent factors: against a Laplace importance sampler without hidden neurons,
against the variational importance sampler and between its proposals with one, and its gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_objectives import assert_reached

import spikeglm as sg
from spikeglm import smc
from spikeglm.model import Network
from spikeglm.segments import Batch
from spikeglm.variational import Posterior, marginal_log_likelihood


def latent_network(n_hidden: int = 0, link: str = "exp", tau: float = 10.0, seed: int = 0) -> Network:
    """3 visible neurons (and ``n_hidden``), one factor of time constant ``tau`` bins and loading 0.8."""
    generator = torch.Generator().manual_seed(seed)
    basis = sg.basis.get("exponential", window=3)
    network = Network(3, n_hidden, basis, link=link, n_latent=1, latent_tau=tau).double()
    with torch.no_grad():
        network.weight.normal_(0.0, 0.3, generator=generator)
        network.weight[:3, 3:] = 1.0  # the hidden neuron drives the visible ones (so it matters)
        network.bias.fill_(-0.5)
        network.loading.fill_(0.8)
    return network


@torch.no_grad()
def simulated_visible(network: Network, n_trials: int, n_bins: int, seed: int = 1) -> torch.Tensor:
    """Visible counts drawn bin by bin with a path of the factors from their prior (``Network.simulate``
    does not draw factors)."""
    generator = torch.Generator().manual_seed(seed)
    assert network.latent_prior is not None
    path = network.latent_prior.sample((n_trials,), n_bins, generator=generator).double()
    counts = torch.zeros(n_trials, n_bins, network.n_neurons, dtype=torch.float64)
    for t in range(n_bins):
        counts[:, t] = torch.poisson(network.rates(counts, latent=path)[:, t], generator=generator)
    return counts[..., : network.n_visible]


def latent_posterior(network: Network, family: str = "forward") -> Posterior:
    """A posterior whose encoder reads the counts as a rough guess of the factor would (a proposal need
    not be good, only valid; a random readout is too poor for a few thousand particles)."""
    posterior = Posterior(family, 3, network.n_hidden, network.basis_matrix, network.link_name, 1).double()
    posterior.init_rates(0.3, 0.2, torch.Generator().manual_seed(2))
    encoder = posterior.latent_encoder
    assert encoder is not None
    with torch.no_grad():
        encoder.mean_weight.fill_(0.25)
        encoder.mean_bias.fill_(-0.5)
        encoder.precision_weight.zero_()
        encoder.precision_bias.fill_(math.log(math.expm1(0.5)))
    return posterior


def joint_log_prob(network: Network, visible: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """``log p(x, f)`` of paths (..., bins, 1) for a network without hidden neurons."""
    assert network.latent_prior is not None
    return network.log_likelihood(visible, latent=path).sum((-2, -1)) + network.latent_prior.log_prob(path)


def laplace_proposal(network: Network, visible: torch.Tensor) -> torch.distributions.MultivariateNormal:
    """The Laplace approximation of ``p(f | x)`` of one trial (bins, V): Newton's method on ``log p(x | f) +
    log p(f)`` with the dense bins x bins Hessian, to the mode; the Gaussian of minus the Hessian there."""
    n_bins = visible.shape[0]

    def objective(flat: torch.Tensor) -> torch.Tensor:
        return joint_log_prob(network, visible, flat[:, None])

    mode = torch.zeros(n_bins, dtype=torch.float64)
    for _ in range(50):
        gradient = torch.autograd.functional.jacobian(objective, mode)
        hessian = torch.autograd.functional.hessian(objective, mode)
        step = torch.linalg.solve(-hessian, gradient)
        mode = mode + step
        if float(step.abs().max()) < 1e-10:
            break
    hessian = torch.autograd.functional.hessian(objective, mode)
    return torch.distributions.MultivariateNormal(mode, precision_matrix=-hessian)


def laplace_draws(network: Network, visible: torch.Tensor, n_draws: int, seed: int = 0):
    """For each trial: draws of the Laplace approximation (n_draws, bins, 1) and their importance
    log-weights ``log p(x, f) - log q(f)`` (n_draws,)."""
    torch.manual_seed(seed)
    for trial in visible:
        proposal = laplace_proposal(network, trial)
        draws = proposal.sample((n_draws,))
        with torch.no_grad():
            log_w = joint_log_prob(network, trial, draws[..., None]) - proposal.log_prob(draws)
        yield draws[..., None], log_w


def laplace_log_likelihood(
    network: Network, visible: torch.Tensor, n_draws: int
) -> tuple[np.ndarray, np.ndarray]:
    """``log p(x)`` of each trial by importance sampling from the Laplace approximation, with its standard
    error (delta method: the spread of the weights over their mean, over the square root of the draws)."""
    estimates, errors = [], []
    for _, log_w in laplace_draws(network, visible, n_draws):
        estimate = torch.logsumexp(log_w, 0) - math.log(n_draws)
        estimates.append(float(estimate))
        errors.append(float(torch.exp(log_w - estimate).std() / math.sqrt(n_draws)))
    return np.array(estimates), np.array(errors)


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_without_hidden_neurons_the_filter_over_the_factors_agrees_with_laplace_sampling(link):
    """3 visible neurons, one factor of 10 bins, 2 trials of 80 bins: both proposals (16,000 particles in
    8 runs) agree with importance sampling from the Laplace approximation (20,000 draws) within 4 of their
    combined standard errors plus 0.02 nat. The 0.02 covers the bias of the logarithms, about half the
    squared relative error of each estimate (below 0.02 for the errors of at most 0.2 asserted here); the
    Laplace weights are near constant (their errors are below 0.01). Observed: |differences| up to 0.15
    with filter errors of 0.02-0.15."""
    network = latent_network(link=link)
    visible = simulated_visible(network, 2, 80)
    reference, reference_se = laplace_log_likelihood(network, visible, 20_000)
    assert np.all(reference_se < 0.01)
    posterior = latent_posterior(network)
    for proposal in ("model", "posterior"):
        estimate = smc.log_likelihood(
            network, visible, posterior, proposal=proposal, n_particles=16_000, n_runs=8, seed=3
        )
        se = np.sqrt(estimate.se_per_trial**2 + reference_se**2)
        assert np.all(estimate.se_per_trial > 0) and np.all(estimate.se_per_trial < 0.2), proposal
        np.testing.assert_array_less(np.abs(estimate.per_trial - reference), 4 * se + 0.02)
    with torch.no_grad():
        network.loading.zero_()  # the factor matters: without it the likelihood is several nats off
    assert np.all(np.abs(smc.log_likelihood(network, visible).per_trial - reference) > 3)


def test_with_a_hidden_neuron_the_proposals_agree_and_bound_importance_sampling():
    """One hidden neuron and one factor, 15 bins: the two proposals (16,000 particles in 16 runs) agree
    within 4 of their combined standard errors plus 0.02 nat (the logarithms' bias, as above).

    Importance sampling of whole paths from the posterior (:func:`marginal_log_likelihood`, 8 runs of
    20,000 draws) estimates ``log p(x)`` from below: each run's ``log mean w`` is at most ``log p(x)`` in
    expectation (Jensen), so their mean may not lie above a filter's estimate by more than their combined
    standard errors allow; that is the sound assertion. Its weights are heavy-tailed (a run on 20 bins came
    out 0.44 above the truth, another on 30 bins 3.5 below), hence the short trial and the spread of
    several runs. It is also required to come within 0.15 nat below, a guard against a filter that counts
    a term twice or misses one, which would be off by nats: an observed size, not a bound (observed: the
    runs' mean -48.34 +- 0.05, the filters -48.33 to -48.45 over three seeds, -48.41 +- 0.01 with 64,000
    particles)."""
    network = latent_network(n_hidden=1, link="softplus")
    visible = simulated_visible(network, 1, 15)
    posterior = latent_posterior(network, "forward-backward")
    estimates = [
        smc.log_likelihood(network, visible, posterior, proposal=p, n_particles=16_000, n_runs=16, seed=3)
        for p in ("model", "posterior")
    ]
    values = [float(e.per_trial[0]) for e in estimates]
    errors = [float(e.se_per_trial[0]) for e in estimates]
    assert all(0 < error < 0.1 for error in errors)
    assert abs(values[0] - values[1]) < 4 * math.hypot(*errors) + 0.02
    sampled = []
    for seed in range(8):
        torch.manual_seed(seed)
        sampled.append(marginal_log_likelihood(network, posterior, visible, 20_000) * visible[0].numel())
    mean, error = np.mean(sampled), np.std(sampled, ddof=1) / math.sqrt(len(sampled))
    for value, value_error in zip(values, errors, strict=True):
        assert mean <= value + 4 * math.hypot(error, value_error) + 0.02
        assert mean > value - 0.15


@pytest.mark.parametrize("n_hidden", [0, 1])
def test_blocks_do_not_change_the_estimate_with_factors(n_hidden):
    """The factors' laws are made block by block (the stationary start in the first): cutting the trials
    into blocks of 7 bins changes nothing, with either proposal."""
    network = latent_network(n_hidden=n_hidden, link="softplus")
    visible = simulated_visible(network, 2, 30)
    posterior = latent_posterior(network, "forward-backward")
    for proposal in ("model", "posterior"):
        options = {"proposal": proposal, "n_particles": 64, "n_runs": 2, "seed": 5}
        whole = smc.log_likelihood(network, visible, posterior, **options)
        cut = smc.log_likelihood(network, visible.to(torch.uint8), posterior, block=7, **options)
        np.testing.assert_allclose(cut.per_trial, whole.per_trial, rtol=1e-12)


def test_the_smoothing_lag_grows_with_the_slowest_factor():
    plain = Network(3, 1, sg.basis.get("exponential", window=3))
    assert smc.smoothing_lag(plain, 10) == 6  # 2 L, whatever the bins
    slow = Network(3, 1, sg.basis.get("exponential", window=3), n_latent=2, latent_tau=[4.5, 20.0])
    assert smc.smoothing_lag(slow, 1000) == 26 and smc.smoothing_lag(slow, 12) == 12


def test_the_training_bound_with_factors_is_a_tight_bound_with_a_gradient():
    """filtering_bound with a factor and no hidden neuron: below the Laplace reference in expectation with
    few particles, close to it with many, and differentiable in the loading, the prior's time constant
    and the encoder (through the reparameterised draws of the factor)."""
    network = latent_network()
    visible = simulated_visible(network, 2, 40)
    reference = laplace_log_likelihood(network, visible, 20_000)[0].sum()
    posterior = latent_posterior(network)
    batch = Batch(visible)
    torch.manual_seed(0)
    with torch.no_grad():
        few = [float(smc.filtering_bound(network, posterior, batch, 4, _draw).sum()) for _ in range(30)]
        many = [float(smc.filtering_bound(network, posterior, batch, 4000, _draw).sum()) for _ in range(4)]
    # Observed: mean gap 14 with 4 particles, 0.05 with 4000 (whose runs spread by 0.11).
    assert reference - np.mean(few) > 0.5 and abs(reference - np.mean(many)) < 0.2
    bound = smc.filtering_bound(network, posterior, batch, 16, _draw).sum()
    bound.backward()
    encoder = posterior.latent_encoder
    assert network.loading is not None and network.latent_prior is not None and encoder is not None
    assert_reached(network.loading, network.latent_prior.log_tau, encoder.mean_weight, encoder.precision_bias)


def _draw(rate: torch.Tensor) -> torch.Tensor:
    return sg.relax.EatCubic(rate, 0.5, straight_through=True).rsample()


def test_the_smoothed_score_with_factors_is_the_gradient_of_the_likelihood():
    """smoothed_score with a factor and no hidden neuron: its gradient in the network (loading, biases, the
    prior's time constant) is Fisher's, ``E[grad log p(x, f) | x]``, and in the encoder the wake step's,
    ``E[grad log q(f | x) | x]`` (whole paths: the product of the forward transitions must be ``q``), both
    estimated by self-normalised importance sampling from the Laplace approximation (40,000 draws); its
    log_z estimates log p(x)."""
    network = latent_network()
    visible = simulated_visible(network, 2, 80)
    posterior = latent_posterior(network)
    encoder, prior = posterior.latent_parts(network)
    network_parameters = [network.loading, network.bias, prior.log_tau]
    encoder_parameters = [encoder.mean_bias, encoder.precision_bias]
    wanted = [torch.zeros_like(p) for p in network_parameters + encoder_parameters]
    log_p = 0.0
    for trial, (draws, log_w) in enumerate(laplace_draws(network, visible, 40_000)):
        weights = torch.softmax(log_w, 0)
        log_p += float(torch.logsumexp(log_w, 0) - math.log(len(log_w)))
        fisher = (weights * joint_log_prob(network, visible[trial], draws)).sum()
        wake = (weights * posterior.latent_posterior(network, visible[trial]).log_prob(draws)).sum()
        gradients = torch.autograd.grad(fisher, network_parameters) + torch.autograd.grad(
            wake, encoder_parameters
        )
        wanted = [w + g for w, g in zip(wanted, gradients, strict=True)]
    torch.manual_seed(0)
    runs = [smc.smoothed_score(network, posterior, Batch(visible), 2000) for _ in range(8)]
    parameters = network_parameters + encoder_parameters
    estimated = torch.autograd.grad(sum(surrogate.sum() for surrogate, _ in runs) / 8, parameters)
    # Relative errors allowed: observed over seeds 0-4 with 8 x 2000 particles, at most 0.025 (loading),
    # 0.046 (biases), 0.05 (the encoder's mean), 0.14 (its precision) and 0.35 (the time constant, whose
    # gradient is small and noisy); a missing or sign-flipped term makes an error of 1 or more.
    tolerances = {"loading": 0.1, "bias": 0.1, "log_tau": 0.6, "mean_bias": 0.15, "precision_bias": 0.4}
    for (name, tolerance), got, want in zip(tolerances.items(), estimated, wanted, strict=True):
        error = float((got - want).norm() / want.norm())
        assert error < tolerance, (name, error)
    log_z = torch.stack([z for _, z in runs]).sum(1)
    # Each run's estimate is a lower bound in expectation, close with 2000 particles: within 4 standard
    # errors of the runs' mean plus 0.05 nat for the logarithm's bias (observed: 0.01-0.22, errors 0.04-0.1).
    assert abs(float(log_z.mean()) - log_p) < 4 * float(log_z.std()) / math.sqrt(len(runs)) + 0.05
    assert not log_z.requires_grad
