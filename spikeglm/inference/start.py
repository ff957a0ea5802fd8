"""How a fit with hidden neurons starts (:data:`STARTS`): from the visible neurons' GLM, or at random."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from spikeglm import parallel
from spikeglm.inference.glm import GLM_TOLERANCE_GRAD, solve_glm
from spikeglm.inference.penalty import Penalty
from spikeglm.model import Network
from spikeglm.options import Registry
from spikeglm.segments import PART_BINS, Segments
from spikeglm.variational import Posterior

#: How a fit with hidden neurons starts.
STARTS: Registry[str] = Registry(
    "init",
    {
        "glm": "the visible neurons' GLM, hidden neurons along the principal components of its errors, "
        "rotated to sparse ones",
        "random": "small random couplings",
    },
)

#: Summed coupling strength of a hidden neuron onto the visible neuron it drives most, at the start.
START_STRENGTH = 1.0
#: The same for the posterior's reading of that neuron's future counts.
START_READING = 0.5
#: Largest loading of a latent factor on a visible neuron at the start.
START_LOADING = 0.3
#: Most L-BFGS iterations of the start's GLM.
START_ITERATIONS = 500
#: The largest gradient component (per spike) of the start's GLM of a fit whose couplings are solved
#: exactly again after training (latent factors, no hidden neuron): two Newton passes fewer than a GLM
#: fit's :data:`~spikeglm.inference.glm.GLM_TOLERANCE_GRAD` on an hour of 20 neurons.
START_TOLERANCE_GRAD = 1e-3


def glm_start(
    network: Network,
    posterior: Posterior,
    data: Segments,
    part_bins: int = PART_BINS,
    estimate_tau: bool = False,
    tolerance_grad: float = GLM_TOLERANCE_GRAD,
    penalty: Penalty | None = None,
) -> None:
    """Start a fit with hidden neurons (or latent factors) from the visible neurons' GLM and the shared
    part of its errors.

    The visible block (couplings and biases) starts at the maximum-likelihood GLM of the visible counts
    (:func:`solve_glm`, to ``tolerance_grad``: a looser one where the couplings are solved exactly again
    after training, :data:`START_TOLERANCE_GRAD`). Input that several visible neurons share shows in that
    GLM's errors as correlated fluctuations (:func:`shared_components`). The network's latent factors take
    the leading components and its hidden neurons the next ones:

    * the hidden neurons' components are rotated among themselves to sparse ones (:func:`sparse_rotation`):
      an unrecorded cell drives a few of the recorded ones, where the leading components mix them all;
    * hidden neuron ``h`` starts coupled onto the visible neurons along its component, signed to excite
      on balance, its largest summed coupling :data:`START_STRENGTH`; where the posterior reads the
      visible future, it reads the same component (:data:`START_READING`), so that the hidden counts
      start high where the neurons they drive fire together;
    * factor ``k`` starts loading on the visible neurons along its component (largest loading
      :data:`START_LOADING`), and the posterior's encoder reads the counts' projection on it.

    Only components whose variance stands above the noise's are used; hidden neurons and factors beyond
    them keep their random start. From small random couplings alone, the fit finds less of the shared
    input (docs/benchmarks.md, "When hidden neurons pay off").

    With ``estimate_tau``, each factor with a component also starts at the time constant of the errors
    along it (:func:`error_time_constants`), where they show one. With a ``penalty`` (the fit's own), the
    GLM is the penalised one.
    """
    n_visible, n_latent = network.n_visible, network.n_latent
    glm = Network(n_visible, 0, network.basis, network.link_name, n_covariates=network.n_covariates)
    glm.to(network.bias.device)
    glm.bias.data.copy_(network.bias.data[:n_visible])
    solve_glm(  # whatever the epochs
        glm,
        data,
        max_iterations=START_ITERATIONS,
        part_bins=part_bins,
        tolerance_grad=tolerance_grad,
        penalty=penalty,
    )
    components, rate = shared_components(glm, data, n_latent + network.n_hidden, part_bins)
    components[:, n_latent:] = sparse_rotation(components[:, n_latent:])
    components = components * torch.where(components.sum(0) < 0, -1.0, 1.0)
    components = components / components.abs().amax(0)
    latent, hidden = components[:, :n_latent], components[:, n_latent:]
    dtype = network.weight.dtype
    with torch.no_grad():
        network.weight[:n_visible, :n_visible] = glm.weight
        network.bias[:n_visible] = glm.bias
        if network.covariate_weight is not None and glm.covariate_weight is not None:
            network.covariate_weight[:n_visible] = glm.covariate_weight
        if hidden.shape[1]:
            # Each basis function of the couplings carries an equal share of the filter's summed strength.
            functions = network.basis.n_coupling
            share = 1.0 / (network.basis_matrix[:functions].sum(1) * functions)
            loading = hidden.to(dtype)[..., None] * share.to(dtype)
            columns = slice(n_visible, n_visible + hidden.shape[1])
            network.weight[:n_visible, columns, :functions] = START_STRENGTH * loading
            if posterior.sees_future:
                posterior.future[: hidden.shape[1], :, :functions] = START_READING * loading.transpose(0, 1)
        if latent.shape[1] and network.loading is not None and posterior.latent_encoder is not None:
            factors = slice(0, latent.shape[1])
            network.loading[:n_visible, factors] = START_LOADING * latent.to(dtype)
            # The readout of factor k: the counts' Pearson residuals projected on its component, scaled
            # to unit variance per bin.
            readout = latent / (latent.norm(dim=0) * rate.clamp_min(1e-6).sqrt()[:, None])
            encoder = posterior.latent_encoder
            encoder.mean_weight[factors] = readout.T.to(dtype)
            encoder.mean_bias[factors] = -(readout.T @ rate).to(dtype)
            prior = network.latent_prior
            if estimate_tau and prior is not None:
                found = error_time_constants(glm, data, latent, part_bins).to(prior.log_tau.device)
                known = torch.isfinite(found)
                prior.log_tau[factors][known] = found[known].log().to(prior.log_tau)


def pearson_residuals(
    glm: Network, data: Segments, part_bins: int = PART_BINS
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """A fitted GLM's rates and Pearson residuals ``(x - rate) / sqrt(rate)`` (float64, (segments, bins,
    V)) with the scored bins (None: every bin), group by group over this process's share of ``data``."""
    device = glm.bias.device
    for index in data.groups(part_bins)[parallel.rank() :: parallel.world_size()]:
        batch = data.batch(index, device=device)
        rate = glm.rates(batch.visible, covariates=batch.covariates).double()
        yield rate, (batch.visible.double() - rate) / rate.clamp_min(1e-6).sqrt(), batch.scored


def sparse_rotation(components: torch.Tensor, steps: int = 1000, tolerance: float = 1e-9) -> torch.Tensor:
    """Orthonormal components ``(V, n)`` rotated among themselves to be sparse: the rotation that
    maximises the variance of their squared loadings (varimax, Kaiser 1958), found by its fixed-point
    iteration of polar decompositions. They span the same space; with fewer than two, they are returned
    as they are.

    Examples
    --------
    >>> sparse = torch.tensor([[1.0, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float64)
    >>> sparse = sparse / sparse.norm(dim=0)
    >>> turn = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    >>> sparse_rotation(sparse @ turn).abs().round(decimals=4)
    tensor([[0.0000, 0.5774],
            [0.0000, 0.5774],
            [0.0000, 0.5774],
            [0.7071, 0.0000],
            [0.7071, 0.0000]], dtype=torch.float64)
    """
    n_components = components.shape[1]
    if n_components < 2:
        return components
    rotation = torch.eye(n_components, dtype=components.dtype, device=components.device)
    for _ in range(steps):
        rotated = components @ rotation
        target = rotated**3 - rotated * rotated.square().mean(0)
        left, _, right = torch.linalg.svd(components.T @ target)
        rotation, before = left @ right, rotation
        if float((rotation - before).abs().max()) <= tolerance:
            break
    return components @ rotation


def shared_components(
    glm: Network, data: Segments, n_wanted: int, part_bins: int = PART_BINS
) -> tuple[torch.Tensor, torch.Tensor]:
    """The leading principal components of the correlations of a fitted GLM's Pearson residuals
    ``(x - rate) / sqrt(rate)`` over the scored bins of ``data``, and the visible neurons' mean rates.

    At most ``n_wanted`` components, leading first, shape (V, n), float64; only those whose eigenvalue
    stands beyond the Marchenko-Pastur edge of pure noise (estimated from the median eigenvalue) are
    returned, since the others are noise. The mean rates are per bin, shape (V,), float64.
    """
    n_visible, device = glm.n_visible, glm.bias.device
    moments = torch.zeros(n_visible + 1, n_visible + 1, dtype=torch.float64, device=device)
    sums = torch.zeros(n_visible, dtype=torch.float64, device=device)
    with torch.no_grad():
        for rate, residual, scored in pearson_residuals(glm, data, part_bins):
            weight = torch.ones_like(residual[..., :1]) if scored is None else scored[..., None]
            rows = torch.cat([weight, residual * weight], dim=-1).reshape(-1, n_visible + 1)
            moments += rows.T @ rows  # [count, sums; sums, products] over the scored bins
            sums += (rate * weight).reshape(-1, n_visible).sum(0)
        parallel.all_sum(moments)
        parallel.all_sum(sums)
    count, residual_sums = moments[0, 0].clamp_min(1.0), moments[0, 1:]
    covariance = moments[1:, 1:] / count - torch.outer(residual_sums, residual_sums) / count**2
    scale = covariance.diagonal().clamp_min(1e-12).rsqrt()
    values, vectors = torch.linalg.eigh(covariance * torch.outer(scale, scale))  # correlations
    # Components of pure noise have eigenvalues (ascending) up to the Marchenko-Pastur edge above the
    # noise level, estimated by the median eigenvalue; only those beyond it are shared input.
    edge = values.median() * (1 + math.sqrt(n_visible / float(count))) ** 2
    n_components = min(n_wanted, n_visible, int((values > edge).sum()))
    return vectors.flip(1)[:, :n_components], sums / count


#: The shortest lag at which :func:`error_time_constants` reads the errors' autocovariance, in history
#: windows (the couplings' reach: within it the GLM's filters shape the errors), and the share of its
#: value below which the autocovariance counts as decayed.
LAG_WINDOWS, DECAYED = 2, 0.2


def error_time_constants(
    glm: Network, data: Segments, components: torch.Tensor, part_bins: int = PART_BINS
) -> torch.Tensor:
    """The time constant, in bins, of a fitted GLM's Pearson residuals projected on each component
    (V, K): the decay of their autocovariance beyond the history window, where a slow shared drive
    outlasts what the couplings explain.

    The autocovariance is read over the scored bins at lags ``L = 2 (L_w + 1), 4 (L_w + 1), ...`` below
    half a segment (``L_w`` the window); the decay rate is the slope of its logarithm, by least squares
    weighted by the squared autocovariance (the inverse variance of the logarithm), over the lags before
    the first where it has fallen below :data:`DECAYED` of its first value (beyond, the estimates are
    mostly noise). Shape (K,), float64; NaN for a component whose errors show no such
    decay that the lags can read (:func:`decay_time`).
    """
    window = glm.basis.window
    lags = []
    lag = LAG_WINDOWS * (window + 1)
    while 2 * lag <= data.length:
        lags.append(lag)
        lag *= 2
    n_factors = components.shape[1]
    device = glm.bias.device
    sums = torch.zeros(len(lags), n_factors, dtype=torch.float64, device=device)
    pairs = torch.zeros(len(lags), dtype=torch.float64, device=device)
    readout = (components / components.norm(dim=0)).to(device)
    with torch.no_grad():
        for _, residual, mask in pearson_residuals(glm, data, part_bins):
            scored = torch.ones_like(residual[..., 0]) if mask is None else mask.double()
            series = (residual @ readout) * scored[..., None]  # (segments, bins, K)
            for i, lag in enumerate(lags):
                sums[i] += (series[:, lag:] * series[:, :-lag]).sum((0, 1))
                pairs[i] += (scored[:, lag:] * scored[:, :-lag]).sum()
        parallel.all_sum(sums)
        parallel.all_sum(pairs)
    covariance = (sums / pairs.clamp_min(1.0)[:, None]).cpu()
    found = [decay_time(lags, covariance[:, k], window) for k in range(n_factors)]
    return torch.tensor(found, dtype=torch.float64)


def decay_time(lags: list[int], values: torch.Tensor, shortest: float) -> float:
    """The time constant of an autocovariance ``values`` read at ``lags`` (see
    :func:`error_time_constants`), at least ``shortest`` and at most twice the longest lag (where it does
    not fall over the lags); NaN where it is not positive at the first lag, or has fallen below
    :data:`DECAYED` of it by the second (a decay too fast for the lags to read)."""
    if len(lags) < 2 or values[0] <= 0:
        return math.nan
    decayed = (values < DECAYED * values[0]).nonzero()
    kept = list(range(int(decayed[0, 0]) if len(decayed) else len(lags)))
    if len(kept) < 2:
        return math.nan
    x = torch.tensor([float(lags[i]) for i in kept], dtype=torch.float64)
    y = values[kept].double().log()
    # The logarithm of an estimate of variance v has variance about v / value^2: weigh by value^2.
    weight = values[kept].double().square()
    x, y = x - (weight * x).sum() / weight.sum(), y - (weight * y).sum() / weight.sum()
    slope = float((weight * x * y).sum() / (weight * x.square()).sum())
    longest = 2.0 * lags[-1]  # an autocovariance that does not fall over the lags read: slower still
    return min(max(-1.0 / slope, shortest), longest) if slope < 0 else longest
