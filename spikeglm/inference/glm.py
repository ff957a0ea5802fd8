"""The convex fit: a POGLM without hidden neurons is a Poisson GLM, solved by Newton's method (or by
full-batch L-BFGS in whitened coordinates for large designs, where Newton's curvature costs more or
would not fit in memory)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from spikeglm import parallel
from spikeglm.inference.newton import blocks_fit, newton_pays, newton_solve
from spikeglm.inference.penalty import GroupLasso, Penalty
from spikeglm.inference.stopping import spikes_per_bin
from spikeglm.inference.whitening import Whitening, whitens
from spikeglm.model import Network
from spikeglm.records import EpochRecord
from spikeglm.segments import PART_BINS, Batch, Segments

#: The GLM's solvers (:func:`solve_glm`).
SOLVERS = ("auto", "newton", "lbfgs")
#: The solve stops when an iteration changes the log-likelihood per spike by less than this...
GLM_TOLERANCE_CHANGE = 1e-9
#: ... or when no gradient component (of the log-likelihood per spike) exceeds this.
GLM_TOLERANCE_GRAD = 1e-7


def solve_glm(
    network: Network,
    data: Segments | torch.Tensor,
    *,
    max_iterations: int = 500,
    part_bins: int = PART_BINS,
    callback: Callable[[EpochRecord], None] | None = None,
    latent: Callable[[Batch], torch.Tensor] | None = None,
    penalty: Penalty | None = None,
    solver: str = "auto",
    tolerance_grad: float = GLM_TOLERANCE_GRAD,
) -> tuple[list[EpochRecord], str]:
    """Fit a network without hidden neurons by maximum likelihood, to convergence.

    With no hidden neuron the model is an ordinary Poisson GLM, whose log-likelihood is concave in the
    weights and biases for the exp and softplus links; no sampling is involved. Both solvers minimise
    minus the exact log-likelihood per spike of all the data (computed in parts of ``part_bins`` bins,
    shared among the processes under ``torch.distributed``), plus the penalty:

    * ``"newton"`` (:func:`spikeglm.inference.newton.newton_solve`): each neuron's Newton steps with
      its own line search, all neurons in each pass over the data, in float64. A neuron is done when
      no component of its gradient exceeds ``tolerance_grad``.
    * ``"lbfgs"``: L-BFGS steps with a strong-Wolfe line search, in whitened coordinates where it solves
      every GLM parameter (:mod:`~spikeglm.inference.whitening`: the curvature there is near the
      identity, so it takes a few iterations where it took tens to hundreds in the parameters
      themselves), until an iteration changes the objective by less than :data:`GLM_TOLERANCE_CHANGE`
      or no component of its gradient in those coordinates exceeds ``tolerance_grad``.
    * ``"auto"``: Newton where the design has at most 200 columns (``1 + N B + F``: beyond, its
      curvature costs more than L-BFGS's iterations) and its curvature blocks (N of them, ``(1 + N B +
      F)^2`` float64 each) fit in a quarter of the memory available
      (:func:`~spikeglm.inference.newton.newton_pays`), else L-BFGS.

    Either stops after ``max_iterations`` iterations. A group lasso penalty is not smooth: Newton's
    solve takes proximal Newton steps for it. Where L-BFGS would solve, ``"auto"`` takes proximal
    quasi-Newton steps, whose curvature is each block's diagonal with the design's correlations
    (:func:`~spikeglm.inference.newton.newton_solve`'s ``curvature="design"``: a pass costs what a
    gradient does, and the solve takes about as many iterations as Newton's), where those blocks fit in
    memory; ``"lbfgs"``, and ``"auto"`` where they do not fit, takes accelerated proximal gradient steps
    (:func:`proximal_solve`: hundreds of iterations). The solve draws no random number: the same data
    give the same fit, so an interrupted solve is simply run again.

    Parameters
    ----------
    network : Network
        Without hidden neurons; its parameters are the start and are replaced by the solution.
    data : Segments or torch.Tensor
        Visible counts: segments, or a tensor (trials, bins, V).
    max_iterations : int
        Most L-BFGS iterations.
    part_bins : int
        Bins computed at once.
    callback : callable, optional
        Called with each iteration's record.
    latent : callable, optional
        For a network with latent factors: ``latent(batch)``, a path of the factors in the batch's bins
        (segments, bins, K), taken as known. Only the couplings and biases are solved; the loadings and
        time constants stay as they are.
    penalty : Penalty, optional
        A penalty of the couplings between distinct neurons (:mod:`spikeglm.inference.penalty`): the
        solve then maximises the penalised log-likelihood.
    solver : {"auto", "newton", "lbfgs"}
        How the likelihood (with a smooth penalty) is maximised; see above.
    tolerance_grad : float
        The largest gradient component (per spike) of a solution: :data:`GLM_TOLERANCE_GRAD` by default.

    Returns
    -------
    records : list of EpochRecord
        One per iteration: the log-likelihood per visible neuron-bin after it (less the penalty).
    reason : str
        Why the solve stopped.
    """
    if network.n_hidden:
        raise ValueError(f"solve_glm fits networks without hidden neurons; this one has {network.n_hidden}")
    if solver not in SOLVERS:
        raise ValueError(f"unknown GLM solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    data = data if isinstance(data, Segments) else Segments(data)
    if network.n_latent and latent is None:
        raise ValueError("solve_glm of a network with latent factors needs their path (latent)")
    params = [p for p in network.glm_parameters() if p.requires_grad]
    exact = solver == "newton" or (solver == "auto" and newton_pays(network))
    # Beyond exact Newton, the group lasso takes proximal quasi-Newton steps where their blocks fit.
    quasi = isinstance(penalty, GroupLasso) and solver == "auto" and blocks_fit(network)
    if exact or quasi:
        return newton_solve(
            network,
            data,
            max_iterations=max_iterations,
            part_bins=part_bins,
            tolerance_grad=tolerance_grad,
            callback=callback,
            latent=latent,
            penalty=penalty,
            curvature="exact" if exact else "design",
        )
    if isinstance(penalty, GroupLasso):  # the likelihood's gradient steps, the penalty's proximal ones
        dtype = network.bias.dtype
        network.double()  # the steps' tests compare values that float32 sums do not resolve
        try:
            smooth_part = _Closure(network, data, part_bins, None, params, callback, latent)
            return proximal_solve(smooth_part, network, penalty, max_iterations)
        finally:
            network.to(dtype)
    closure = _Closure(network, data, part_bins, None, params, callback, latent, penalty)
    return _lbfgs(closure, max_iterations, tolerance_grad)


def _lbfgs(
    closure: _Closure, max_iterations: int, tolerance_grad: float = GLM_TOLERANCE_GRAD
) -> tuple[list[EpochRecord], str]:
    """Minimise the closure's objective by L-BFGS (strong-Wolfe line search) to convergence, in whitened
    coordinates (:mod:`~spikeglm.inference.whitening`) where it solves all the GLM's parameters."""
    params, network = closure.params, closure.network
    if whitens(network, params):
        closure.whitening = Whitening.of(network, closure.data, closure.mine, closure.scale)
    optimizer = torch.optim.LBFGS(
        params if closure.whitening is None else [closure.whitening.variables],
        lr=1,
        max_iter=max_iterations,
        max_eval=10 * max_iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=tolerance_grad,
        tolerance_change=GLM_TOLERANCE_CHANGE,
    )
    closure.optimizer = optimizer
    held = [p for p in network.parameters() if p.requires_grad and all(p is not q for q in params)]
    for parameter in held:  # the loadings and time constants stay as they are, without gradients
        parameter.requires_grad_(False)
    try:
        optimizer.step(closure)
    finally:
        for parameter in held:
            parameter.requires_grad_(True)
    if closure.whitening is not None:  # the line search's last point may not be the step it took
        closure.whitening.load(network)
    closure.finish()
    done = closure.iteration()
    if done >= max_iterations:
        return closure.records, f"reached the cap of {max_iterations} iterations (epochs) before converging"
    return closure.records, f"converged in {done} L-BFGS iterations (gradient or change below tolerance)"


class _Closure:
    """What L-BFGS evaluates: minus the log-likelihood per spike of all the data, with its gradient.

    The objective is per spike, so that its gradient has the same size however sparse the spikes (per
    neuron-bin, a recording at 1 Hz in 5 ms bins has gradients below any fixed tolerance). L-BFGS
    evaluates it a few times per iteration (its line search); an iteration is recorded, as the
    log-likelihood per visible neuron-bin, once the next one starts, with the best value its search found.
    """

    def __init__(
        self,
        network: Network,
        data: Segments,
        part_bins: int,
        optimizer: torch.optim.LBFGS | None,
        params: list[torch.nn.Parameter],
        callback: Callable[[EpochRecord], None] | None,
        latent: Callable[[Batch], torch.Tensor] | None = None,
        penalty: Penalty | None = None,
    ) -> None:
        self.network, self.data, self.optimizer, self.params = network, data, optimizer, params
        self.callback, self.latent, self.penalty = callback, latent, penalty
        self.per_bin = spikes_per_bin(data)
        self.scale = 1.0 / (self.per_bin * data.n_scored * data.n_units)
        self.mine = data.groups(part_bins)[parallel.rank() :: parallel.world_size()]
        self.records: list[EpochRecord] = []
        self.clock = time.perf_counter()
        self.whitening: Whitening | None = None

    def iteration(self) -> int:
        """L-BFGS's iterations so far."""
        assert self.optimizer is not None  # only L-BFGS calls the closure
        return self.optimizer.state[self.optimizer.param_groups[0]["params"][0]].get("n_iter", 0)

    def __call__(self) -> torch.Tensor:
        iteration = self.iteration()
        value = self._evaluate(iteration)
        if iteration > len(self.records):  # the first value of a new iteration: the last one is done
            self.record(iteration - 1, value)
        elif self.records:
            self.records[-1].objective = max(self.records[-1].objective, -value * self.per_bin)
        return torch.tensor(value, dtype=torch.float64)

    def record(self, iteration: int, value: float) -> None:
        """Close the last iteration (reporting it) and open iteration ``iteration`` at ``value``."""
        if self.records and self.callback is not None:
            self.callback(self.records[-1])
        now = time.perf_counter()
        self.records.append(EpochRecord(iteration, -value * self.per_bin, now - self.clock))
        self.clock = now

    def _evaluate(self, iteration: int) -> float:
        """The objective summed over this process's parts and the processes, with a smooth penalty's
        value (added once, after the sum); gradients likewise, and the whitened variables' from them."""
        if self.whitening is not None:
            self.whitening.load(self.network)
        for parameter in self.params:
            if parameter.grad is not None:
                parameter.grad.zero_()
        device = self.network.bias.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        for index in self.mine:
            batch = self.data.batch(index, dtype=self.network.bias.dtype, device=device)
            path = None if self.latent is None else self.latent(batch)
            log_likelihood = self.network.log_likelihood(
                batch.visible, latent=path, covariates=batch.covariates
            )
            if batch.scored is not None:
                log_likelihood = log_likelihood * batch.scored[..., None]
            loss = -log_likelihood.sum() * self.scale
            loss.backward()
            total += loss.detach().double()
        for parameter in self.params:
            if parameter.grad is None:  # a process with no part of the data: it adds nothing
                parameter.grad = torch.zeros_like(parameter)
            parallel.all_sum(parameter.grad)
        value = float(parallel.all_sum(total))
        if self.penalty is not None:
            extra = self.penalty.value(self.network.weight)
            extra.backward()
            value += float(extra.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the log-likelihood became non-finite at iteration {iteration}")
        if self.whitening is not None:
            self.whitening.pull_gradients(self.network)
        return value

    def finish(self) -> None:
        """Report the last iteration, which no next one closed."""
        if self.records and self.callback is not None:
            self.callback(self.records[-1])


#: The proximal solve stops when an iteration moves no parameter by more than this times its step, or
#: when the objective has not fallen by :data:`GLM_TOLERANCE_CHANGE` per spike in this many iterations.
PROXIMAL_TOLERANCE, PROXIMAL_PATIENCE = 1e-7, 10


def proximal_solve(
    closure: _Closure, network: Network, penalty: GroupLasso, max_iterations: int
) -> tuple[list[EpochRecord], str]:
    """Minimise minus the log-likelihood per spike plus a penalty that is not smooth (the group lasso):
    accelerated proximal gradient steps (FISTA), with a backtracking step size and a restart of the
    momentum whenever the objective rises.

    Each iteration takes a gradient step on the likelihood from the extrapolated point, then the
    penalty's proximal step on the couplings (the biases have none). The step is halved until the
    likelihood's quadratic bound holds (up to the rounding of the sums), and tried a little longer at the
    next iteration. The solve stops when the gradient mapping (the step's move divided by its size) is
    below :data:`PROXIMAL_TOLERANCE` in every parameter, when the objective has fallen by less than
    :data:`GLM_TOLERANCE_CHANGE` per spike in :data:`PROXIMAL_PATIENCE` iterations, or after
    ``max_iterations``. Returns the records and the reason, as :func:`solve_glm`.
    """
    weight, params = network.weight, closure.params
    noise = torch.finfo(weight.dtype).eps  # the relative rounding of a sum
    slack = 16 * noise
    current = [p.detach().clone() for p in params]
    momentum, step, progress = 1.0, 1.0, 0
    smooth = _value_and_gradient(closure, params, current, 0)
    best = smooth[0] + float(penalty.value(weight.detach()))
    closure.record(0, best)
    point = current
    for iteration in range(1, max_iterations + 1):
        value, gradient = (
            smooth if point is current else _value_and_gradient(closure, params, point, iteration)
        )
        while True:  # backtracking: the step's quadratic bound must hold at the new point
            moved = [x - step * g for x, g in zip(point, gradient, strict=True)]
            moved = [
                penalty.proximal(m, step) if p is weight else m for p, m in zip(params, moved, strict=True)
            ]
            new_value, new_gradient = _value_and_gradient(closure, params, moved, iteration)
            shift = [m - x for m, x in zip(moved, point, strict=True)]
            bound = value + sum(float((g * d).sum()) for g, d in zip(gradient, shift, strict=True))
            bound += sum(float(d.square().sum()) for d in shift) / (2 * step)
            if new_value <= bound + slack * abs(value):  # within the rounding of the sums
                break
            step /= 2
        objective = new_value + float(penalty.value(moved[params.index(weight)]))
        largest = max(float(d.abs().max()) for d in shift) / step
        if objective > best + slack * abs(best):  # the momentum overshot: restart it from the last iterate
            momentum, point = 1.0, current
            continue
        if best - objective > max(GLM_TOLERANCE_CHANGE, noise * abs(best)):
            progress = iteration
        following = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
        push = (momentum - 1) / following
        point = moved if push == 0 else [m + push * (m - c) for m, c in zip(moved, current, strict=True)]
        momentum, current, best, smooth = following, moved, objective, (new_value, new_gradient)
        closure.record(iteration, objective)
        step *= 1.25
        if largest < PROXIMAL_TOLERANCE or iteration - progress >= PROXIMAL_PATIENCE:
            reason = (
                f"converged in {iteration} proximal iterations (gradient mapping or change below tolerance)"
            )
            break
    else:
        reason = f"reached the cap of {max_iterations} iterations (epochs) before converging"
    with torch.no_grad():
        for parameter, solution in zip(params, current, strict=True):
            parameter.copy_(solution)
    closure.finish()
    return closure.records, reason


def _value_and_gradient(
    closure: _Closure, params: list[torch.nn.Parameter], values: list[torch.Tensor], iteration: int
) -> tuple[float, list[torch.Tensor]]:
    """Minus the log-likelihood per spike at the parameters ``values``, and its gradient."""
    with torch.no_grad():
        for parameter, given in zip(params, values, strict=True):
            parameter.copy_(given)
    value = closure._evaluate(iteration)
    return value, [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]


#: A coupling whose strength (its log-rate effect summed over the lags) exceeds this in magnitude is one
#: the data leave unbounded: a rate multiplied or divided by e^20 after each spike is no physiology, and
#: its maximum-likelihood value lies at infinity (e.g. a neuron that never fired within the window after
#: another's spikes).
UNBOUNDED_STRENGTH = 20.0


def unbounded_couplings(network: Network) -> list[tuple[int, int, float]]:
    """The couplings between distinct neurons of a solved network whose strength exceeds
    :data:`UNBOUNDED_STRENGTH` in magnitude, as ``(post, pre, strength)``, strongest first.

    A neuron's own history filter is left out: one that never fires twice within the window (absolute
    refractoriness at this bin size) has its maximum-likelihood self-coupling at minus infinity too, and
    that is the model's reading of a refractory period, which no penalty here touches.
    """
    with torch.no_grad():
        strength = network.weight.double() @ network.basis_matrix.double().sum(-1)
        strength.fill_diagonal_(0.0)
    post, pre = (strength.abs() > UNBOUNDED_STRENGTH).nonzero(as_tuple=True)
    found = [(int(n), int(m), float(strength[n, m])) for n, m in zip(post, pre, strict=True)]
    return sorted(found, key=lambda item: -abs(item[2]))


def likelihood_gradient(network: Network, data: Segments, part_bins: int = PART_BINS) -> torch.Tensor:
    """The gradient of minus the log-likelihood per spike (what :func:`solve_glm` minimises, unpenalised)
    in the coupling weights of a network without hidden neurons, shape (post, pre, basis)."""
    closure = _Closure(network, data, part_bins, None, network.glm_parameters(), None)
    closure._evaluate(0)
    assert network.weight.grad is not None  # the evaluation set it
    gradient = network.weight.grad.detach().clone()
    network.zero_grad(set_to_none=True)
    return gradient


def mean_log_likelihood(network: Network, data: Segments, part_bins: int = PART_BINS) -> float:
    """The exact log-likelihood per visible neuron-bin of ``data`` under a network without hidden
    neurons, computed ``part_bins`` bins at a time (what :func:`solve_glm`'s records hold)."""
    closure = _Closure(network, data, part_bins, None, network.glm_parameters(), None)
    value = closure._evaluate(0)
    network.zero_grad(set_to_none=True)
    return -value * closure.per_bin
