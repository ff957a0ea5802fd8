"""Records of what a fit did, kept with the model: plain data that the modules above share.

:class:`EpochRecord` is one epoch of a fit (the model's ``history_``); :class:`Selection` the
cross-validated choice of the number of hidden neurons (:func:`spikeglm.selection.select_hidden`; the
model's ``selection_``). Both are written to and read from model files by :mod:`spikeglm.modelfile`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spikeglm.options import whole

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["EpochRecord", "Selection"]


@dataclass
class EpochRecord:
    """What one training epoch did: its mean objective per visible neuron-bin, time taken and learning rate.

    ``lr`` is the Adam learning rate of the epoch (None for the L-BFGS stage of fits without hidden
    neurons): a change of it marks where the stopping rule lowered the rate. Where training draws
    real-valued relaxed hidden counts, ``objective`` is the bound of exact integer draws taken beside
    them (what the stopping rule reads), not the relaxed draws' value.
    """

    epoch: int
    objective: float
    seconds: float
    validation: float | None = None
    lr: float | None = None


@dataclass(frozen=True)
class Selection:
    """The cross-validated scores of each candidate model, and the choice.

    A candidate is a number of hidden neurons, or with ``latent`` a pair of numbers of hidden neurons and
    latent factors (a row of ``candidates`` and one of ``latent``).

    Attributes
    ----------
    candidates : tuple of int
        Numbers of hidden neurons of the candidates, simplest candidate first.
    fold_scores : numpy.ndarray
        Held-out log-likelihood per visible neuron-bin, shape (candidates, folds).
    chosen : int
        The number of hidden neurons chosen.
    folds_by : str
        ``"trials"`` or ``"time blocks"``: how the data were split.
    latent : tuple of int, optional
        Numbers of latent factors of the candidates; None where only hidden neurons were chosen.
    chosen_latent : int, optional
        The number of latent factors chosen (with ``latent``).
    """

    candidates: tuple[int, ...]
    fold_scores: np.ndarray
    chosen: int
    folds_by: str
    latent: tuple[int, ...] | None = None
    chosen_latent: int | None = None

    @property
    def rows(self) -> list[tuple[int, int | None]]:
        """Each candidate as (hidden neurons, latent factors or None)."""
        latent = self.latent if self.latent is not None else (None,) * len(self.candidates)
        return list(zip(self.candidates, latent, strict=True))

    @property
    def chosen_row(self) -> int:
        """The row of the chosen candidate."""
        return self.rows.index((self.chosen, self.chosen_latent if self.latent is not None else None))

    def label(self, row: int) -> str:
        """A candidate in words for tables and plots: ``"2"``, or ``"2 + 1"`` (hidden + latent)."""
        hidden, latent = self.rows[row]
        return str(hidden) if latent is None else f"{hidden} + {latent}"

    @property
    def mean(self) -> np.ndarray:
        """Mean held-out log-likelihood per visible neuron-bin of each candidate."""
        return self.fold_scores.mean(axis=1)

    @property
    def best(self) -> int:
        """The number of hidden neurons of the candidate with the highest mean."""
        return self.candidates[int(np.argmax(self.mean))]

    @property
    def paired_se(self) -> np.ndarray:
        """Standard error of each candidate's difference to the best, from the fold-by-fold differences."""
        return paired_se(self.fold_scores)

    def to_dict(self) -> dict:
        """Plain JSON-ready form (what a model file keeps)."""
        spec = {
            "candidates": list(self.candidates),
            "fold_scores": self.fold_scores.tolist(),
            "chosen": self.chosen,
            "folds_by": self.folds_by,
        }
        if self.latent is not None:
            spec |= {"latent": list(self.latent), "chosen_latent": self.chosen_latent}
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> Selection:
        """The inverse of :meth:`to_dict`, checked (a model file may hold anything)."""
        candidates = tuple(whole(h, "candidates", minimum=0) for h in spec["candidates"])
        scores = np.asarray(spec["fold_scores"], dtype=float)
        if scores.ndim != 2 or scores.shape[0] != len(candidates) or scores.shape[1] < 1:
            raise ValueError(f"fold_scores must be a candidates x folds table; got shape {scores.shape}")
        latent = spec.get("latent")
        if latent is not None:
            latent = tuple(whole(k, "latent", minimum=0) for k in latent)
            if len(latent) != len(candidates):
                raise ValueError("latent must give the number of latent factors of every candidate")
        selection = cls(
            candidates, scores, spec["chosen"], spec["folds_by"], latent, spec.get("chosen_latent")
        )
        if selection.folds_by not in ("trials", "time blocks"):
            raise ValueError("folds_by must be 'trials' or 'time blocks'")
        try:
            _ = selection.chosen_row
        except ValueError:
            raise ValueError("chosen (and chosen_latent) must be one of the candidates") from None
        return selection

    def __str__(self) -> str:
        folds = f"{self.fold_scores.shape[1]} folds by {self.folds_by}"
        name, width = ("hidden", 6) if self.latent is None else ("hidden + latent", 15)
        lines = [f"{name}  held-out LL per neuron-bin  vs best (paired SE)   [{folds}]"]
        for row, (mean, se) in enumerate(zip(self.mean, self.paired_se, strict=True)):
            mark = "  <- chosen" if row == self.chosen_row else ""
            difference = mean - self.mean.max()
            lines.append(f"{self.label(row):>{width}}  {mean:>26.6f}  {difference:+.6f} ({se:.6f}){mark}")
        return "\n".join(lines)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Each candidate's mean held-out log-likelihood with its paired standard error; the choice ringed.

        The dotted line is the best mean less the chosen candidate's paired standard error.
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        chosen = self.chosen_row
        x = list(self.candidates) if self.latent is None else list(range(len(self.candidates)))
        ax.errorbar(x, self.mean, yerr=self.paired_se, fmt="o-", color="C0", capsize=4)
        ax.axhline(self.mean.max() - np.nan_to_num(self.paired_se[chosen]), color="0.6", ls=":")
        ax.plot([x[chosen]], [self.mean[chosen]], "o", ms=14, mfc="none", color="C3")
        ax.set_xticks(x, [self.label(row) for row in range(len(x))])
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("hidden neurons" if self.latent is None else "hidden neurons + latent factors")
        ax.set_ylabel("held-out log-likelihood\nper neuron-bin")
        chosen_text = f"{self.chosen} hidden" if self.latent is None else f"{self.label(chosen)}"
        ax.set_title(f"{chosen_text} chosen ({self.fold_scores.shape[1]} folds by {self.folds_by})")
        return ax


def paired_se(fold_scores: np.ndarray) -> np.ndarray:
    """The standard error of each candidate's difference to the best (the row of highest mean), from the
    fold-by-fold differences of ``fold_scores`` (candidates x folds); NaN with a single fold."""
    mean = fold_scores.mean(axis=1)
    differences = fold_scores - fold_scores[int(np.argmax(mean))]
    folds = fold_scores.shape[1]
    return differences.std(axis=1, ddof=1) / math.sqrt(folds) if folds > 1 else np.full(len(mean), np.nan)


def simplest_within_one_se(fold_scores: np.ndarray) -> int:
    """The one-standard-error rule: the first row (candidates are ordered simplest first) whose mean over
    the folds lies within one paired standard error (:func:`paired_se`) of the best mean."""
    mean = fold_scores.mean(axis=1)
    return int(np.argmax(mean >= mean.max() - np.nan_to_num(paired_se(fold_scores))))
