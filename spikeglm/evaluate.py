"""Scores of fitted connectivity against the ground truth (plain NumPy).

Connectivity scores
    :func:`connectivity_scores` compares an estimated :class:`~spikeglm.connectivity.Connectivity` with the
    ground truth, after matching the hidden neurons (:func:`match_hidden`). The detection measures it uses,
    :func:`auroc`, :func:`average_precision` and :func:`matthews_corrcoef`, are plain NumPy functions of
    binary labels and scores.

All connectivity scores work on the integrated coupling ``strength[post, pre]`` (each filter summed over its
lags), so that estimates on different history bases compare with the same truth; for the normalised
one-function exponential basis of the published protocols, strength and weight coincide.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from spikeglm.connectivity import Connectivity

__all__ = [
    "align_hidden",
    "auroc",
    "average_precision",
    "connectivity_scores",
    "match_hidden",
    "matthews_corrcoef",
]


# ---------------------------------------------------------------------- connectivity scores
def match_hidden(
    truth: Connectivity, estimate: Connectivity, allow_inverted: bool = True
) -> list[tuple[int, int]]:
    """Pair the estimate's hidden neurons with the truth's by the Hungarian algorithm.

    Hidden neurons are identifiable only up to a permutation, and a hidden neuron may be learnt inverted:
    firing when the true one is silent, with the signs of its couplings to and from the visible neurons
    reversed. The cost of pairing true hidden neuron ``i`` with estimated hidden neuron ``j`` is the total
    absolute difference of their strengths to and from the visible neurons plus that of their
    self-couplings::

        cost[i, j] = sum_v |T[i, v] - s E[j, v]| + sum_v |T[v, i] - s E[v, j]| + |T[i, i] - E[j, j]|

    (T, E: truth's and estimate's strength; v runs over the visible neurons), with the orientation ``s``
    (+1, or -1 where ``allow_inverted`` and it costs less) chosen per pair. These terms depend on the
    pair alone, so :func:`scipy.optimize.linear_sum_assignment` minimises their sum over the assignment
    exactly. The couplings between two different hidden neurons are left out of the cost: their mismatch
    depends on the pairing of both ends, which would make the problem a quadratic assignment; they are still
    scored after matching.

    With different numbers of hidden neurons, ``min(H_true, H_est)`` pairs are formed and the others are left
    unmatched.

    Parameters
    ----------
    truth, estimate : Connectivity
        Networks with the same visible neurons (same labels, same order).
    allow_inverted : bool
        Whether a pair may match with the estimate's signs reversed (:func:`connectivity_scores` reports
        which pairs did).

    Returns
    -------
    list of (int, int)
        ``(true hidden index, estimated hidden index)`` pairs, counted within the hidden neurons (0 is the
        first hidden neuron), in increasing order of the true index.

    Raises
    ------
    ValueError
        If the visible neurons differ in number, labels or order.
    """
    return _match(truth, estimate, allow_inverted)[0]


def align_hidden(reference: Connectivity, estimate: Connectivity) -> np.ndarray:
    """The estimate's strength matrix with its hidden neurons put in the reference's order and orientation.

    The hidden neurons are paired by :func:`match_hidden` (inversion allowed); an estimated hidden neuron
    matched inverted has the signs of its couplings with every neuron of the other orientation reversed
    (``strength[i, j] * s_i * s_j``), so that it reads as the reference's. Rows and columns follow the
    visible neurons, then the matched hidden neurons in the reference's order; hidden neurons left
    unmatched (where the two have different numbers of them) are dropped.

    Raises
    ------
    ValueError
        If the visible neurons differ in number, labels or order.
    """
    pairs, signs = _match(reference, estimate, allow_inverted=True)
    return _aligned(estimate.strength, reference.n_visible, pairs, signs)


def _aligned(
    strength: np.ndarray, n_visible: int, pairs: list[tuple[int, int]], signs: list[int]
) -> np.ndarray:
    """An estimate's ``strength`` restricted to the visible and matched hidden neurons, in the pairs' order
    and each hidden neuron in its matched orientation."""
    index = np.concatenate([np.arange(n_visible), n_visible + np.array([j for _, j in pairs], dtype=int)])
    orientation = np.concatenate([np.ones(n_visible), np.array(signs, dtype=float)])
    return strength[np.ix_(index, index)] * np.outer(orientation, orientation)


def _match(
    truth: Connectivity, estimate: Connectivity, allow_inverted: bool
) -> tuple[list[tuple[int, int]], list[int]]:
    """:func:`match_hidden`'s pairs and the orientation (+1 or -1) of each."""
    _check_same_visible(truth, estimate)
    v = truth.n_visible

    def profile(strength: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Per hidden neuron: incoming from visible (H, V), outgoing to visible (H, V), self-coupling (H,).
        return strength[v:, :v], strength[:v, v:].T, np.diag(strength)[v:]

    true_in, true_out, true_self = profile(truth.strength)
    est_in, est_out, est_self = profile(estimate.strength)
    self_cost = np.abs(true_self[:, None] - est_self[None, :])

    def cost(sign: int) -> np.ndarray:
        return (
            np.abs(true_in[:, None, :] - sign * est_in[None, :, :]).sum(axis=-1)
            + np.abs(true_out[:, None, :] - sign * est_out[None, :, :]).sum(axis=-1)
            + self_cost
        )

    upright = cost(1)
    inverted = cost(-1) if allow_inverted else np.full_like(upright, np.inf)
    rows, cols = linear_sum_assignment(np.minimum(upright, inverted))
    signs = [-1 if inverted[i, j] < upright[i, j] else 1 for i, j in zip(rows, cols, strict=True)]
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)], signs


def connectivity_scores(
    truth: Connectivity, estimate: Connectivity, threshold: float | None = None
) -> dict[str, Any]:
    """Compare an estimated connectivity with the ground truth, hidden neurons matched first.

    The hidden neurons are paired by :func:`match_hidden` (an inverted one has its couplings' signs
    reversed before scoring); the scores use the strength matrix restricted to the visible neurons and the
    matched hidden ones (hidden neurons left unmatched when the two networks have different numbers of
    them are not scored), in the truth's order. Every score is also given for the visible block alone
    (``_visible``), what a fit of recorded neurons is judged by, and the error and correlation for the
    entries that involve a hidden neuron (``_hidden``).

    Parameters
    ----------
    truth : Connectivity
        The ground truth, hidden neurons included.
    estimate : Connectivity
        The estimate, with the same visible neurons (labels and order) as ``truth``.
    threshold : float, optional
        Marks an edge as detected where ``|estimated strength| > threshold``, for the MCC. By default, the
        threshold is the ``(n_true_edges + 1)``-th largest ``|estimated strength|``, so that as many edges are
        marked as the truth has (fewer where estimates tie at that rank).

    Returns
    -------
    dict
        ``mae``, ``pearson_r``
            Mean absolute difference and Pearson correlation over all entries (diagonal included) of the
            matched strength matrix.
        ``mae_visible``, ``pearson_r_visible``, ``mae_hidden``, ``pearson_r_hidden``
            The same over the visible block only, and over the rows and columns of the matched hidden
            neurons (nan without any).
        ``auroc``, ``auprc``, ``mcc``
            Edge detection over the off-diagonal entries of the matched matrix: an edge is present where the
            true strength is exactly nonzero (synthetic sparse networks have exact zeros), scored by
            ``|estimated strength|``. A group-lasso fit, whose connectivity carries ``entry_strength`` (see
            ``POGLM.entry_strength_``), ranks its couplings as the penalty does: those it kept by strength,
            above those it set to zero, and these by their entry strength (AUROC and AUPRC; the MCC stays a
            threshold of ``|estimated strength|``). AUROC counts ties as half (:func:`auroc`), AUPRC is the
            average precision (:func:`average_precision`), MCC is taken at ``threshold``
            (:func:`matthews_corrcoef`).
            All three are nan when the truth has no absent edge or no present edge (a dense or an empty
            network): a detection score needs both classes.
        ``sign_accuracy``
            Over the true off-diagonal edges, the fraction whose estimated strength has the true sign (an
            estimate of exactly 0 counts as wrong); nan without true edges. The diagonal (self-history,
            nearly always inhibitory) is left out, as in the detection scores.
        ``auroc_visible``, ``auprc_visible``, ``mcc_visible``, ``sign_accuracy_visible``
            The same over the visible block (the MCC at its own default threshold unless one is given).
        ``hidden_match``
            The ``(true, estimated)`` hidden index pairs of :func:`match_hidden`.
        ``hidden_inverted``
            For each pair, whether the estimated neuron matched inverted.
        ``n_true_edges``
            Number of true off-diagonal edges among the scored neurons.
        ``mcc_threshold``
            The threshold the MCC was taken at (nan where the MCC is).

    Raises
    ------
    ValueError
        If the visible neurons differ, or ``threshold`` is negative or not finite.
    """
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    pairs, signs = _match(truth, estimate, allow_inverted=True)
    v = truth.n_visible
    true_index = np.concatenate([np.arange(v), v + np.array([i for i, _ in pairs], dtype=int)])
    true_strength = truth.strength[np.ix_(true_index, true_index)]
    est_strength = _aligned(estimate.strength, v, pairs, signs)
    entry = estimate.metadata.get("entry_strength")
    if entry is not None:  # a strength >= 0: no orientation
        entry = _aligned(np.asarray(entry, dtype=np.float64), v, pairs, [1] * len(pairs))
    hidden = np.ones_like(true_strength, dtype=bool)
    hidden[:v, :v] = False
    visible_true, visible_est = true_strength[:v, :v], est_strength[:v, :v]
    visible_detection = _detection(
        visible_true, visible_est, threshold, None if entry is None else entry[:v, :v]
    )
    return {
        "mae": float(np.mean(np.abs(true_strength - est_strength))),
        "mae_visible": float(np.mean(np.abs(visible_true - visible_est))),
        "mae_hidden": float(np.mean(np.abs(true_strength - est_strength)[hidden])) if pairs else np.nan,
        "pearson_r": _pearson(true_strength, est_strength),
        "pearson_r_visible": _pearson(visible_true, visible_est),
        "pearson_r_hidden": _pearson(true_strength[hidden], est_strength[hidden]) if pairs else np.nan,
        **_detection(true_strength, est_strength, threshold, entry),
        **{f"{k}_visible": visible_detection[k] for k in ("auroc", "auprc", "mcc", "sign_accuracy")},
        "hidden_match": pairs,
        "hidden_inverted": [sign < 0 for sign in signs],
    }


def _detection(
    true_strength: np.ndarray, est_strength: np.ndarray, threshold: float | None, entry: np.ndarray | None
) -> dict:
    """Edge detection and sign scores over the off-diagonal entries (see :func:`connectivity_scores`)."""
    off_diagonal = ~np.eye(len(true_strength), dtype=bool)
    is_edge = true_strength[off_diagonal] != 0
    score = np.abs(est_strength[off_diagonal])
    rank = score if entry is None else _lasso_rank(score, entry[off_diagonal])
    n_true_edges = int(is_edge.sum())
    detection = {"auroc": np.nan, "auprc": np.nan, "mcc": np.nan, "mcc_threshold": np.nan}
    if 0 < n_true_edges < is_edge.size:
        mcc_threshold = np.sort(score)[::-1][n_true_edges] if threshold is None else threshold
        detection = {
            "auroc": auroc(is_edge, rank),
            "auprc": average_precision(is_edge, rank),
            "mcc": matthews_corrcoef(is_edge, score > mcc_threshold),
            "mcc_threshold": float(mcc_threshold),
        }
    true_edges = true_strength[off_diagonal][is_edge]
    est_at_edges = est_strength[off_diagonal][is_edge]
    sign_accuracy = float(np.mean(np.sign(est_at_edges) == np.sign(true_edges))) if n_true_edges else np.nan
    return {**detection, "sign_accuracy": sign_accuracy, "n_true_edges": n_true_edges}


def _lasso_rank(score: np.ndarray, entry: np.ndarray) -> np.ndarray:
    """A group-lasso fit's ranking of its couplings: the kept ones (``score = |strength| > 0``) by their
    strength, above every one set to zero, and these by their entry strength."""
    return np.where(score > 0, entry.max(initial=0.0) + score, entry)


def _check_same_visible(truth: Connectivity, estimate: Connectivity) -> None:
    true_labels = truth.labels[: truth.n_visible]
    est_labels = estimate.labels[: estimate.n_visible]
    if len(true_labels) != len(est_labels):
        raise ValueError(
            f"truth has {len(true_labels)} visible neurons, estimate has {len(est_labels)}; "
            "they must be the same"
        )
    for position, (true_label, est_label) in enumerate(zip(true_labels, est_labels, strict=True)):
        if true_label != est_label:
            raise ValueError(
                f"visible neuron {position} is {true_label!r} in truth but {est_label!r} in estimate; "
                "the visible neurons must have the same labels in the same order"
            )


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays; nan when either is constant."""
    x = x.ravel() - x.mean()
    y = y.ravel() - y.mean()
    norm = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.clip(np.sum(x * y) / norm, -1.0, 1.0)) if norm > 0 else np.nan


# ---------------------------------------------------------------------- detection measures
def auroc(is_edge: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve, as the Mann-Whitney statistic.

    The probability that a present edge scores higher than an absent one, ties counting one half.

    Parameters
    ----------
    is_edge : array_like of bool
        True where the edge is present.
    score : array_like of float
        Detection score of each entry (higher: more likely present).

    Returns
    -------
    float
        In [0, 1]; nan when either class is empty.
    """
    is_edge, score = _labels_and_scores(is_edge, score)
    n_present = int(is_edge.sum())
    n_absent = is_edge.size - n_present
    if n_present == 0 or n_absent == 0:
        return np.nan
    ranks = rankdata(score)  # average ranks: a tie between classes contributes one half
    u_statistic = ranks[is_edge].sum() - n_present * (n_present + 1) / 2
    return float(u_statistic / (n_present * n_absent))


def average_precision(is_edge: ArrayLike, score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision, ``sum_k (R_k - R_{k-1}) P_k``.

    ``P_k``, ``R_k`` are the precision and recall when the entries scoring at least the k-th largest distinct
    score are marked (step-wise, no interpolation; tied entries enter together), as in scikit-learn's
    ``average_precision_score``.

    Parameters
    ----------
    is_edge : array_like of bool
        True where the edge is present.
    score : array_like of float
        Detection score of each entry (higher: more likely present).

    Returns
    -------
    float
        In [0, 1]; nan without present edges.
    """
    is_edge, score = _labels_and_scores(is_edge, score)
    n_present = int(is_edge.sum())
    if n_present == 0:
        return np.nan
    order = np.argsort(-score, kind="stable")
    sorted_score, sorted_edge = score[order], is_edge[order]
    true_positives = np.cumsum(sorted_edge)
    # The last entry of each group of tied scores: a threshold can only fall between distinct scores.
    ends = np.append(np.flatnonzero(np.diff(sorted_score)), score.size - 1)
    precision = true_positives[ends] / (ends + 1)
    recall = true_positives[ends] / n_present
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def matthews_corrcoef(is_edge: ArrayLike, predicted: ArrayLike) -> float:
    """Matthews correlation coefficient of a binary prediction.

    ``(TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN))``, taken as 0 when a factor of the
    denominator is 0 (a constant truth or prediction carries no correlation).

    Parameters
    ----------
    is_edge : array_like of bool
        True where the edge is present.
    predicted : array_like of bool
        True where the edge is predicted present.

    Returns
    -------
    float
        In [-1, 1].
    """
    is_edge = np.asarray(is_edge, dtype=bool).ravel()
    predicted = np.asarray(predicted, dtype=bool).ravel()
    if is_edge.shape != predicted.shape:
        raise ValueError(f"is_edge and predicted differ in size: {is_edge.size} and {predicted.size}")
    tp = float(np.sum(is_edge & predicted))
    tn = float(np.sum(~is_edge & ~predicted))
    fp = float(np.sum(~is_edge & predicted))
    fn = float(np.sum(is_edge & ~predicted))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator > 0 else 0.0


def _labels_and_scores(is_edge: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    is_edge = np.asarray(is_edge, dtype=bool).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if is_edge.shape != score.shape:
        raise ValueError(f"is_edge and score differ in size: {is_edge.size} and {score.size}")
    if not np.isfinite(score).all():
        raise ValueError("score must be finite")
    return is_edge, score
