"""spikeglm: partially observable GLMs of spike trains, fit by variational inference.

Visible neurons are the ones recorded; hidden neurons stand in for the unrecorded part of the circuit.
The hidden spike counts are inferred with reparameterised Poisson relaxations (:mod:`spikeglm.relax`).
"""

from spikeglm import basis, evaluate, relax, synthetic
from spikeglm.connectivity import Connectivity
from spikeglm.poglm import POGLM
from spikeglm.spikes import SpikeCounts, parse_time

__version__ = "0.1.0"

__all__ = [
    "POGLM",
    "Connectivity",
    "SpikeCounts",
    "__version__",
    "basis",
    "evaluate",
    "parse_time",
    "relax",
    "synthetic",
]
