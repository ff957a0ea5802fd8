"""The log lines of a fit's progress where no one watches it (a file, a pipe, a cluster's job log).

Where someone does (a terminal, a notebook), the library draws a tqdm bar itself
(:mod:`spikeglm.progress`), and the command line adds nothing.
"""

from __future__ import annotations

import sys
from typing import TextIO

import spikeglm as sg
from spikeglm.records import EpochRecord


def progress_line(model: sg.POGLM) -> ProgressLine | None:
    """The progress log of a fit of ``model`` in this process: on the main process only, where no bar
    is drawn (:func:`spikeglm.progress.watched`), labelled by what a step is (an epoch, or a solver
    iteration of a GLM: no hidden neuron, no latent factor)."""
    if not sg.parallel.is_main() or sg.progress.watched():
        return None
    label = "GLM iteration" if model.checked_settings().glm else "epoch"
    return ProgressLine(model.epochs, label=label)


class ProgressLine:
    """A line of a fit's progress (epoch, objective, time spent and left) every ``every`` epochs and at
    the last, as a fit's callback."""

    def __init__(
        self, epochs: int, stream: TextIO | None = None, every: int = 50, label: str = "epoch"
    ) -> None:
        self.epochs, self.every, self.label = epochs, every, label
        self.stream = sys.stderr if stream is None else stream
        self.elapsed, self.seen = 0.0, 0

    def __call__(self, record: EpochRecord) -> None:
        self.elapsed += record.seconds
        self.seen += 1
        done = record.epoch + 1
        if done % self.every and done != self.epochs:
            return
        left = self.elapsed / self.seen * (self.epochs - done)
        self.stream.write(
            f"{self.label} {done}/{self.epochs}  objective {record.objective:.4f}"
            + ("" if record.validation is None else f"  validation {record.validation:.4f}")
            + f"  {self.elapsed:.1f} s, ~{left:.0f} s left\n"
        )
        self.stream.flush()
