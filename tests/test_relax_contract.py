"""The contract every relaxation in ``sg.relax.names()`` keeps, checked for each one alike.

What the module and base-class docstrings promise: ``rate`` is the expected count per bin; ``sample``
draws exact integer Poisson counts (as floating-point values, without gradient); ``rsample`` draws relaxed,
non-negative counts differentiable with respect to ``rate`` (``ExactPoisson``: ``has_rsample`` is False
and ``rsample`` raises); ``log_prob`` is the Poisson log-pmf, extended to real values through ``lgamma``;
``mean`` and ``variance`` are closed forms of the relaxed count (of the count for ``ExactPoisson``),
except where a class documents that there is none (``GumbelSoftmax``: they raise NotImplementedError).

Each law is built with its defaults (temperature 0.5, tail 1e-3). Monte-Carlo checks use fixed seeds,
float64 and a tolerance of 4.5 standard errors (estimated from the same draws), plus, for laws simulated
over a truncated support (those with a ``tail``), the mean that truncation may lose.
"""

import math

import numpy as np
import pytest
import scipy.stats
import torch

import spikeglm as sg
from spikeglm import relax

NAMES = sg.relax.names()
#: Below, around and above the rates of spike counts per bin; both sides of EatCubic's chain threshold.
RATES = [0.05, 0.5, 2.0, 10.0]
N_DRAWS = 20_000  # per rate
Z_TOL = 4.5


def law(name: str, rate) -> relax.PoissonRelaxation:
    return relax.get(name)(torch.as_tensor(rate, dtype=torch.float64))


def truncation_loss(d: relax.PoissonRelaxation) -> torch.Tensor:
    """Mean that a law simulated over a truncated support may lose: about ``rate * tail * (1 + 7 tau)``."""
    tail = getattr(d, "tail", 0.0)
    return d.rate * tail * (1 + 7 * getattr(d, "temperature", 0.0))


def assert_means_close(draws: torch.Tensor, expected: torch.Tensor, extra=0.0) -> None:
    """Column means of ``draws`` (n, rates) within Z_TOL standard errors (+ ``extra``) of ``expected``."""
    se = draws.std(dim=0) / math.sqrt(draws.shape[0])
    error = (draws.mean(dim=0) - expected).abs()
    assert (error <= Z_TOL * se + extra).all(), (draws.mean(dim=0), expected, se)


def assert_variances_close(draws: torch.Tensor, expected: torch.Tensor, extra=0.0) -> None:
    centred = draws - draws.mean(dim=0)
    variance = centred.pow(2).mean(dim=0)
    se = ((centred.pow(4).mean(dim=0) - variance**2).clamp(min=0) / draws.shape[0]).sqrt()
    assert ((variance - expected).abs() <= Z_TOL * se + extra).all(), (variance, expected, se)


def test_every_relaxation_is_a_poisson_relaxation():
    assert len(NAMES) >= 4
    for name in NAMES:
        cls = relax.get(name)
        assert issubclass(cls, relax.PoissonRelaxation) and cls.name == name


@pytest.mark.parametrize("name", NAMES)
def test_sample_and_rsample_shapes(name):
    rate = torch.tensor([[0.1, 1.0, 3.0], [0.5, 2.0, 8.0]])
    d = relax.get(name)(rate)
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    for sample_shape in [(), (4,), (4, 5)]:
        x = d.sample(sample_shape)
        assert x.shape == (*sample_shape, 2, 3) and x.dtype == rate.dtype and not x.requires_grad
        if d.has_rsample:
            z = d.rsample(sample_shape)
            assert z.shape == (*sample_shape, 2, 3) and z.dtype == rate.dtype
            assert (z >= 0).all()  # support: non-negative
    wider = d.expand((7, 2, 3))
    assert wider.batch_shape == (7, 2, 3) and wider.sample((4,)).shape == (4, 7, 2, 3)
    if d.has_rsample:
        assert wider.rsample((4,)).shape == (4, 7, 2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_rsample_is_differentiable_in_the_rate(name):
    rate = torch.tensor(RATES, dtype=torch.float64, requires_grad=True)
    d = relax.get(name)(rate)
    if name == "exact":  # score-function gradients only
        assert d.has_rsample is False
        with pytest.raises(NotImplementedError):
            d.rsample()
        return
    assert d.has_rsample is True
    torch.manual_seed(0)
    z = d.rsample((N_DRAWS,))
    assert z.requires_grad
    # Per-draw pathwise derivatives dz/drate, one rate per column (the draws are independent).
    (grad,) = torch.autograd.grad(z.sum(), rate)
    assert grad.shape == rate.shape and torch.isfinite(grad).all()
    # A higher rate gives a larger relaxed count on average.
    assert (grad > 0).all(), grad
    try:
        mean = d.mean
    except NotImplementedError:  # no closed form (documented): nothing to compare the slope with
        return
    # The mean is linear in the rate, so the pathwise derivative is unbiased for mean / rate; its standard
    # error is estimated from per-draw derivatives of separate copies of the rate.
    rates = rate.detach().expand(N_DRAWS, -1).clone().requires_grad_()
    torch.manual_seed(1)
    relax.get(name)(rates).rsample().sum().backward()
    slope = (mean / rate).detach()
    assert_means_close(rates.grad, slope, extra=truncation_loss(d).detach() / rate.detach())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_of_counts_is_the_poisson_log_pmf(name, dtype):
    counts = torch.arange(31, dtype=dtype)[:, None]  # (31, 1) against a batch of rates (4,)
    d = relax.get(name)(torch.tensor(RATES, dtype=dtype))
    got = d.log_prob(counts)
    assert got.shape == (31, len(RATES)) and got.dtype == dtype
    expected = scipy.stats.poisson.logpmf(counts.double().numpy(), np.array(RATES))
    # 1e-6 in float64; float32 keeps about 7 digits of values down to about -160.
    tolerance = {"atol": 1e-6, "rtol": 0} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-6}
    np.testing.assert_allclose(got.double().numpy(), expected, **tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_underflowed_rate_gives_a_finite_log_pmf_and_gradient(dtype):
    # softplus of a very negative drive underflows to 0; xlogy's gradient there would be 0/0
    predictor = torch.tensor([-1000.0, -1000.0, -1000.0, 0.0], dtype=dtype, requires_grad=True)
    counts = torch.tensor([0.0, 0.3, 1.0, 1.0], dtype=dtype)
    rate = torch.nn.functional.softplus(predictor)
    assert rate[0] == 0 and rate[2] == 0
    log_pmf = relax.poisson_log_pmf(counts, rate)
    log_pmf.sum().backward()
    assert torch.isfinite(log_pmf).all() and torch.isfinite(predictor.grad).all()
    assert log_pmf[0] == 0  # log P(0; rate 0) = 0 exactly
    floor = math.log(torch.finfo(dtype).tiny)
    assert float(log_pmf[2].detach()) == pytest.approx(floor)  # the floor, not -inf


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_extends_to_real_values(name):
    """Documented departure from torch.distributions.Poisson: real-valued (relaxed) counts are scored too."""
    d = law(name, RATES)
    x = torch.tensor([0.5, 1.5, 2.25, 7.75], dtype=torch.float64)
    rate = torch.tensor(RATES, dtype=torch.float64)
    expected = x * rate.log() - rate - torch.lgamma(x + 1)
    torch.testing.assert_close(d.log_prob(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_sample_draws_poisson_integers(name):
    d = law(name, RATES)
    torch.manual_seed(2)
    x = d.sample((N_DRAWS,))
    assert torch.equal(x, x.round()) and (x >= 0).all()
    rate = torch.tensor(RATES, dtype=torch.float64)
    assert_means_close(x, rate)
    assert_variances_close(x, rate)  # Poisson: the variance is the rate


@pytest.mark.parametrize("name", NAMES)
def test_mean_and_variance_match_monte_carlo(name):
    """The closed forms against draws of rsample (of sample for a law without rsample)."""
    d = law(name, RATES)
    torch.manual_seed(3)
    with torch.no_grad():
        draws = d.rsample((N_DRAWS,)) if d.has_rsample else d.sample((N_DRAWS,))
    try:
        mean, variance = d.mean, d.variance
    except NotImplementedError as error:
        # As documented (GumbelSoftmax): no closed form, and the error says where to get an estimate.
        assert "no closed form" in str(error) and "no closed form" in type(d).__doc__
        with pytest.raises(NotImplementedError, match="no closed form"):
            _ = d.variance
        assert torch.isfinite(draws).all() and (draws >= 0).all()
        return
    assert mean.shape == variance.shape == d.batch_shape
    assert_means_close(draws, mean, extra=truncation_loss(d))
    assert_variances_close(draws, variance, extra=truncation_loss(d))


def test_straight_through_eat_cubic_draws_exact_counts_with_the_relaxed_gradient():
    rate = torch.tensor([0.05, 1.0, 5.0], dtype=torch.float64)
    grads, draws = [], []
    for straight_through in (False, True):
        leaf = rate.clone().requires_grad_()
        torch.manual_seed(7)  # the same arrivals for both
        z = relax.EatCubic(leaf, temperature=0.5, straight_through=straight_through).rsample((N_DRAWS,))
        z.sum().backward()
        grads.append(leaf.grad)
        draws.append(z.detach())
    relaxed, exact = draws
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)  # only the value differs
    assert torch.equal(exact, exact.round()) and not torch.equal(relaxed, relaxed.round())
    # exact Poisson draws: mean and variance both equal the rate, within 5 Monte-Carlo standard errors
    n = exact.shape[0]
    assert torch.all((exact.mean(0) - rate).abs() < 5 * (rate / n).sqrt())
    assert torch.all((exact.var(0) - rate).abs() < 5 * (rate * (1 + 2 * rate) / n).sqrt())
    # an arrival counts 1 exactly when the smoothstep would give it more than 1/2: the two agree closely
    assert (exact - relaxed).abs().mean() < 0.5
    assert relax.EatCubic(rate, straight_through=True).variance.equal(rate)


def test_straight_through_is_refused_for_other_relaxations():
    with pytest.raises(ValueError, match="straight_through needs relaxation 'eat-cubic'"):
        sg.POGLM(relaxation="gumbel-softmax", straight_through=True).checked_settings()
