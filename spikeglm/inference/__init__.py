"""How a POGLM is fitted: the training objectives, the loop that follows them, and the convex GLM solve.

Modules, from below:

:mod:`~spikeglm.inference.objectives`
    Each training objective a class with one interface, ``loss(network, posterior, batch) -> (surrogate,
    estimate)``, registered by name in :data:`OBJECTIVES`: the ELBO, the importance-weighted bound, the
    particle filter's bound and the log-likelihood by a particle smoother.
:mod:`~spikeglm.inference.stopping`
    When a stochastic fit stops (:class:`Plateau`; :class:`Settled` where the network is solved after it),
    read per spike.
:mod:`~spikeglm.inference.newton`, :mod:`~spikeglm.inference.whitening`
    Newton's solve of a GLM and its curvature; the whitened coordinates of its L-BFGS solve.
:mod:`~spikeglm.inference.glm`
    A network without hidden neurons solved to convergence, by Newton's method or by L-BFGS
    (:func:`solve_glm`).
:mod:`~spikeglm.inference.start`
    How a fit with hidden neurons starts (:func:`glm_start`).
:mod:`~spikeglm.inference.config`
    The training settings, declared once, and :class:`TrainingConfig`, which checks them.
:mod:`~spikeglm.inference.footprint`
    The memory a fit needs, from its settings alone (:func:`fit_memory`).
:mod:`~spikeglm.inference.trainer`
    The loop (:func:`train`): batches, the stopping rule, checkpoints and interrupts, naming no objective.

Adding an objective is one class and one line::

    from spikeglm.inference import OBJECTIVES, Objective

    class MyBound(Objective):
        def loss(self, network, posterior, batch):
            ...  # (surrogate to minimise, value of each segment)

    OBJECTIVES.register("my-bound", MyBound)  # now POGLM(objective="my-bound")
"""

from spikeglm.inference.config import TRAINING_SETTINGS, TrainingConfig
from spikeglm.inference.footprint import check_memory, fit_memory, n_parameters
from spikeglm.inference.glm import solve_glm
from spikeglm.inference.objectives import ELBO, FIVO, IWAE, OBJECTIVES, HiddenSampler, Likelihood, Objective
from spikeglm.inference.start import STARTS, glm_start
from spikeglm.inference.stopping import Plateau, Settled
from spikeglm.inference.trainer import Resume, auto_batch_size, train

__all__ = [
    "ELBO",
    "FIVO",
    "IWAE",
    "OBJECTIVES",
    "STARTS",
    "TRAINING_SETTINGS",
    "HiddenSampler",
    "Likelihood",
    "Objective",
    "Plateau",
    "Resume",
    "Settled",
    "TrainingConfig",
    "auto_batch_size",
    "check_memory",
    "fit_memory",
    "glm_start",
    "n_parameters",
    "solve_glm",
    "train",
]
