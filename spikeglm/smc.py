"""The held-out likelihood of a POGLM by sequential Monte Carlo: a particle filter over the hidden counts
and the latent factors.

Given the past of all neurons and the latent factors' state, the counts of a bin are independent Poisson
draws. The likelihood of the visible counts ``x`` therefore factorises over bins, ``p(x) = prod_t p(x_t |
x_<t)``, and a particle filter estimates each factor. Every particle carries a history of integer hidden
counts (its last L bins) and, with ``K`` latent factors, their current state ``f_t`` (K floats: the AR(1)
prior makes the factors Markov, so the current state is all that their future depends on). At bin ``t``
a particle draws ``f_t`` given ``f_{t-1}`` from a proposal, is weighted by the Poisson probability of the
observed ``x_t`` given its past and ``f_t``, then draws its hidden counts ``z_t`` from a proposal, and the
particles are resampled (systematically) when the effective sample size falls below a set share. The
product of the mean weights is an unbiased estimate of ``p(x)``; its log is a lower bound in expectation
that tightens as the particles grow, and far tighter than importance sampling of whole trials, whose
weights degenerate with the number of bins.

Proposals:

``"model"``
    The model's own conditional law of ``z_t`` and the prior's AR(1) step of ``f_t`` (a bootstrap filter).
    Needs nothing but the network.
``"posterior"``
    The fitted variational posterior's law of ``z_t`` and the forward transitions of its Gaussian posterior
    of the factors' path, ``q(f_t | f_{t-1}, x)`` (both see the visible counts that follow, which the
    model's conditional cannot), weighted by ``p(z_t | past) p(f_t | f_{t-1}) / (q(z_t) q(f_t | f_{t-1}))``.

With neither hidden neurons nor latent factors the likelihood is computed exactly, with no particle. Every
trial is filtered whole, so a long recording is scored as one sequence: no cut, no context.
:func:`log_likelihood` runs ``n_runs`` independent filters per trial and averages their estimates of
``p(x)``; the spread between them gives the Monte Carlo standard error.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from spikeglm.latent import LOG_2PI, AR1Prior, MarkovGaussian
from spikeglm.model import LINKS, Network
from spikeglm.options import Registry, whole
from spikeglm.relax import poisson_log_pmf, poisson_log_ratio, spike_log_rates
from spikeglm.segments import Batch, blocks
from spikeglm.variational import Posterior, shared_history

#: The proposals of the hidden counts, each with what it uses.
PROPOSALS: Registry[str] = Registry(
    "proposal",
    {
        "model": "the network's own conditional law of the hidden counts (bootstrap filter)",
        "posterior": "the fitted variational posterior, weighted by prior / proposal",
    },
)

#: Resample a filter's particles when their effective sample size falls below this share of them.
RESAMPLE_BELOW = 0.5


@dataclass(frozen=True)
class Estimate:
    """An estimate of the log-likelihood of visible counts, trial by trial.

    Attributes
    ----------
    per_trial : numpy.ndarray
        ``log p(x)`` of each trial, in nats.
    se_per_trial : numpy.ndarray
        Monte Carlo standard error of each (0 where the estimate is exact, NaN with one run).
    n_bins, n_visible : int
        Bins per trial and visible neurons, the denominators of :attr:`per_bin`.
    """

    per_trial: np.ndarray
    se_per_trial: np.ndarray
    n_bins: int
    n_visible: int

    @property
    def per_bin(self) -> float:
        """Log-likelihood per visible neuron-bin, summed over trials."""
        return float(self.per_trial.sum()) / self._size

    @property
    def se(self) -> float:
        """Monte Carlo standard error of :attr:`per_bin` (trials' errors are independent)."""
        return float(np.sqrt(np.sum(self.se_per_trial**2))) / self._size

    @property
    def _size(self) -> int:
        return len(self.per_trial) * self.n_bins * self.n_visible


@torch.no_grad()
def log_likelihood(
    network: Network,
    visible: torch.Tensor,
    posterior: Posterior | None = None,
    *,
    proposal: str = "model",
    n_particles: int = 256,
    n_runs: int = 4,
    seed: int = 0,
    block: int = 4096,
    covariates: torch.Tensor | None = None,
) -> Estimate:
    """Estimate ``log p(visible counts)`` under ``network`` with particle filters.

    Parameters
    ----------
    network : Network
        The generative model; with neither hidden neurons nor latent factors the likelihood is computed
        exactly.
    visible : torch.Tensor
        Visible counts, shape (trials, bins, V); each trial starts with no history.
    posterior : Posterior, optional
        Needed for ``proposal="posterior"``.
    proposal : {"model", "posterior"}
        Law the hidden counts and the latent factors are drawn from (:data:`PROPOSALS`).
    n_particles : int
        Particles per trial, shared out among the runs (at least one each).
    n_runs : int
        Independent filters per trial, for the standard error (1: none).
    seed : int
        Seed of the draws and the resampling.
    block : int
        Bins whose visible drive is computed at once (bounds the memory on long trials). The posterior's
        transitions of the latent factors are computed once for whole trials (bins x K x K numbers each).
    covariates : torch.Tensor, optional
        The covariates' columns on the same bins, (trials, bins, F), for a network with covariates.

    Returns
    -------
    Estimate
    """
    proposal = PROPOSALS.name(proposal)
    n_runs, n_particles = whole(n_runs, "n_runs"), whole(n_particles, "n_particles")
    if proposal == "posterior" and posterior is None:
        raise ValueError("proposal='posterior' needs the fitted posterior")
    dtype, device = network.bias.dtype, network.bias.device
    n_trials, n_bins, n_visible = visible.shape
    window = network.basis_matrix.shape[1]
    known = _covariate_blocks(covariates, block, window, 0, dtype, device)
    if network.n_hidden == 0 and network.n_latent == 0:
        exact = torch.zeros(n_trials, dtype=torch.float64, device=device)
        for piece, bins in blocks(visible, block, window, 0, dtype, device):
            log_p = network.log_likelihood(piece, covariates=next(known))
            exact += log_p[:, bins].sum(dim=(1, 2), dtype=torch.float64)
        exact_per_trial = exact.cpu().numpy()
        return Estimate(exact_per_trial, np.zeros_like(exact_per_trial), n_bins, n_visible)
    generator = torch.Generator(device).manual_seed(seed)
    proposer = posterior if proposal == "posterior" else None
    latent = _latent_proposal(network, proposer, visible, block)
    particles = _Particles(network, proposer, n_trials, n_runs, n_particles, generator, latent=latent)
    ahead = window if proposal == "posterior" else 0
    known = _covariate_blocks(covariates, block, window, ahead, dtype, device)
    for piece, bins in blocks(visible, block, window, ahead, dtype, device):
        particles.advance(piece, bins, covariates=next(known))
    log_z = particles.log_z.reshape(n_trials, n_runs)
    per_trial = torch.logsumexp(log_z, dim=1) - math.log(n_runs)
    ratios = torch.exp(log_z - per_trial[:, None])  # each run's estimate of p(x) over their mean
    se = ratios.std(dim=1) / math.sqrt(n_runs) if n_runs > 1 else torch.full_like(per_trial, math.nan)
    return Estimate(per_trial.cpu().numpy(), se.cpu().numpy(), n_bins, n_visible)


def _covariate_blocks(
    covariates: torch.Tensor | None, block: int, past: int, ahead: int, dtype, device
) -> Iterator[torch.Tensor | None]:
    """The covariates' columns cut into the blocks that :func:`~spikeglm.segments.blocks` cuts the counts
    into (with the same arguments); None for every block without covariates."""
    if covariates is None:
        return itertools.repeat(None)
    return (piece for piece, _ in blocks(covariates, block, past, ahead, dtype, device))


def filtering_bound(
    network: Network,
    posterior: Posterior,
    batch: Batch,
    n_particles: int,
    draw: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """A particle filter's estimate of ``log p(x)`` of each segment, differentiable: a training objective.

    One filter of ``n_particles`` per segment proposes the hidden counts of each bin from ``posterior``
    (drawn by ``draw(rate)``, a reparameterised sampler such as straight-through Eat-cubic, so the
    gradient flows through the draws) and resamples as :func:`log_likelihood` does. The result is a
    lower bound of ``log p(x)`` in expectation (of the scored bins given the segment's left context, for
    segments cut from a long recording) that tightens with the particles, unlike the ELBO, which stays
    below by the posterior's mismatch whatever the samples. The gradient leaves out the resampling's
    own term, which is what keeps its variance low.

    With latent factors each particle draws their state bin by bin from the forward transitions of
    ``posterior``'s Gaussian posterior of the segment's path, reparameterised (mean plus the Cholesky
    factor of the covariance times standard normal noise), and its weight gains ``log p(f_t | f_{t-1}) -
    log q(f_t | f_{t-1})``: the gradient reaches the encoder, the loading and the prior's time constants.

    Parameters
    ----------
    network : Network
    posterior : Posterior
    batch : Batch
        Visible counts of the segments with their masks (:mod:`spikeglm.segments`).
    n_particles : int
    draw : callable
        ``draw(rate)`` gives hidden counts at ``rate`` with the same shape.

    Returns
    -------
    torch.Tensor
        Shape (segments,), float64.
    """
    visible = batch.visible.to(network.bias.dtype)
    latent = _latent_proposal(network, posterior, visible, visible.shape[1])
    particles = _Particles(network, posterior, len(visible), 1, n_particles, None, draw, latent=latent)
    particles.advance(visible, slice(None), batch.present, batch.scored, batch.covariates)
    return particles.log_z


def smoothed_score(
    network: Network, posterior: Posterior, batch: Batch, n_particles: int, n_terms: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A surrogate whose gradient estimates that of ``log p(x)`` itself, by a fixed-lag particle smoother.

    By Fisher's identity the gradient of the log-likelihood is the posterior mean of the gradient of the
    complete-data log-probability, ``E[grad log p(x, z) | x]``. A particle filter proposing the hidden
    counts from ``posterior`` (exact integer draws, not differentiated) estimates that mean bin by bin:
    the terms of bin ``t``, ``log p(x_t, z_t | past)``, are averaged over the particles' weights ``2 L``
    bins later (L the history window: by then every visible bin that ``z_t`` drives, directly or through
    the next hidden counts, has weighed it), following each particle's ancestry through the
    resamplings. No posterior mismatch enters the network's gradient, so unlike a variational bound it
    does not favour models whose posterior is easy. The same weighted sum over ``log q(z_t)`` gives the
    posterior's gradient towards the smoothed particles (the wake step of reweighted wake-sleep), which
    makes it a better proposal.

    With latent factors the particles draw their state from the posterior's forward transitions of the
    factors (not differentiated either), and the terms of bin ``t`` gain ``log p(f_t | f_{t-1})`` (the
    network's gradient: the prior's time constants) and ``log q(f_t | f_{t-1})`` (the encoder's wake
    gradient; the time constants that ``q`` is built with are held fixed in it, so that the network's
    gradient stays the model's alone). The lag then grows by the slowest factor's time constant
    (:func:`smoothing_lag`).

    Parameters
    ----------
    network : Network
    posterior : Posterior
    batch : Batch
        Visible counts of the segments with their masks; only scored bins enter the surrogate.
    n_particles : int
        Particles of each segment's filter.
    n_terms : int, optional
        Particles per bin whose terms are computed: drawn from the bin's particles in proportion to
        their credit (systematically), each weighted by the credit's sum over their number, which
        estimates the credit-weighted sum over all of them without bias, for a fraction of the terms'
        work and of the memory their gradient holds. None: every particle's.

    Returns
    -------
    surrogate : torch.Tensor
        Shape (segments,): differentiate it, do not read it.
    log_z : torch.Tensor
        Shape (segments,), float64: the filter's estimate of ``log p(x)`` of the scored bins (no gradient).
    """
    visible = batch.visible.to(network.bias.dtype)
    latent = _latent_proposal(network, posterior, visible, visible.shape[1], frozen=True)
    smoother = _Smoother(smoothing_lag(network, visible.shape[1]), visible.shape[1])
    with torch.no_grad():
        particles = _Particles(network, posterior, len(visible), 1, n_particles, None, latent=latent)
        particles.smoother = smoother.start(particles.log_w)
        particles.advance(visible, slice(None), batch.present, batch.scored, batch.covariates)
        weights = smoother.finish(particles.log_w)
    if batch.scored is not None:
        weights = weights * batch.scored[:, :, None].to(weights.dtype)
    index = None
    if n_terms is not None and n_terms < weights.shape[-1]:
        index, weights = _drawn_by_credit(weights, n_terms)
    terms = _complete_terms(
        network, posterior, visible, batch.present, batch.covariates, latent, smoother, index
    )
    return (weights * terms).sum((1, 2)), particles.log_z


def _drawn_by_credit(weights: torch.Tensor, n_terms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_terms`` of every bin's particles drawn by systematic resampling in proportion to their credit
    ``weights`` (filters, bins, particles), and the weight of each draw, the credit's sum over
    ``n_terms``: (filters, bins, n_terms) both. A bin without credit draws its first particle, weighted
    0."""
    total = weights.sum(-1, keepdim=True)
    index = _systematic(weights / total.clamp_min(torch.finfo(weights.dtype).tiny), n_terms)
    return index, (total / n_terms).expand(index.shape)


def _systematic(
    probabilities: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` draws by systematic resampling from each row of ``probabilities`` (..., P), each row
    summing to 1: one uniform offset per row, the draws ``1 / n`` apart. Their indices, (..., n)."""
    cdf = probabilities.cumsum(-1)
    cdf[..., -1] = 1.0
    offset = torch.rand(*cdf.shape[:-1], 1, dtype=cdf.dtype, device=cdf.device, generator=generator)
    points = (offset + torch.arange(n, dtype=cdf.dtype, device=cdf.device)) / n
    return torch.searchsorted(cdf, points).clamp_(max=cdf.shape[-1] - 1)


def smoothing_lag(network: Network, n_bins: int) -> int:
    """The bins after which :func:`smoothed_score` weighs a bin's terms: ``2 L`` (L the history window),
    plus the slowest latent factor's time constant (rounded up), at most ``n_bins``.

    By ``2 L`` bins every visible count that a hidden spike drives, directly or through the next hidden
    counts, has weighed it; a factor's state is still informed by the counts about a time constant after
    it. Observed (3 neurons, 80 bins, L = 3, a factor of 40 bins): a lag of 6 bins biased the loading's
    gradient by 1 to 1.6 (8-66%) per neuron, lags of 20 to 80 bins did not beyond the Monte Carlo error.
    A lag of all the bins smooths the whole paths, so a longer one changes nothing.
    """
    lag = 2 * network.basis_matrix.shape[1]
    if network.latent_prior is None:
        return lag
    return min(lag + math.ceil(float(network.latent_prior.tau.detach().max())), n_bins)


def _latent_proposal(
    network: Network, posterior: Posterior | None, visible: torch.Tensor, block: int, frozen: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The forward transitions of ``posterior``'s Gaussian posterior of the latent factors' paths given
    ``visible`` (trials, bins, V): the particles' proposal of the factors.

    Returns the offsets, gains and scales of :class:`_Laws` for every bin of every trial, (trials, bins,
    K); None for a network without factors or without a posterior (the prior is the proposal). The
    encoder reads the counts ``block`` bins at a time, so compact counts are never converted whole.
    ``frozen`` builds ``q`` with a copy of the prior's time constants that has no gradient (the smoother's:
    ``log q`` is the posterior's wake term only).
    """
    if network.n_latent == 0 or posterior is None:
        return None
    encoder, prior = posterior.latent_parts(network)
    if frozen:
        prior = copy.deepcopy(prior).requires_grad_(False)
    q = MarkovGaussian(prior, *encoder.potentials(visible, block))
    # The encoder's potentials are diagonal, so the factors are independent under q as under the prior:
    # every transition is diagonal, and the Cholesky factor of a covariance is its square root.
    assert q.diagonal
    first, gain, covariance = (part.diagonal(dim1=-2, dim2=-1) for part in q.transitions())
    gain = torch.cat([torch.zeros_like(first)[:, None], gain], dim=1)
    variance = torch.cat([first[:, None], covariance], dim=1)
    before = F.pad(q.mean[:, :-1], (0, 0, 1, 0))  # the mean of the bin before, 0 before the first
    return q.mean - gain * before, gain, variance.sqrt()


class _Laws(NamedTuple):
    """Gaussian laws of independent latent factors in a run of bins, each given the state in the bin
    before (elementwise over the K factors)::

        f_t | f_{t-1} ~ N(offset_t + gain_t f_{t-1}, diag(scale_t^2))

    Every field has the filters (or 1, shared by all) first and the bins second. The state before a
    trial's first bin is zero, so that bin's gain does not matter.

    Attributes
    ----------
    offset, gain, scale, inverse : torch.Tensor
        (..., bins, K); ``inverse`` is ``1 / scale``.
    log_det : torch.Tensor
        (..., bins), ``sum log scale``: the log-determinant of the covariance's Cholesky factor.
    """

    offset: torch.Tensor
    gain: torch.Tensor
    scale: torch.Tensor
    inverse: torch.Tensor
    log_det: torch.Tensor

    @classmethod
    def of(cls, offset: torch.Tensor, gain: torch.Tensor, scale: torch.Tensor) -> _Laws:
        """The laws of the given offsets, gains and scales."""
        return cls(offset, gain, scale, 1 / scale, scale.log().sum(-1))

    @classmethod
    def prior(cls, prior: AR1Prior, start: int, stop: int, like: torch.Tensor) -> _Laws:
        """The AR(1) prior's laws of bins ``start`` to ``stop - 1`` of a trial, ``f_t = a f_{t-1} + sqrt(1 -
        a^2) eps``, stationary (``N(0, 1)``) at its first bin; in the dtype and on the device of ``like``."""
        coefficient, _, variance = prior._terms(like)
        scale = variance.sqrt().expand(stop - start, -1)
        if start == 0:
            scale = torch.cat([torch.ones_like(scale[:1]), scale[1:]])
        return cls.of(torch.zeros_like(scale)[None], coefficient.expand(1, stop - start, -1), scale[None])

    def mean(self, t: int | slice, previous: torch.Tensor) -> torch.Tensor:
        """The mean at the run's bin ``t`` given the states ``previous`` (filters, particles, K); with
        ``t = slice(None)``, at every bin given ``previous`` of every bin (filters, bins, particles, K)."""
        return self.offset[:, t, None] + self.gain[:, t, None] * previous

    def log_density(self, t: int | slice, value: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """The log-density of states ``value`` at bin ``t`` of means ``mean`` (:meth:`mean`), float64."""
        white = (value - mean) * self.inverse[:, t, None]
        size = value.shape[-1]
        return (
            -0.5 * (white.square().sum(-1, dtype=torch.float64) + size * LOG_2PI) - self.log_det[:, t, None]
        )


class _Factors:
    """The latent factors' current state in every particle, drawn bin after bin.

    Parameters
    ----------
    network : Network
        With latent factors: their prior is the target and, without ``proposal``, the proposal too.
    proposal : tuple of torch.Tensor or None
        The posterior's offsets, gains and scales of every bin of the trials (:func:`_latent_proposal`).
    n_runs : int
        Filters per trial.
    shape : tuple of int
        (filters, particles).
    generator : torch.Generator or None
        Source of the noise.
    """

    def __init__(
        self,
        network: Network,
        proposal: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        n_runs: int,
        shape: tuple[int, int],
        generator: torch.Generator | None,
    ) -> None:
        assert network.latent_prior is not None and network.loading is not None
        self.prior, self.loading = network.latent_prior, network.loading
        self.proposal, self.n_runs, self.generator = proposal, n_runs, generator
        self.state = network.bias.new_zeros(*shape, network.n_latent)
        self.position = 0  # bins of the trial whose laws have been made
        self.target = self.law = _Laws.prior(self.prior, 0, 1, self.state)

    def prepare(self, n_bins: int) -> None:
        """Make the laws of the trial's next ``n_bins`` bins."""
        start, stop = self.position, self.position + n_bins
        self.target, self.law = _factor_laws(self.prior, self.proposal, start, stop, self.n_runs, self.state)
        self.position = stop

    def draw(self, t: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw every particle's state at the prepared bins' ``t``-th.

        Returns its drive of every neuron, ``loading @ f_t`` (filters, particles, N), and the log-weight it
        adds, ``log p(f_t | f_{t-1}) - log q(f_t | f_{t-1})`` (float64, filters x particles); None for the
        prior's proposal, whose weight is 1.
        """
        previous, law = self.state, self.law
        noise = torch.randn(
            previous.shape, generator=self.generator, dtype=previous.dtype, device=previous.device
        )
        mean = law.mean(t, previous)
        self.state = mean + law.scale[:, t, None] * noise
        drive = self.state @ self.loading.T
        if self.proposal is None:
            return drive, None
        log_q = law.log_density(t, self.state, mean)
        return drive, self.target.log_density(t, self.state, self.target.mean(t, previous)) - log_q


def _factor_laws(
    prior: AR1Prior,
    proposal: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    start: int,
    stop: int,
    n_runs: int,
    like: torch.Tensor,
) -> tuple[_Laws, _Laws]:
    """The factors' target (the prior's AR(1) laws) and proposal (``proposal``'s, else the prior's again)
    in bins ``start`` to ``stop - 1`` of a trial, each trial's repeated for its ``n_runs`` filters."""
    target = _Laws.prior(prior, start, stop, like)
    if proposal is None:
        return target, target
    return target, _Laws.of(*(part[:, start:stop].repeat_interleave(n_runs, 0) for part in proposal))


class _Particles:
    """The particles of ``n_runs`` independent filters for every trial, advanced block by block.

    Filter ``trial * n_runs + run`` holds ``n_particles // n_runs`` particles, each the hidden counts
    of its last L bins (lag 1 first) and, with latent factors, their current state (:class:`_Factors`),
    with normalised log-weights; ``log_z`` sums each filter's log mean weight over the bins filtered so far.

    The update is written without in-place changes, so that gradients flow through it when the hidden
    counts are drawn by a reparameterised ``draw(rate)`` and the factors reparameterised
    (:func:`filtering_bound`); the resampling itself is not differentiated. ``draw=None`` draws exact
    Poisson counts from ``generator``. ``latent`` is the posterior's proposal of the factors
    (:func:`_latent_proposal`), None for the prior's. A ``smoother`` (:class:`_Smoother`, set after
    construction) keeps every bin's draws and credits the weights to them.
    """

    def __init__(self, network, posterior, n_trials, n_runs, n_particles, generator, draw=None, latent=None):
        self.network, self.posterior, self.n_runs = network, posterior, n_runs
        self.n_visible = network.n_visible
        device, dtype = network.bias.device, network.bias.dtype
        self.history = _history_matrix(network, posterior, dtype)
        filters, particles = n_trials * n_runs, max(1, n_particles // n_runs)
        shape = (filters, particles, network.basis_matrix.shape[1], network.n_hidden)
        self.recent = torch.zeros(shape, dtype=dtype, device=device)
        self.log_w = torch.full(
            (filters, particles), -math.log(particles), dtype=torch.float64, device=device
        )
        self.log_z = torch.zeros(filters, dtype=torch.float64, device=device)
        self.generator = generator
        self.draw = draw or (lambda rate: torch.poisson(rate, generator=generator))
        self.link = LINKS[network.link_name]
        self.smoother: _Smoother | None = None
        self.factors = None
        if network.n_latent:
            self.factors = _Factors(network, latent, n_runs, (filters, particles), generator)

    def advance(
        self,
        piece: torch.Tensor,
        bins: slice,
        present: torch.Tensor | None = None,
        scored: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
    ) -> None:
        """Filter the bins ``bins`` of ``piece`` (trials, bins, V), which holds the context they need.

        ``present`` (trials, bins) marks the bins inside the recording (no hidden spikes elsewhere, and
        with latent factors no observation either) and ``scored`` those whose likelihood ``log_z``
        counts; the others still weigh the particles. ``covariates`` are the covariates' columns on the
        bins of ``piece``.
        """
        drive, x, q_drive = _inputs(self.network, self.posterior, piece, bins, covariates, self.n_runs)
        observed = _Observed(x)
        if self.factors is not None:
            self.factors.prepare(x.shape[1])
        for t in range(x.shape[1]):
            self._step(t, drive, observed, q_drive, present, scored)

    def _step(self, t, drive, observed, q_drive, present, scored) -> None:
        """Filter bin ``t`` of a block: its factors, the weight of its visible counts (``observed``, an
        :class:`_Observed`), its hidden counts."""
        n_visible, n_neurons, recent = self.n_visible, self.network.n_neurons, self.recent
        predictor, own = drive[:, t, None], None
        if self.network.n_hidden:
            past = recent.flatten(2) @ self.history
            predictor, own = predictor + past[..., :n_neurons], past[..., n_neurons:]
        factor_weight, previous = None, None
        if self.factors is not None:
            previous = self.factors.state
            latent_drive, factor_weight = self.factors.draw(t)
            predictor = predictor + latent_drive
        rate = self.link(predictor)
        increment = observed.log_pmf(t, rate[..., :n_visible])
        if self.factors is not None and present is not None:
            increment = increment * present[:, t, None]  # padding's zero counts do not observe the factors
        hidden = None
        if self.network.n_hidden:
            increment, hidden = self._hidden(t, rate[..., n_visible:], q_drive, own, present, increment)
        if factor_weight is not None:
            increment = increment + factor_weight
        self._reweight(increment, None if scored is None else scored[:, t])
        weights = self.log_w.detach().exp()
        if self.smoother is not None:
            state = None if self.factors is None else self.factors.state
            self.smoother.keep(t, weights, _Draws(recent, hidden, previous, state))
        self._resample(weights)

    def _hidden(self, t, prior, q_drive, own, present, increment) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the hidden counts of bin ``t`` (model's conditional rate ``prior``) from the proposal (the
        posterior's rate: its visible predictor ``q_drive`` plus ``own``, its hidden history's share), push
        them on each particle's history, and return ``increment`` with their weight added and the draws."""
        if self.posterior is None:
            hidden = self.draw(prior)
        else:
            q_rate = self.link(q_drive[:, t, None] + own)
            hidden = self.draw(q_rate)
            increment = increment + poisson_log_ratio(hidden, prior, q_rate).sum(-1, dtype=torch.float64)
        pushed = hidden if present is None else hidden * present[:, t, None, None]
        self.recent = torch.cat([pushed[:, :, None], self.recent[:, :, :-1]], dim=2)
        return increment, hidden

    def _reweight(self, increment: torch.Tensor, scored: torch.Tensor | None) -> None:
        total = self.log_w + increment
        step = torch.logsumexp(total, dim=1)
        self.log_z = self.log_z + (step if scored is None else step * scored)
        self.log_w = total - step[:, None]

    def _resample(self, weights: torch.Tensor) -> None:
        """Systematic resampling of the filters whose effective sample size (``1 / sum w^2`` of their
        normalised ``weights``) is below the threshold."""
        particles = weights.shape[1]
        low = weights.square().sum(dim=1) > 1.0 / (RESAMPLE_BELOW * particles)
        if not bool(low.any()):
            return
        drawn = _systematic(weights, particles, self.generator)
        index = torch.where(low[:, None], drawn, torch.arange(particles, device=weights.device))
        gather = index[:, :, None, None].expand_as(self.recent)
        self.recent = torch.gather(self.recent, 1, gather)
        if self.smoother is not None:
            self.smoother.follow(index)
        if self.factors is not None:
            state = self.factors.state
            self.factors.state = torch.gather(state, 1, index[:, :, None].expand_as(state))
        self.log_w = torch.where(low[:, None], -math.log(particles), torch.gather(self.log_w, 1, index))


class _Observed:
    """The visible counts of a block of bins (filters, bins, V), kept to weigh the particles bin by bin.

    A bin's weight is the Poisson log-pmf of its counts summed over the visible neurons,
    ``sum_v x_v log r_v - r_v - log x_v!``, for every particle's rates ``r``. Most counts are 0, so the
    log is taken of the rates of the counts above 0 alone, found once for the whole block; the factorials
    are summed once per filter and bin.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.log_factorial = torch.lgamma(x + 1).sum(-1, dtype=torch.float64)  # (filters, bins)
        filters, bins, neurons = torch.nonzero(x, as_tuple=True)
        order = torch.argsort(bins, stable=True)
        self.filters, self.neurons = filters[order], neurons[order]
        self.counts = x[filters, bins, neurons][order]
        ends = torch.bincount(bins, minlength=x.shape[1]).cumsum(0).tolist()
        self.spans = list(zip([0, *ends[:-1]], ends, strict=True))

    def log_pmf(self, t: int, rate: torch.Tensor) -> torch.Tensor:
        """The log-pmf of bin ``t``'s counts at ``rate`` (filters, particles, V), summed over the neurons:
        (filters, particles), float64 (:func:`~spikeglm.relax.spike_log_rates`)."""
        start, stop = self.spans[t]
        filters, neurons = self.filters[start:stop], self.neurons[start:stop]
        spiking = spike_log_rates(rate[filters, :, neurons], self.counts[start:stop, None])
        log_rates = rate.new_zeros(rate.shape[:2], dtype=torch.float64)
        log_rates = log_rates.index_add(0, filters, spiking.double())
        return log_rates - rate.sum(-1, dtype=torch.float64) - self.log_factorial[:, t, None]


def _history_matrix(network: Network, posterior: Posterior | None, dtype: torch.dtype) -> torch.Tensor:
    """What each neuron's predictor, and then the posterior's of each hidden neuron (with a posterior),
    gains from the hidden counts of the last L bins, as one matrix: (L H, N [+ H]), row ``l H + h`` for
    lag ``l + 1`` of hidden neuron ``h``."""
    basis = network.basis_matrix.to(dtype)
    history = [torch.einsum("nhb,bl->lhn", network.couplings()[:, network.n_visible :], basis).flatten(0, 1)]
    if posterior is not None:
        history.append(torch.einsum("hkb,bl->lkh", posterior.self_past, basis).flatten(0, 1))
    return torch.cat(history, dim=1)


def _inputs(
    network: Network,
    posterior: Posterior | None,
    piece: torch.Tensor,
    bins: slice,
    covariates: torch.Tensor | None,
    n_runs: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What the filters of a block read: every neuron's drive from the visible counts and covariates, the
    visible counts, and the posterior's visible predictor of the hidden counts (None without a posterior
    or hidden neurons), each (filters, bins, ...) over ``bins`` of ``piece``, repeated for the runs."""
    n_visible = network.n_visible
    past = None if posterior is None else shared_history(network, posterior, piece)
    drive = network.add_covariates(
        network.bias + network._drive(piece, network.couplings()[:, :n_visible], past), covariates
    )
    drive, x = drive[:, bins].repeat_interleave(n_runs, 0), piece[:, bins].repeat_interleave(n_runs, 0)
    q_drive = None
    if posterior is not None and network.n_hidden:
        q_drive = posterior._visible_predictor(piece, past)[:, bins].repeat_interleave(n_runs, 0)
    return drive, x, q_drive


class _Draws(NamedTuple):
    """The particles' draws at one bin, as the filter left them before resampling: the hidden counts of
    their last L bins before it (filters, particles, L, H), their hidden counts in it (filters, particles,
    H), and the factors' state before and in it (filters, particles, K); None where there are none."""

    recent: torch.Tensor
    hidden: torch.Tensor | None
    previous: torch.Tensor | None
    state: torch.Tensor | None


class _Smoother:
    """A fixed-lag smoother's record of a filtering pass: every bin's draws, and the weight that each
    particle's draws at each bin receive, that of its descendants ``lag`` bins later (or at the end).

    Each current particle carries the numbers of its ancestors in the last ``lag`` bins (bin ``t``'s
    particle ``i`` is number ``t P + i``), which follow it through the resamplings; ``lag`` bins after
    a bin, each particle's weight is credited to its ancestor there, and at the end of the pass to all
    its ancestors still waiting. The pass runs without gradient; :func:`_complete_terms` then scores
    every bin's draws at once.
    """

    def __init__(self, lag: int, n_bins: int) -> None:
        self.lag, self.n_bins = lag, n_bins
        self.draws: list[_Draws] = []

    def start(self, log_w: torch.Tensor) -> _Smoother:
        """Size the record for filters and particles of the shape of ``log_w``; returns itself."""
        filters, self.particles = log_w.shape
        self.numbers = torch.arange(self.particles, device=log_w.device)
        self.nowhere = self.n_bins * self.particles  # the number of an ancestor not yet drawn
        self.ancestors = torch.full((filters, self.particles, self.lag), self.nowhere, device=log_w.device)
        self.credit = torch.zeros(filters, self.nowhere + 1, dtype=torch.float64, device=log_w.device)
        return self

    def keep(self, t: int, weights: torch.Tensor, draws: _Draws) -> None:
        """Credit the normalised ``weights`` now to the ancestors ``lag`` bins back, and keep bin ``t``'s
        draws. The ancestors' numbers are a ring: bin ``t``'s go where those of bin ``t - lag`` were."""
        slot = t % self.lag
        self.credit.scatter_add_(1, self.ancestors[..., slot], weights)
        self.ancestors[..., slot] = t * self.particles + self.numbers
        self.draws.append(draws)

    def follow(self, index: torch.Tensor) -> None:
        """Carry the ancestors' numbers through a resampling (``index``: filters, particles)."""
        self.ancestors = torch.gather(self.ancestors, 1, index[:, :, None].expand_as(self.ancestors))

    def finish(self, log_w: torch.Tensor) -> torch.Tensor:
        """Credit the final weights to every ancestor still waiting; the credit of every particle at every
        bin, (filters, bins, particles), float64."""
        waiting = log_w.exp()[..., None].expand_as(self.ancestors)
        self.credit.scatter_add_(1, self.ancestors.flatten(1), waiting.flatten(1))
        return self.credit[:, :-1].reshape(len(log_w), self.n_bins, self.particles)

    def stacked(self, field: str, index: torch.Tensor | None = None) -> torch.Tensor:
        """One field of every bin's draws, stacked along the bins: (filters, bins, particles, ...); with
        ``index`` (filters, bins, n), the particles it names at each bin: (filters, bins, n, ...)."""
        every = torch.stack([getattr(draws, field) for draws in self.draws], dim=1)
        if index is None:
            return every
        rest = every.shape[3:]
        return torch.gather(
            every, 2, index.reshape(*index.shape, *[1] * len(rest)).expand(*index.shape, *rest)
        )


def _complete_terms(
    network: Network,
    posterior: Posterior,
    visible: torch.Tensor,
    present: torch.Tensor | None,
    covariates: torch.Tensor | None,
    latent: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    smoother: _Smoother,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every particle's terms at every bin of a smoothed pass, computed at once and differentiable:
    ``log p(x_t, z_t, f_t | past) + log q(z_t, f_t | ...)`` of its draws (filters, bins, particles),
    float64; with ``index`` (filters, bins, n), those of the particles it names. Fisher's identity weighs
    the first by the smoother's credit (the network's gradient); the second is the posterior's wake
    term."""
    n_visible, n_neurons, link = network.n_visible, network.n_neurons, LINKS[network.link_name]
    drive, x, q_drive = _inputs(network, posterior, visible, slice(None), covariates, 1)
    predictor, own = drive[:, :, None], None  # (filters, bins, 1, N)
    if network.n_hidden:
        past = smoother.stacked("recent", index).flatten(-2) @ _history_matrix(
            network, posterior, drive.dtype
        )
        predictor, own = predictor + past[..., :n_neurons], past[..., n_neurons:]
    prior, loading = network.latent_prior, network.loading
    if prior is not None and loading is not None:
        state = smoother.stacked("state", index)  # (filters, bins, particles, K)
        predictor = predictor + state @ loading.T
    rate = link(predictor)
    terms = poisson_log_pmf(x[:, :, None], rate[..., :n_visible]).sum(-1, dtype=torch.float64)
    if prior is not None and present is not None:
        terms = terms * present[:, :, None]
    if q_drive is not None and own is not None:
        hidden = smoother.stacked("hidden", index)
        terms = terms + poisson_log_pmf(hidden, rate[..., n_visible:]).sum(-1, dtype=torch.float64)
        q_rate = link(q_drive[:, :, None] + own)
        terms = terms + poisson_log_pmf(hidden, q_rate).sum(-1, dtype=torch.float64)
    if prior is not None:
        previous, every = smoother.stacked("previous", index), slice(None)
        target, law = _factor_laws(prior, latent, 0, visible.shape[1], 1, state)
        terms = terms + target.log_density(every, state, target.mean(every, previous))
        terms = terms + law.log_density(every, state, law.mean(every, previous))
    return terms
