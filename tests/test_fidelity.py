"""Fidelity and gradient-quality measures against closed forms.

Every Monte-Carlo check uses a fixed seed. Unless a comment says otherwise, a sampled quantity must lie
within Z_TOL = 4 of its own Monte-Carlo standard errors of the exact value (a false alarm rate of about
6e-5 per check for a fresh seed).
"""

import itertools
import math

import pytest
import torch

from spikeglm import fidelity, relax

Z_TOL = 4.0
TEMPERATURES = (0.1, 0.2, 0.5, 1.0)


def test_wasserstein1_of_a_sample_with_itself_and_with_a_shifted_copy():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(fidelity.wasserstein1(x, x)) == 0.0
    # The order of a sample does not matter; a shift by s moves every order statistic by s.
    assert float(fidelity.wasserstein1(x, x.flip(0) + 0.3)) == pytest.approx(0.3, abs=1e-12)
    batched = fidelity.wasserstein1(torch.stack([x, x], 1), torch.stack([x, x - 1.5], 1))
    assert batched.shape == (2,)
    assert batched.tolist() == pytest.approx([0.0, 1.5], abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        fidelity.wasserstein1(x, x[:10])


def test_exact_poisson_samples_are_close_to_exact_samples():
    rows = fidelity.fidelity_table(
        relaxations=("exact",), rates=(2.0,), temperatures=(0.5,), n_samples=20_000, seed=1
    )
    # Two independent samples of 20 000: E[W1] ~ sqrt(4 / (pi n)) sum_k sqrt(F(k)(1 - F(k))) = 0.017 at
    # rate 2, and this is a mean of 5 trials (sd of the mean about 0.003), so 0.03 is a safe bound.
    assert rows[0]["w1"] < 0.03
    assert rows[0]["mean_closed"] == rows[0]["variance_closed"] == 2.0


def test_eat_cubic_w1_decreases_as_the_temperature_decreases():
    rows = fidelity.fidelity_table(
        relaxations=(relax.EatCubic,), rates=(2.0,), temperatures=TEMPERATURES, n_samples=20_000, seed=1
    )
    # Measured 0.066, 0.115, 0.201, 0.264 with w1_sd <= 0.005: each step is over 10 sd.
    for cooler, warmer in itertools.pairwise(rows):
        assert cooler["w1"] + 3 * warmer["w1_sd"] < warmer["w1"]
    assert all(row["relaxation"] == "eat-cubic" for row in rows)


@pytest.mark.parametrize(
    ("relaxation", "temperature"), [("eat-cubic", 0.2), ("eat-cubic", 1.0), ("eat-sigmoid", 0.5)]
)
def test_moments_match_the_closed_forms(relaxation, temperature):
    m = fidelity.moments(relaxation, 3.0, temperature, n_samples=100_000, seed=2)
    if relaxation == "eat-cubic":
        assert m["mean_closed"] == pytest.approx(3.0)
        assert m["variance_closed"] == pytest.approx(3.0 * (1 - 9 * temperature / 35))
    assert abs(m["mean"] - m["mean_closed"]) < Z_TOL * m["mean_se"]
    assert abs(m["variance"] - m["variance_closed"]) < Z_TOL * m["variance_se"]


def test_gumbel_softmax_has_no_closed_forms():
    m = fidelity.moments("gumbel-softmax", 3.0, 0.5, n_samples=100)
    assert m["mean_closed"] is None and m["variance_closed"] is None


def test_seeded_results_are_reproducible_and_leave_the_global_generator_alone():
    state = torch.random.get_rng_state()
    by_name = fidelity.moments("eat-cubic", 2.0, 0.5, n_samples=1_000, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert fidelity.moments(relax.EatCubic, 2.0, 0.5, n_samples=1_000, seed=7) == by_name
    assert fidelity.moments("eat-cubic", 2.0, 0.5, n_samples=1_000, seed=8) != by_name


def test_poisson_support_sums_have_their_closed_forms():
    rates = torch.tensor([0.3, 2.0, 7.0, 50.0], dtype=torch.float64)
    # E[Z] = r, E[Z^2] = r + r^2, E[Z^3] = r^3 + 3 r^2 + r; the support is cut where the tail is 1e-12.
    cases = [(lambda z: z, torch.ones_like(rates)), (lambda z: z * z, 1 + 2 * rates)]
    cases.append((lambda z: z**3, 3 * rates**2 + 6 * rates + 1))
    for g, expected in cases:
        assert torch.allclose(fidelity.poisson_gradient(g, rates), expected, rtol=1e-9, atol=0)
    # gradient_quality reports the same exact gradient.
    result = fidelity.gradient_quality("eat-cubic", lambda z: z * z, rates[:3], n_samples=10)
    assert result["exact"] == pytest.approx((1 + 2 * rates[:3]).tolist(), rel=1e-9)


def test_gradient_metrics_on_constructed_samples():
    exact = torch.tensor([1.0, 2.0], dtype=torch.float64)
    bias = torch.tensor([0.1, -0.3], dtype=torch.float64)
    v1, v2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    # Offsets +-v1, +-v2 average to 0 exactly, with covariance 2 (v1 v1' + v2 v2') / (N - 1).
    samples = exact + bias + torch.stack([v1, -v1, v2, -v2])
    covariance = 2 * (torch.outer(v1, v1) + torch.outer(v2, v2)) / 3
    metric = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    scale = exact @ metric @ exact
    result = fidelity.gradient_metrics(samples, exact, metric)
    assert result["bias_energy"] == pytest.approx(float(bias @ metric @ bias / scale), rel=1e-12)
    assert result["noise_energy"] == pytest.approx(float(torch.trace(metric @ covariance) / scale), rel=1e-12)
    assert result["bias_energy_floor"] == pytest.approx(result["noise_energy"] / 4, rel=1e-12)
    mean = exact + bias
    assert result["cosine"] == pytest.approx(float(mean @ exact / (mean.norm() * exact.norm())), rel=1e-12)
    assert result["mean"] == pytest.approx(mean.tolist(), rel=1e-12)
    # The identity is the default metric; a single sample equal to g* has cosine 1.
    identity = fidelity.gradient_metrics(torch.stack([exact, exact]), exact)
    assert identity["bias_energy"] == identity["noise_energy"] == 0.0
    assert identity["sample_cosine"] == pytest.approx(1.0)


def test_eat_sigmoid_gradient_is_more_biased_than_eat_cubic():
    rates = [0.5, 2.0, 5.0]
    cubic = fidelity.gradient_quality("eat-cubic", lambda z: z, rates, 1.0, n_samples=40_000, seed=3)
    sigmoid = fidelity.gradient_quality("eat-sigmoid", lambda z: z, rates, 1.0, n_samples=40_000, seed=3)
    # d E[z] / d rate is exactly 1 for Eat-cubic and tau log(1 + e^(1/tau)) = 1.313 for Eat-sigmoid.
    for result, slope in ((cubic, 1.0), (sigmoid, math.log1p(math.e))):
        for mean, se in zip(result["mean"], result["standard_error"], strict=True):
            assert abs(mean - slope) < Z_TOL * se
    # Sigmoid's bias energy is 0.313^2 = 0.098; cubic's is Monte-Carlo error only (floor ~ 1.5e-5).
    assert sigmoid["bias_energy"] > 100 * cubic["bias_energy"]
    assert cubic["bias_energy"] < 10 * cubic["bias_energy_floor"]


def test_score_function_for_exact_poisson_is_unbiased_but_noisier():
    exact = fidelity.gradient_quality("exact", lambda z: z, [1.0, 3.0], n_samples=40_000, seed=5)
    cubic = fidelity.gradient_quality("eat-cubic", lambda z: z, [1.0, 3.0], 0.5, n_samples=40_000, seed=5)
    for mean, se in zip(exact["mean"], exact["standard_error"], strict=True):
        assert abs(mean - 1.0) < Z_TOL * se
    # With the ideal baseline, (z - r)^2 / r has variance 2 + 1/r: noise energy (3 + 2.33) / 2 = 2.67;
    # Eat-cubic's at tau 0.5 is 0.83 (measured).
    assert exact["noise_energy"] == pytest.approx(8 / 3, rel=0.1)
    assert exact["noise_energy"] > 2 * cubic["noise_energy"]


def test_decoder_closed_forms_match_autograd():
    problem = fidelity.decoder_problem(n_latent=4, n_obs=6, seed=0)
    phi, x = problem["phi"], problem["x"]

    def loss(log_rate):
        rate = log_rate.exp()
        return (x - phi @ rate).pow(2).sum() + (rate * (phi * phi).sum(0)).sum()

    log_rate = problem["log_rate"].clone().requires_grad_()
    (gradient,) = torch.autograd.grad(loss(log_rate), log_rate)
    # Float64 throughout: agreement to rounding error.
    assert torch.allclose(gradient, problem["gradient"], rtol=1e-12, atol=1e-12)
    hessian = torch.autograd.functional.hessian(loss, problem["log_rate"])
    assert torch.allclose(hessian, problem["hessian"], rtol=1e-12, atol=1e-12)


def test_eat_cubic_decoder_gradient_is_that_of_its_relaxed_loss():
    """Eat-cubic's mean is exactly the rate and its variance rate (1 - 9 tau / 35), so the expected loss
    under it is ||x - Phi rate||^2 + (1 - 9 tau / 35) sum_k rate_k ||phi_k||^2: the sampled gradients
    follow that loss, and their bias against the Poisson loss scales with tau."""
    problem = fidelity.decoder_problem(seed=4)
    phi, x, rate = problem["phi"], problem["x"], problem["log_rate"].exp()
    results = {
        tau: fidelity.decoder_gradient_quality("eat-cubic", tau, n_samples=40_000, seed=4)
        for tau in (1.0, 0.5, 0.2)
    }
    for tau, result in results.items():
        relaxed = rate * (2 * phi.T @ (phi @ rate - x) + (1 - 9 * tau / 35) * (phi * phi).sum(0))
        error = (torch.tensor(result["mean"], dtype=torch.float64) - relaxed).abs()
        assert (error < Z_TOL * torch.tensor(result["standard_error"], dtype=torch.float64)).all()
    # Closed-form bias energies 7.6e-3, 1.9e-3, 3.0e-4 (they scale as tau^2), Monte-Carlo floors <= 2e-4.
    energies = [results[tau]["bias_energy"] for tau in (1.0, 0.5, 0.2)]
    assert energies == sorted(energies, reverse=True)
    assert energies[0] > 20 * results[1.0]["bias_energy_floor"]


def test_fidelity_table_rows_and_format_table():
    rows = fidelity.fidelity_table(rates=(0.5, 5.0), temperatures=(0.5,), n_samples=200, n_trials=2)
    assert len(rows) == 3 * 2
    expected = {
        "relaxation",
        "rate",
        "temperature",
        "w1",
        "w1_sd",
        "w1_scaled",
        "mean",
        "mean_se",
        "mean_closed",
        "mean_rel_error",
        "variance",
        "variance_se",
        "variance_closed",
        "variance_rel_error",
    }
    assert all(set(row) == expected for row in rows)
    row = rows[-1]
    assert row["w1_scaled"] == pytest.approx(row["w1"] / math.sqrt(row["rate"]))
    assert row["mean_rel_error"] == pytest.approx(row["mean"] / row["rate"] - 1)
    text = fidelity.format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    assert len({len(line) for line in lines}) == 1  # aligned
    for name in ("eat-cubic", "eat-sigmoid", "gumbel-softmax"):
        assert name in text
