"""How many hidden neurons: cross-validated choice by the particle-filter likelihood of held-out data.

:func:`select_hidden` fits every candidate number of hidden neurons on all folds but one and scores the
left-out fold by :meth:`~spikeglm.poglm.POGLM.log_likelihood` (a particle filter: exact with no hidden
neuron, tight with some, so candidates with and without hidden neurons compare fairly). Folds are groups
of whole trials when there are enough of them; otherwise every trial is cut into as many blocks of time
as there are folds, and fold ``k`` holds block ``k`` of every trial (a continuous recording is one trial).

The choice follows the one-standard-error rule: the smallest number of hidden neurons whose mean held-out
log-likelihood lies within one paired standard error of the best. The error is paired, computed from the
fold-by-fold differences to the best candidate, because the folds' own spread (some stretches of a
recording are easier than others) is shared by every candidate and says nothing about their difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from spikeglm import parallel
from spikeglm.counts import SpikeCounts
from spikeglm.covariates import Covariate
from spikeglm.inference import n_parameters
from spikeglm.memory import available_memory, format_bytes
from spikeglm.options import whole
from spikeglm.poglm import POGLM
from spikeglm.progress import progress_bar
from spikeglm.records import Selection, simplest_within_one_se

#: A fold's fit with hidden neurons stops at this many times the model's ``tol``. It is scored to rank
#: its candidate, not kept: its last epochs, on a plateau, move the held-out score less than refits of
#: one candidate differ by (strong-drive networks of benchmarks/hidden.py, docs/benchmarks.md), and such
#: a fit spends about half its epochs there.
FOLD_TOL_FACTOR = 10.0


def select_hidden(
    counts: SpikeCounts,
    candidates: Sequence[int] = (0, 1, 2, 4),
    folds: int = 5,
    *,
    model: POGLM | None = None,
    n_particles: int = 1000,
    callback: Callable[[Any, int, float], None] | None = None,
    device: str | torch.device | None = None,
    latent: Sequence[int] | None = None,
    covariates: list[Covariate] | None = None,
    progress: bool | None = None,
    n_jobs: int | None = None,
) -> POGLM:
    """Choose the number of hidden neurons (and of latent factors) by cross-validation, and refit the
    choice on all the data.

    Parameters
    ----------
    counts : SpikeCounts
        The recording, binned.
    candidates : sequence of int
        Numbers of hidden neurons to try.
    folds : int
        Number of folds (at least 2).
    model : POGLM, optional
        The settings of every fit (its ``n_hidden`` is replaced by each candidate's; a fold's fit with
        hidden neurons stops sooner, see :func:`cross_validate`); default ``POGLM()``.
    n_particles : int
        Particles per held-out trial of the particle filter (all in one, :meth:`POGLM.score`).
    callback : callable, optional
        Called as ``callback(candidate, fold, score)`` after each held-out score (progress): the candidate
        is its number of hidden neurons, or with ``latent`` the pair (hidden neurons, latent factors).
        Under ``torchrun``, each process calls it for the folds it fits (:func:`cross_validate`).
    device : str or torch.device, optional
        Where every fit computes (:meth:`~spikeglm.poglm.POGLM.fit`).
    latent : sequence of int, optional
        Numbers of latent factors to try with every number of hidden neurons: the candidates are then
        every pair, and the simplest is the one with the fewest parameters
        (:func:`spikeglm.inference.n_parameters`). None: the factors of ``model`` (``n_latent``), fixed.
    covariates : list of Covariate, optional
        Known inputs of every fit (:meth:`spikeglm.POGLM.fit`), cut into the folds with the counts.
    progress : bool, optional
        Draw a progress bar of the folds' fits, then of the final fit's epochs. Default: where someone
        watches (:func:`spikeglm.progress.watched`).
    n_jobs : int, optional
        Worker processes that fit and score the folds on the CPU, each a fold at a time with one torch
        thread (-1: one per CPU; None: 1, every fold fitted here; see
        :func:`spikeglm.parallel.run_jobs`). The choice is that of one process with one thread;
        ``callback`` is then called for a fold's candidates once the fold is done. Each worker holds a
        copy of the counts. The refit runs here.

    Returns
    -------
    POGLM
        Fitted on all of ``counts`` with the chosen number of hidden neurons; its ``selection_`` is the
        :class:`~spikeglm.records.Selection` (saved with the model).

    Raises
    ------
    ValueError
        If a candidate is more than the data can carry (:func:`largest_candidate`), before any fit.

    Examples
    --------
    >>> import spikeglm as sg
    >>> _, train, _ = sg.synthetic.network(protocol="diffpoglm", seed=0)
    >>> model = sg.select_hidden(train, (0, 2), folds=2, model=sg.POGLM(link="sigmoid", epochs=10))
    >>> model.n_hidden == model.selection_.chosen
    True
    """
    template = POGLM() if model is None else model
    selection = cross_validate(
        counts,
        candidates,
        folds,
        template,
        n_particles,
        callback,
        device,
        latent,
        covariates,
        progress,
        n_jobs,
    )
    chosen = template.clone().set_params(**_settings(selection.chosen, selection.chosen_latent))
    chosen.fit(counts, device=device, covariates=covariates, progress=progress)
    chosen.selection_ = selection
    return chosen


def cross_validate(
    counts: SpikeCounts,
    candidates: Sequence[int],
    folds: int,
    model: POGLM,
    n_particles: int = 1000,
    callback: Callable[[Any, int, float], None] | None = None,
    device: str | torch.device | None = None,
    latent: Sequence[int] | None = None,
    covariates: list[Covariate] | None = None,
    progress: bool | None = None,
    n_jobs: int | None = None,
) -> Selection:
    """The cross-validation of :func:`select_hidden` without the final refit (same arguments).

    Every fit is a clone of ``model`` (its settings: epochs, samples, window...) with the candidate's
    number of hidden neurons; one with hidden neurons stops at :data:`FOLD_TOL_FACTOR` times the model's
    ``tol`` (none where the model runs all its epochs). Most of a fold's time with many hidden neurons
    goes to scoring it: the particle filter steps through the bins one by one, its work growing as
    particles x hidden x all neurons, so that a candidate the data cannot carry would take far longer
    than its fit. Candidates are therefore bounded first (:func:`largest_candidate`). A penalty's
    strength cross-validated (``penalty_strength="cv"``) is found once per fold, by its first candidate,
    and the others take it.

    Under ``torchrun`` the processes share out the folds: each fits and scores its own, alone
    (:func:`spikeglm.parallel.alone`), and the scores are summed over them; ``callback`` is called by
    each process for its own folds. The folds' fits are independent, so this scales with the processes
    (up to one per fold) where sharing each fit's steps would not. ``n_jobs`` shares them out the same way
    among worker processes that this process starts (:func:`spikeglm.parallel.run_jobs`), with no
    launcher; under ``torchrun``, among each process's own folds.
    """
    candidates, parts, folds_by = _checked(counts, candidates, folds, model, n_particles)
    known = _fold_covariates(covariates or [], counts, _pieces(counts, len(parts)))
    rows = _rows(candidates, latent, counts.n_units, model)
    scores = torch.zeros(len(rows), len(parts), dtype=torch.float64)
    # Under torchrun each process fits whole folds, alone; their scores are summed at the end.
    mine = parallel.share(len(parts))
    one_fold = functools.partial(
        _fold_scores, rows=rows, parts=parts, known=known, model=model, n_particles=n_particles, device=device
    )
    here, where = parallel.n_workers(n_jobs, len(mine)) == 1, parallel.choose_device(device)
    if not here and where.type != "cpu":
        raise ValueError(
            f"n_jobs (--jobs) {n_jobs}: worker processes fit the folds on the CPU, and the device is "
            f"{where}; give device='cpu' (--device cpu) to use them, or n_jobs=1 to fit the folds on the GPU"
        )
    bar_context = progress_bar(len(rows) * len(mine), "cross-validation", "fold", progress)
    with bar_context as bar, parallel.alone():

        def scored(k: int, row: int, score: float) -> None:
            scores[row, k] = score
            bar.update()
            if callback is not None:
                n_hidden, n_latent = rows[row]
                callback(n_hidden if n_latent is None else (n_hidden, n_latent), k, score)

        if here:  # each score reported as it comes
            for k in mine:
                one_fold(k, report=functools.partial(scored, k))
        else:  # each fold in a worker process, its scores reported once it is done
            for k, fold_scores in parallel.run_jobs(one_fold, mine, n_jobs):
                for row, score in enumerate(fold_scores):
                    scored(k, row, score)
    return _choose(rows, parallel.all_sum(scores).numpy(), folds_by)


def _fold_scores(
    k: int,
    rows: list[tuple[int, int | None]],
    parts: list[SpikeCounts],
    known: list[list[Covariate]],
    model: POGLM,
    n_particles: int,
    device: str | torch.device | None,
    report: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The held-out score of every candidate (``rows``) on fold ``k``, in order: each fitted on the other
    parts and scored on part ``k`` (:func:`cross_validate`), and reported as ``report(row, score)``.

    A cross-validated penalty's strength depends on the fold's training data alone: the first candidate
    finds it, the others take it."""
    train = SpikeCounts.concatenate([p for i, p in enumerate(parts) if i != k])
    rest = _joined([part for i, part in enumerate(known) if i != k])
    strength: dict[str, float | None] = {}
    fold_tol = None if not model.tol else FOLD_TOL_FACTOR * model.tol
    scores = []
    for row, (n_hidden, n_latent) in enumerate(rows):
        # A fold's fit is scored, never tested: its couplings' standard errors would be wasted.
        candidate = model.clone().set_params(
            **_settings(n_hidden, n_latent),
            **strength,
            standard_errors=False,
            tol=fold_tol if n_hidden else model.tol,
        )
        fitted = candidate.fit(train, device=device, covariates=rest, progress=False)
        if "penalty_cv" in fitted.fit_options_:
            found = fitted.fit_options_["penalty_strength"]  # 0: none helped
            strength = {"penalty_strength": found} if found > 0 else {"penalty": None}
        # One filter of all the particles (POGLM.score): four smaller ones fell up to 1e-4 per neuron-bin
        # further short of the likelihood on strong-drive networks, unequally between candidates.
        score = fitted.score(parts[k], n_particles=n_particles, covariates=known[k] or None)
        scores.append(score)
        if report is not None:
            report(row, score)
    return scores


def _rows(
    candidates: tuple[int, ...], latent: Sequence[int] | None, n_visible: int, model: POGLM
) -> list[tuple[int, int | None]]:
    """The candidates as (hidden, latent) pairs, simplest (fewest parameters) first; latent None where
    only the hidden neurons are chosen."""
    if latent is None:
        return [(h, None) for h in candidates]
    factors = sorted({whole(k, "latent", minimum=0) for k in latent})
    if not factors:
        raise ValueError("latent: give at least one number of latent factors")
    n_basis = model.checked_settings().basis.n_basis
    pairs = [(h, k) for h in candidates for k in factors]
    pairs.sort(key=lambda pair: (n_parameters(n_visible, pair[0], n_basis, pair[1]), pair))
    return [(h, k) for h, k in pairs]


def _settings(n_hidden: int, n_latent: int | None) -> dict[str, int]:
    """The settings of a candidate: its hidden neurons, and its latent factors where they are chosen."""
    return {"n_hidden": n_hidden} if n_latent is None else {"n_hidden": n_hidden, "n_latent": n_latent}


def check_candidates(
    counts: SpikeCounts, candidates: Sequence[int], folds: int, model: POGLM, n_particles: int = 1000
) -> tuple[int, ...]:
    """The candidates of a cross-validation (arguments of :func:`cross_validate`), checked before any fit.

    Returns
    -------
    tuple of int
        The candidates, each once, increasing.

    Raises
    ------
    ValueError
        If there is none, one is not a whole number >= 0, ``folds`` cannot cut the data, or the largest
        candidate is more than the data can carry (:func:`largest_candidate`): one line naming the file,
        ``candidates`` (``--candidates``) and the largest acceptable number.
    """
    return _checked(counts, candidates, folds, model, n_particles)[0]


def _checked(
    counts: SpikeCounts, candidates: Sequence[int], folds: int, model: POGLM, n_particles: int
) -> tuple[tuple[int, ...], list[SpikeCounts], str]:
    """:func:`check_candidates`, with the folds' parts and how they were cut."""
    candidates = tuple(sorted({whole(h, "candidates", minimum=0) for h in candidates}))
    if not candidates:
        raise ValueError("candidates (--candidates): give at least one number of hidden neurons")
    parts, folds_by = _folds(counts, whole(folds, "folds", minimum=2))
    largest, reason = largest_candidate(counts, model, parts, n_particles)
    if candidates[-1] > largest:
        raise ValueError(
            f"{counts.source}: candidates (--candidates) go up to {candidates[-1]} hidden neurons, but "
            f"the largest number these data can carry is {largest} ({reason}); give candidates of at most "
            f"{largest}"
        )
    return candidates, parts, folds_by


def largest_candidate(
    counts: SpikeCounts, model: POGLM, parts: Sequence[SpikeCounts], n_particles: int
) -> tuple[int, str]:
    """The most hidden neurons a cross-validation of ``model`` on ``counts`` (cut into ``parts``) can try.

    A candidate must have no more parameters (:func:`spikeglm.inference.n_parameters`) than there are visible
    counts to fit them, and its fit on all the data (the refit of the choice), with the scoring of the
    largest part by ``n_particles`` particles (:func:`spikeglm.inference.fit_memory`), must fit in the memory
    available.

    Returns
    -------
    largest : int
        The largest acceptable number of hidden neurons (at least 0: a fit without any is checked by
        :meth:`~spikeglm.poglm.POGLM.check_fit`).
    reason : str
        What bounds it, for a message.
    """
    observations = counts.n_trials * counts.n_bins * counts.n_units
    held_out = max(parts, key=lambda part: part.n_trials * part.n_bins)
    scoring = {"score_trials": held_out.n_trials, "score_bins": held_out.n_bins, "n_particles": n_particles}
    available = available_memory()

    n_basis = model.checked_settings().basis.n_basis

    def carried(n_hidden: int) -> bool:
        return n_parameters(counts.n_units, n_hidden, n_basis) <= observations

    def held(n_hidden: int) -> bool:  # the refit on all the data, and the scoring of the largest fold
        candidate = model.clone().set_params(n_hidden=n_hidden)
        shape = (counts.n_trials, counts.n_bins, counts.n_units)
        return sum(candidate.fit_memory(*shape, config=None, **scoring).values()) <= available

    by_parameters = _last_true(carried, observations)
    largest = _last_true(held, by_parameters)
    if largest < by_parameters:
        memory = f"{format_bytes(available)} of memory available"
        return largest, f"a fit and its scoring with more would take more than the {memory}"
    return largest, f"with more, the model would have more parameters than the {observations} counts"


def _last_true(test: Callable[[int], bool], high: int) -> int:
    """The largest ``n`` in ``0..high`` with ``test(n)``, for a test that holds up to some ``n`` only."""
    low = 0
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if test(middle) else (low, middle - 1)
    return low


def _choose(rows: list[tuple[int, int | None]], scores: np.ndarray, folds_by: str) -> Selection:
    """The simplest candidate (the first row) within one paired standard error of the best."""
    hidden = tuple(h for h, _ in rows)
    factors = None if rows[0][1] is None else tuple(int(k or 0) for _, k in rows)
    chosen = simplest_within_one_se(scores)
    return Selection(
        hidden, scores, hidden[chosen], folds_by, factors, None if factors is None else factors[chosen]
    )


def _pieces(counts: SpikeCounts, folds: int) -> list[tuple[np.ndarray, slice]]:
    """The trials and the bins of each fold: groups of whole trials if there are enough, else block ``k``
    of the bins of every trial."""
    if counts.n_trials >= folds:
        return [(group, slice(None)) for group in np.array_split(np.arange(counts.n_trials), folds)]
    length = counts.n_bins // folds
    if length < 1:
        raise ValueError(
            f"folds: {counts.n_trials} trial(s) of {counts.n_bins} bins cannot be cut into {folds} blocks"
        )
    every = np.arange(counts.n_trials)
    return [(every, slice(k * length, (k + 1) * length)) for k in range(folds)]


def _folds(counts: SpikeCounts, folds: int) -> tuple[list[SpikeCounts], str]:
    """The data split into ``folds`` parts, by whole trials if there are enough, else by time blocks (whose
    trials start where the block does)."""
    pieces = _pieces(counts, folds)
    if counts.n_trials >= folds:
        return [counts.select_trials(trials) for trials, _ in pieces], "trials"
    parts = []
    for _, bins in pieces:
        part = counts._with_counts(counts.counts[:, bins], counts.unit_ids)
        starts = counts.metadata.get("trial_starts_s")
        if starts is not None and len(starts) == counts.n_trials:
            part.metadata["trial_starts_s"] = [start + bins.start * counts.bin_seconds for start in starts]
        parts.append(part)
    return parts, "time blocks"


def _fold_covariates(
    covariates: list[Covariate], counts: SpikeCounts, pieces: list[tuple[np.ndarray, slice]]
) -> list[list[Covariate]]:
    """The covariates of each fold, on its bins: each covariate is binned on all the counts once, then cut
    as the counts are."""
    binned = [(covariate, covariate.per_bin(counts)) for covariate in covariates]
    return [
        [
            Covariate.binned(c.name, values[trials][:, bins], kernel=c.kernel, source=c.source)
            for c, values in binned
        ]
        for trials, bins in pieces
    ]


def _joined(parts: list[list[Covariate]]) -> list[Covariate] | None:
    """The binned covariates of several folds joined trial-wise, as :meth:`SpikeCounts.concatenate` joins
    their counts; None without covariates."""
    if not parts or not parts[0]:
        return None
    joined = []
    for k, first in enumerate(parts[0]):
        values = np.concatenate([part[k].values for part in parts if part[k].values is not None])
        joined.append(Covariate.binned(first.name, values, kernel=first.kernel, source=first.source))
    return joined
