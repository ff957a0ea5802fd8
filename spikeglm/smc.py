"""The held-out likelihood of a POGLM by sequential Monte Carlo: a particle filter over the hidden counts.

Given the past of all neurons, the counts of a bin are independent Poisson draws. The likelihood of the
visible counts ``x`` therefore factorises over bins, ``p(x) = prod_t p(x_t | x_<t)``, and a particle
filter estimates each factor: every particle carries a history of integer hidden counts; at bin ``t``
it is weighted by the Poisson probability of the observed ``x_t`` given its past, then draws its hidden
counts ``z_t`` from a proposal, and the particles are resampled (systematically) when the effective
sample size falls below a set share. The product of the mean weights is an unbiased estimate of
``p(x)``; its log is a lower bound in expectation that tightens as the particles grow, and far tighter
than importance sampling of whole trials, whose weights degenerate with the number of bins.

Proposals:

``"model"``
    The model's own conditional law of ``z_t`` (a bootstrap filter). Needs nothing but the network.
``"posterior"``
    The fitted variational posterior's law of ``z_t`` (it sees the visible counts that follow, which the
    model's conditional cannot), weighted by ``p(z_t | past) / q(z_t)``.

Every trial is filtered whole, so a long recording is scored as one sequence: no cut, no context.
:func:`log_likelihood` runs ``n_runs`` independent filters per trial and averages their estimates of
``p(x)``; the spread between them gives the Monte Carlo standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from spikeglm.model import LINKS, Network
from spikeglm.options import Registry, whole
from spikeglm.relax import poisson_log_pmf
from spikeglm.segments import Batch
from spikeglm.variational import Posterior

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
) -> Estimate:
    """Estimate ``log p(visible counts)`` under ``network`` with particle filters.

    Parameters
    ----------
    network : Network
        The generative model; with no hidden neuron the likelihood is computed exactly.
    visible : torch.Tensor
        Visible counts, shape (trials, bins, V); each trial starts with no history.
    posterior : Posterior, optional
        Needed for ``proposal="posterior"``.
    proposal : {"model", "posterior"}
        Law the hidden counts are drawn from (:data:`PROPOSALS`).
    n_particles : int
        Particles per trial, shared out among the runs (at least one each).
    n_runs : int
        Independent filters per trial, for the standard error (1: none).
    seed : int
        Seed of the draws and the resampling.
    block : int
        Bins whose visible drive is computed at once (bounds the memory on long trials).

    Returns
    -------
    Estimate
    """
    if network.n_latent:
        raise ValueError("the particle filter does not draw latent factors yet: the network has some")
    proposal = PROPOSALS.name(proposal)
    n_runs, n_particles = whole(n_runs, "n_runs"), whole(n_particles, "n_particles")
    if proposal == "posterior" and posterior is None:
        raise ValueError("proposal='posterior' needs the fitted posterior")
    dtype, device = network.bias.dtype, network.bias.device
    n_trials, n_bins, n_visible = visible.shape
    window = network.basis_matrix.shape[1]
    if network.n_hidden == 0:
        exact = torch.zeros(n_trials, dtype=torch.float64, device=device)
        for piece, bins in _blocks(visible, block, window, 0, dtype, device):
            exact += network.log_likelihood(piece)[:, bins].sum(dim=(1, 2), dtype=torch.float64)
        exact_per_trial = exact.cpu().numpy()
        return Estimate(exact_per_trial, np.zeros_like(exact_per_trial), n_bins, n_visible)
    generator = torch.Generator(device).manual_seed(seed)
    proposer = posterior if proposal == "posterior" else None
    particles = _Particles(network, proposer, n_trials, n_runs, n_particles, generator)
    ahead = window if proposal == "posterior" else 0
    for piece, bins in _blocks(visible, block, window, ahead, dtype, device):
        particles.advance(piece, bins)
    log_z = particles.log_z.reshape(n_trials, n_runs)
    per_trial = torch.logsumexp(log_z, dim=1) - math.log(n_runs)
    ratios = torch.exp(log_z - per_trial[:, None])  # each run's estimate of p(x) over their mean
    se = ratios.std(dim=1) / math.sqrt(n_runs) if n_runs > 1 else torch.full_like(per_trial, math.nan)
    return Estimate(per_trial.cpu().numpy(), se.cpu().numpy(), n_bins, n_visible)


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
    particles = _Particles(network, posterior, len(batch.visible), 1, n_particles, None, draw)
    visible = batch.visible.to(network.bias.dtype)
    particles.advance(visible, slice(None), batch.present, batch.scored)
    return particles.log_z


def smoothed_score(
    network: Network, posterior: Posterior, batch: Batch, n_particles: int
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

    Parameters
    ----------
    network : Network
    posterior : Posterior
    batch : Batch
        Visible counts of the segments with their masks; only scored bins enter the surrogate.
    n_particles : int

    Returns
    -------
    surrogate : torch.Tensor
        Shape (segments,): differentiate it, do not read it.
    log_z : torch.Tensor
        Shape (segments,), float64: the filter's estimate of ``log p(x)`` of the scored bins (no gradient).
    """
    window = network.basis_matrix.shape[1]
    particles = _Particles(network, posterior, len(batch.visible), 1, n_particles, None, lag=2 * window)
    particles.advance(batch.visible.to(network.bias.dtype), slice(None), batch.present, batch.scored)
    return particles.smoothed, particles.log_z


def _blocks(
    visible: torch.Tensor, block: int, past: int, ahead: int, dtype: torch.dtype, device: torch.device
) -> Iterator[tuple[torch.Tensor, slice]]:
    """Blocks of bins of ``visible``, each with ``past`` bins before it and ``ahead`` after (where there are).

    Yields the counts of the block with its context, as ``dtype`` on ``device`` (compact integer counts
    are converted a block at a time), and the slice of the block's own bins in them.
    """
    n_bins = visible.shape[1]
    for start in range(0, n_bins, block):
        stop = min(start + block, n_bins)
        low, high = max(0, start - past), min(n_bins, stop + ahead)
        yield visible[:, low:high].to(dtype=dtype, device=device), slice(start - low, stop - low)


class _Particles:
    """The particles of ``n_runs`` independent filters for every trial, advanced block by block.

    Filter ``trial * n_runs + run`` holds ``n_particles // n_runs`` particles, each the hidden counts
    of its last L bins (lag 1 first), with normalised log-weights; ``log_z`` sums each filter's log mean
    weight over the bins filtered so far.

    The update is written without in-place changes, so that gradients flow through it when the hidden
    counts are drawn by a reparameterised ``draw(rate)`` (:func:`filtering_bound`); the resampling itself
    is not differentiated. ``draw=None`` draws exact Poisson counts from ``generator``.
    """

    def __init__(self, network, posterior, n_trials, n_runs, n_particles, generator, draw=None, lag=0):
        self.network, self.posterior, self.n_runs = network, posterior, n_runs
        self.n_visible = network.n_visible
        device, dtype = network.bias.device, network.bias.dtype
        basis = network.basis_matrix.to(dtype)
        self.filters = torch.einsum("nhb,bl->nhl", network.weight[:, self.n_visible :], basis)
        if posterior is not None:
            self.q_filters = torch.einsum("hkb,bl->hkl", posterior.self_past, basis)
        filters, particles = n_trials * n_runs, max(1, n_particles // n_runs)
        shape = (filters, particles, basis.shape[1], network.n_hidden)
        self.recent = torch.zeros(shape, dtype=dtype, device=device)
        self.log_w = torch.full(
            (filters, particles), -math.log(particles), dtype=torch.float64, device=device
        )
        self.log_z = torch.zeros(filters, dtype=torch.float64, device=device)
        self.generator = generator
        self.draw = draw or (lambda rate: torch.poisson(rate, generator=generator))
        self.link = LINKS[network.link_name]
        # The smoother's record (lag > 0, with a posterior as the proposal): each particle's last ``lag``
        # complete-data log-probabilities, newest first, and the weighted sum of those already ``lag``
        # bins old (Fisher's identity).
        self.terms = torch.zeros((filters, particles, lag), dtype=torch.float64, device=device)
        self.settled = torch.zeros(filters, dtype=torch.float64, device=device)

    def advance(
        self,
        piece: torch.Tensor,
        bins: slice,
        present: torch.Tensor | None = None,
        scored: torch.Tensor | None = None,
    ) -> None:
        """Filter the bins ``bins`` of ``piece`` (trials, bins, V), which holds the context they need.

        ``present`` (trials, bins) marks the bins inside the recording (no hidden spikes elsewhere) and
        ``scored`` those whose likelihood ``log_z`` counts; the others still weigh the particles.
        """
        network, runs, n_visible = self.network, self.n_runs, self.n_visible
        drive = network.bias + network._drive(piece, network.weight[:, :n_visible])
        drive, x = drive[:, bins].repeat_interleave(runs, 0), piece[:, bins].repeat_interleave(runs, 0)
        if self.posterior is not None:
            q_drive = self.posterior._visible_predictor(piece)[:, bins].repeat_interleave(runs, 0)
        for t in range(x.shape[1]):
            predictor = drive[:, t, None] + torch.einsum("fplh,nhl->fpn", self.recent, self.filters)
            rate = self.link(predictor)
            increment = poisson_log_pmf(x[:, t, None], rate[..., :n_visible]).sum(-1, dtype=torch.float64)
            prior = rate[..., n_visible:]
            term = increment
            if self.posterior is None:
                hidden = self.draw(prior)
            else:
                own = torch.einsum("fplk,hkl->fph", self.recent, self.q_filters)
                q_rate = self.link(q_drive[:, t, None] + own)
                hidden = self.draw(q_rate)
                log_p = poisson_log_pmf(hidden, prior).sum(-1, dtype=torch.float64)
                log_q = poisson_log_pmf(hidden, q_rate).sum(-1, dtype=torch.float64)
                increment, term = increment + log_p - log_q, term + log_p + log_q
            if present is not None:
                hidden = hidden * present[:, t, None, None]
            self._reweight(increment, None if scored is None else scored[:, t])
            if self.terms.shape[2]:
                self._settle(term if scored is None else term * scored[:, t, None])
            self.recent = torch.cat([hidden[:, :, None], self.recent[:, :, :-1]], dim=2)
            self._resample()

    def _reweight(self, increment: torch.Tensor, scored: torch.Tensor | None) -> None:
        if self.terms.shape[2]:
            increment = increment.detach()  # the smoother's weights are not differentiated
        total = self.log_w + increment
        step = torch.logsumexp(total, dim=1)
        self.log_z = self.log_z + (step if scored is None else step * scored)
        self.log_w = total - step[:, None]

    def _settle(self, term: torch.Tensor) -> None:
        """Add the oldest recorded terms, weighted by the particles' weights now, and record ``term``."""
        weights = self.log_w.detach().exp()
        self.settled = self.settled + (weights * self.terms[..., -1]).sum(1)
        self.terms = torch.cat([term[..., None], self.terms[..., :-1]], dim=2)

    @property
    def smoothed(self) -> torch.Tensor:
        """The weighted sum of every recorded term, the last ``lag`` bins' at the current weights."""
        return self.settled + (self.log_w.detach().exp() * self.terms.sum(2)).sum(1)

    def _resample(self) -> None:
        """Systematic resampling of the filters whose effective sample size is below the threshold."""
        weights = self.log_w.detach().exp()
        particles = weights.shape[1]
        low = 1.0 / weights.square().sum(dim=1) < RESAMPLE_BELOW * particles
        if not bool(low.any()):
            return
        cdf = weights.cumsum(dim=1)
        cdf[:, -1] = 1.0
        offset = torch.rand(len(cdf), 1, dtype=cdf.dtype, device=cdf.device, generator=self.generator)
        points = (offset + torch.arange(particles, dtype=cdf.dtype, device=cdf.device)) / particles
        drawn = torch.searchsorted(cdf, points).clamp_(max=particles - 1)
        index = torch.where(low[:, None], drawn, torch.arange(particles, device=cdf.device))
        gather = index[:, :, None, None].expand_as(self.recent)
        self.recent = torch.gather(self.recent, 1, gather)
        self.terms = torch.gather(self.terms, 1, index[:, :, None].expand_as(self.terms))
        self.log_w = torch.where(low[:, None], -math.log(particles), torch.gather(self.log_w, 1, index))
