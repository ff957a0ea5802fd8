"""Poisson relaxations against their closed forms, Monte Carlo and each other.

Monte-Carlo checks use fixed seeds and a tolerance of 4.5 standard errors (a false alarm rate of about
1e-5 per check), with the standard error estimated from the same samples.
"""

import math

import pytest
import scipy.stats
import torch

import spikeglm as sg
from spikeglm import relax

RATES = [0.05, 0.5, 1.0, 5.0, 50.0]
TEMPERATURES = [0.1, 0.2, 0.5, 1.0]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
Z_TOL = 4.5


def relaxed_draws(rate: float, temperature: float, n: int, seed: int, cls=relax.EatCubic):
    """n independent relaxed counts at one rate, with the per-draw derivative dz/drate."""
    torch.manual_seed(seed)
    rates = torch.full((n,), rate, dtype=torch.float64, requires_grad=True)
    z = cls(rates, temperature=temperature).rsample()
    z.sum().backward()
    return z.detach(), rates.grad


def assert_mean_close(x: torch.Tensor, expected: float, extra: float = 0.0) -> None:
    se = x.std().item() / math.sqrt(x.numel())
    assert abs(x.mean().item() - expected) <= Z_TOL * se + extra, (x.mean().item(), expected, se)


def assert_variance_close(x: torch.Tensor, expected: float) -> None:
    centred = x - x.mean()
    variance = centred.pow(2).mean().item()
    se = math.sqrt(max(centred.pow(4).mean().item() - variance**2, 0.0) / x.numel())
    assert abs(variance - expected) <= Z_TOL * se, (variance, expected, se)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_eat_cubic_moments_and_gradient(rate, temperature):
    z, dz = relaxed_draws(rate, temperature, 100_000, seed=int(rate * 100 + temperature * 10))
    assert_mean_close(z, rate)
    assert_variance_close(z, rate * (1 - 9 * temperature / 35))
    # The pathwise derivative of E[z] = rate is exactly 1.
    assert_mean_close(dz, 1.0)
    d = relax.EatCubic(torch.tensor(rate), temperature)
    assert d.mean.item() == pytest.approx(rate)
    assert d.variance.item() == pytest.approx(rate * (1 - 9 * temperature / 35))


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_eat_sigmoid_mean_is_biased_as_predicted(temperature):
    rate = 2.0
    z, _ = relaxed_draws(rate, temperature, 100_000, seed=7, cls=relax.EatSigmoid)
    expected = rate * temperature * math.log1p(math.exp(1 / temperature))
    # Truncating the arrivals at the tail (1e-3) may lose up to about rate * tail * (1 + 7 tau) of mean.
    assert_mean_close(z, expected, extra=rate * 1e-3 * (1 + 7 * temperature))
    assert_variance_close(z, relax.EatSigmoid(torch.tensor(rate), temperature).variance.item())
    assert relax.EatSigmoid(torch.tensor(rate), temperature).mean.item() == pytest.approx(expected)


def test_eat_sigmoid_bias_figures():
    """+6% at tau 0.5 and +31% at tau 1, as stated for the relaxation."""
    rate = torch.tensor(1.0)
    assert relax.EatSigmoid(rate, 0.5).mean.item() == pytest.approx(1.0635, abs=5e-4)
    assert relax.EatSigmoid(rate, 1.0).mean.item() == pytest.approx(1.3133, abs=5e-4)


def test_window_function_gradcheck_float64():
    """The custom backward matches finite differences of the same forward (fixed arrivals)."""
    torch.manual_seed(0)
    rate = torch.tensor([0.3, 1.7, 4.0, 9.0], dtype=torch.float64, requires_grad=True)
    tau = 0.4
    owner = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3])
    # In-window arrival times S in (1 - tau, 1 + tau), stored on the unit-rate scale rate * S.
    times = 1 - tau + 2 * tau * torch.rand(owner.numel(), dtype=torch.float64)
    unit_times = times * rate.detach()[owner]
    n_before = torch.tensor([0.0, 2.0, 1.0, 5.0], dtype=torch.float64)
    for before in (n_before, None):
        assert torch.autograd.gradcheck(
            lambda r, before=before: relax._EatCubicWindow.apply(r, unit_times, owner, before, tau, False),
            (rate,),
            eps=1e-6,
            atol=1e-7,
        )


def test_eat_cubic_agrees_with_truncated_reference():
    """Windowed sampling and plain truncated arrivals draw the same law (two-sample KS test)."""
    rate, tau, n = 2.0, 0.5, 20_000
    torch.manual_seed(1)
    fast = relax.EatCubic(torch.full((n,), rate, dtype=torch.float64), tau).rsample()
    n_arrivals = relax.poisson_tail_count(rate * (1 + tau), 1e-9) + 1
    reference = relax.truncated_arrival_counts(
        torch.full((n,), rate, dtype=torch.float64), tau, relax.cubic_step, n_arrivals
    )
    assert scipy.stats.ks_2samp(fast.numpy(), reference.numpy()).pvalue > 1e-3


def test_mixed_rates_and_blocks(monkeypatch):
    """Elements below and above the chain threshold, processed in several blocks."""
    monkeypatch.setattr(relax, "_MAX_ARRIVALS_PER_BLOCK", 5_000)
    torch.manual_seed(3)
    rates = torch.tensor([0.2, 20.0], dtype=torch.float64).repeat(20_000).requires_grad_()
    z = relax.EatCubic(rates, 0.3).rsample()
    z.sum().backward()
    for k, rate in enumerate([0.2, 20.0]):
        assert_mean_close(z.detach()[k::2], rate)
        assert_variance_close(z.detach()[k::2], rate * (1 - 9 * 0.3 / 35))
        assert_mean_close(rates.grad[k::2], 1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["eat-cubic", "eat-sigmoid", "gumbel-softmax"])
def test_shapes_dtypes_and_gradients_flow(name, dtype, device):
    rate = torch.tensor([[0.1, 1.0, 3.0]], dtype=dtype, device=device).expand(2, 3).clone()
    rate.requires_grad_()
    d = relax.get(name)(rate, temperature=0.5)
    z = d.rsample((4, 5))
    assert z.shape == (4, 5, 2, 3) and z.dtype == dtype and z.device.type == device
    assert (z >= 0).all()
    z.sum().backward()
    assert rate.grad.shape == rate.shape and torch.isfinite(rate.grad).all()
    x = d.sample((7,))
    assert x.shape == (7, 2, 3) and torch.equal(x, x.round())


def test_scalar_rate_and_empty_batch():
    assert relax.EatCubic(1.0).rsample().shape == ()
    assert relax.EatCubic(torch.ones(0)).rsample((3,)).shape == (3, 0)


def test_rsample_is_reproducible_with_a_seed():
    rate = torch.linspace(0.01, 10, 1000)
    draws = []
    for _ in range(2):
        torch.manual_seed(42)
        draws.append(relax.EatCubic(rate, 0.5).rsample())
    assert torch.equal(draws[0], draws[1])


def test_gumbel_softmax_concentrates_on_integers_at_low_temperature():
    torch.manual_seed(5)
    z = relax.GumbelSoftmax(torch.full((50_000,), 1.5, dtype=torch.float64), 0.05).rsample()
    assert (z - z.round()).abs().median() < 1e-3
    assert_mean_close(z, 1.5, extra=0.01)


def test_exact_poisson():
    rate = torch.tensor([0.5, 3.0])
    d = relax.ExactPoisson(rate)
    assert not d.has_rsample
    with pytest.raises(NotImplementedError, match="score-function"):
        d.rsample()
    assert torch.equal(d.mean, rate) and torch.equal(d.variance, rate)
    k = torch.tensor([[0.0, 2.0], [4.0, 1.0]])
    assert torch.allclose(d.log_prob(k), torch.distributions.Poisson(rate).log_prob(k))


def test_log_prob_extends_to_real_counts():
    rate = torch.tensor(2.0)
    x = torch.tensor(1.5)
    expected = 1.5 * math.log(2.0) - 2.0 - math.lgamma(2.5)
    for cls in (relax.EatCubic, relax.EatSigmoid, relax.GumbelSoftmax):
        assert cls(rate, 0.5).log_prob(x).item() == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("name", ["eat-cubic", "eat-sigmoid", "gumbel-softmax", "exact"])
def test_bad_rate_is_refused(name, bad):
    with pytest.raises(ValueError, match=r"`rate` must be positive and finite.*1 non-|1 value"):
        relax.get(name)(torch.tensor([1.0, bad]))


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), "warm"])
def test_bad_temperature_is_refused(bad):
    for cls in (relax.EatCubic, relax.EatSigmoid, relax.GumbelSoftmax):
        with pytest.raises(ValueError, match="`temperature` must be a positive finite number"):
            cls(torch.tensor(1.0), temperature=bad)


def test_eat_cubic_refuses_temperature_above_one():
    with pytest.raises(ValueError, match=r"EatCubic: `temperature` must be <= 1; got 1.5"):
        relax.EatCubic(torch.tensor(1.0), temperature=1.5)
    relax.EatSigmoid(torch.tensor(1.0), temperature=1.5)  # no such limit for the sigmoid


@pytest.mark.parametrize("tail", [0.0, 1.0, -0.1])
def test_bad_tail_is_refused(tail):
    with pytest.raises(ValueError, match="`tail` must be a probability"):
        relax.GumbelSoftmax(torch.tensor(1.0), tail=tail)


def test_validation_can_be_turned_off():
    # Hot loops skip the check; the caller then answers for the input.
    bad = torch.tensor([0.0, 2.0])
    with pytest.raises(ValueError, match="`rate` must be positive and finite"):
        relax.EatCubic(bad)
    unchecked = relax.EatCubic(bad, validate_args=False)
    assert torch.equal(unchecked.rate, bad) and unchecked.batch_shape == (2,)
    assert unchecked.sample((3,)).shape == (3, 2)  # the unchecked law still draws


def test_registry():
    assert sg.relax.names() == ("eat-cubic", "eat-sigmoid", "gumbel-softmax", "exact")
    assert sg.relax.get("eat-cubic") is relax.EatCubic
    assert sg.relax.get("Eat_Sigmoid") is relax.EatSigmoid
    with pytest.raises(ValueError, match="unknown relaxation 'cubic'; choose one of eat-cubic"):
        sg.relax.get("cubic")


def test_expand_keeps_the_temperature():
    d = relax.EatCubic(torch.tensor([1.0, 2.0]), 0.3).expand((4, 2))
    assert d.batch_shape == (4, 2) and d.temperature == 0.3
    assert d.rsample().shape == (4, 2)
