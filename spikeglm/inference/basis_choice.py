"""The history basis chosen by the data (``POGLM(window="auto")``): families and windows compared by
cross-validated likelihood, for the couplings and for each neuron's own history.

The bases of :func:`candidates` (the exponential and the raised-cosine families over 5, 10, 20 and 50
bins, those that fit in a trial or segment) are each fitted as the GLM of the visible neurons, with the
fit's covariates, on all the folds of :func:`~spikeglm.inference.strength.folds` but one, and scored by
the exact log-likelihood on that one. The choice is made in two stages, each by the rule that
:func:`spikeglm.select_hidden` follows (the simplest candidate whose mean score lies within one paired
standard error of the best: a longer or richer basis is taken only where the data show it pays):

1. the neurons' own history: the simplest basis alone, or with each other candidate for the own history
   alone (:class:`~spikeglm.basis.OwnHistory`);
2. the couplings: each candidate, with the own history that the first stage chose.

A neuron's refractoriness and bursts often outlast its couplings; one basis for both would lengthen
every coupling filter to fit them, which costs parameters and blurs the couplings' ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from spikeglm import parallel
from spikeglm.basis import Basis, OwnHistory, get
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
        ``candidates`` (each basis scored, as a dict), ``scores`` (held-out log-likelihood per
        neuron-bin, candidates x folds), ``folds_by``, ``chosen`` (the index of the chosen candidate) and
        ``stages`` (the rows each stage compared, ``own`` then ``couplings``): what the model file
        records.
    """
    block = counts.shape[1] if counts.shape[0] >= FOLDS else counts.shape[1] // FOLDS  # a fold's trials
    plain = candidates(min(length or block, block))
    bases: list[Basis] = []
    rows: list[np.ndarray] = []

    def stage(compared: list[Basis]) -> tuple[list[int], Basis]:
        """Score the bases not scored yet; the rows of ``compared`` and the one the rule chooses."""
        for basis in compared:
            if basis not in bases:
                bases.append(basis)
                rows.append(_fold_scores(basis, link, length, counts, covariates, max_iterations, part_bins))
        indices = [bases.index(basis) for basis in compared]
        return indices, compared[simplest_within_one_se(np.array([rows[i] for i in indices]))]

    simplest = plain[0]
    own_rows, first = stage([simplest] + [OwnHistory(simplest, own) for own in plain[1:]])
    own = first.own if isinstance(first, OwnHistory) else None
    paired = [basis if own is None or basis == own else OwnHistory(basis, own) for basis in plain]
    coupling_rows, chosen = stage(paired)
    table = {
        "candidates": [basis.to_dict() for basis in bases],
        "scores": np.array(rows).tolist(),
        "folds_by": folds(counts)[1],
        "chosen": bases.index(chosen),
        "stages": {"own": own_rows, "couplings": coupling_rows},
    }
    return chosen, table


def _fold_scores(
    basis: Basis,
    link: str,
    length: int | None,
    counts: torch.Tensor,
    covariates: torch.Tensor | None,
    max_iterations: int,
    part_bins: int,
) -> np.ndarray:
    """The held-out log-likelihood per neuron-bin of the visible GLM with ``basis`` on each fold of the
    counts (:func:`~spikeglm.inference.strength.fold_pairs`), fitted on the others. Under ``torchrun``
    each process fits and scores its share of the folds alone (only those are joined), and the scores are
    summed over them."""
    scores = torch.zeros(FOLDS, dtype=torch.float64)
    n_covariates = 0 if covariates is None else covariates.shape[-1]
    mine = parallel.share(FOLDS)
    with parallel.alone():
        for k, (rest, rest_known, held, held_known) in zip(
            mine, fold_pairs(counts, covariates, mine), strict=True
        ):
            network = _start(basis, link, rest, n_covariates)
            data = Segments(rest, length, basis.window, rest_known)
            solve_glm(network, data, max_iterations=max_iterations, part_bins=part_bins)
            held_out = Segments(held, length, basis.window, held_known)
            scores[k] = mean_log_likelihood(network, held_out, part_bins)
    return parallel.all_sum(scores).numpy()


def _start(basis: Basis, link: str, counts: torch.Tensor, n_covariates: int) -> Network:
    """A GLM of the visible neurons with ``basis``, biases at the counts' mean rates, no coupling."""
    network = Network(counts.shape[-1], 0, basis, link, n_covariates=n_covariates)
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    return network
