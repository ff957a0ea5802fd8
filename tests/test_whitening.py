"""The whitened coordinates of the GLM's L-BFGS solve: the curvature they promise (the identity at the
start, against the observed information computed apart), the chain rule of their map, and the solve in
them against Newton's optimum and against L-BFGS in the parameters themselves."""

import pytest
import torch
from test_newton import simulated

import spikeglm as sg
from spikeglm.inference import glm as glm_module
from spikeglm.inference import solve_glm
from spikeglm.inference import whitening as whitening_module
from spikeglm.inference.glm import _Closure, mean_log_likelihood
from spikeglm.inference.newton import observed_information, parameters_of, set_parameters
from spikeglm.inference.whitening import Whitening
from spikeglm.model import Network, inverse_link
from spikeglm.segments import Segments

BASIS = sg.basis.get("raised-cosine", window=8, n_basis=2)
#: The same couplings, and each neuron's own history over 20 bins besides.
OWN_HISTORY = sg.basis.OwnHistory(BASIS, sg.basis.get("raised-cosine", window=20, n_basis=3))


def problem(link: str, covariates: bool = True, basis: sg.basis.Basis = BASIS) -> tuple[Network, Segments]:
    """A network at the start of a solve (couplings zero, biases at the mean rates) and its data: cut
    segments with context, and two covariate columns of different scales."""
    counts = simulated(link, trials=12, bins=500)
    columns = None
    if covariates:
        columns = torch.randn(*counts.shape[:2], 2, generator=torch.Generator().manual_seed(1))
        columns = columns * torch.tensor([3.0, 0.2]) + torch.tensor([1.0, -0.5])
    data = Segments(counts, length=300, context=basis.window, covariates=columns)
    network = Network(counts.shape[-1], 0, basis, link, n_covariates=0 if columns is None else 2)
    with torch.no_grad():
        network.bias.copy_(inverse_link(link, counts.double().mean((0, 1))).float())
    return network.double(), data


def whitening_of(network: Network, data: Segments) -> Whitening:
    closure = _Closure(network, data, 2**15, None, network.glm_parameters(), None)
    return Whitening.of(network, data, closure.mine, closure.scale)


@pytest.mark.parametrize("joint", [True, False])
def test_the_curvature_at_the_start_is_the_identity_in_the_whitened_variables(joint, monkeypatch):
    """Exp link, every coupling at zero, each bias at its neuron's mean rate: each neuron's curvature (the
    observed information, computed apart, times the objective's scale) is the identity in the variables
    ``u = s theta R``, up to the jitter added to the moments (1e-6 of each variance, amplified by the
    correlation of the two basis functions: 1e-4). Where the columns are only centred and scaled (beyond
    the joint limit), its diagonal is still 1."""
    if not joint:
        monkeypatch.setattr(whitening_module, "JOINT_COLUMNS", 1)
    network, data = problem("exp")
    closure = _Closure(network, data, 2**15, None, network.glm_parameters(), None)
    whitening = Whitening.of(network, data, closure.mine, closure.scale)
    assert (whitening.factor is not None) == joint
    blocks = observed_information(network, data, part_bins=2**15) * closure.scale
    eye = torch.eye(blocks.shape[-1], dtype=torch.float64)
    for n, block in enumerate(blocks):
        left = whitening._times_inverse(eye) / whitening.scale[n]  # R^{-1} / s_n: d theta / d u
        curvature = left @ block @ left.T
        if joint:
            torch.testing.assert_close(curvature, eye, atol=1e-4, rtol=0)
        else:
            torch.testing.assert_close(curvature.diagonal(), eye.diagonal(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "link, slope",
    [
        ("exp", lambda rate: rate),
        ("softplus", lambda rate: 1 - torch.exp(-rate)),
        ("sigmoid", lambda rate: rate * (1 - rate)),
    ],
)
def test_each_neuron_is_scaled_by_the_poisson_weight_at_its_mean_rate(link, slope):
    """``s_n^2`` is the objective's scale times the scored bins times ``f'(eta)^2 / f(eta)`` at the
    predictor of the neuron's mean rate: the Fisher weight of a bin, in closed form for each link."""
    network, data = problem(link)
    closure = _Closure(network, data, 2**15, None, network.glm_parameters(), None)
    whitening = Whitening.of(network, data, closure.mine, closure.scale)
    rate = data.counts.double().mean((0, 1))
    expected = closure.scale * data.n_scored * slope(rate).square() / rate
    torch.testing.assert_close(whitening.scale.square(), expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("basis", [BASIS, OWN_HISTORY], ids=["one-basis", "own-history"])
@pytest.mark.parametrize("joint", [True, False])
def test_the_map_round_trips_and_its_gradient_is_the_chain_rule(joint, basis, monkeypatch):
    """Loading the start's variables gives back the start's parameters; for any linear function of the
    parameters, the variables' gradient set from the parameters' equals autograd's through the map. With
    an own-history basis, each neuron's own columns are centred and scaled apart."""
    if not joint:
        monkeypatch.setattr(whitening_module, "JOINT_COLUMNS", 1)
    network, data = problem("softplus", basis=basis)
    with torch.no_grad():
        network.weight.copy_(torch.randn(network.weight.shape, generator=torch.Generator().manual_seed(2)))
        network.restrict()
    start = parameters_of(network)
    whitening = whitening_of(network, data)
    whitening.load(network)
    torch.testing.assert_close(parameters_of(network), start, atol=1e-12, rtol=1e-12)
    direction = torch.randn(start.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    theta = whitening._times_inverse(whitening.variables / whitening.scale[:, None])
    (theta * direction).sum().backward()
    expected = whitening.variables.grad.clone()
    for parameter in network.glm_parameters():
        parameter.grad = None
    set_parameters(network, direction)  # a parameter's gradient is its coefficient in the function
    for parameter in network.glm_parameters():
        parameter.grad = parameter.detach().clone()
    whitening.pull_gradients(network)
    torch.testing.assert_close(whitening.variables.grad, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("link", ["exp", "softplus"])
def test_lbfgs_in_the_whitened_variables_reaches_newtons_optimum_in_far_fewer_iterations(link, monkeypatch):
    """L-BFGS in the whitened variables ends within 1e-7 nats per neuron-bin of Newton's optimum, in at
    most half the iterations L-BFGS takes in the parameters themselves (which ends no closer)."""
    solved = {}
    for name in ("newton", "whitened", "plain"):
        network, data = problem(link)
        network.float()
        if name == "plain":
            monkeypatch.setattr(glm_module, "whitens", lambda network, params: False)
        records, reason = solve_glm(network, data, solver="newton" if name == "newton" else "lbfgs")
        assert reason.startswith("converged"), reason
        solved[name] = (mean_log_likelihood(network.double(), data), len(records))
    best = solved["newton"][0]
    assert 0 <= best - solved["whitened"][0] < 1e-7
    assert best - solved["plain"][0] >= 0
    assert 2 * solved["whitened"][1] <= solved["plain"][1]


def test_couplings_from_a_silent_neuron_stay_at_zero():
    """A neuron that never fires has an empty history column: the whitening must not mix it into the
    others, so its couplings onto every neuron stay exactly zero, jointly factored or not."""
    counts = simulated("exp", trials=12, bins=500)
    counts = torch.cat([counts, torch.zeros_like(counts[..., :1])], dim=-1)
    network = Network(5, 0, BASIS, "exp")
    with torch.no_grad():
        network.bias.copy_(inverse_link("exp", counts.float().mean((0, 1))))
    reason = solve_glm(network, Segments(counts), solver="lbfgs")[1]
    assert reason.startswith("converged"), reason
    assert torch.all(network.weight[:, 4] == 0)
    assert float(network.bias[4].detach()) < -5


def test_a_constant_covariate_is_left_out_of_the_whitening():
    """A covariate column that never varies duplicates the intercept: only the sum of the two is
    determined. Whitened with the other columns, steps along their difference would be amplified a
    thousandfold (the jitter's square root); left out, L-BFGS reaches Newton's log-likelihood (to 1e-8)
    and the sum (to 1e-3) with every parameter as bounded as Newton's, a silent neuron's included."""
    counts = simulated("exp", trials=12, bins=500)
    counts[..., 3] = 0  # neuron 3 never fires: its bias falls without bound
    columns = torch.ones(*counts.shape[:2], 2)
    columns[..., 1] = torch.randn(counts.shape[:2], generator=torch.Generator().manual_seed(4)) * 1e3
    data = Segments(counts, covariates=columns)
    solved = {}
    for solver in ("newton", "lbfgs"):
        network = Network(4, 0, BASIS, "exp", n_covariates=2)
        reason = solve_glm(network, data, solver=solver)[1]
        assert reason.startswith("converged"), reason
        value = mean_log_likelihood(network.double(), data)
        solved[solver] = (value, network.bias.detach() + network.covariate_weight.detach()[:, 0])
        largest = max(float(p.detach().abs().max()) for p in network.glm_parameters())
        assert largest < 30, (solver, largest)
    assert abs(solved["newton"][0] - solved["lbfgs"][0]) < 1e-8
    torch.testing.assert_close(solved["lbfgs"][1][:3], solved["newton"][1][:3], atol=1e-3, rtol=0)
