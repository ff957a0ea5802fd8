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

import contextlib
import copy
import dataclasses
import math
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from spikeglm import parallel, relax, smc
from spikeglm.memory import available_memory, format_bytes
from spikeglm.model import Network, mean_counts
from spikeglm.options import whole
from spikeglm.records import EpochRecord
from spikeglm.segments import Batch, Segments
from spikeglm.settings import DEFAULTS, TRAINING_SETTINGS
from spikeglm.settings import OBJECTIVES as OBJECTIVES  # declared with the settings, still named here
from spikeglm.settings import PART_BINS as PART_BINS
from spikeglm.settings import STARTS as STARTS
from spikeglm.variational import Posterior, log_weights

#: Floats that training keeps per parameter: the value, its gradient and Adam's two moments, and the copy
#: of the best parameters that early stopping keeps.
_ADAM_COPIES = 5
#: The same for L-BFGS (fits without hidden neurons, and the GLM a fit with hidden neurons starts from):
#: value, gradient, a few directions, and the 20 pairs of its history.
_LBFGS_COPIES = 44
#: Tensors of (samples, bins, neurons) that a step keeps for its gradient: rates, predictors, the complete
#: counts, the log-probabilities and their intermediates.
_STEP_TENSORS = 17
#: Tensors of (bins, units, basis functions) that a step holds: the histories (past and future) of the
#: visible counts, the copies the convolutions make, and the design the couplings multiply.
_DESIGN_TENSORS = 8


def fit_memory(
    n_visible: int,
    n_hidden: int,
    window: int,
    n_basis: int,
    part_bins: int,
    n_samples: int,
    objective: str = "elbo",
    *,
    score_trials: int = 0,
    score_bins: int = 0,
    n_particles: int = 0,
) -> dict[str, float]:
    """The memory a fit needs at its peak, in bytes, by what it is for; estimated from the settings alone.

    Counted, in 4-byte floats unless said otherwise (``N = n_visible + n_hidden`` neurons, ``B =
    n_basis`` basis functions of ``window`` lags, ``b = part_bins`` bins of one part of a step, context
    included, ``S = n_samples``):

    ``"parameters"``
        The network's couplings (N x N x B) and biases, the posterior's readings of the visible past and
        future (2 x H x V x B) and of the hidden past (H x H x B), times the copies the optimiser keeps
        (gradients and Adam's moments; L-BFGS's history without hidden neurons).
    ``"start"``
        Fits with hidden neurons: the visible neurons' GLM they start from (its L-BFGS copies) and the
        correlation matrix of its errors with its eigenvectors, (V + 1) x (V + 1) float64 several times.
        Fits without: the observed information behind the standard errors, N blocks of (1 + N B)^2
        float64 (and a copy).
    ``"step"``
        One part of a training step: the design (the basis-filtered histories of the visible counts, b x V
        x B, with the convolutions' copies), and for each of the S samples the hidden counts, their history
        (b x H x B) and the rates and log-probabilities of every neuron (b x N) that the gradient needs; a
        particle objective (``"fivo"``, ``"likelihood"``) also keeps each bin's window of hidden history
        (b x window x H per particle).
    ``"scoring"``
        With ``score_trials`` held-out trials of ``score_bins`` bins scored by ``n_particles`` particles
        (:func:`spikeglm.smc.log_likelihood`, as cross-validation does): every particle's window of
        hidden history and rates of every neuron, and the visible drive of a block of bins.

    The estimate is meant to be within a factor of about two of the peak a CPU fit reaches (the tests
    compare the two); what it leaves out (the counts themselves, torch's own footprint) is small next to
    what it counts whenever the total matters.

    Returns
    -------
    dict
        Bytes by part (the keys above, those that apply), in that order.
    """
    n_neurons = n_visible + n_hidden
    floats = 4
    parameters = n_parameters(n_visible, n_hidden, n_basis)
    copies = _LBFGS_COPIES if n_hidden == 0 else _ADAM_COPIES
    parts = {"parameters": float(parameters) * copies * floats}
    if n_hidden:
        glm = float(n_visible) * n_visible * n_basis * _LBFGS_COPIES * floats
        parts["start"] = glm + 6.0 * (n_visible + 1) ** 2 * 8
    else:
        parts["start"] = 2.0 * n_neurons * (1 + n_neurons * n_basis) ** 2 * 8
    design = float(part_bins) * n_visible * n_basis * _DESIGN_TENSORS
    samples = float(n_samples) * part_bins * (_STEP_TENSORS * n_neurons + 4 * n_hidden * n_basis)
    if objective in ("fivo", "likelihood") and n_hidden:
        samples += 2.0 * n_samples * part_bins * window * n_hidden
    parts["step"] = (design + (samples if n_hidden else _STEP_TENSORS * part_bins * n_neurons)) * floats
    if score_trials and n_hidden:
        block = min(score_bins, 4096) + window
        particles = float(score_trials) * n_particles * (3 * window * n_hidden + 4 * n_neurons)
        parts["scoring"] = (particles + 5.0 * score_trials * block * n_neurons) * floats
    return parts


#: What each part of :func:`fit_memory` holds, for messages.
MEMORY_PARTS = {
    "parameters": "the couplings with the optimiser's copies of them",
    "start": "the start of the fit (or the standard errors of a GLM)",
    "step": "one part of a training step",
    "scoring": "the particles that score the held-out counts",
}


def check_memory(parts: dict[str, float], where: str, advice: dict[str, str]) -> None:
    """Refuse a computation whose parts (:func:`fit_memory`) add up to more than :func:`available_memory`.

    Raises
    ------
    ValueError
        One line naming ``where``, the total, what is available, the largest part and ``advice[part]``:
        what to change.
    """
    total, available = sum(parts.values()), available_memory()
    if total > available:
        largest = max(parts, key=parts.__getitem__)
        raise ValueError(
            f"{where}: the fit would take about {format_bytes(total)} of memory, more than the "
            f"{format_bytes(available)} available; most of it ({format_bytes(parts[largest])}) is "
            f"{MEMORY_PARTS[largest]}: {advice[largest]}"
        )


def n_parameters(n_visible: int, n_hidden: int, n_basis: int) -> int:
    """Parameters of a model and its posterior: couplings and biases of every neuron, and the posterior's
    readings of the visible past and future and of the hidden past, with its biases."""
    n_neurons = n_visible + n_hidden
    return n_neurons * (n_neurons * n_basis + 1) + n_hidden * ((2 * n_visible + n_hidden) * n_basis + 1)


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


class ProgressLine:
    """A one-line progress display of a fit (epoch, objective, time spent and left), as a callback.

    On a terminal the line is redrawn in place; elsewhere (logs, notebooks' captured output) a line is
    written every ``every`` epochs.
    """

    def __init__(self, epochs: int, stream=None, every: int = 50, label: str = "epoch") -> None:
        self.epochs, self.every, self.label = epochs, every, label
        self.stream = sys.stderr if stream is None else stream
        self.elapsed, self.seen = 0.0, 0
        self.redraw = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, record: EpochRecord) -> None:
        self.elapsed += record.seconds
        self.seen += 1
        done = record.epoch + 1
        left = self.elapsed / self.seen * (self.epochs - done)
        line = (
            f"{self.label} {done}/{self.epochs}  objective {record.objective:.4f}"
            + ("" if record.validation is None else f"  validation {record.validation:.4f}")
            + f"  {self.elapsed:.1f} s, ~{left:.0f} s left"
        )
        if self.redraw:
            self.stream.write("\r" + line + ("\n" if done == self.epochs else ""))
        elif done % self.every == 0 or done == self.epochs:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass
class Resume:
    """Where an interrupted fit stands: finished epochs, finished steps of the next one and their sums.

    A checkpoint taken inside an epoch records the steps done in it, with the objective summed over
    them and the seconds spent, so that a resumed fit skips exactly those steps and gives the epoch the
    record the uninterrupted fit would.
    """

    epochs_done: int = 0
    steps_done: int = 0
    objective_sum: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class TrainingConfig:
    """How a fit trains: every option of the training loop, checked as :mod:`spikeglm.settings` declares.

    Parameters
    ----------
    relaxation : str or relaxation class
        Law of the hidden-count samples (:data:`spikeglm.relax.RELAXATIONS`): with a reparameterised
        sampler (``has_rsample``) the gradient is pathwise, otherwise (``"exact"``) by the score function.
    temperature : float
        Temperature of the relaxation, checked by the relaxation itself (Eat-cubic: ``0 < tau <= 1``).
    n_samples : int
        Hidden-count samples per segment and step.
    objective : {"elbo", "iwae", "fivo", "likelihood"}
        What the fit maximises (:data:`OBJECTIVES`). ``"fivo"`` runs a particle filter of ``n_samples``
        particles per segment (:func:`spikeglm.smc.filtering_bound`) whose draws are always exact
        integer counts with Eat-cubic's gradient. ``"likelihood"`` runs a particle smoother of
        ``n_samples`` particles (:func:`spikeglm.smc.smoothed_score`): the network follows the gradient
        of the log-likelihood, the posterior is fitted to the smoothed particles, and each epoch's
        recorded objective is the filter's estimate of the log-likelihood; the relaxation is unused.
    epochs : int
        Passes over the data.
    lr : float
        Adam's learning rate.
    batch_size : int, optional
        Segments per step. None: chosen from the data by :func:`auto_batch_size` (a quarter of the
        segments, at most 2^14 bins), so that every epoch takes several steps.
    part_bins : int
        Bins computed at once; a step is done in parts whose gradients add up.
    seed : int
        Seed of the shuffles and of every random draw.
    patience : int
        Validation checks without improvement before early stopping.
    eval_every : int
        Epochs between validation checks.
    checkpoint_every : int
        Epochs between checkpoints.
    freeze_network : bool
        Train only the posterior (the network stays as it is).
    tol : float, optional
        Once the training objective, smoothed over epochs, has not risen by ``tol`` nats per spike in
        :data:`PLATEAU_EPOCHS` epochs, lower the learning rate by :data:`LR_FACTOR`; stop at the next
        such plateau (see :class:`Plateau`); ``epochs`` is then a cap. None: run all ``epochs`` at ``lr``.
    straight_through : bool
        Score exact integer hidden counts and take only the gradient from the relaxation (Eat-cubic
        only, see :class:`~spikeglm.relax.EatCubic`): the objective is then a true bound.
    init : {"glm", "random"}
        How a fit with hidden neurons starts (:data:`STARTS`, :func:`glm_start`).
    """

    relaxation: str = DEFAULTS["relaxation"]
    temperature: float = DEFAULTS["temperature"]
    n_samples: int = DEFAULTS["n_samples"]
    objective: str = DEFAULTS["objective"]
    epochs: int = DEFAULTS["epochs"]
    lr: float = DEFAULTS["lr"]
    batch_size: int | None = DEFAULTS["batch_size"]
    part_bins: int = DEFAULTS["part_bins"]
    seed: int = DEFAULTS["seed"]
    patience: int = DEFAULTS["patience"]
    eval_every: int = 10
    checkpoint_every: int = 50
    freeze_network: bool = DEFAULTS["freeze_network"]
    tol: float | None = DEFAULTS["tol"]
    straight_through: bool = DEFAULTS["straight_through"]
    init: str = DEFAULTS["init"]
    _law: type[relax.PoissonRelaxation] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = {name: setting.check(getattr(self, name)) for name, setting in TRAINING_SETTINGS.items()}
        for name in ("eval_every", "checkpoint_every"):
            checked[name] = whole(getattr(self, name), name)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_law", relax.get(self.relaxation))
        for needs, wanted in (
            ("straight_through", self.straight_through),
            ("objective 'fivo'", self.objective == "fivo"),
        ):
            if wanted and self.relaxation != "eat-cubic":
                raise ValueError(f"{needs} needs relaxation 'eat-cubic'; got {self.relaxation!r}")
        self.law(torch.ones(()))  # the relaxation checks its own options (e.g. Eat-cubic: tau <= 1)

    @property
    def score_function(self) -> bool:
        """Whether gradients need the score function: the relaxation has no reparameterised sampler."""
        return not self._law.has_rsample

    def law(self, rate: torch.Tensor) -> relax.PoissonRelaxation:
        """The law of the hidden-count samples at ``rate`` (arguments known valid: not re-checked)."""
        options = {} if self.score_function else {"temperature": self.temperature}
        if self.straight_through:
            options["straight_through"] = True
        return self._law(rate, validate_args=False, **options)

    def draw(self, rate: torch.Tensor) -> torch.Tensor:
        """Integer hidden counts at ``rate`` with Eat-cubic's gradient: the particles of ``"fivo"``."""
        return relax.EatCubic(rate, self.temperature, validate_args=False, straight_through=True).rsample()

    def replace(self, **changes) -> TrainingConfig:
        """A copy with ``changes``, checked as the original was."""
        return dataclasses.replace(self, **changes)


def train(
    network: Network,
    posterior: Posterior,
    data: Segments | torch.Tensor,
    config: TrainingConfig | None = None,
    *,
    validation: Segments | torch.Tensor | None = None,
    callback: Callable[[EpochRecord], None] | None = None,
    resume: Resume | None = None,
    optimizer_state: dict | None = None,
    checkpoint: Callable[[Resume, dict], None] | None = None,
    previous: Sequence[EpochRecord] = (),
) -> tuple[list[EpochRecord], str]:
    """Fit the network and the posterior to visible counts with Adam, in one process or data-parallel.

    ``data`` is :class:`~spikeglm.segments.Segments` (trials, or segments of long recordings) or a tensor
    of visible counts (trials, bins, V). Each epoch visits the segments once in a random order, in steps
    of ``config.batch_size`` segments (all at once by default). A step is computed in parts of at most
    ``config.part_bins`` bins whose gradients add up, which bounds the memory whatever the batch size;
    each part draws its random numbers from a stream of its own, seeded by ``(seed, epoch, step, part)``.

    Under ``torch.distributed`` (e.g. launched by ``torchrun``), the parts of a step are dealt out to the
    processes in turn and their gradients summed (:mod:`spikeglm.parallel`); as every part keeps its own
    random stream, the fit does not depend on the number of processes (up to floating-point rounding).
    The model and the data go to the device of ``network``.

    With ``validation`` counts, the log-likelihood per visible neuron-bin (a particle filter,
    :mod:`spikeglm.smc`) is computed every ``config.eval_every`` epochs; training stops after
    ``config.patience`` checks without improvement and the best parameters are restored. With
    ``config.freeze_network`` only the posterior learns (the network stays as it is, e.g. at the true
    parameters for an oracle score).

    Checkpoints: ``checkpoint(resume, optimizer_state)`` is called every ``config.checkpoint_every``
    epochs and when the fit is interrupted (KeyboardInterrupt, which is then raised again; an interrupt
    that arrives while a step updates the parameters is held back until the update is whole). A fit
    continues from ``resume`` with the optimizer's saved ``optimizer_state`` exactly as the
    uninterrupted fit would, even from the middle of an epoch, given the records of its ``previous``
    epochs (for the stopping rule on the training objective; validation checks start afresh).

    Unless ``config.tol`` is None, the learning rate is lowered when the training objective stops rising,
    and the fit stops when it stops rising again (:class:`Plateau`), so ``config.epochs`` is a cap. The
    rule reads the objective per spike, so one tolerance serves dense and sparse recordings alike.

    Returns
    -------
    records : list of EpochRecord
        One per epoch run.
    reason : str
        Why the fit stopped.

    Raises
    ------
    FloatingPointError
        If the objective or a gradient turns non-finite; the parameters are left as they were before
        that step, and no checkpoint is written.
    """
    config = TrainingConfig() if config is None else config
    data = data if isinstance(data, Segments) else Segments(data)
    if validation is not None and not isinstance(validation, Segments):
        validation = Segments(validation)
    resume = Resume() if resume is None else resume
    frozen = [p for p in network.parameters() if p.requires_grad] if config.freeze_network else []
    for parameter in frozen:
        parameter.requires_grad_(False)
    step_loss = _StepLoss(network, posterior, config)
    params = [p for p in step_loss.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    device = network.bias.device
    engine = parallel.wrap(step_loss, device)
    records: list[EpochRecord] = []
    best = (-math.inf, None)
    stale = 0
    seed = config.seed
    epoch_bins = data.n_scored * data.n_units
    batch_size = auto_batch_size(data) if config.batch_size is None else min(config.batch_size, len(data))
    plateau = Plateau(config.tol)
    per_spike = 1 / spikes_per_bin(data)  # the rule reads the objective per spike: sparse data too
    for record in previous:  # a resumed fit picks up the smoothed objective and the rate where they were
        plateau.update(record.objective * per_spike)
    _set_lr(optimizer, config.lr * plateau.scale)
    per_part = max(1, config.part_bins // data.bins)
    where = resume  # how far the fit has come; updated after every whole step
    reason = f"ran the {config.epochs} epochs set"
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for epoch in range(resume.epochs_done, config.epochs):
                start = time.perf_counter()
                carried = where if where.epochs_done == epoch else Resume(epoch)
                shuffle = torch.Generator().manual_seed(_seed(seed, 0, epoch))
                order = torch.randperm(len(data), generator=shuffle)
                total = torch.tensor(carried.objective_sum, dtype=torch.float64, device=device)
                for step, batch_index in enumerate(order.split(batch_size)):
                    if step < carried.steps_done:
                        continue  # done before the interruption
                    parts = batch_index.split(per_part)
                    optimizer.zero_grad(set_to_none=True)
                    key = (seed, 1, epoch, step)
                    value = parallel.all_sum(_step(engine, data, parts, len(batch_index), key, device))
                    _check_finite(value, params, epoch, step)
                    with _interrupts_held():
                        optimizer.step()
                        total += value
                        seconds = carried.seconds + time.perf_counter() - start
                        where = Resume(epoch, step + 1, float(total), seconds)
                seconds = carried.seconds + time.perf_counter() - start
                record = EpochRecord(epoch, float(total) / epoch_bins, seconds, lr=config.lr * plateau.scale)
                where = Resume(epoch + 1)
                if validation is not None and (epoch + 1) % config.eval_every == 0:
                    record.validation = smc.log_likelihood(
                        network,
                        validation.counts,
                        n_particles=VALIDATION_PARTICLES,
                        seed=_seed(seed, 2, epoch),
                    ).per_bin
                    if record.validation > best[0]:
                        best, stale = (record.validation, _snapshot(network, posterior)), 0
                    else:
                        stale += 1
                records.append(record)
                if callback is not None:
                    callback(record)
                if checkpoint is not None and (epoch + 1) % config.checkpoint_every == 0:
                    checkpoint(where, optimizer.state_dict())
                if stale >= config.patience:
                    reason = f"stopped early: the validation log-likelihood fell {stale} checks in a row"
                    break
                if plateau.update(record.objective * per_spike):
                    lr = f"{config.lr * plateau.scale:.3g}" + (
                        f" (lowered from {config.lr:g})" if plateau.lowered else ""
                    )
                    reason = (
                        f"converged: the smoothed objective rose by less than {config.tol:g} nats per spike "
                        f"in {plateau.epochs} epochs at learning rate {lr}"
                    )
                    break
                _set_lr(optimizer, config.lr * plateau.scale)
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint(where, optimizer.state_dict())
        raise
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    if best[1] is not None:
        network.load_state_dict(best[1][0])
        posterior.load_state_dict(best[1][1])
    return records, reason


#: The convex stage stops when an iteration changes the log-likelihood per spike by less than this...
GLM_TOLERANCE_CHANGE = 1e-9
#: ... or when no gradient component (of the log-likelihood per spike) exceeds this.
GLM_TOLERANCE_GRAD = 1e-7


#: Particles per trial of the validation checks' likelihood (:func:`spikeglm.smc.log_likelihood`).
VALIDATION_PARTICLES = 256

#: Epochs over which the smoothed training objective must rise by ``tol`` for a fit to go on.
PLATEAU_EPOCHS = 10
#: Weight of the newest epoch in the smoothed training objective (an exponential moving average).
PLATEAU_SMOOTHING = 0.2
#: Plateaus at which the learning rate is lowered before one ends the fit...
LR_LOWERINGS = 1
#: ... each time by this factor.
LR_FACTOR = 0.2


class Plateau:
    """Tells when a noisy training objective has stopped rising: first lower the learning rate, then stop.

    Each epoch's objective (a stochastic estimate) is smoothed by an exponential moving average with
    weight ``smoothing``. A plateau is ``epochs`` epochs in a row in which the smoothed value has not
    exceeded its best by ``tol``. At each of the first ``lowerings`` plateaus the learning rate is
    multiplied by ``factor`` (:attr:`scale` is the product so far) and the count starts again: a smaller
    step averages out more of the gradient noise, so the objective often rises further. The next plateau
    ends the fit. ``tol=None`` never stops nor lowers.

    Examples
    --------
    >>> rule = Plateau(tol=1e-3, epochs=2, smoothing=1.0, lowerings=1, factor=0.5)  # no smoothing
    >>> [(rule.update(v), rule.scale) for v in (-2.0, -1.5, -1.5, -1.5, -1.4, -1.4, -1.4)]
    [(False, 1.0), (False, 1.0), (False, 1.0), (False, 0.5), (False, 0.5), (False, 0.5), (True, 0.5)]
    """

    def __init__(
        self,
        tol: float | None,
        epochs: int = PLATEAU_EPOCHS,
        smoothing: float = PLATEAU_SMOOTHING,
        lowerings: int = LR_LOWERINGS,
        factor: float = LR_FACTOR,
    ):
        self.tol, self.epochs, self.smoothing = tol, epochs, smoothing
        self.lowerings, self.factor = lowerings, factor
        self.smoothed = self.best = None
        self.stale = self.lowered = 0

    @property
    def scale(self) -> float:
        """The learning rate's factor now: ``factor`` to the number of plateaus met so far."""
        return self.factor**self.lowered

    def update(self, objective: float) -> bool:
        """Take an epoch's objective; True once the last plateau is reached."""
        if self.tol is None:
            return False
        if self.smoothed is None:
            self.smoothed = self.best = objective
            return False
        self.smoothed += self.smoothing * (objective - self.smoothed)
        if self.smoothed > self.best + self.tol:
            self.best, self.stale = self.smoothed, 0
            return False
        self.stale += 1
        if self.stale < self.epochs:
            return False
        if self.lowered < self.lowerings:
            self.lowered, self.stale = self.lowered + 1, 0
            return False
        return True


def auto_batch_size(data: Segments) -> int:
    """Segments per step when none is set: a quarter of them, and at most 2^14 bins.

    Several steps per epoch is what makes a stochastic fit converge in few epochs (a full-batch step
    per epoch needs hundreds); the cap keeps the steps of long recordings small.
    """
    return max(1, min(math.ceil(len(data) / 4), 2**14 // data.bins))


def solve_glm(
    network: Network,
    data: Segments | torch.Tensor,
    config: TrainingConfig | None = None,
    *,
    callback: Callable[[EpochRecord], None] | None = None,
) -> tuple[list[EpochRecord], str]:
    """Fit a network without hidden neurons by maximum likelihood: full-batch L-BFGS, to convergence.

    With no hidden neuron the model is an ordinary Poisson GLM, whose log-likelihood is concave in the
    weights and biases for the exp and softplus links; no sampling is involved, so ``n_samples``, the
    relaxation and the learning rate play no part. Each iteration is one L-BFGS step with a strong-Wolfe
    line search on the exact log-likelihood of all the data (computed in parts of ``config.part_bins``
    bins, shared among the processes under ``torch.distributed``). The solve stops when an iteration
    changes the log-likelihood per spike by less than :data:`GLM_TOLERANCE_CHANGE`, when no gradient
    component exceeds :data:`GLM_TOLERANCE_GRAD`, or after ``config.epochs`` iterations. It draws no
    random number: the same data give the same fit, so an interrupted solve is simply run again.

    Returns
    -------
    records : list of EpochRecord
        One per iteration: the log-likelihood per visible neuron-bin after it.
    reason : str
        Why the solve stopped.
    """
    config = TrainingConfig() if config is None else config
    if network.n_hidden:
        raise ValueError(f"solve_glm fits networks without hidden neurons; this one has {network.n_hidden}")
    data = data if isinstance(data, Segments) else Segments(data)
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=config.epochs,
        max_eval=10 * config.epochs,
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
    mine = data.groups(config.part_bins)[parallel.rank() :: parallel.world_size()]
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
    if done >= config.epochs:
        reason = f"reached the cap of {config.epochs} iterations (epochs) before converging"
    else:
        reason = f"converged in {done} L-BFGS iterations (gradient or change below tolerance)"
    return records, reason


#: Summed coupling strength of a hidden neuron onto the visible neuron it drives most, at the start.
START_STRENGTH = 1.0
#: The same for the posterior's reading of that neuron's future counts.
START_READING = 0.5
#: Most L-BFGS iterations of the start's GLM.
START_ITERATIONS = 500


def glm_start(network: Network, posterior: Posterior, data: Segments, config: TrainingConfig) -> None:
    """Start a fit with hidden neurons from the visible neurons' GLM and the shared part of its errors.

    The visible block (couplings and biases) starts at the maximum-likelihood GLM of the visible counts
    (:func:`solve_glm`). Input that several visible neurons share shows in that GLM's errors as
    correlated fluctuations, so hidden neuron ``h`` starts coupled onto the visible neurons along the
    ``h``-th principal component of the correlations of the GLM's Pearson residuals
    ``(x - rate) / sqrt(rate)``, signed to excite on balance, its largest summed coupling
    :data:`START_STRENGTH`; where the posterior reads the visible future, it reads the same component
    (:data:`START_READING`), so that the hidden counts start high where the neurons they drive fire
    together. Only components whose variance stands above the noise's (beyond the Marchenko-Pastur edge
    of the correlation matrix) are used; the other hidden neurons keep their random start. From small
    random couplings alone, the fit finds less of the shared input (docs/benchmarks.md, "When hidden
    neurons pay off").
    """
    n_visible, n_components = network.n_visible, min(network.n_hidden, network.n_visible)
    glm = Network(n_visible, 0, network.basis, network.link_name).to(network.bias.device)
    glm.bias.data.copy_(network.bias.data[:n_visible])
    solve_glm(glm, data, config.replace(epochs=START_ITERATIONS))  # the same start whatever the epochs
    device = network.bias.device
    moments = torch.zeros(n_visible + 1, n_visible + 1, dtype=torch.float64, device=device)
    with torch.no_grad():
        for index in data.groups(config.part_bins)[parallel.rank() :: parallel.world_size()]:
            batch = data.batch(index, device=device)
            rate = glm.rates(batch.visible).double()
            residual = (batch.visible.double() - rate) / rate.clamp_min(1e-6).sqrt()
            weight = torch.ones_like(residual[..., :1]) if batch.scored is None else batch.scored[..., None]
            rows = torch.cat([weight, residual * weight], dim=-1).reshape(-1, n_visible + 1)
            moments += rows.T @ rows  # [count, sums; sums, products] over the scored bins
        parallel.all_sum(moments)
        count, sums = moments[0, 0].clamp_min(1.0), moments[0, 1:]
        covariance = moments[1:, 1:] / count - torch.outer(sums, sums) / count**2
        scale = covariance.diagonal().clamp_min(1e-12).rsqrt()
        values, vectors = torch.linalg.eigh(covariance * torch.outer(scale, scale))  # correlations
        # Components of pure noise have eigenvalues (ascending) up to the Marchenko-Pastur edge above
        # the noise level, estimated by the median eigenvalue; only those beyond it are shared input.
        edge = values.median() * (1 + math.sqrt(n_visible / float(count))) ** 2
        n_components = min(n_components, int((values > edge).sum()))
        components = vectors.flip(1)[:, :n_components]  # leading first
        components = components * torch.where(components.sum(0) < 0, -1.0, 1.0)
        components = components / components.abs().amax(0)
        # Each basis function carries an equal share of the filter's summed strength.
        share = 1.0 / (network.basis_matrix.sum(1) * network.basis_matrix.shape[0])
        loading = components.to(network.weight.dtype)[..., None] * share.to(network.weight.dtype)
        network.weight[:n_visible, :n_visible] = glm.weight
        network.bias[:n_visible] = glm.bias
        hidden = slice(n_visible, n_visible + n_components)
        network.weight[:n_visible, hidden] = START_STRENGTH * loading
        if posterior.sees_future:
            posterior.future[:n_components] = START_READING * loading.transpose(0, 1)


def _check_finite(value: torch.Tensor, params: list[torch.Tensor], epoch: int, step: int) -> None:
    """Stop before an update that would make the parameters non-finite.

    ``value`` is summed over the processes and the gradients are reduced, so all processes agree.
    """
    finite = (
        torch.isfinite(value)
        & torch.stack([torch.isfinite(p.grad).all() for p in params if p.grad is not None]).all()
    )
    if not bool(finite):
        raise FloatingPointError(
            f"the objective or its gradient became non-finite at epoch {epoch + 1}, step {step + 1}; "
            "the fit stopped before that update (any checkpoint written earlier is kept); "
            "try a smaller learning rate (lr) or another seed"
        )


@contextlib.contextmanager
def _interrupts_held():
    """Hold back Ctrl-C and SIGTERM while the block runs; deliver them at its end.

    A parameter update must be whole or not at all, or a checkpoint written on the interrupt could not be
    resumed exactly. Outside the main thread, where signal handlers cannot be set, nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {
        number: signal.signal(number, lambda number, _frame: caught.append(number)) for number in held
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught:
            signal.raise_signal(number)


class _StepLoss(nn.Module):
    """The surrogate loss of a batch of segments and the sum of its mean log-weights (for the record)."""

    def __init__(self, network: Network, posterior: Posterior, config: TrainingConfig) -> None:
        super().__init__()
        self.network, self.posterior, self.config = network, posterior, config

    def forward(self, visible, present, scored) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(visible, present, scored)
        config = self.config
        if config.objective == "fivo":
            log_z = smc.filtering_bound(self.network, self.posterior, batch, config.n_samples, config.draw)
            return -log_z.mean(), log_z.detach().sum()
        if config.objective == "likelihood":
            surrogate, log_z = smc.smoothed_score(self.network, self.posterior, batch, config.n_samples)
            return -surrogate.mean(), log_z.sum()
        log_w, log_q = log_weights(self.network, self.posterior, batch, config.n_samples, config.law)
        loss = surrogate_loss(log_w, log_q, config.objective, score_function=config.score_function)
        return loss, log_w.detach().mean(0).sum().double()


def _step(engine, data: Segments, parts: tuple, batch_size: int, key: tuple, device) -> torch.Tensor:
    """Accumulate this process's share of one step's gradient; return its summed mean log-weight.

    Parts ``rank, rank + world, ...`` are this process's. Each part's loss is weighted by its share of the
    batch (times the number of processes, as DistributedDataParallel averages over them), so the summed
    gradient is that of the batch mean. A process with no part this step runs the first one with weight 0,
    because every process must take part in each gradient reduction.
    """
    rank, world = parallel.rank(), parallel.world_size()
    mine = list(range(rank, len(parts), world)) or [None]
    total = torch.zeros((), dtype=torch.float64, device=device)
    for turn, number in enumerate(mine):
        index = parts[0 if number is None else number]
        parallel.seed_streams(_seed(*key, 0 if number is None else number), device)
        batch = data.batch(index, device=device)
        weight = 0.0 if number is None else len(index) * world / batch_size
        last = turn == len(mine) - 1
        with contextlib.nullcontext() if last or world == 1 else engine.no_sync():
            loss, value = engine(batch.visible, batch.present, batch.scored)
            (loss * weight).backward()
        if number is not None:
            total += value
    return total


def spikes_per_bin(data: Segments) -> float:
    """Mean spike count per visible neuron-bin of ``data`` (every bin once), counting at least one spike."""
    spikes = max(1.0, float(mean_counts(data.counts).sum()) * data.n_scored)
    return spikes / (data.n_scored * data.n_units)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _seed(*keys: int) -> int:
    """A seed for the random stream named by ``keys``: equal keys, equal streams; others independent."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _snapshot(network: Network, posterior: Posterior) -> tuple[dict, dict]:
    return copy.deepcopy(network.state_dict()), copy.deepcopy(posterior.state_dict())


def distributed(device: str | torch.device | None = None):
    """Deprecated: :func:`spikeglm.parallel.distributed`."""
    warnings.warn(
        "spikeglm.fit.distributed moved to spikeglm.parallel.distributed", DeprecationWarning, stacklevel=2
    )
    return parallel.distributed(device)


def process() -> tuple[int, int]:
    """Deprecated: ``(spikeglm.parallel.rank(), spikeglm.parallel.world_size())``."""
    warnings.warn(
        "spikeglm.fit.process() moved to spikeglm.parallel.rank() and world_size()",
        DeprecationWarning,
        stacklevel=2,
    )
    return parallel.rank(), parallel.world_size()
