"""The strength of a coupling penalty chosen by cross-validation (``penalty_strength="cv"``).

The data are split into :data:`FOLDS` parts (whole trials where there are enough, else blocks of time).
For each fold, the GLM is solved on the other parts along a path of strengths from strong (for the group
lasso, the one that keeps every coupling between distinct neurons at zero,
:func:`~spikeglm.inference.penalty.largest_strength`; ten times it for the ridge) down to none at all,
each solve starting from the last, and scored by its exact log-likelihood on the fold. The path ends
with none, so that a penalty is used only where it helps, or where :data:`PAST_BEST` strengths in a row
have scored below the best. Its points are half a decade apart and the score peaks between them, so the
best point is then refined: the vertex of the parabola in the strength's logarithm through it and its
two neighbours (:func:`refined_strength`) is solved and scored on every fold too, each solve starting
from the best point's, and the strength of the best mean score among them all is chosen.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

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
#: Strengths in a row scoring below the best, after which the path stops: the weakest solves cost the
#: most (the couplings the data leave unbounded grow), and on every recording measured the score only
#: fell further beyond (docs/benchmarks.md, "Penalised couplings").
PAST_BEST = 3


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
        ``strengths`` (the candidates, largest first: the path's, and the refinement's where it was
        scored), ``scores`` (held-out log-likelihood per neuron-bin, candidates x folds), ``folds_by`` and
        ``chosen``: what the model file records.
    """
    name = PENALTIES.name(penalty)
    everything = Segments(counts, length, covariates=covariates)
    scale = largest_strength(likelihood_gradient(_copy(network), everything, part_bins))
    strengths = [*(scale * 10.0 ** DECADES[name]).tolist(), 0.0]
    scored = functools.partial(
        _scored, name=name, length=length, max_iterations=max_iterations, part_bins=part_bins
    )
    scores = np.empty((len(strengths), FOLDS))
    # The path is walked on every fold at once: each fold's solve starts from its last, and the folds'
    # solutions at the best strength so far are kept, for the refinement to start from.
    fitted = [_copy(network) for _ in range(FOLDS)]
    best, kept = -1, []
    for row, strength in enumerate(strengths):
        for k, fold in enumerate(fold_pairs(counts, covariates)):
            scores[row, k] = scored(fitted[k], strength, fold)
        if best < 0 or scores[row].mean() > scores[best].mean():
            best, kept = row, [_state(one) for one in fitted]
        elif row - best == PAST_BEST:  # weaker strengths, down to none, would score lower still
            del strengths[row + 1 :]
            scores = scores[: row + 1]
            break
    refined = refined_strength(strengths, scores.mean(axis=1))
    if refined != strengths[best]:  # scored on every fold too, from the best's solutions
        extra = np.empty(FOLDS)
        for k, fold in enumerate(fold_pairs(counts, covariates)):
            fitted[k].load_state_dict(kept[k])
            extra[k] = scored(fitted[k], refined, fold)
        at = best if refined > strengths[best] else best + 1  # the path stays largest first
        strengths.insert(at, refined)
        scores = np.insert(scores, at, extra, axis=0)
    chosen = strengths[int(np.argmax(scores.mean(axis=1)))]
    table = {
        "strengths": strengths,
        "scores": scores.tolist(),
        "folds_by": folds(counts)[1],
        "chosen": chosen,
    }
    return chosen, table


def _state(network: Network) -> dict[str, torch.Tensor]:
    """A copy of ``network``'s parameters."""
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def _scored(
    fitted: Network,
    strength: float,
    fold: FoldPair,
    *,
    name: str,
    length: int | None,
    max_iterations: int,
    part_bins: int,
) -> float:
    """Solve ``fitted`` under the penalty ``name`` of ``strength`` (none at 0) on a fold's other parts,
    from where it is, and score it on the fold: its exact log-likelihood per neuron-bin."""
    rest, rest_known, held, held_known = fold
    solve_glm(
        fitted,
        Segments(rest, length, covariates=rest_known),
        max_iterations=max_iterations,
        part_bins=part_bins,
        penalty=PENALTIES[name](strength) if strength > 0 else None,
    )
    return mean_log_likelihood(fitted, Segments(held, length, covariates=held_known), part_bins)


def refined_strength(strengths: list[float], scores: np.ndarray) -> float:
    """The strength at the vertex of the parabola in ``log(strength)`` through the best mean score of a
    path and its two neighbours; the best point itself where it has no positive neighbour on each side
    (the path's first point, or its last before none), a neighbour's score is not finite, or the three
    lie on a line.

    The best point scores at least as well as its neighbours, so the vertex lies between them.

    Parameters
    ----------
    strengths : list of float
        The path, largest first, ending with 0 (none) or where it stopped.
    scores : numpy.ndarray
        The mean cross-validated score of each strength.

    Examples
    --------
    >>> import numpy as np
    >>> path = [1e-2, 1e-3, 1e-4, 1e-5, 0.0]
    >>> scores = -(np.log10(path[:4]) + 3.25) ** 2  # best at 10^-3.25
    >>> f"{refined_strength(path, np.append(scores, -9.0)):.3g}"
    '0.000562'
    >>> refined_strength(path, np.array([0.0, -1.0, -2.0, -3.0, -4.0]))  # the first is best: kept
    0.01
    """
    best = int(np.argmax(scores))
    if best == 0 or best + 1 >= len(strengths) or strengths[best + 1] <= 0:
        return float(strengths[best])
    x = np.log(np.asarray(strengths[best - 1 : best + 2], dtype=float))
    y = np.asarray(scores[best - 1 : best + 2], dtype=float)
    if not np.all(np.isfinite(y)):  # a neighbour that predicts nothing (a rate of 0 where a spike fell)
        return float(strengths[best])
    # The vertex of the parabola through three points (as in Brent's parabolic step).
    left, right = (x[1] - x[0]) * (y[1] - y[2]), (x[1] - x[2]) * (y[1] - y[0])
    denominator = left - right
    if denominator == 0:
        return float(strengths[best])
    vertex = x[1] - 0.5 * ((x[1] - x[0]) * left - (x[1] - x[2]) * right) / denominator
    return float(np.exp(np.clip(vertex, x.min(), x.max())))


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


def fold_pairs(
    counts: torch.Tensor, covariates: torch.Tensor | None = None, only: Iterable[int] | None = None
) -> Iterator[FoldPair]:
    """For each fold of :func:`folds` (or each of ``only``, in its order), the other folds joined (blocks
    of time become trials) and the fold itself, each with the covariates' columns cut the same way (None
    without covariates). Made one fold at a time, so that only one joined copy of the data is held."""
    parts = folds(counts)[0]
    known: list[torch.Tensor | None] = [None] * len(parts)
    if covariates is not None:
        known = list(folds(covariates)[0])
    for k in range(len(parts)) if only is None else only:
        held = parts[k]
        rest = torch.cat([part for i, part in enumerate(parts) if i != k])
        columns = [part for i, part in enumerate(known) if i != k and part is not None]
        yield rest, torch.cat(columns) if columns else None, held, known[k]
