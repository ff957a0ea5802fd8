"""Penalised couplings: the solves reach the penalised optimum, the strength is cross-validated, and the
errors and tests say what they mean under a penalty (or are refused)."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from test_newton import simulated

import spikeglm as sg
from spikeglm.basis import get as get_basis
from spikeglm.inference import TrainingConfig, glm_start, newton, solve_glm, train
from spikeglm.inference.glm import likelihood_gradient
from spikeglm.inference.penalty import GroupLasso, Ridge, largest_strength
from spikeglm.inference.strength import PAST_BEST, refined_strength
from spikeglm.inference.trainer import _StepLoss
from spikeglm.model import Network
from spikeglm.segments import Segments
from spikeglm.variational import Posterior


@pytest.fixture(scope="module")
def small():
    """A sparse network of 6 neurons, 8 trials of 300 bins: few enough spikes that penalties matter."""
    return sg.synthetic.network("sparse-ei", seed=1, n_visible=6, n_hidden=0, n_train=8, n_test=4, n_bins=300)


def _network(counts: torch.Tensor, basis: str = "raised-cosine", link: str = "softplus") -> Network:
    options = {"window": 10, "n_basis": 3} if basis == "raised-cosine" else {}
    network = Network(counts.shape[-1], 0, get_basis(basis, **options), link)
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    return network


def _stationary_gradient(network: Network, data: Segments) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of minus the log-likelihood per spike in the weights and the biases."""
    return likelihood_gradient(network, data), _bias_gradient(network, data)


def _bias_gradient(network: Network, data: Segments) -> torch.Tensor:
    spikes = float(data.counts.sum())
    loss = -network.log_likelihood(data.counts).sum() / spikes
    (gradient,) = torch.autograd.grad(loss, network.bias)
    return gradient


def test_ridge_solve_reaches_the_penalised_optimum(small):
    """scipy's L-BFGS-B, run to a tight tolerance from the solve's answer, finds less than 1e-6 nats per
    spike more; and the penalty shrinks the couplings."""
    counts = torch.tensor(small.train.counts, dtype=torch.float64)
    network, data, penalty = _network(counts, "exponential").double(), Segments(counts), Ridge(3e-3)
    solve_glm(network, data, penalty=penalty)
    spikes = float(counts.sum())
    shapes = [p.shape for p in (network.weight, network.bias)]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        values = torch.tensor(flat).split([math.prod(shape) for shape in shapes])
        weight, bias = (v.reshape(shape) for v, shape in zip(values, shapes, strict=True))
        with torch.no_grad():
            network.weight.copy_(weight)
            network.bias.copy_(bias)
        loss = -network.log_likelihood(counts).sum() / spikes + penalty.value(network.weight)
        gradients = torch.autograd.grad(loss, [network.weight, network.bias])
        return float(loss.detach()), torch.cat([g.reshape(-1) for g in gradients]).numpy()

    start = torch.cat([network.weight.detach().reshape(-1), network.bias.detach()]).numpy().copy()
    found = objective(start)[0]
    best = minimize(objective, start, jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10})
    assert found - best.fun < 1e-6
    pairs = Ridge.pairs(network.weight.detach())
    free = _network(counts, "exponential").double()
    solve_glm(free, data)
    weight = torch.tensor(best.x[: math.prod(shapes[0])]).reshape(shapes[0])
    assert (weight * pairs).norm() < 0.9 * (free.weight.detach() * pairs).norm()


def test_cross_validated_ridge_fit_records_its_choice_and_errors(small, tmp_path):
    plain = sg.POGLM(n_hidden=0).fit(small.train)
    model = sg.POGLM(n_hidden=0, penalty="ridge").fit(small.train)
    table = model.fit_options_["penalty_cv"]
    scores, strengths = np.asarray(table["scores"]), table["strengths"]
    assert scores.shape == (len(strengths), 5)
    assert strengths == sorted(strengths, reverse=True)
    assert table["chosen"] == strengths[int(np.argmax(scores.mean(axis=1)))]
    # The path's points, half a decade apart from the largest, and the vertex of the parabola through
    # the best of them and its neighbours, scored too.
    positive = np.asarray([strength for strength in strengths if strength > 0])
    steps = np.log10(positive / positive[0]) / 0.5
    (vertex,) = np.flatnonzero(np.abs(steps - np.round(steps)) > 1e-6)
    path = np.delete(np.arange(len(strengths)), vertex)
    assert strengths[vertex] == refined_strength([strengths[i] for i in path], scores.mean(axis=1)[path])
    # The path ends with none, or after PAST_BEST strengths in a row scored below its best.
    best = int(np.argmax(scores.mean(axis=1)[path]))
    assert strengths[-1] == 0.0 or len(path) - 1 - best == PAST_BEST
    assert len(path) == 12 or len(path) - 1 - best == PAST_BEST
    assert model.fit_options_["penalty_strength"] == table["chosen"]
    # Errors of the penalised information: a prior on the couplings narrows them.
    off = ~np.eye(6, dtype=bool)
    if table["chosen"] > 0:
        assert np.all(model.strength_se_[off] < plain.strength_se_[off])
    conn = model.connectivity()
    assert "penalised" in conn.metadata["se_method"] and conn.metadata["penalty"] == "ridge"
    assert len(conn.significance()) == 36
    model.save(tmp_path / "ridge.h5")
    loaded = sg.POGLM.load(tmp_path / "ridge.h5")
    assert (loaded.penalty, loaded.penalty_strength) == ("ridge", table["chosen"])
    np.testing.assert_array_equal(loaded.strength_se_, model.strength_se_)


@pytest.mark.parametrize("seed", range(5))
def test_refined_strength_is_the_vertex_of_a_parabola_in_log_strength(seed):
    """Scores that are a parabola in log(strength) peak at its vertex, which the refinement finds from
    the best point and its neighbours (unevenly spaced), to rounding; it stays between them."""
    rng = np.random.default_rng(seed)
    path = sorted(10.0 ** rng.uniform(-6, 0, size=6), reverse=True)
    peak = rng.uniform(np.log(path[4]), np.log(path[1]))
    scores = np.append(-rng.uniform(0.5, 2.0) * (np.log(path) - peak) ** 2 + rng.normal(), -1e9)
    best = int(np.argmax(scores))
    found = refined_strength([*path, 0.0], scores)
    assert path[best + 1] <= found <= path[best - 1]
    assert math.isclose(math.log(found), peak, rel_tol=0, abs_tol=1e-9)


def test_refined_strength_keeps_the_best_point_without_a_neighbour_each_side():
    path = [1e-2, 1e-3, 1e-4, 0.0]
    assert refined_strength(path, np.array([0.0, -1.0, -2.0, -3.0])) == 1e-2  # the strongest
    assert refined_strength(path, np.array([-3.0, -2.0, 0.0, -1.0])) == 1e-4  # beside none
    assert refined_strength(path, np.array([-3.0, -2.0, -1.0, 0.0])) == 0.0  # none at all
    assert refined_strength(path, np.array([-1.0, 0.0, -1.0, -3.0])) == pytest.approx(1e-3)  # symmetric
    assert refined_strength(path, np.array([-np.inf, 0.0, -1.0, -3.0])) == 1e-3  # a neighbour's -inf


def test_group_lasso_meets_its_optimality_conditions(small):
    """At the optimum, a filter kept has gradient -strength sqrt(B) w / |w|; one set to zero has a
    gradient no longer than strength sqrt(B); biases and each neuron's own filter have none."""
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    network, data = _network(counts), Segments(counts)
    penalty = GroupLasso(0.2 * largest_strength(likelihood_gradient(network, data)))
    reason = solve_glm(network, data, penalty=penalty, max_iterations=3000)[1]
    assert reason.startswith("converged")
    assert network.weight.dtype == torch.float32  # solved in float64, handed back as it came
    weight = network.weight.detach()
    gradient, bias_gradient = _stationary_gradient(network, data)
    threshold = penalty.strength * math.sqrt(weight.shape[-1])
    norms = weight.norm(dim=-1)
    off = ~torch.eye(weight.shape[0], dtype=torch.bool)
    zero, kept = off & (norms == 0), off & (norms > 0)
    assert zero.any() and kept.any()  # the strength chose some filters and dropped others
    assert gradient.norm(dim=-1)[zero].max() <= threshold * 1.001
    direction = weight[kept] / norms[kept][:, None]
    assert (gradient[kept] + threshold * direction).abs().max() < 0.01 * threshold
    assert gradient[~off].abs().max() < 0.01 * threshold
    assert bias_gradient.abs().max() < 0.01 * threshold


@pytest.mark.parametrize("link", ["softplus", "exp"])
def test_group_lasso_by_proximal_newton_beats_the_proximal_gradient_solve_in_a_few_passes(small, link):
    """Newton's solve (proximal Newton steps) and L-BFGS's (accelerated proximal gradient steps) reach
    the same optimum; Newton's is at least as low, keeps the same filters, and takes a few iterations
    where the gradient steps take hundreds."""
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    data = Segments(counts)
    solved = {}
    for solver in ("newton", "lbfgs"):
        network = _network(counts, link=link)
        penalty = GroupLasso(0.1 * largest_strength(likelihood_gradient(network, data)))
        records, reason = solve_glm(network, data, penalty=penalty, solver=solver, max_iterations=5000)
        assert reason.startswith("converged")
        solved[solver] = (records, network.weight.detach().norm(dim=-1) > 0)
    (newton, kept), (gradient_steps, kept_too) = solved["newton"], solved["lbfgs"]
    assert len(newton) <= 15 < 10 * len(newton) < len(gradient_steps)
    assert newton[-1].objective >= gradient_steps[-1].objective - 1e-9  # the higher the better
    assert newton[-1].objective - gradient_steps[-1].objective < 1e-6
    assert torch.equal(kept, kept_too)


@pytest.mark.parametrize("link", ["softplus", "exp"])
def test_group_lasso_beyond_newton_takes_quasi_newton_steps_to_newtons_optimum(small, link, monkeypatch):
    """Where exact Newton does not pay (here: every network, by a column limit of 1), the group lasso is
    solved by proximal quasi-Newton steps of the design's curvature: the same optimum as exact Newton's
    (objective to 1e-9, the same filters kept) in at most twice its iterations, where the proximal
    gradient steps take hundreds."""
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    data = Segments(counts)
    strength = 0.1 * largest_strength(likelihood_gradient(_network(counts, link=link), data))
    solved = {}
    for solver in ("newton", "auto"):
        network = _network(counts, link=link)
        if solver == "auto":
            monkeypatch.setattr(newton, "NEWTON_COLUMNS", 1)
        records, reason = solve_glm(network, data, penalty=GroupLasso(strength), solver=solver)
        solved[solver] = (records, reason, network.weight.detach().norm(dim=-1) > 0)
    (exact, _, kept), (quasi, reason, kept_too) = solved["newton"], solved["auto"]
    assert reason.startswith("converged") and "proximal quasi-Newton" in reason
    assert len(quasi) <= 2 * len(exact) + 2
    assert abs(quasi[-1].objective - exact[-1].objective) < 1e-9
    assert torch.equal(kept, kept_too)


def test_the_design_curvature_is_exact_where_every_rate_is_constant(small):
    """Under the exp link with the couplings at zero, each neuron's rate is the same in every bin, so its
    curvature block is that rate times the design's second moments: the diagonal-and-correlations block
    equals the exact one (to the float32 rounding of the exact blocks' products)."""
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    network, data = _network(counts, link="exp"), Segments(counts)
    theta = newton.parameters_of(network)
    assert bool((theta[:, 1:] == 0).all())
    active = torch.ones(theta.shape[0], dtype=torch.bool)
    smooth = newton._Smooth(network, None)
    blocks = {}
    for exact in (True, False):
        problem = newton._Problem(network, data, 2**12, None, exact=exact)
        blocks[exact] = newton._pass(problem, theta, active, 1.0, smooth)[2]
    torch.testing.assert_close(blocks[False], blocks[True], rtol=1e-5, atol=1e-6)
    network.weight.data.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))  # rates now vary
    theta = newton.parameters_of(network)
    varied = [
        newton._pass(newton._Problem(network, data, 2**12, None, exact=e), theta, active, 1.0, smooth)[2]
        for e in (True, False)
    ]
    torch.testing.assert_close(
        varied[0].diagonal(dim1=1, dim2=2), varied[1].diagonal(dim1=1, dim2=2), rtol=1e-5, atol=1e-6
    )
    assert float((varied[0] - varied[1]).abs().max()) > 1e-3  # the rest is an approximation there


def _subproblem(seed: int, n: int, n_basis: int, decades: tuple, ridge: float, strength: float) -> tuple:
    """A random proximal Newton subproblem of ``n`` neurons: parameters, gradients, curvature blocks
    whose scales span ``decades`` (neurons of very different rates), and the group lasso's groups."""
    generator = torch.Generator().manual_seed(seed)
    size = 1 + n * n_basis
    factor = torch.randn(n, size, size, generator=generator, dtype=torch.float64)
    spread = 10.0 ** torch.linspace(*decades, size, dtype=torch.float64)
    blocks = spread[:, None] * (factor @ factor.transpose(1, 2) + ridge * torch.eye(size)) * spread[None, :]
    theta = torch.randn(n, size, generator=generator, dtype=torch.float64)
    gradient = torch.randn(n, size, generator=generator, dtype=torch.float64)
    return theta, gradient, blocks, newton._Groups(GroupLasso(strength), torch.arange(n), n, n_basis)


@pytest.mark.parametrize("inner_steps", [1, 3])
def test_a_proximal_newton_step_cut_short_still_lowers_its_model(monkeypatch, inner_steps):
    """However few accelerated steps solve the subproblem, the step returned lowers the quadratic model
    (a plain proximal gradient step is taken where the accelerated ones left it higher), so the line
    search has a descent to find."""
    monkeypatch.setattr(newton, "_INNER_STEPS", inner_steps)
    theta, gradient, blocks, groups = _subproblem(5, 6, 3, (-2, 2), 0.01, 0.3)
    step, decrease = newton._proximal_steps(theta, gradient, blocks, groups)
    assert (newton._model(theta, gradient, blocks, groups, step) < 0).all()
    assert (decrease > 0).all()


def test_the_proximal_newton_step_solves_its_quadratic_model():
    """On blocks of very different scales (neurons of very different rates), the step meets the
    optimality conditions of ``g^T d + d^T H d / 2 + penalty(theta + d)`` to a tenth of the gradient
    mapping it starts from."""
    theta, gradient, blocks, groups = _subproblem(3, 4, 2, (-3, 2), 0.1, 0.5)
    step, decrease = newton._proximal_steps(theta, gradient, blocks, groups)
    assert (decrease > 0).all()
    model_gradient = gradient + (blocks @ step[..., None])[..., 0]
    residual = groups.mapping(theta + step, model_gradient).abs().amax(-1)
    assert (residual <= groups.mapping(theta, gradient).abs().amax(-1) / 10 + 1e-12).all()


def test_group_lasso_path_ends_at_zero_and_at_the_plain_fit(small):
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    data = Segments(counts)
    network = _network(counts, "exponential")
    scale = largest_strength(likelihood_gradient(network, data))
    solve_glm(network, data, penalty=GroupLasso(1.5 * scale), max_iterations=2000)
    off = ~torch.eye(6, dtype=torch.bool)
    assert (network.weight.detach().norm(dim=-1)[off] == 0).all()  # beyond the scale: every pair zero
    plain, unpenalised = _network(counts, "exponential"), _network(counts, "exponential")
    plain_value = solve_glm(plain, data)[0][-1].objective
    zero_value = solve_glm(unpenalised, data, penalty=GroupLasso(0.0), max_iterations=3000)[0][-1].objective
    # The same optimum per neuron-bin (the proximal steps, in float64, end a little higher if anything).
    assert plain_value - 1e-7 <= zero_value <= plain_value + 1e-5


def test_group_lasso_fit_has_no_wald_test(small):
    model = sg.POGLM(n_hidden=0, penalty="group-lasso", penalty_strength=1e-3).fit(small.train)
    assert model.strength_se_ is None
    with pytest.raises(ValueError, match="group-lasso fit has no standard errors"):
        model.connectivity().significance()


def test_a_group_lasso_fit_records_the_strength_at_which_each_zeroed_filter_would_enter(small, tmp_path):
    """Each filter set to zero has the strength below which the penalty's own proximal step, from the fit
    with every other parameter held, would move it; each kept one the fit's strength. Kept in the model
    file and the connectivity's table of pairs; a fit without the group lasso has none."""
    model = sg.POGLM(n_hidden=0, penalty="group-lasso", penalty_strength=1e-3).fit(small.train)
    entry, strength = model.entry_strength_, model.fit_options_["penalty_strength"]
    weight = model.network_.weight.detach().double()
    kept = weight.norm(dim=-1).numpy() > 0
    off = ~np.eye(len(entry), dtype=bool)
    assert (off & kept).any() and (off & ~kept).any()
    assert (entry[off & kept] == strength).all() and (np.diag(entry) == 0).all()
    assert (entry[off & ~kept] < strength * 1.001).all()  # the fit's optimality condition
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    gradient = likelihood_gradient(model.network_, Segments(counts)).double()
    step = 0.5
    for post, pre in zip(*np.nonzero(off & ~kept), strict=True):
        moved = torch.zeros(2, 2, gradient.shape[-1], dtype=torch.float64)
        moved[0, 1] = -step * gradient[post, pre]  # the proximal gradient step from zero, as a pair's
        stays = GroupLasso(entry[post, pre] * (1 + 1e-6)).proximal(moved, step)
        leaves = GroupLasso(entry[post, pre] * (1 - 1e-3)).proximal(moved, step)
        assert stays.norm() == 0 and leaves.norm() > 0, (post, pre)
    path = tmp_path / "lasso.h5"
    model.save(path)
    loaded = sg.POGLM.load(path)
    np.testing.assert_array_equal(loaded.entry_strength_, entry)
    pairs = loaded.connectivity().pairs()
    np.testing.assert_array_equal(pairs["entry_strength"], entry.ravel())  # row post, column pre
    ridge = sg.POGLM(n_hidden=0, penalty="ridge", penalty_strength=1e-3).fit(small.train)
    assert ridge.entry_strength_ is None and "entry_strength" not in ridge.connectivity().pairs()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_hidden": 1, "penalty": "group-lasso"}, r"penalty='group-lasso' \(--penalty\) applies to fits"),
        ({"n_hidden": 0, "n_latent": 1, "penalty": "group-lasso"}, "n_latent=1: use penalty='ridge'"),
        ({"n_hidden": 0, "penalty": "lasso"}, "penalty"),
        ({"n_hidden": 0, "penalty": "ridge", "penalty_strength": "fast"}, "penalty_strength"),
        ({"n_hidden": 0, "penalty": "ridge", "penalty_strength": -1.0}, "penalty_strength"),
    ],
)
def test_bad_penalty_settings_are_refused_by_name(small, settings, message):
    with pytest.raises(ValueError, match=message):
        sg.POGLM(**settings).fit(small.train)


def test_penalty_strength_is_checked():
    with pytest.raises(ValueError, match="penalty_strength"):
        Ridge(math.nan)


def test_the_designs_curvature_holds_a_silent_neuron_and_a_constant_covariate(monkeypatch):
    """Hostile columns for the design's correlations: a neuron that never fires (an empty history column
    and a bias that falls without bound), a constant covariate (the intercept again: only their sum is
    determined) and a covariate a thousand times the others' scale. The group lasso's proximal
    quasi-Newton solve still converges to exact Newton's objective (to 1e-8), the silent neuron's
    couplings stay zero, and every parameter stays as bounded as Newton's."""
    counts = simulated("exp", trials=12, bins=500)
    counts[..., 3] = 0
    columns = torch.ones(*counts.shape[:2], 2)
    columns[..., 1] = torch.randn(counts.shape[:2], generator=torch.Generator().manual_seed(4)) * 1e3
    data = Segments(counts, covariates=columns)
    basis = get_basis("raised-cosine", window=8, n_basis=2)
    solved = {}
    for solver in ("newton", "auto"):
        if solver == "auto":
            monkeypatch.setattr(newton, "NEWTON_COLUMNS", 1)
        network = Network(4, 0, basis, "exp", n_covariates=2)
        records, reason = solve_glm(network, data, penalty=GroupLasso(1e-3), solver=solver)
        assert reason.startswith("converged"), reason
        assert torch.all(network.weight[:, 3] == 0)
        largest = max(float(p.detach().abs().max()) for p in network.glm_parameters())
        assert largest < 30, (solver, largest)
        solved[solver] = records[-1].objective
    assert "quasi-Newton" in reason
    assert abs(solved["newton"] - solved["auto"]) < 1e-8


# ---------------------------------------------------------------- the ridge with hidden neurons or factors


def _posterior(network: Network) -> Posterior:
    n_visible, n_hidden = network.n_visible, network.n_hidden
    return Posterior("forward-backward", n_visible, n_hidden, network.basis_matrix, "softplus")


def test_the_ridge_joins_a_trained_fits_loss_at_the_penalised_glms_scale(small, monkeypatch):
    """The training's loss is a mean over segments; the penalty joins it times the spikes per segment, so
    that its gradient is the penalised GLM's objective's (per spike) times the spikes per segment."""
    counts = torch.tensor(small.train.counts, dtype=torch.float64)
    data = Segments(counts)
    network = Network(6, 1, get_basis("exponential"), "softplus")
    network.init_from_counts(counts, scale=0.1, generator=torch.Generator().manual_seed(0))
    network, posterior = network.double(), _posterior(network).double()
    penalty = Ridge(2e-3)
    seen = []

    def look(self, *batch):
        seen.append(self)
        raise InterruptedError  # the loss the trainer built is all this test needs

    monkeypatch.setattr(_StepLoss, "forward", look)
    with pytest.raises(InterruptedError):
        train(network, posterior, data, TrainingConfig(epochs=1), penalty=penalty)
    step_loss = seen[0]
    assert step_loss.penalty is penalty
    assert step_loss.spikes_per_segment == pytest.approx(float(counts.sum()) / len(data))
    monkeypatch.undo()
    torch.manual_seed(0)
    with_penalty = step_loss(counts[:4], None, None, None)[0]
    step_loss.penalty = None
    torch.manual_seed(0)
    without = step_loss(counts[:4], None, None, None)[0]
    pairs = Ridge.pairs(network.weight.detach())
    expected = step_loss.spikes_per_segment * 0.5 * 2e-3 * float((network.weight.detach() ** 2 * pairs).sum())
    assert float((with_penalty - without).detach()) == pytest.approx(expected, rel=1e-9)


def test_a_hidden_fit_under_a_strong_ridge_has_small_couplings_from_a_penalised_start(small):
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    options = {"n_hidden": 1, "epochs": 3, "seed": 0}
    plain = sg.POGLM(**options).fit(small.train)
    ridged = sg.POGLM(**options, penalty="ridge", penalty_strength=0.05).fit(small.train)
    pairs = Ridge.pairs(torch.zeros(7, 7, 1))[..., 0].numpy().astype(bool)
    assert (
        np.abs(ridged.connectivity().strength[pairs]).max()
        < 0.3 * np.abs(plain.connectivity().strength[pairs]).max()
    )
    assert ridged.fit_options_["penalty_strength"] == 0.05
    # The start's GLM is the penalised one.
    network = Network(6, 1, get_basis("exponential"), "softplus")
    network.init_from_counts(counts, scale=0.1, generator=torch.Generator().manual_seed(0))
    glm = Network(6, 0, get_basis("exponential"), "softplus")
    glm.bias.data.copy_(network.bias.data[:6])
    solve_glm(glm, Segments(counts), penalty=Ridge(0.05))
    glm_start(network, _posterior(network), Segments(counts), penalty=Ridge(0.05))
    np.testing.assert_allclose(network.weight.detach()[:6, :6], glm.weight.detach(), atol=1e-5)


def test_a_hidden_fits_cross_validated_ridge_is_the_visible_glms(small):
    glm = sg.POGLM(n_hidden=0, penalty="ridge").fit(small.train)
    hidden = sg.POGLM(n_hidden=1, penalty="ridge", epochs=2, seed=0).fit(small.train)
    np.testing.assert_allclose(
        hidden.fit_options_["penalty_cv"]["scores"], glm.fit_options_["penalty_cv"]["scores"], atol=1e-4
    )  # each solve ends within its tolerance of the same optimum, from biases a little apart
    # The refinement between the path's points reads those scores: about the same strength.
    chosen = glm.fit_options_["penalty_strength"]
    assert chosen > 0 and hidden.fit_options_["penalty_strength"] == pytest.approx(chosen, rel=0.1)


def test_a_fit_with_factors_under_the_ridge_has_penalised_errors_given_the_path(small, tmp_path):
    options = {"n_hidden": 0, "n_latent": 1, "epochs": 3, "seed": 0}
    plain = sg.POGLM(**options).fit(small.train)
    model = sg.POGLM(**options, penalty="ridge", penalty_strength=0.01).fit(small.train)
    assert model.strength_se_source_["method"] == "fisher-latent-penalised"
    off = ~np.eye(6, dtype=bool)
    assert np.all(model.strength_se_[off] < plain.strength_se_[off])
    assert np.abs(model.connectivity().strength[off]).max() < np.abs(plain.connectivity().strength[off]).max()
    method = model.connectivity().metadata["se_method"]
    assert "ridge-penalised likelihood given the latent factors' posterior mean path" in method
    model.save(tmp_path / "latent_ridge.h5")
    loaded = sg.POGLM.load(tmp_path / "latent_ridge.h5")
    assert loaded.strength_se_source_ == model.strength_se_source_
    np.testing.assert_array_equal(loaded.strength_se_, model.strength_se_)


def test_a_ridge_fit_resumes_exactly_and_refuses_another_penalty(small, tmp_path):
    options = {"n_hidden": 1, "epochs": 6, "seed": 1, "penalty": "ridge", "penalty_strength": 0.01}
    checkpoint = tmp_path / "ridge.ckpt.h5"

    def interrupt(record):
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sg.POGLM(**options).fit(small.train, checkpoint=checkpoint, callback=interrupt, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"other data or options: penalty 'ridge' \(now None\)"):
        sg.POGLM(**{**options, "penalty": None}).fit(small.train, checkpoint=checkpoint, resume=True)
    resumed = sg.POGLM(**options).fit(small.train, checkpoint=checkpoint, resume=True)
    whole = sg.POGLM(**options).fit(small.train)
    np.testing.assert_array_equal(resumed.connectivity().weights, whole.connectivity().weights)
