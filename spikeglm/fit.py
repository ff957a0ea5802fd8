"""Variational objectives and the training loop of the POGLM.

For visible counts ``x`` of one trial and hidden counts ``z ~ q(z | x)``, the importance weight is
``log w = log p(x, z) - log q(z | x)``; ``E_q[log w]`` is the evidence lower bound (ELBO) and
``E[log mean_k w_k]`` over K samples the tighter importance-weighted bound (IWAE).

Gradients:

* pathwise (``"eat-cubic"``, ``"eat-sigmoid"``, ``"gumbel-softmax"``): ``z`` is a relaxed sample,
  differentiable in the variational rates, and ``log p(x, z)`` scores it with the Poisson log-pmf
  extended to real counts;
* score function (``"exact"``): ``z`` is an integer Poisson sample and the variational gradient is
  ``E[(log w - b) grad log q(z)]`` with a leave-one-out baseline ``b`` over the samples of a trial.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spikeglm import relax
from spikeglm.evaluate import marginal_log_likelihood
from spikeglm.model import Network
from spikeglm.variational import Posterior, log_weights

OBJECTIVES = ("elbo", "iwae")


def surrogate_loss(
    log_w: torch.Tensor, log_q: torch.Tensor, objective: str, score_function: bool
) -> torch.Tensor:
    """Loss whose gradient estimates minus the gradient of the objective, averaged over trials."""
    n_samples = log_w.shape[0]
    if objective == "iwae":
        bound = torch.logsumexp(log_w, dim=0) - math.log(n_samples)  # (trials,)
        if not score_function:
            return -bound.mean()
        # Each sample's learning signal: the bound minus the bound with that sample left out (VIMCO-style).
        signal = _leave_one_out_signal(log_w.detach())
        return -(bound + (signal * log_q).sum(0)).mean()
    if not score_function:
        return -log_w.mean()
    baseline = (log_w.sum(0) - log_w) / (n_samples - 1) if n_samples > 1 else torch.zeros_like(log_w)
    return -(log_w + (log_w.detach() - baseline.detach()) * log_q).mean()


def _leave_one_out_signal(log_w: torch.Tensor) -> torch.Tensor:
    n = log_w.shape[0]
    bound = torch.logsumexp(log_w, 0) - math.log(n)
    if n == 1:
        return bound.expand_as(log_w)
    others_mean = (log_w.sum(0) - log_w) / (n - 1)  # geometric-mean replacement for the left-out weight
    replaced = log_w.unsqueeze(0).expand(n, *log_w.shape).clone()
    idx = torch.arange(n)
    replaced[idx, idx] = others_mean
    return bound - (torch.logsumexp(replaced, 1) - math.log(n))


@dataclass
class EpochRecord:
    """What one training epoch did: its mean objective per visible neuron-bin and time taken."""

    epoch: int
    objective: float
    seconds: float
    validation: float | None = None


class ProgressLine:
    """A one-line progress display of a fit (epoch, objective, time spent and left), as a callback.

    On a terminal the line is redrawn in place; elsewhere (logs, notebooks' captured output) a line is
    written every ``every`` epochs.
    """

    def __init__(self, epochs: int, stream=None, every: int = 50) -> None:
        self.epochs, self.every = epochs, every
        self.stream = sys.stderr if stream is None else stream
        self.elapsed, self.seen = 0.0, 0
        self.redraw = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, record: EpochRecord) -> None:
        self.elapsed += record.seconds
        self.seen += 1
        done = record.epoch + 1
        left = self.elapsed / self.seen * (self.epochs - done)
        line = (
            f"epoch {done}/{self.epochs}  objective {record.objective:.4f}"
            + ("" if record.validation is None else f"  validation {record.validation:.4f}")
            + f"  {self.elapsed:.1f} s, ~{left:.0f} s left"
        )
        if self.redraw:
            self.stream.write("\r" + line + ("\n" if done == self.epochs else ""))
        elif done % self.every == 0 or done == self.epochs:
            self.stream.write(line + "\n")
        self.stream.flush()


def train(
    network: Network,
    posterior: Posterior,
    visible: torch.Tensor,
    *,
    relaxation: str = "eat-cubic",
    temperature: float = 0.5,
    n_samples: int = 5,
    objective: str = "elbo",
    epochs: int = 500,
    lr: float = 0.02,
    batch_size: int | None = None,
    validation: torch.Tensor | None = None,
    eval_every: int = 10,
    patience: int = 10,
    train_network: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[EpochRecord], None] | None = None,
    first_epoch: int = 0,
    optimizer_state: dict | None = None,
    checkpoint: Callable[[int, dict], None] | None = None,
    checkpoint_every: int = 50,
) -> list[EpochRecord]:
    """Fit the network and the posterior to visible counts (trials, bins, V) with Adam.

    Each epoch visits the trials once in a random order, in mini-batches of ``batch_size`` trials (all
    at once by default). With ``validation`` counts, the importance-sampled log-likelihood per visible
    neuron-bin is computed every ``eval_every`` epochs; training stops after ``patience`` evaluations
    without improvement and the best parameters are restored. With ``train_network=False`` only the
    posterior learns (the network stays as it is, e.g. at the true parameters for an oracle score).

    Checkpoints: ``checkpoint(epochs_done, optimizer_state)`` is called every ``checkpoint_every`` epochs
    and when the fit is interrupted (KeyboardInterrupt, which is then raised again). A fit resumes from
    ``first_epoch`` with the optimizer's saved ``optimizer_state``; early stopping starts afresh then.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    relax.get(relaxation)  # a clear error for an unknown name before any work
    score_function = relaxation == "exact"
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1; got {n_samples}")
    n_trials, n_bins, n_visible = visible.shape
    batch_size = n_trials if batch_size is None else max(1, min(batch_size, n_trials))
    modules = (network, posterior) if train_network else (posterior,)
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    records: list[EpochRecord] = []
    best = (-math.inf, None)
    stale = 0
    try:
        for epoch in range(first_epoch, epochs):
            start = time.perf_counter()
            order = torch.randperm(n_trials, generator=generator)
            total = 0.0
            for first in range(0, n_trials, batch_size):
                batch = visible[order[first : first + batch_size]]
                log_w, log_q = log_weights(network, posterior, batch, n_samples, relaxation, temperature)
                loss = surrogate_loss(log_w, log_q, objective, score_function)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(log_w.detach().mean(0).sum())
            seconds = time.perf_counter() - start
            record = EpochRecord(epoch, total / (n_trials * n_bins * n_visible), seconds)
            if validation is not None and (epoch + 1) % eval_every == 0:
                record.validation = marginal_log_likelihood(network, posterior, validation, n_samples=64)
                if record.validation > best[0]:
                    best, stale = (record.validation, _snapshot(network, posterior)), 0
                else:
                    stale += 1
            records.append(record)
            if callback is not None:
                callback(record)
            if checkpoint is not None and (epoch + 1) % checkpoint_every == 0:
                checkpoint(epoch + 1, optimizer.state_dict())
            if stale >= patience:
                break
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint(first_epoch + len(records), optimizer.state_dict())
        raise
    if best[1] is not None:
        network.load_state_dict(best[1][0])
        posterior.load_state_dict(best[1][1])
    return records


def _snapshot(network: Network, posterior: Posterior) -> tuple[dict, dict]:
    return copy.deepcopy(network.state_dict()), copy.deepcopy(posterior.state_dict())
