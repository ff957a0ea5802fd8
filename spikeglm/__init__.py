"""spikeglm: partially observable GLMs of spike trains, fit by variational inference.

Visible neurons are the ones recorded; hidden neurons stand in for the unrecorded part of the circuit.
The hidden spike counts are inferred with reparameterised Poisson relaxations (:mod:`spikeglm.relax`).
"""

from spikeglm import (
    basis,
    bootstrap,
    covariates,
    evaluate,
    examples,
    fidelity,
    inference,
    model,
    nwb_results,
    parallel,
    progress,
    relax,
    segments,
    selection,
    significance,
    synthetic,
    variational,
)
from spikeglm._version import __version__
from spikeglm.bootstrap import bootstrap_se
from spikeglm.connectivity import Connectivity
from spikeglm.counts import SpikeCounts
from spikeglm.covariates import Covariate
from spikeglm.io import load, save
from spikeglm.poglm import POGLM
from spikeglm.recording import Recording
from spikeglm.selection import select_hidden
from spikeglm.timeunits import parse_time

__all__ = [
    "POGLM",
    "Connectivity",
    "Covariate",
    "Recording",
    "SpikeCounts",
    "__version__",
    "basis",
    "bootstrap",
    "bootstrap_se",
    "covariates",
    "evaluate",
    "examples",
    "fidelity",
    "inference",
    "load",
    "model",
    "nwb_results",
    "parallel",
    "parse_time",
    "progress",
    "relax",
    "save",
    "segments",
    "select_hidden",
    "selection",
    "significance",
    "synthetic",
    "variational",
]
