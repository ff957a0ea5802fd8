"""The convex fit: a POGLM without hidden neurons is a Poisson GLM, solved by full-batch L-BFGS."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from spikeglm import parallel
from spikeglm.inference.penalty import Penalty
from spikeglm.inference.stopping import spikes_per_bin
from spikeglm.model import Network
from spikeglm.records import EpochRecord
from spikeglm.segments import PART_BINS, Batch, Segments

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
) -> tuple[list[EpochRecord], str]:
    """Fit a network without hidden neurons by maximum likelihood: full-batch L-BFGS, to convergence.

    With no hidden neuron the model is an ordinary Poisson GLM, whose log-likelihood is concave in the
    weights and biases for the exp and softplus links; no sampling is involved. Each iteration is one
    L-BFGS step with a strong-Wolfe line search on the exact log-likelihood of all the data (computed in
    parts of ``part_bins`` bins, shared among the processes under ``torch.distributed``). The solve stops
    when an iteration changes the log-likelihood per spike by less than :data:`GLM_TOLERANCE_CHANGE`,
    when no gradient component exceeds :data:`GLM_TOLERANCE_GRAD`, or after ``max_iterations``
    iterations. It draws no random number: the same data give the same fit, so an interrupted solve is
    simply run again.

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

    Returns
    -------
    records : list of EpochRecord
        One per iteration: the log-likelihood per visible neuron-bin after it (less the penalty).
    reason : str
        Why the solve stopped.
    """
    if network.n_hidden:
        raise ValueError(f"solve_glm fits networks without hidden neurons; this one has {network.n_hidden}")
    data = data if isinstance(data, Segments) else Segments(data)
    if network.n_latent and latent is None:
        raise ValueError("solve_glm of a network with latent factors needs their path (latent)")
    params = [p for p in (network.weight, network.bias) if p.requires_grad]
    return _lbfgs(_Closure(network, data, part_bins, None, params, callback, latent, penalty), max_iterations)


def _lbfgs(closure: _Closure, max_iterations: int) -> tuple[list[EpochRecord], str]:
    """Minimise the closure's objective by L-BFGS (strong-Wolfe line search) to convergence."""
    params, network = closure.params, closure.network
    optimizer = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iterations,
        max_eval=10 * max_iterations,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=GLM_TOLERANCE_GRAD,
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
    closure.finish()
    done = optimizer.state[params[0]].get("n_iter", 0)
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

    def __call__(self) -> torch.Tensor:
        assert self.optimizer is not None  # only L-BFGS calls the closure
        iteration = self.optimizer.state[self.params[0]].get("n_iter", 0)
        value = self._evaluate(iteration)
        if iteration > len(self.records):  # the first value of a new iteration: the last one is done
            self.record(iteration - 1, value)
        elif self.records:
            self.records[-1].objective = max(self.records[-1].objective, -value * self.per_bin)
        return torch.tensor(value)

    def record(self, iteration: int, value: float) -> None:
        """Close the last iteration (reporting it) and open iteration ``iteration`` at ``value``."""
        if self.records and self.callback is not None:
            self.callback(self.records[-1])
        now = time.perf_counter()
        self.records.append(EpochRecord(iteration, -value * self.per_bin, now - self.clock))
        self.clock = now

    def _evaluate(self, iteration: int) -> float:
        """The objective summed over this process's parts and the processes, with a smooth penalty's
        value (added once, after the sum); gradients likewise."""
        for parameter in self.params:
            if parameter.grad is not None:
                parameter.grad.zero_()
        device = self.network.bias.device
        total = torch.zeros((), dtype=torch.float64, device=device)
        for index in self.mine:
            batch = self.data.batch(index, device=device)
            path = None if self.latent is None else self.latent(batch)
            log_likelihood = self.network.log_likelihood(batch.visible, latent=path)
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
        return value

    def finish(self) -> None:
        """Report the last iteration, which no next one closed."""
        if self.records and self.callback is not None:
            self.callback(self.records[-1])


def _value_and_gradient(
    closure: _Closure, params: list[torch.nn.Parameter], values: list[torch.Tensor], iteration: int
) -> tuple[float, list[torch.Tensor]]:
    """Minus the log-likelihood per spike at the parameters ``values``, and its gradient."""
    with torch.no_grad():
        for parameter, given in zip(params, values, strict=True):
            parameter.copy_(given)
    value = closure._evaluate(iteration)
    return value, [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]


def likelihood_gradient(network: Network, data: Segments, part_bins: int = PART_BINS) -> torch.Tensor:
    """The gradient of minus the log-likelihood per spike (what :func:`solve_glm` minimises, unpenalised)
    in the coupling weights of a network without hidden neurons, shape (post, pre, basis)."""
    params = [network.weight, network.bias]
    closure = _Closure(network, data, part_bins, None, params, None)
    _, gradient = _value_and_gradient(closure, params, [p.detach().clone() for p in params], 0)
    network.zero_grad(set_to_none=True)
    return gradient[0]
