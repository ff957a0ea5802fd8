"""The coordinates in which L-BFGS solves a GLM: the design whitened, each neuron scaled by its curvature.

A GLM's curvature in neuron ``n``'s parameters ``theta_n`` (bias, couplings, covariate weights) is
``sum_t w_n(t) r_t r_t^T``, where ``r_t`` is the design row of bin ``t`` (1, every neuron's filtered
history, the covariates' columns; :func:`~spikeglm.inference.newton.design_rows`) and ``w_n(t)`` the
Poisson weight of the bin. A spike-history design is far from orthonormal: its columns' means and
scales follow the presynaptic rates (and a covariate's units), and neighbouring basis functions and
co-active neurons are correlated. L-BFGS, which starts from a scalar curvature and learns the rest from
its steps, then needs many iterations.

With ``R R^T`` the design's second moments over the scored bins (a Cholesky factor) and ``s_n^2`` the
Poisson weight at neuron ``n``'s mean rate times the objective's scale, L-BFGS moves
``u_n = s_n theta_n R``. In these variables the curvature is the identity wherever a neuron's weight is
constant in time, as it is at the start of a solve (couplings at zero, biases at the mean rates), and
near it elsewhere. The change of variables is linear: the optimum is the same, only the path shorter.
A column that never varies (a silent neuron's history, a constant covariate) is left out of the joint
factor, at its own scale, so that no step along a direction the data leave undetermined is amplified.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikeglm import parallel
from spikeglm.inference.newton import (
    design_rows,
    own_functions,
    own_rows,
    parameters_of,
    set_parameters,
    shared_columns,
)
from spikeglm.model import Network, inverse_link, link_derivatives, mean_counts
from spikeglm.segments import Segments

#: The most design columns factored jointly (a float64 factor of this size squared, and its inverse);
#: beyond it each column is only centred and scaled, its correlations with the others left out.
JOINT_COLUMNS = 4096
#: Added to the second moments' diagonal, relative to each column's variance, so that collinear columns
#: (a neuron's basis functions, neurons that always fire together) still factor.
JITTER = 1e-6
#: A column whose variance is below this times its squared mean is taken as constant.
CONSTANT = 1e-9


@dataclass
class Whitening:
    """The map between a network's GLM parameters and L-BFGS's variables (see the module's docstring).

    Attributes
    ----------
    mean, deviation : torch.Tensor
        The design's mean and standard deviation per column, shape (P,), float64 (the first column, the
        constant, has mean 1 and deviation 1).
    factor, inverse : torch.Tensor or None
        ``R`` and ``R^{-1}``, (P, P), where the columns are factored jointly; None beyond
        :data:`JOINT_COLUMNS`, where ``R`` only centres and scales each column.
    scale : torch.Tensor
        Each neuron's ``s_n``, shape (N,).
    variables : torch.Tensor
        What L-BFGS moves, ``u``, shape (N, P), float64.
    own_mean, own_factor, own_inverse : torch.Tensor
        With an own-history basis, the mean of each neuron's own columns
        (:func:`~spikeglm.inference.newton.own_rows`), (N, O), and the Cholesky factor of their
        covariance and its inverse, (N, O, O): those columns are centred (into the constant) and
        whitened neuron by neuron, their correlations with the shared columns left out.
    """

    mean: torch.Tensor
    deviation: torch.Tensor
    factor: torch.Tensor | None
    inverse: torch.Tensor | None
    scale: torch.Tensor
    variables: torch.Tensor
    own_mean: torch.Tensor
    own_factor: torch.Tensor
    own_inverse: torch.Tensor

    @classmethod
    def of(cls, network: Network, data: Segments, parts: list[torch.Tensor], per_spike: float) -> Whitening:
        """The whitening of the design of ``data`` (this process's ``parts``, summed over the processes),
        at the network's parameters; ``per_spike`` is the objective's factor on minus the log-likelihood
        (:class:`~spikeglm.inference.glm._Closure`'s ``scale``)."""
        width = shared_columns(network)
        joint = width <= JOINT_COLUMNS
        sums, products = (parallel.all_sum(m) for m in _moments(network, data, parts, joint))
        total = sums[0]
        mean = sums / total
        squares = products.diagonal() if joint else products
        variance = squares / total - mean.square()
        # A column that does not vary (a neuron that never fired, a constant covariate) is left out of the
        # others' whitening, at its own scale: no step along it (or along the intercept) is amplified.
        constant = variance <= CONSTANT * mean.square()
        constant[0] = False
        variance[0] = 1.0
        deviation = torch.where(constant, torch.ones_like(variance), variance).sqrt()
        factor = inverse = None
        if joint:
            moments = products / total
            moments[constant], moments[:, constant] = 0.0, 0.0
            alone = torch.where(mean == 0, torch.ones_like(mean), mean.square())
            moments.diagonal().add_(torch.where(constant, alone, JITTER * deviation.square()))
            lower, failed = torch.linalg.cholesky_ex(moments)
            if not failed:  # else (rounding made it indefinite) each column on its own
                eye = torch.eye(width, dtype=torch.float64, device=lower.device)
                factor, inverse = lower, torch.linalg.solve_triangular(lower, eye, upper=False)
        rate = mean_counts(data.counts).to(mean.device).clamp_min(1.0 / float(total))
        fitted, slope, _ = link_derivatives(network.link_name, inverse_link(network.link_name, rate))
        scale = (per_spike * float(total) * slope.square() / fitted).sqrt()
        whitening = cls(
            mean, deviation, factor, inverse, scale, torch.empty(0), *_own_moments(network, data, parts)
        )
        whitening.variables = (
            whitening._times_factor(parameters_of(network)) * scale[:, None]
        ).requires_grad_()
        return whitening

    def load(self, network: Network) -> None:
        """Write the parameters that the variables stand for into the network."""
        with torch.no_grad():
            set_parameters(network, self._times_inverse(self.variables.detach() / self.scale[:, None]))

    def pull_gradients(self, network: Network) -> None:
        """Set the variables' gradient from the network parameters' (the chain rule of :meth:`load`)."""
        gradient = parameters_of(network, gradient=True)
        self.variables.grad = self._times_inverse_transposed(gradient) / self.scale[:, None]

    def _times_factor(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ R``."""
        shared, own = rows[:, : len(self.mean)], rows[:, len(self.mean) :]
        if self.factor is not None:
            whitened = shared @ self.factor
        else:
            constant = shared[:, :1] + shared[:, 1:] @ self.mean[1:, None]
            whitened = torch.cat([constant, shared[:, 1:] * self.deviation[1:]], dim=1)
        if not own.shape[1]:
            return whitened
        whitened[:, 0] += (own * self.own_mean).sum(1)
        return torch.cat([whitened, (own[:, None, :] @ self.own_factor)[:, 0]], dim=1)

    def _times_inverse(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ R^{-1}``."""
        shared, own = rows[:, : len(self.mean)], rows[:, len(self.mean) :]
        if own.shape[1]:
            own = (own[:, None, :] @ self.own_inverse)[:, 0]
            shared = shared.clone()
            shared[:, 0] -= (own * self.own_mean).sum(1)
        if self.inverse is not None:
            return torch.cat([shared @ self.inverse, own], dim=1)
        scaled = shared[:, 1:] / self.deviation[1:]
        return torch.cat([shared[:, :1] - scaled @ self.mean[1:, None], scaled, own], dim=1)

    def _times_inverse_transposed(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ R^{-T}``."""
        shared, own = rows[:, : len(self.mean)], rows[:, len(self.mean) :]
        if self.inverse is not None:
            transposed = shared @ self.inverse.T
        else:
            shifted = shared[:, 1:] - shared[:, :1] * self.mean[1:]
            transposed = torch.cat([shared[:, :1], shifted / self.deviation[1:]], dim=1)
        if not own.shape[1]:
            return transposed
        own = own - transposed[:, :1] * self.own_mean
        return torch.cat([transposed, (own[:, None, :] @ self.own_inverse.transpose(1, 2))[:, 0]], dim=1)


def whitens(network: Network, params: list[torch.nn.Parameter]) -> bool:
    """Whether a solve of ``params`` can take the whitened coordinates: it moves the couplings, the biases
    and the covariates' weights together (not a part of them)."""
    moved = {id(p) for p in params}
    return all(id(p) in moved for p in network.glm_parameters())


def _moments(network: Network, data: Segments, parts: list[torch.Tensor], joint: bool) -> list[torch.Tensor]:
    """The design's column sums over the scored bins (the first, the constant's, counts them) and its sums
    of products (``joint``) or of squares, in float64."""
    device, dtype = network.bias.device, network.bias.dtype
    width = shared_columns(network)
    sums = torch.zeros(width, dtype=torch.float64, device=device)
    products = torch.zeros((width, width) if joint else width, dtype=torch.float64, device=device)
    for index in parts:
        batch = data.batch(index, dtype=dtype, device=device)
        design = design_rows(network, batch)
        if batch.scored is not None:  # context bins are not scored: they weigh nothing
            design = design * batch.scored.reshape(-1, 1)
        sums += design.sum(0, dtype=torch.float64)
        products += (design.T @ design).double() if joint else design.square().sum(0, dtype=torch.float64)
    return [sums, products]


def _own_moments(
    network: Network, data: Segments, parts: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each neuron's own columns over the scored bins: their mean, (N, O), and the Cholesky factor of their
    covariance (with the joint factor's jitter) and its inverse, (N, O, O), in float64. A column that
    does not vary (a neuron that never fired) has mean 0 and is left as it is."""
    device, dtype = network.bias.device, network.bias.dtype
    n, size = network.n_neurons, own_functions(network)
    sums = torch.zeros(n, size, dtype=torch.float64, device=device)
    products = torch.zeros(n, size, size, dtype=torch.float64, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for index in parts if size else []:
        batch = data.batch(index, dtype=dtype, device=device)
        own = own_rows(network, batch)
        assert own is not None  # the basis has own functions
        if batch.scored is not None:  # context bins weigh nothing
            own = own * batch.scored.reshape(-1, 1, 1).to(own.dtype)
            total += batch.scored.sum().double()
        else:
            total += len(own)
        sums += own.sum(0, dtype=torch.float64)
        products += torch.einsum("rnb,rnc->nbc", own, own).double()
    for moment in (sums, products, total):
        parallel.all_sum(moment)
    mean = sums / total.clamp_min(1.0)
    covariance = products / total.clamp_min(1.0) - mean[:, :, None] * mean[:, None, :]
    variance = covariance.diagonal(dim1=1, dim2=2)
    constant = variance <= CONSTANT * mean.square()
    mean = torch.where(constant, torch.zeros_like(mean), mean)
    covariance = covariance * (~constant[:, :, None] & ~constant[:, None, :])
    covariance.diagonal(dim1=1, dim2=2).add_(torch.where(constant, 1.0, JITTER * variance))
    factor, failed = torch.linalg.cholesky_ex(covariance)
    if bool(failed.any()):  # rounding made one indefinite: its columns only scaled
        factor[failed > 0] = torch.diag_embed(covariance.diagonal(dim1=1, dim2=2)[failed > 0].sqrt())
    eye = torch.eye(size, dtype=torch.float64, device=device).expand_as(factor)
    return mean, factor, torch.linalg.solve_triangular(factor, eye, upper=False)
