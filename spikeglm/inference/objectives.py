"""The training objectives of a POGLM, each a class with one interface, registered by name.

For visible counts ``x`` of one segment and hidden counts ``z ~ q(z | x)``, the importance weight is
``log w = log p(x, z) - log q(z | x)``; ``E_q[log w]`` is the evidence lower bound (ELBO) and
``E[log mean_k w_k]`` over K samples the tighter importance-weighted bound (IWAE). The particle
objectives draw the hidden counts bin by bin and resample them: the filtering bound (FIVO) and the
log-likelihood itself, whose gradient a particle smoother estimates (:mod:`spikeglm.smc`). With a
network's latent factors, every objective also draws their paths from the posterior's Gaussian ``q(f |
x)``: the bounds of whole paths, the particle objectives bin by bin from its forward transitions.

Gradients of the sampled objectives:

* pathwise (``"eat-cubic"``, ``"eat-sigmoid"``, ``"gumbel-softmax"``): ``z`` is a relaxed sample,
  differentiable in the variational rates, and ``log p(x, z)`` scores it with the Poisson log-pmf
  extended to real counts;
* score function (``"exact"``): ``z`` is an integer Poisson sample and the variational gradient is
  ``E[(log w - b) grad log q(z)]`` with a leave-one-out baseline ``b`` over the samples of a segment.

An objective is a subclass of :class:`Objective` that implements :meth:`Objective.loss`; registering it
in :data:`OBJECTIVES` makes it a value of the estimator's ``objective`` setting.

Examples
--------
>>> from spikeglm.inference.objectives import OBJECTIVES, HiddenSampler
>>> objective = OBJECTIVES["IWAE"](n_samples=8, sampler=HiddenSampler())
>>> type(objective).__name__, objective.particles
('IWAE', False)
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from spikeglm import relax, smc
from spikeglm.model import Network
from spikeglm.options import Registry
from spikeglm.segments import Batch
from spikeglm.variational import Posterior, batch_history, log_weights


@dataclass(frozen=True)
class HiddenSampler:
    """How training draws the hidden counts: the relaxation, its temperature and straight-through use.

    Parameters
    ----------
    relaxation : str
        A name of :data:`spikeglm.relax.RELAXATIONS`: with a reparameterised sampler (``has_rsample``) the
        gradient is pathwise, otherwise (``"exact"``) by the score function.
    temperature : float
        Temperature of the relaxation, checked by the relaxation itself (Eat-cubic: ``0 < tau <= 1``).
    straight_through : bool
        Draw exact integer counts and take only the gradient from the relaxation (Eat-cubic only).

    Raises
    ------
    ValueError
        If the relaxation refuses the temperature, or ``straight_through`` is asked of another relaxation
        than Eat-cubic.
    """

    relaxation: str = "eat-cubic"
    temperature: float = 0.5
    straight_through: bool = False
    _law: type[relax.PoissonRelaxation] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_law", relax.get(self.relaxation))
        if self.straight_through and self.relaxation != "eat-cubic":
            raise ValueError(f"straight_through needs relaxation 'eat-cubic'; got {self.relaxation!r}")
        self.law(torch.ones(()))  # the relaxation checks its own options (e.g. Eat-cubic: tau <= 1)

    @property
    def score_function(self) -> bool:
        """Whether gradients need the score function: the relaxation has no reparameterised sampler."""
        return not self._law.has_rsample

    @property
    def real_valued(self) -> bool:
        """Whether the draws are real-valued relaxed counts, which the model's integer counts cannot be
        (a reparameterised relaxation without straight-through)."""
        return not self.score_function and not self.straight_through

    def law(self, rate: torch.Tensor) -> relax.PoissonRelaxation:
        """The law of the hidden-count samples at ``rate`` (arguments known valid: not re-checked)."""
        options: dict[str, object] = {} if self.score_function else {"temperature": self.temperature}
        if self.straight_through:
            options["straight_through"] = True
        return self._law(rate, validate_args=False, **options)

    def draw(self, rate: torch.Tensor) -> torch.Tensor:
        """Integer hidden counts at ``rate`` with Eat-cubic's gradient: the particles of :class:`FIVO`."""
        return relax.EatCubic(rate, self.temperature, validate_args=False, straight_through=True).rsample()


class Objective(abc.ABC):
    """What a fit maximises, as a loss of one batch of segments.

    A subclass implements :meth:`loss` and may refuse, in ``__init__``, a sampler it cannot use.

    Parameters
    ----------
    n_samples : int
        Hidden-count samples (or particles) per segment and step.
    sampler : HiddenSampler
        How the hidden counts are drawn.
    """

    #: Whether the samples are particles that carry a window of hidden history each, bin by bin (what a
    #: step's memory grows with, :func:`spikeglm.inference.footprint.fit_memory`).
    particles: ClassVar[bool] = False

    def __init__(self, n_samples: int, sampler: HiddenSampler) -> None:
        self.n_samples, self.sampler = n_samples, sampler

    @abc.abstractmethod
    def loss(self, network: Network, posterior: Posterior, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of a batch of segments and the objective's value on it.

        Parameters
        ----------
        network : Network
            The generative model.
        posterior : Posterior
            The variational posterior over the hidden counts.
        batch : Batch
            Visible counts of the segments with their masks (:mod:`spikeglm.segments`).

        Returns
        -------
        surrogate : torch.Tensor
            A scalar whose gradient estimates minus that of the objective, averaged over the segments.
        estimate : torch.Tensor
            The objective of each segment, shape (segments,), float64, without gradient: what the training
            record shows (summed, per visible neuron-bin once the trainer divides it) and the stopping rule
            compares segment group by group.
        """


class ELBO(Objective):
    """The evidence lower bound ``E_q[log p(x, z) - log q(z | x)]``, averaged over ``n_samples`` draws.

    Its gradient is taken at the sampler's draws. Where these are real-valued relaxed counts (Eat-cubic
    without straight-through), their log-weights bound nothing, and a fit can raise them with hidden
    counts the model cannot produce; the estimate (the record, which the stopping rule reads) is then the
    bound at one exact integer draw per segment, taken beside them without gradient.

    With a network's latent factors ``f`` it is ``E_q[log p(x, z | f) - log q(z | x)] - KL(q(f | x) ||
    p(f))``, the KL of the factors' Gaussian posterior exact (:func:`~spikeglm.variational.log_weights`).
    """

    #: Whether the latent factors' term is the exact KL (valid for the ELBO's mean only) rather than each
    #: sample's ``log p(f) - log q(f | x)``.
    exact_latent_kl: ClassVar[bool] = True

    def loss(self, network: Network, posterior: Posterior, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        past = batch_history(network, posterior, batch)  # the visible counts filtered once
        log_w, log_q = log_weights(
            network, posterior, batch, self.n_samples, self.sampler.law, self.exact_latent_kl, past
        )
        surrogate = self.surrogate(log_w, log_q)
        if self.sampler.real_valued and network.n_hidden:
            # The log-weights of real-valued counts bound nothing: a fit can raise them by hidden counts
            # the model cannot produce. The record (and the stopping rule that reads it) takes the bound
            # at one exact integer draw per segment instead.
            with torch.no_grad():
                log_w = log_weights(network, posterior, batch, 1, None, self.exact_latent_kl, past)[0]
        return surrogate, log_w.detach().mean(0).double()

    def surrogate(self, log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """A loss of the log-weights (samples, segments) whose gradient is minus the objective's."""
        if not self.sampler.score_function:
            return -log_w.mean()
        n_samples = log_w.shape[0]
        baseline = (log_w.sum(0) - log_w) / (n_samples - 1) if n_samples > 1 else torch.zeros_like(log_w)
        return -(log_w + (log_w.detach() - baseline.detach()) * log_q).mean()


class IWAE(ELBO):
    """The importance-weighted bound ``E[log mean_k w_k]`` over the ``n_samples`` draws of a segment.

    Its record shows the mean log-weight, as the ELBO's does. Latent factors weigh each sample by its
    path's ``log p(f) - log q(f | x)``: the exact KL would not make a bound of the log-mean.
    """

    exact_latent_kl: ClassVar[bool] = False

    def surrogate(self, log_w: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        bound = torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])  # (segments,)
        if not self.sampler.score_function:
            return -bound.mean()
        # Each sample's learning signal: the bound minus the bound with that sample left out (VIMCO-style).
        signal = leave_one_out_signal(log_w.detach())
        return -(bound + (signal * log_q).sum(0)).mean()


def leave_one_out_signal(log_w: torch.Tensor) -> torch.Tensor:
    """Each sample's share of the IWAE bound: the bound minus the bound with that sample's weight replaced
    by the geometric mean of the others', shape of ``log_w`` (samples, segments)."""
    n = log_w.shape[0]
    bound = torch.logsumexp(log_w, 0) - math.log(n)
    if n == 1:
        return bound.expand_as(log_w)
    others_mean = (log_w.sum(0) - log_w) / (n - 1)
    replaced = log_w.unsqueeze(0).expand(n, *log_w.shape).clone()
    idx = torch.arange(n)
    replaced[idx, idx] = others_mean
    return bound - (torch.logsumexp(replaced, 1) - math.log(n))


class FIVO(Objective):
    """A particle filter's bound on ``log p(x)`` (:func:`spikeglm.smc.filtering_bound`): ``n_samples``
    particles per segment, drawn as exact integer counts with Eat-cubic's gradient (and with latent
    factors, their states reparameterised from the posterior's transitions).

    Raises
    ------
    ValueError
        If the sampler's relaxation is not Eat-cubic.
    """

    particles = True

    def __init__(self, n_samples: int, sampler: HiddenSampler) -> None:
        if sampler.relaxation != "eat-cubic":
            raise ValueError(f"objective 'fivo' needs relaxation 'eat-cubic'; got {sampler.relaxation!r}")
        super().__init__(n_samples, sampler)

    def loss(self, network: Network, posterior: Posterior, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        log_z = smc.filtering_bound(network, posterior, batch, self.n_samples, self.sampler.draw)
        return -log_z.mean(), log_z.detach().double()


#: Particles per bin at which :class:`Likelihood` computes the complete-data terms, drawn by their
#: smoothed credit: on the strong-drive networks of ``benchmarks/hidden.py`` 4 of 16 cut the CPU by
#: about 40% for the same held-out likelihood (docs/benchmarks.md, "When hidden neurons pay off").
TERM_DRAWS = 4


class Likelihood(Objective):
    """The log-likelihood itself: the network follows its gradient as a particle smoother of ``n_samples``
    particles estimates it (:func:`spikeglm.smc.smoothed_score`, its terms at :data:`TERM_DRAWS`
    particles per bin drawn by their credit), the posterior is fitted to the smoothed particles, and the
    record shows the filter's estimate of ``log p(x)``. The relaxation is unused."""

    particles = True

    def loss(self, network: Network, posterior: Posterior, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        surrogate, log_z = smc.smoothed_score(network, posterior, batch, self.n_samples, TERM_DRAWS)
        return -surrogate.mean(), log_z.detach().double()


#: The objectives by name; ``OBJECTIVES.register(name, cls)`` adds one.
OBJECTIVES: Registry[type[Objective]] = Registry(
    "objective", {"elbo": ELBO, "iwae": IWAE, "fivo": FIVO, "likelihood": Likelihood}
)
