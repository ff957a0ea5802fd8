"""Poisson relaxations: differentiable surrogates of Poisson spike counts.

Every relaxation here is a :class:`torch.distributions.Distribution` whose parameter ``rate`` is the
expected count per bin. ``rsample`` draws a *relaxed* (real-valued) count that is differentiable with
respect to ``rate``; ``sample`` draws exact integer Poisson counts; ``log_prob`` is the Poisson log-pmf,
extended to real values through ``lgamma`` so that it can score relaxed counts.

The event-arrival-time (Eat) relaxations follow arXiv 2602.03896: the arrival times ``S_1 < S_2 < ...``
of a rate-``lambda`` Poisson process are generated from exponential inter-arrival times, and the count
in the unit window, ``sum_k 1[S_k <= 1]``, is softened to ``sum_k f((1 - S_k) / tau)`` with a smooth
step ``f`` and a temperature ``tau``. Since a rate-``lambda`` process is a unit-rate process with its
times divided by ``lambda``, the relaxed count is a differentiable function of ``lambda``.

=================  ========================================================================
``"eat-cubic"``    :class:`EatCubic`: cubic smoothstep, compact support, mean exactly ``rate``
``"eat-sigmoid"``  :class:`EatSigmoid`: logistic step, mean biased upwards
``"gumbel-softmax"``  :class:`GumbelSoftmax`: relaxed categorical over a truncated support
``"exact"``        :class:`ExactPoisson`: integer samples, score-function gradients only
=================  ========================================================================
"""

from __future__ import annotations

import math
from numbers import Real
from typing import ClassVar, TypeAlias

import scipy.stats
import torch
from torch.distributions import Distribution, constraints

from spikeglm.options import Registry

__all__ = [
    "RELAXATIONS",
    "EatCubic",
    "EatSigmoid",
    "ExactPoisson",
    "GumbelSoftmax",
    "PoissonRelaxation",
    "Shape",
    "cubic_step",
    "get",
    "names",
    "poisson_log_pmf",
    "poisson_log_ratio",
    "poisson_tail_count",
    "spike_log_rates",
    "truncated_arrival_counts",
]

#: A sample or batch shape, in any form torch.distributions takes one.
Shape: TypeAlias = "torch.Size | list[int] | tuple[int, ...]"

#: At most this many in-window arrivals are simulated at once by :meth:`EatCubic.rsample`;
#: larger draws are processed in blocks of elements, which bounds the transient memory.
_MAX_ARRIVALS_PER_BLOCK = 1 << 22


def cubic_step(x: torch.Tensor) -> torch.Tensor:
    """Cubic smoothstep on ``[-1, 1]``: ``3u^2 - 2u^3`` with ``u = clip((x + 1) / 2, 0, 1)``.

    It is 0 for ``x <= -1``, 1 for ``x >= 1``, continuously differentiable, and ``f(x) + f(-x) = 1``.
    """
    u = ((x + 1) / 2).clamp(0, 1)
    return u * u * (3 - 2 * u)


def _softplus(a: float) -> float:
    """``log(1 + e^a)`` for ``a > 0`` without overflow."""
    return a + math.log1p(math.exp(-a))


def poisson_tail_count(rate: float, tail: float) -> int:
    """Smallest ``k`` with ``P(Poisson(rate) > k) <= tail``: a truncation of the Poisson support."""
    return int(scipy.stats.poisson.isf(tail, rate))


def _check_positive_finite(rate: torch.Tensor, owner: str) -> None:
    if rate.numel() == 0:
        return
    low, high = torch.aminmax(rate.detach())
    if low > 0 and high < math.inf:  # False for NaN too
        return
    bad_sign = int((rate <= 0).sum())
    bad_finite = int((~torch.isfinite(rate)).sum())
    raise ValueError(
        f"{owner}: `rate` must be positive and finite (an expected count per bin); got "
        f"{bad_sign} value(s) <= 0 and {bad_finite} non-finite value(s) among {rate.numel()}"
    )


def _check_temperature(temperature: float, owner: str, at_most_one: bool) -> float:
    if isinstance(temperature, torch.Tensor) and temperature.numel() == 1:
        temperature = temperature.item()
    if not isinstance(temperature, Real) or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{owner}: `temperature` must be a positive finite number; got {temperature!r}")
    if at_most_one and temperature > 1:
        raise ValueError(
            f"{owner}: `temperature` must be <= 1; got {temperature}. Above 1 the smoothing window "
            "[1 - tau, 1 + tau] reaches before time 0 and the relaxed count's mean is no longer the rate"
        )
    return float(temperature)


def _check_tail(tail: float, owner: str) -> float:
    if not isinstance(tail, Real) or not 0 < tail < 1:
        raise ValueError(f"{owner}: `tail` must be a probability in (0, 1); got {tail!r}")
    return float(tail)


def poisson_log_pmf(
    counts: torch.Tensor, rate: torch.Tensor | float, log_factorial: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Elementwise Poisson log-pmf ``k log(rate) - rate - lgamma(k + 1)``, extended to real ``k >= 0``.

    The one definition used everywhere: the model's likelihood, the posterior's density and every
    relaxation's :meth:`~PoissonRelaxation.log_prob`. A rate that has underflowed to 0 (a strongly
    inhibited neuron) counts as the smallest normal float in the log, so that the value stays finite and
    the gradient is never 0/0. ``log_factorial``, ``lgamma(counts + 1)`` computed beforehand (for counts
    shared by many samples, once rather than once per sample), saves that work; 0 leaves it out (where it
    cancels).
    """
    if not torch.is_tensor(rate):
        rate = torch.as_tensor(rate, dtype=counts.dtype, device=counts.device)
    floor = torch.finfo(rate.dtype).tiny
    if log_factorial is None:
        log_factorial = torch.lgamma(counts + 1)
    return torch.xlogy(counts, rate.clamp_min(floor)) - rate - log_factorial


def spike_log_rates(rate: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``counts * log(rate)`` with :func:`poisson_log_pmf`'s floor on the rate: the one term of the log-pmf
    that needs the log, for sums that take it only where the counts are above 0 (the rates gathered
    there)."""
    return counts * rate.clamp_min(torch.finfo(rate.dtype).tiny).log()


def poisson_log_ratio(counts: torch.Tensor, rate: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Elementwise ``poisson_log_pmf(counts, rate) - poisson_log_pmf(counts, other)``, in which the
    factorials cancel: ``k log(rate / other) - rate + other``, with :func:`poisson_log_pmf`'s floor on
    both rates in the log.

    Examples
    --------
    >>> k, a, b = torch.tensor([0.0, 3.0]), torch.tensor([0.5, 2.0]), torch.tensor([1.0, 4.0])
    >>> torch.allclose(poisson_log_ratio(k, a, b), poisson_log_pmf(k, a) - poisson_log_pmf(k, b))
    True
    """
    floor = torch.finfo(rate.dtype).tiny
    return torch.xlogy(counts, rate.clamp_min(floor) / other.clamp_min(floor)) - rate + other


class PoissonRelaxation(Distribution):
    """Base class: a Poisson law of mean ``rate`` with a relaxed, reparameterised sampler.

    Parameters
    ----------
    rate : torch.Tensor or float
        Expected count per bin, positive and finite; any shape, float32 or float64, any device.
    validate_args : bool, optional
        Check the arguments (the default, as in :mod:`torch.distributions`). Checking synchronises
        with a GPU; pass ``False`` in hot loops whose inputs are known to be valid.
    """

    arg_constraints: ClassVar[dict] = {"rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    name = ""

    def __init__(self, rate: torch.Tensor | float, validate_args: bool | None = None) -> None:
        rate = torch.as_tensor(rate)
        if not rate.is_floating_point():
            rate = rate.to(torch.get_default_dtype())
        check = Distribution._validate_args if validate_args is None else validate_args
        if check:
            _check_positive_finite(rate, type(self).__name__)
        self.rate = rate
        # Arguments are checked above with specific messages; the generic checks are not repeated.
        super().__init__(batch_shape=rate.shape, validate_args=False)

    def expand(self, batch_shape: Shape, _instance: PoissonRelaxation | None = None) -> PoissonRelaxation:
        new = self._get_checked_instance(type(self), _instance)
        new.__dict__.update(self.__dict__)
        new.rate = self.rate.expand(batch_shape)
        Distribution.__init__(new, batch_shape=torch.Size(batch_shape), validate_args=False)
        return new

    def sample(self, sample_shape: Shape = torch.Size()) -> torch.Tensor:
        """Exact integer Poisson counts (as floating-point values), without gradient."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            return torch.poisson(self.rate.expand(shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Poisson log-pmf ``x log(rate) - rate - lgamma(x + 1)``, defined for real ``x >= 0``."""
        value = torch.as_tensor(value, dtype=self.rate.dtype, device=self.rate.device)
        return poisson_log_pmf(value, self.rate)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)}" for k in ("temperature", "tail") if hasattr(self, k))
        return f"{type(self).__name__}(rate: {tuple(self.rate.shape)}{extra})"


class ExactPoisson(PoissonRelaxation):
    """The Poisson law itself: exact samples, no reparameterisation.

    Gradients through samples of this law need the score function, ``log_prob(x).grad``; see
    :mod:`spikeglm.inference.objectives`.
    """

    has_rsample = False
    name = "exact"

    @property
    def mean(self) -> torch.Tensor:
        return self.rate

    @property
    def variance(self) -> torch.Tensor:
        return self.rate

    def rsample(self, sample_shape: Shape = torch.Size()) -> torch.Tensor:
        raise NotImplementedError(
            "ExactPoisson has no reparameterised sampler: use sample() with a score-function estimator"
        )


class _EatCubicWindow(torch.autograd.Function):
    """Relaxed Eat-cubic count from the arrivals that reach the smoothing window.

    Inputs: ``rate`` (n,); ``unit_times`` (m,), arrivals on the unit-rate time scale (``rate * S``) that
    are not counted in ``n_before``; ``owner`` (m,), the element of each arrival; ``n_before`` (n,) or
    None, arrivals before the window drawn as a number only; ``hard``: count each arrival before ``S = 1``
    as 1 and the others as 0 (the exact Poisson count) instead of through the smoothstep, keeping the
    relaxed derivative. Only ``dz/drate`` (n,) is kept for backward.
    """

    @staticmethod
    def forward(ctx, rate, unit_times, owner, n_before, temperature, hard):
        rate_j = rate[owner]
        times = unit_times / rate_j  # S_j on the rate-`rate` time scale
        u = ((1 + temperature - times) / (2 * temperature)).clamp_(0, 1)  # (x + 1) / 2
        step = (times < 1).to(rate.dtype) if hard else u * u * (3 - 2 * u)
        # dz/drate = sum_j f'(x_j) dx_j/dS_j dS_j/drate = sum_j 3 u_j (1 - u_j) S_j / (tau rate)
        slope = u.mul_(1 - u).mul_(times).div_(rate_j).mul_(3 / temperature)
        count = torch.zeros_like(rate) if n_before is None else n_before.clone()
        count.index_add_(0, owner, step)
        ctx.save_for_backward(torch.zeros_like(rate).index_add_(0, owner, slope))
        return count

    @staticmethod
    def backward(ctx, grad_count):
        (derivative,) = ctx.saved_tensors
        return grad_count * derivative, None, None, None, None, None


class EatCubic(PoissonRelaxation):
    """Eat-cubic relaxation: arrivals counted through a cubic smoothstep of ``(1 - S) / tau``.

    The step is exactly 1 for arrivals before ``1 - tau`` and exactly 0 after ``1 + tau``, and it is
    symmetric about ``S = 1``, so for ``tau <= 1`` the relaxed count ``z`` has mean exactly ``rate`` and,
    by Campbell's theorem, variance ``rate * (1 - 9 tau / 35)``.

    Sampling is exact, with no truncation of the arrival process: the number of arrivals before the
    window is drawn as ``Poisson(rate * (1 - tau))``, the ``Poisson(2 tau rate)`` arrivals inside it are
    placed uniformly, and the pathwise derivative ``dS/drate = -S / rate`` gives the gradient, of which
    a single value per element is kept for the backward pass.

    Parameters
    ----------
    rate : torch.Tensor or float
        Expected count per bin, positive and finite.
    temperature : float
        Half-width ``tau`` of the smoothing window, ``0 < tau <= 1``. Small values give counts close to
        integers and noisier gradients.
    straight_through : bool
        Make :meth:`rsample` return the exact integer count of the same arrivals (those before
        ``S = 1``) with the relaxed count's gradient. Objectives evaluated on such samples are exact
        (an ELBO stays a bound, with no real-valued count to exploit); only their gradient is relaxed.
        :attr:`mean` and :attr:`variance` are then those of the Poisson law.
    validate_args : bool, optional
        Check the arguments (default True).

    Examples
    --------
    >>> import torch, spikeglm as sg
    >>> rate = torch.tensor([0.05, 1.0, 5.0], requires_grad=True)
    >>> z = sg.relax.EatCubic(rate, temperature=0.5).rsample((1000,))
    >>> z.mean(0).sum().backward()   # rate.grad is close to 1 per element
    """

    name = "eat-cubic"

    def __init__(
        self,
        rate,
        temperature: float = 0.5,
        validate_args: bool | None = None,
        straight_through: bool = False,
    ) -> None:
        self.temperature = _check_temperature(temperature, "EatCubic", at_most_one=True)
        self.straight_through = bool(straight_through)
        super().__init__(rate, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.rate

    @property
    def variance(self) -> torch.Tensor:
        return self.rate * (1 if self.straight_through else 1 - 9 * self.temperature / 35)

    def rsample(self, sample_shape: Shape = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        rate = self.rate.expand(shape).reshape(-1)
        if rate.numel() == 0:
            return rate.detach().clone().reshape(shape)
        tau = self.temperature
        highest = float(rate.detach().max())
        if highest * (1 + tau) * rate.numel() <= _MAX_ARRIVALS_PER_BLOCK:
            return self._rsample_flat(rate, highest).reshape(shape)
        blocks = _blocks(rate.detach() * (1 + tau), _MAX_ARRIVALS_PER_BLOCK)
        return torch.cat([self._rsample_flat(rate[b], highest) for b in blocks]).reshape(shape)

    def _rsample_flat(self, rate: torch.Tensor, highest: float) -> torch.Tensor:
        tau = self.temperature
        with torch.no_grad():
            # Where few arrivals precede the window, `_arrivals_until` simulates them one by one (cheaper
            # than a Poisson draw); elsewhere their number is drawn as Poisson(rate (1 - tau)) and the chain
            # starts at the window's opening, which the memoryless property makes exact.
            n_before = None
            start: torch.Tensor | float = 0.0
            if highest * (1 - tau) > _CHAIN_BEFORE_WINDOW:
                many = (rate * (1 - tau) > _CHAIN_BEFORE_WINDOW).nonzero().squeeze(1)
                n_before = torch.zeros_like(rate)
                n_before[many] = torch.poisson(rate[many] * (1 - tau))
                start = torch.zeros_like(rate).index_fill_(0, many, 1 - tau)
            unit_times, owner = _arrivals_until(rate, start, 1 + tau)
        return _EatCubicWindow.apply(rate, unit_times, owner, n_before, tau, self.straight_through)


#: Elements expecting more arrivals than this before the smoothing window draw their number directly.
_CHAIN_BEFORE_WINDOW = 1.0


def _minus_unit_exponential(like: torch.Tensor) -> torch.Tensor:
    """Negated unit exponential draws shaped like ``like``: ``log(1 - U)``, faster than ``exponential_``."""
    return torch.rand_like(like).neg_().log1p_()


def _arrivals_until(
    rate: torch.Tensor, start: torch.Tensor | float, end: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """All arrivals of rate-``rate`` Poisson processes in ``(start, end)``, one process per element.

    The chain runs on the unit-rate time scale, where ``(start, end)`` has length
    ``budget = rate (end - start)``: unit exponential inter-arrival times are taken from the budget while
    it stays positive. Each round touches only the elements still running, so the work is one pass over
    all elements plus one step per arrival. The first pass needs no logarithm: a first arrival exists
    exactly when a uniform ``U`` exceeds ``exp(-budget)``, and it then takes ``-log(U)`` of the budget.

    Returns the arrival times on the unit-rate time scale (``rate * S``) and the element of each.
    """
    budget = rate * (end - start)
    u = torch.rand_like(rate)
    owner = (u > torch.exp(-budget)).nonzero().squeeze(1)
    left = budget[owner] + u[owner].log()
    lefts, owners = [], []
    while owner.numel():
        owners.append(owner)
        lefts.append(left)
        left = left + _minus_unit_exponential(left)
        running = (left > 0).nonzero().squeeze(1)
        owner, left = owner[running], left[running]
    owner = torch.cat(owners) if owners else owner
    left = torch.cat(lefts) if lefts else left
    return rate[owner] * end - left, owner


def _blocks(expected: torch.Tensor, max_arrivals: int) -> list[slice]:
    """Contiguous blocks of elements whose ``expected`` arrivals add up to at most ``max_arrivals``."""
    ends = torch.cumsum(expected, 0)
    blocks, start = [], 0
    while start < expected.numel():
        offset = float(ends[start - 1]) if start else 0.0
        stop = int(torch.searchsorted(ends, offset + max_arrivals, right=True))
        stop = max(stop, start + 1)
        blocks.append(slice(start, stop))
        start = stop
    return blocks


def truncated_arrival_counts(
    rate: torch.Tensor, temperature: float, step, n_arrivals: int, sample_shape: Shape = torch.Size()
) -> torch.Tensor:
    """Relaxed counts from a fixed number of simulated arrivals per element (plain autograd).

    The first ``n_arrivals`` arrival times ``S_k = (E_1 + ... + E_k) / rate`` are simulated from unit
    exponentials ``E`` and ``sum_k step((1 - S_k) / temperature)`` is returned. This is the direct
    formulation of an Eat relaxation; it is used by :class:`EatSigmoid` and, with :func:`cubic_step`,
    as the reference that :class:`EatCubic` is tested and benchmarked against.
    """
    shape = torch.Size(sample_shape) + rate.shape
    with torch.no_grad():
        unit_times = _minus_unit_exponential(rate.new_empty((n_arrivals, *shape))).cumsum_(0).neg_()
    return step((1 - unit_times / rate) / temperature).sum(0)


class _TruncatedRelaxation(PoissonRelaxation):
    """A relaxation simulated over a truncated support: any positive temperature, and a ``tail``."""

    def __init__(
        self, rate, temperature: float = 0.5, tail: float = 1e-3, validate_args: bool | None = None
    ) -> None:
        self.temperature = _check_temperature(temperature, type(self).__name__, at_most_one=False)
        self.tail = _check_tail(tail, type(self).__name__)
        super().__init__(rate, validate_args=validate_args)


class EatSigmoid(_TruncatedRelaxation):
    """Eat-sigmoid relaxation: arrivals counted through a logistic step ``sigmoid((1 - S) / tau)``.

    The logistic step has unbounded support, so arrivals are simulated up to the time where it falls
    below ``tail``, their number truncated at the ``1 - tail`` quantile. Its mean is biased upwards:
    ``rate * tau * log(1 + exp(1 / tau))`` (+6% at ``tau = 0.5``, +31% at ``tau = 1``).

    Parameters
    ----------
    rate : torch.Tensor or float
        Expected count per bin, positive and finite.
    temperature : float
        Scale ``tau`` of the logistic step, ``tau > 0``.
    tail : float
        Truncation probability of the simulated arrivals (default 1e-3).
    validate_args : bool, optional
        Check the arguments (default True).
    """

    name = "eat-sigmoid"

    @property
    def mean(self) -> torch.Tensor:
        # Campbell: rate * int_0^inf sigmoid((1 - s)/tau) ds = rate * tau * softplus(1/tau)
        return self.rate * (self.temperature * _softplus(1 / self.temperature))

    @property
    def variance(self) -> torch.Tensor:
        # Campbell: rate * int_0^inf sigmoid((1 - s)/tau)^2 ds
        #         = rate * tau * (softplus(1/tau) - sigmoid(1/tau))
        a = 1 / self.temperature
        return self.rate * (self.temperature * (_softplus(a) - 1 / (1 + math.exp(-a))))

    def rsample(self, sample_shape: Shape = torch.Size()) -> torch.Tensor:
        tau = self.temperature
        horizon = 1 + tau * math.log(1 / self.tail - 1)  # sigmoid((1 - S)/tau) < tail beyond it
        n_arrivals = poisson_tail_count(float(self.rate.detach().max()) * horizon, self.tail) + 1
        return truncated_arrival_counts(self.rate, tau, torch.sigmoid, n_arrivals, sample_shape)


class GumbelSoftmax(_TruncatedRelaxation):
    """Gumbel-softmax relaxation of the Poisson law truncated to ``{0, ..., K - 1}``.

    ``K`` is one more than the ``1 - tail`` quantile of ``Poisson(max(rate))``. A relaxed one-hot vector
    ``y = softmax((log p_k + G_k) / tau)`` with Gumbel noise ``G`` is drawn over the truncated support
    and the relaxed count is ``sum_k k y_k``. Its moments have no closed form.

    Parameters
    ----------
    rate : torch.Tensor or float
        Expected count per bin, positive and finite.
    temperature : float
        Softmax temperature ``tau > 0``.
    tail : float
        Truncation probability of the support (default 1e-3).
    validate_args : bool, optional
        Check the arguments (default True).
    """

    name = "gumbel-softmax"

    @property
    def mean(self) -> torch.Tensor:
        raise NotImplementedError(
            "GumbelSoftmax: the relaxed count's mean has no closed form; estimate it from rsample() "
            "(see spikeglm.fidelity.moments)"
        )

    @property
    def variance(self) -> torch.Tensor:
        raise NotImplementedError(
            "GumbelSoftmax: the relaxed count's variance has no closed form; estimate it from rsample() "
            "(see spikeglm.fidelity.moments)"
        )

    def rsample(self, sample_shape: Shape = torch.Size()) -> torch.Tensor:
        n_support = poisson_tail_count(float(self.rate.detach().max()), self.tail) + 1
        shape = self._extended_shape(sample_shape)
        k = torch.arange(n_support, dtype=self.rate.dtype, device=self.rate.device)
        logits = torch.xlogy(k, self.rate.expand(shape).unsqueeze(-1)) - torch.lgamma(k + 1)
        with torch.no_grad():
            gumbel = -torch.empty_like(logits).exponential_().log()
        onehot = torch.softmax((logits + gumbel) / self.temperature, dim=-1)
        return onehot @ k


#: The relaxations by name; a class is accepted in place of its name.
RELAXATIONS: Registry[type[PoissonRelaxation]] = Registry(
    "relaxation", {cls.name: cls for cls in (EatCubic, EatSigmoid, GumbelSoftmax, ExactPoisson)}
)


def names() -> tuple[str, ...]:
    """Names accepted by :func:`get`."""
    return RELAXATIONS.names()


def get(name: str | type[PoissonRelaxation]) -> type[PoissonRelaxation]:
    """Relaxation class by name (``"eat-cubic"``, ``"eat-sigmoid"``, ``"gumbel-softmax"``, ``"exact"``).

    Names match whatever their case, with ``_`` for ``-``; a relaxation class is returned as it is.

    Examples
    --------
    >>> import spikeglm as sg
    >>> sg.relax.get("Eat_Cubic")
    <class 'spikeglm.relax.EatCubic'>
    """
    return RELAXATIONS[name]
