"""spikeglm: partially observable GLMs of spike trains, fit by variational inference.

Visible neurons are the ones recorded; hidden neurons stand in for the unrecorded part of the circuit.
The hidden spike counts are inferred with reparameterised Poisson relaxations (:mod:`spikeglm.relax`).
"""

from spikeglm import basis, evaluate, fidelity, fit, relax, segments, synthetic
from spikeglm._version import __version__
from spikeglm.connectivity import Connectivity
from spikeglm.io import load, save
from spikeglm.poglm import POGLM
from spikeglm.spikes import Recording, SpikeCounts, parse_time

__all__ = [
    "POGLM",
    "Connectivity",
    "Recording",
    "SpikeCounts",
    "__version__",
    "basis",
    "evaluate",
    "fidelity",
    "fit",
    "load",
    "parse_time",
    "relax",
    "save",
    "segments",
    "synthetic",
]
