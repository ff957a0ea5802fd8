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
    neurons): a change of it marks where the stopping rule lowered the rate.
    """

    epoch: int
    objective: float
    seconds: float
    validation: float | None = None
    lr: float | None = None


@dataclass(frozen=True)
class Selection:
    """The cross-validated scores of each candidate number of hidden neurons, and the choice.

    Attributes
    ----------
    candidates : tuple of int
        Numbers of hidden neurons tried, increasing.
    fold_scores : numpy.ndarray
        Held-out log-likelihood per visible neuron-bin, shape (candidates, folds).
    chosen : int
        The number of hidden neurons chosen.
    folds_by : str
        ``"trials"`` or ``"time blocks"``: how the data were split.
    """

    candidates: tuple[int, ...]
    fold_scores: np.ndarray
    chosen: int
    folds_by: str

    @property
    def mean(self) -> np.ndarray:
        """Mean held-out log-likelihood per visible neuron-bin of each candidate."""
        return self.fold_scores.mean(axis=1)

    @property
    def best(self) -> int:
        """The candidate with the highest mean."""
        return self.candidates[int(np.argmax(self.mean))]

    @property
    def paired_se(self) -> np.ndarray:
        """Standard error of each candidate's difference to the best, from the fold-by-fold differences."""
        differences = self.fold_scores - self.fold_scores[self.candidates.index(self.best)]
        folds = self.fold_scores.shape[1]
        return (
            differences.std(axis=1, ddof=1) / math.sqrt(folds)
            if folds > 1
            else np.full(len(self.mean), np.nan)
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready form (what a model file keeps)."""
        return {
            "candidates": list(self.candidates),
            "fold_scores": self.fold_scores.tolist(),
            "chosen": self.chosen,
            "folds_by": self.folds_by,
        }

    @classmethod
    def from_dict(cls, spec: dict) -> Selection:
        """The inverse of :meth:`to_dict`, checked (a model file may hold anything)."""
        candidates = tuple(whole(h, "candidates", minimum=0) for h in spec["candidates"])
        scores = np.asarray(spec["fold_scores"], dtype=float)
        if scores.ndim != 2 or scores.shape[0] != len(candidates) or scores.shape[1] < 1:
            raise ValueError(f"fold_scores must be a candidates x folds table; got shape {scores.shape}")
        if spec["chosen"] not in candidates or spec["folds_by"] not in ("trials", "time blocks"):
            raise ValueError("chosen must be one of the candidates and folds_by 'trials' or 'time blocks'")
        return cls(candidates, scores, spec["chosen"], spec["folds_by"])

    def __str__(self) -> str:
        folds = f"{self.fold_scores.shape[1]} folds by {self.folds_by}"
        lines = [f"hidden  held-out LL per neuron-bin  vs best (paired SE)   [{folds}]"]
        for h, mean, se in zip(self.candidates, self.mean, self.paired_se, strict=True):
            mark = "  <- chosen" if h == self.chosen else ""
            lines.append(f"{h:>6}  {mean:>26.6f}  {mean - self.mean.max():+.6f} ({se:.6f}){mark}")
        return "\n".join(lines)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Each candidate's mean held-out log-likelihood with its paired standard error; the choice ringed.

        The dotted line is the best mean less the chosen candidate's paired standard error.
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        chosen = self.candidates.index(self.chosen)
        ax.errorbar(self.candidates, self.mean, yerr=self.paired_se, fmt="o-", color="C0", capsize=4)
        ax.axhline(self.mean.max() - np.nan_to_num(self.paired_se[chosen]), color="0.6", ls=":")
        ax.plot([self.chosen], [self.mean[chosen]], "o", ms=14, mfc="none", color="C3")
        ax.set_xticks(self.candidates)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("hidden neurons")
        ax.set_ylabel("held-out log-likelihood\nper neuron-bin")
        ax.set_title(f"{self.chosen} hidden chosen ({self.fold_scores.shape[1]} folds by {self.folds_by})")
        return ax
