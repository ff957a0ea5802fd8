"""The POGLM generative model: visible and hidden neurons coupled through history filters.

For ``N = V + H`` neurons (visible first) and spike counts ``y[r, t, n]`` in trial ``r`` and bin ``t``::

    h[r, t, m, b] = sum_{l=1..L} basis[b, l] * y[r, t - l, m]          (zero before the trial starts)
    rate[r, t, n] = link(bias[n] + sum_{m, b} W[n, m, b] * h[r, t, m, b])
    y[r, t, n] ~ Poisson(rate[r, t, n])

With ``K = n_latent > 0`` continuous latent factors ``x[r, t, k]`` (stationary AR(1) paths of unit
variance, :class:`~spikeglm.latent.AR1Prior`) the predictor gains ``sum_k loading[n, k] * x[r, t, k]``, a
slow drive shared by every neuron, visible and hidden. With ``F = n_covariates > 0`` columns of known
inputs ``c[r, t, f]`` (a stimulus, events, behaviour: :mod:`spikeglm.covariates`) it gains
``sum_f covariate_weight[n, f] * c[r, t, f]``.

The history is strictly causal, so the likelihood of every bin is computed at once (a convolution);
only simulation steps through time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spikeglm.basis import Basis, history
from spikeglm.latent import AR1Prior, broadcast_shapes
from spikeglm.options import Registry, whole
from spikeglm.relax import poisson_log_pmf

#: Links from the linear predictor to the expected count per bin.
LINKS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry(
    "link", {"softplus": F.softplus, "exp": torch.exp, "sigmoid": torch.sigmoid}
)

_INVERSE_LINKS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softplus": lambda r: r + torch.log(-torch.expm1(-r)),
    "exp": torch.log,
    "sigmoid": torch.logit,
}


def check_link(name: str) -> str:
    """The canonical name of a link (``"Softplus"`` gives ``"softplus"``); unknown: ValueError."""
    return LINKS.name(name)


def inverse_link(name: str, rate: torch.Tensor) -> torch.Tensor:
    """Pre-activation that gives ``rate`` through the link ``name`` (rates are clipped into its range)."""
    upper = 1 - 1e-4 if name == "sigmoid" else torch.inf
    return _INVERSE_LINKS[check_link(name)](rate.clamp(1e-4, upper))


def link_derivatives(link: str, predictor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rate and its first and second derivatives in the linear predictor ``predictor``, in closed form.

    Used wherever a curvature of the Poisson log-likelihood is needed: the standard errors of the couplings
    and the Laplace posterior of the latent factors.
    """
    if link == "exp":
        rate = torch.exp(predictor)
        return rate, rate, rate
    if link == "softplus":  # one exponential for the three; above 30, softplus is the predictor itself
        grow = torch.exp(predictor.clamp(max=30.0))
        slope = grow / (1 + grow)
        rate = torch.where(predictor > 30.0, predictor, torch.log1p(grow))
        return rate, slope, slope * (1 - slope)
    if link == "sigmoid":
        slope = torch.sigmoid(predictor)
        curve = slope * (1 - slope)
        return slope, curve, curve * (1 - 2 * slope)
    raise ValueError(f"unknown link {link!r}; expected 'softplus', 'exp' or 'sigmoid'")


def observed_curvature(
    counts: torch.Tensor, rate: torch.Tensor, slope: torch.Tensor, curve: torch.Tensor
) -> torch.Tensor:
    """``-d^2/d eta^2`` of ``counts log rate - rate`` (the Poisson log-likelihood of ``counts`` at the
    linear predictor ``eta``), from the rate and its derivatives (:func:`link_derivatives`; the rate
    floored above 0): the weight of a bin in the observed information."""
    ratio = counts / rate
    return ratio * slope * slope / rate - (ratio - 1) * curve


def mean_counts(counts: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Mean count per bin of each unit of counts (..., bins, units), as float64.

    Summed in blocks of bins, so compact integer counts are never copied whole into a wider dtype.
    """
    rows = counts.reshape(-1, counts.shape[-1])
    total = sum(part.sum(dim=0, dtype=torch.float64) for part in rows.split(block))
    return total / rows.shape[0]


#: The latent factors' time constant in bins at the start of a fit: four times the default history window
#: (5 bins), so that the factors carry a drive slower than the couplings can (100 ms in 5 ms bins).
DEFAULT_LATENT_TAU = 20.0


def start_tau(latent_tau: float | str) -> float:
    """The time constant a network's factors are built with for the setting ``latent_tau``: its number,
    or :data:`DEFAULT_LATENT_TAU` for ``"auto"`` (whose value the fit's start reads from the data)."""
    return DEFAULT_LATENT_TAU if isinstance(latent_tau, str) else latent_tau


def coupling_mask(n_neurons: int, basis: Basis) -> torch.Tensor | None:
    """Which coupling weights ``W[post, pre, basis]`` are free (1) and which the model keeps at zero (0):
    with an own-history basis, those of the couplings between distinct neurons on the functions that only
    each neuron's own history has. None where the basis has no such functions (every weight is free)."""
    if basis.n_coupling == basis.n_basis:
        return None
    mask = torch.ones(n_neurons, n_neurons, basis.n_basis)
    mask[:, :, basis.n_coupling :] = torch.eye(n_neurons)[:, :, None]
    return mask


def check_own_history(weight: torch.Tensor, basis: Basis, source: str) -> None:
    """Refuse coupling weights ``W[post, pre, basis]`` (from a file, a connectivity) that give couplings
    between distinct neurons weights on the functions of an own-history basis that only each neuron's own
    history has: the model keeps those at zero (:func:`coupling_mask`), so the weights were not written by
    a fit. ``source`` names where they come from in the message."""
    mask = coupling_mask(weight.shape[0], basis)
    if mask is not None and bool((torch.as_tensor(weight) * (1 - mask)).any()):
        raise ValueError(
            f"{source} gives couplings between distinct neurons weights on the own-history functions of its "
            f"basis ({basis.label}), which the model keeps at zero: they were not written by a fit"
        )


#: :meth:`Network.simulate` stops with an error past this many expected spikes per bin (a runaway).
MAX_SIMULATED_RATE = 1e4


class RunawayActivity(ValueError):
    """A simulation stopped because a rate passed :data:`MAX_SIMULATED_RATE`: where and how far.

    Attributes
    ----------
    bin, neuron : int
        The bin of the trial and the neuron where it happened.
    rate : float
        That neuron's expected count in that bin.
    """

    def __init__(self, bin: int, neuron: int, rate: float) -> None:
        self.bin, self.neuron, self.rate = bin, neuron, rate
        super().__init__(
            f"simulate: {self.where}: the excitatory couplings are too strong for a stable network; weaken "
            "them or simulate fewer bins"
        )

    @property
    def where(self) -> str:
        """``the activity runs away at bin ... (neuron ... expects ... spikes per bin)``."""
        expects = f"neuron {self.neuron} expects {self.rate:.3g} spikes per bin"
        return f"the activity runs away at bin {self.bin} ({expects})"


class Network(nn.Module):
    """Generative POGLM of ``n_visible + n_hidden`` neurons (visible first).

    Parameters
    ----------
    n_visible, n_hidden : int
        Numbers of recorded and hidden neurons.
    basis : Basis
        History basis over lags ``1..L`` shared by every coupling filter; an
        :class:`~spikeglm.basis.OwnHistory` gives each neuron's own history more functions than the
        couplings between neurons (:attr:`coupling_mask`).
    link : {"softplus", "exp", "sigmoid"}
        Link from the linear predictor to the expected count per bin. ``"sigmoid"`` keeps rates below 1
        per bin, as in the 2024 POGLM papers.
    n_latent : int
        Number ``K`` of continuous latent factors that drive every neuron through :attr:`loading`; 0 (the
        default) makes the network exactly the one without them (same parameters, same results).
    latent_tau : float or sequence of float
        The factors' time constants in bins at the start (one for all, or one per factor): the
        :class:`~spikeglm.latent.AR1Prior`'s, learned. By default :data:`DEFAULT_LATENT_TAU`, 20 bins.

    Attributes
    ----------
    weight : torch.nn.Parameter
        Coupling weights ``W[post, pre, basis]``, shape (N, N, n_basis), self-coupling on the diagonal.
    bias : torch.nn.Parameter
        Baseline of each neuron's linear predictor, shape (N,).
    basis_matrix : torch.Tensor
        The basis over the lags, shape (n_basis, L): a buffer, saved with the parameters.
    coupling_mask : torch.Tensor or None
        With an :class:`~spikeglm.basis.OwnHistory` basis: 1 where :attr:`weight` is free, 0 on the
        own-history functions of the couplings between distinct neurons, which stay zero
        (:meth:`couplings`); None otherwise.
    loading : torch.nn.Parameter or None
        With ``n_latent > 0``: the latent factors' loading on each neuron, shape (N, K), zero at the start.
    latent_prior : AR1Prior or None
        With ``n_latent > 0``: the factors' AR(1) prior, whose time constants are learned.
    covariate_weight : torch.nn.Parameter or None
        With ``n_covariates > 0``: each neuron's weights of the covariates' columns, shape (N, F), zero at
        the start.

    Notes
    -----
    :meth:`simulate` takes a path of the latent factors but does not draw one:
    :func:`spikeglm.synthetic.network` draws it (a shared drive).
    """

    basis_matrix: torch.Tensor
    coupling_mask: torch.Tensor | None
    loading: nn.Parameter | None
    latent_prior: AR1Prior | None
    covariate_weight: nn.Parameter | None

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        basis: Basis,
        link: str = "softplus",
        n_latent: int = 0,
        latent_tau: float | Sequence[float] = DEFAULT_LATENT_TAU,
        n_covariates: int = 0,
    ) -> None:
        super().__init__()
        if n_visible < 1:
            raise ValueError(f"n_visible must be at least 1; got {n_visible}")
        if n_hidden < 0:
            raise ValueError(f"n_hidden must be 0 or more; got {n_hidden}")
        self.n_visible, self.n_hidden = n_visible, n_hidden
        self.basis = basis
        self.link_name = check_link(link)
        n = n_visible + n_hidden
        self.weight = nn.Parameter(torch.zeros(n, n, basis.n_basis))
        self.bias = nn.Parameter(torch.zeros(n))
        self.register_buffer("basis_matrix", basis.matrix())
        # With an own-history basis, a coupling between distinct neurons has no weight on its own-history
        # functions: those entries stay zero (the model reads the weight through this mask, so that no
        # gradient reaches them either).
        self.register_buffer("coupling_mask", coupling_mask(n, basis), persistent=False)
        self.n_latent = whole(n_latent, "n_latent", minimum=0)
        # Without factors no parameter is registered, so that the state of such a network is as before.
        self.loading, self.latent_prior = None, None
        if self.n_latent:
            self.loading = nn.Parameter(torch.zeros(n, self.n_latent))
            self.latent_prior = AR1Prior(latent_tau, n_factors=self.n_latent)
        self.n_covariates = whole(n_covariates, "n_covariates", minimum=0)
        self.covariate_weight = None
        if self.n_covariates:
            self.covariate_weight = nn.Parameter(torch.zeros(n, self.n_covariates))

    @property
    def n_neurons(self) -> int:
        return self.n_visible + self.n_hidden

    def couplings(self) -> torch.Tensor:
        """The coupling weights as the model reads them: :attr:`weight`, with the entries that an own-history
        basis keeps at zero (the other neurons' weights on its own-history functions) set to zero."""
        return self.weight if self.coupling_mask is None else self.weight * self.coupling_mask

    @torch.no_grad()
    def restrict(self) -> None:
        """Set the entries of :attr:`weight` that the basis keeps at zero to zero (after writing weights)."""
        if self.coupling_mask is not None:
            self.weight.mul_(self.coupling_mask.to(self.weight.dtype))

    def glm_parameters(self) -> list[nn.Parameter]:
        """What a GLM solve fits: the couplings, the biases and the covariates' weights (not the factors)."""
        return [p for p in (self.weight, self.bias, self.covariate_weight) if p is not None]

    def link(self, predictor: torch.Tensor) -> torch.Tensor:
        return LINKS[self.link_name](predictor)

    def rates(
        self,
        counts: torch.Tensor,
        hidden: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        past: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Expected count of every neuron in every bin given the history, shape (..., bins, N).

        ``counts`` holds all N neurons, shape (..., bins, N); leading dimensions are trials (and samples).
        With ``hidden`` counts of shape (samples, ..., bins, H), ``counts`` holds the V visible neurons
        only, shared by every sample: their drive is computed once rather than once per sample, which
        saves most of the work when V is much larger than H. The result then has the samples first.

        ``latent``, shape (..., bins, K) (with the samples first where ``hidden`` has them, or
        broadcasting like the hidden samples), is a path of the latent factors: it adds ``latent @
        loading.T`` to the predictor. Without it (and always without factors) the rates are those of the
        couplings alone.

        ``covariates``, shape (..., bins, F) like the counts (no samples), are the covariates' columns: they
        add ``covariates @ covariate_weight.T``. A network with covariates needs them.

        ``past``, ``history(counts, basis_matrix)`` (..., bins, neurons of ``counts``, basis), is the
        counts' history where the caller has it already (it then need not be filtered again).
        """
        weight = self.couplings()
        if hidden is None:
            predictor = self.bias + self._drive(counts, weight, past)
            return self.link(self._add_latent(self.add_covariates(predictor, covariates), latent))
        predictor = self.add_covariates(
            self.bias + self._drive(counts, weight[:, : self.n_visible], past), covariates
        )
        if self.n_hidden == 0:
            rates = self.link(self._add_latent(predictor, latent))
            return rates.expand(*broadcast_shapes(rates.shape[:-1], hidden.shape[:-1]), self.n_neurons)
        predictor = predictor + self._drive(hidden, weight[:, self.n_visible :])
        return self.link(self._add_latent(predictor, latent))

    def covariate_drive(self, covariates: torch.Tensor | None) -> torch.Tensor | None:
        """``covariates @ covariate_weight.T``, shape (..., bins, N); None for a network without covariates.

        Raises
        ------
        ValueError
            If the network has covariates and none are given, or their columns do not match.
        """
        if self.covariate_weight is None:
            if covariates is not None and covariates.shape[-1]:
                raise ValueError("this network has no covariates; it was built with n_covariates=0")
            return None
        if covariates is None or covariates.shape[-1] != self.n_covariates:
            got = "none" if covariates is None else f"{covariates.shape[-1]} columns"
            raise ValueError(
                f"this network weighs {self.n_covariates} covariate columns; got {got}: pass the covariates "
                "it was fitted with"
            )
        return covariates.to(self.covariate_weight.dtype) @ self.covariate_weight.T

    def add_covariates(self, predictor: torch.Tensor, covariates: torch.Tensor | None) -> torch.Tensor:
        """``predictor`` plus the covariates' drive (:meth:`covariate_drive`), or as it is without them."""
        drive = self.covariate_drive(covariates)
        return predictor if drive is None else predictor + drive

    def _add_latent(self, predictor: torch.Tensor, latent: torch.Tensor | None) -> torch.Tensor:
        """``predictor + latent @ loading.T``, or ``predictor`` itself where no path is given."""
        if latent is None:
            return predictor
        if self.loading is None or not isinstance(latent, torch.Tensor) or latent.shape[-1] != self.n_latent:
            shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(
                f"latent must be a tensor of shape (..., bins, {self.n_latent}) for a network of "
                f"{self.n_latent} latent factors; got {shape}"
            )
        return predictor + latent @ self.loading.T.to(latent.dtype)

    def latent_record(self) -> dict | None:
        """The latent factors as plain JSON values, as a connectivity's metadata record them under
        ``"latent"``: ``n_latent``, the ``loading`` of each neuron (visible then hidden) on each factor, and
        the factors' time constants ``tau_bins``. None without factors."""
        if self.loading is None or self.latent_prior is None:
            return None
        return {
            "n_latent": self.n_latent,
            "loading": self.loading.detach().double().tolist(),
            "tau_bins": self.latent_prior.tau.detach().double().tolist(),
        }

    def _drive(
        self, counts: torch.Tensor, weight: torch.Tensor, past: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_{m, b} weight[n, m, b] * history(counts)[..., m, b]``, shape (..., bins, N); ``past`` is
        ``history(counts)`` where it is known."""
        lead, (n_bins, n_pre) = counts.shape[:-2], counts.shape[-2:]
        if past is None:
            past = history(counts.reshape(-1, n_bins, n_pre), self.basis_matrix.to(counts.dtype))
        return (past.flatten(-2) @ weight.flatten(1).T).reshape(*lead, n_bins, self.n_neurons)

    def log_likelihood(
        self,
        counts: torch.Tensor,
        hidden: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        past: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Complete-data log-likelihood of each neuron in each bin, shape (..., bins, N).

        The arguments are those of :meth:`rates`: all counts, or the visible counts and hidden samples,
        and optionally a path of the latent factors (whose own density, :attr:`latent_prior`'s, is not
        part of this), the covariates' columns and the counts' history.
        """
        rates = self.rates(counts, hidden, latent, covariates, past)
        if hidden is None:
            return poisson_log_pmf(counts, rates)
        # The visible counts are shared by every sample, and have no gradient: their terms are computed
        # apart from the hidden counts', broadcast over the samples (neither copied nor differentiated),
        # their log-factorials once.
        n_visible = self.n_visible
        visible = poisson_log_pmf(counts, rates[..., :n_visible], torch.lgamma(counts + 1))
        return torch.cat([visible, poisson_log_pmf(hidden, rates[..., n_visible:])], dim=-1)

    @torch.no_grad()
    def simulate(
        self,
        n_trials: int,
        n_bins: int,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        latent: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw spike counts of all N neurons, shape (n_trials, n_bins, N).

        Bins are drawn one after the other (each depends on the last L), all trials at once: a step is
        one matrix product of the trials' basis-filtered history with the weights, the history of the
        last L bins is kept in a ring buffer, and only the drawn counts are stored. Many short trials
        therefore simulate much faster than one long one.

        Parameters
        ----------
        n_trials, n_bins : int
            Trials (each starting with no history) and bins per trial.
        generator : torch.Generator, optional
            Source of the Poisson draws.
        dtype : torch.dtype, optional
            Of the result; default the network's float dtype. An integer dtype such as ``torch.int16``
            keeps a long simulation compact; a count it cannot hold is an error.
        latent : torch.Tensor, optional
            A path of the latent factors, shape (n_trials, n_bins, K): bin ``t`` of trial ``r`` adds
            ``loading @ latent[r, t]`` to the predictor, as in :meth:`rates`. Without it (and always
            without factors) the counts are those of the couplings alone, the same draws as before
            factors existed.
        covariates : torch.Tensor, optional
            The covariates' columns, shape (n_trials, n_bins, F), for a network with covariates.

        Raises
        ------
        RunawayActivity
            If a rate exceeds :data:`MAX_SIMULATED_RATE` (the activity runs away).
        ValueError
            If a count does not fit ``dtype``, or ``latent`` is given to a network without factors or has
            the wrong shape (the message names ``latent``).
        """
        shared = self._latent_drive(latent, n_trials, n_bins)
        known = self.covariate_drive(covariates)
        if known is not None and known.shape[:2] != (n_trials, n_bins):
            raise ValueError(
                f"covariates must cover (n_trials, n_bins) = {(n_trials, n_bins)}; "
                f"got {tuple(known.shape[:2])}"
            )
        dtype = self.bias.dtype if dtype is None else dtype
        limit = torch.iinfo(dtype).max if not dtype.is_floating_point else math.inf
        weight = self.couplings().flatten(1).T  # (pre x basis, post)
        basis = self.basis_matrix.to(self.bias.dtype)  # (n_basis, L): column l - 1 is lag l
        window = basis.shape[1]
        recent = torch.zeros(window, n_trials * self.n_neurons, dtype=self.bias.dtype)  # bin t in t % L
        counts = torch.empty(n_trials, n_bins, self.n_neurons, dtype=dtype)
        for t in range(n_bins):
            lags = [(t - lag) % window for lag in range(1, window + 1)]
            history = (basis @ recent[lags]).reshape(-1, n_trials, self.n_neurons)  # (n_basis, trials, N)
            predictor = torch.addmm(self.bias, history.permute(1, 2, 0).reshape(n_trials, -1), weight)
            if shared is not None:
                predictor = predictor + shared(t)
            if known is not None:
                predictor = predictor + known[:, t]
            rate = self.link(predictor)
            if not bool((rate <= MAX_SIMULATED_RATE).all()):  # also catches inf and nan
                neuron = int((~(rate <= MAX_SIMULATED_RATE)).any(0).nonzero()[0])
                raise RunawayActivity(t, neuron, float(rate[:, neuron].max()))
            drawn = torch.poisson(rate, generator=generator)
            if float(drawn.max()) > limit:
                raise ValueError(f"simulate: a count of {int(drawn.max())} does not fit {dtype}")
            recent[t % window] = drawn.flatten()
            counts[:, t] = drawn.to(dtype)
        return counts

    def _latent_drive(
        self, latent: torch.Tensor | None, n_trials: int, n_bins: int
    ) -> Callable[[int], torch.Tensor] | None:
        """For :meth:`simulate`: the factors' term of bin ``t`` of every trial, ``(n_trials, N)``, or None
        without a path; a path that does not fit the network or the simulation is refused."""
        if latent is None:
            return None
        if self.loading is None:
            raise ValueError(
                "latent: this network has no latent factors (n_latent=0); build it with n_latent=K to "
                "simulate a path of K factors"
            )
        expected = (n_trials, n_bins, self.n_latent)
        if not isinstance(latent, torch.Tensor) or not latent.is_floating_point() or latent.shape != expected:
            got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
            raise ValueError(
                f"latent must be a floating-point tensor of shape (n_trials, n_bins, n_latent) = {expected}; "
                f"got {got}"
            )
        path, loading = latent.to(self.bias.dtype), self.loading.T.to(self.bias.dtype)
        return lambda t: path[:, t] @ loading

    def init_from_counts(self, visible: torch.Tensor, scale: float, generator: torch.Generator) -> None:
        """Start a fit: biases at the observed mean rates, small random weights of std ``scale``.

        ``visible`` is (..., bins, V) counts of any dtype (compact integers are summed without a float copy).
        """
        with torch.no_grad():
            mean_rate = mean_counts(visible).to(self.bias.dtype)
            self.bias[: self.n_visible] = inverse_link(self.link_name, mean_rate)
            self.bias[self.n_visible :] = inverse_link(self.link_name, mean_rate.mean())
            self.weight.normal_(0.0, scale, generator=generator)
            self.restrict()
            if self.loading is not None:
                self.loading.normal_(0.0, scale, generator=generator)
