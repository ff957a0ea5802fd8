"""The POGLM generative model against brute-force loops and exact enumeration."""

import itertools
import math

import numpy as np
import pytest
import torch

from spikeglm import basis as basis_module
from spikeglm.model import LINKS, Network, inverse_link, mean_counts
from spikeglm.variational import Posterior, log_weights, marginal_log_likelihood


def random_network(n_visible=2, n_hidden=1, basis=None, link="softplus", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    basis = basis or basis_module.Exponential(window=3, decay=0.25)
    net = Network(n_visible, n_hidden, basis, link).to(dtype)
    with torch.no_grad():
        net.weight.normal_(0, 0.8)
        net.bias.uniform_(-1.0, 0.0)
    return net


def brute_force_log_likelihood(net: Network, y: np.ndarray) -> np.ndarray:
    """Per-bin log-likelihood by explicit loops over trials, bins, neurons, lags and basis functions."""
    W = net.weight.detach().numpy()
    b = net.bias.detach().numpy()
    B = net.basis_matrix.double().numpy()
    link = LINKS[net.link_name]
    n_trials, n_bins, n = y.shape
    out = np.zeros_like(y, dtype=float)
    for r in range(n_trials):
        for t in range(n_bins):
            for i in range(n):
                x = b[i]
                for j in range(n):
                    for k in range(B.shape[0]):
                        for lag in range(1, B.shape[1] + 1):
                            if t - lag >= 0:
                                x += W[i, j, k] * B[k, lag - 1] * y[r, t - lag, j]
                rate = float(link(torch.tensor(x, dtype=torch.float64)))
                out[r, t, i] = y[r, t, i] * math.log(rate) - rate - math.lgamma(y[r, t, i] + 1)
    return out


@pytest.mark.parametrize("link", ["softplus", "exp", "sigmoid"])
@pytest.mark.parametrize(
    "basis",
    [
        basis_module.Exponential(window=3, decay=0.25),
        basis_module.RawLags(window=4),
        basis_module.RaisedCosine(window=6, n_basis=3),
    ],
)
def test_log_likelihood_equals_brute_force(link, basis):
    net = random_network(basis=basis, link=link)
    y = np.random.default_rng(1).poisson(0.7, size=(2, 9, 3)).astype(float)
    fast = net.log_likelihood(torch.from_numpy(y)).detach().numpy()
    np.testing.assert_allclose(fast, brute_force_log_likelihood(net, y), rtol=1e-10, atol=1e-12)


def test_log_likelihood_accepts_sample_and_trial_dimensions():
    net = random_network()
    y = torch.poisson(torch.full((4, 2, 7, 3), 0.5, dtype=torch.float64))
    joint = net.log_likelihood(y)
    assert joint.shape == y.shape
    assert torch.allclose(joint[2, 1], net.log_likelihood(y[2, 1:2])[0])


def test_simulation_matches_the_model_rates():
    """Simulated counts have, bin by bin, the mean the model predicts from their own history."""
    net = random_network(n_visible=3, n_hidden=0, link="sigmoid", seed=3)
    y = net.simulate(400, 50, generator=torch.Generator().manual_seed(0))
    assert y.shape == (400, 50, 3) and torch.equal(y, y.round())
    rates = net.rates(y)
    residual = (y - rates).mean().item()
    se = math.sqrt(rates.mean().item() / y.numel())
    assert abs(residual) < 4.5 * se


def test_simulation_is_reproducible():
    net = random_network()
    a = net.simulate(3, 20, generator=torch.Generator().manual_seed(5))
    b = net.simulate(3, 20, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("link", ["softplus", "exp", "sigmoid"])
def test_inverse_link(link):
    rate = torch.tensor([0.01, 0.3, 0.9], dtype=torch.float64)
    assert torch.allclose(LINKS[link](inverse_link(link, rate)), rate)


def test_bad_arguments():
    basis = basis_module.Exponential()
    with pytest.raises(ValueError, match="unknown link 'relu'; choose one of softplus, exp, sigmoid"):
        Network(2, 1, basis, link="relu")
    with pytest.raises(ValueError, match="n_visible must be at least 1"):
        Network(0, 1, basis)
    with pytest.raises(ValueError, match="n_hidden must be 0 or more"):
        Network(2, -1, basis)


def exact_marginal_log_likelihood(net: Network, visible: torch.Tensor, max_count: int) -> float:
    """log p(x) by summing p(x, z) over every hidden sequence with counts 0..max_count (one hidden)."""
    n_trials, n_bins, _ = visible.shape
    sequences = torch.tensor(
        list(itertools.product(range(max_count + 1), repeat=n_bins)), dtype=visible.dtype
    )
    total = 0.0
    for r in range(n_trials):
        x = visible[r].expand(len(sequences), n_bins, visible.shape[-1])
        y = torch.cat([x, sequences.unsqueeze(-1)], dim=-1)
        total += float(torch.logsumexp(net.log_likelihood(y).detach().sum((-2, -1)), 0))
    return total / visible.numel()


def test_importance_sampling_converges_to_the_exact_marginal():
    net = random_network(n_visible=2, n_hidden=1, link="sigmoid", seed=2)
    visible = net.simulate(2, 5, generator=torch.Generator().manual_seed(1))[..., :2]
    # Sigmoid rates are below 1, so hidden counts above 7 carry less than 1e-6 of the probability.
    exact = exact_marginal_log_likelihood(net, visible, max_count=7)
    posterior = Posterior("forward", 2, 1, net.basis_matrix, "sigmoid").to(torch.float64)
    with torch.no_grad():
        posterior.bias.fill_(0.0)  # q rate 0.5 everywhere: a poor but valid proposal
    torch.manual_seed(0)
    estimate = marginal_log_likelihood(net, posterior, visible, n_samples=20_000)
    assert estimate == pytest.approx(exact, abs=0.01)
    torch.manual_seed(0)
    elbo = float(log_weights(net, posterior, visible, 2_000)[0].detach().mean(0).sum()) / visible.numel()
    assert elbo < estimate  # Jensen: the ELBO is below the log-likelihood


@pytest.mark.parametrize("n_hidden", [0, 2])
def test_shared_visible_drive_equals_the_full_computation(n_hidden):
    """Visible counts shared by all samples give the same likelihood as the counts repeated per sample."""
    torch.manual_seed(0)
    net = Network(4, n_hidden, basis_module.RaisedCosine(window=6, n_basis=3), link="softplus").double()
    with torch.no_grad():
        net.weight.normal_(0.0, 0.4)
        net.bias.normal_(-1.0, 0.3)
    visible = torch.poisson(torch.full((3, 25, 4), 0.4, dtype=torch.float64))
    hidden = torch.rand(5, 3, 25, n_hidden, dtype=torch.float64) * 2  # relaxed: real-valued counts
    full = torch.cat([visible.expand(5, 3, 25, 4), hidden], dim=-1)
    torch.testing.assert_close(
        net.log_likelihood(visible, hidden), net.log_likelihood(full), rtol=1e-12, atol=1e-12
    )


def test_mean_counts_in_blocks_equals_the_float_mean():
    counts = torch.randint(0, 7, (3, 1001, 4), dtype=torch.uint8)
    expected = counts.double().mean(dim=(0, 1))
    torch.testing.assert_close(mean_counts(counts, block=97), expected, rtol=1e-14, atol=0)


def test_a_runaway_simulation_stops_with_a_clear_error():
    network = Network(2, 0, basis_module.get("exponential"), link="exp")
    with torch.no_grad():
        network.weight.fill_(3.0)  # every spike raises every rate e^0.9-fold: activity explodes
    with pytest.raises(ValueError, match=r"simulate: the activity runs away at bin \d+ \(neuron \d expects"):
        network.simulate(2, 400, generator=torch.Generator().manual_seed(0))


def latent_network(n_latent=2, seed=0):
    """A softplus network of 3 visible neurons and one hidden one, with random couplings and loadings."""
    torch.manual_seed(seed)
    net = Network(3, 1, basis_module.Exponential(window=3, decay=0.25), n_latent=n_latent).double()
    with torch.no_grad():
        net.weight.normal_(0, 0.5)
        net.bias.uniform_(-1.5, -0.5)
        net.loading.normal_(0, 0.8)
    return net


def test_a_simulated_path_drives_the_counts_as_the_model_rates_say():
    """Given a path of the factors, the counts have bin by bin the mean that ``rates`` predicts with it."""
    net = latent_network()
    path = torch.randn(400, 50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = net.simulate(400, 50, generator=torch.Generator().manual_seed(0), latent=path)
    with torch.no_grad():
        rates, without = net.rates(y, latent=path), net.rates(y)
    se = math.sqrt(rates.mean().item() / y.numel())
    assert abs((y - rates).mean().item()) < 4.5 * se
    # The path matters: the counts follow the factors' term, which the rates without it miss.
    term = (path @ net.loading.detach().T).flatten()
    assert np.corrcoef(term, (y - without).flatten())[0, 1] > 0.3


def test_without_a_path_the_simulation_is_the_one_without_factors():
    net = latent_network()
    plain = net.simulate(3, 40, generator=torch.Generator().manual_seed(5))
    zero = torch.zeros(3, 40, 2, dtype=torch.float64)
    assert torch.equal(net.simulate(3, 40, generator=torch.Generator().manual_seed(5), latent=zero), plain)
    without = Network(3, 1, net.basis, n_latent=0).double()
    without.load_state_dict(
        {k: v for k, v in net.state_dict().items() if k in ("weight", "bias", "basis_matrix")}
    )
    assert torch.equal(without.simulate(3, 40, generator=torch.Generator().manual_seed(5)), plain)


def test_a_path_that_does_not_fit_is_refused_naming_latent():
    net = latent_network()
    with pytest.raises(
        ValueError, match=r"latent must be a floating-point tensor of shape .* \(4, 50, 2\); got \(4, 49, 2\)"
    ):
        net.simulate(4, 50, latent=torch.zeros(4, 49, 2))
    with pytest.raises(ValueError, match=r"latent must be .*; got \(4, 50, 1\)"):
        net.simulate(4, 50, latent=torch.zeros(4, 50, 1))
    with pytest.raises(ValueError, match=r"latent must be .*; got ndarray"):
        net.simulate(4, 50, latent=np.zeros((4, 50, 2)))
    with pytest.raises(ValueError, match=r"latent: this network has no latent factors \(n_latent=0\)"):
        random_network().simulate(4, 50, latent=torch.zeros(4, 50, 1))
