"""How faithfully a relaxation reproduces the Poisson law and its gradients.

Distributional fidelity
    :func:`wasserstein1` between relaxed and exact Poisson samples at the same rate, and the empirical
    moments of the relaxed count beside their closed forms (:func:`moments`, :func:`fidelity_table`,
    :func:`format_table`).

Gradient quality
    Sampled gradients are compared with an exact gradient ``g*`` by :func:`gradient_metrics`. With
    ``gbar`` the mean of ``N`` sampled gradients, ``Sigma`` the covariance of one sampled gradient,
    ``b = gbar - g*`` the bias and a positive semi-definite metric ``H``:

    * bias energy ``b' H b / g*' H g*`` (0 for an unbiased estimator, up to Monte-Carlo error),
    * noise energy ``tr(H Sigma) / g*' H g*`` (the spread of a single sampled gradient, same units),
    * cosine similarity ``cos(gbar, g*)``, and the mean over samples of ``cos(g_n, g*)``.

    Two problems have exact gradients: a test function ``g`` of the count, whose ``d/drate E[g(Z)]`` is a
    sum over the Poisson support (:func:`gradient_quality`), and a linear Poisson decoder whose expected
    squared error is quadratic in the rates (:func:`decoder_problem`, :func:`decoder_gradient_quality`).

Every function takes a ``seed`` and draws from a forked copy of torch's global generator (which
:mod:`spikeglm.relax` uses), so results are reproducible and the caller's random state is left as it
was. Computations run in float64 on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from spikeglm import relax
from spikeglm.parallel import seeded

__all__ = [
    "decoder_gradient_quality",
    "decoder_problem",
    "fidelity_table",
    "format_table",
    "gradient_metrics",
    "gradient_quality",
    "moments",
    "poisson_gradient",
    "wasserstein1",
]

#: A relaxation given by its registry name (``"eat-cubic"``) or its class (``relax.EatCubic``).
Relaxation = str | type[relax.PoissonRelaxation]

#: The Poisson support is summed up to the count whose upper tail probability is below this.
_SUPPORT_TAIL = 1e-12


def _relaxation_class(relaxation: Relaxation) -> type[relax.PoissonRelaxation]:
    if isinstance(relaxation, type) and issubclass(relaxation, relax.PoissonRelaxation):
        return relaxation
    return relax.get(relaxation)


def _law(relaxation: Relaxation, rate: torch.Tensor | float, temperature: float) -> relax.PoissonRelaxation:
    """The relaxation at ``rate`` (float64); ``ExactPoisson`` takes no temperature."""
    cls = _relaxation_class(relaxation)
    rate = torch.as_tensor(rate, dtype=torch.float64)
    if issubclass(cls, relax.ExactPoisson):
        return cls(rate)
    tempered: Callable[..., relax.PoissonRelaxation] = cls  # the other relaxations take a temperature
    return tempered(rate, temperature=temperature)


def _draw(law: relax.PoissonRelaxation, shape: tuple[int, ...]) -> torch.Tensor:
    """Relaxed counts, or exact ones for a law without a reparameterised sampler; no gradient."""
    with torch.no_grad():
        return law.rsample(shape) if law.has_rsample else law.sample(shape)


def _closed_form(law: relax.PoissonRelaxation, moment: str) -> float | None:
    try:
        return float(getattr(law, moment))
    except NotImplementedError:
        return None


def _check_n_samples(n_samples: int) -> None:
    if n_samples < 2:
        raise ValueError(f"`n_samples` must be at least 2 (a spread is estimated); got {n_samples}")


def wasserstein1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance between two samples of equal size, along dimension 0.

    For the empirical laws of ``x_1, ..., x_n`` and ``y_1, ..., y_n`` the optimal transport pairs the
    order statistics, so the distance is the mean absolute difference of the sorted samples,
    ``W1 = (1/n) sum_i |x_(i) - y_(i)|``.

    Parameters
    ----------
    x, y : torch.Tensor
        Samples of the same shape ``(n, ...)``; each position in the trailing dimensions is a separate
        pair of samples.

    Returns
    -------
    torch.Tensor
        The distances, shape ``x.shape[1:]`` (a 0-d tensor for 1-D samples).
    """
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.shape != y.shape or x.dim() == 0:
        raise ValueError(
            f"samples must have the same shape (n, ...); got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    return (x.sort(dim=0).values - y.sort(dim=0).values).abs().mean(dim=0)


def _sample_moments(z: torch.Tensor) -> dict[str, float]:
    """Mean and (biased) variance of a flat sample, with their Monte-Carlo standard errors.

    The variance's standard error is ``sqrt((m4 - m2^2) / n)`` with ``m2``, ``m4`` the central moments.
    """
    z = z.reshape(-1)
    n = z.numel()
    centred = z - z.mean()
    variance = float(centred.pow(2).mean())
    fourth = float(centred.pow(4).mean())
    return {
        "mean": float(z.mean()),
        "mean_se": math.sqrt(variance / n),
        "variance": variance,
        "variance_se": math.sqrt(max(fourth - variance**2, 0.0) / n),
    }


def moments(
    relaxation: Relaxation,
    rate: float,
    temperature: float = 0.5,
    n_samples: int = 100_000,
    seed: int = 0,
) -> dict[str, float | None]:
    """Empirical mean and variance of relaxed counts, beside the closed forms of the relaxation.

    Parameters
    ----------
    relaxation : str or type
        Registry name (see :func:`spikeglm.relax.get`) or relaxation class. ``"exact"`` draws exact
        Poisson counts.
    rate : float
        The Poisson rate (expected count).
    temperature : float
        Temperature of the relaxation (ignored by ``"exact"``; at most 1 for ``"eat-cubic"``).
    n_samples : int
        Number of independent relaxed counts.
    seed : int
        Seed of the draws.

    Returns
    -------
    dict
        ``mean`` and ``variance`` (the biased sample variance) of the draws, their Monte-Carlo standard
        errors ``mean_se = sqrt(variance / n)`` and ``variance_se = sqrt((m4 - variance^2) / n)`` (``m4``
        the fourth central moment), and ``mean_closed``, ``variance_closed``: the relaxation's closed
        forms, or None where it has none (Gumbel-softmax).
    """
    law = _law(relaxation, float(rate), temperature)
    with seeded(seed):
        z = _draw(law, (n_samples,))
    return {
        **_sample_moments(z),
        "mean_closed": _closed_form(law, "mean"),
        "variance_closed": _closed_form(law, "variance"),
    }


def fidelity_table(
    relaxations: Iterable[Relaxation] = ("eat-cubic", "eat-sigmoid", "gumbel-softmax"),
    rates: Iterable[float] = (0.1, 0.5, 1.0, 5.0, 20.0, 50.0),
    temperatures: Iterable[float] = (0.1, 0.2, 0.5, 1.0),
    n_samples: int = 10_000,
    n_trials: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Wasserstein-1 distance to the Poisson law, and moments, over a grid of rates and temperatures.

    For every relaxation, temperature and rate (in this nesting order), ``n_trials`` independent trials
    each draw ``n_samples`` relaxed counts and ``n_samples`` exact Poisson counts at the same rate and
    measure their :func:`wasserstein1` distance.

    Parameters
    ----------
    relaxations : iterable of str or type
        Relaxations by name or class; ``"exact"`` compares exact samples with exact samples (the
        sampling-noise floor of the distance).
    rates, temperatures : iterable of float
        The grid. Eat-cubic needs temperatures at most 1.
    n_samples : int
        Sample size per trial, on each side of the distance.
    n_trials : int
        Number of repetitions.
    seed : int
        Seed of the whole table.

    Returns
    -------
    list of dict
        One row per grid point with ``relaxation`` (registry name), ``temperature``, ``rate``;
        ``w1``, the mean over trials of the distance, ``w1_sd`` its standard deviation over trials (0
        for one trial) and ``w1_scaled = w1 / sqrt(rate)`` (the distance in units of the Poisson standard
        deviation); ``mean``, ``mean_se``, ``variance``, ``variance_se`` of all
        ``n_samples * n_trials`` relaxed counts (as in :func:`moments`), the closed forms
        ``mean_closed`` and ``variance_closed`` (None where absent), and the relative departures from
        the Poisson law, ``mean_rel_error = mean / rate - 1`` and ``variance_rel_error = variance / rate
        - 1``.
    """
    rows = []
    with seeded(seed):
        for relaxation in relaxations:
            for temperature in temperatures:
                for rate in rates:
                    law = _law(relaxation, float(rate), temperature)
                    z = _draw(law, (n_samples, n_trials))
                    w1 = wasserstein1(z, law.sample((n_samples, n_trials)))
                    summary = _sample_moments(z)
                    rows.append(
                        {
                            "relaxation": law.name,
                            "temperature": temperature,
                            "rate": rate,
                            "w1": float(w1.mean()),
                            "w1_sd": float(w1.std()) if n_trials > 1 else 0.0,
                            "w1_scaled": float(w1.mean()) / math.sqrt(rate),
                            **summary,
                            "mean_closed": _closed_form(law, "mean"),
                            "variance_closed": _closed_form(law, "variance"),
                            "mean_rel_error": summary["mean"] / rate - 1,
                            "variance_rel_error": summary["variance"] / rate - 1,
                        }
                    )
    return rows


#: Columns of :func:`format_table`: title, row key, format of a value.
_TABLE_COLUMNS = (
    ("relaxation", "relaxation", "{}"),
    ("tau", "temperature", "{:g}"),
    ("rate", "rate", "{:g}"),
    ("W1", "w1", "{:.4f}"),
    ("sd", "w1_sd", "{:.4f}"),
    ("W1/sqrt(rate)", "w1_scaled", "{:.4f}"),
    ("mean", "mean", "{:.4f}"),
    ("closed", "mean_closed", "{:.4f}"),
    ("mean err", "mean_rel_error", "{:+.2%}"),
    ("variance", "variance", "{:.4f}"),
    ("closed", "variance_closed", "{:.4f}"),
    ("var err", "variance_rel_error", "{:+.2%}"),
)


def format_table(rows: Sequence[dict]) -> str:
    """An aligned text table of :func:`fidelity_table` rows, one line per row under a header.

    Missing closed forms show as ``-``; the relative errors are percentages.
    """
    cells = [[title for title, _, _ in _TABLE_COLUMNS]]
    for row in rows:
        cells.append(["-" if row[key] is None else spec.format(row[key]) for _, key, spec in _TABLE_COLUMNS])
    widths = [max(map(len, column)) for column in zip(*cells, strict=True)]
    header, *body = (
        "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])
        for first, *rest in cells
    )
    return "\n".join([header, "-" * len(header), *body])


def gradient_metrics(
    samples: torch.Tensor, exact: torch.Tensor, metric: torch.Tensor | None = None
) -> dict[str, float | list[float]]:
    """Bias energy, noise energy and cosine similarities of sampled gradients against the exact one.

    Parameters
    ----------
    samples : torch.Tensor
        ``N`` sampled gradients ``g_1, ..., g_N``, shape ``(N, D)``, ``N >= 2``.
    exact : torch.Tensor
        The exact gradient ``g*``, shape ``(D,)``, not zero.
    metric : torch.Tensor, optional
        A positive semi-definite ``H``, shape ``(D, D)``; the identity by default.

    Returns
    -------
    dict
        With ``gbar`` the sample mean, ``b = gbar - g*`` and ``Sigma`` the sample covariance (divisor
        ``N - 1``) of a single sampled gradient:

        * ``bias_energy = b' H b / g*' H g*``;
        * ``bias_energy_floor = noise_energy / N``: the expected ``bias_energy`` of an *unbiased*
          estimator with this noise, i.e. the part of ``bias_energy`` that is Monte-Carlo error;
        * ``noise_energy = tr(H Sigma) / g*' H g*``;
        * ``cosine = cos(gbar, g*)`` and ``sample_cosine``, the mean of ``cos(g_n, g*)`` over samples
          (a zero sampled gradient counts as cosine 0);
        * ``mean`` (``gbar``), ``standard_error`` (``sqrt(diag(Sigma) / N)``) and ``exact`` (``g*``),
          as lists.
    """
    samples, exact = (
        torch.as_tensor(samples, dtype=torch.float64),
        torch.as_tensor(exact, dtype=torch.float64),
    )
    n, dims = samples.shape
    if n < 2 or exact.shape != (dims,):
        raise ValueError(
            f"need samples (N >= 2, D) and an exact gradient (D,); got {tuple(samples.shape)} and "
            f"{tuple(exact.shape)}"
        )
    metric = torch.eye(dims, dtype=torch.float64) if metric is None else metric.to(torch.float64)
    mean = samples.mean(0)
    bias = mean - exact
    centred = samples - mean
    covariance = centred.T @ centred / (n - 1)
    scale = exact @ metric @ exact
    noise_energy = float(torch.trace(metric @ covariance) / scale)
    sample_cosine = torch.nn.functional.cosine_similarity(samples, exact.expand_as(samples), dim=1)
    return {
        "bias_energy": float(bias @ metric @ bias / scale),
        "bias_energy_floor": noise_energy / n,
        "noise_energy": noise_energy,
        "cosine": float(torch.nn.functional.cosine_similarity(mean, exact, dim=0)),
        "sample_cosine": float(sample_cosine.mean()),
        "mean": mean.tolist(),
        "standard_error": (covariance.diagonal() / n).sqrt().tolist(),
        "exact": exact.tolist(),
    }


def _sampled_gradients(
    relaxation: Relaxation,
    temperature: float,
    parameter: torch.Tensor,
    to_rate: Callable[[torch.Tensor], torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor],
    n_samples: int,
) -> torch.Tensor:
    """Gradients w.r.t. ``parameter`` (D,) of ``loss(z)``, one per independent draw: shape (N, D).

    ``z`` (N, D) is drawn at ``rate = to_rate(parameter)``; ``loss`` returns one value per draw (N,) or
    per element (N, D), and the gradient of draw ``n`` is that of the sum of its values. Relaxations
    differentiate through ``rsample`` (pathwise). A law without ``rsample`` (``"exact"``) uses the score
    function ``(loss(z_n) - c_n) d log p(z_n) / d parameter``, with the leave-one-out baseline ``c_n``,
    the mean loss of the other ``N - 1`` draws, which leaves the estimator unbiased.
    """
    copies = parameter.detach().expand(n_samples, -1).clone().requires_grad_()
    law = _law(relaxation, to_rate(copies), temperature)
    if law.has_rsample:
        loss(law.rsample()).sum().backward()
    else:
        z = law.sample()
        signal = loss(z).detach()
        signal = signal.unsqueeze(-1) if signal.dim() == 1 else signal
        baseline = (signal.sum(0) - signal) / (n_samples - 1)
        ((signal - baseline) * law.log_prob(z)).sum().backward()
    assert copies.grad is not None  # filled by backward()
    return copies.grad


def poisson_gradient(g: Callable[[torch.Tensor], torch.Tensor], rates: torch.Tensor) -> torch.Tensor:
    """Exact ``d/drate E[g(Z)]`` for ``Z ~ Poisson(rate)``, by a sum over the Poisson support.

    With ``p(k; rate)`` the Poisson pmf, ``d p(k; rate) / drate = p(k; rate) (k / rate - 1)``, so

        ``d/drate E[g(Z)] = sum_k g(k) p(k; rate) (k / rate - 1) = sum_k p(k; rate) (g(k + 1) - g(k))``,

    that is ``E[g(Z + 1)] - E[g(Z)]``. The second form, free of cancellation, is summed over
    ``k = 0 .. K`` where ``P(Z > K) <= 1e-12`` at the largest rate; ``g`` should not grow so fast that
    the neglected tail matters (polynomials are fine).

    Parameters
    ----------
    g : callable
        Elementwise test function on a float64 tensor of counts.
    rates : torch.Tensor
        Rates, shape (D,).

    Returns
    -------
    torch.Tensor
        The D exact derivatives (float64).
    """
    rates = torch.as_tensor(rates, dtype=torch.float64)
    last = relax.poisson_tail_count(float(rates.max()), _SUPPORT_TAIL)
    k = torch.arange(last + 1, dtype=torch.float64).unsqueeze(-1)
    pmf = torch.exp(relax.poisson_log_pmf(k, rates))
    return (pmf * (g(k + 1) - g(k))).sum(0)


def gradient_quality(
    relaxation: Relaxation,
    g: Callable[[torch.Tensor], torch.Tensor],
    rates: torch.Tensor | Sequence[float],
    temperature: float = 0.5,
    n_samples: int = 10_000,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """Quality of sampled gradients of ``E[g(z)]`` w.r.t. the rate, one rate per dimension.

    For each of the D rates, one relaxed count ``z_d`` per sample; the sampled gradient is
    ``d g(z_d) / d rate_d`` through ``rsample``. The exact gradient is that of the Poisson law,
    :func:`poisson_gradient`, so the bias includes the relaxation's own departure from Poisson. The metric
    is the identity.

    For ``"exact"`` (no ``rsample``) the sampled gradient is the score function
    ``(g(z_d) - c_d) (z_d / rate_d - 1)`` with a leave-one-out baseline ``c_d`` (the mean of ``g`` over the
    other draws at the same rate): unbiased, and its noise energy is that of a single draw.

    Parameters
    ----------
    relaxation : str or type
        Relaxation by name or class.
    g : callable
        Elementwise, differentiable test function of the count (e.g. ``lambda z: z * z``).
    rates : torch.Tensor or sequence of float
        The D rates, shape (D,).
    temperature : float
        Temperature of the relaxation (ignored by ``"exact"``).
    n_samples : int
        Number N of sampled gradients, at least 2.
    seed : int
        Seed of the draws.

    Returns
    -------
    dict
        :func:`gradient_metrics` of the N x D sampled gradients against the exact ones.
    """
    _check_n_samples(n_samples)
    rates = torch.as_tensor(rates, dtype=torch.float64).reshape(-1)
    with seeded(seed):
        samples = _sampled_gradients(relaxation, temperature, rates, lambda rate: rate, g, n_samples)
    return gradient_metrics(samples, poisson_gradient(g, rates))


def decoder_problem(
    n_latent: int = 8,
    n_obs: int = 16,
    rate_range: tuple[float, float] = (0.5, 5.0),
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A linear Poisson decoder with its expected loss, gradient and Hessian in closed form.

    Latent counts ``z ~ Poisson(rate)`` (``n_latent`` independent), a fixed dictionary ``Phi``
    (``n_obs x n_latent``, entries ``N(0, 1 / n_obs)`` so that columns have norm about 1) and an
    observation ``x = Phi z0 + 0.1 e`` (``z0`` one Poisson draw, ``e`` standard normal). Rates are
    uniform on ``rate_range``. Parameterised by ``eta = log(rate)`` and with ``c_k = ||phi_k||^2``,

        ``L(eta) = E||x - Phi z||^2 = ||x - Phi rate||^2 + sum_k rate_k c_k``,

    since ``E z = rate`` and ``Var z_k = rate_k``. Its gradient and Hessian w.r.t. ``eta`` are

        ``g* = rate * r`` with ``r = 2 Phi' (Phi rate - x) + c`` (``dL/drate``), and
        ``H = 2 diag(rate) Phi' Phi diag(rate) + diag(g*)``.

    ``H`` is indefinite where some ``g*_k`` is negative enough (far from the optimum).

    Returns
    -------
    dict
        ``phi``, ``x``, ``log_rate``, ``gradient`` (``g*``) and ``hessian`` (``H``), float64 tensors.
    """
    generator = torch.Generator().manual_seed(seed)
    phi = torch.randn(n_obs, n_latent, generator=generator, dtype=torch.float64) / math.sqrt(n_obs)
    low, high = rate_range
    rate = low + (high - low) * torch.rand(n_latent, generator=generator, dtype=torch.float64)
    noise = torch.randn(n_obs, generator=generator, dtype=torch.float64)
    x = phi @ torch.poisson(rate, generator=generator) + 0.1 * noise
    gradient = rate * (2 * phi.T @ (phi @ rate - x) + (phi * phi).sum(0))
    hessian = 2 * rate[:, None] * (phi.T @ phi) * rate[None, :] + torch.diag(gradient)
    return {"phi": phi, "x": x, "log_rate": rate.log(), "gradient": gradient, "hessian": hessian}


def decoder_gradient_quality(
    relaxation: Relaxation,
    temperature: float = 0.5,
    n_latent: int = 8,
    n_obs: int = 16,
    rate_range: tuple[float, float] = (0.5, 5.0),
    n_samples: int = 5_000,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """Quality of sampled gradients on the linear Poisson decoder of :func:`decoder_problem`.

    The problem is generated from ``seed`` (with ``n_latent``, ``n_obs``, ``rate_range``). Each sampled
    gradient is the gradient of ``||x - Phi z||^2`` w.r.t. ``eta = log(rate)`` through one relaxed draw
    ``z`` of all ``n_latent`` counts at ``rate = exp(eta)``; for ``"exact"``, the score function
    ``(L(z) - c) (z - rate)`` with a leave-one-out baseline ``c``. The exact gradient ``g*`` is that of the
    Poisson expected loss.

    The metric is ``|H|``, the Hessian of the exact loss w.r.t. ``eta`` with its eigenvalues replaced by
    their absolute values: ``H`` itself where it is positive definite (near the optimum), and otherwise
    the closest positive semi-definite matrix that keeps its eigenvectors and curvature magnitudes.

    Parameters
    ----------
    relaxation : str or type
        Relaxation by name or class.
    temperature : float
        Temperature of the relaxation (ignored by ``"exact"``).
    n_latent, n_obs : int
        Sizes of ``z`` and ``x``.
    rate_range : (float, float)
        Rates are drawn uniformly in this range.
    n_samples : int
        Number N of sampled gradients, at least 2.
    seed : int
        Seed of the problem and of the draws.

    Returns
    -------
    dict
        :func:`gradient_metrics` of the N x ``n_latent`` sampled gradients.
    """
    _check_n_samples(n_samples)
    problem = decoder_problem(n_latent, n_obs, rate_range, seed)
    phi, x = problem["phi"], problem["x"]

    def squared_error(z: torch.Tensor) -> torch.Tensor:
        return (x - z @ phi.T).pow(2).sum(-1)

    with seeded(seed):
        samples = _sampled_gradients(
            relaxation, temperature, problem["log_rate"], torch.exp, squared_error, n_samples
        )
    eigenvalues, eigenvectors = torch.linalg.eigh(problem["hessian"])
    metric = eigenvectors @ torch.diag(eigenvalues.abs()) @ eigenvectors.T
    return gradient_metrics(samples, problem["gradient"], metric)
