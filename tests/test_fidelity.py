"""Fidelity and gradient-quality measures against closed forms (fixed seeds, 4.5-sigma tolerances)."""

import math

import pytest
import torch

from spikeglm import fidelity


def test_wasserstein1_basic_cases():
    x = torch.randn(1000, dtype=torch.float64)
    assert float(fidelity.wasserstein1(x, x)) == 0.0
    assert float(fidelity.wasserstein1(x, x.flip(0) + 0.3)) == pytest.approx(0.3)
    batched = fidelity.wasserstein1(torch.stack([x, x], 1), torch.stack([x, x + 1], 1))
    assert batched.tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(ValueError, match="same shape"):
        fidelity.wasserstein1(x, x[:10])


def test_exact_poisson_is_close_to_itself_and_cubic_improves_with_lower_temperature():
    rows = fidelity.fidelity_table(
        relaxations=("exact", "eat-cubic"), rates=(2.0,), temperatures=(0.1, 1.0), n_samples=20_000, seed=1
    )
    w1 = {(r["relaxation"], r["temperature"]): r["w1"] for r in rows}
    assert w1[("exact", 0.1)] < 0.03  # two independent exact samples: W1 is sampling noise only
    assert w1[("eat-cubic", 0.1)] < w1[("eat-cubic", 1.0)]


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_eat_cubic_moments_match_the_closed_forms(temperature):
    m = fidelity.moments("eat-cubic", 3.0, temperature, n_samples=100_000, seed=2)
    assert m["mean_closed"] == pytest.approx(3.0)
    assert m["variance_closed"] == pytest.approx(3.0 * (1 - 9 * temperature / 35))
    assert abs(m["mean"] - m["mean_closed"]) < 4.5 * m["mean_se"]
    assert abs(m["variance"] - m["variance_closed"]) < 4.5 * m["variance_se"]
    assert fidelity.moments("gumbel-softmax", 3.0, temperature, n_samples=100)["mean_closed"] is None


def test_support_sum_gradients_have_their_closed_forms():
    rates = [0.3, 2.0, 7.0]
    # E[z] = rate and E[z^2] = rate + rate^2, so the exact gradients are 1 and 1 + 2 rate.
    linear = fidelity.gradient_quality("eat-cubic", lambda z: z, rates, n_samples=10)
    square = fidelity.gradient_quality("eat-cubic", lambda z: z * z, rates, n_samples=10)
    assert linear["exact"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-9)
    assert square["exact"] == pytest.approx([1 + 2 * r for r in rates], abs=1e-9)


def test_eat_cubic_is_unbiased_for_linear_functions_and_sigmoid_is_not():
    rates = [0.5, 2.0, 5.0]
    cubic = fidelity.gradient_quality("eat-cubic", lambda z: z, rates, 1.0, n_samples=40_000, seed=3)
    sigmoid = fidelity.gradient_quality("eat-sigmoid", lambda z: z, rates, 1.0, n_samples=40_000, seed=3)
    assert cubic["bias_energy"] < 1e-3
    # Eat-sigmoid's mean is rate * tau * log(1 + e^(1/tau)): at tau 1 its gradient is 1.313, not 1.
    assert sigmoid["bias_energy"] > 0.05
    assert sigmoid["mean"] == pytest.approx([math.log1p(math.e)] * 3, rel=0.03)


def test_decoder_closed_forms_match_autograd():
    problem = fidelity.decoder_problem(n_latent=4, n_obs=6, seed=0)
    phi, x = problem["phi"], problem["x"]

    def loss(eta):
        rate = eta.exp()
        return (x - phi @ rate).pow(2).sum() + (rate * (phi * phi).sum(0)).sum()

    eta = problem["log_rate"].clone().requires_grad_()
    (gradient,) = torch.autograd.grad(loss(eta), eta)
    assert torch.allclose(gradient, problem["gradient"])
    assert torch.allclose(torch.autograd.functional.hessian(loss, problem["log_rate"]), problem["hessian"])


def test_eat_cubic_decoder_gradient_is_that_of_its_relaxed_loss():
    """Mean exactly rate and variance rate (1 - 9 tau / 35): the relaxed expected loss is
    ||x - Phi rate||^2 + (1 - 9 tau / 35) sum_k rate_k ||phi_k||^2, and the sampled gradient follows it."""
    tau = 1.0
    problem = fidelity.decoder_problem(seed=4)
    phi, x, rate = problem["phi"], problem["x"], problem["log_rate"].exp()
    relaxed = rate * (2 * phi.T @ (phi @ rate - x) + (1 - 9 * tau / 35) * (phi * phi).sum(0))
    result = fidelity.decoder_gradient_quality("eat-cubic", tau, n_samples=40_000, seed=4)
    error = (torch.tensor(result["mean"], dtype=torch.float64) - relaxed).abs()
    assert (error < 4.5 * torch.tensor(result["standard_error"], dtype=torch.float64)).all()
    low = fidelity.decoder_gradient_quality("eat-cubic", 0.2, n_samples=40_000, seed=4)
    assert low["bias_energy"] < result["bias_energy"]


def test_score_function_for_exact_poisson_is_unbiased_but_noisy():
    exact = fidelity.gradient_quality("exact", lambda z: z, [1.0, 3.0], n_samples=40_000, seed=5)
    cubic = fidelity.gradient_quality("eat-cubic", lambda z: z, [1.0, 3.0], 0.5, n_samples=40_000, seed=5)
    assert exact["bias_energy"] < 5e-3
    assert exact["noise_energy"] > 3 * cubic["noise_energy"]


def test_format_table_names_every_relaxation():
    rows = fidelity.fidelity_table(rates=(1.0,), temperatures=(0.5,), n_samples=200, n_trials=2)
    text = fidelity.format_table(rows)
    for name in ("eat-cubic", "eat-sigmoid", "gumbel-softmax"):
        assert name in text
    assert set(rows[0]) >= {"w1", "w1_sd", "w1_scaled", "mean", "mean_closed", "variance", "variance_closed"}
