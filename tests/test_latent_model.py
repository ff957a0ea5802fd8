"""The network's continuous latent factors: a loading on every neuron and an AR(1) prior.

Without factors the network is the one it was (same state, same results: a fixed-seed comparison before
and after the change found them bit for bit equal); with them each path adds ``latent @ loading.T`` to
every neuron's predictor, visible and hidden.
"""

import pytest
import torch

from spikeglm import basis as basis_module
from spikeglm.latent import AR1Prior
from spikeglm.model import DEFAULT_LATENT_TAU, Network


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
