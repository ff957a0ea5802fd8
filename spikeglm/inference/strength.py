"""The strength of a coupling penalty chosen by cross-validation (``penalty_strength="cv"``).

The data are split into :data:`FOLDS` parts (whole trials where there are enough, else blocks of time).
For each fold, the GLM is solved on the other parts along a path of strengths from strong (for the group
lasso, the one that keeps every coupling between distinct neurons at zero,
:func:`~spikeglm.inference.penalty.largest_strength`; ten times it for the ridge) down to none at all,
each solve starting from the last, and scored by its exact log-likelihood on the fold. The strength of
the best mean score is chosen; the unpenalised fit is one of the candidates, so a penalty is used only
where it helps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from spikeglm.inference.glm import likelihood_gradient, mean_log_likelihood, solve_glm
from spikeglm.inference.penalty import PENALTIES, largest_strength
from spikeglm.model import Network
from spikeglm.segments import Segments

#: Parts the data are split into.
FOLDS = 5
#: Strengths tried, as powers of ten times the natural scale (:func:`largest_strength`), largest first;
#: then none. The ridge shrinks without zeroing, so its path starts higher.
DECADES = {"group-lasso": np.linspace(0.0, -3.0, 7), "ridge": np.linspace(1.0, -4.0, 11)}


def cross_validated_strength(
    network: Network,
    counts: torch.Tensor,
    penalty: str,
    length: int | None,
    *,
    max_iterations: int,
    part_bins: int,
    covariates: torch.Tensor | None = None,
) -> tuple[float, dict]:
    """The strength of ``penalty`` with the best cross-validated log-likelihood, and the table of scores.

    Parameters
    ----------
    network : Network
        Its visible neurons' biases and covariates' weights start every solve, with no coupling (e.g.
        biases from the counts); left unchanged.
    counts : torch.Tensor
        Visible counts (trials, bins, V).
    penalty : str
        A name of :data:`~spikeglm.inference.penalty.PENALTIES`.
    length : int, optional
        Segment length of the solves (None: whole trials).
    max_iterations, part_bins : int
        Of each solve (:func:`~spikeglm.inference.solve_glm`).
    covariates : torch.Tensor, optional
        The covariates' columns on the counts' bins (trials, bins, F), split into the same folds.

    Returns
    -------
    strength : float
        The chosen strength (0: no penalty helps).
    table : dict
        ``strengths`` (the candidates, largest first), ``scores`` (held-out log-likelihood per neuron-bin,
        candidates x folds), ``folds_by`` and ``chosen``: what the model file records.
    """
    name = PENALTIES.name(penalty)
    everything = Segments(counts, length, covariates=covariates)
    scale = largest_strength(likelihood_gradient(_copy(network), everything, part_bins))
    strengths = [*(scale * 10.0 ** DECADES[name]).tolist(), 0.0]
    folds_by = folds(counts)[1]
    scores = np.empty((len(strengths), FOLDS))
    for k, (rest, rest_known, held, held_known) in enumerate(fold_pairs(counts, covariates)):
        fitted = _copy(network)
        for row, strength in enumerate(strengths):
            chosen = PENALTIES[name](strength) if strength > 0 else None
            solve_glm(
                fitted,
                Segments(rest, length, covariates=rest_known),
                max_iterations=max_iterations,
                part_bins=part_bins,
                penalty=chosen,
            )
            held_out = Segments(held, length, covariates=held_known)
            scores[row, k] = mean_log_likelihood(fitted, held_out, part_bins)
    best = int(np.argmax(scores.mean(axis=1)))
    table = {
        "strengths": strengths,
        "scores": scores.tolist(),
        "folds_by": folds_by,
        "chosen": strengths[best],
    }
    return strengths[best], table


def _copy(network: Network) -> Network:
    """A GLM of ``network``'s visible neurons with its biases and covariates' weights and no coupling (of
    a network with hidden neurons or latent factors too)."""
    n_visible = network.n_visible
    twin = Network(n_visible, 0, network.basis, network.link_name, n_covariates=network.n_covariates)
    twin.to(network.bias.device)
    with torch.no_grad():
        twin.bias.copy_(network.bias[:n_visible])
        if twin.covariate_weight is not None and network.covariate_weight is not None:
            twin.covariate_weight.copy_(network.covariate_weight[:n_visible])
    return twin


def folds(counts: torch.Tensor) -> tuple[list[torch.Tensor], str]:
    """``counts`` in :data:`FOLDS` parts: by whole trials if there are enough, else by blocks of time."""
    n_trials, n_bins = counts.shape[:2]
    if n_trials >= FOLDS:
        return list(torch.tensor_split(counts, FOLDS)), "trials"
    length = n_bins // FOLDS
    if length < 1:
        raise ValueError(
            f"penalty_strength='cv': {n_trials} trial(s) of {n_bins} bins cannot be cut into {FOLDS} blocks"
        )
    return [counts[:, k * length : (k + 1) * length] for k in range(FOLDS)], "time blocks"


#: One fold of :func:`fold_pairs`: the other folds' counts and covariates, then the fold's own.
FoldPair = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]


def fold_pairs(counts: torch.Tensor, covariates: torch.Tensor | None = None) -> Iterator[FoldPair]:
    """For each fold of :func:`folds`, the other folds joined (blocks of time become trials) and the fold
    itself, each with the covariates' columns cut the same way (None without covariates). Made one fold
    at a time, so that only one joined copy of the data is held."""
    parts = folds(counts)[0]
    known: list[torch.Tensor | None] = [None] * len(parts)
    if covariates is not None:
        known = list(folds(covariates)[0])
    for k, held in enumerate(parts):
        rest = torch.cat([part for i, part in enumerate(parts) if i != k])
        columns = [part for i, part in enumerate(known) if i != k and part is not None]
        yield rest, torch.cat(columns) if columns else None, held, known[k]
