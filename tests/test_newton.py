"""The GLM's Newton solve: its curvature against autograd's, its optimum against L-BFGS's, under every
link and with everything a GLM fit can carry (covariates, a latent path, a ridge penalty, cut segments),
and the cases that have no Newton step (silent neurons) or no room for one (memory)."""

import itertools
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

import spikeglm as sg
from spikeglm.basis import history
from spikeglm.inference import newton as newton_module
from spikeglm.inference import solve_glm
from spikeglm.inference.glm import GLM_TOLERANCE_GRAD, _Closure, likelihood_gradient, mean_log_likelihood
from spikeglm.inference.newton import (
    _pass,
    _Problem,
    _Smooth,
    newton_memory,
    newton_pays,
    observed_information,
    pair_products,
    parameters_of,
    set_parameters,
)
from spikeglm.inference.penalty import GroupLasso, Ridge, largest_strength
from spikeglm.model import Network
from spikeglm.relax import poisson_log_pmf
from spikeglm.segments import Segments


def simulated(link: str, n: int = 4, seed: int = 0, trials: int = 30, bins: int = 200) -> torch.Tensor:
    """Counts (trials, bins, n) of a small random network under ``link``."""
    network = Network(n, 0, sg.basis.get("raised-cosine", window=8, n_basis=2), link)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        network.weight.copy_(torch.tensor(rng.uniform(-1.0, 0.4, (n, n, 2)), dtype=torch.float32))
        network.bias.copy_(torch.tensor(rng.uniform(-2.5, -1.0, n), dtype=torch.float32))
    return network.simulate(trials, bins, generator=torch.Generator().manual_seed(seed))


def test_pair_products_are_the_upper_triangle_of_each_rows_outer_product():
    design = torch.randn(7, 5, dtype=torch.float64)
    upper = torch.triu_indices(5, 5)
    outer = design[:, :, None] * design[:, None, :]
    expected = outer[:, upper[0], upper[1]].T.float()
    torch.testing.assert_close(pair_products(design), expected)


def design_of(counts: torch.Tensor, basis: sg.basis.Basis, covariates=None) -> torch.Tensor:
    """The GLM's design written out: 1, the basis-filtered past of every neuron, the covariates."""
    features = history(counts.double(), basis.matrix().double()).flatten(-2)
    columns = [torch.ones_like(features[..., :1]), features]
    if covariates is not None:
        columns.append(covariates.double())
    return torch.cat(columns, dim=-1).flatten(0, -2)


def minus_log_likelihood(link: str, design: torch.Tensor, counts: torch.Tensor, row: torch.Tensor, post: int):
    rates = sg.model.LINKS[link](design @ row)
    return -poisson_log_pmf(counts.double().flatten(0, -2)[:, post], rates).sum()


@pytest.mark.parametrize("link", ["exp", "softplus", "sigmoid"])
def test_a_pass_gives_the_objective_gradient_and_curvature_of_the_log_likelihood(link):
    """Against autograd on minus the log-likelihood per spike (plus a ridge penalty) of every neuron,
    in parts: the value and gradient to float64 rounding; the curvature blocks to float32's (they are
    summed in float32). Under the sigmoid link the blocks are the expected curvature, positive definite
    where the observed one need not be. The observed information the standard errors invert is the
    Hessian of minus the log-likelihood under every link, to float64 rounding."""
    counts = simulated(link, n=3, trials=6, bins=100)
    basis = sg.basis.get("raised-cosine", window=8, n_basis=2)
    network = Network(3, 0, basis, link, n_covariates=1)
    generator = torch.Generator().manual_seed(1)
    covariates = torch.randn(6, 100, 1, generator=generator)
    theta = 0.3 * torch.randn(3, 1 + 3 * 2 + 1, generator=generator, dtype=torch.float64)
    theta[:, 0] -= 2.0
    penalty, scale = Ridge(0.01), 1 / 37.0
    problem = _Problem(network, Segments(counts, covariates=covariates), part_bins=250, offset=None)
    active = torch.ones(3, dtype=torch.bool)
    value, gradient, blocks = _pass(problem, theta, active, scale, _Smooth(network, penalty))
    design = design_of(counts, basis, covariates)

    def objective(row: torch.Tensor, post: int) -> torch.Tensor:
        couplings = row[1:7].reshape(3, 2)
        ridge = 0.5 * penalty.strength * (couplings.square().sum() - couplings[post].square().sum())
        return minus_log_likelihood(link, design, counts, row, post) * scale + ridge

    for post in range(3):
        row = theta[post].clone().requires_grad_(True)
        expected = objective(row, post)
        (expected_gradient,) = torch.autograd.grad(expected, row)
        assert float(value[post]) == pytest.approx(float(expected.detach()), rel=1e-12)
        torch.testing.assert_close(gradient[post], expected_gradient, rtol=1e-9, atol=1e-14)
        if link != "sigmoid":
            hessian = torch.autograd.functional.hessian(
                lambda r, p=post: objective(r, p), theta[post].clone()
            )
            torch.testing.assert_close(blocks[post], hessian, rtol=1e-5, atol=1e-8)
    assert torch.linalg.eigvalsh(blocks).min() > 0
    set_parameters(network.double(), theta)  # the observed information, in float64: the Hessian
    information = observed_information(network, Segments(counts, covariates=covariates), part_bins=250)
    for post in range(3):
        hessian = torch.autograd.functional.hessian(
            lambda r, p=post: minus_log_likelihood(link, design, counts, r, p), theta[post].clone()
        )
        torch.testing.assert_close(information[post], hessian, rtol=1e-10, atol=1e-10)


def scipy_optimum(counts: torch.Tensor, link: str, basis: sg.basis.Basis) -> torch.Tensor:
    """Each neuron's maximum-likelihood row found independently: scipy's L-BFGS-B in float64 on the
    design written out, to a gradient of 1e-10 nats per bin."""
    design = design_of(counts, basis)
    rows = []
    for post in range(counts.shape[-1]):

        def objective(row: np.ndarray, post=post) -> tuple[float, np.ndarray]:
            theta = torch.tensor(row, requires_grad=True)
            value = minus_log_likelihood(link, design, counts, theta, post) / len(design)
            value.backward()
            return float(value.detach()), theta.grad.numpy()

        start = np.zeros(design.shape[1])
        start[0] = -2.0
        found = scipy.optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-10, "ftol": 1e-16, "maxiter": 10_000},
        )
        rows.append(found.x)
    return torch.tensor(np.array(rows))


@pytest.mark.parametrize("link", ["exp", "softplus", "sigmoid"])
def test_newton_and_lbfgs_reach_the_optimum_found_independently(link):
    """Newton's solve against scipy's float64 optimum: every parameter to 1e-4 (a few hundredths of
    their standard errors here), and the log-likelihood to 1e-9 nats per neuron-bin. L-BFGS, which sums
    in float32, stops within 1e-6 below it."""
    counts = simulated(link)
    basis = sg.basis.get("raised-cosine", window=8, n_basis=2)
    expected = scipy_optimum(counts, link, basis)
    newton, newton_records, newton_reason = fitted(counts, link, "newton")
    lbfgs, _, lbfgs_reason = fitted(counts, link, "lbfgs")
    assert newton_reason.startswith("converged in") and "Newton" in newton_reason
    assert lbfgs_reason.startswith("converged in") and "L-BFGS" in lbfgs_reason
    torch.testing.assert_close(parameters_of(newton), expected, atol=1e-4, rtol=0)
    data = Segments(counts)
    reference = Network(4, 0, basis, link)
    set_parameters(reference, expected)
    best = mean_log_likelihood(reference.double(), data)
    assert mean_log_likelihood(newton.double(), data) == pytest.approx(best, abs=1e-9)
    assert 0 <= best - mean_log_likelihood(lbfgs.double(), data) < 1e-6
    objectives = [record.objective for record in newton_records]
    assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(objectives))


def fitted(counts: torch.Tensor, link: str, solver: str) -> tuple[Network, list, str]:
    """A network of the counts' neurons solved by ``solver``, from the biases at the mean rates."""
    network = Network(counts.shape[-1], 0, sg.basis.get("raised-cosine", window=8, n_basis=2), link)
    with torch.no_grad():
        network.bias.copy_(sg.model.inverse_link(link, counts.float().mean((0, 1))))
    records, reason = solve_glm(network, Segments(counts), solver=solver)
    return network, records, reason


def test_newton_solves_what_a_glm_fit_carries():
    """Covariates, a fixed latent path (an offset of the predictor), a ridge penalty and segments cut
    with context (only their own bins scored): at Newton's solution the gradient of the objective as
    L-BFGS computes it (autograd through the model, here in float64) is below the solve's tolerance,
    and L-BFGS's own solution is no better."""
    counts = simulated("softplus", trials=4, bins=1500)
    generator = torch.Generator().manual_seed(2)
    covariates = torch.randn(4, 1500, 2, generator=generator)
    drift = torch.sin(torch.arange(1500) / 200.0)
    data = Segments(counts, length=400, context=8, covariates=covariates)

    def latent(batch):
        return drift[: batch.visible.shape[1], None].expand(*batch.visible.shape[:-1], 1)

    objectives = {}
    for solver in ("newton", "lbfgs"):
        network = Network(
            4, 0, sg.basis.get("raised-cosine", window=8, n_basis=2), "softplus", n_latent=1, n_covariates=2
        )
        with torch.no_grad():
            network.loading.copy_(torch.tensor([[0.5], [-0.3], [0.2], [0.0]]))
        reason = solve_glm(network, data, solver=solver, latent=latent, penalty=Ridge(0.05))[1]
        assert reason.startswith("converged"), reason
        network.double()
        closure = _Closure(network, data, 2**15, None, network.glm_parameters(), None, latent, Ridge(0.05))
        objectives[solver] = closure._evaluate(0)
        if solver == "newton":
            largest = max(float(p.grad.abs().max()) for p in network.glm_parameters())
            assert largest < GLM_TOLERANCE_GRAD
            torch.testing.assert_close(
                network.loading.detach(), torch.tensor([[0.5], [-0.3], [0.2], [0.0]]).double()
            )
    assert objectives["newton"] <= objectives["lbfgs"]


def test_the_group_lasso_by_proximal_newton_meets_its_conditions_with_what_a_fit_carries():
    """Covariates, segments cut with context and a silent neuron, under the group lasso: at the proximal
    Newton solution the biases' and covariates' gradients vanish, each neuron's own filter too, a kept
    filter's gradient is -strength sqrt(B) w / |w| and a zeroed one's no longer than strength sqrt(B);
    the silent neuron's filters stay at zero; the proximal gradient solve ends no lower."""
    counts = simulated("softplus", trials=4, bins=1500)
    counts = torch.cat([counts, torch.zeros_like(counts[..., :1])], dim=-1)  # neuron 4 never fires
    covariates = torch.randn(4, 1500, 2, generator=torch.Generator().manual_seed(3))
    data = Segments(counts, length=400, context=8, covariates=covariates)
    basis = sg.basis.get("raised-cosine", window=8, n_basis=2)
    objectives = {}
    for solver in ("newton", "lbfgs"):
        network = Network(5, 0, basis, "softplus", n_covariates=2)
        with torch.no_grad():  # from the mean rates (the silent neuron's as if it had one spike)
            rates = counts.float().mean((0, 1)).clamp_min(1 / counts[..., 0].numel())
            network.bias.copy_(sg.model.inverse_link("softplus", rates))
        penalty = GroupLasso(0.3 * largest_strength(likelihood_gradient(network, data)))
        reason = solve_glm(network, data, solver=solver, penalty=penalty, max_iterations=5000)[1]
        assert reason.startswith("converged"), reason
        network.double()
        closure = _Closure(network, data, 2**15, None, network.glm_parameters(), None)
        objectives[solver] = closure._evaluate(0) + float(penalty.value(network.weight.detach()))
        if solver != "newton":
            continue
        threshold = penalty.strength * 2**0.5
        weight, gradient = network.weight.detach(), network.weight.grad
        assert float(network.bias.grad.abs().max()) < 1e-6
        assert float(network.covariate_weight.grad.abs().max()) < 1e-6
        own = torch.eye(5, dtype=torch.bool)
        assert float(gradient[own].abs().max()) < 1e-6
        norms = weight.norm(dim=-1)
        kept, zero = ~own & (norms > 0), ~own & (norms == 0)
        assert kept.any() and zero.any() and bool(torch.all(weight[:, 4] == 0))
        assert float(gradient.norm(dim=-1)[zero].max()) <= threshold * (1 + 1e-6)
        direction = weight[kept] / norms[kept][:, None]
        assert float((gradient[kept] + threshold * direction).abs().max()) < 1e-5
    assert objectives["newton"] <= objectives["lbfgs"] + 1e-12


def test_a_silent_neuron_neither_stops_the_solve_nor_moves_the_others():
    """A neuron that never fires: its own bias falls (towards minus infinity, until the gradient is
    below tolerance) and the couplings from it stay at zero; the others reach the optimum they reach
    without it."""
    counts = simulated("exp", n=3)
    silent = torch.cat([counts, torch.zeros_like(counts[..., :1])], dim=-1)
    with_silent, _, reason = fitted(silent, "exp", "newton")
    without, _, _ = fitted(counts, "exp", "newton")
    assert reason.startswith("converged")
    assert float(with_silent.bias[3].detach()) < -8
    assert torch.all(with_silent.weight[:, 3] == 0)
    torch.testing.assert_close(with_silent.weight[:3, :3], without.weight, atol=1e-4, rtol=0)


def test_auto_takes_lbfgs_beyond_200_columns_or_where_the_curvature_would_not_fit(monkeypatch):
    exponential = sg.basis.get("exponential", window=5)
    assert newton_pays(Network(199, 0, exponential, "exp"))  # 1 + 199 columns
    assert not newton_pays(Network(200, 0, exponential, "exp"))
    assert not newton_pays(Network(100, 0, sg.basis.get("raised-cosine", window=8, n_basis=2), "exp"))
    assert newton_pays(Network(190, 0, exponential, "exp", n_covariates=9))
    assert not newton_pays(Network(190, 0, exponential, "exp", n_covariates=10))
    monkeypatch.setattr(newton_module, "available_memory", lambda: 4 * newton_memory(3, 4) - 1)
    assert not newton_pays(Network(3, 0, exponential, "exp"))
    counts = simulated("exp", n=3, trials=5)
    assert "L-BFGS" in fitted(counts, "exp", "auto")[2]
    monkeypatch.undo()
    assert "Newton" in fitted(counts, "exp", "auto")[2]
    with pytest.raises(ValueError, match="unknown GLM solver 'irls'"):
        fitted(counts, "exp", "irls")


def test_parameters_go_to_rows_and_back():
    network = Network(3, 0, sg.basis.get("raised-cosine", window=8, n_basis=2), "exp", n_covariates=2)
    with torch.no_grad():
        for parameter in network.glm_parameters():
            parameter.copy_(torch.randn_like(parameter))
    theta = parameters_of(network)
    assert theta.shape == (3, 1 + 3 * 2 + 2)
    copy = Network(3, 0, sg.basis.get("raised-cosine", window=8, n_basis=2), "exp", n_covariates=2)
    set_parameters(copy, theta)
    for mine, theirs in zip(copy.glm_parameters(), network.glm_parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_a_coupling_the_data_leave_unbounded_is_named_with_its_remedy():
    """Neuron 1 never fires within five bins after neuron 0 does: the maximum-likelihood coupling 0 -> 1
    lies at minus infinity. The fit says so, naming the pair, and a ridge penalty bounds it."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.1, (20, 300, 3))
    after = np.zeros_like(counts[..., 0], dtype=bool)
    for lag in range(1, 6):
        after[:, lag:] |= counts[:, :-lag, 0] > 0
    counts[..., 1][after] = 0
    data = sg.SpikeCounts.from_array(counts.astype(np.uint8), bin_size="5 ms", unit_ids=["a", "b", "c"])
    with pytest.warns(
        UserWarning, match=r"1 coupling\(s\) have a strength beyond \+-20, e.g. a -> b \(-\d+\)"
    ):
        model = sg.POGLM(n_hidden=0).fit(data)
    assert model.connectivity().strength[1, 0] < -20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bounded = sg.POGLM(n_hidden=0, penalty="ridge", penalty_strength=0.01).fit(data)
    assert -20 < bounded.connectivity().strength[1, 0] < -1
