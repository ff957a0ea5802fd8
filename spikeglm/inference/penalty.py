"""Penalties on the couplings between distinct neurons (:data:`PENALTIES`), for large populations.

A penalised GLM minimises ``-log L / S + strength * P(W)``: minus the log-likelihood per spike (``S``
spikes in the data, the scale of every objective here) plus the penalty of the coupling weights
``W[post, pre, basis]``. Only the couplings between distinct neurons are penalised: the biases and each
neuron's own history filter (its refractoriness, well determined by its own spikes) are not.

* :class:`Ridge`: ``P = 1/2 sum ||W[n, m]||^2`` over the pairs ``n != m``; smooth, so that L-BFGS solves
  it exactly, and its Wald errors are those of the posterior under the matching Gaussian prior.
* :class:`GroupLasso`: ``P = sum sqrt(B) ||W[n, m]||`` over the pairs ``n != m``, one group per filter of
  ``B`` basis weights; it sets whole filters to zero. Not smooth: proximal Newton steps solve it
  (:func:`spikeglm.inference.newton.newton_solve`), or accelerated proximal gradient steps where L-BFGS
  would solve (:func:`spikeglm.inference.glm.proximal_solve`); a filter set to zero has no standard
  error.
"""

from __future__ import annotations

import math

import torch

from spikeglm.options import Registry


class Penalty:
    """A penalty of the coupling weights between distinct neurons, of a given ``strength``.

    Subclasses give :meth:`rows` (each postsynaptic neuron's share) and :meth:`value` (their sum). A
    smooth penalty (:class:`Ridge`) also gives :meth:`curvature`, which joins the standard errors;
    :class:`GroupLasso` gives its proximal step instead.
    """

    #: Whether the penalty is differentiable (its gradient and curvature then join Newton's steps).
    smooth = True

    def __init__(self, strength: float) -> None:
        if not (math.isfinite(strength) and strength >= 0):
            raise ValueError(f"penalty_strength must be a finite number >= 0; got {strength!r}")
        self.strength = float(strength)

    @staticmethod
    def pairs(weight: torch.Tensor) -> torch.Tensor:
        """1 for the penalised filters (post != pre), 0 for each neuron's own, shape (post, pre, 1)."""
        n_post, n_pre = weight.shape[:2]
        return (~torch.eye(n_post, n_pre, dtype=torch.bool, device=weight.device)).to(weight.dtype)[..., None]

    def value(self, weight: torch.Tensor) -> torch.Tensor:
        """``strength * P(weight)``, differentiable where the penalty is smooth."""
        return self.rows(weight).sum()

    def curvature(self, n_neurons: int, n_basis: int, post: int) -> torch.Tensor:
        """The Hessian of :meth:`value` in the parameters of neuron ``post``'s predictor (bias first,
        then the weights ``pre * n_basis + b``), shape (P, P) with P = 1 + n_neurons * n_basis."""
        raise NotImplementedError

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        """Each postsynaptic neuron's share of :meth:`value` (the sum of these), shape (post,)."""
        raise NotImplementedError


class Ridge(Penalty):
    """``strength / 2`` times the summed squares of the couplings between distinct neurons."""

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.strength * (weight.square() * self.pairs(weight)).sum((1, 2))

    def curvature(self, n_neurons: int, n_basis: int, post: int) -> torch.Tensor:
        """``strength`` on the diagonal of the penalised weights, 0 elsewhere."""
        diagonal = torch.full((1 + n_neurons * n_basis,), self.strength, dtype=torch.float64)
        diagonal[0] = 0.0
        diagonal[1 + post * n_basis : 1 + (post + 1) * n_basis] = 0.0
        return torch.diag(diagonal)


class GroupLasso(Penalty):
    """``strength * sqrt(B)`` times the summed Euclidean norms of the filters between distinct neurons
    (``B`` basis weights each): a filter is either zero or all of its weights are free."""

    smooth = False

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.norm(dim=-1, keepdim=True) * self.pairs(weight)
        return self.strength * math.sqrt(weight.shape[-1]) * norms.sum((1, 2))

    def proximal(self, weight: torch.Tensor, step: float) -> torch.Tensor:
        """``argmin_w strength * P(w) + ||w - weight||^2 / (2 step)``: each penalised filter shrunk
        towards zero by ``step * strength * sqrt(B)`` in norm, and set to zero if shorter."""
        threshold = step * self.strength * math.sqrt(weight.shape[-1])
        return shrink(weight, threshold * self.pairs(weight)[..., 0])


def shrink(filters: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Each filter (along the last axis) shrunk towards zero by ``threshold`` in norm (one per filter,
    broadcast; 0 leaves a filter as it is), and set to zero if shorter: the group lasso's proximal step."""
    norms = filters.norm(dim=-1).clamp_min(torch.finfo(filters.dtype).tiny)
    return filters * (1 - threshold / norms).clamp_min(0.0)[..., None]


#: The penalties by name: ``POGLM(penalty=...)``.
PENALTIES: Registry[type[Penalty]] = Registry("penalty", {"ridge": Ridge, "group-lasso": GroupLasso})


def entry_strengths(gradient: torch.Tensor) -> torch.Tensor:
    """Each filter's group-lasso entry strength, given the gradient of ``-log L / S`` in the weights at a
    fit, shape (post, pre, B): its gradient's norm over ``sqrt(B)``, shape (post, pre), 0 on the diagonal
    (a neuron's own filter, never penalised).

    The group lasso keeps a filter at zero while its strength is at least this (the filter's optimality
    condition, every other parameter held where the fit put it). So it ranks the filters a fit set to zero
    by how near they came to being kept; a kept filter's is the fit's strength itself."""
    return gradient.norm(dim=-1) * Penalty.pairs(gradient)[..., 0] / math.sqrt(gradient.shape[-1])


def largest_strength(gradient: torch.Tensor) -> float:
    """The natural scale of a penalty's strength, given the gradient of ``-log L / S`` in the weights at
    the fit without couplings, shape (post, pre, B): the largest :func:`entry_strengths` (the least
    group-lasso strength that keeps every coupling at zero)."""
    return float(entry_strengths(gradient).max())
