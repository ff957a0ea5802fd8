"""The convex stage: with no hidden neuron the fit is an ordinary Poisson GLM, solved to convergence."""

import numpy as np
import pytest
import scipy.optimize
import torch

import spikeglm as sg
from spikeglm.inference import Plateau, Settled, auto_batch_size, glm_start, solve_glm
from spikeglm.model import Network
from spikeglm.segments import Segments
from spikeglm.variational import Posterior


def simulated(link: str, seed: int = 0) -> sg.SpikeCounts:
    basis = sg.basis.get("exponential", window=5)
    network = sg.model.Network(3, 0, basis, link)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        network.weight.copy_(torch.tensor(rng.uniform(-1.0, 0.3, (3, 3, 1)), dtype=torch.float32))
        network.bias.copy_(torch.tensor([-2.0, -1.5, -1.0]))
    counts = network.simulate(30, 200, generator=torch.Generator().manual_seed(seed))
    return sg.SpikeCounts.from_array(counts.numpy().astype(np.uint8), bin_size="5 ms")


def scipy_optimum(counts: sg.SpikeCounts, link: str) -> tuple[np.ndarray, float]:
    """The same log-likelihood maximised independently: scipy's L-BFGS-B in float64."""
    template = sg.model.Network(3, 0, sg.basis.get("exponential", window=5), link).double()
    x = torch.tensor(counts.counts, dtype=torch.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight = torch.tensor(theta[:9].reshape(3, 3, 1), requires_grad=True)
        bias = torch.tensor(theta[9:], requires_grad=True)
        rates = template.link(bias + template._drive(x, weight))
        loss = -sg.relax.poisson_log_pmf(x, rates).sum() / x.numel()
        loss.backward()
        return loss.item(), np.concatenate([weight.grad.numpy().ravel(), bias.grad.numpy()])

    start = np.concatenate([np.zeros(9), np.full(3, -1.0)])
    found = scipy.optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000}
    )
    return found.x, -found.fun


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_the_glm_fit_reaches_the_optimum_found_independently(link):
    counts = simulated(link)
    model = sg.POGLM(n_hidden=0, link=link).fit(counts)
    theta, best = scipy_optimum(counts, link)
    assert model.stopped_.startswith("converged")
    # The optimum's value agrees to 1e-6 nats per neuron-bin. The fit computes in float32, where the
    # log-likelihood is this flat over about 0.005 in the weights: a tenth of their standard errors
    # here (about 0.05, from 18,000 bins), so the weights are compared to 0.01.
    assert model.history_[-1].objective == pytest.approx(best, abs=1e-6)
    np.testing.assert_allclose(model.network_.weight.detach().numpy().ravel(), theta[:9], atol=0.01)
    np.testing.assert_allclose(model.network_.bias.detach().numpy(), theta[9:], atol=0.01)
    assert model.score(counts, n_particles=1) == pytest.approx(best, abs=1e-6)  # exact with no hidden neuron


def test_the_glm_fit_uses_no_random_numbers_and_records_each_iteration():
    counts = simulated("softplus", seed=1)
    first = sg.POGLM(n_hidden=0, seed=0, n_samples=1).fit(counts)
    second = sg.POGLM(n_hidden=0, seed=7, n_samples=9, relaxation="exact").fit(counts)
    assert torch.equal(first.network_.weight, second.network_.weight)
    objectives = [record.objective for record in first.history_]
    assert len(objectives) > 3 and objectives[-1] >= max(objectives) - 1e-7
    assert objectives[-1] > objectives[0]


def test_a_cap_on_iterations_is_reported():
    model = sg.POGLM(n_hidden=0, epochs=2).fit(simulated("exp"))
    assert len(model.history_) <= 2 and model.stopped_.startswith("reached the cap of 2 iterations")


def test_the_solve_is_refused_for_hidden_neurons():
    network = sg.model.Network(3, 1, sg.basis.get("exponential"), "softplus")
    with pytest.raises(ValueError, match="without hidden neurons"):
        solve_glm(network, torch.zeros(2, 10, 3))


def test_the_plateau_rule_stops_on_a_flat_objective_and_not_on_a_rising_one():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 2e-4, 400)  # epoch-to-epoch noise of a stochastic objective
    rising = -1 + 1e-3 * np.arange(400) + noise  # still gaining 1e-3 per epoch
    flat = -1 + noise
    rule = Plateau(tol=1e-4)
    assert not any(rule.update(v) for v in rising)
    rule = Plateau(tol=1e-4)
    stops = [rule.update(v) for v in flat]
    assert any(stops) and stops.index(True) < 60
    assert not any(Plateau(tol=None).update(v) for v in flat)


def test_the_settling_rule_tells_a_rise_from_noise_whatever_the_groups_levels():
    """16 groups of segments at levels 100 apart (what differs between segments cancels from an
    epoch's rise); per epoch each group's objective moves by noise of sd 0.01, so that the rise of the
    epoch's total has a standard error of 0.057. A rise of 0.4 per epoch (7 standard errors) never
    settles; no rise settles within 3 epochs in 95% of 400 runs (the rule errs when noise alone rises by
    2 standard errors: 2.5% of epochs); a rise below ``tol`` settles at once, and ``tol=None`` never
    does."""
    rng = np.random.default_rng(0)
    levels = 100.0 * np.arange(16)

    def epochs(rise: float, n: int = 12) -> list[np.ndarray]:
        return [levels + rise / 16 * k + rng.normal(0, 0.01, 16) for k in range(n)]

    for _ in range(20):
        rule = Settled(tol=0.0)
        assert not any(rule.update(sums) for sums in epochs(0.4))
    settled_by = []
    for _ in range(400):
        rule = Settled(tol=0.0)
        stops = [rule.update(sums) for sums in epochs(0.0)]
        settled_by.append(stops.index(True) if any(stops) else 99)
    assert np.mean(np.array(settled_by) <= 3) > 0.95 and min(settled_by) == 1
    rule = Settled(tol=0.5)
    assert [rule.update(sums) for sums in epochs(0.4, 2)] == [False, True]
    rule = Settled(tol=None)
    assert not any(rule.update(sums) for sums in epochs(0.0))


def test_stochastic_fits_stop_once_converged_and_say_so(diffpoglm):
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=2, link="sigmoid", seed=0).fit(train)
    assert len(model.history_) < 500 and model.stopped_.startswith("converged: the smoothed objective")
    assert auto_batch_size(model._segments(torch.zeros(40, 100, 3))) == 10  # 40 trials: 4 steps per epoch
    capped = sg.POGLM(n_hidden=2, link="sigmoid", seed=0, epochs=5).fit(train)
    assert capped.stopped_ == "ran the 5 epochs set"


@pytest.mark.parametrize("drive", ["strong", 0.0])
def test_the_glm_start_finds_the_shared_input(drive):
    """glm_start: the visible block starts at the GLM's fit; with strong hidden drive every hidden neuron
    starts along a principal component of the GLM's errors, and the three components together span the
    true hidden couplings; with hidden neurons that drive nothing, no component stands out of the noise
    and the hidden neurons keep their small random start."""
    truth, train, _ = sg.synthetic.network(protocol="sparse-ei", seed=0, hidden_drive=drive)
    visible = torch.from_numpy(np.asarray(train.counts, dtype=np.float32))
    basis = sg.basis.from_dict(truth.metadata["basis"])
    network = Network(30, 3, basis, "softplus")
    posterior = Posterior("forward-backward", 30, 3, network.basis_matrix, "softplus")
    network.init_from_counts(visible, scale=0.1, generator=torch.Generator().manual_seed(0))
    glm_start(network, posterior, Segments(visible))
    glm = sg.POGLM(n_hidden=0, basis=basis).fit(train).network_
    torch.testing.assert_close(network.weight[:30, :30], glm.weight, rtol=1e-4, atol=1e-4)
    started = network.weight.detach()[:30, 30:, 0].numpy()
    if drive == 0.0:
        assert np.abs(started).max() < 0.6  # std 0.1 over 90 couplings: observed 0.41 at most
        return
    np.testing.assert_allclose(np.abs(started).max(axis=0), 1.0)
    np.testing.assert_allclose(posterior.future.detach()[:, :, 0].abs().amax(1), 0.5)
    true = truth.weights[:30, 30:, 0]
    # Each true column lies mostly in the span of the started ones (observed: 0.978-0.980 of its norm).
    basis, _ = np.linalg.qr(started)
    captured = np.linalg.norm(basis.T @ true, axis=0) / np.linalg.norm(true, axis=0)
    assert captured.min() > 0.8, captured


def test_the_hidden_neurons_components_are_rotated_to_sparse_ones():
    """sparse_rotation (varimax) recovers loadings of disjoint support from any rotation of them, to
    1e-6 up to the order and signs of the columns (5 seeds); the rotated columns stay orthonormal and
    span the same space; a single component is left as it is."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        groups = rng.permutation(np.arange(30) % 3)
        sparse = np.zeros((30, 3))
        sparse[np.arange(30), groups] = rng.uniform(0.5, 2.0, 30)
        sparse /= np.linalg.norm(sparse, axis=0)
        turn, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        found = sg.inference.start.sparse_rotation(torch.tensor(sparse @ turn)).numpy()
        match = np.abs(found.T @ sparse)  # |cosine| of each found column with each true one
        assert np.allclose(np.sort(match.max(axis=1)), 1.0, atol=1e-6) and len(set(match.argmax(axis=1))) == 3
        np.testing.assert_allclose(found.T @ found, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(found @ found.T, sparse @ sparse.T, atol=1e-12)
    single = torch.tensor(sparse[:, :1])
    assert sg.inference.start.sparse_rotation(single) is single
