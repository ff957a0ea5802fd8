"""Variational posteriors q(hidden counts | visible counts) of the POGLM.

Each family is a Poisson law per hidden neuron and bin whose rate is a GLM of the visible counts around
that bin, through the model's history basis:

``"forward-backward"`` (default)
    ``q(z[t, h]) = Poisson(link(a_h + A_h . past(x)_t + B_h . future(x)_t))``: mean-field, all bins at
    once. ``future(x)_t`` weighs the visible counts of bins ``t+1..t+L``, the bins a hidden spike at
    ``t`` can influence, which makes this family the most informed of the three.
``"forward"``
    The same without the future term: ``q`` sees only the past, like the model's own prior.
``"forward-self"``
    Autoregressive: the rate also depends on the sampled hidden past, ``C_h . past(z)_t``, so samples
    are drawn bin after bin.
``"smoothing"``
    Both: past and future visible counts and the sampled hidden past. The hidden neurons' own history
    lets q keep a hidden neuron's spikes apart in time as the model's self-coupling does, while the
    future term tells it which hidden spikes the visible neurons call for.

:func:`log_weights` gives the importance weights of samples of q, from which the training objectives
(:mod:`spikeglm.inference.objectives`) and the importance-sampled marginal likelihood
(:func:`marginal_log_likelihood`) are built.

With a network's continuous latent factors (``n_latent > 0``) the posterior also holds a
:class:`~spikeglm.latent.LatentEncoder`, whose per-bin potentials make the factors' Gaussian posterior
``q(f | x)``, independent of the hidden counts' (:meth:`Posterior.latent_posterior`); :func:`log_weights`
then draws a path per sample and adds its terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from spikeglm import relax
from spikeglm.basis import future, history
from spikeglm.latent import AR1Prior, LatentEncoder, MarkovGaussian
from spikeglm.model import LINKS, Network, inverse_link, link_derivatives
from spikeglm.options import Registry
from spikeglm.relax import PoissonRelaxation, poisson_log_pmf, poisson_log_ratio, spike_log_rates
from spikeglm.segments import Batch, Segments, blocks

#: A law of hidden counts at given rates: e.g. ``functools.partial(relax.EatCubic, temperature=0.5)``.
Law = Callable[[torch.Tensor], PoissonRelaxation]

#: The posterior families, each with what its rate depends on.
FAMILIES: Registry[str] = Registry(
    "variational family",
    {
        "forward-backward": "past and future visible counts (mean field)",
        "forward": "past visible counts (mean field)",
        "forward-self": "past visible and sampled hidden counts (autoregressive)",
        "smoothing": "past and future visible and sampled hidden counts (autoregressive)",
    },
)


def check_family(name: str) -> str:
    """The canonical name of a posterior family (``"Forward_Backward"`` is accepted); unknown: ValueError."""
    return FAMILIES.name(name)


class Posterior(nn.Module):
    """A variational family over the hidden counts.

    Parameters
    ----------
    family : {"forward-backward", "forward", "forward-self", "smoothing"}
        The dependence structure, see the module documentation.
    n_visible, n_hidden : int
        Numbers of visible and hidden neurons.
    basis_matrix : torch.Tensor
        History basis (n_basis, L) applied to the visible (and, for forward-self, hidden) counts.
    link : str
        Link from the linear predictor to the Poisson rate (that of the model).
    n_latent : int
        The network's number of latent factors: with ``n_latent > 0`` the posterior holds
        :attr:`latent_encoder`; with 0 (the default) nothing is added to it.
    """

    basis_matrix: torch.Tensor
    latent_encoder: LatentEncoder | None

    def __init__(
        self,
        family: str,
        n_visible: int,
        n_hidden: int,
        basis_matrix: torch.Tensor,
        link: str,
        n_latent: int = 0,
    ) -> None:
        super().__init__()
        self.family = check_family(family)
        self.link_name = link
        self.n_hidden = n_hidden
        n_basis = basis_matrix.shape[0]
        self.register_buffer("basis_matrix", basis_matrix.clone())
        self.bias = nn.Parameter(torch.zeros(n_hidden))
        self.past = nn.Parameter(torch.zeros(n_hidden, n_visible, n_basis))
        self.future = nn.Parameter(torch.zeros(n_hidden, n_visible, n_basis))
        self.self_past = nn.Parameter(torch.zeros(n_hidden, n_hidden, n_basis))
        if not self.sees_future:
            self.future.requires_grad_(False)
        if not self.autoregressive:
            self.self_past.requires_grad_(False)
        self.latent_encoder = LatentEncoder(n_visible, n_latent) if n_latent else None

    @property
    def sees_future(self) -> bool:
        """Whether q's rates depend on the visible counts that follow a bin."""
        return self.family in ("forward-backward", "smoothing")

    @property
    def autoregressive(self) -> bool:
        """Whether q's rates depend on the sampled hidden past (samples are drawn bin after bin)."""
        return self.family in ("forward-self", "smoothing")

    def init_rates(self, rate: float, scale: float, generator: torch.Generator) -> None:
        """Start with hidden rates near ``rate`` and small random visible couplings of std ``scale``."""
        with torch.no_grad():
            self.bias.fill_(float(inverse_link(self.link_name, torch.tensor(rate))))
            self.past.normal_(0.0, scale, generator=generator)
            if self.sees_future:
                self.future.normal_(0.0, scale, generator=generator)
        if self.latent_encoder is not None:
            self.latent_encoder.init_weights(scale, generator)

    @property
    def n_latent(self) -> int:
        """The number of latent factors whose posterior this one holds (0: none)."""
        return 0 if self.latent_encoder is None else self.latent_encoder.n_factors

    def latent_posterior(
        self, network: Network, visible: torch.Tensor, scored: torch.Tensor | None = None
    ) -> MarkovGaussian:
        """``q(f | x)``: the Gaussian posterior over the paths of ``network``'s latent factors given the
        visible counts ``(..., bins, V)``, batch ``(...)``; ValueError if the two disagree on the factors.

        ``scored`` ``(..., bins)`` (a :class:`~spikeglm.segments.Batch`'s) keeps only the potentials of the
        scored bins: on a segment's context the path then follows the prior given the scored bins, so the
        path's KL from the prior is that of the scored bins alone, as their likelihood is.
        """
        encoder, prior = self.latent_parts(network)
        return encoder.posterior(prior, visible, mask=scored)

    def latent_parts(self, network: Network) -> tuple[LatentEncoder, AR1Prior]:
        """This posterior's encoder of the latent factors and ``network``'s prior of them, from which
        :meth:`latent_posterior` is made; ValueError if the two disagree on the factors."""
        if self.latent_encoder is None or network.latent_prior is None or network.n_latent != self.n_latent:
            raise ValueError(
                f"the network has {network.n_latent} latent factors where the posterior has {self.n_latent}"
            )
        return self.latent_encoder, network.latent_prior

    def _visible_predictor(
        self, visible: torch.Tensor, past: torch.Tensor | None = None, ahead: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``a + A . past(x) (+ B . future(x))``, shape (trials, bins, H); ``past`` is ``history(x)`` and
        ``ahead`` ``future(x)`` through :attr:`basis_matrix` where they are known."""
        if self.n_hidden == 0:  # a fit with latent factors alone: no filter to run over the counts
            # The (empty) filters still enter the result, as DistributedDataParallel wants of every
            # parameter that learns.
            empty = self.bias + self.past.flatten(1).sum(1)
            if self.sees_future:
                empty = empty + self.future.flatten(1).sum(1)
            return empty.to(visible.dtype).expand(*visible.shape[:-1], 0)
        basis = self.basis_matrix.to(visible.dtype)
        if past is None:
            past = history(visible, basis)
        predictor = self.bias + past.flatten(-2) @ self.past.flatten(1).T
        if self.sees_future:
            if ahead is None:
                ahead = future(visible, basis)
            predictor = predictor + ahead.flatten(-2) @ self.future.flatten(1).T
        return predictor

    def rates(
        self, visible: torch.Tensor, past: torch.Tensor | None = None, ahead: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rates of q for the mean-field families, shape (trials, bins, H); ``past`` and ``ahead`` as in
        :meth:`sample`."""
        if self.autoregressive:
            raise ValueError(f"{self.family} rates depend on sampled hidden counts: use sample()")
        return LINKS[self.link_name](self._visible_predictor(visible, past, ahead))

    def sample(
        self,
        visible: torch.Tensor,
        n_samples: int,
        law: Law | None = None,
        past: torch.Tensor | None = None,
        ahead: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden counts drawn from q and their rates, each shape (n_samples, trials, bins, H).

        ``law(rate)`` gives the law the counts are drawn from: a relaxation with a reparameterised
        sampler gives relaxed counts, differentiable in the rates; one without (and None: the exact
        Poisson law) gives integer counts with no gradient through them. ``past`` and ``ahead``, the
        visible counts' history and future through :attr:`basis_matrix` (trials, bins, V, basis), save
        filtering them again where the caller has them.
        """

        def sampler(rate: torch.Tensor, shape: tuple) -> torch.Tensor:
            drawn = relax.ExactPoisson(rate, validate_args=False) if law is None else law(rate)
            return drawn.rsample(shape) if drawn.has_rsample else drawn.sample(shape)

        if not self.autoregressive:
            rate = self.rates(visible, past, ahead).expand(n_samples, *visible.shape[:-1], self.n_hidden)
            return sampler(rate, ()), rate
        return self._sample_autoregressive(visible, n_samples, sampler, past, ahead)

    def _sample_autoregressive(self, visible, n_samples, sampler, past=None, ahead=None):
        base = self._visible_predictor(visible, past, ahead)  # (trials, bins, H)
        filters = torch.einsum("hkb,bl->hkl", self.self_past, self.basis_matrix.to(base.dtype))
        window = filters.shape[-1]
        n_trials, n_bins = base.shape[:2]
        drawn = [base.new_zeros(n_samples, n_trials, self.n_hidden)] * window  # zero history
        rates = []
        for t in range(n_bins):
            recent = torch.stack(drawn[: -window - 1 : -1], dim=2)  # lags 1..L, most recent first
            rate = LINKS[self.link_name](base[:, t] + torch.einsum("srlk,hkl->srh", recent, filters))
            drawn.append(sampler(rate, ()))
            rates.append(rate)
        return torch.stack(drawn[window:], dim=2), torch.stack(rates, dim=2)


def log_weights(
    network: Network,
    posterior: Posterior,
    batch: Batch | torch.Tensor,
    n_samples: int,
    law: Law | None = None,
    exact_latent_kl: bool = False,
    past: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance log-weights ``log p(x, z) - log q(z | x)`` and ``log q(z | x)`` less the hidden counts'
    log-factorials, each (n_samples, trials).

    ``batch`` holds the visible counts (trials, bins, V), as a tensor or as a
    :class:`~spikeglm.segments.Batch` of segments whose masks say which bins lie in the recording and
    which are scored (see :mod:`spikeglm.segments`). The hidden counts are drawn as
    :meth:`Posterior.sample` draws them: by default integer Poisson draws (no gradient through them),
    or relaxed draws of ``law(rate)``, e.g. ``HiddenSampler.law`` (:mod:`spikeglm.inference.objectives`).

    With latent factors (``network.n_latent > 0``) each sample also draws a path ``f`` of them from
    :meth:`Posterior.latent_posterior` (reparameterised), which enters the drive; the weights gain
    ``log p(f) - log q(f | x)``, or with ``exact_latent_kl`` the exact ``-KL(q(f | x) || p(f))``, the same
    for every sample: the ELBO's term (same mean, less noise), but no importance weight (for IWAE or the
    likelihood). The returned ``log q`` stays the hidden counts' (the score function's). Without factors
    ``exact_latent_kl`` changes nothing.

    The hidden counts' log-factorials cancel from the weights, which take ``log p(z) - log q(z)`` at once
    (:func:`~spikeglm.relax.poisson_log_ratio`), and are left out of the returned ``log q``: they depend
    on no parameter of q, so the score function's gradient is the same without them.

    ``past`` is the batch's :func:`batch_history`, where a caller that draws from one batch more than once
    has it (None: taken here). The posterior reads the batch's future where its segments keep it.
    """
    if isinstance(batch, torch.Tensor):
        batch = Batch(batch)
    visible = batch.visible
    if past is None:
        past = batch_history(network, posterior, batch)
    ahead = batch.future if past is not None and past is batch.past else None
    hidden, q_rate = posterior.sample(visible, n_samples, law, past, ahead)
    if batch.present is not None:
        hidden = hidden * batch.present[..., None]  # no hidden spikes outside the recording
    latent, latent_weight = _latent_draws(network, posterior, batch, n_samples, exact_latent_kl)
    # log p(x, z) - log q(z): the visible counts' terms (summed, see visible_log_pmf) and the hidden
    # counts' ratio, in which their factorials cancel (value and gradient alike)
    rates = network.rates(visible, hidden, latent, batch.covariates, past)
    n_visible = network.n_visible
    log_ratio = poisson_log_ratio(hidden, rates[..., n_visible:], q_rate)
    log_q = poisson_log_pmf(hidden, q_rate, log_factorial=0.0)
    if batch.scored is not None:
        log_ratio, log_q = log_ratio * batch.scored[..., None], log_q * batch.scored[..., None]
    log_q = log_q.sum(dim=(-2, -1))
    log_w = visible_log_pmf(visible, rates[..., :n_visible], batch.scored) + log_ratio.sum(dim=(-2, -1))
    if latent_weight is not None:
        log_w = log_w + latent_weight
    return log_w, log_q


def visible_log_pmf(
    visible: torch.Tensor, rates: torch.Tensor, scored: torch.Tensor | None = None
) -> torch.Tensor:
    """The Poisson log-pmf of the visible counts (trials, bins, V) at ``rates`` (..., trials, bins, V),
    summed over the bins (each weighed by ``scored``, (trials, bins), where given) and the neurons:
    (..., trials).

    The counts are shared by every sample of ``rates`` and most of them are 0: the log is taken of the
    rates where a count is above 0 alone (:func:`~spikeglm.relax.spike_log_rates`), the factorials of
    those counts once (a count of 0 has none), and neither is differentiated with respect to the counts.
    """
    trials, bins, neurons = torch.nonzero(visible, as_tuple=True)
    counts, totals = visible[trials, bins, neurons], rates.sum(-1)
    factorials = torch.lgamma(counts + 1)
    if scored is not None:
        weight = scored[trials, bins]
        counts, factorials, totals = counts * weight, factorials * weight, totals * scored
    spikes = spike_log_rates(rates[..., trials, bins, neurons], counts) - factorials
    logs = rates.new_zeros(*rates.shape[:-3], len(visible)).index_add(-1, trials, spikes)
    return logs - totals.sum(-1)


def shared_history(network: Network, posterior: Posterior, visible: torch.Tensor) -> torch.Tensor | None:
    """The visible counts' history, filtered once for the posterior and the network where both read it
    through the same basis (as a POGLM's do): with long bases, filtering is most of a step's work."""
    if not reads_shared_history(network, posterior):
        return None
    return history(visible, network.basis_matrix.to(visible.dtype))


def reads_shared_history(network: Network, posterior: Posterior) -> bool:
    """Whether the posterior and the network read the visible counts' history through the same basis."""
    return posterior.n_hidden > 0 and torch.equal(posterior.basis_matrix, network.basis_matrix)


def batch_history(network: Network, posterior: Posterior, batch: Batch) -> torch.Tensor | None:
    """:func:`shared_history` of a batch's visible counts: the one its segments keep
    (:meth:`~spikeglm.segments.Segments.filtered`, with the network's basis), else filtered now."""
    if batch.past is None:
        return shared_history(network, posterior, batch.visible)
    return batch.past if reads_shared_history(network, posterior) else None


def _latent_draws(
    network: Network, posterior: Posterior, batch: Batch, n_samples: int, exact_kl: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Paths of the latent factors (n_samples, trials, bins, K) drawn from ``q(f | x)`` and their term of
    the log-weights, ``log p(f) - log q(f | x)`` (n_samples, trials) or ``-KL`` (trials); None, None
    for a network and a posterior without factors."""
    if network.n_latent == 0 and posterior.n_latent == 0:
        return None, None
    q = posterior.latent_posterior(network, batch.visible, batch.scored)
    latent = q.rsample((n_samples,))
    if exact_kl:
        return latent, -q.kl_prior()
    assert network.latent_prior is not None  # latent_posterior checked it
    return latent, network.latent_prior.log_prob(latent) - q.log_prob(latent)


#: Most Newton (Fisher scoring) steps of :func:`laplace_latent`, and the change of the path (in prior sds)
#: below which it stops.
LAPLACE_STEPS, LAPLACE_TOL = 25, 1e-4


@torch.no_grad()
def laplace_latent(
    network: Network,
    visible: torch.Tensor,
    start: MarkovGaussian,
    hidden: torch.Tensor | None = None,
    block: int = 2**15,
    covariates: torch.Tensor | None = None,
) -> MarkovGaussian:
    """The Laplace posterior of ``network``'s latent factors given the visible counts of one trial.

    The path's posterior ``p(f | x) ∝ p(f) prod_t p(x_t | past, f_t)`` is found by Fisher scoring from
    ``start`` (e.g. the amortised :meth:`Posterior.latent_posterior`): at the current path ``m`` each bin's
    log-likelihood is replaced by its quadratic expansion, a Gaussian potential of precision ``P_t = L'
    W_t L`` (``W_t`` the Poisson Fisher weights of the visible neurons, ``L`` their loadings) and mean ``m_t
    + P_t^-1 g_t`` (``g_t`` the gradient); with the Gaussian prior this makes a :class:`MarkovGaussian`
    whose mean is the next path. The steps stop when the path moves less than :data:`LAPLACE_TOL` prior
    sds, or after :data:`LAPLACE_STEPS`. Each costs ``O(T (V K + K^2))``, with no loop over bins.

    Parameters
    ----------
    network : Network
        With latent factors.
    visible : torch.Tensor
        Visible counts of one trial, shape (bins, V), of any dtype (read ``block`` bins at a time).
    start : MarkovGaussian
        The posterior to start from, over the same bins.
    hidden : torch.Tensor, optional
        Expected hidden counts of the trial (bins, H), whose history drives the neurons as the hidden
        counts would (their posterior mean: a plug-in for the hidden neurons' uncertain spikes).
    block : int
        Bins whose coupling drive is computed at once.
    covariates : torch.Tensor, optional
        The covariates' columns of the trial (bins, F), for a network with covariates.

    Returns
    -------
    MarkovGaussian
        Over the trial's bins, batch ``()``, in float64.
    """
    loading, prior = network.loading, network.latent_prior
    if loading is None or prior is None:
        raise ValueError("laplace_latent: the network has no latent factors")
    n_visible = network.n_visible
    drive = _with_covariates(
        network, _coupling_drive(network, visible, hidden, block), covariates, "laplace_latent"
    )
    counts = torch.cat([part.double() for part in visible.split(block)])
    return _fisher_scoring(network, drive[..., :n_visible], counts, start)


@torch.no_grad()
def laplace_paths(network: Network, batch: Batch, start: MarkovGaussian) -> MarkovGaussian:
    """:func:`laplace_latent` of a batch of segments at once, for a network without hidden neurons: batch
    ``(segments,)``, float64. Only the scored bins carry the likelihood's potentials (as in
    :meth:`Posterior.latent_posterior`), so a segment's path on its context follows the prior given them.
    """
    if network.loading is None or network.latent_prior is None or network.n_hidden:
        raise ValueError("laplace_paths: the network needs latent factors and no hidden neuron")
    visible = batch.visible.double()
    predictor = network.bias.detach().double() + network._drive(visible, network.weight.detach().double())
    predictor = _with_covariates(network, predictor, batch.covariates, "laplace_paths")
    return _fisher_scoring(network, predictor, visible, start, batch.scored)


def _with_covariates(
    network: Network, drive: torch.Tensor, covariates: torch.Tensor | None, caller: str
) -> torch.Tensor:
    """``drive`` (float64) plus the covariates' drive of a network with covariates, in float64."""
    if network.covariate_weight is None:
        return drive
    if covariates is None:
        raise ValueError(f"{caller}: this network has covariates; give their columns (covariates)")
    return drive + covariates.double() @ network.covariate_weight.detach().double().T


def _fisher_scoring(
    network: Network,
    drive: torch.Tensor,
    counts: torch.Tensor,
    start: MarkovGaussian,
    scored: torch.Tensor | None = None,
) -> MarkovGaussian:
    """The Laplace posterior's steps (:func:`laplace_latent`) from ``start``, given the rest of the visible
    neurons' predictor ``drive`` and their ``counts`` (each (..., T, V), float64); ``scored`` (..., T) keeps
    the potentials of some bins only."""
    loading, prior = network.loading, network.latent_prior
    assert loading is not None and prior is not None  # the callers checked the factors
    weights = loading.detach().double()[: network.n_visible]  # (V, K)
    path = start.mean.double()
    posterior = start
    for _ in range(LAPLACE_STEPS):
        rate, slope, _ = link_derivatives(network.link_name, drive + path @ weights.T)
        rate = rate.clamp_min(torch.finfo(rate.dtype).tiny)
        gradient = ((counts / rate - 1) * slope) @ weights  # (..., T, K)
        fisher = slope.square() / rate  # (..., T, V)
        if network.n_latent == 1:
            precision = fisher @ weights.square()  # (..., T, 1)
            target = path + gradient / precision.clamp_min(1e-12)
        else:
            precision = torch.einsum("...tv,vk,vj->...tkj", fisher, weights, weights)
            identity = 1e-12 * torch.eye(network.n_latent, dtype=precision.dtype)
            target = path + torch.linalg.solve(precision + identity, gradient)
        if scored is not None:
            keep = scored.to(precision.dtype)
            precision = precision * (keep[..., None] if network.n_latent == 1 else keep[..., None, None])
        posterior = MarkovGaussian(prior, target, precision)
        moved = float((posterior.mean - path).abs().max())
        path = posterior.mean
        if moved < LAPLACE_TOL:
            break
    return posterior


def _coupling_drive(
    network: Network, visible: torch.Tensor, hidden: torch.Tensor | None, block: int
) -> torch.Tensor:
    """``bias + W . history`` of every neuron in every bin of one trial (bins, N), float64, computed
    ``block`` bins at a time with the history window before each block."""
    window, n_visible = network.basis_matrix.shape[1], network.n_visible
    weight = network.weight.detach().double()
    basis = network.basis_matrix.double()
    inputs = visible if hidden is None else torch.cat([visible.to(hidden.dtype), hidden], dim=-1)
    columns = (weight[:, :n_visible] if hidden is None else weight).flatten(1)
    parts = []
    for piece, bins in blocks(inputs[None], block, past=window, dtype=torch.float64):
        design = history(piece, basis)[0, bins].flatten(-2)  # (bins, pre x basis)
        parts.append(design @ columns.T)
    return network.bias.detach().double() + torch.cat(parts)


@torch.no_grad()
def marginal_log_likelihood(
    network: Network,
    posterior: Posterior,
    data: torch.Tensor | Segments,
    n_samples: int = 1000,
    max_elements: int = 2**24,
) -> float:
    """Importance-sampled ``log p(x)`` per visible neuron-bin, with exact Poisson ``p`` and ``q``.

    ``log p(x) ~= log mean_k p(x, z_k) / q(z_k | x)`` with ``z_k ~ q`` integer Poisson draws, for each
    trial, summed over trials and divided by trials x bins x visible neurons. The estimate is biased
    low by at most the gap to the true value, which shrinks as ``n_samples`` grows.

    ``data`` is visible counts (trials, bins, V) or :class:`~spikeglm.segments.Segments`; for segments of a
    cut recording, each segment's likelihood is that of its bins given its context. The work is done in
    pieces of about ``max_elements`` sample-bin-neuron values, so memory does not grow with the data.
    """
    segments = data if isinstance(data, Segments) else Segments(data)
    n_neurons = network.n_neurons
    device = network.bias.device
    per_pass = max(1, max_elements // (segments.bins * n_neurons))  # segment-samples in one pass
    per_group = max(1, per_pass // min(n_samples, 100))  # segments that get up to 100 samples at once
    total = 0.0
    for index in segments.groups(per_group * segments.bins):
        batch = segments.batch(index, dtype=network.bias.dtype, device=device)
        samples_per_pass = max(1, per_pass // len(index))
        past = shared_history(network, posterior, batch.visible)  # filtered once for every pass
        log_w = torch.cat(
            [
                log_weights(network, posterior, batch, min(samples_per_pass, n_samples - first), past=past)[0]
                for first in range(0, n_samples, samples_per_pass)
            ]
        )
        total += float((torch.logsumexp(log_w, dim=0) - math.log(n_samples)).sum())
    return total / (segments.n_scored * segments.n_units)
