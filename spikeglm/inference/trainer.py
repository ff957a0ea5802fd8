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
from spikeglm.inference.objectives import ELBO, Objective
from spikeglm.inference.penalty import Penalty
from spikeglm.inference.stopping import SETTLE_GROUPS, SETTLE_SEGMENTS, Plateau, Settled, spikes_per_bin
from spikeglm.memory import available_memory
from spikeglm.model import Network
from spikeglm.records import EpochRecord
from spikeglm.segments import Batch, Segments
from spikeglm.variational import Posterior, reads_shared_history

#: Particles per trial of the validation checks' likelihood (:func:`spikeglm.smc.log_likelihood`).
VALIDATION_PARTICLES = 256

#: The share of the available memory that the training segments' filtered visible counts may take
#: (:meth:`~spikeglm.segments.Segments.filtered`); beyond it, each step filters its batch again.
FILTERED_SHARE = 0.125

#: Called with where the fit stands and the optimiser's state, to write a checkpoint.
Checkpoint = Callable[["Resume", dict], None]


@dataclass
class Resume:
    """Where an interrupted fit stands: finished epochs, finished steps of the next one and their sums.

    A checkpoint taken inside an epoch records the steps done in it, with the objective summed over
    them (in all, and per group of segments) and the seconds spent, so that a resumed fit skips exactly
    those steps and gives the epoch the record the uninterrupted fit would. ``last_groups`` is the last
    finished epoch's objective per group, which the settling rule compares the next one with
    (:class:`~spikeglm.inference.stopping.Settled`; empty where the fit does not use it).
    """

    epochs_done: int = 0
    steps_done: int = 0
    objective_sum: float = 0.0
    seconds: float = 0.0
    groups: tuple[float, ...] = ()
    last_groups: tuple[float, ...] = ()


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
    penalty: Penalty | None = None,
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
    ``config.epochs`` is a cap. A network with latent factors and no hidden neuron, whose couplings,
    biases and loadings are solved exactly after training (:mod:`spikeglm.poglm`), stops instead at the
    first epoch that does not raise the objective beyond its noise, compared segment group by group with
    the epoch before (:class:`~spikeglm.inference.stopping.Settled`; with at least
    :data:`~spikeglm.inference.stopping.SETTLE_SEGMENTS` segments): training has only to bring the
    factors' posterior into place, which takes a few epochs, and the plateau of its noisy parameters
    would take tens more. The rules read the objective per spike, so one tolerance serves dense and
    sparse recordings alike.

    A smooth ``penalty`` of the couplings (:class:`~spikeglm.inference.penalty.Ridge`) joins every step's
    loss at the scale of the penalised GLM's objective, minus the log-likelihood per spike plus the
    penalty: the objective's mean over segments plus the penalty times the spikes per segment. The
    records show the objective alone.

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
    loop = _Loop(network, posterior, data, config, validation, callback, checkpoint, penalty)
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
        penalty: Penalty | None,
    ) -> None:
        self.network, self.posterior, self.config = network, posterior, config
        self.data = data if isinstance(data, Segments) else Segments(data)
        if validation is not None and not isinstance(validation, Segments):
            validation = Segments(validation)
        self.validation, self.callback, self.checkpoint = validation, callback, checkpoint
        self.device = network.bias.device
        size = config.batch_size
        self.batch_size = auto_batch_size(self.data) if size is None else min(size, len(self.data))
        self.per_part = max(1, config.part_bins // self.data.bins)
        self.plateau = Plateau(config.tol)
        self.per_spike = 1 / spikes_per_bin(self.data)  # the rules read the objective per spike
        spikes = self.data.n_scored * self.data.n_units / self.per_spike
        objective = config.make_objective()
        self.data = _filtered(self.data, network, posterior, objective)
        self.step_loss = _StepLoss(network, posterior, objective, penalty, spikes / len(self.data))
        self.settled = None
        if config.solves_after_training(network) and len(self.data) >= SETTLE_SEGMENTS:
            # It compares sums over segments: the tolerance per spike times the spikes.
            self.settled = Settled(None if config.tol is None else config.tol * spikes)
        self.n_groups = min(SETTLE_GROUPS, len(self.data)) if self.settled is not None else 1
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
        self._restore_rules(resume, previous)
        _set_lr(optimizer, config.lr * self.plateau.scale)
        self.where = resume
        records: list[EpochRecord] = []
        reason = f"ran the {config.epochs} epochs set"
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                for epoch in range(resume.epochs_done, config.epochs):
                    record, groups = self._epoch(epoch, engine, optimizer, params)
                    records.append(record)
                    if self.callback is not None:
                        self.callback(record)
                    if self.checkpoint is not None and (epoch + 1) % config.checkpoint_every == 0:
                        self.checkpoint(self.where, optimizer.state_dict())
                    stopped = self._stopped(record, groups)
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

    def _restore_rules(self, resume: Resume, previous: Sequence[EpochRecord]) -> None:
        """Where a resumed fit's stopping rules stand: the smoothed objective and the learning rate from the
        records of its epochs, the last epoch's objective per group from the checkpoint."""
        for record in previous:
            self.plateau.update(record.objective * self.per_spike)
        for name in ("groups", "last_groups"):
            held = len(getattr(resume, name))
            if held and (self.settled is None or held != self.n_groups):
                raise ValueError(
                    f"resume: the checkpoint's objective is summed over {held} groups of segments where this "
                    f"fit has {self.n_groups if self.settled is not None else 'none'}: it was not written by "
                    "this fit"
                )
        if self.settled is not None and resume.last_groups:
            self.settled.last = np.asarray(resume.last_groups)

    def _epoch(
        self, epoch: int, engine: nn.Module, optimizer: Adam, params: list
    ) -> tuple[EpochRecord, np.ndarray]:
        """Run the steps of one epoch (those not done before an interruption) and its validation check;
        return its record and its objective summed per group of segments."""
        config, data, device = self.config, self.data, self.device
        start = time.perf_counter()
        carried = self.where if self.where.epochs_done == epoch else Resume(epoch)
        shuffle = torch.Generator().manual_seed(_seed(config.seed, 0, epoch))
        order = torch.randperm(len(data), generator=shuffle)
        total = torch.tensor(carried.objective_sum, dtype=torch.float64, device=device)
        groups = torch.zeros(self.n_groups, dtype=torch.float64, device=device)
        if carried.groups:
            groups += torch.tensor(carried.groups, dtype=torch.float64, device=device)
        for step, batch_index in enumerate(order.split(self.batch_size)):
            if step < carried.steps_done:
                continue  # done before the interruption
            parts = batch_index.split(self.per_part)
            optimizer.zero_grad(set_to_none=True)
            key = (config.seed, 1, epoch, step)
            value = parallel.all_sum(_step(engine, data, parts, len(batch_index), key, self.n_groups, device))
            _check_finite(value.sum(), params, epoch, step)
            if self.time_constants is not None and self._holding(epoch):
                self.time_constants.grad = None  # Adam leaves a parameter without a gradient as it is
            with _interrupts_held():
                optimizer.step()
                total += value.sum()
                groups += value
                seconds = carried.seconds + time.perf_counter() - start
                self.where = Resume(epoch, step + 1, float(total), seconds, *self._group_sums(groups))
        seconds = carried.seconds + time.perf_counter() - start
        lr = config.lr * self.plateau.scale
        record = EpochRecord(epoch, float(total) / (data.n_scored * data.n_units), seconds, lr=lr)
        sums = groups.cpu().numpy()
        self.where = Resume(epoch + 1, last_groups=self._group_sums(groups)[0])
        if self.validation is not None and (epoch + 1) % config.eval_every == 0:
            self._validate(record, self.validation)
        return record, sums

    def _group_sums(self, groups: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """What a checkpoint keeps for the settling rule: ``groups`` (this epoch's objective per group so
        far) and the last finished epoch's; empty for a fit that does not use the rule."""
        if self.settled is None:
            return (), ()
        last = () if self.settled.last is None else tuple(self.settled.last.tolist())
        return tuple(groups.tolist()), last

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

    def _stopped(self, record: EpochRecord, groups: np.ndarray) -> str | None:
        """Why the fit stops after ``record``'s epoch (whose objective per group of segments is
        ``groups``), or None while it goes on."""
        config, plateau, settled = self.config, self.plateau, self.settled
        if self.stale >= config.patience:
            return f"stopped early: the validation log-likelihood fell {self.stale} checks in a row"
        if settled is not None:
            if not settled.update(groups):
                return None
            return (
                f"converged: the objective rose by less than {settled.z:g} standard errors (or "
                f"{config.tol:g} nats per spike) in the last epoch, compared segment group by group"
            )
        if not plateau.update(record.objective * self.per_spike):
            return None
        lr = f"{config.lr * plateau.scale:.3g}" + (
            f" (lowered from {config.lr:g})" if plateau.lowered else ""
        )
        return (
            f"converged: the smoothed objective rose by less than {config.tol:g} nats per spike "
            f"in {plateau.epochs} epochs at learning rate {lr}"
        )


def _filtered(segments: Segments, network: Network, posterior: Posterior, objective: Objective) -> Segments:
    """The training segments keeping their filtered visible counts, where a step reads them through the
    network's basis (the sampled bounds, :class:`~spikeglm.inference.objectives.ELBO` and its kind, with
    hidden neurons) and they take at most :data:`FILTERED_SHARE` of the available memory, on the host;
    otherwise as they are."""
    if (
        not isinstance(objective, ELBO)
        or not reads_shared_history(network, posterior)
        or segments.counts.device.type != "cpu"
    ):
        return segments
    n_basis = network.basis_matrix.shape[0]
    if segments.filtered_bytes(n_basis, posterior.sees_future) > FILTERED_SHARE * available_memory():
        return segments
    return segments.filtered(network.basis_matrix, posterior.sees_future)


class _StepLoss(nn.Module):
    """The objective's loss of a batch of segments and its value (for the record), as a module that
    :func:`spikeglm.parallel.wrap` can make data-parallel; with a ``penalty``, the loss gains it times
    ``spikes_per_segment`` (the loss is a mean over segments, the penalty's strength is per spike)."""

    def __init__(
        self,
        network: Network,
        posterior: Posterior,
        objective: Objective,
        penalty: Penalty | None = None,
        spikes_per_segment: float = 1.0,
    ) -> None:
        super().__init__()
        self.network, self.posterior, self.objective = network, posterior, objective
        self.penalty, self.spikes_per_segment = penalty, spikes_per_segment

    def forward(
        self,
        visible: torch.Tensor,
        present: torch.Tensor | None,
        scored: torch.Tensor | None,
        covariates: torch.Tensor | None,
        past: torch.Tensor | None = None,
        future: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(visible, present, scored, covariates, past=past, future=future)
        loss, value = self.objective.loss(self.network, self.posterior, batch)
        if self.penalty is not None:
            loss = loss + self.spikes_per_segment * self.penalty.value(self.network.weight)
        return loss, value


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
    n_groups: int,
    device: torch.device,
) -> torch.Tensor:
    """Accumulate this process's share of one step's gradient; return its objective summed per group of
    segments (segment ``i`` in group ``i mod n_groups``), shape (n_groups,), float64.

    Parts ``rank, rank + world, ...`` are this process's. Each part's loss is weighted by its share of the
    batch (times the number of processes, as DistributedDataParallel averages over them), so the summed
    gradient is that of the batch mean. A process with no part this step runs the first one with weight 0,
    because every process must take part in each gradient reduction.
    """
    rank, world = parallel.rank(), parallel.world_size()
    mine: list[int | None] = [*range(rank, len(parts), world)] or [None]
    sums = torch.zeros(n_groups, dtype=torch.float64, device=device)
    for turn, number in enumerate(mine):
        index = parts[0 if number is None else number]
        parallel.seed_streams(_seed(*key, 0 if number is None else number), device)
        batch = data.batch(index, device=device)
        weight = 0.0 if number is None else len(index) * world / batch_size
        last = turn == len(mine) - 1
        with parallel.local_gradients(engine, not last):
            loss, value = engine(
                batch.visible, batch.present, batch.scored, batch.covariates, batch.past, batch.future
            )
            (loss * weight).backward()
        if number is not None:
            if value.shape != index.shape:
                raise TypeError(
                    "an objective's estimate must hold the value of each segment of the batch, shape "
                    f"({len(index)},); got shape {tuple(value.shape)}"
                )
            sums.index_add_(0, (index % n_groups).to(device), value)
    return sums


def _set_lr(optimizer: Adam, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _seed(*keys: int) -> int:
    """A seed for the random stream named by ``keys``: equal keys, equal streams; others independent."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def _snapshot(network: Network, posterior: Posterior) -> tuple[dict, dict]:
    return copy.deepcopy(network.state_dict()), copy.deepcopy(posterior.state_dict())
