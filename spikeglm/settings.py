"""The settings of :class:`~spikeglm.poglm.POGLM`, each declared once: name, type, default, check and help.

The model's settings are declared here and the training's beside the training
(:data:`spikeglm.inference.config.TRAINING_SETTINGS`). The estimator's signature, the training config's
defaults and checks, and the command line's model options (defaults, types, ranges and help) are all read
from :data:`SETTINGS`, so that a default is written once and nowhere else.

Examples
--------
>>> from spikeglm.settings import SETTINGS
>>> SETTINGS["epochs"].default
500
>>> SETTINGS["objective"].check("IWAE")
'iwae'
"""

from __future__ import annotations

from typing import Any

from spikeglm.basis import BASES
from spikeglm.inference.config import TRAINING_SETTINGS
from spikeglm.inference.penalty import PENALTIES
from spikeglm.model import DEFAULT_LATENT_TAU, LINKS
from spikeglm.options import Setting, declare
from spikeglm.variational import FAMILIES

#: Default segment length of a fit (bins): longer trials are cut, with context.
SEGMENT_BINS = 1000


#: The settings of the model itself, in the constructor's order.
MODEL_SETTINGS: dict[str, Setting] = declare(
    Setting(
        "n_hidden",
        int,
        2,
        "Number of hidden neurons, or 'auto': chosen among --candidates by cross-validation.",
        minimum=0,
    ),
    Setting("basis", str, "exponential", "History basis.", choices=BASES),
    Setting(
        "window",
        int,
        5,
        "History length in bins, or auto: the basis (exponential or raised-cosine) and window (5, 10, 20 or "
        "50 bins) chosen by cross-validated likelihood of the visible neurons' GLM, first for the neurons' "
        "own history (--self-basis), then for the couplings.",
        words=("auto",),
    ),
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
    Setting(
        "self_basis",
        str,
        None,
        "A basis of each neuron's own history besides the couplings' (its self-coupling filter then has "
        "both), e.g. raised-cosine with --self-window 50: refractoriness, bursts and rhythms outlast "
        "the couplings. Default none: the couplings' basis alone.",
        choices=BASES,
        optional=True,
    ),
    Setting(
        "self_window",
        int,
        None,
        "History length in bins of --self-basis.",
        minimum=1,
        optional=True,
    ),
    Setting(
        "n_latent",
        int,
        0,
        "Number of slow latent factors that drive every neuron through a loading: a shared input such as "
        "brain state or background, which the couplings would otherwise absorb. 0: none.",
        minimum=0,
    ),
    Setting(
        "latent_tau",
        float,
        "auto",
        "The latent factors' time constant at the start of a fit, in bins, or auto: that of the GLM's "
        f"errors along each factor, where they show one, else {DEFAULT_LATENT_TAU:g} bins. It is held "
        "through the first learning rate (at most a quarter of --epochs) and learned after: a fit without "
        "hidden neurons, which ends at its first rate, keeps it.",
        words=("auto",),
    ),
    Setting(
        "penalty",
        str,
        None,
        "Penalty of the couplings between distinct neurons: ridge, or group-lasso (sets whole filters to "
        "zero; no Wald test then; fits without hidden neurons or factors only). Default none.",
        choices=PENALTIES,
        optional=True,
    ),
    Setting(
        "penalty_strength",
        float,
        "cv",
        "Strength of the penalty, in nats per spike, or cv: chosen by cross-validated likelihood (with "
        "hidden neurons or factors, the visible neurons' GLM's).",
        words=("cv",),
    ),
)

#: Every setting of :class:`~spikeglm.poglm.POGLM` by name: the model's, how long trials are cut
#: (``segment_bins``) and the training's.
SETTINGS: dict[str, Setting] = {
    **MODEL_SETTINGS,
    **declare(
        Setting(
            "segment_bins",
            int,
            SEGMENT_BINS,
            "Trials longer than this are fitted in segments of this many bins (history kept across cuts).",
            optional=True,
        ),
        Setting(
            "standard_errors",
            bool,
            "auto",
            "Whether a fit without hidden neurons computes the couplings' standard errors (what the Wald "
            "tests read): yes, no, or auto: yes unless, on the CPU, they would take more than three hours "
            "of one core (e.g. 1,000 neurons for two hours), which a warning then says.",
            words=("auto",),
        ),
    ),
    **TRAINING_SETTINGS,
}


#: The default value of every setting, by name.
DEFAULTS: dict[str, Any] = {name: setting.default for name, setting in SETTINGS.items()}
