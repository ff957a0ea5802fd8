"""When a fit stops: the plateau rule of a stochastic fit, and the settling rule of a fit whose network is
solved after it, each read per spike.

A fit's objective is compared across recordings per spike (:func:`spikes_per_bin`), so that one tolerance
serves dense and sparse recordings alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spikeglm.model import mean_counts
from spikeglm.segments import Segments

#: Epochs over which the smoothed training objective must rise by ``tol`` for a fit to go on.
PLATEAU_EPOCHS = 10
#: Weight of the newest epoch in the smoothed training objective (an exponential moving average).
PLATEAU_SMOOTHING = 0.2
#: Plateaus at which the learning rate is lowered before one ends the fit...
LR_LOWERINGS = 1
#: ... each time by this factor.
LR_FACTOR = 0.2


class Plateau:
    """Tells when a noisy training objective has stopped rising: first lower the learning rate, then stop.

    Each epoch's objective (a stochastic estimate) is smoothed by an exponential moving average with
    weight ``smoothing``. A plateau is ``epochs`` epochs in a row in which the smoothed value has not
    exceeded its best by ``tol``. At each of the first ``lowerings`` plateaus the learning rate is
    multiplied by ``factor`` (:attr:`scale` is the product so far) and the count starts again: a smaller
    step averages out more of the gradient noise, so the objective often rises further. The next plateau
    ends the fit. ``tol=None`` never stops nor lowers.

    Examples
    --------
    >>> rule = Plateau(tol=1e-3, epochs=2, smoothing=1.0, lowerings=1, factor=0.5)  # no smoothing
    >>> [(rule.update(v), rule.scale) for v in (-2.0, -1.5, -1.5, -1.5, -1.4, -1.4, -1.4)]
    [(False, 1.0), (False, 1.0), (False, 1.0), (False, 0.5), (False, 0.5), (False, 0.5), (True, 0.5)]
    """

    def __init__(
        self,
        tol: float | None,
        epochs: int = PLATEAU_EPOCHS,
        smoothing: float = PLATEAU_SMOOTHING,
        lowerings: int = LR_LOWERINGS,
        factor: float = LR_FACTOR,
    ):
        self.tol, self.epochs, self.smoothing = tol, epochs, smoothing
        self.lowerings, self.factor = lowerings, factor
        self.smoothed: float | None = None
        self.best: float | None = None
        self.stale = self.lowered = 0

    @property
    def scale(self) -> float:
        """The learning rate's factor now: ``factor`` to the number of plateaus met so far."""
        return self.factor**self.lowered

    def update(self, objective: float) -> bool:
        """Take an epoch's objective; True once the last plateau is reached."""
        if self.tol is None:
            return False
        if self.smoothed is None or self.best is None:
            self.smoothed = self.best = objective
            return False
        self.smoothed += self.smoothing * (objective - self.smoothed)
        if self.smoothed > self.best + self.tol:
            self.best, self.stale = self.smoothed, 0
            return False
        self.stale += 1
        if self.stale < self.epochs:
            return False
        if self.lowered < self.lowerings:
            self.lowered, self.stale = self.lowered + 1, 0
            return False
        return True


#: Fixed groups of segments whose objectives :class:`Settled` compares epoch with epoch, and the fewest
#: segments with which it can (fewer: :class:`Plateau`).
SETTLE_GROUPS, SETTLE_SEGMENTS = 16, 8
#: Standard errors within which an epoch's rise counts as noise.
SETTLE_Z = 2.0


class Settled:
    """Tells when one epoch no longer raises a noisy objective beyond its noise: compared with the epoch
    before, group of segments by group.

    Each epoch visits every segment once, so two epochs' objectives are sums over the same segments: the
    differences between segments cancel from their difference, which leaves the change of the parameters
    and the noise of the draws. The segments are dealt into fixed groups (segment ``i`` into group ``i mod
    G``) and each epoch's objective is summed per group; the epoch's rise is the sum of the groups' rises,
    its standard error ``sqrt(G)`` times their spread. The fit has settled once an epoch rises by less
    than ``z`` standard errors, or by less than ``tol``. ``tol=None`` never stops.

    Examples
    --------
    >>> rule = Settled(tol=0.0)
    >>> rule.update([1.0, 2.0, 3.0])  # the first epoch: nothing to compare with
    False
    >>> rule.update([2.0, 3.1, 3.9])  # every group rose by about 1: a rise of 2.8, SE 0.17
    False
    >>> rule.update([2.1, 2.9, 4.0])  # rises of 0.1, -0.2 and 0.1: noise
    True
    """

    def __init__(self, tol: float | None, z: float = SETTLE_Z) -> None:
        self.tol, self.z = tol, z
        self.last: np.ndarray | None = None  # the groups' objectives in the last epoch

    def update(self, sums: Sequence[float] | np.ndarray) -> bool:
        """Take an epoch's objective summed per group; True once it has settled."""
        now = np.asarray(sums, dtype=float)
        last, self.last = self.last, now
        if self.tol is None or last is None:
            return False
        rises = now - last
        se = float(rises.std(ddof=1)) * math.sqrt(len(rises))
        return float(rises.sum()) < max(self.z * se, self.tol)


def spikes_per_bin(data: Segments) -> float:
    """Mean spike count per visible neuron-bin of ``data`` (every bin once), counting at least one spike."""
    spikes = max(1.0, float(mean_counts(data.counts).sum()) * data.n_scored)
    return spikes / (data.n_scored * data.n_units)
