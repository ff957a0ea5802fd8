"""The particle-filter likelihood: exact with no hidden neuron, against enumeration with one."""

import itertools
import math

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm import smc
from spikeglm.model import Network
from spikeglm.segments import Batch
from spikeglm.variational import Posterior


def tiny_network(n_visible: int = 2, seed: int = 0, drive: float = 2.5) -> Network:
    """A network whose one hidden neuron drives the visible ones strongly (so it matters)."""
    generator = torch.Generator().manual_seed(seed)
    network = Network(n_visible, 1, sg.basis.get("exponential", window=2), link="softplus")
    with torch.no_grad():
        network.weight.normal_(0.0, 0.5, generator=generator)
        network.weight[:n_visible, n_visible] = drive
        network.bias.copy_(torch.tensor([-1.5] * n_visible + [-1.0]))
    return network.double()


@torch.no_grad()
def enumerated_log_likelihood(network: Network, visible: torch.Tensor, max_count: int) -> np.ndarray:
    """log p(x) of each trial by summing p(x, z) over every hidden sequence with counts <= max_count."""
    n_bins = visible.shape[1]
    sequences = torch.tensor(
        list(itertools.product(range(max_count + 1), repeat=n_bins)), dtype=torch.float64
    )
    hidden = sequences[:, None, :, None].expand(-1, visible.shape[0], -1, 1)  # (S, trials, bins, 1)
    joint = network.log_likelihood(visible, hidden).sum(dim=(-2, -1))  # (S, trials)
    return torch.logsumexp(joint, dim=0).numpy()


def simulated_visible(network: Network, n_trials: int, n_bins: int, seed: int = 1) -> torch.Tensor:
    counts = network.simulate(n_trials, n_bins, generator=torch.Generator().manual_seed(seed))
    return counts[..., : network.n_visible]


def test_without_hidden_neurons_the_estimate_is_the_exact_likelihood():
    network = Network(3, 0, sg.basis.get("exponential"), link="exp").double()
    with torch.no_grad():
        network.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
        network.bias.fill_(-1.0)
    visible = simulated_visible(network, 4, 50)
    estimate = smc.log_likelihood(network, visible, block=7)  # blocks of 7 bins: context crosses them
    exact = network.log_likelihood(visible).sum(dim=(1, 2)).detach().numpy()
    np.testing.assert_allclose(estimate.per_trial, exact, rtol=1e-12)
    assert estimate.se == 0 and estimate.per_bin == pytest.approx(exact.sum() / (4 * 50 * 3))


@pytest.mark.parametrize(
    ("proposal", "drive", "family"),
    [
        ("model", 1.5, "forward-backward"),
        ("posterior", 1.0, "forward-backward"),
        ("posterior", 1.0, "smoothing"),
    ],
)
def test_the_estimate_agrees_with_enumeration_over_the_hidden_counts(proposal, drive, family):
    network = tiny_network(drive=drive)
    visible = simulated_visible(network, 3, 5)
    exact = enumerated_log_likelihood(network, visible, max_count=9)  # P(count > 9) < 1e-9 per bin here
    posterior = _posterior(network, family)  # a rough posterior: the proposal need not be good, only valid
    estimate = smc.log_likelihood(
        network, visible, posterior, proposal=proposal, n_particles=8000, n_runs=8, seed=3
    )
    # the per-trial standard errors are what the estimator claims; 4 of them, plus the bias of the log
    # (of order se^2), must cover the exact value
    assert np.all(estimate.se_per_trial > 0) and np.all(estimate.se_per_trial < 0.02)
    np.testing.assert_array_less(np.abs(estimate.per_trial - exact), 4 * estimate.se_per_trial + 1e-3)


def test_a_bins_weight_reads_the_log_of_the_spiking_neurons_rates_alone():
    """The filter's weight of a bin's visible counts, the log taken only where a count is above 0, is the
    Poisson log-pmf summed over the neurons: counts of 0 to 3, a rate underflowed to 0 (where a count is
    above 0 it reads the smallest float), and its gradient reaches the rates. The float32 terms are summed
    in another order: 1e-6 relative."""
    generator = torch.Generator().manual_seed(0)
    x = torch.poisson(torch.full((3, 4, 5), 0.7), generator=generator)
    x[0, 1] = 0.0  # a bin without any spike
    rate = torch.rand(3, 6, 5, generator=generator).requires_grad_()
    zeroed = rate * torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])  # neuron 2 silenced to a rate of exactly 0
    observed = smc._Observed(x)
    for t in range(4):
        for rates in (rate, zeroed):
            expected = sg.relax.poisson_log_pmf(x[:, t, None], rates).sum(-1, dtype=torch.float64)
            torch.testing.assert_close(observed.log_pmf(t, rates), expected, rtol=1e-6, atol=1e-6)
    (gradient,) = torch.autograd.grad(observed.log_pmf(2, rate).sum(), rate)
    torch.testing.assert_close(gradient, (x[:, 2, None] / rate - 1).detach())


def test_the_standard_error_matches_the_spread_over_seeds():
    network = tiny_network(n_visible=3, drive=1.0)
    visible = simulated_visible(network, 1, 60)
    runs = [smc.log_likelihood(network, visible, n_particles=64, n_runs=8, seed=s) for s in range(30)]
    spread = np.std([r.per_trial[0] for r in runs], ddof=1)
    claimed = np.median([r.se_per_trial[0] for r in runs])
    assert 0.5 < claimed / spread < 2  # the delta-method error from 8 runs is rough, not wrong


def test_blocks_do_not_change_the_estimate():
    network = tiny_network()
    visible = simulated_visible(network, 2, 40)
    for proposal, posterior in (("model", None), ("posterior", _posterior(network))):
        whole = smc.log_likelihood(network, visible, posterior, proposal=proposal, n_particles=40, seed=5)
        cut = smc.log_likelihood(
            network, visible, posterior, proposal=proposal, n_particles=40, seed=5, block=3
        )
        np.testing.assert_allclose(cut.per_trial, whole.per_trial, rtol=1e-12)


def test_more_particles_tighten_the_estimate_towards_the_truth():
    network = tiny_network(drive=1.5)
    visible = simulated_visible(network, 2, 5)
    exact = enumerated_log_likelihood(network, visible, max_count=10).sum()
    gaps = [
        exact - smc.log_likelihood(network, visible, n_particles=n, n_runs=1, seed=s).per_trial.sum()
        for n in (2, 2000)
        for s in range(20)
    ]
    few, many = np.mean(gaps[:20]), np.mean(gaps[20:])
    assert few > 0.05 and abs(many) < 0.02  # a lower bound in expectation, tight with many particles


def test_bad_settings_are_named():
    network = tiny_network()
    visible = simulated_visible(network, 1, 5)
    with pytest.raises(ValueError, match="proposal='posterior' needs the fitted posterior"):
        smc.log_likelihood(network, visible, proposal="posterior")
    with pytest.raises(ValueError, match="proposal"):
        smc.log_likelihood(network, visible, proposal="magic")
    with pytest.raises(ValueError, match="n_particles"):
        smc.log_likelihood(network, visible, n_particles=0)
    assert math.isnan(smc.log_likelihood(network, visible, n_runs=1).se)


def _straight_through(rate: torch.Tensor) -> torch.Tensor:
    return sg.relax.EatCubic(rate, 0.5, straight_through=True).rsample()


def test_the_training_bound_is_a_tight_bound_with_a_gradient():
    """filtering_bound: below log p(x) in expectation with few particles, close to it with many, and
    differentiable in the network and in every part of a smoothing posterior."""
    network = tiny_network(drive=1.5)
    visible = simulated_visible(network, 2, 5)
    exact = enumerated_log_likelihood(network, visible, max_count=10).sum()
    posterior = _posterior(network, "smoothing", scale=0.1)
    batch = Batch(visible)
    torch.manual_seed(0)
    with torch.no_grad():
        few = [
            float(smc.filtering_bound(network, posterior, batch, 2, _straight_through).sum())
            for _ in range(30)
        ]
        many = [
            float(smc.filtering_bound(network, posterior, batch, 2000, _straight_through).sum())
            for _ in range(4)
        ]
    # Observed: mean gap 1.05 with 2 particles, -0.008 with 2000 (a run of 4000 spreads by about 0.03).
    assert exact - np.mean(few) > 0.3 and abs(exact - np.mean(many)) < 0.1
    bound = smc.filtering_bound(network, posterior, batch, 16, _straight_through).sum()
    bound.backward()
    for name, parameter in [("weight", network.weight), ("future", posterior.future)]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert posterior.self_past.grad.abs().sum() > 0  # through the drawn hidden past


def test_the_training_bound_counts_only_the_scored_bins():
    network = tiny_network()
    visible = simulated_visible(network, 2, 8)
    posterior = _posterior(network)
    present, scored = torch.ones(2, 8, dtype=torch.float64), torch.ones(2, 8, dtype=torch.float64)
    scored[:, :3] = 0  # a left context: it weighs the particles but is not counted
    torch.manual_seed(4)
    with torch.no_grad():
        whole = smc.filtering_bound(network, posterior, Batch(visible), 8, _straight_through)
        torch.manual_seed(4)
        same = smc.filtering_bound(
            network, posterior, Batch(visible, present, torch.ones_like(scored)), 8, _straight_through
        )
        torch.manual_seed(4)
        part = smc.filtering_bound(network, posterior, Batch(visible, present, scored), 8, _straight_through)
    torch.testing.assert_close(same, whole)
    # the first three bins' likelihood (negative) is left out
    assert torch.all(part > whole)


def _posterior(network: Network, family: str = "forward-backward", scale: float = 0.5) -> Posterior:
    posterior = Posterior(family, network.n_visible, 1, network.basis_matrix, "softplus").double()
    with torch.no_grad():
        posterior.init_rates(0.3, scale, torch.Generator().manual_seed(2))
        if posterior.autoregressive:
            posterior.self_past.normal_(0.0, scale, generator=torch.Generator().manual_seed(3))
    return posterior


def _smoothed_pass(network, posterior, visible, n_particles, lag):
    """A smoother's no-gradient pass over ``visible``, as smoothed_score makes it: the record and the
    credits."""
    smoother = smc._Smoother(lag, visible.shape[1])
    with torch.no_grad():
        particles = smc._Particles(network, posterior, len(visible), 1, n_particles, None)
        particles.smoother = smoother.start(particles.log_w)
        particles.advance(visible, slice(None))
        return smoother, smoother.finish(particles.log_w)


def test_the_smoother_credits_each_bin_once_and_scores_the_drawn_path_as_the_model_does():
    """The smoother's record: every bin's particles share the weight of exactly one set of normalised
    weights, whatever the resamplings between (credits sum to 1 per trial and bin); and with one particle
    (one path, nothing to choose) the terms of every bin add up to the complete-data log-probability of
    the drawn path by the network's own likelihood, plus its log q by the posterior's rates."""
    network = tiny_network(drive=1.5)
    visible = simulated_visible(network, 3, 30)
    posterior = _posterior(network, scale=0.3)
    torch.manual_seed(0)
    _, credit = _smoothed_pass(network, posterior, visible, 50, lag=4)
    assert float(credit.min()) >= 0.0
    torch.testing.assert_close(credit.sum(-1), torch.ones(3, 30, dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(credit.max()) > 0.1  # resampled: some particles carry many descendants' weight
    smoother, credit = _smoothed_pass(network, posterior, visible, 1, lag=4)
    terms = smc._complete_terms(network, posterior, visible, None, None, None, smoother)
    path = smoother.stacked("hidden")[:, :, 0]  # (trials, bins, H)
    joint = network.log_likelihood(visible, path).sum(dim=(1, 2))
    log_q = sg.relax.poisson_log_pmf(path, posterior.rates(visible)).sum(dim=(1, 2))
    torch.testing.assert_close(terms[:, :, 0].sum(1), joint + log_q, rtol=1e-12, atol=1e-9)
    assert bool((credit == 1).all())


def test_terms_drawn_by_credit_estimate_the_credit_weighted_sum_without_bias():
    """The terms at particles drawn by their credit, each weighted by the credit's sum over their number:
    over many draws their mean is the credit-weighted sum over every particle (within 4 Monte Carlo
    standard errors, per trial), and with as many draws as particles every particle's terms are kept."""
    network = tiny_network(drive=1.5)
    visible = simulated_visible(network, 3, 30)
    posterior = _posterior(network, scale=0.3)
    torch.manual_seed(0)
    smoother, credit = _smoothed_pass(network, posterior, visible, 16, lag=4)
    with torch.no_grad():
        terms = smc._complete_terms(network, posterior, visible, None, None, None, smoother)
        full = (credit * terms).sum((1, 2))
        estimates = []
        for _ in range(2000):
            index, weights = smc._drawn_by_credit(credit, 4)
            drawn = smc._complete_terms(network, posterior, visible, None, None, None, smoother, index)
            torch.testing.assert_close(drawn, torch.gather(terms, 2, index))  # the named particles' terms
            estimates.append((weights * drawn).sum((1, 2)))
    estimates = torch.stack(estimates)
    se = estimates.std(0) / math.sqrt(len(estimates))
    assert bool((se > 0).all()) and bool(((estimates.mean(0) - full).abs() < 4 * se).all())
    torch.manual_seed(1)
    surrogate = smc.smoothed_score(network, posterior, Batch(visible), 16, n_terms=16)[0]
    torch.manual_seed(1)
    every = smc.smoothed_score(network, posterior, Batch(visible), 16)[0]
    assert surrogate.shape == (3,) and surrogate.requires_grad
    torch.testing.assert_close(surrogate, every, rtol=0, atol=0)


def test_the_smoothed_score_is_the_gradient_of_the_likelihood():
    """smoothed_score: with many particles its gradient in the network is that of the exact log p(x)
    (enumerated), and its gradient in the posterior is the posterior mean of grad log q(z) (the wake step
    of reweighted wake-sleep); its log_z estimates log p(x)."""
    network = tiny_network(drive=1.5)
    visible = simulated_visible(network, 2, 5)
    posterior = _posterior(network, scale=0.1)
    n_bins, max_count = visible.shape[1], 10
    sequences = torch.tensor(
        list(itertools.product(range(max_count + 1), repeat=n_bins)), dtype=torch.float64
    )
    hidden = sequences[:, None, :, None].expand(-1, visible.shape[0], -1, 1)
    joint = network.log_likelihood(visible, hidden).sum(dim=(-2, -1))  # (S, trials)
    exact = torch.logsumexp(joint, dim=0).sum()
    q_rate = sg.model.LINKS["softplus"](posterior._visible_predictor(visible))  # (trials, bins, 1)
    log_q = sg.relax.poisson_log_pmf(hidden, q_rate).sum(dim=(-2, -1))
    wake = (torch.softmax(joint.detach(), dim=0) * log_q).sum()
    parameters = [network.weight, network.bias, posterior.future]
    wanted = torch.autograd.grad(exact, parameters[:2]) + torch.autograd.grad(wake, parameters[2:])
    torch.manual_seed(0)
    runs = [smc.smoothed_score(network, posterior, Batch(visible), 4000) for _ in range(8)]
    estimated = torch.autograd.grad(sum(surrogate.sum() for surrogate, _ in runs) / 8, parameters)
    for name, got, want in zip(("weight", "bias", "future"), estimated, wanted, strict=True):
        # Observed: relative errors 0.005-0.03 with 8 x 4000 particles over seeds (Monte Carlo error); a
        # lag of L instead of 2 L leaves about 0.04 in the bias's gradient even with 16 x 16000.
        error = float((got - want).norm() / want.norm())
        assert error < 0.06, (name, error)
    log_z = torch.stack([z for _, z in runs]).sum(1)
    assert abs(float(log_z.mean()) - exact.item()) < 0.05
    assert not log_z.requires_grad
