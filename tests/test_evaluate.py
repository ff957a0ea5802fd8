"""Tests of the connectivity scores in spikeglm.evaluate: hidden-neuron matching and detection measures."""

from __future__ import annotations

import numpy as np
import pytest

from spikeglm.connectivity import Connectivity
from spikeglm.evaluate import auroc, average_precision, connectivity_scores, match_hidden, matthews_corrcoef

SCORE_KEYS = {
    "mae",
    "mae_visible",
    "pearson_r",
    "pearson_r_visible",
    "auroc",
    "auprc",
    "mcc",
    "sign_accuracy",
}


def sparse_network(seed: int = 0, n_visible: int = 4, n_hidden: int = 3) -> Connectivity:
    """A sparse ground truth with exact zeros and inhibitory self-coupling, visible neurons first."""
    rng = np.random.default_rng(seed)
    n = n_visible + n_hidden
    strength = rng.uniform(0.5, 2.0, (n, n)) * rng.choice([-1.0, 1.0], (n, n)) * (rng.random((n, n)) < 0.5)
    np.fill_diagonal(strength, -1.0)
    return Connectivity.from_strength(strength, visible=np.arange(n) < n_visible)


def with_noise(conn: Connectivity, scale: float, seed: int = 1) -> Connectivity:
    noise = np.random.default_rng(seed).normal(0.0, scale, conn.strength.shape)
    return Connectivity.from_strength(conn.strength + noise, labels=conn.labels, visible=conn.visible)


# ---------------------------------------------------------------------- detection measures by hand
def test_auroc_by_hand() -> None:
    # Present scores 0.9, 0.7, 0.3 against absent 0.8, 0.3: wins 1 + 1 + 0 + 1 + 0, one tie -> 3.5 / 6.
    assert auroc([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.3, 0.3]) == pytest.approx(7 / 12)
    assert auroc([1, 1, 0, 0], [4.0, 3.0, 2.0, 1.0]) == 1.0
    assert auroc([1, 1, 0, 0], [1.0, 2.0, 3.0, 4.0]) == 0.0
    assert auroc([1, 0, 1, 0], [1.0, 1.0, 1.0, 1.0]) == 0.5
    assert np.isnan(auroc([1, 1], [0.1, 0.2]))
    assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_a_group_lasso_fit_ranks_the_couplings_it_set_to_zero_by_their_entry_strength() -> None:
    # Edges 0<-1 and 1<-2. Kept: 0<-1 (0.5, an edge) and 0<-2 (0.2, absent); set to zero: the edge 1<-2
    # and three absent pairs. By |strength| alone the zeroed edge ties with three absent pairs and loses to
    # one: (4 + 1.5) / 8. Its entry strength (0.9, the highest of the zeroed) puts it above those three.
    truth = Connectivity.from_strength([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    strength = [[-3.0, 0.5, 0.2], [0.0, -3.0, 0.0], [0.0, 0.0, -3.0]]
    entry = [[0.0, 1.0, 1.0], [0.1, 0.0, 0.9], [0.3, 0.2, 0.0]]
    plain = connectivity_scores(truth, Connectivity.from_strength(strength))
    zeroed = Connectivity.from_strength(strength, metadata={"entry_strength": entry})
    lasso = connectivity_scores(truth, zeroed)
    assert plain["auroc"] == pytest.approx(5.5 / 8)
    assert lasso["auroc"] == lasso["auroc_visible"] == pytest.approx(7 / 8)
    assert lasso["auprc"] == pytest.approx((1 + 2 / 3) / 2)  # ranks: edge, absent, edge
    assert lasso["mcc"] == plain["mcc"]  # a threshold of |strength|, as before


def test_average_precision_by_hand() -> None:
    # Thresholds at 0.9, 0.8, 0.7, 0.3 (tie of a present and an absent entry):
    # (recall, precision) = (1/3, 1), (1/3, 1/2), (2/3, 2/3), (1, 3/5) -> 1/3 + 0 + 2/9 + 1/5 = 34/45.
    assert average_precision([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.3, 0.3]) == pytest.approx(34 / 45)
    assert average_precision([0, 1, 1], [0.1, 0.5, 0.4]) == 1.0
    assert average_precision([1, 0, 0, 0], [0.0, 1.0, 2.0, 3.0]) == pytest.approx(1 / 4)
    assert average_precision([1, 0, 1, 0], [1.0, 1.0, 1.0, 1.0]) == 0.5
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_matthews_corrcoef_by_hand() -> None:
    # TP 2, FN 1, FP 1, TN 2 -> (4 - 1) / sqrt(3^4) = 1/3.
    assert matthews_corrcoef([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]) == pytest.approx(1 / 3)
    assert matthews_corrcoef([1, 0, 1], [1, 0, 1]) == 1.0
    assert matthews_corrcoef([1, 0, 1], [0, 1, 0]) == -1.0
    assert matthews_corrcoef([1, 0, 1], [0, 0, 0]) == 0.0


def test_detection_measures_check_sizes() -> None:
    for measure in (auroc, average_precision, matthews_corrcoef):
        with pytest.raises(ValueError, match="differ in size"):
            measure([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="finite"):
        auroc([1, 0], [np.nan, 1.0])


# ---------------------------------------------------------------------- connectivity scores
def test_scores_by_hand() -> None:
    truth = Connectivity.from_strength([[-1.0, 1.0, 0.0], [0.0, -1.0, 2.0], [-3.0, 0.0, -1.0]])
    estimate = Connectivity.from_strength([[-0.5, 0.9, 0.8], [0.3, -1.0, 0.7], [0.3, 0.0, -2.0]])
    # Off-diagonal, row-major: present (1, 0, 0, 1, 1, 0); scores |.| = (0.9, 0.8, 0.3, 0.7, 0.3, 0.0).
    scores = connectivity_scores(truth, estimate)
    assert SCORE_KEYS <= scores.keys()
    assert scores["auroc"] == pytest.approx(13 / 18)  # wins 3 + 2 + 1, one tie: 6.5 / 9
    assert scores["auprc"] == pytest.approx(34 / 45)
    # Default threshold: the 4th largest score (0.3); marked 0.9, 0.8, 0.7 -> TP 2, FP 1, FN 1, TN 2.
    assert scores["mcc_threshold"] == 0.3
    assert scores["mcc"] == pytest.approx(1 / 3)
    # Threshold 0.2 marks 0.9, 0.8, 0.3, 0.7, 0.3 -> TP 3, FP 2, FN 0, TN 1: 3 / sqrt(5 * 3 * 3 * 1).
    assert connectivity_scores(truth, estimate, threshold=0.2)["mcc"] == pytest.approx(3 / np.sqrt(45))
    assert scores["sign_accuracy"] == pytest.approx(2 / 3)  # the -3.0 edge is estimated +0.3
    difference = np.abs(truth.strength - estimate.strength)
    assert scores["mae"] == scores["mae_visible"] == pytest.approx(difference.mean())
    r = np.corrcoef(truth.strength.ravel(), estimate.strength.ravel())[0, 1]
    assert scores["pearson_r"] == pytest.approx(r)
    assert (scores["n_true_edges"], scores["hidden_match"]) == (3, [])


def test_identical_networks_score_perfectly() -> None:
    truth = sparse_network()
    scores = connectivity_scores(truth, truth)
    assert scores["mae"] == scores["mae_visible"] == 0.0
    assert scores["pearson_r"] == pytest.approx(1.0)
    assert scores["pearson_r_visible"] == pytest.approx(1.0)
    for key in ("auroc", "auprc", "mcc", "sign_accuracy"):
        assert scores[key] == 1.0, key
    assert scores["hidden_match"] == [(0, 0), (1, 1), (2, 2)]
    assert scores["n_true_edges"] == np.count_nonzero(truth.strength) - truth.n_neurons


def test_scores_compare_strength_across_bases() -> None:
    rng = np.random.default_rng(3)
    truth = Connectivity(
        rng.normal(size=(4, 4, 2)), rng.random((2, 5)), np.zeros(4), visible=[True, True, True, False]
    )
    estimate = Connectivity.from_strength(truth.strength, labels=truth.labels, visible=truth.visible)
    assert connectivity_scores(truth, estimate)["mae"] == pytest.approx(0.0, abs=1e-14)


def test_permuted_hidden_neurons_score_as_unpermuted() -> None:
    truth = sparse_network()
    estimate = with_noise(truth, 0.2)
    order = [2, 0, 1]
    permuted = estimate.permute_hidden(order)
    scores = connectivity_scores(truth, estimate)
    permuted_scores = connectivity_scores(truth, permuted)
    assert scores["hidden_match"] == [(0, 0), (1, 1), (2, 2)]
    # Hidden neuron k of the permuted estimate is hidden neuron order[k] of the estimate.
    assert permuted_scores["hidden_match"] == [(0, 1), (1, 2), (2, 0)]
    assert match_hidden(truth, permuted) == permuted_scores["hidden_match"]
    for key in SCORE_KEYS | {"n_true_edges", "mcc_threshold"}:
        assert permuted_scores[key] == scores[key], key


def test_noise_increases_mae() -> None:
    truth = sparse_network()
    maes = [connectivity_scores(truth, with_noise(truth, scale))["mae"] for scale in (0.05, 0.2, 0.8)]
    assert 0 < maes[0] < maes[1] < maes[2]


def test_different_numbers_of_hidden_neurons_match_the_smaller_set() -> None:
    truth = sparse_network(n_hidden=3)
    keep = [0, 1, 2, 3, 6, 4]  # the visible neurons, then true hidden neurons 2 and 0
    estimate = Connectivity.from_strength(
        truth.strength[np.ix_(keep, keep)], visible=np.arange(6) < 4, labels=[truth.labels[k] for k in keep]
    )
    scores = connectivity_scores(truth, estimate)
    assert scores["hidden_match"] == [(0, 1), (2, 0)]
    assert scores["mae"] == 0.0
    assert scores["auroc"] == 1.0
    assert connectivity_scores(estimate, truth)["hidden_match"] == [(0, 2), (1, 0)]
    visible_only = truth.visible_block()
    assert connectivity_scores(truth, visible_only)["hidden_match"] == []
    assert connectivity_scores(truth, visible_only)["mae"] == 0.0


def test_dense_truth_has_no_detection_scores() -> None:
    truth = Connectivity.from_strength(np.random.default_rng(4).uniform(0.5, 1.5, (4, 4)))
    scores = connectivity_scores(truth, with_noise(truth, 0.1))
    for key in ("auroc", "auprc", "mcc", "mcc_threshold"):
        assert np.isnan(scores[key]), key
    assert scores["sign_accuracy"] == 1.0
    assert scores["mae"] > 0
    empty = Connectivity.from_strength(np.diag([-1.0, -1.0, -1.0]))
    empty_scores = connectivity_scores(empty, with_noise(empty, 0.1))
    assert np.isnan(empty_scores["auroc"]) and np.isnan(empty_scores["sign_accuracy"])
    assert empty_scores["n_true_edges"] == 0


def test_visible_neurons_must_agree() -> None:
    truth = sparse_network()
    labels = ["0", "1", "3", "2", "h0", "h1", "h2"]
    relabelled = Connectivity.from_strength(truth.strength, labels=labels, visible=truth.visible)
    with pytest.raises(ValueError, match="visible neuron 2 is '2' in truth but '3'"):
        connectivity_scores(truth, relabelled)
    fewer = Connectivity.from_strength(truth.strength, visible=np.arange(7) < 3)
    with pytest.raises(ValueError, match="4 visible neurons, estimate has 3"):
        connectivity_scores(truth, fewer)


def test_threshold_must_be_non_negative() -> None:
    truth = sparse_network()
    with pytest.raises(ValueError, match="threshold"):
        connectivity_scores(truth, truth, threshold=-0.1)


def inverted(conn: Connectivity, hidden: int) -> Connectivity:
    """``conn`` with one hidden neuron inverted: the signs of its couplings with the others reversed."""
    sign = np.ones(conn.n_neurons)
    sign[conn.n_visible + hidden] = -1.0
    strength = conn.strength * np.outer(sign, sign)
    return Connectivity.from_strength(strength, labels=conn.labels, visible=conn.visible)


def test_an_inverted_hidden_neuron_matches_and_scores_as_the_true_one() -> None:
    truth = sparse_network(seed=3)
    estimate = inverted(truth, hidden=1).permute_hidden([2, 1, 0])
    scores = connectivity_scores(truth, estimate)
    assert scores["hidden_match"] == [(0, 2), (1, 1), (2, 0)]
    assert scores["hidden_inverted"] == [False, True, False]
    assert scores["mae"] == 0 and scores["sign_accuracy"] == 1 and scores["pearson_r_hidden"] == 1
    # matched upright only, the inverted neuron's couplings count as sign errors
    upright = match_hidden(truth, estimate, allow_inverted=False)
    assert [j for _, j in upright] == [2, 1, 0]


def test_the_visible_block_and_the_hidden_neurons_are_scored_apart() -> None:
    truth = sparse_network(seed=4)
    noisy = truth.strength.copy()
    noisy[truth.n_visible :, :] += 0.7  # errors in the hidden neurons' rows only
    estimate = Connectivity.from_strength(noisy, labels=truth.labels, visible=truth.visible)
    scores = connectivity_scores(truth, estimate)
    assert (
        scores["mae_visible"] == 0 and scores["auroc_visible"] == 1 and scores["sign_accuracy_visible"] == 1
    )
    assert scores["mae_hidden"] > 0.2 and scores["mae"] < scores["mae_hidden"]
    assert {"auprc_visible", "mcc_visible"} <= scores.keys()


@pytest.mark.parametrize("seed", range(5))
def test_the_detection_metrics_equal_scikit_learns(seed):
    """AUROC (ties counting one half), average precision (ties scored together) and the MCC against
    scikit-learn's, on scores with many ties, to 1e-12."""
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (the dev extra) is not installed")
    rng = np.random.default_rng(seed)
    is_edge = rng.random(200) < 0.2
    score = np.round(rng.normal(size=200) + 1.5 * is_edge, 1)  # ties among scores
    predicted = score > 0.8
    assert auroc(is_edge, score) == pytest.approx(metrics.roc_auc_score(is_edge, score), abs=1e-12)
    expected = metrics.average_precision_score(is_edge, score)
    assert average_precision(is_edge, score) == pytest.approx(expected, abs=1e-12)
    expected = metrics.matthews_corrcoef(is_edge, predicted)
    assert matthews_corrcoef(is_edge, predicted) == pytest.approx(expected, abs=1e-12)
