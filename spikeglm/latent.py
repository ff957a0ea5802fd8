"""Continuous latent factors: a stationary AR(1) prior over their paths and the Gaussian posterior that
per-bin Gaussian potentials make of it.

The model's ``K`` latent factors ``x_t`` (bins ``t = 1..T``) are independent stationary AR(1) processes
of unit variance, each with its own time constant ``tau_k`` in bins::

    x_1 ~ N(0, 1),    x_t = a_k x_{t-1} + sqrt(1 - a_k^2) eps_t,    a_k = exp(-1 / tau_k).

A segment cut out of a longer recording starts instead from the state ``x_0`` just before it
(``start``): ``x_1 ~ N(a_k x_0, 1 - a_k^2)``. :class:`AR1Prior` holds the time constants (learned
through their logarithms) and gives the prior's density, samples, one step of the process (for particle
filters) and its precision, which is tridiagonal per factor.

:class:`MarkovGaussian` is the posterior that multiplies the prior by one Gaussian potential per bin,
``exp(-(x_t - mu_t)' P_t (x_t - mu_t) / 2)``. It is an exact Gaussian whose precision
``J = J_prior + blockdiag(P_t)`` is block tridiagonal and whose mean solves ``J m = sum_t P_t mu_t``
(plus the start's term). It gives the mean, the marginal and lag-one covariances, reparameterised
samples, the log-density, the entropy, the KL divergence from the prior, and its forward transitions
(:class:`Transitions`, a particle filter's proposal).

Numerical approach
------------------
``J`` is factorised by odd-even (cyclic) reduction rather than bin after bin: the even bins of the
chain, which are not coupled to one another, are eliminated all at once; what remains on the odd bins
is again block tridiagonal, and is reduced the same way, ``ceil(log2 T) + 1`` levels in all. This is
the block Cholesky factorisation of ``J`` with its bins taken in that order (:func:`elimination_order`),
so it has the stability of any Cholesky factorisation of a positive definite matrix, costs
``O(T K^3)`` and needs a few vectorised tensor operations per level instead of a Python loop over
``T`` (15-25 ms for 64 segments of 1000 bins and one factor, gradients included, on one CPU thread,
where a loop over the bins takes about 15 times as long). Mean and samples come from
the forward elimination and the back substitution ``x = m + L^-T eps`` through the same levels; the
marginal and lag-one covariances from the block-tridiagonal inverse's recursion run back up them
(selected inversion); the log-determinant from the pivots.

Where every potential is diagonal (``P`` given as ``(..., T, K)``, or ``K = 1``) the factors stay
independent and each is a scalar chain. That path tracks, instead of the diagonal of ``J``, its excess
over the (non-negative) couplings: the prior's ``(1 - a) / (1 + a)`` per bin plus ``P``. Each
elimination then adds non-negative numbers only, so pivots, means and variances keep full relative
precision in float32 however slow the factors are (``1 + a^2 - 2a`` is never formed). Full potentials
take the block path, which has no such form: in float32 a factor of time constant ``tau`` under weak
potentials would lose about ``eps tau^2`` of the precision's smallest eigenvalue (about ``1 / (2 tau)``),
so it is computed in float64 by default (``block_dtype``). Log-determinants and the sums of the
densities are accumulated in float64 whatever the dtype; results take the inputs' dtype.

Examples
--------
>>> import torch
>>> from spikeglm.latent import AR1Prior, MarkovGaussian
>>> prior = AR1Prior([5.0, 50.0])
>>> mu, precision = torch.zeros(4, 100, 2), torch.full((4, 100, 2), 0.5)
>>> q = MarkovGaussian(prior, mu, precision)
>>> q.rsample((3,)).shape, q.log_prob(q.rsample()).shape, q.entropy().shape
(torch.Size([3, 4, 100, 2]), torch.Size([4]), torch.Size([4]))
>>> bool((q.variance < 1).all())
True
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from numbers import Real
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from spikeglm.options import positive, whole

__all__ = [
    "AR1Prior",
    "LatentEncoder",
    "MarkovGaussian",
    "PrecisionBlocks",
    "Transitions",
    "elimination_order",
]

LOG_2PI = math.log(2 * math.pi)


class PrecisionBlocks(NamedTuple):
    """The natural parameters of the AR(1) prior of ``T`` bins, per factor.

    The factors are independent, so each block of the prior's precision is diagonal: ``J[t, t] =
    diag(diagonal[t])`` and ``J[t + 1, t] = J[t, t + 1] = diag(lower[t])``.

    Attributes
    ----------
    diagonal : torch.Tensor
        ``(T, K)``.
    lower : torch.Tensor
        ``(T - 1, K)``, ``-a_k / (1 - a_k^2)``.
    linear : torch.Tensor or None
        The linear term ``(..., T, K)`` of the prior given a start state (``log p(x) = -x'Jx/2 +
        linear.x + const``): ``a_k x_0 / (1 - a_k^2)`` at the first bin, 0 after it. None without a start.
    """

    diagonal: torch.Tensor
    lower: torch.Tensor
    linear: torch.Tensor | None


class Transitions(NamedTuple):
    """A Gaussian over paths as a forward Markov chain, for proposals that draw bin after bin::

        x_1 ~ N(mean_1, first),    x_{t+1} | x_t ~ N(mean_{t+1} + gain_t (x_t - mean_t), covariance_t).

    Attributes
    ----------
    first : torch.Tensor
        ``(..., K, K)``, the covariance of the first bin.
    gain : torch.Tensor
        ``(..., T - 1, K, K)``, ``Cov(x_{t+1}, x_t) Cov(x_t)^-1``.
    covariance : torch.Tensor
        ``(..., T - 1, K, K)``, ``Cov(x_{t+1} | x_t)``.
    """

    first: torch.Tensor
    gain: torch.Tensor
    covariance: torch.Tensor


class AR1Prior(nn.Module):
    """``K`` independent stationary AR(1) factors of unit variance with learned time constants.

    Parameters
    ----------
    tau_bins : float, sequence of float or torch.Tensor
        The time constants in bins (> 0) at the start: one per factor, or one for all.
    n_factors : int, optional
        The number of factors ``K``; with a single ``tau_bins`` it repeats it. By default the number of
        time constants given.

    Attributes
    ----------
    log_tau : torch.nn.Parameter
        ``(K,)``, the logarithms of the time constants in bins: the parameters learned.

    Notes
    -----
    Paths are tensors ``(..., T, K)``. Every method takes an optional ``start``, ``(..., K)``: the state
    in the bin before the first one, for a segment that continues a longer recording; without it the
    first bin is drawn from the stationary law ``N(0, 1)``. Results take the dtype of the path (or of the
    noise, or of ``start``), whatever the dtype of the parameter.

    Examples
    --------
    >>> import torch
    >>> prior = AR1Prior(10.0, n_factors=2)
    >>> prior.coefficient
    tensor([0.9048, 0.9048], grad_fn=<ExpBackward0>)
    >>> x = prior.sample((5,), n_bins=20, generator=torch.Generator().manual_seed(0))
    >>> x.shape, prior.log_prob(x).shape
    (torch.Size([5, 20, 2]), torch.Size([5]))
    >>> prior.log_prob(x[:, 10:], start=x[:, 9]).shape  # the second half, given the first
    torch.Size([5])
    """

    def __init__(
        self, tau_bins: float | Sequence[float] | torch.Tensor, n_factors: int | None = None
    ) -> None:
        super().__init__()
        if isinstance(tau_bins, torch.Tensor):
            values = tau_bins.detach().reshape(-1).tolist()
        elif isinstance(tau_bins, (float, Real)):  # float for the type checker, which sees no Real in it
            values = [tau_bins]
        else:
            values = list(tau_bins)
        values = [positive(value, "tau_bins") for value in values]
        if not values:
            raise ValueError("tau_bins must hold at least one time constant")
        if n_factors is not None:
            n_factors = whole(n_factors, "n_factors")
            if len(values) == 1:
                values = values * n_factors
            elif len(values) != n_factors:
                raise ValueError(f"tau_bins holds {len(values)} time constants for n_factors={n_factors}")
        self.log_tau = nn.Parameter(torch.tensor(values, dtype=torch.get_default_dtype()).log())

    @property
    def n_factors(self) -> int:
        """The number of factors ``K``."""
        return self.log_tau.shape[0]

    @property
    def tau(self) -> torch.Tensor:
        """The time constants in bins, ``(K,)``."""
        return self.log_tau.exp()

    @property
    def coefficient(self) -> torch.Tensor:
        """The AR(1) coefficients ``a = exp(-1 / tau)``, ``(K,)``."""
        return torch.exp(-torch.exp(-self.log_tau))

    def extra_repr(self) -> str:
        return "tau_bins=" + ", ".join(f"{value:.4g}" for value in self.tau.tolist())

    def _terms(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``a``, ``1 - a`` and the innovation variance ``1 - a^2``, each ``(K,)`` in the dtype and on the
        device of ``like``, computed without cancellation for slow factors."""
        rate = torch.exp(-self.log_tau.to(dtype=like.dtype, device=like.device))  # 1 / tau
        coefficient = torch.exp(-rate)
        complement = -torch.expm1(-rate)
        return coefficient, complement, complement * (1 + coefficient)

    def _check_path(self, x: torch.Tensor, name: str = "x") -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if x.dim() < 2 or x.shape[-1] != self.n_factors or x.shape[-2] < 1:
            raise ValueError(
                f"{name} must have shape (..., T, {self.n_factors}) with T >= 1; got {tuple(x.shape)}"
            )

    def _check_start(self, start: torch.Tensor | None, like: torch.Tensor | None = None) -> None:
        if start is None:
            return
        if not isinstance(start, torch.Tensor) or not start.is_floating_point():
            raise TypeError("start must be a floating-point tensor")
        if start.dim() < 1 or start.shape[-1] != self.n_factors:
            raise ValueError(f"start must have shape (..., {self.n_factors}); got {tuple(start.shape)}")
        if like is not None and start.dtype != like.dtype:
            raise TypeError(f"start is {start.dtype} where the path is {like.dtype}")

    def innovations(self, x: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised innovations of paths ``x`` ``(..., T, K)``: independent ``N(0, 1)`` under the
        prior. The first is ``x_1`` (stationary start) or ``(x_1 - a x_0) / sqrt(1 - a^2)``."""
        self._check_path(x)
        self._check_start(start, x)
        coefficient, _, variance = self._terms(x)
        scale = variance.rsqrt()
        rest = (x[..., 1:, :] - coefficient * x[..., :-1, :]) * scale
        first = (
            x[..., :1, :] if start is None else (x[..., :1, :] - coefficient * start[..., None, :]) * scale
        )
        batch = broadcast_shapes(first.shape[:-2], rest.shape[:-2])
        return torch.cat((first.expand(*batch, -1, -1), rest.expand(*batch, -1, -1)), dim=-2)

    def log_det_precision(
        self, n_bins: int, conditioned: bool = False, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """``log det`` of the prior's precision over ``n_bins`` bins: ``-(T - 1) sum_k log(1 - a_k^2)``, or
        ``-T sum_k log(1 - a_k^2)`` given a start (``conditioned``); in ``dtype``, by default the
        parameter's."""
        n_bins = whole(n_bins, "n_bins")
        _, _, variance = self._terms(self.log_tau.to(dtype or self.log_tau.dtype))
        return -(n_bins - (0 if conditioned else 1)) * variance.log().sum()

    def log_prob(self, x: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """The exact log-density of paths ``x`` ``(..., T, K)``, ``(...)``: stationary start, or given the
        state ``start`` ``(..., K)`` in the bin before the first."""
        innovations = self.innovations(x, start)
        n_bins = x.shape[-2]
        log_det = self.log_det_precision(n_bins, start is not None, dtype=x.dtype)
        return -0.5 * (innovations.square().sum((-2, -1)) + n_bins * self.n_factors * LOG_2PI - log_det)

    def step(self, previous: torch.Tensor | None, noise: torch.Tensor) -> torch.Tensor:
        """The next state, ``a x + sqrt(1 - a^2) noise``, from the state ``previous`` ``(..., K)`` and
        standard normal ``noise`` ``(..., K)``; ``previous=None`` draws the stationary start (``noise``)."""
        if previous is None:
            return noise
        coefficient, _, variance = self._terms(noise)
        return coefficient * previous + variance.sqrt() * noise

    def sample(
        self,
        batch_shape: Sequence[int] | torch.Size,
        n_bins: int,
        generator: torch.Generator | None = None,
        start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Paths ``(*batch_shape, n_bins, K)`` drawn bin after bin by :meth:`step` (differentiable with
        respect to the time constants), from the stationary start or from ``start`` (broadcast to
        ``(*batch_shape, K)``)."""
        n_bins = whole(n_bins, "n_bins")
        self._check_start(start)
        dtype = self.log_tau.dtype if start is None else start.dtype
        shape = (*batch_shape, n_bins, self.n_factors)
        noise = torch.randn(shape, generator=generator, dtype=dtype, device=self.log_tau.device)
        state = start
        path = []
        for t in range(n_bins):
            state = self.step(state, noise[..., t, :])
            path.append(state)
        return torch.stack(torch.broadcast_tensors(*path), dim=-2)

    def _chain(self, n_bins: int, conditioned: bool, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's precision as a chain: the excess of each diagonal entry over the couplings of its
        bin, ``(T, K)``, and the couplings ``a / (1 - a^2)`` (``J[t + 1, t] = -coupling``), ``(K,)``.

        A middle bin's excess is ``(1 - a) / (1 + a)``; an end adds ``a / (1 + a)``, a start state
        ``a / (1 - a^2)`` (its coupling to the fixed ``x_0``). All terms are positive.
        """
        coefficient, complement, variance = self._terms(like)
        coupling = coefficient / variance
        middle = complement / (1 + coefficient)
        end = coefficient / (1 + coefficient)
        first = middle + (coupling if conditioned else end)
        if n_bins == 1:
            return (first + end)[None], coupling
        last = middle + end
        return torch.cat((first[None], middle.expand(n_bins - 2, -1), last[None])), coupling

    def precision_blocks(
        self, n_bins: int, start: torch.Tensor | None = None, dtype: torch.dtype | None = None
    ) -> PrecisionBlocks:
        """The prior's precision over ``n_bins`` bins in per-factor form (:class:`PrecisionBlocks`), and
        given ``start`` its linear term. The dtype is ``dtype``, else that of ``start``, else the
        parameter's."""
        n_bins = whole(n_bins, "n_bins")
        self._check_start(start)
        dtype = dtype or (start.dtype if start is not None else self.log_tau.dtype)
        like = self.log_tau.to(dtype)
        excess, coupling = self._chain(n_bins, start is not None, like)
        degree = torch.full((n_bins, 1), 2.0, dtype=dtype, device=like.device)
        degree[0] -= 1
        degree[-1] -= 1
        diagonal = excess + degree * coupling
        lower = (-coupling).expand(n_bins - 1, -1)
        linear = None
        if start is not None:
            first = (coupling * start.to(dtype))[..., None, :]
            linear = F.pad(first, (0, 0, 0, n_bins - 1))
        return PrecisionBlocks(diagonal, lower, linear)


def elimination_order(n_bins: int) -> torch.Tensor:
    """The order in which :class:`MarkovGaussian` eliminates the bins: the even bins (0, 2, 4...) of the
    chain, then the even ones among the bins left, and so on.

    Its factor ``L`` is the Cholesky factor of ``J[order][:, order]``, and a sample from noise ``eps`` is
    ``x[order] = m[order] + L^-T eps[order]``.

    >>> elimination_order(7).tolist()
    [0, 2, 4, 6, 1, 5, 3]
    """
    left = torch.arange(whole(n_bins, "n_bins"))
    parts = []
    while len(left):
        parts.append(left[0::2])
        left = left[1::2]
    return torch.cat(parts)


# The solvers below keep the bins on the last axis: vectors ``(..., K, n)``, blocks ``(..., K, K, n)``.
# Small K x K algebra is then elementwise over contiguous runs of bins, several times faster on a CPU
# than batched matrix products of tiny matrices.


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """The shape that ``shapes`` broadcast to: numpy's rule, as ``torch.broadcast_shapes``, whose first
    call imports ``torch.fx`` (0.3 s of CPU)."""
    return torch.Size(np.broadcast_shapes(*(tuple(shape) for shape in shapes)))


def _right(x: torch.Tensor) -> torch.Tensor:
    """``x`` moved one bin on: a zero first, the last bin dropped."""
    return F.pad(x, (1, -1))


def _left(x: torch.Tensor) -> torch.Tensor:
    """``x`` moved one bin back: the first bin dropped, a zero last."""
    return F.pad(x, (-1, 1))


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The even and the odd bins of ``x`` (an even number of bins), each contiguous along the bins."""
    return x.unflatten(-1, (x.shape[-1] // 2, 2)).transpose(-1, -2).contiguous().unbind(-2)


def _interleave(even: torch.Tensor, odd: torch.Tensor, length: int) -> torch.Tensor:
    """The bins of ``even`` and ``odd`` (as many) alternated, ``even`` first, the first ``length``."""
    both = torch.stack(torch.broadcast_tensors(even, odd), dim=-1)
    return both.flatten(-2).narrow(-1, 0, length)


def _t(a: torch.Tensor) -> torch.Tensor:
    """The transposed blocks of ``a`` ``(..., I, J, n)``."""
    return a.transpose(-3, -2)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The products of the blocks of ``a`` ``(..., I, J, n)`` and ``b`` ``(..., J, L, n)``."""
    return (a.unsqueeze(-2) * b.unsqueeze(-4)).sum(-3)


def _mv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The blocks of ``a`` ``(..., I, J, n)`` times the vectors ``v`` ``(..., J, n)``."""
    return (a * v.unsqueeze(-3)).sum(-2)


def _not_positive_definite() -> ValueError:
    return ValueError(
        "the posterior precision is not positive definite: the potentials' precisions must be symmetric "
        "positive semi-definite and finite"
    )


def _inverse_cholesky(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L^-1`` ``(..., K, K, n)`` and ``log diag L`` ``(..., K, n)`` of the Cholesky factors ``L`` of
    the positive definite blocks ``a`` ``(..., K, K, n)``; ValueError if one is not."""
    size = a.shape[-2]
    if size > 4:  # the entrywise recursion's K^3 operations cost more than torch.linalg's overhead
        blocks = a.movedim(-1, -3)
        factor, info = torch.linalg.cholesky_ex(blocks)
        if bool((info != 0).any()):
            raise _not_positive_definite()
        eye = torch.eye(size, dtype=a.dtype, device=a.device).expand_as(factor)
        inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
        return inverse.movedim(-3, -1), factor.diagonal(dim1=-2, dim2=-1).log().movedim(-2, -1)
    return _inverse_cholesky_entrywise(a)


def _inverse_cholesky_entrywise(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_inverse_cholesky` entry by entry, each entry a tensor over the bins: for small blocks."""
    size = a.shape[-2]
    factor: dict[tuple[int, int], torch.Tensor] = {}  # L[i, j], j <= i
    for j in range(size):
        pivot = a[..., j, j, :] - sum(factor[j, k].square() for k in range(j))
        if not bool((pivot > 0).all()):
            raise _not_positive_definite()
        factor[j, j] = diagonal = pivot.sqrt()
        for i in range(j + 1, size):
            factor[i, j] = (a[..., i, j, :] - sum(factor[i, k] * factor[j, k] for k in range(j))) / diagonal
    inverse: dict[tuple[int, int], torch.Tensor] = {}  # (L^-1)[i, j], j <= i
    for i in range(size):
        inverse[i, i] = 1 / factor[i, i]
        for j in range(i):
            inverse[i, j] = -inverse[i, i] * sum(factor[i, k] * inverse[k, j] for k in range(j, i))
    zero = torch.zeros_like(inverse[0, 0])
    rows = [torch.stack([inverse[i, j] if j <= i else zero for j in range(size)], -2) for i in range(size)]
    log_diag = torch.stack([factor[j, j] for j in range(size)], -2).log()
    return torch.stack(rows, -3), log_diag


def _split(noise: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """The noise ``(..., K, T)`` of each level's even bins, a level of ``n`` bins padded to an even number
    with zero noise as the solvers pad the chain."""
    parts = []
    for n in sizes:
        if n % 2:
            noise = F.pad(noise, (0, 1))
        even, noise = _pairs(noise)
        parts.append(even)
    return parts


class _Solver(abc.ABC):
    """An odd-even reduction of the precision, as :class:`MarkovGaussian` uses it (:class:`_Scalar` for
    independent scalar chains, :class:`_Blocks` for full blocks), factorised when it is made. Each keeps
    ``levels``, the factorisation of each level, whose first field is its number of bins."""

    levels: Sequence[tuple]

    @property
    def sizes(self) -> list[int]:
        """The number of bins of each level, the whole chain's first."""
        return [level[0] for level in self.levels]

    @abc.abstractmethod
    def log_det(self) -> torch.Tensor:
        """``log det J``, ``(...)``, in float64."""

    @abc.abstractmethod
    def eliminate(self, linear: torch.Tensor) -> list[torch.Tensor]:
        """The forward elimination of the linear term ``(..., K, T)``: the right-hand side of each level's
        even bins."""

    def substitute(self, sides: list[torch.Tensor], noise: list[torch.Tensor] | None) -> torch.Tensor:
        """The back substitution of :meth:`eliminate`'s ``sides``, from the deepest level up: the mean
        ``(..., K, T)``, plus ``L^-T eps`` given each level's noise (:func:`_split`)."""
        depth = len(self.levels) - 1
        x = self._even(depth, sides, noise, None)
        for level in reversed(range(depth)):
            x = _interleave(self._even(level, sides, noise, x), x, self.levels[level][0])
        return x

    @abc.abstractmethod
    def _even(
        self,
        level: int,
        sides: list[torch.Tensor],
        noise: list[torch.Tensor] | None,
        below: torch.Tensor | None,
    ) -> torch.Tensor:
        """The even bins of ``level`` in the back substitution, given ``below``, the bins of the level
        below it (None for the deepest level, whose one bin has no neighbours)."""

    @abc.abstractmethod
    def covariances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal and the lag-one covariances, ``Cov(x[t + 1], x[t])`` (the last 0), bins last."""


class _ScalarLevel(NamedTuple):
    """A level of :class:`_Scalar`: its number of bins ``n`` and, for its even bins, ``(..., K, n / 2)``,
    the pivots and the couplings to the odd bins before and after them."""

    n: int
    pivot: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor


class _Scalar(_Solver):
    """Odd-even reduction of independent scalar chains, each given by the excess of its diagonal over
    its couplings, ``(..., K, T)``, and its couplings ``w >= 0`` (``J[t + 1, t] = -w[t]``, the last 0),
    ``(..., K, T)``.

    A level of odd length is padded with a free bin (excess 1, no coupling, no linear term, no noise),
    which changes nothing else. Stored per level: a :class:`_ScalarLevel`. The last, deepest, level has a
    single bin.
    """

    def __init__(self, excess: torch.Tensor, coupling: torch.Tensor) -> None:
        self.levels: list[_ScalarLevel] = []
        while True:
            n = excess.shape[-1]
            if n % 2:
                excess, coupling = F.pad(excess, (0, 1), value=1.0), F.pad(coupling, (0, 1))
            excess_even, excess_odd = _pairs(excess)
            after, link = _pairs(coupling)
            before = _right(link)
            pivot = excess_even + before + after
            self.levels.append(_ScalarLevel(n, pivot, before, after))
            if n == 1:
                break
            # Eliminating an even bin couples its neighbours by before * after / pivot and adds
            # coupling * excess / pivot to each one's excess: sums of non-negative terms only.
            kept = excess_even / pivot
            excess = excess_odd + after * kept + _left(before * kept)
            coupling = _left(before * after / pivot)

    def log_det(self) -> torch.Tensor:
        first, *rest = (level.pivot.log().sum((-2, -1), dtype=torch.float64) for level in self.levels)
        return sum(rest, first)

    def eliminate(self, linear: torch.Tensor) -> list[torch.Tensor]:
        sides = []
        for n, pivot, before, after in self.levels:
            if n % 2:
                linear = F.pad(linear, (0, 1))
            even, odd = _pairs(linear)
            sides.append(even)
            if n == 1:
                break
            solved = even / pivot
            linear = odd + after * solved + _left(before * solved)
        return sides

    def _even(
        self,
        level: int,
        sides: list[torch.Tensor],
        noise: list[torch.Tensor] | None,
        below: torch.Tensor | None,
    ) -> torch.Tensor:
        _, pivot, before, after = self.levels[level]
        total = sides[level]
        if below is not None:
            total = total + before * _right(below) + after * below
        even = total / pivot
        if noise is not None:
            even = even + noise[level] * pivot.rsqrt()
        return even

    def covariances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The variances ``(..., K, T)`` and the lag-one covariances ``Cov(x[t + 1], x[t])`` ``(..., K,
        T)`` (the last 0), by the recursion of the tridiagonal inverse up the levels: sums of non-negative
        terms only."""
        *upper, deepest = self.levels
        variance = 1 / deepest.pivot
        lag = torch.zeros_like(variance)
        for n, pivot, before, after in reversed(upper):
            gain_before, gain_after = before / pivot, after / pivot
            between = _right(lag)  # Cov(odd bin after, odd bin before) of each even bin
            with_before = gain_before * _right(variance) + gain_after * between
            with_after = gain_before * between + gain_after * variance
            even = 1 / pivot + gain_before * with_before + gain_after * with_after
            lag = _interleave(with_after, _left(with_before), n)
            variance = _interleave(even, variance, n)
        return variance, lag


class _BlockLevel(NamedTuple):
    """A level of :class:`_Blocks`: its number of bins ``n`` and, for its even bins, the inverse Cholesky
    factors ``L^-1`` of their diagonal blocks ``(..., K, K, n / 2)``, ``log diag L`` ``(..., K, n / 2)``,
    and ``L^-1 J[e, before]`` and ``L^-1 J[e, after]`` ``(..., K, K, n / 2)``, their couplings to the odd
    bins before and after them."""

    n: int
    inverse: torch.Tensor
    log_diag: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor


class _Blocks(_Solver):
    """Odd-even reduction of a block-tridiagonal positive definite matrix given by its diagonal blocks
    ``(..., K, K, T)`` and its lower blocks ``J[t + 1, t] = diag(lower[t])``, ``(..., K, T)`` (the last
    0): diagonal, as the prior's are. The couplings that the reduction makes are full blocks.

    A level of odd length is padded with a free bin (identity block, no coupling). Stored per level: a
    :class:`_BlockLevel`. The last, deepest, level has a single bin.
    """

    def __init__(self, diagonal: torch.Tensor, lower: torch.Tensor) -> None:
        self.levels: list[_BlockLevel] = []
        size = diagonal.shape[-2]
        eye = torch.eye(size, dtype=diagonal.dtype, device=diagonal.device)[..., None]
        while True:
            n = diagonal.shape[-1]
            if n % 2:
                diagonal = torch.cat((diagonal, eye.expand(*diagonal.shape[:-1], 1)), -1)
                lower = F.pad(lower, (0, 1))
            diagonal_even, diagonal_odd = _pairs(diagonal)
            to_after, link = _pairs(lower)  # J[odd i, even i] and J[even i + 1, odd i]
            to_before = _right(link)
            inverse, log_diag = _inverse_cholesky(diagonal_even)
            if not self.levels:  # diagonal couplings: the products are rescaled entries
                before, after = inverse * to_before.unsqueeze(-3), inverse * to_after.unsqueeze(-3)
                pivot_inverse = _mm(_t(inverse), inverse)
                before_square = pivot_inverse * to_before.unsqueeze(-2) * to_before.unsqueeze(-3)
                after_square = pivot_inverse * to_after.unsqueeze(-2) * to_after.unsqueeze(-3)
                cross = pivot_inverse * to_after.unsqueeze(-2) * to_before.unsqueeze(-3)
            else:
                before, after = _mm(inverse, to_before), _mm(inverse, _t(to_after))
                before_square, after_square = _mm(_t(before), before), _mm(_t(after), after)
                cross = _mm(_t(after), before)
            self.levels.append(_BlockLevel(n, inverse, log_diag, before, after))
            if n == 1:
                break
            # The Schur complement on the odd bins: J[o, o] - J[o, e] J[e, e]^-1 J[e, o].
            diagonal = diagonal_odd - after_square - _left(before_square)
            lower = -_left(cross)

    def log_det(self) -> torch.Tensor:
        first, *rest = (level.log_diag.sum((-2, -1), dtype=torch.float64) for level in self.levels)
        return 2 * sum(rest, first)

    def eliminate(self, linear: torch.Tensor) -> list[torch.Tensor]:
        sides = []
        for n, inverse, _, before, after in self.levels:
            if n % 2:
                linear = F.pad(linear, (0, 1))
            even, odd = _pairs(linear)
            sides.append(_mv(inverse, even))
            if n == 1:
                break
            linear = odd - _mv(_t(after), sides[-1]) - _left(_mv(_t(before), sides[-1]))
        return sides

    def _even(
        self,
        level: int,
        sides: list[torch.Tensor],
        noise: list[torch.Tensor] | None,
        below: torch.Tensor | None,
    ) -> torch.Tensor:
        _, inverse, _, before, after = self.levels[level]
        total = sides[level] if noise is None else sides[level] + noise[level]
        if below is not None:
            total = total - _mv(before, _right(below)) - _mv(after, below)
        return _mv(_t(inverse), total)

    def covariances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The marginal covariances ``(..., K, K, T)`` and ``Cov(x[t + 1], x[t])`` ``(..., K, K, T)`` (the
        last 0)."""
        *upper, deepest = self.levels
        covariance = _mm(_t(deepest.inverse), deepest.inverse)
        lag = torch.zeros_like(covariance)
        for n, inverse, _, before, after in reversed(upper):
            pivot_inverse = _mm(_t(inverse), inverse)
            # J[e, e]^-1 J[e, o] for the odd bins before and after, and their covariances.
            gain_before, gain_after = _mm(_t(inverse), before), _mm(_t(inverse), after)
            between = _right(lag)  # Cov(odd bin after, odd bin before) of each even bin
            with_before = -(_mm(gain_before, _right(covariance)) + _mm(gain_after, between))
            with_after = -(_mm(gain_before, _t(between)) + _mm(gain_after, covariance))
            even = pivot_inverse - _mm(with_before, _t(gain_before)) - _mm(with_after, _t(gain_after))
            even = (even + _t(even)) / 2
            lag = _interleave(_t(with_after), _left(with_before), n)
            covariance = _interleave(even, covariance, n)
        return covariance, lag


def _factorise(
    prior: AR1Prior, mu: torch.Tensor, precision: torch.Tensor, start: torch.Tensor | None, full: bool
) -> tuple[_Solver, torch.Tensor, torch.Tensor]:
    """The factorised posterior precision ``J`` of :class:`MarkovGaussian` from the potentials' means
    ``mu`` ``(..., T, K)`` and precisions ``(..., T, K, K)`` (``full``) or ``(..., T, K)``, and the start.

    Returns the solver (:class:`_Blocks` for full potentials, else :class:`_Scalar`), the potentials'
    precisions with the bins last (``(..., K, K, T)`` symmetrised, or ``(..., K, T)``) and the linear term
    ``h = sum_t P_t mu_t`` plus the start's, ``(..., K, T)``, of which the mean is ``J^-1 h``.
    """
    n_bins, size = mu.shape[-2:]
    excess, coupling = prior._chain(n_bins, start is not None, mu)
    excess, coupling = excess.mT, F.pad(coupling[:, None].expand(size, n_bins - 1), (0, 1))
    mu = mu.mT.contiguous()
    if full:
        precision = ((precision + precision.mT) / 2).movedim(-3, -1).contiguous()
        linear = _mv(precision, mu)
    else:
        precision = precision.mT.contiguous()
        linear = precision * mu
    if start is not None:
        linear = linear + F.pad((coupling[:, 0] * start)[..., None], (0, n_bins - 1))
    if not full:
        return _Scalar(excess + precision, coupling), precision, linear
    # The diagonal blocks' diagonals: the excess plus the couplings of each bin to its one or two neighbours.
    neighbours = torch.full((n_bins,), 2.0, dtype=mu.dtype, device=mu.device)
    neighbours = neighbours - F.pad(neighbours.new_ones(1), (0, n_bins - 1))
    neighbours = neighbours - F.pad(neighbours.new_ones(1), (n_bins - 1, 0))
    diagonal = torch.diag_embed(excess.mT + neighbours[:, None] * coupling[:, 0]).movedim(-3, -1)
    return _Blocks(diagonal + precision, -coupling), precision, linear


class MarkovGaussian(Distribution):
    """The Gaussian posterior over latent paths: the AR(1) prior times one Gaussian potential per bin.

    ``q(x) ∝ p(x | x_0) prod_t exp(-(x_t - mu_t)' P_t (x_t - mu_t) / 2)``: a Gaussian with
    block-tridiagonal precision ``J = J_prior + blockdiag(P_t)``. Its event is a path ``(T, K)``, its batch
    the leading axes of the potentials (segments).

    Parameters
    ----------
    prior : AR1Prior
        The prior; gradients flow to its time constants.
    potential_mean : torch.Tensor
        ``mu``, ``(..., T, K)``.
    potential_precision : torch.Tensor
        ``P``, ``(..., T, K, K)`` symmetric positive semi-definite (only its symmetric part is used), or
        ``(..., T, K)`` non-negative for diagonal potentials; its leading axes as many as ``mu``'s and
        broadcastable with them. Diagonal potentials (and ``K = 1``) take the
        scalar path, accurate in float32 however slow the factors, and 3-4 times faster for ``K = 3``.
    start : torch.Tensor, optional
        ``(..., K)``: the state in the bin before the first, for a segment that continues the one before
        (its last state, e.g. a sample of its posterior); by default the stationary start.
    block_dtype : torch.dtype or None
        The dtype in which full potentials are factorised: float64 by default, since in float32 a factor
        of time constant ``tau`` under weak potentials loses about ``eps * tau^2`` of its precision's
        smallest eigenvalue (1% at 1000 bins); None keeps the inputs' dtype (faster, and fine for time
        constants below about 100 bins or informative potentials). Results have the inputs' dtype.

    Notes
    -----
    The factorisation is made once, at construction, by odd-even reduction (:func:`elimination_order`);
    the mean and covariances are computed when first asked for and kept. Every result is differentiable
    with respect to ``potential_mean``, ``potential_precision``, ``start`` and the prior's time constants.
    Paths and means are views with the factors' axis before the bins' underneath (``.contiguous()`` where
    a copy in the other order is wanted).

    Examples
    --------
    >>> import torch
    >>> prior = AR1Prior(20.0)
    >>> q = MarkovGaussian(prior, torch.ones(2, 50, 1), torch.full((2, 50, 1), 4.0))
    >>> [round(v, 3) for v in q.mean[0, [0, 25, 49], 0].tolist()]
    [0.941, 0.994, 0.941]
    >>> x = q.rsample((8,), generator=torch.Generator().manual_seed(1))
    >>> x.shape, q.log_prob(x).shape, q.entropy().shape, q.kl_prior().shape
    (torch.Size([8, 2, 50, 1]), torch.Size([8, 2]), torch.Size([2]), torch.Size([2]))
    """

    arg_constraints = {}  # noqa: RUF012 (the name torch.distributions reads; the arguments are checked here)
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        prior: AR1Prior,
        potential_mean: torch.Tensor,
        potential_precision: torch.Tensor,
        start: torch.Tensor | None = None,
        block_dtype: torch.dtype | None = torch.float64,
    ) -> None:
        if not isinstance(prior, AR1Prior):
            raise TypeError(f"prior must be an AR1Prior; got {type(prior).__name__}")
        prior._check_path(potential_mean, "potential_mean")
        mu, precision = potential_mean, potential_precision
        if not isinstance(precision, torch.Tensor) or precision.dtype != mu.dtype:
            raise TypeError(f"potential_precision must be a tensor of potential_mean's dtype, {mu.dtype}")
        prior._check_start(start, mu)
        n_bins, size = mu.shape[-2:]
        full = precision.dim() == mu.dim() + 1
        if precision.dim() not in (mu.dim(), mu.dim() + 1) or precision.shape[-2 - full :] != (
            (n_bins, size, size) if full else (n_bins, size)
        ):
            raise ValueError(
                f"potential_precision must have shape (..., {n_bins}, {size}, {size}) or (..., {n_bins}, "
                f"{size}) for potential_mean of shape {tuple(mu.shape)}; got {tuple(precision.shape)}"
            )
        if full and size == 1:
            precision, full = precision[..., 0], False
        self.prior, self.start = prior, start
        self.potential_mean, self.potential_precision = potential_mean, potential_precision
        self.diagonal = not full
        self._dtype = mu.dtype
        if full and block_dtype is not None and block_dtype != mu.dtype:
            mu, precision = mu.to(block_dtype), precision.to(block_dtype)
            start = None if start is None else start.to(block_dtype)
        self._start, self._work = start, mu.dtype
        if not full and bool((precision < 0).any()):
            raise ValueError("diagonal potential precisions must be non-negative")

        # Everything below keeps the bins on the last axis (see the solvers).
        self._solver, self._precision, linear = _factorise(prior, mu, precision, start, full)
        self._sides = self._solver.eliminate(linear)
        batch_shape = broadcast_shapes(
            self._sides[0].shape[:-2], precision.shape[: -3 if full else -2], mu.shape[:-2]
        )
        self._log_det = self._solver.log_det().expand(batch_shape)
        self._mean: torch.Tensor | None = None  # computed when first asked for
        self._moments: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(batch_shape, torch.Size((n_bins, size)), validate_args=False)

    @property
    def n_bins(self) -> int:
        """The number of bins ``T``."""
        return self.event_shape[0]

    @property
    def n_factors(self) -> int:
        """The number of factors ``K``."""
        return self.event_shape[1]

    def _mean_last(self) -> torch.Tensor:
        """The mean with the bins on the last axis, ``(..., K, T)``, in the dtype of the computation."""
        if self._mean is None:
            self._mean = self._solver.substitute(self._sides, None)
        return self._mean

    @property
    def mean(self) -> torch.Tensor:
        """The posterior mean ``J^-1 h``, ``(..., T, K)``."""
        return self._mean_last().to(self._dtype).mT.expand(self._extended_shape())

    def _covariances(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._moments is None:
            self._moments = self._solver.covariances()
        return self._moments

    @property
    def variance(self) -> torch.Tensor:
        """The marginal variances, the diagonal of ``J^-1``, ``(..., T, K)``."""
        variance = self._covariances()[0]
        if not self.diagonal:
            variance = variance.diagonal(dim1=-3, dim2=-2).mT
        return variance.to(self._dtype).mT.expand(self._extended_shape())

    def _blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        blocks = torch.diag_embed(blocks.mT) if self.diagonal else blocks.movedim(-1, -3)
        return blocks.to(self._dtype).expand(*self.batch_shape, *blocks.shape[-3:])

    @property
    def marginal_covariance(self) -> torch.Tensor:
        """The covariance of each bin's state, ``(..., T, K, K)`` (the diagonal blocks of ``J^-1``)."""
        return self._blocks(self._covariances()[0])

    @property
    def lag_covariance(self) -> torch.Tensor:
        """``Cov(x[t + 1], x[t])``, ``(..., T - 1, K, K)`` (the lower blocks of ``J^-1``)."""
        return self._blocks(self._covariances()[1])[..., : self.n_bins - 1, :, :]

    def transitions(self) -> Transitions:
        """The posterior as a forward Markov chain (:class:`Transitions`, with :attr:`mean`): the proposal
        of a particle filter that draws ``x_t`` given ``x_{t-1}`` and all the potentials, future ones
        included. Computed from the marginal and lag-one covariances; in float32 the conditional
        covariances of factors slower than about ``1 / eps`` bins lose their precision."""
        variance, lag = self._covariances()
        if self.diagonal:  # (..., K, T): independent factors
            gain = lag[..., :-1] / variance[..., :-1]
            covariance = variance[..., 1:] - gain * lag[..., :-1]
            first, gain, covariance = (torch.diag_embed(x.mT) for x in (variance[..., :1], gain, covariance))
            first = first[..., 0, :, :]
        else:
            marginal, lag = variance.movedim(-1, -3), lag.movedim(-1, -3)[..., :-1, :, :]
            gain = torch.linalg.solve(marginal[..., :-1, :, :], lag.mT).mT
            covariance = marginal[..., 1:, :, :] - gain @ lag.mT
            first, covariance = marginal[..., 0, :, :], (covariance + covariance.mT) / 2
        size, steps = self.n_factors, self.n_bins - 1
        return Transitions(
            first.to(self._dtype).expand(*self.batch_shape, size, size),
            gain.to(self._dtype).expand(*self.batch_shape, steps, size, size),
            covariance.to(self._dtype).expand(*self.batch_shape, steps, size, size),
        )

    def log_det_precision(self) -> torch.Tensor:
        """``log det J``, ``(...)``."""
        return self._log_det.to(self._dtype)

    def from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """The path that standard normal ``noise`` ``(*sample_shape, *batch_shape, T, K)`` maps to,
        ``m + L^-T eps`` (with the bins in :func:`elimination_order`): the reparameterisation of
        :meth:`rsample`, for common or quasi-random numbers."""
        if noise.shape[-2:] != self.event_shape:
            raise ValueError(f"noise must end in {tuple(self.event_shape)}; got {tuple(noise.shape)}")
        noise = noise.to(self._work).mT
        x = self._solver.substitute(self._sides, _split(noise, self._solver.sizes))
        x = x.to(self._dtype).mT
        return x.expand(broadcast_shapes(x.shape, self._extended_shape()))

    def rsample(
        self,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reparameterised paths ``(*sample_shape, *batch_shape, T, K)``."""
        *shape, n_bins, size = self._extended_shape(torch.Size(sample_shape))
        # Drawn with the bins last, as the solvers keep them.
        device = self._log_det.device
        noise = torch.randn(*shape, size, n_bins, generator=generator, dtype=self._dtype, device=device)
        return self.from_noise(noise.mT)

    def sample(
        self,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Paths as :meth:`rsample`, without gradient."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def _potential_square(self, deviation: torch.Tensor) -> torch.Tensor:
        """``sum_t d_t' P_t d_t`` for deviations with the bins last, ``(..., K, T)``."""
        if self.diagonal:
            return (self._precision * deviation.square()).sum((-2, -1), dtype=torch.float64)
        return (deviation * _mv(self._precision, deviation)).sum((-2, -1), dtype=torch.float64)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """The exact log-density of paths ``(*sample_shape, *batch_shape, T, K)``, ``(*sample_shape,
        *batch_shape)``.

        The quadratic form ``(x - m)' J (x - m)`` is summed as the prior's squared innovations of ``x - m``
        plus the potentials' terms, all non-negative, rather than through ``J``'s entries.
        """
        self.prior._check_path(value, "value")
        deviation = value.to(self._work).mT - self._mean_last()
        zero = None if self._start is None else torch.zeros_like(deviation[..., 0])
        square = self.prior.innovations(deviation.mT, zero).square().sum((-2, -1), dtype=torch.float64)
        square = square + self._potential_square(deviation)
        log_prob = 0.5 * (self._log_det - self.n_bins * self.n_factors * LOG_2PI - square)
        return log_prob.to(self._dtype)

    def entropy(self) -> torch.Tensor:
        """The entropy ``(T K (1 + log 2 pi) - log det J) / 2``, ``(...)``."""
        return (0.5 * (self.n_bins * self.n_factors * (1 + LOG_2PI) - self._log_det)).to(self._dtype)

    def kl_prior(self) -> torch.Tensor:
        """``KL(q || p)`` from the prior (given the same start), exact, ``(...)``: with it the ELBO is
        ``E_q[log p(y | x)] - KL``, Monte Carlo for the first term only.

        ``KL = (log det J - log det J_prior - sum_t tr(P_t S_t) + |innovations of m|^2) / 2`` with ``S_t``
        the marginal covariances and the prior's innovations of the mean path.
        """
        covariance = self._covariances()[0]
        dims = (-2, -1) if self.diagonal else (-3, -2, -1)
        trace = (self._precision * covariance).sum(dims, dtype=torch.float64)
        innovations = self.prior.innovations(self._mean_last().mT, self._start)
        square = innovations.square().sum((-2, -1), dtype=torch.float64)
        conditioned = self._start is not None
        prior_log_det = self.prior.log_det_precision(self.n_bins, conditioned, dtype=self._log_det.dtype)
        return (0.5 * (self._log_det - prior_log_det - trace + square)).to(self._dtype)

    def __repr__(self) -> str:
        kind = "diagonal" if self.diagonal else "full"
        return (
            f"MarkovGaussian(batch_shape={tuple(self.batch_shape)}, n_bins={self.n_bins}, "
            f"n_factors={self.n_factors}, {kind} potentials)"
        )


class LatentEncoder(nn.Module):
    """The amortised posterior of the latent factors: per-bin Gaussian potentials read from the counts.

    Each bin's visible counts ``y_t`` ``(V,)`` give a diagonal potential, ``mu_t = A y_t + a`` and
    ``P_t = softplus(B y_t + b)``, linear readouts; :meth:`posterior` combines them with the prior into
    the exact :class:`MarkovGaussian`, so that the prior's time constants smooth what each bin says.

    Parameters
    ----------
    n_visible : int
        Number of visible neurons ``V`` read.
    n_factors : int
        Number of factors ``K``.

    Attributes
    ----------
    mean_weight, precision_weight : torch.nn.Parameter
        ``A`` and ``B``, ``(K, V)``: zero at construction (:meth:`init_weights` draws them).
    mean_bias, precision_bias : torch.nn.Parameter
        ``a`` (0) and ``b`` ``(K,)``, the latter so that ``P_t = 1`` at the start.
    """

    def __init__(self, n_visible: int, n_factors: int) -> None:
        super().__init__()
        n_visible, n_factors = whole(n_visible, "n_visible"), whole(n_factors, "n_factors")
        self.mean_weight = nn.Parameter(torch.zeros(n_factors, n_visible))
        self.mean_bias = nn.Parameter(torch.zeros(n_factors))
        self.precision_weight = nn.Parameter(torch.zeros(n_factors, n_visible))
        self.precision_bias = nn.Parameter(torch.full((n_factors,), math.log(math.expm1(1.0))))

    @property
    def n_factors(self) -> int:
        """The number of factors ``K``."""
        return self.mean_bias.shape[0]

    def init_weights(self, scale: float, generator: torch.Generator) -> None:
        """Draw the readouts' weights with std ``scale`` (the zero start is a saddle of the ELBO: with
        no loading the counts say nothing of the factors, and with no readout the loading learns nothing)."""
        with torch.no_grad():
            self.mean_weight.normal_(0.0, scale, generator=generator)
            self.precision_weight.normal_(0.0, scale, generator=generator)

    def forward(self, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The potentials' means and diagonal precisions, each ``(..., T, K)``, of counts ``(..., T, V)``."""
        mean = visible @ self.mean_weight.T.to(visible.dtype) + self.mean_bias.to(visible.dtype)
        precision = visible @ self.precision_weight.T.to(visible.dtype) + self.precision_bias.to(
            visible.dtype
        )
        return mean, F.softplus(precision)

    def potentials(self, visible: torch.Tensor, block: int = 2**15) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` of counts of any dtype (compact integers too) and device, ``block`` bins at a
        time, in the dtype and on the device of the encoder's parameters: so that a long recording is read
        without a float copy."""
        dtype, device = self.mean_bias.dtype, self.mean_bias.device
        if visible.dtype == dtype and visible.device == device and visible.shape[-2] <= block:
            return self(visible)
        parts = [self(part.to(dtype=dtype, device=device)) for part in visible.split(block, dim=-2)]
        return torch.cat([m for m, _ in parts], dim=-2), torch.cat([p for _, p in parts], dim=-2)

    def posterior(
        self,
        prior: AR1Prior,
        visible: torch.Tensor,
        start: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> MarkovGaussian:
        """The posterior over the paths of the factors given counts ``(..., T, V)`` (of any dtype, read a
        block of bins at a time): batch ``(...)``.

        ``mask`` ``(..., T)`` (1 or 0) keeps the potentials of some bins only; the others say nothing.
        """
        if prior.n_factors != self.n_factors:
            raise ValueError(
                f"the prior has {prior.n_factors} factors where the encoder has {self.n_factors}"
            )
        mean, precision = self.potentials(visible)
        if mask is not None:
            precision = precision * mask[..., None].to(precision.dtype)
        return MarkovGaussian(prior, mean, precision, start=start)
