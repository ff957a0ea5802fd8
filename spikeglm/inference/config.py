"""How a fit trains: the training settings, declared once, and :class:`TrainingConfig`, which checks them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from spikeglm.inference.objectives import OBJECTIVES, HiddenSampler, Objective
from spikeglm.inference.start import STARTS
from spikeglm.model import Network
from spikeglm.options import Setting, declare, whole
from spikeglm.relax import RELAXATIONS
from spikeglm.segments import PART_BINS

#: The settings of the training, in the estimator's order: :class:`TrainingConfig` reads its defaults
#: and checks from them, as the estimator and the command line do.
TRAINING_SETTINGS: dict[str, Setting] = declare(
    Setting(
        "relaxation",
        str,
        "eat-cubic",
        "Differentiable relaxation of the sampled hidden counts (exact: score-function gradients).",
        choices=RELAXATIONS,
    ),
    Setting("temperature", float, 0.5, "Relaxation temperature (eat-cubic: at most 1)."),
    Setting(
        "n_samples",
        int,
        None,
        "Hidden-count samples (fivo: particles) per trial and step. Default: 5, or 1 for a fit with latent "
        "factors and no hidden neuron (their paths vary little from draw to draw).",
        optional=True,
    ),
    Setting(
        "objective",
        str,
        None,
        "What the fit maximises: elbo; iwae (importance-weighted over --samples); fivo (a particle "
        "filter's bound over --samples particles); likelihood (the log-likelihood itself, its gradient from "
        "a particle smoother of --samples particles: hidden neurons are not shrunk, several times slower; "
        "try --samples 16). Default: iwae for a fit with hidden neurons and no latent factor, else elbo.",
        choices=OBJECTIVES,
        optional=True,
    ),
    Setting("epochs", int, 500, "Most epochs (a fit stops earlier once converged, see --tol)."),
    Setting("lr", float, 0.05, "Adam learning rate."),
    Setting(
        "batch_size",
        int,
        None,
        "Trials (or segments) per step (default: a quarter of them, at most 2^14 bins).",
        optional=True,
    ),
    Setting(
        "part_bins",
        int,
        PART_BINS,
        "Bins computed at once (bounds memory; under torchrun the parts are shared among processes).",
    ),
    Setting(
        "seed",
        int,
        0,
        "Seed of the initial parameters, the batches and the samples (same seed, same fit).",
        minimum=0,
    ),
    Setting("patience", int, 10),
    Setting("freeze_network", bool, False),
    Setting(
        "tol",
        float,
        5e-4,
        "Once the smoothed objective rises less than this (nats per spike) in 10 epochs, lower the "
        "learning rate five-fold; at the next such plateau, stop. A fit with latent factors and no hidden "
        "neuron stops at the first epoch that rises by less than this or within its noise. 0: run all "
        "--epochs.",
        optional=True,
    ),
    Setting(
        "straight_through",
        bool,
        False,
        "Train on exact integer hidden counts with the relaxation's gradient (eat-cubic only).",
    ),
    Setting(
        "init",
        str,
        "glm",
        "How a fit with hidden neurons starts: glm (the visible neurons' GLM, the hidden neurons along the "
        "principal components of its errors rotated to sparse ones) or random (small random couplings).",
        choices=STARTS,
    ),
)

_DEFAULT = {name: setting.default for name, setting in TRAINING_SETTINGS.items()}


#: Samples per trial and step by default: of the hidden counts (with hidden neurons), and of the latent
#: paths alone (a fit with latent factors and no hidden neuron, whose ELBO has the paths' KL exactly and
#: whose paths vary little from draw to draw: one sample halves the cost of five at no measured loss).
HIDDEN_SAMPLES, LATENT_SAMPLES = 5, 1


def default_objective(n_hidden: int, n_latent: int) -> str:
    """The default ``objective``: the importance-weighted bound for a fit with hidden neurons and no latent
    factor, the ELBO otherwise (its latent factors' KL is exact; the importance weights would sample it).

    The ELBO shrinks the hidden neurons most, its gap to the likelihood growing with them; IWAE's gap is
    smaller at the same draws. On ten strong-drive networks (docs/benchmarks.md, "When hidden neurons pay
    off") IWAE with the default 5 samples recovered more of the fully observed fit's gain on every one
    (median 64% -> 72%) for the same CPU."""
    return "iwae" if n_hidden and not n_latent else "elbo"


def default_samples(n_hidden: int) -> int:
    """The default ``n_samples`` of a fit with ``n_hidden`` hidden neurons (:data:`HIDDEN_SAMPLES`, or
    :data:`LATENT_SAMPLES` without any)."""
    return HIDDEN_SAMPLES if n_hidden else LATENT_SAMPLES


@dataclass(frozen=True)
class TrainingConfig:
    """How a fit trains: every option of the training loop, checked as :data:`TRAINING_SETTINGS` declares.

    Parameters
    ----------
    relaxation : str or relaxation class
        Law of the hidden-count samples (:data:`spikeglm.relax.RELAXATIONS`): with a reparameterised
        sampler (``has_rsample``) the gradient is pathwise, otherwise (``"exact"``) by the score function.
    temperature : float
        Temperature of the relaxation, checked by the relaxation itself (Eat-cubic: ``0 < tau <= 1``).
    n_samples : int, optional
        Hidden-count samples per segment and step (the particles of a particle objective); None:
        :data:`HIDDEN_SAMPLES` (the estimator gives a fit without hidden neurons :func:`default_samples`).
    objective : str
        What the fit maximises, a name of :data:`~spikeglm.inference.objectives.OBJECTIVES`: ``"elbo"``,
        ``"iwae"``, ``"fivo"`` (a particle filter's bound, Eat-cubic only) or ``"likelihood"`` (the
        log-likelihood, its gradient from a particle smoother; the relaxation is unused).
    epochs : int
        Passes over the data.
    lr : float
        Adam's learning rate.
    batch_size : int, optional
        Segments per step. None: chosen from the data by
        :func:`~spikeglm.inference.trainer.auto_batch_size`, so that every epoch takes several steps.
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
        :data:`~spikeglm.inference.stopping.PLATEAU_EPOCHS` epochs, lower the learning rate; stop at the
        next such plateau (:class:`~spikeglm.inference.stopping.Plateau`); ``epochs`` is then a cap. A
        fit with latent factors and no hidden neuron stops instead at the first epoch whose rise is below
        ``tol`` or within its noise (:class:`~spikeglm.inference.stopping.Settled`, see
        :func:`~spikeglm.inference.train`). None: run all ``epochs`` at ``lr``.
    straight_through : bool
        Score exact integer hidden counts and take only the gradient from the relaxation (Eat-cubic
        only, see :class:`~spikeglm.relax.EatCubic`). Without it the gradient is the relaxed counts' and
        the ELBO's record that of exact draws beside them (:class:`~spikeglm.inference.ELBO`).
    init : {"glm", "random"}
        How a fit with hidden neurons starts (:data:`~spikeglm.inference.start.STARTS`).
    """

    relaxation: str = _DEFAULT["relaxation"]
    temperature: float = _DEFAULT["temperature"]
    n_samples: int = _DEFAULT["n_samples"]  # None at construction: HIDDEN_SAMPLES
    objective: str = _DEFAULT["objective"]  # None at construction: default_objective(1, 0)
    epochs: int = _DEFAULT["epochs"]
    lr: float = _DEFAULT["lr"]
    batch_size: int | None = _DEFAULT["batch_size"]
    part_bins: int = _DEFAULT["part_bins"]
    seed: int = _DEFAULT["seed"]
    patience: int = _DEFAULT["patience"]
    eval_every: int = 10
    checkpoint_every: int = 50
    freeze_network: bool = _DEFAULT["freeze_network"]
    tol: float | None = _DEFAULT["tol"]
    straight_through: bool = _DEFAULT["straight_through"]
    init: str = _DEFAULT["init"]
    sampler: HiddenSampler = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked = {name: setting.check(getattr(self, name)) for name, setting in TRAINING_SETTINGS.items()}
        if checked["n_samples"] is None:
            checked["n_samples"] = default_samples(n_hidden=1)  # a config alone: the hidden neurons' default
        if checked["objective"] is None:
            checked["objective"] = default_objective(n_hidden=1, n_latent=0)  # the same
        for name in ("eval_every", "checkpoint_every"):
            checked[name] = whole(getattr(self, name), name)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        sampler = HiddenSampler(self.relaxation, self.temperature, self.straight_through)
        object.__setattr__(self, "sampler", sampler)
        self.make_objective()  # the objective refuses a sampler it cannot use

    def make_objective(self) -> Objective:
        """The objective this config names, with its samples and sampler."""
        return OBJECTIVES[self.objective](self.n_samples, self.sampler)

    def solves_after_training(self, network: Network) -> bool:
        """Whether a fit of ``network`` solves its couplings and biases exactly after training: with
        latent factors and no hidden neuron, given the factors' path, unless the network is frozen.
        Training has then only to place the factors' posterior (:class:`~spikeglm.inference.Settled`)."""
        return network.n_hidden == 0 and network.n_latent > 0 and not self.freeze_network

    def replace(self, **changes) -> TrainingConfig:
        """A copy with ``changes``, checked as the original was."""
        return dataclasses.replace(self, **changes)
