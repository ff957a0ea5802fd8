"""The latent factors' AR(1) prior and Gaussian posterior (spikeglm.latent) against dense Gaussians.

Every exact check builds the same Gaussian as a dense ``T K x T K`` matrix (bins major, factors minor) in
float64 and compares with torch.linalg and torch.distributions; the Monte Carlo checks compare within
five standard errors estimated from the samples themselves. Seeds are fixed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from spikeglm.latent import AR1Prior, MarkovGaussian, PrecisionBlocks, Transitions, elimination_order

DOUBLE = torch.float64
EXACT = {"rtol": 1e-9, "atol": 1e-10}  # float64 results of different but exact algorithms


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prior_covariance(prior: AR1Prior, n_bins: int) -> torch.Tensor:
    """The stationary prior's covariance, ``Cov(x[i, k], x[j, l]) = [k = l] a_k^|i - j|``, dense."""
    a = prior.coefficient.detach().to(DOUBLE)
    lags = (torch.arange(n_bins)[:, None] - torch.arange(n_bins)[None, :]).abs().to(DOUBLE)
    per_factor = a[:, None, None] ** lags  # (K, T, T)
    dense = torch.einsum("kij,kl->ikjl", per_factor, torch.eye(len(a), dtype=DOUBLE))
    return dense.reshape(n_bins * len(a), n_bins * len(a))


def dense_blocks(diagonal: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """The dense matrix ``(..., T K, T K)`` of diagonal blocks ``(..., T, K, K)`` and lower blocks
    ``J[t + 1, t]`` ``(..., T - 1, K, K)``."""
    *batch, n_bins, size, _ = diagonal.shape
    dense = diagonal.new_zeros(*batch, n_bins, size, n_bins, size)
    for t in range(n_bins):
        dense[..., t, :, t, :] = diagonal[..., t, :, :]
        if t + 1 < n_bins:
            dense[..., t + 1, :, t, :] = lower[..., t, :, :]
            dense[..., t, :, t + 1, :] = lower[..., t, :, :].mT
    return dense.reshape(*batch, n_bins * size, n_bins * size)


def dense_prior(prior: AR1Prior, n_bins: int, start: torch.Tensor | None = None):
    """The prior's dense precision and linear term (zero without a start), from its blocks."""
    blocks = prior.precision_blocks(n_bins, start=start, dtype=DOUBLE)
    precision = dense_blocks(torch.diag_embed(blocks.diagonal), torch.diag_embed(blocks.lower))
    linear = torch.zeros(n_bins * prior.n_factors, dtype=DOUBLE)
    if start is not None:
        linear = blocks.linear.flatten(-2)
    return precision, linear


def dense_posterior(prior, mu, precision, start=None):
    """``(J, h)`` of the posterior, dense, differentiable: ``J = J_prior + blockdiag(P)``, ``h = P mu +
    prior linear term``. Full ``P`` is symmetrised as the posterior does."""
    n_bins = mu.shape[-2]
    if precision.dim() == mu.dim():
        precision = torch.diag_embed(precision)
    precision = (precision + precision.mT) / 2
    prior_precision, prior_linear = dense_prior(prior, n_bins, start)
    zero = torch.zeros_like(precision[..., :-1, :, :])
    joint = prior_precision + dense_blocks(precision, zero)
    linear = (precision @ mu[..., None])[..., 0].flatten(-2) + prior_linear
    return joint, linear


def potentials(batch: int, n_bins: int, size: int, full: bool, seed: int, dtype=DOUBLE):
    g = generator(seed)
    mu = torch.randn(batch, n_bins, size, generator=g, dtype=dtype)
    if full:
        a = torch.randn(batch, n_bins, size, size, generator=g, dtype=dtype)
        precision = a @ a.mT / size
    else:
        precision = torch.rand(batch, n_bins, size, generator=g, dtype=dtype) * 2
    return mu, precision


def make_prior(size: int, dtype=DOUBLE) -> AR1Prior:
    return AR1Prior([2.0, 7.0, 30.0][:size]).to(dtype)


# The prior


def test_the_prior_holds_its_time_constants():
    prior = AR1Prior([2.0, 40.0])
    assert prior.n_factors == 2 and prior.log_tau.requires_grad
    torch.testing.assert_close(prior.tau, torch.tensor([2.0, 40.0]))
    torch.testing.assert_close(prior.coefficient, torch.exp(-1 / torch.tensor([2.0, 40.0])))
    assert AR1Prior(5.0, n_factors=3).tau.tolist() == pytest.approx([5.0] * 3)
    assert AR1Prior(torch.tensor([3.0, 4.0])).n_factors == 2
    for bad in (0.0, -1.0, math.inf, [1.0, -2.0], []):
        with pytest.raises(ValueError, match="tau_bins"):
            AR1Prior(bad)
    with pytest.raises(ValueError, match="n_factors=3"):
        AR1Prior([1.0, 2.0], n_factors=3)


@pytest.mark.parametrize("n_bins", [1, 2, 6])
def test_prior_log_prob_is_the_dense_normal(n_bins):
    prior = make_prior(2)
    covariance = prior_covariance(prior, n_bins)
    x = torch.randn(5, n_bins, 2, generator=generator(0), dtype=DOUBLE)
    expected = MultivariateNormal(torch.zeros(n_bins * 2, dtype=DOUBLE), covariance).log_prob(x.flatten(-2))
    torch.testing.assert_close(prior.log_prob(x), expected, **EXACT)


def test_prior_precision_blocks_invert_the_covariance():
    prior = make_prior(3)
    blocks = prior.precision_blocks(6, dtype=DOUBLE)
    assert isinstance(blocks, PrecisionBlocks) and blocks.linear is None
    assert blocks.diagonal.shape == (6, 3) and blocks.lower.shape == (5, 3)
    dense, _ = dense_prior(prior, 6)
    torch.testing.assert_close(dense, torch.linalg.inv(prior_covariance(prior, 6)), **EXACT)


def test_prior_given_a_start_is_the_dense_conditional():
    """The law of bins 1..T given bin 0, from the stationary covariance of bins 0..T."""
    prior, n_bins = make_prior(2), 5
    joint = prior_covariance(prior, n_bins + 1)  # bin 0 first
    cross, first = joint[2:, :2], joint[:2, :2]
    start = torch.randn(3, 2, generator=generator(1), dtype=DOUBLE)
    mean = (cross @ torch.linalg.solve(first, start.T)).T
    covariance = joint[2:, 2:] - cross @ torch.linalg.solve(first, cross.T)
    x = torch.randn(3, n_bins, 2, generator=generator(2), dtype=DOUBLE)
    expected = MultivariateNormal(mean, covariance).log_prob(x.flatten(-2))
    torch.testing.assert_close(prior.log_prob(x, start=start), expected, **EXACT)
    precision, linear = dense_prior(prior, n_bins, start)
    torch.testing.assert_close(precision, torch.linalg.inv(covariance), **EXACT)
    torch.testing.assert_close(linear, (precision @ mean[..., None])[..., 0], **EXACT)


def test_a_path_cut_in_segments_keeps_its_density():
    prior = make_prior(3)
    x = prior.sample((4,), n_bins=12, generator=generator(3)).to(DOUBLE)
    whole = prior.log_prob(x)
    cut = (
        prior.log_prob(x[:, :5])
        + prior.log_prob(x[:, 5:9], start=x[:, 4])
        + prior.log_prob(x[:, 9:], start=x[:, 8])
    )
    torch.testing.assert_close(cut, whole, **EXACT)


def test_step_is_one_bin_of_the_process():
    prior = make_prior(2)
    previous, noise = torch.randn(2, 4, 2, generator=generator(4), dtype=DOUBLE)
    a = prior.coefficient.to(DOUBLE)
    torch.testing.assert_close(prior.step(previous, noise), a * previous + torch.sqrt(1 - a**2) * noise)
    assert prior.step(None, noise) is noise


def test_prior_samples_have_unit_variance_and_the_lag_correlation():
    prior, n = make_prior(2), 20_000
    x = prior.sample((n,), n_bins=4, generator=generator(5))
    assert x.shape == (n, 4, 2)
    torch.testing.assert_close(
        prior.sample((2,), 3, generator=generator(6)), prior.sample((2,), 3, generator=generator(6))
    )
    # Var(x_t) = 1 and Corr(x_t, x_{t+2}) = a^2, each within five standard errors (about 0.7% each).
    variance = x.square().mean(0)
    assert (variance - 1).abs().max() < 5 * math.sqrt(2 / n)
    correlation = (x[:, 2:] * x[:, :-2]).mean((0, 1))
    expected = prior.coefficient.detach() ** 2
    assert ((correlation - expected).abs() < 5 * torch.sqrt((1 + expected**2) / (2 * n))).all()
    start = torch.full((2,), 3.0)
    given = prior.sample((n,), 1, generator(7), start=start)[:, 0]
    a = prior.coefficient.detach()
    assert ((given.mean(0) - 3 * a).abs() < 5 * torch.sqrt((1 - a**2) / n)).all()


# The posterior against the dense Gaussian


def check_against_dense(q: MarkovGaussian, prior, mu, precision, start=None, seed=0):
    joint, linear = dense_posterior(prior, mu, precision, start)
    n_bins, size = mu.shape[-2:]
    covariance = torch.linalg.inv(joint)
    mean = torch.linalg.solve(joint, linear[..., None])[..., 0]
    torch.testing.assert_close(q.mean, mean.unflatten(-1, (n_bins, size)), **EXACT)
    torch.testing.assert_close(q.variance.flatten(-2), covariance.diagonal(dim1=-2, dim2=-1), **EXACT)
    blocks = covariance.unflatten(-1, (n_bins, size)).unflatten(-3, (n_bins, size))  # (..., T, K, T, K)
    t = torch.arange(n_bins)
    torch.testing.assert_close(q.marginal_covariance, blocks[..., t, :, t, :].movedim(0, -3), **EXACT)
    lag = blocks[..., t[1:], :, t[:-1], :].movedim(0, -3)
    torch.testing.assert_close(q.lag_covariance, lag, **EXACT)
    dense = MultivariateNormal(mean, precision_matrix=joint)
    torch.testing.assert_close(q.log_det_precision(), torch.logdet(joint), **EXACT)
    torch.testing.assert_close(q.entropy(), dense.entropy(), **EXACT)
    x = torch.randn(3, *mu.shape, generator=generator(seed), dtype=DOUBLE) + q.mean
    torch.testing.assert_close(q.log_prob(x), dense.log_prob(x.flatten(-2)), **EXACT)
    prior_precision, prior_linear = dense_prior(prior, n_bins, start)
    prior_dense = MultivariateNormal(
        torch.linalg.solve(prior_precision, prior_linear[..., None])[..., 0], precision_matrix=prior_precision
    )
    torch.testing.assert_close(q.kl_prior(), kl_divergence(dense, prior_dense), **EXACT)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 8, 13])
@pytest.mark.parametrize(
    ("size", "full"), [(1, False), (2, False), (3, False), (1, True), (2, True), (3, True)]
)
def test_posterior_is_the_dense_gaussian(n_bins, size, full):
    prior = make_prior(size)
    mu, precision = potentials(2, n_bins, size, full, seed=n_bins + 10 * size)
    q = MarkovGaussian(prior, mu, precision)
    assert q.diagonal == (not full or size == 1)
    assert q.batch_shape == (2,) and q.event_shape == (n_bins, size)
    check_against_dense(q, prior, mu, precision, seed=n_bins)


def test_larger_blocks_go_through_torch_linalg():
    """Blocks of more than four factors are factorised by torch.linalg rather than entry by entry."""
    prior = AR1Prior([2.0, 3.0, 5.0, 8.0, 13.0])
    mu, precision = potentials(2, 6, 5, True, seed=26)
    check_against_dense(MarkovGaussian(prior, mu, precision), prior, mu, precision)


@pytest.mark.parametrize(("size", "full"), [(1, False), (2, False), (3, True)])
def test_posterior_given_a_start_is_the_dense_gaussian(size, full):
    prior = make_prior(size)
    mu, precision = potentials(2, 7, size, full, seed=3)
    start = torch.randn(2, size, generator=generator(8), dtype=DOUBLE)
    q = MarkovGaussian(prior, mu, precision, start=start)
    check_against_dense(q, prior, mu, precision, start, seed=4)


def test_a_long_chain_with_odd_levels_is_the_dense_gaussian():
    """300 bins: the reduction pads levels of 75, 19 and 5 bins."""
    prior = AR1Prior([3.0, 80.0])
    mu, precision = potentials(1, 300, 2, True, seed=5)
    check_against_dense(MarkovGaussian(prior, mu, precision), prior, mu, precision)
    mu, precision = potentials(1, 300, 2, False, seed=6)
    check_against_dense(MarkovGaussian(prior, mu, precision), prior, mu, precision)


def test_without_potentials_the_posterior_is_the_prior_even_in_float32_for_slow_factors():
    """No information: unit variances, lag covariances ``a``, no KL; from a start, the conditional prior.
    Float32 and a time constant of 5000 bins, where ``1 + a^2 - 2a`` would be lost to rounding."""
    prior = AR1Prior([5000.0, 4.0])
    a = prior.coefficient.detach()
    zero = torch.zeros(3, 64, 2)
    for precision in (torch.zeros(3, 64, 2), torch.zeros(3, 64, 2, 2)):
        q = MarkovGaussian(prior, zero, precision)
        torch.testing.assert_close(q.variance, torch.ones_like(zero), rtol=0, atol=1e-5)
        lag = q.lag_covariance.diagonal(dim1=-2, dim2=-1)
        torch.testing.assert_close(lag, a.expand_as(lag), rtol=0, atol=1e-5)
        torch.testing.assert_close(q.kl_prior(), torch.zeros(3), rtol=0, atol=1e-3)
        start = torch.tensor([1.0, -2.0])
        q = MarkovGaussian(prior, zero, precision, start=start)
        t = torch.arange(1, 65, dtype=torch.float32)[:, None]
        torch.testing.assert_close(q.mean[0], a**t * start, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(q.variance[0], 1 - a ** (2 * t), rtol=1e-4, atol=1e-6)


def test_batches_broadcast_and_samples_keep_their_shape():
    prior = make_prior(2)
    mu = torch.randn(4, 3, 9, 2, generator=generator(9), dtype=DOUBLE)
    precision = torch.rand(1, 3, 9, 2, generator=generator(10), dtype=DOUBLE)  # shared by the 4
    q = MarkovGaussian(prior, mu, precision)
    assert q.batch_shape == (4, 3)
    assert q.rsample((5, 2)).shape == (5, 2, 4, 3, 9, 2)
    assert q.log_prob(q.rsample((5,))).shape == (5, 4, 3)
    assert q.entropy().shape == q.kl_prior().shape == (4, 3)
    assert q.marginal_covariance.shape == (4, 3, 9, 2, 2) and q.lag_covariance.shape == (4, 3, 8, 2, 2)
    torch.testing.assert_close(q.mean[1, 2], MarkovGaussian(prior, mu[1, 2], precision[0, 2]).mean, **EXACT)
    torch.testing.assert_close(q.sample((2,), generator(1)), q.sample((2,), generator(1)))
    assert not q.sample().requires_grad


# Sampling


@pytest.mark.parametrize(("size", "full"), [(1, False), (2, False), (3, True)])
def test_samples_are_the_cholesky_transform_in_elimination_order(size, full):
    """``x[order] = m[order] + L^-T eps[order]``, ``L`` the dense Cholesky factor of ``J[order, order]``."""
    n_bins = 11
    prior = make_prior(size)
    mu, precision = potentials(2, n_bins, size, full, seed=11)
    q = MarkovGaussian(prior, mu, precision)
    joint, _ = dense_posterior(prior, mu, precision)
    order = (elimination_order(n_bins)[:, None] * size + torch.arange(size)).flatten()
    factor = torch.linalg.cholesky(joint[..., order[:, None], order])
    noise = torch.randn(3, 2, n_bins, size, generator=generator(12), dtype=DOUBLE)
    steps = torch.linalg.solve_triangular(factor.mT, noise.flatten(-2)[..., order, None], upper=True)[..., 0]
    expected = torch.empty_like(steps)
    expected[..., order] = steps
    torch.testing.assert_close(q.from_noise(noise), q.mean + expected.unflatten(-1, (n_bins, size)), **EXACT)


@pytest.mark.parametrize(
    ("size", "full", "with_start"), [(1, False, False), (2, False, True), (3, True, True)]
)
def test_the_forward_chain_has_the_posterior_density(size, full, with_start):
    """By the Markov property, ``log N(x_1) + sum_t log N(x_{t+1} | x_t)`` of the transitions is the
    posterior's log-density of any path; each gain and covariance is the dense pair's conditional."""
    prior, n_bins = make_prior(size), 9
    mu, precision = potentials(2, n_bins, size, full, seed=27)
    start = torch.randn(2, size, generator=generator(28), dtype=DOUBLE) if with_start else None
    q = MarkovGaussian(prior, mu, precision, start=start)
    chain = q.transitions()
    assert isinstance(chain, Transitions) and chain.gain.shape == (2, n_bins - 1, size, size)
    x = q.sample((3,), generator(29))
    m = q.mean
    log_prob = MultivariateNormal(m[:, 0], chain.first).log_prob(x[:, :, 0])
    predicted = m[:, 1:] + (chain.gain @ (x[:, :, :-1] - m[:, :-1])[..., None])[..., 0]
    log_prob = log_prob + MultivariateNormal(predicted, chain.covariance).log_prob(x[:, :, 1:]).sum(-1)
    torch.testing.assert_close(log_prob, q.log_prob(x), **EXACT)
    joint, _ = dense_posterior(prior, mu, precision, start)
    blocks = torch.linalg.inv(joint).unflatten(-1, (n_bins, size)).unflatten(-3, (n_bins, size))
    t = 4
    gain = blocks[:, t + 1, :, t, :] @ torch.linalg.inv(blocks[:, t, :, t, :])
    torch.testing.assert_close(chain.gain[:, t], gain, **EXACT)
    conditional = blocks[:, t + 1, :, t + 1, :] - gain @ blocks[:, t, :, t + 1, :]
    torch.testing.assert_close(chain.covariance[:, t], conditional, **EXACT)


def test_elimination_order_takes_every_bin_once():
    for n_bins in (1, 2, 7, 64, 100):
        order = elimination_order(n_bins)
        assert sorted(order.tolist()) == list(range(n_bins))
    assert elimination_order(8).tolist() == [0, 2, 4, 6, 1, 5, 3, 7]


def test_sample_moments_match_the_dense_gaussian():
    """Mean and covariance of 40000 paths within five standard errors of each entry."""
    prior, n = make_prior(2), 40_000
    mu, precision = potentials(1, 5, 2, True, seed=13)
    q = MarkovGaussian(prior, mu, precision)
    x = q.sample((n,), generator(14))[:, 0].flatten(-2)  # (n, 10)
    joint, linear = dense_posterior(prior, mu[0], precision[0])
    covariance = torch.linalg.inv(joint)
    mean = covariance @ linear
    error = (x.mean(0) - mean).abs()
    assert (error < 5 * torch.sqrt(covariance.diagonal() / n)).all(), error
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    standard_error = products.std(0) / math.sqrt(n)
    error = (products.mean(0) - covariance).abs()
    assert (error < 5 * standard_error).all(), (error / standard_error).max()


# Gradients


def dense_functional(prior, mu, precision, start, weights):
    """A scalar of every exact result, computed densely."""
    joint, linear = dense_posterior(prior, mu, precision, start)
    n_bins = mu.shape[-2]
    covariance = torch.linalg.inv(joint)
    mean = (covariance @ linear[..., None])[..., 0]
    dense = MultivariateNormal(mean, precision_matrix=joint)
    prior_precision, prior_linear = dense_prior(prior, n_bins, start)
    prior_dense = MultivariateNormal(
        torch.linalg.solve(prior_precision, prior_linear[..., None])[..., 0], precision_matrix=prior_precision
    )
    x = weights["x"].flatten(-2)
    return (
        (weights["mean"].flatten(-2) * mean).sum()
        + (weights["variance"].flatten(-2) * covariance.diagonal(dim1=-2, dim2=-1)).sum()
        + dense.entropy().sum()
        + dense.log_prob(x).sum()
        + 0.5 * kl_divergence(dense, prior_dense).sum()
    )


def functional(q: MarkovGaussian, weights):
    return (
        (weights["mean"] * q.mean).sum()
        + (weights["variance"] * q.variance).sum()
        + q.entropy().sum()
        + q.log_prob(weights["x"]).sum()
        + 0.5 * q.kl_prior().sum()
    )


@pytest.mark.parametrize(("size", "full"), [(1, False), (2, False), (2, True), (3, True)])
def test_gradients_match_autograd_through_the_dense_gaussian(size, full):
    prior = make_prior(size)
    mu, precision = potentials(2, 6, size, full, seed=15)
    if full:
        precision = precision + 0.1 * torch.eye(size, dtype=DOUBLE)
    start = torch.randn(2, size, generator=generator(16), dtype=DOUBLE)
    g = generator(17)
    weights = {name: torch.randn(2, 6, size, generator=g, dtype=DOUBLE) for name in ("mean", "variance", "x")}
    for given in (None, start):
        inputs = [t.clone().requires_grad_() for t in (mu, precision)]
        given = None if given is None else given.clone().requires_grad_()
        wrt = [*inputs, prior.log_tau, *([] if given is None else [given])]
        ours = torch.autograd.grad(functional(MarkovGaussian(prior, *inputs, start=given), weights), wrt)
        dense = torch.autograd.grad(dense_functional(prior, *inputs, given, weights), wrt)
        for a, b in zip(ours, dense, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def dense_transform(prior, mu, precision, start, noise):
    """``m + L^-T eps`` in elimination order, densely (see the sampling test)."""
    n_bins, size = mu.shape[-2:]
    joint, linear = dense_posterior(prior, mu, precision, start)
    mean = torch.linalg.solve(joint, linear[..., None])[..., 0]
    order = (elimination_order(n_bins)[:, None] * size + torch.arange(size)).flatten()
    inverse = torch.argsort(order)
    factor = torch.linalg.cholesky(joint[..., order[:, None], order])
    steps = torch.linalg.solve_triangular(factor.mT, noise.flatten(-2)[..., order, None], upper=True)[..., 0]
    return (mean + steps[..., inverse]).unflatten(-1, (n_bins, size))


@pytest.mark.parametrize(("size", "full"), [(1, False), (3, False), (2, True)])
def test_pathwise_gradients_match_the_dense_transform(size, full):
    prior = make_prior(size)
    mu, precision = potentials(2, 9, size, full, seed=18)
    noise = torch.randn(4, 2, 9, size, generator=generator(19), dtype=DOUBLE)
    weights = torch.randn(4, 2, 9, size, generator=generator(20), dtype=DOUBLE)
    start = torch.randn(2, size, generator=generator(30), dtype=DOUBLE)
    inputs = [t.clone().requires_grad_() for t in (mu, precision, start)]
    wrt = [*inputs, prior.log_tau]
    x = MarkovGaussian(prior, *inputs[:2], start=inputs[2]).from_noise(noise)
    ours = torch.autograd.grad((weights * x).sum(), wrt)
    dense = torch.autograd.grad((weights * dense_transform(prior, *inputs, noise)).sum(), wrt)
    for a, b in zip(ours, dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_reparameterised_gradient_of_an_expectation_is_unbiased():
    """``d/d(mu, P, log tau) E[sum x^2]`` by sampling, against autograd of the exact ``sum m^2 + var``:
    within five standard errors, estimated from 20 batches of 2000 paths."""
    prior = make_prior(2)
    mu, precision = potentials(1, 6, 2, True, seed=21)
    precision = precision + 0.2 * torch.eye(2, dtype=DOUBLE)
    inputs = [t.clone().requires_grad_() for t in (mu, precision)]
    wrt = [*inputs, prior.log_tau]
    joint, linear = dense_posterior(prior, *inputs)
    covariance = torch.linalg.inv(joint)
    exact = (covariance @ linear[..., None]).square().sum() + covariance.diagonal(dim1=-2, dim2=-1).sum()
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(exact, wrt)])
    g = generator(22)
    estimates = []
    for _ in range(20):
        x = MarkovGaussian(prior, *inputs).rsample((2000,), generator=g)
        grads = torch.autograd.grad(x.square().sum((-3, -2, -1)).mean(), wrt)
        estimates.append(torch.cat([g.flatten() for g in grads]))
    estimates = torch.stack(estimates)
    error = (estimates.mean(0) - expected).abs()
    standard_error = estimates.std(0) / math.sqrt(len(estimates))
    assert (error < 5 * standard_error + 1e-12).all(), (error / standard_error).max()


# Dtypes and refusals


@pytest.mark.parametrize(("size", "full"), [(1, False), (3, False), (3, True)])
def test_float32_follows_float64(size, full):
    prior = AR1Prior([4.0, 300.0, 3000.0][:size])
    mu, precision = potentials(3, 200, size, full, seed=23)
    precision = precision * 1e-3  # weak potentials: the slow factors are mostly prior
    reference = MarkovGaussian(prior.double(), mu, precision)
    mu32, precision32 = (t.float().requires_grad_() for t in (mu, precision))
    q = MarkovGaussian(prior.float(), mu32, precision32)
    x = reference.sample((2,), generator(24))
    results = (q.mean, q.variance, q.lag_covariance, q.rsample(), q.log_prob(x.float()), q.entropy())
    assert all(result.dtype == torch.float32 for result in results)
    for ours, exact in ((q.mean, reference.mean), (q.variance, reference.variance)):
        torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.lag_covariance.double(), reference.lag_covariance, rtol=1e-5, atol=1e-6)
    # Sums of a few thousand terms: float32's resolution at their size.
    torch.testing.assert_close(q.log_prob(x.float()).double(), reference.log_prob(x), rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(q.kl_prior().double(), reference.kl_prior(), rtol=1e-5, atol=1e-3)
    (q.rsample().square().sum() + q.entropy().sum()).backward()
    assert torch.isfinite(mu32.grad).all() and torch.isfinite(precision32.grad).all()


def test_refusals():
    prior = make_prior(2)
    mu, precision = potentials(1, 4, 2, False, seed=25)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 2\)"):
        MarkovGaussian(prior, mu[..., :1], precision)
    with pytest.raises(ValueError, match="potential_precision must have shape"):
        MarkovGaussian(prior, mu, precision[..., :3, :])
    with pytest.raises(TypeError, match="dtype"):
        MarkovGaussian(prior, mu, precision.float())
    with pytest.raises(ValueError, match="non-negative"):
        MarkovGaussian(prior, mu, -precision)
    with pytest.raises(ValueError, match="not positive definite"):
        MarkovGaussian(prior, mu, -10 * torch.eye(2, dtype=DOUBLE).expand(1, 4, 2, 2))
    with pytest.raises(ValueError, match="start"):
        MarkovGaussian(prior, mu, precision, start=torch.zeros(1, 3, dtype=DOUBLE))
    with pytest.raises(ValueError, match="noise must end in"):
        MarkovGaussian(prior, mu, precision).from_noise(torch.zeros(1, 5, 2, dtype=DOUBLE))
    with pytest.raises(TypeError, match="AR1Prior"):
        MarkovGaussian(object(), mu, precision)
