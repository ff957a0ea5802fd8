"""spikeglm: partially observable GLMs of spike trains, fit by variational inference.

Visible neurons are the ones recorded; hidden neurons stand in for the unrecorded part of the circuit.
The hidden spike counts are inferred with reparameterised Poisson relaxations (:mod:`spikeglm.relax`).
"""

from spikeglm import relax

__version__ = "0.1.0"

__all__ = ["__version__", "relax"]
