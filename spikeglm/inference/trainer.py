"""The training loop of a POGLM with hidden neurons: steps, the stopping rule, checkpoints, interrupts.

The loop names no objective: it asks the configured :class:`~spikeglm.inference.objectives.Objective`
for each part's loss and follows its gradient with Adam.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spikeglm import parallel, smc
from spikeglm.inference.adam import Adam
from spikeglm.inference.config import TrainingConfig
from spikeglm.inference.objectives import Objective
from spikeglm.inference.stopping import Plateau, spikes_per_bin
from spikeglm.model import Network
from spikeglm.records import EpochRecord
from spikeglm.segments import Batch, Segments
from spikeglm.variational import Posterior

#: Particles per trial of the validation checks' likelihood (:func:`spikeglm.smc.log_likelihood`).
VALIDATION_PARTICLES = 256

#: Called with where the fit stands and the optimiser's state, to write a checkpoint.
Checkpoint = Callable[["Resume", dict], None]


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
    checkpoint: Checkpoint | None = None,
    previous: Sequence[EpochRecord] = (),
) -> tuple[list[EpochRecord], str]:
    """Fit the network and the posterior to visible counts with Adam, in one process or data-parallel.

    ``data`` is :class:`~spikeglm.segments.Segments` (trials, or segments of long recordings) or a tensor
    of visible counts (trials, bins, V). Each epoch visits the segments once in a random order, in steps
    of ``config.batch_size`` segments (:func:`auto_batch_size` by default). A step is computed in parts of
    at most ``config.part_bins`` bins whose gradients add up, which bounds the memory whatever the batch
    size; each part draws its random numbers from a stream of its own, seeded by ``(seed, epoch, step,
    part)``, and its loss is the configured objective's (:meth:`TrainingConfig.make_objective`).

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
    and the fit stops when it stops rising again (:class:`~spikeglm.inference.stopping.Plateau`), so
    ``config.epochs`` is a cap. The rule reads the objective per spike, so one tolerance serves dense and
    sparse recordings alike.

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
    loop = _Loop(network, posterior, data, config, validation, callback, checkpoint)
    return loop.run(Resume() if resume is None else resume, optimizer_state, previous)


#: The largest share of a fit's epochs in which the latent factors' time constants are held
#: (:meth:`_Loop._holding`).
HOLD_SHARE = 0.25


class _Loop:
    """The state of one run of :func:`train`: where it stands, the stopping rules and the best parameters."""

    def __init__(
        self,
        network: Network,
        posterior: Posterior,
        data: Segments | torch.Tensor,
        config: TrainingConfig,
        validation: Segments | torch.Tensor | None,
        callback: Callable[[EpochRecord], None] | None,
        checkpoint: Checkpoint | None,
    ) -> None:
        self.network, self.posterior, self.config = network, posterior, config
        self.data = data if isinstance(data, Segments) else Segments(data)
        if validation is not None and not isinstance(validation, Segments):
            validation = Segments(validation)
        self.validation, self.callback, self.checkpoint = validation, callback, checkpoint
        self.step_loss = _StepLoss(network, posterior, config.make_objective())
        self.device = network.bias.device
        size = config.batch_size
        self.batch_size = auto_batch_size(self.data) if size is None else min(size, len(self.data))
        self.per_part = max(1, config.part_bins // self.data.bins)
        self.plateau = Plateau(config.tol)
        self.per_spike = 1 / spikes_per_bin(self.data)  # the rule reads the objective per spike
        prior = network.latent_prior
        self.time_constants = None if prior is None else prior.log_tau
        self.where = Resume()  # how far the fit has come; updated after every whole step
        self.best: tuple[float, tuple[dict, dict] | None] = (-math.inf, None)
        self.stale = 0

    def run(
        self, resume: Resume, optimizer_state: dict | None, previous: Sequence[EpochRecord]
    ) -> tuple[list[EpochRecord], str]:
        config = self.config
        frozen = [p for p in self.network.parameters() if p.requires_grad] if config.freeze_network else []
        for parameter in frozen:
            parameter.requires_grad_(False)
        params = [p for p in self.step_loss.parameters() if p.requires_grad]
        optimizer = Adam(params, lr=config.lr)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        engine = parallel.wrap(self.step_loss, self.device)
        for record in previous:  # a resumed fit picks up the smoothed objective and the rate where they were
            self.plateau.update(record.objective * self.per_spike)
        _set_lr(optimizer, config.lr * self.plateau.scale)
        self.where = resume
        records: list[EpochRecord] = []
        reason = f"ran the {config.epochs} epochs set"
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                for epoch in range(resume.epochs_done, config.epochs):
                    record = self._epoch(epoch, engine, optimizer, params)
                    records.append(record)
                    if self.callback is not None:
                        self.callback(record)
                    if self.checkpoint is not None and (epoch + 1) % config.checkpoint_every == 0:
                        self.checkpoint(self.where, optimizer.state_dict())
                    stopped = self._stopped(record)
                    if stopped:
                        reason = stopped
                        break
                    _set_lr(optimizer, config.lr * self.plateau.scale)
        except KeyboardInterrupt:
            if self.checkpoint is not None:
                self.checkpoint(self.where, optimizer.state_dict())
            raise
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)
        if self.best[1] is not None:
            self.network.load_state_dict(self.best[1][0])
            self.posterior.load_state_dict(self.best[1][1])
        return records, reason

    def _epoch(
        self, epoch: int, engine: nn.Module, optimizer: Adam, params: list
    ) -> EpochRecord:
        """Run the steps of one epoch (those not done before an interruption) and its validation check."""
        config, data, device = self.config, self.data, self.device
        start = time.perf_counter()
        carried = self.where if self.where.epochs_done == epoch else Resume(epoch)
        shuffle = torch.Generator().manual_seed(_seed(config.seed, 0, epoch))
        order = torch.randperm(len(data), generator=shuffle)
        total = torch.tensor(carried.objective_sum, dtype=torch.float64, device=device)
        for step, batch_index in enumerate(order.split(self.batch_size)):
            if step < carried.steps_done:
                continue  # done before the interruption
            parts = batch_index.split(self.per_part)
            optimizer.zero_grad(set_to_none=True)
            key = (config.seed, 1, epoch, step)
            value = parallel.all_sum(_step(engine, data, parts, len(batch_index), key, device))
            _check_finite(value, params, epoch, step)
            if self.time_constants is not None and self._holding(epoch):
                self.time_constants.grad = None  # Adam leaves a parameter without a gradient as it is
            with _interrupts_held():
                optimizer.step()
                total += value
                seconds = carried.seconds + time.perf_counter() - start
                self.where = Resume(epoch, step + 1, float(total), seconds)
        seconds = carried.seconds + time.perf_counter() - start
        lr = config.lr * self.plateau.scale
        record = EpochRecord(epoch, float(total) / (data.n_scored * data.n_units), seconds, lr=lr)
        self.where = Resume(epoch + 1)
        if self.validation is not None and (epoch + 1) % config.eval_every == 0:
            self._validate(record, self.validation)
        return record

    def _holding(self, epoch: int) -> bool:
        """Whether the latent factors' time constants are held in this epoch: through the first rate of
        learning (until the stopping rule first lowers it), and at most :data:`HOLD_SHARE` of the epochs.

        While the loadings and the encoder are still far from their fit, the objective's gradient in the
        time constants points the same way for many steps, and Adam's steps of the learning rate each
        carry them far beyond the slow drive's (to 3-6 times it), from where they come back only slowly
        (docs/benchmarks.md, "Slow shared drive"). Held at their start, which the GLM's errors give
        (:func:`~spikeglm.inference.start.error_time_constants`), they are learned from a fit that is
        already close.
        """
        if self.time_constants is None or not self.time_constants.requires_grad:
            return False
        return self.plateau.lowered == 0 and epoch < HOLD_SHARE * self.config.epochs

    def _validate(self, record: EpochRecord, validation: Segments) -> None:
        """Score ``validation`` into ``record``; keep the best parameters so far."""
        record.validation = smc.log_likelihood(
            self.network,
            validation.counts,
            n_particles=VALIDATION_PARTICLES,
            seed=_seed(self.config.seed, 2, record.epoch),
            covariates=validation.covariates,
        ).per_bin
        if record.validation > self.best[0]:
            self.best, self.stale = (record.validation, _snapshot(self.network, self.posterior)), 0
        else:
            self.stale += 1

    def _stopped(self, record: EpochRecord) -> str | None:
        """Why the fit stops after ``record``'s epoch, or None while it goes on."""
        config, plateau = self.config, self.plateau
        if self.stale >= config.patience:
            return f"stopped early: the validation log-likelihood fell {self.stale} checks in a row"
        if not plateau.update(record.objective * self.per_spike):
            return None
        lr = f"{config.lr * plateau.scale:.3g}" + (
            f" (lowered from {config.lr:g})" if plateau.lowered else ""
        )
        return (
            f"converged: the smoothed objective rose by less than {config.tol:g} nats per spike "
            f"in {plateau.epochs} epochs at learning rate {lr}"
        )


class _StepLoss(nn.Module):
    """The objective's loss of a batch of segments and its value (for the record), as a module that
    :func:`spikeglm.parallel.wrap` can make data-parallel."""

    def __init__(self, network: Network, posterior: Posterior, objective: Objective) -> None:
        super().__init__()
        self.network, self.posterior, self.objective = network, posterior, objective

    def forward(
        self,
        visible: torch.Tensor,
        present: torch.Tensor | None,
        scored: torch.Tensor | None,
        covariates: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(visible, present, scored, covariates)
        return self.objective.loss(self.network, self.posterior, batch)


def auto_batch_size(data: Segments) -> int:
    """Segments per step when none is set: a quarter of them, and at most 2^14 bins.

    Several steps per epoch is what makes a stochastic fit converge in few epochs (a full-batch step
    per epoch needs hundreds); the cap keeps the steps of long recordings small.
    """
    return max(1, min(math.ceil(len(data) / 4), 2**14 // data.bins))


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


def _step(
    engine: nn.Module,
    data: Segments,
    parts: tuple[torch.Tensor, ...],
    batch_size: int,
    key: tuple[int, ...],
    device: torch.device,
) -> torch.Tensor:
    """Accumulate this process's share of one step's gradient; return its summed mean log-weight.

    Parts ``rank, rank + world, ...`` are this process's. Each part's loss is weighted by its share of the
    batch (times the number of processes, as DistributedDataParallel averages over them), so the summed
    gradient is that of the batch mean. A process with no part this step runs the first one with weight 0,
    because every process must take part in each gradient reduction.
    """
    rank, world = parallel.rank(), parallel.world_size()
    mine: list[int | None] = [*range(rank, len(parts), world)] or [None]
    total = torch.zeros((), dtype=torch.float64, device=device)
    for turn, number in enumerate(mine):
        index = parts[0 if number is None else number]
        parallel.seed_streams(_seed(*key, 0 if number is None else number), device)
        batch = data.batch(index, device=device)
        weight = 0.0 if number is None else len(index) * world / batch_size
        last = turn == len(mine) - 1
        with parallel.local_gradients(engine, not last):
            loss, value = engine(batch.visible, batch.present, batch.scored, batch.covariates)
            (loss * weight).backward()
        if number is not None:
            total += value
    return total


def _set_lr(optimizer: Adam, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _seed(*keys: int) -> int:
    """A seed for the random stream named by ``keys``: equal keys, equal streams; others independent."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _snapshot(network: Network, posterior: Posterior) -> tuple[dict, dict]:
    return copy.deepcopy(network.state_dict()), copy.deepcopy(posterior.state_dict())
