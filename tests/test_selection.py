"""Choosing the number of hidden neurons: folds, the one-standard-error rule, and the refit model."""

import math
import os

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm import poglm, selection
from spikeglm.records import Selection
from spikeglm.selection import _choose, _folds, cross_validate


def test_the_rule_takes_the_fewest_hidden_neurons_within_one_paired_standard_error():
    folds = np.array([0.0, 0.01, -0.01, 0.02, -0.02])  # a shared fold effect, which pairing removes
    scores = np.stack([folds - 0.010, folds - 0.0004 + [0.001, -0.001, 0.001, -0.001, 0.0], folds])
    selection = _choose([(0, None), (1, None), (2, None)], scores, "trials")
    assert selection.best == 2 and selection.chosen == 1  # 1 is within 0.0004 +- ~0.0005 of 2; 0 is far off
    assert selection.paired_se[2] == 0 and 0 < selection.paired_se[1] < 0.001
    # unpaired, the fold effect (sd 0.016) would have hidden the 0.010 gap of H = 0
    assert scores[0].std(ddof=1) / np.sqrt(5) > 0.005
    assert "<- chosen" in str(selection).splitlines()[2]
    assert Selection.from_dict(selection.to_dict()).chosen == 1


def test_the_rule_over_hidden_neurons_and_latent_factors_takes_the_simplest_pair():
    folds = np.array([0.0, 0.01, -0.01, 0.02, -0.02])
    rows = [(0, 0), (0, 1), (1, 0), (1, 1)]  # fewest parameters first, as _rows orders them
    scores = np.stack(
        [folds - 0.01, folds - 0.0002 + [0.001, -0.001, 0.001, -0.001, 0.0], folds - 0.005, folds]
    )
    selection = _choose(rows, scores, "time blocks")
    assert (selection.chosen, selection.chosen_latent) == (0, 1) and selection.best == 1
    assert selection.label(1) == "0 + 1" and "hidden + latent" in str(selection).splitlines()[0]
    assert "<- chosen" in str(selection).splitlines()[2]
    again = Selection.from_dict(selection.to_dict())
    assert (again.latent, again.chosen_latent) == ((0, 1, 0, 1), 1)
    with pytest.raises(ValueError, match=r"chosen .* must be one of the candidates"):
        Selection.from_dict({**selection.to_dict(), "chosen_latent": 3})


def test_candidate_pairs_are_ordered_by_their_parameters():
    from spikeglm.selection import _rows

    rows = _rows((2, 0, 1), (1, 0), 10, sg.POGLM())
    assert rows[0] == (0, 0) and rows[1] == (0, 1) and rows[-1] == (2, 1)
    assert _rows((0, 1), None, 10, sg.POGLM()) == [(0, None), (1, None)]


def test_folds_are_whole_trials_or_blocks_of_time():
    counts = sg.SpikeCounts.from_array(np.arange(6 * 10 * 2).reshape(6, 10, 2) % 3, bin_size="5 ms")
    parts, by = _folds(counts, 3)
    assert by == "trials" and [p.n_trials for p in parts] == [2, 2, 2]
    long = counts.select_trials([0])
    parts, by = _folds(long, 3)
    assert by == "time blocks" and [p.counts.shape for p in parts] == [(1, 3, 2)] * 3
    np.testing.assert_array_equal(parts[1].counts[0], long.counts[0, 3:6])
    with pytest.raises(ValueError, match="cannot be cut into 20 blocks"):
        _folds(counts.select_trials([0]), 20)


def test_select_hidden_refits_the_choice_and_the_table_is_saved_with_it(tmp_path, diffpoglm):
    _, train, _ = diffpoglm
    seen = []
    model = sg.select_hidden(
        train,
        candidates=(2, 0),
        folds=2,
        model=sg.POGLM(link="sigmoid", epochs=20),
        n_particles=200,
        callback=lambda h, k, score: seen.append((h, k)),
    )
    selection = model.selection_
    assert seen == [(0, 0), (2, 0), (0, 1), (2, 1)] and selection.candidates == (0, 2)  # fold by fold
    assert model.n_hidden == selection.chosen and model.history_  # refit on all the data
    assert np.all(np.isfinite(selection.fold_scores)) and np.all(selection.fold_scores < 0)
    # the score of H = 0 is exact: that of its refit on one fold, scored on the other
    half = train.select_trials(slice(0, 20)), train.select_trials(slice(20, None))
    plain = sg.POGLM(n_hidden=0, link="sigmoid", epochs=20).fit(half[1])
    assert selection.fold_scores[0, 0] == pytest.approx(plain.score(half[0]), abs=1e-6)
    path = tmp_path / "m.h5"
    model.save(path)
    loaded = sg.POGLM.load(path).selection_
    np.testing.assert_array_equal(loaded.fold_scores, selection.fold_scores)
    assert loaded.chosen == selection.chosen and loaded.folds_by == "trials"
    assert selection.plot().get_title().startswith(f"{selection.chosen} hidden chosen")


def test_a_folds_candidates_share_its_cross_validated_penalty_strength(diffpoglm, monkeypatch):
    """The strength depends on the fold's training data alone: it is cross-validated once per fold (and
    once for the refit), and every candidate of the fold is fitted with it."""
    _, train, _ = diffpoglm
    calls, fitted = [], []
    cross_validate = poglm.cross_validated_strength
    monkeypatch.setattr(
        poglm, "cross_validated_strength", lambda *a, **k: calls.append(1) or cross_validate(*a, **k)
    )
    fit = sg.POGLM.fit
    monkeypatch.setattr(sg.POGLM, "fit", lambda self, *a, **k: fitted.append(self) or fit(self, *a, **k))
    model = sg.POGLM(link="sigmoid", epochs=2, penalty="ridge")
    sg.select_hidden(train, candidates=(0, 1), folds=2, model=model, n_particles=50)
    assert len(calls) == 3
    strengths = [
        f.fit_options_["penalty_strength"] for f in fitted[:4]
    ]  # (H, fold): (0, 0) (1, 0) (0, 1) (1, 1)
    assert (
        strengths[0::2] == strengths[1::2] and [f.penalty_strength for f in fitted[1:4:2]] == strengths[0::2]
    )


def test_a_fold_where_no_penalty_helps_fits_its_other_candidates_without_one(diffpoglm, monkeypatch):
    _, train, _ = diffpoglm
    table = {"strengths": [1.0, 0.0], "scores": [[-1.0] * 5, [-0.5] * 5], "folds_by": "trials", "chosen": 0.0}
    monkeypatch.setattr(poglm, "cross_validated_strength", lambda *a, **k: (0.0, table))
    fitted = []
    fit = sg.POGLM.fit
    monkeypatch.setattr(sg.POGLM, "fit", lambda self, *a, **k: fitted.append(self) or fit(self, *a, **k))
    model = sg.POGLM(link="sigmoid", epochs=2, penalty="ridge")
    sg.select_hidden(train, candidates=(0, 1), folds=2, model=model, n_particles=50)
    assert [f.penalty for f in fitted[:4]] == ["ridge", None, "ridge", None]  # fold by fold


def test_a_folds_fits_with_hidden_neurons_stop_at_a_looser_tolerance(diffpoglm, monkeypatch):
    """A fold's fit with hidden neurons only ranks its candidate: it stops at ``FOLD_TOL_FACTOR`` times the
    model's ``tol``; the GLM candidates and the refit of the choice keep the model's, and a model that
    runs all its epochs (``tol=None``) runs them in every fold too."""
    _, train, _ = diffpoglm
    fit, fitted = sg.POGLM.fit, []
    monkeypatch.setattr(sg.POGLM, "fit", lambda self, *a, **k: fitted.append(self) or fit(self, *a, **k))
    for tol, expected in ((1e-3, 1e-3 * selection.FOLD_TOL_FACTOR), (None, None)):
        fitted.clear()
        model = sg.POGLM(link="sigmoid", epochs=2, tol=tol)
        chosen = sg.select_hidden(train, candidates=(0, 1), folds=2, model=model, n_particles=50)
        assert [(f.n_hidden, f.tol) for f in fitted[:4]] == [(0, tol), (1, expected)] * 2  # fold by fold
        assert fitted[4] is chosen and chosen.tol == tol


def test_a_fold_is_scored_by_one_filter_of_all_its_particles(diffpoglm, monkeypatch):
    """The log of several smaller filters' average falls further short of the likelihood than one filter
    of all the particles, by amounts that differ between candidates: a fold is scored by one."""
    _, train, _ = diffpoglm
    fit, fitted, asked = sg.POGLM.fit, [], []
    likelihood = sg.POGLM.log_likelihood
    monkeypatch.setattr(sg.POGLM, "fit", lambda self, *a, **k: fitted.append(self) or fit(self, *a, **k))
    monkeypatch.setattr(
        sg.POGLM, "log_likelihood", lambda self, *a, **k: asked.append(k) or likelihood(self, *a, **k)
    )
    table = cross_validate(train, (1,), 2, sg.POGLM(link="sigmoid", epochs=3), n_particles=64)
    assert [(k["n_particles"], k["n_runs"]) for k in asked] == [(64, 1), (64, 1)]
    halves = train.select_trials(slice(0, 20)), train.select_trials(slice(20, None))
    for k, (held_out, fold_fit) in enumerate(zip(halves, fitted, strict=True)):
        assert table.fold_scores[0, k] == likelihood(fold_fit, held_out, n_particles=64, n_runs=1).per_bin
        assert fold_fit.score(held_out, n_particles=64) == table.fold_scores[0, k]


def test_bad_choices_are_named(diffpoglm):
    _, train, _ = diffpoglm
    with pytest.raises(ValueError, match="folds must be a whole number >= 2"):
        sg.select_hidden(train, folds=1)
    with pytest.raises(ValueError, match="candidates"):
        sg.select_hidden(train, candidates=(-1, 2))


def test_a_strong_shared_drive_is_given_a_latent_factor():
    sim = sg.synthetic.network(
        "balanced", seed=1, n_visible=8, n_hidden=0, shared_drive="strong", duration="2 min"
    )
    seen = []
    model = sg.select_hidden(
        sim.train,
        candidates=(0,),
        folds=2,
        latent=(1, 0),
        model=sg.POGLM(epochs=20),
        n_particles=64,
        callback=lambda candidate, fold, score: seen.append(candidate),
    )
    selection = model.selection_
    assert selection.rows == [(0, 0), (0, 1)] and seen == [(0, 0), (0, 1), (0, 0), (0, 1)]
    # The factor's gain is far beyond its paired error: it is chosen, and the refit has it.
    assert selection.mean[1] - selection.mean[0] > 3 * selection.paired_se[0] > 0
    assert (selection.chosen, selection.chosen_latent) == (0, 1) and model.n_latent == 1


def test_worker_processes_score_the_folds_as_this_process_does(diffpoglm):
    """``n_jobs=2``: the folds fitted and scored in two worker processes, one torch thread each, score
    as those fitted here with one thread, to the last bit, and the callback hears every candidate of
    every fold."""
    _, train, _ = diffpoglm
    model = sg.POGLM(link="sigmoid", epochs=10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = cross_validate(train, (0, 1), 2, model, n_particles=100)
    finally:
        torch.set_num_threads(threads)
    seen = []
    there = cross_validate(
        train, (0, 1), 2, model, n_particles=100, n_jobs=2, callback=lambda h, k, score: seen.append((h, k))
    )
    np.testing.assert_array_equal(there.fold_scores, here.fold_scores)
    assert sorted(seen) == [(0, 0), (0, 1), (1, 0), (1, 1)] and there.chosen == here.chosen


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True, "2"])
def test_a_number_of_jobs_that_is_not_one_is_refused(n_jobs):
    with pytest.raises(ValueError, match=r"n_jobs \(--jobs\): .* is not a number of processes"):
        sg.parallel.n_workers(n_jobs, 4)


def test_the_workers_are_at_most_one_per_fold_and_minus_one_is_every_cpu():
    assert sg.parallel.n_workers(None, 4) == 1 and sg.parallel.n_workers(8, 3) == 3
    assert sg.parallel.n_workers(np.int64(2), 4) == 2
    assert 1 <= sg.parallel.n_workers(-1, 1000) <= (os.cpu_count() or 1)


def test_worker_processes_give_every_result_and_raise_a_tasks_error_here():
    assert sorted(sg.parallel.run_jobs(math.sqrt, [4.0, 9.0, 16.0], 2)) == [
        (4.0, 2.0),
        (9.0, 3.0),
        (16.0, 4.0),
    ]
    with pytest.raises(ValueError, match="math domain error"):
        list(sg.parallel.run_jobs(math.sqrt, [4.0, -1.0], 2))


def test_worker_processes_are_refused_a_device_other_than_the_cpu(diffpoglm):
    _, train, _ = diffpoglm
    with pytest.raises(ValueError, match=r"n_jobs \(--jobs\) 2: worker processes fit the folds on the CPU"):
        cross_validate(train, (0, 1), 2, sg.POGLM(epochs=2), n_jobs=2, device="meta")
