"""The network's continuous latent factors: a loading on every neuron and an AR(1) prior.

Without factors the network is the one it was (same state, same results: a fixed-seed comparison before
and after the change found them bit for bit equal); with them each path adds ``latent @ loading.T`` to
every neuron's predictor, visible and hidden. The posterior's encoder gives the factors' Gaussian
posterior; the ELBO with its exact KL lies below a brute-force likelihood, and fits a loading.
"""

import math

import pytest
import torch

from spikeglm import basis as basis_module
from spikeglm import smc
from spikeglm.inference.objectives import OBJECTIVES, HiddenSampler
from spikeglm.latent import AR1Prior, MarkovGaussian
from spikeglm.model import DEFAULT_LATENT_TAU, Network
from spikeglm.relax import poisson_log_pmf
from spikeglm.segments import Batch
from spikeglm.variational import Posterior, log_weights


def latent_network(n_visible=3, n_hidden=2, n_latent=2, link="exp", seed=0):
    torch.manual_seed(seed)
    basis = basis_module.RaisedCosine(window=5, n_basis=2)
    net = Network(n_visible, n_hidden, basis, link, n_latent=n_latent).double()
    with torch.no_grad():
        net.weight.normal_(0, 0.2)
        net.bias.uniform_(-1.5, -0.5)
        if net.loading is not None:
            net.loading.normal_(0, 0.7)
    return net


def test_without_factors_the_state_is_unchanged():
    net = Network(3, 1, basis_module.get("exponential"))
    assert net.n_latent == 0 and net.loading is None and net.latent_prior is None
    assert list(net.state_dict()) == ["weight", "bias", "basis_matrix"]
    assert [name for name, _ in net.named_parameters()] == ["weight", "bias"]
    with pytest.raises(ValueError, match="latent must be a tensor of shape"):
        net.rates(torch.zeros(2, 4, 4), latent=torch.zeros(2, 4, 1))


def test_factors_add_a_loading_and_a_prior():
    net = Network(3, 2, basis_module.get("exponential"), n_latent=2)
    assert net.loading is not None and net.loading.shape == (5, 2) and not net.loading.any()
    assert isinstance(net.latent_prior, AR1Prior) and net.latent_prior.n_factors == 2
    assert torch.allclose(net.latent_prior.tau, torch.full((2,), DEFAULT_LATENT_TAU))
    assert set(net.state_dict()) == {"weight", "bias", "basis_matrix", "loading", "latent_prior.log_tau"}
    slow = Network(3, 0, basis_module.get("exponential"), n_latent=2, latent_tau=[5.0, 50.0])
    assert slow.latent_prior is not None
    assert torch.allclose(slow.latent_prior.tau, torch.tensor([5.0, 50.0]))
    with pytest.raises(ValueError, match="n_latent"):
        Network(3, 0, basis_module.get("exponential"), n_latent=-1)
    with pytest.raises(ValueError, match="tau_bins"):
        Network(3, 0, basis_module.get("exponential"), n_latent=1, latent_tau=0.0)


def test_latent_drive_enters_every_predictor():
    """Under the exponential link the factors multiply each rate by ``exp(latent @ loading.T)``."""
    net = latent_network()
    counts = torch.poisson(torch.full((4, 12, 5), 0.4, dtype=torch.float64))
    latent = torch.randn(4, 12, 2, dtype=torch.float64)
    assert net.loading is not None
    expected = net.rates(counts) * torch.exp(latent @ net.loading.T)
    torch.testing.assert_close(net.rates(counts, latent=latent), expected)
    # A path of zeros is no drive at all.
    torch.testing.assert_close(net.rates(counts, latent=torch.zeros_like(latent)), net.rates(counts))
    with pytest.raises(ValueError, match=r"\(\.\.\., bins, 2\)"):
        net.rates(counts, latent=latent[..., :1])


@pytest.mark.parametrize("per_sample", [True, False])
def test_latent_with_hidden_samples_matches_complete_counts(per_sample):
    """With hidden samples the visible drive is shared; the latent path broadcasts like the samples."""
    net = latent_network(link="softplus")
    visible = torch.poisson(torch.full((3, 10, 3), 0.5, dtype=torch.float64))
    hidden = torch.poisson(torch.full((4, 3, 10, 2), 0.5, dtype=torch.float64))
    latent = torch.randn(4, 3, 10, 2, dtype=torch.float64) if per_sample else torch.randn(3, 10, 2).double()
    rates = net.rates(visible, hidden, latent)
    log_lik = net.log_likelihood(visible, hidden, latent)
    assert rates.shape == log_lik.shape == (4, 3, 10, 5)
    for s in range(4):
        path = latent[s] if per_sample else latent
        complete = torch.cat([visible, hidden[s]], dim=-1)
        torch.testing.assert_close(rates[s], net.rates(complete, latent=path))
        torch.testing.assert_close(log_lik[s], net.log_likelihood(complete, latent=path))


def test_latent_without_hidden_neurons_and_samples_of_paths():
    net = latent_network(n_hidden=0)
    visible = torch.poisson(torch.full((3, 10, 3), 0.5, dtype=torch.float64))
    latent = torch.randn(6, 3, 10, 2, dtype=torch.float64)
    hidden = torch.zeros(6, 3, 10, 0, dtype=torch.float64)
    log_lik = net.log_likelihood(visible, hidden, latent)
    assert log_lik.shape == (6, 3, 10, 3)
    torch.testing.assert_close(log_lik[2], net.log_likelihood(visible, latent=latent[2]))
    # Samples of paths alone broadcast against the shared counts.
    assert net.log_likelihood(visible, latent=latent).shape == (6, 3, 10, 3)


def test_gradients_reach_the_loading_and_the_path():
    net = latent_network()
    counts = torch.poisson(torch.full((2, 8, 5), 0.6, dtype=torch.float64))
    latent = torch.randn(2, 8, 2, dtype=torch.float64, requires_grad=True)
    net.log_likelihood(counts, latent=latent).sum().backward()
    assert net.loading is not None and net.loading.grad is not None
    assert latent.grad is not None
    assert torch.isfinite(net.loading.grad).all() and net.loading.grad.abs().sum() > 0
    assert latent.grad.abs().sum() > 0


def test_fit_start_draws_the_loading_and_leaves_networks_without_factors_alone():
    visible = torch.poisson(torch.full((2, 30, 3), 0.5))
    plain, with_factors = (Network(3, 1, basis_module.get("exponential"), n_latent=k) for k in (0, 1))
    plain.init_from_counts(visible, 0.1, torch.Generator().manual_seed(0))
    with_factors.init_from_counts(visible, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(plain.weight, with_factors.weight)
    assert with_factors.loading is not None and with_factors.loading.abs().sum() > 0


# The latent factors' posterior and the objectives.


def encoder_pair(n_visible=2, n_hidden=1, n_latent=1, loading=1.5, seed=0):
    """A known network of one strong factor and a posterior with a drawn encoder, in float64."""
    torch.manual_seed(seed)
    net = Network(n_visible, n_hidden, basis_module.Exponential(window=2, decay=0.5), n_latent=n_latent)
    posterior = Posterior("forward-backward", n_visible, n_hidden, net.basis_matrix, "softplus", n_latent)
    net, posterior = net.double(), posterior.double()
    with torch.no_grad():
        net.weight.normal_(0, 0.3)
        net.bias.fill_(-0.5)
        assert net.loading is not None
        net.loading.fill_(loading)
    posterior.init_rates(0.5, 0.3, torch.Generator().manual_seed(seed))
    return net, posterior


def brute_force_log_likelihood(net, posterior, visible, n_samples, seed=0):
    """``log p(x)`` per trial by importance sampling with the prior over the factors and integer Poisson
    draws of ``q`` over the hidden counts, written apart from :func:`log_weights`."""
    generator = torch.Generator().manual_seed(seed)
    n_trials, n_bins, _ = visible.shape
    latent = net.latent_prior.sample((n_samples, n_trials), n_bins, generator=generator).double()
    with torch.no_grad():
        rate = posterior.rates(visible).expand(n_samples, *visible.shape[:-1], net.n_hidden)
        hidden = torch.poisson(rate, generator=generator)
        log_p = net.log_likelihood(visible, hidden, latent).sum((-2, -1))
        log_w = log_p - poisson_log_pmf(hidden, rate).sum((-2, -1))
    return torch.logsumexp(log_w, 0) - math.log(n_samples)


def test_encoder_posterior_and_its_checks():
    net, posterior = encoder_pair(n_visible=3, n_latent=2)
    assert posterior.n_latent == 2 and posterior.latent_encoder is not None
    visible = torch.poisson(torch.full((4, 9, 3), 0.7, dtype=torch.float64))
    q = posterior.latent_posterior(net, visible)
    assert isinstance(q, MarkovGaussian) and q.batch_shape == (4,) and q.event_shape == (9, 2)
    mean, precision = posterior.latent_encoder(visible)
    assert mean.shape == precision.shape == (4, 9, 2) and (precision > 0).all()
    plain = Posterior("forward", 3, 1, net.basis_matrix, "softplus")
    assert plain.n_latent == 0 and list(plain.state_dict()) == [
        "bias",
        "past",
        "future",
        "self_past",
        "basis_matrix",
    ]
    with pytest.raises(ValueError, match="latent factors"):
        plain.latent_posterior(net, visible)
    with pytest.raises(ValueError, match="latent factors"):
        log_weights(net, plain.double(), visible, 2)
    # The particle filter proposes the factors from the posterior's: one without them is refused.
    with pytest.raises(ValueError, match="latent factors"):
        smc.log_likelihood(net, visible, plain.double(), proposal="posterior", n_particles=4)
    with pytest.raises(ValueError, match="latent factors"):
        OBJECTIVES["fivo"](n_samples=2, sampler=HiddenSampler()).loss(net, plain.double(), Batch(visible))


@pytest.mark.parametrize(("n_hidden", "tolerance"), [(0, 0.1), (1, 1.0)])
def test_elbo_is_below_the_likelihood_and_the_weights_estimate_it(n_hidden, tolerance):
    """On 6 bins of 2 visible neurons (and 1 hidden) and 1 strong factor: the ELBO (exact KL, 4000 draws,
    standard error 0.12) lies below ``log p(x)`` estimated by 200000 draws of the prior over the factors,
    and the importance weights of the encoder's paths (``log p(f) - log q(f)``, 20000 draws) estimate it
    within ``tolerance`` (0.1 nat without a hidden neuron, where two seeds of the reference agree within
    0.02; 1 nat with one, where the hidden counts' random posterior makes both estimates vary by 0.3)."""
    net, posterior = encoder_pair(n_hidden=n_hidden)
    encoder = posterior.latent_encoder
    assert encoder is not None
    with torch.no_grad():  # a readout near the truth (a random one is too far for 20000 draws to correct)
        encoder.mean_weight.fill_(0.3)
        encoder.mean_bias.fill_(-0.6)
        encoder.precision_weight.zero_()
        encoder.precision_bias.fill_(math.log(math.expm1(0.5)))
    visible = torch.tensor([[[0, 1], [2, 3], [4, 2], [3, 5], [0, 0], [1, 0]]], dtype=torch.float64)
    reference = brute_force_log_likelihood(net, posterior, visible, 200_000)
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = log_weights(net, posterior, visible, 4000, exact_latent_kl=True)[0].mean(0)
        log_w = log_weights(net, posterior, visible, 20_000)[0]
    estimate = torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
    assert float(elbo) < float(reference) - 1.0
    assert abs(float(estimate - reference)) < tolerance


def test_elbo_gradient_is_finite_and_reaches_the_factors():
    net, posterior = encoder_pair()
    visible = torch.poisson(torch.full((3, 12, 2), 1.0, dtype=torch.float64))
    objective = OBJECTIVES["elbo"](n_samples=4, sampler=HiddenSampler())
    loss, estimate = objective.loss(net, posterior, Batch(visible))
    loss.backward()
    assert torch.isfinite(loss) and estimate.dtype == torch.float64
    encoder = posterior.latent_encoder
    assert net.loading is not None and net.latent_prior is not None and encoder is not None
    for parameter in (net.loading, net.latent_prior.log_tau, encoder.mean_weight, encoder.precision_weight):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0
    iwae_loss, _ = OBJECTIVES["iwae"](n_samples=4, sampler=HiddenSampler()).loss(
        net, posterior, Batch(visible)
    )
    assert torch.isfinite(iwae_loss)


@torch.no_grad()
def simulate_latent_counts(loading, bias, self_weight, n_trials, n_bins, tau, generator):
    """Counts of independent neurons with a self-coupling of lag 1 and a shared AR(1) drive, drawn bin by
    bin (``Network.simulate`` does not draw latent factors)."""
    factors = AR1Prior(tau).sample((n_trials,), n_bins, generator=generator)[..., 0]
    counts = torch.zeros(n_trials, n_bins, len(bias))
    previous = torch.zeros(n_trials, len(bias))
    for t in range(n_bins):
        predictor = bias + self_weight * previous + factors[:, t, None] * loading
        previous = torch.poisson(torch.nn.functional.softplus(predictor), generator=generator)
        counts[:, t] = previous
    return counts


def test_elbo_recovers_the_loading_of_a_strong_factor():
    """300 Adam steps of the ELBO on 16 trials of 150 bins of 8 neurons driven by one factor of loadings
    0.4-1.2 in size and of time constant 20 bins: the loading fitted correlates with the true one at
    |r| > 0.95 (the sign is free; seeds 0-3 give 0.996-0.999), and the time constant is within a factor
    1.5 of the truth (17.7-24.1)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    true_loading = torch.tensor([1.2, -0.8, 0.9, 0.4, -1.1, 0.6, 1.0, -0.5])
    visible = simulate_latent_counts(true_loading, torch.full((8,), 0.3), -0.3, 16, 150, 20.0, generator)
    net = Network(8, 0, basis_module.RawLags(window=1), n_latent=1)
    posterior = Posterior("forward", 8, 0, net.basis_matrix, "softplus", n_latent=1)
    net.init_from_counts(visible, 0.1, generator)
    posterior.init_rates(0.5, 0.1, generator)
    parameters = list(net.parameters()) + list(posterior.parameters())
    optimizer = torch.optim.Adam([p for p in parameters if p.requires_grad], lr=0.05)
    objective = OBJECTIVES["elbo"](n_samples=2, sampler=HiddenSampler())
    for _ in range(300):
        optimizer.zero_grad()
        loss, _ = objective.loss(net, posterior, Batch(visible))
        (loss / visible[0].numel()).backward()
        optimizer.step()
    assert net.loading is not None
    fitted = net.loading.detach()[:, 0]
    correlation = torch.corrcoef(torch.stack([fitted, true_loading]))[0, 1]
    assert abs(float(correlation)) > 0.95, (fitted, correlation)
    assert net.latent_prior is not None
    assert 20.0 / 1.5 < float(net.latent_prior.tau.detach()) < 20.0 * 1.5
