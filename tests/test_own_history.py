"""A basis for each neuron's own history besides the couplings' (:class:`spikeglm.basis.OwnHistory`): the
basis itself, the network's mask, the Newton solve's per-neuron columns against autograd and scipy, the
standard errors, the estimator's settings and the choice by ``window="auto"``."""

import numpy as np
import pytest
import scipy.optimize
import torch

import spikeglm as sg
from spikeglm.basis import OwnHistory, history
from spikeglm.inference import solve_glm
from spikeglm.inference.glm import mean_log_likelihood
from spikeglm.inference.newton import (
    _pass,
    _Problem,
    _Smooth,
    observed_information,
    parameters_of,
    set_parameters,
)
from spikeglm.inference.penalty import GroupLasso, Ridge
from spikeglm.model import LINKS, Network
from spikeglm.relax import poisson_log_pmf
from spikeglm.segments import Segments
from spikeglm.significance import standard_errors

COUPLINGS = sg.basis.get("exponential", window=5)
OWN = sg.basis.get("raised-cosine", window=20, n_basis=3)
BASIS = OwnHistory(COUPLINGS, OWN)


def bursting(n: int = 4, trials: int = 30, bins: int = 300, seed: int = 0) -> torch.Tensor:
    """Counts (trials, bins, n) of neurons coupled over 5 bins, each refractory and then bursting over 20
    bins of its own history."""
    network = Network(n, 0, BASIS)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        network.bias.fill_(-2.3)
        network.weight[..., 0] = torch.tensor(rng.uniform(-1.0, 1.0, (n, n)) * (rng.random((n, n)) < 0.5))
        network.weight[range(n), range(n), 1:] = torch.tensor([-3.0, 3.0, 2.0])
        network.restrict()
    return network.simulate(trials, bins, generator=torch.Generator().manual_seed(seed))


def own_design(counts: torch.Tensor, post: int, covariates: torch.Tensor | None = None) -> torch.Tensor:
    """Neuron ``post``'s design written out: 1, every neuron's past through the couplings' basis, the
    covariates, then its own past through the own-history basis."""
    past = history(counts.double(), COUPLINGS.matrix().double()).flatten(-2)
    own = history(counts[..., post : post + 1].double(), OWN.matrix().double()).flatten(-2)
    columns = [torch.ones_like(past[..., :1]), past]
    if covariates is not None:
        columns.append(covariates.double())
    return torch.cat([*columns, own], dim=-1).flatten(0, -2)


def minus_log_likelihood(link, design, counts, row, post):
    return -poisson_log_pmf(counts.double().flatten(0, -2)[:, post], LINKS[link](design @ row)).sum()


def test_the_basis_holds_both_sets_of_functions_and_round_trips():
    assert (BASIS.n_basis, BASIS.n_coupling, BASIS.window) == (4, 1, 20)
    matrix = BASIS.matrix(torch.float64)
    torch.testing.assert_close(matrix[:1, :5], COUPLINGS.matrix(torch.float64))
    assert not matrix[:1, 5:].any()
    torch.testing.assert_close(matrix[1:], OWN.matrix(torch.float64))
    assert sg.basis.from_dict(BASIS.to_dict()) == BASIS and COUPLINGS.n_coupling == 1
    assert BASIS.label == "exponential over 5 bins, own history also raised-cosine over 20 bins"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OwnHistory(COUPLINGS, sg.basis.get("exponential", window=5)), "is the couplings' basis"),
        (lambda: OwnHistory(BASIS, OWN), "couplings of an own-history basis must be a plain basis"),
        (lambda: OwnHistory(COUPLINGS, "raw"), "own of an own-history basis must be a plain basis"),
        (
            lambda: sg.basis.from_dict({"name": "own-history", "own": OWN.to_dict()}),
            "by 'couplings' and 'own'",
        ),
        (
            lambda: sg.basis.from_dict({"name": "own-history", "couplings": BASIS.to_dict(), "own": {}}),
            "cannot hold another",
        ),
    ],
)
def test_bad_own_history_bases_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_network_keeps_other_neurons_off_the_own_functions():
    """Couplings between distinct neurons stay zero on the own-history functions: at the start, and under
    gradient steps (no gradient reaches them); the rates are those of the design written out."""
    counts = bursting(n=3, trials=4, bins=100)
    network = Network(3, 0, BASIS)
    network.init_from_counts(counts, scale=0.5, generator=torch.Generator().manual_seed(0))
    off = ~torch.eye(3, dtype=torch.bool)
    assert not network.weight[off][:, 1:].any() and network.weight[off][:, 0].abs().sum() > 0
    network.log_likelihood(counts).sum().backward()
    assert not network.weight.grad[off][:, 1:].any() and network.weight.grad[~off].abs().sum() > 0
    theta = parameters_of(network)
    for post in range(3):
        expected = torch.nn.functional.softplus(own_design(counts, post) @ theta[post])
        torch.testing.assert_close(network.rates(counts).double().flatten(0, 1)[:, post], expected)


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_a_pass_and_the_information_match_autograd_on_each_neurons_own_design(link):
    """The solve's value, gradient and curvature blocks (with covariates and a ridge penalty), and the
    observed information, against autograd on each neuron's design written out (tolerances of the
    plain design's test in test_newton.py)."""
    counts = bursting(n=3, trials=6, bins=120)
    generator = torch.Generator().manual_seed(1)
    covariates = torch.randn(6, 120, 1, generator=generator)
    network = Network(3, 0, BASIS, link, n_covariates=1)
    theta = 0.3 * torch.randn(3, 1 + 3 + 1 + 3, generator=generator, dtype=torch.float64)
    theta[:, 0] -= 2.0
    penalty, scale = Ridge(0.01), 1 / 37.0
    data = Segments(counts, covariates=covariates)
    problem = _Problem(network, data, part_bins=250, offset=None)
    value, gradient, blocks = _pass(
        problem, theta, torch.ones(3, dtype=torch.bool), scale, _Smooth(network, penalty)
    )
    set_parameters(network.double(), theta)
    information = observed_information(network, data, part_bins=250)
    for post in range(3):
        design = own_design(counts, post, covariates)

        def objective(row, post=post, design=design):
            others = torch.cat([row[1 : 1 + post], row[2 + post : 4]])
            return (
                minus_log_likelihood(link, design, counts, row, post) * scale + 0.005 * others.square().sum()
            )

        row = theta[post].clone().requires_grad_(True)
        expected = objective(row)
        (expected_gradient,) = torch.autograd.grad(expected, row)
        assert float(value[post]) == pytest.approx(float(expected.detach()), rel=1e-12)
        torch.testing.assert_close(gradient[post], expected_gradient, rtol=1e-9, atol=1e-14)
        hessian = torch.autograd.functional.hessian(objective, theta[post].clone())
        torch.testing.assert_close(blocks[post], hessian, rtol=1e-5, atol=1e-8)
        plain = torch.autograd.functional.hessian(
            lambda r, p=post, d=design: minus_log_likelihood(link, d, counts, r, p), theta[post].clone()
        )
        torch.testing.assert_close(information[post], plain, rtol=1e-10, atol=1e-10)


def scipy_rows(counts: torch.Tensor) -> torch.Tensor:
    """Each neuron's maximum-likelihood row on its own design, by scipy's L-BFGS-B in float64."""
    rows = []
    for post in range(counts.shape[-1]):
        design = own_design(counts, post)

        def objective(row, post=post, design=design):
            theta = torch.tensor(row, requires_grad=True)
            value = minus_log_likelihood("softplus", design, counts, theta, post) / len(design)
            value.backward()
            return float(value.detach()), theta.grad.numpy()

        start = np.zeros(design.shape[1])
        start[0] = -2.0
        options = {"gtol": 1e-10, "ftol": 1e-16, "maxiter": 10_000}
        rows.append(scipy.optimize.minimize(objective, start, jac=True, method="L-BFGS-B", options=options).x)
    return torch.tensor(np.array(rows))


def test_newton_and_lbfgs_reach_the_optimum_found_independently():
    """Newton's solve against scipy's optimum on each neuron's own design, every parameter to 1e-4 and the
    log-likelihood to 1e-9 nats per neuron-bin; L-BFGS (in the parameters themselves: its whitening
    takes one design for all neurons) within 1e-6 below it; both keep the masked entries at zero."""
    counts = bursting()
    expected = scipy_rows(counts)
    data = Segments(counts)
    found = {}
    for solver in ("newton", "lbfgs"):
        network = Network(4, 0, BASIS)
        network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
        reason = solve_glm(network, data, solver=solver)[1]
        assert reason.startswith("converged in"), reason
        assert not network.weight[~torch.eye(4, dtype=torch.bool)][:, 1:].any()
        found[solver] = network
    torch.testing.assert_close(parameters_of(found["newton"]), expected, atol=1e-4, rtol=0)
    reference = Network(4, 0, BASIS)
    set_parameters(reference, expected)
    best = mean_log_likelihood(reference.double(), data)
    assert mean_log_likelihood(found["newton"].double(), data) == pytest.approx(best, abs=1e-9)
    assert 0 <= best - mean_log_likelihood(found["lbfgs"].double(), data) < 1e-6


def test_the_self_strengths_error_carries_both_sets_of_functions():
    """The standard error of a self-coupling's strength is that of the sum over both bases' functions
    (from the inverse of autograd's Hessian on the neuron's own design); a coupling's, of its one."""
    counts = bursting()
    network = Network(4, 0, BASIS).double()
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    solve_glm(network, Segments(counts), solver="newton")
    se = standard_errors(network, Segments(counts))[0]
    theta = parameters_of(network)
    sums = network.basis_matrix.sum(1)  # the float32 basis the network holds, in float64
    for post in range(4):
        design = own_design(counts, post)
        hessian = torch.autograd.functional.hessian(
            lambda r, p=post, d=design: minus_log_likelihood("softplus", d, counts, r, p), theta[post]
        )
        covariance = torch.linalg.inv(hessian)
        own = [1 + post, 5, 6, 7]
        expected_self = sums @ covariance[own][:, own] @ sums
        assert se[post, post] == pytest.approx(float(expected_self.sqrt()), rel=1e-8)
        other = (post + 1) % 4
        expected = sums[0] * covariance[1 + other, 1 + other].sqrt()
        assert se[post, other] == pytest.approx(float(expected), rel=1e-8)


def test_the_group_lasso_leaves_the_own_history_unpenalised():
    """Under a group lasso strong enough to zero every coupling, each neuron keeps its own history (both
    bases' weights), as it keeps its self-coupling with a plain basis."""
    counts = bursting()
    network = Network(4, 0, BASIS)
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    reason = solve_glm(network, Segments(counts), solver="newton", penalty=GroupLasso(1.0))[1]
    assert reason.startswith("converged in")
    off = ~torch.eye(4, dtype=torch.bool)
    assert not network.weight[off].any()
    assert (network.weight[~off][:, 1:].abs().amax(1) > 0.3).all()


def test_an_estimator_with_an_own_history_basis_predicts_bursts_and_keeps_it(tmp_path):
    """On bursting neurons the own-history basis predicts held-out counts better than the couplings'
    basis alone; the model file keeps the basis, the connectivity's filters reach its window."""
    counts = sg.SpikeCounts.from_array(bursting(trials=40).numpy().astype(np.uint8), bin_size="5 ms")
    train, test = counts[:30], counts[30:]
    plain = sg.POGLM(n_hidden=0).fit(train)
    own = sg.POGLM(n_hidden=0, self_basis="raised-cosine", self_window=20).fit(train)
    assert own.checked_settings().basis == OwnHistory(COUPLINGS, sg.basis.get("raised-cosine", window=20))
    assert own.score(test) > plain.score(test) + 5e-3
    own.save(tmp_path / "own.h5")
    loaded = sg.POGLM.load(tmp_path / "own.h5")
    assert loaded.score(test) == own.score(test)
    conn = loaded.connectivity()
    assert (
        conn.filters.shape == (4, 4, 20) and not conn.filters[0, 1, 5:].any() and conn.filters[0, 0, 5:].any()
    )


def test_auto_chooses_the_own_history_where_neurons_burst():
    """``window="auto"`` keeps the couplings' simplest basis and gives the own history a longer one."""
    counts = sg.SpikeCounts.from_array(bursting(trials=40).numpy().astype(np.uint8), bin_size="5 ms")
    model = sg.POGLM(n_hidden=0, window="auto").fit(counts)
    chosen = model.checked_settings().basis
    assert isinstance(chosen, OwnHistory) and chosen.couplings == COUPLINGS and chosen.own.window >= 10
    stages = model.basis_choice_["stages"]
    assert model.basis_choice_["chosen"] in stages["couplings"]


@pytest.mark.parametrize("objective", sg.inference.objectives.OBJECTIVES.names())
def test_fits_with_hidden_neurons_keep_other_neurons_off_the_own_functions(objective):
    """Every objective trains through the weights as the model reads them, so no step moves a coupling
    between distinct neurons onto the own-history functions (hidden neurons included)."""
    counts = sg.SpikeCounts.from_array(bursting(trials=8, bins=100).numpy().astype(np.uint8), bin_size="5 ms")
    model = sg.POGLM(n_hidden=1, self_basis="raised-cosine", self_window=20, objective=objective, epochs=3)
    weight = model.fit(counts).network_.weight.detach()
    off = ~torch.eye(5, dtype=torch.bool)
    assert not weight[off][:, 1:].any() and weight[~off][:, 1:].abs().sum() > 0


def test_an_own_history_window_longer_than_the_trials_is_refused_by_its_name():
    counts = sg.SpikeCounts.from_array(np.ones((3, 40, 2), dtype=np.uint8), bin_size="5 ms")
    with pytest.raises(
        ValueError, match=r"self_window=100 \(--self-window\) is longer than the longest trial"
    ):
        sg.POGLM(n_hidden=0, self_basis="raw", self_window=100).fit(counts)
    with pytest.raises(ValueError, match=r": window=60 \(--window\) is longer than the longest trial"):
        sg.POGLM(n_hidden=0, window=60, self_basis="raw", self_window=10).fit(counts)
