"""The memory a fit needs, estimated from its settings before it starts, and the refusal of a fit that
would not fit."""

from __future__ import annotations

from spikeglm.inference.newton import INFORMATION_BINS, NEWTON_COLUMNS, information_memory, newton_memory
from spikeglm.inference.objectives import OBJECTIVES
from spikeglm.inference.whitening import JOINT_COLUMNS
from spikeglm.memory import available_memory, format_bytes

#: Floats that training keeps per parameter: the value, its gradient and Adam's two moments, and the copy
#: of the best parameters that early stopping keeps.
_ADAM_COPIES = 5
#: The same for L-BFGS (fits without hidden neurons, and the GLM a fit with hidden neurons starts from):
#: value, gradient, a few directions, and the 20 pairs of its history, in float64 (its whitened
#: variables, :mod:`~spikeglm.inference.whitening`) beside the float32 parameters.
_LBFGS_COPIES = 89
#: Tensors of (samples, bins, neurons) that a step keeps for its gradient: rates, predictors, the complete
#: counts, the log-probabilities and their intermediates.
_STEP_TENSORS = 17
#: Tensors of (bins, units, basis functions) that a step holds: the histories (past and future) of the
#: visible counts, the copies the convolutions make, and the design the couplings multiply.
_DESIGN_TENSORS = 8
#: Tensors of (samples, bins, factors) that a step with latent factors keeps: the drawn path, its noise,
#: the encoder's potentials, and the levels of the odd-even reduction that solves the path's posterior.
_LATENT_TENSORS = 24


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
    n_latent: int = 0,
    n_covariates: int = 0,
) -> dict[str, float]:
    """The memory a fit needs at its peak, in bytes, by what it is for; estimated from the settings alone.

    Counted, in 4-byte floats unless said otherwise (``N = n_visible + n_hidden`` neurons, ``B =
    n_basis`` basis functions of ``window`` lags, ``b = part_bins`` bins of one part of a step, context
    included, ``S = n_samples``, ``K = n_latent`` latent factors, ``F = n_covariates`` covariate
    columns). A fit is trained when it has hidden neurons or latent factors, and solved as a GLM
    otherwise:

    ``"parameters"``
        The network's couplings (N x N x B), biases, loadings (N x K) and covariate weights (N x F), the
        posterior's readings of the visible past and future (2 x H x V x B), of the hidden past (H x H x
        B) and of the factors (2 x K x V), times the copies the optimiser keeps (gradients and Adam's
        moments; L-BFGS's history without hidden neurons: a GLM, or the final solve of the couplings given
        the latent factors).
    ``"start"``
        Trained fits: the visible neurons' GLM they start from (its L-BFGS copies) and the correlation
        matrix of its errors with its eigenvectors, (V + 1) x (V + 1) float64 several times. A GLM: up
        to :data:`~spikeglm.inference.newton.NEWTON_COLUMNS` columns ``1 + N B + F``, the Newton solve's
        curvature blocks, N of (1 + N B + F)^2 float64 three times over
        (:func:`~spikeglm.inference.newton.newton_memory`); beyond, where L-BFGS solves it, the
        observed information behind the standard errors, once, with a group of ``b`` bins' temporaries
        (:func:`~spikeglm.inference.newton.information_memory`). The data the Newton solve keeps in
        memory are not counted: it keeps them only within a quarter of the memory available.
    ``"step"``
        One part of a training step: the design (the basis-filtered histories of the visible counts, b x V
        x B, with the convolutions' copies, and the covariates' columns, b x F), and for each of the S
        samples the hidden counts, their history (b x H x B) and the rates and log-probabilities of every
        neuron (b x N) that the gradient needs; a particle objective (``"fivo"``, ``"likelihood"``: those
        whose :attr:`~spikeglm.inference.objectives.Objective.particles` is true) also keeps each bin's
        window of hidden history (b x window x H per particle). Latent factors add, per sample, the path
        and what solving its posterior keeps (b x K several times).
    ``"scoring"``
        With ``score_trials`` held-out trials of ``score_bins`` bins scored by ``n_particles`` particles
        (:func:`spikeglm.smc.log_likelihood`, as cross-validation does): every particle's window of
        hidden history, its factors' state and rates of every neuron, the visible drive of a block of
        bins, and the factors' posterior transitions over a whole trial (3 x bins x K x K).

    The estimate is meant to be within a factor of about two of the tensors a CPU fit holds at its peak
    (the tests compare the two); what it leaves out (the counts themselves, torch's own footprint) is
    small next to what it counts whenever the total matters. Nor does it count the training segments'
    filtered visible counts, which a fit keeps only within
    :data:`~spikeglm.inference.trainer.FILTERED_SHARE` of the memory available. The resident size a
    system monitor shows can be larger again: glibc keeps some freed blocks for reuse (up to as much
    again as the estimate in the tests' fits; ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment
    returns them at once).

    Returns
    -------
    dict
        Bytes by part (the keys above, those that apply), in that order.
    """
    n_neurons = n_visible + n_hidden
    floats = 4
    parameters = n_parameters(n_visible, n_hidden, n_basis, n_latent) + n_neurons * n_covariates
    trained = bool(n_hidden or n_latent)
    copies = _ADAM_COPIES if n_hidden else _LBFGS_COPIES  # a fit without hidden neurons ends with L-BFGS
    parts = {"parameters": float(parameters) * copies * floats}
    if trained:
        columns = 1 + n_visible * n_basis + n_covariates
        glm = float(n_visible) * columns * _LBFGS_COPIES * floats + _whitening_memory(columns)
        parts["start"] = glm + 6.0 * (n_visible + 1) ** 2 * 8
    else:
        columns = 1 + n_neurons * n_basis + n_covariates
        if columns <= NEWTON_COLUMNS:
            parts["start"] = newton_memory(n_neurons, columns)
        else:
            information = information_memory(n_neurons, columns, min(INFORMATION_BINS, part_bins))
            parts["start"] = information + _whitening_memory(columns)
    design = float(part_bins) * (n_visible * n_basis + n_covariates) * _DESIGN_TENSORS
    per_bin = _STEP_TENSORS * n_neurons + 4 * n_hidden * n_basis + _LATENT_TENSORS * n_latent
    samples = float(n_samples) * part_bins * per_bin
    if OBJECTIVES[objective].particles and n_hidden:
        samples += 2.0 * n_samples * part_bins * window * n_hidden
    parts["step"] = (design + (samples if trained else _STEP_TENSORS * part_bins * n_neurons)) * floats
    if score_trials and trained:
        block = min(score_bins, 4096) + window
        per_particle = 3 * window * n_hidden + 4 * n_neurons + 3 * n_latent
        particles = float(score_trials) * n_particles * per_particle
        transitions = 3.0 * score_trials * score_bins * n_latent**2 * 2  # float64
        parts["scoring"] = (particles + transitions + 5.0 * score_trials * block * n_neurons) * floats
    return parts


def _whitening_memory(columns: int) -> float:
    """Bytes of L-BFGS's whitening of a design of ``columns`` columns: three float64 matrices (or
    vectors, beyond :data:`~spikeglm.inference.whitening.JOINT_COLUMNS`)."""
    return 3.0 * 8 * (columns**2 if columns <= JOINT_COLUMNS else columns)


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


def n_parameters(n_visible: int, n_hidden: int, n_basis: int, n_latent: int = 0) -> int:
    """Parameters of a model and its posterior: couplings, biases and loadings of every neuron, the
    factors' time constants, and the posterior's readings of the visible past and future, of the hidden
    past and of the factors, with its biases."""
    n_neurons = n_visible + n_hidden
    hidden = n_hidden * ((2 * n_visible + n_hidden) * n_basis + 1)
    latent = n_latent * (n_neurons + 2 * n_visible + 3)
    return n_neurons * (n_neurons * n_basis + 1) + hidden + latent
