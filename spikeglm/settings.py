"""The settings of :class:`~spikeglm.poglm.POGLM`, each declared once: name, type, default, check and help.

The estimator's signature, :class:`~spikeglm.fit.TrainingConfig`'s defaults and checks, and the command
line's model options (defaults, types, ranges and help) are all read from :data:`SETTINGS`, so that a
default is written here and nowhere else.

Examples
--------
>>> from spikeglm.settings import SETTINGS
>>> SETTINGS["epochs"].default
500
>>> SETTINGS["objective"].check("IWAE")
'iwae'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikeglm.basis import BASES
from spikeglm.model import LINKS
from spikeglm.options import Registry, positive, whole
from spikeglm.relax import RELAXATIONS
from spikeglm.variational import FAMILIES

#: The objectives: what the fit maximises.
OBJECTIVES: Registry[str] = Registry(
    "objective",
    {
        "elbo": "evidence lower bound",
        "iwae": "importance-weighted bound over the samples of a trial",
        "fivo": "particle-filter bound: the samples are particles, resampled bin by bin",
        "likelihood": "the log-likelihood itself, its gradient from a particle smoother whose samples "
        "are particles; the posterior is its proposal",
    },
)
#: How a fit with hidden neurons starts.
STARTS: Registry[str] = Registry(
    "init",
    {
        "glm": "the visible neurons' GLM, hidden neurons along the principal components of its errors",
        "random": "small random couplings",
    },
)
#: Default bins computed at once in a training step (context included); bounds the memory of a step.
PART_BINS = 2**15
#: Default segment length of a fit (bins): longer trials are cut, with context.
SEGMENT_BINS = 1000


@dataclass(frozen=True)
class Setting:
    """One setting of the estimator.

    Parameters
    ----------
    name : str
        Its name, as the constructor's argument.
    kind : type
        ``int`` (a whole number >= ``minimum``), ``float`` (a finite number > 0), ``bool``, ``str`` (one
        of ``choices``) or ``dict``.
    default : object
        Its default value.
    help : str
        What it does, in a line or two (the command line's help).
    choices : Registry, optional
        The named choices of a ``str`` setting.
    minimum : int
        The least whole number an ``int`` setting takes.
    optional : bool
        Whether None is accepted (for "none", "automatic" or "never").
    """

    name: str
    kind: type
    default: Any
    help: str = ""
    choices: Registry | None = None
    minimum: int = 1
    optional: bool = False

    def check(self, value: Any) -> Any:
        """``value`` checked and in its canonical form (a choice by its canonical name).

        Raises
        ------
        ValueError
            If ``value`` is not a valid value of this setting; the message names the setting.
        """
        if value is None and self.optional:
            return None
        if self.choices is not None:
            return self.choices.name(value)
        if self.kind is int:
            return whole(value, self.name, minimum=self.minimum)
        if self.kind is float:
            return positive(value, self.name)
        if self.kind is bool:
            return bool(value)
        return value


def _settings(*settings: Setting) -> dict[str, Setting]:
    return {setting.name: setting for setting in settings}


#: The settings of the model itself, in the constructor's order.
MODEL_SETTINGS: dict[str, Setting] = _settings(
    Setting(
        "n_hidden",
        int,
        2,
        "Number of hidden neurons, or 'auto': chosen among --candidates by cross-validation.",
        minimum=0,
    ),
    Setting("basis", str, "exponential", "History basis.", choices=BASES),
    Setting("window", int, 5, "History length in bins."),
    Setting(
        "link",
        str,
        "softplus",
        "Link from the linear predictor to the rate per bin (sigmoid keeps rates below 1 per bin, as in the "
        "published POGLM experiments).",
        choices=LINKS,
    ),
    Setting(
        "variational",
        str,
        "forward-backward",
        "Posterior family of the hidden counts: forward-backward reads the visible past and future, "
        "forward the past only, forward-self also the sampled hidden past, smoothing all three "
        "(the last two sample bin by bin: slower).",
        choices=FAMILIES,
    ),
    Setting("basis_options", dict, None, optional=True),
)

#: The settings of the training, which go to :class:`~spikeglm.fit.TrainingConfig`.
TRAINING_SETTINGS: dict[str, Setting] = _settings(
    Setting(
        "relaxation",
        str,
        "eat-cubic",
        "Differentiable relaxation of the sampled hidden counts (exact: score-function gradients).",
        choices=RELAXATIONS,
    ),
    Setting("temperature", float, 0.5, "Relaxation temperature (eat-cubic: at most 1)."),
    Setting("n_samples", int, 5, "Hidden-count samples (fivo: particles) per trial and step."),
    Setting(
        "objective",
        str,
        "elbo",
        "What the fit maximises: elbo; iwae (importance-weighted over --samples); fivo (a particle "
        "filter's bound over --samples particles); likelihood (the log-likelihood itself, its gradient from "
        "a particle smoother of --samples particles: hidden neurons are not shrunk, several times slower; "
        "try --samples 16).",
        choices=OBJECTIVES,
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
        "learning rate five-fold; at the next such plateau, stop. 0: run all --epochs.",
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
        "How a fit with hidden neurons starts: glm (the visible neurons' GLM, each hidden neuron "
        "along a principal component of its errors) or random (small random couplings).",
        choices=STARTS,
    ),
)

#: Every setting of :class:`~spikeglm.poglm.POGLM` by name: the model's, how long trials are cut
#: (``segment_bins``) and the training's.
SETTINGS: dict[str, Setting] = {
    **MODEL_SETTINGS,
    **_settings(
        Setting(
            "segment_bins",
            int,
            SEGMENT_BINS,
            "Trials longer than this are fitted in segments of this many bins (history kept across cuts).",
            optional=True,
        )
    ),
    **TRAINING_SETTINGS,
}


#: The default value of every setting, by name.
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}
