"""The progress line the command line draws from a fit's callback."""

from __future__ import annotations

import sys
from typing import TextIO

import spikeglm as sg
from spikeglm.records import EpochRecord


def progress_line(model: sg.POGLM) -> ProgressLine | None:
    """The progress line of a fit of ``model`` in this process: on the main process only, labelled by
    what a step is (an epoch, or an L-BFGS iteration of a GLM: no hidden neuron, no latent factor)."""
    if not sg.parallel.is_main():
        return None
    label = "L-BFGS iteration" if model.checked_settings().glm else "epoch"
    return ProgressLine(model.epochs, label=label)


class ProgressLine:
    """A one-line progress display of a fit (epoch, objective, time spent and left), as a callback.

    On a terminal the line is redrawn in place; elsewhere (logs, notebooks' captured output) a line is
    written every ``every`` epochs.
    """

    def __init__(
        self, epochs: int, stream: TextIO | None = None, every: int = 50, label: str = "epoch"
    ) -> None:
        self.epochs, self.every, self.label = epochs, every, label
        self.stream = sys.stderr if stream is None else stream
        self.elapsed, self.seen = 0.0, 0
        self.redraw = getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, record: EpochRecord) -> None:
        self.elapsed += record.seconds
        self.seen += 1
        done = record.epoch + 1
        left = self.elapsed / self.seen * (self.epochs - done)
        line = (
            f"{self.label} {done}/{self.epochs}  objective {record.objective:.4f}"
            + ("" if record.validation is None else f"  validation {record.validation:.4f}")
            + f"  {self.elapsed:.1f} s, ~{left:.0f} s left"
        )
        if self.redraw:
            self.stream.write("\r" + line + ("\n" if done == self.epochs else ""))
        elif done % self.every == 0 or done == self.epochs:
            self.stream.write(line + "\n")
        self.stream.flush()
