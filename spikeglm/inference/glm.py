"""The convex fit: a POGLM without hidden neurons is a Poisson GLM, solved by full-batch L-BFGS."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from spikeglm import parallel
from spikeglm.inference.stopping import spikes_per_bin
from spikeglm.model import Network
from spikeglm.records import EpochRecord
from spikeglm.segments import PART_BINS, Segments

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

    Returns
    -------
    records : list of EpochRecord
        One per iteration: the log-likelihood per visible neuron-bin after it.
    reason : str
        Why the solve stopped.
    """
    if network.n_hidden:
        raise ValueError(f"solve_glm fits networks without hidden neurons; this one has {network.n_hidden}")
    data = data if isinstance(data, Segments) else Segments(data)
    params = [p for p in network.parameters() if p.requires_grad]
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
    device = network.bias.device
    # The objective is the log-likelihood per spike, whose gradient has the same size however sparse the
    # spikes (per neuron-bin, a recording at 1 Hz in 5 ms bins has gradients below any fixed tolerance).
    per_bin = spikes_per_bin(data)
    scale = 1.0 / (per_bin * data.n_scored * data.n_units)
    mine = data.groups(part_bins)[parallel.rank() :: parallel.world_size()]
    records: list[EpochRecord] = []
    clock = [time.perf_counter()]

    def closure() -> torch.Tensor:
        # L-BFGS evaluates the objective a few times per iteration (its line search); an iteration is
        # recorded once the next one starts, with the best value its search found.
        iteration = optimizer.state[params[0]].get("n_iter", 0)
        optimizer.zero_grad(set_to_none=False)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for index in mine:
            batch = data.batch(index, device=device)
            log_likelihood = network.log_likelihood(batch.visible)
            if batch.scored is not None:
                log_likelihood = log_likelihood * batch.scored[..., None]
            loss = -log_likelihood.sum() * scale
            loss.backward()
            total += loss.detach().double()
        for parameter in params:
            parallel.all_sum(parameter.grad)
        value = float(parallel.all_sum(total))
        if not math.isfinite(value):
            raise FloatingPointError(f"the log-likelihood became non-finite at iteration {iteration}")
        if iteration > len(records):  # the first value of a new iteration: the last one is done
            if records and callback is not None:
                callback(records[-1])
            now = time.perf_counter()
            records.append(EpochRecord(iteration - 1, -value * per_bin, now - clock[0]))
            clock[0] = now
        elif records:
            records[-1].objective = max(records[-1].objective, -value * per_bin)
        return torch.tensor(value)

    optimizer.step(closure)
    if records and callback is not None:
        callback(records[-1])
    done = optimizer.state[params[0]].get("n_iter", 0)
    if done >= max_iterations:
        reason = f"reached the cap of {max_iterations} iterations (epochs) before converging"
    else:
        reason = f"converged in {done} L-BFGS iterations (gradient or change below tolerance)"
    return records, reason
