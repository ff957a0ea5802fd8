"""The history basis chosen by the data (``POGLM(window="auto")``): families and windows compared by
cross-validated likelihood.

Each candidate of :func:`candidates` (the exponential and the raised-cosine families over 5, 10, 20 and
50 bins, those that fit in a trial or segment) is fitted as the GLM of the visible neurons, with the
fit's covariates, on all the folds of :func:`~spikeglm.inference.strength.folds` but one, and scored by
its exact log-likelihood on that one. The simplest candidate (fewest functions, then the shortest
window) whose mean score lies within one paired standard error of the best is chosen, as
:func:`spikeglm.select_hidden` chooses hidden neurons: a longer or richer basis is taken only where the
data show it pays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikeglm.basis import Basis, get
from spikeglm.inference.glm import mean_log_likelihood, solve_glm
from spikeglm.inference.strength import FOLDS, fold_pairs, folds
from spikeglm.model import Network
from spikeglm.records import simplest_within_one_se
from spikeglm.segments import Segments

#: The families and windows (bins) that ``window="auto"`` compares.
FAMILIES, WINDOWS = ("exponential", "raised-cosine"), (5, 10, 20, 50)


def candidates(longest: int) -> list[Basis]:
    """The bases compared, simplest first (fewest functions, then the shortest window): each family over
    each window of at most ``longest`` bins (at least the shortest window)."""
    windows = [w for w in WINDOWS if w <= longest] or [min(WINDOWS[0], longest)]
    bases = [get(family, window=window) for family in FAMILIES for window in windows]
    return sorted(bases, key=lambda basis: (basis.n_basis, basis.window))


def cross_validated_basis(
    counts: torch.Tensor,
    link: str,
    length: int | None,
    *,
    covariates: torch.Tensor | None = None,
    max_iterations: int,
    part_bins: int,
) -> tuple[Basis, dict[str, Any]]:
    """The basis chosen for visible counts (trials, bins, V), and the table of the choice.

    Parameters
    ----------
    counts : torch.Tensor
        Visible counts (trials, bins, V).
    link : str
        The model's link.
    length : int, optional
        Segment length of the solves (None: whole trials); the candidates' windows are at most it and the
        trials' length.
    covariates : torch.Tensor, optional
        The covariates' columns on the counts' bins, split into the same folds.
    max_iterations, part_bins : int
        Of each solve (:func:`~spikeglm.inference.solve_glm`).

    Returns
    -------
    basis : Basis
    table : dict
        ``candidates`` (each basis as a dict), ``scores`` (held-out log-likelihood per neuron-bin,
        candidates x folds), ``folds_by`` and ``chosen`` (the index of the chosen candidate): what the
        model file records.
    """
    block = counts.shape[1] if counts.shape[0] >= FOLDS else counts.shape[1] // FOLDS  # a fold's trials
    bases = candidates(min(length or block, block))
    folds_by = folds(counts)[1]
    scores = np.empty((len(bases), FOLDS))
    for row, basis in enumerate(bases):
        for k, (rest, rest_known, held, held_known) in enumerate(fold_pairs(counts, covariates)):
            network = _start(basis, link, rest, 0 if covariates is None else covariates.shape[-1])
            data = Segments(rest, length, basis.window, rest_known)
            solve_glm(network, data, max_iterations=max_iterations, part_bins=part_bins)
            held_out = Segments(held, length, basis.window, held_known)
            scores[row, k] = mean_log_likelihood(network, held_out, part_bins)
    chosen = simplest_within_one_se(scores)
    table = {
        "candidates": [basis.to_dict() for basis in bases],
        "scores": scores.tolist(),
        "folds_by": folds_by,
        "chosen": chosen,
    }
    return bases[chosen], table


def _start(basis: Basis, link: str, counts: torch.Tensor, n_covariates: int) -> Network:
    """A GLM of the visible neurons with ``basis``, biases at the counts' mean rates, no coupling."""
    network = Network(counts.shape[-1], 0, basis, link, n_covariates=n_covariates)
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    return network
