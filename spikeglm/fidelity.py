"""How faithfully a relaxation reproduces the Poisson law and its gradients.

Distributional fidelity
    :func:`wasserstein1` between relaxed and exact Poisson samples at the same rate, and the empirical
    moments of the relaxed count against their closed forms (:func:`moments`, :func:`fidelity_table`).

Gradient quality
    Sampled gradients are compared with an exact gradient ``g*`` (:func:`gradient_metrics`): with ``gbar``
    the mean of the sampled gradients, ``Sigma`` the covariance of one sampled gradient, ``b = gbar - g*``
    its bias and a positive semi-definite metric ``H``,

    * bias energy ``b' H b / g*' H g*`` (0 for an unbiased estimator),
    * noise energy ``tr(H Sigma) / g*' H g*`` (the variance of one sample, in the same units),
    * cosine similarity ``cos(gbar, g*)``, and the mean cosine of single samples with ``g*``.

    Two problems have exact gradients: a test function ``g`` of the count, whose ``d/drate E[g(Z)]`` is a
    sum over the Poisson support (:func:`gradient_quality`), and a linear Poisson decoder with a
    quadratic loss in closed form (:func:`decoder_gradient_quality`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from spikeglm import relax

__all__ = [
    "decoder_gradient_quality",
    "fidelity_table",
    "format_table",
    "gradient_metrics",
    "gradient_quality",
    "moments",
    "wasserstein1",
]


def wasserstein1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1-D Wasserstein-1 distance between two equal-size samples along dimension 0.

    For empirical laws of ``n`` points each it is the mean absolute difference of the sorted samples,
    ``mean_i |x_(i) - y_(i)|``; other dimensions are separate samples (one distance each).
    """
    if x.shape != y.shape:
        raise ValueError(f"samples must have the same shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.sort(dim=0).values - y.sort(dim=0).values).abs().mean(dim=0)


def _law(relaxation: str, rate: torch.Tensor, temperature: float) -> relax.PoissonRelaxation:
    cls = relax.get(relaxation)
    return cls(rate) if cls is relax.ExactPoisson else cls(rate, temperature=temperature)


def _draw(law: relax.PoissonRelaxation, shape: tuple) -> torch.Tensor:
    return law.rsample(shape) if law.has_rsample else law.sample(shape)


def _closed_form(law: relax.PoissonRelaxation, name: str) -> float | None:
    try:
        return float(getattr(law, name))
    except NotImplementedError:
        return None


def moments(
    relaxation: str, rate: float, temperature: float, n_samples: int = 100_000, seed: int = 0
) -> dict:
    """Empirical mean and variance of relaxed counts, with Monte-Carlo standard errors and closed forms.

    Returns a dict with ``mean``, ``mean_se``, ``variance``, ``variance_se`` (from the fourth central
    moment), ``mean_closed`` and ``variance_closed`` (None where the relaxation has no closed form).
    """
    law = _law(relaxation, torch.tensor(float(rate), dtype=torch.float64), temperature)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = _draw(law, (n_samples,)).detach()
    centred = z - z.mean()
    variance = float(centred.pow(2).mean())
    fourth = float(centred.pow(4).mean())
    return {
        "mean": float(z.mean()),
        "mean_se": math.sqrt(variance / n_samples),
        "variance": variance,
        "variance_se": math.sqrt(max(fourth - variance**2, 0.0) / n_samples),
        "mean_closed": _closed_form(law, "mean"),
        "variance_closed": _closed_form(law, "variance"),
    }


def fidelity_table(
    relaxations: Iterable[str] = ("eat-cubic", "eat-sigmoid", "gumbel-softmax"),
    rates: Iterable[float] = (0.1, 0.5, 1.0, 5.0, 20.0, 50.0),
    temperatures: Iterable[float] = (0.1, 0.2, 0.5, 1.0),
    n_samples: int = 10_000,
    n_trials: int = 5,
    seed: int = 0,
) -> list[dict]:
    """Wasserstein-1 distance to the Poisson law and moments, over a grid of rates and temperatures.

    For each relaxation, rate and temperature: ``n_trials`` times, ``n_samples`` relaxed counts and as
    many exact Poisson counts at the same rate; ``w1`` is the mean over trials of their Wasserstein-1
    distance (``w1_sd`` its spread, ``w1_scaled = w1 / sqrt(rate)``, which puts rates on one scale), and
    ``mean``/``variance`` are taken over all relaxed counts, beside the closed forms (None if absent)
    and ``mean_rel_error = mean / rate - 1``.
    """
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in relaxations:
            for tau in temperatures:
                for rate in rates:
                    law = _law(name, torch.tensor(float(rate), dtype=torch.float64), tau)
                    z = _draw(law, (n_samples, n_trials)).detach()
                    w1 = wasserstein1(z, law.sample((n_samples, n_trials)))
                    rows.append(
                        {
                            "relaxation": name,
                            "temperature": tau,
                            "rate": rate,
                            "w1": float(w1.mean()),
                            "w1_sd": float(w1.std()) if n_trials > 1 else 0.0,
                            "w1_scaled": float(w1.mean()) / math.sqrt(rate),
                            "mean": float(z.mean()),
                            "mean_closed": _closed_form(law, "mean"),
                            "mean_rel_error": float(z.mean()) / rate - 1,
                            "variance": float(z.var()),
                            "variance_closed": _closed_form(law, "variance"),
                        }
                    )
    return rows


def format_table(rows: list[dict]) -> str:
    """An aligned text table of :func:`fidelity_table` rows."""

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = (
        f"{'relaxation':<15} {'tau':>4} {'rate':>6} {'W1':>8} {'W1/sqrt':>8} {'mean':>9} "
        f"{'closed':>9} {'mean err':>8} {'variance':>9} {'closed':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['relaxation']:<15} {r['temperature']:>4g} {r['rate']:>6g} {r['w1']:>8.4f} "
            f"{r['w1_scaled']:>8.4f} {r['mean']:>9.4f} {number(r['mean_closed'], '9.4f'):>9} "
            f"{100 * r['mean_rel_error']:>7.2f}% {r['variance']:>9.4f} "
            f"{number(r['variance_closed'], '9.4f'):>9}"
        )
    return "\n".join(lines)


def gradient_metrics(samples: torch.Tensor, exact: torch.Tensor, metric: torch.Tensor | None = None) -> dict:
    """Bias energy, noise energy and cosine similarities of sampled gradients (module docstring).

    Parameters
    ----------
    samples : torch.Tensor
        Sampled gradients, shape (N, D).
    exact : torch.Tensor
        The exact gradient ``g*``, shape (D,).
    metric : torch.Tensor, optional
        Positive semi-definite ``H`` (D, D); the identity by default.

    Returns
    -------
    dict
        ``bias_energy``, ``noise_energy``, ``cosine``, ``sample_cosine``, and the ``mean`` sampled
        gradient with its Monte-Carlo ``standard_error`` per coordinate (lists).
    """
    samples, exact = samples.double(), exact.double()
    metric = torch.eye(exact.numel(), dtype=torch.float64) if metric is None else metric.double()
    mean = samples.mean(0)
    bias = mean - exact
    centred = samples - mean
    covariance = centred.T @ centred / max(samples.shape[0] - 1, 1)
    scale = exact @ metric @ exact
    per_sample = torch.nn.functional.cosine_similarity(samples, exact.expand_as(samples), dim=1)
    return {
        "bias_energy": float(bias @ metric @ bias / scale),
        "noise_energy": float(torch.trace(metric @ covariance) / scale),
        "cosine": float(torch.nn.functional.cosine_similarity(mean, exact, dim=0)),
        "sample_cosine": float(per_sample.mean()),
        "mean": mean.tolist(),
        "standard_error": (covariance.diagonal() / samples.shape[0]).sqrt().tolist(),
    }


def _per_sample_gradients(
    relaxation: str, temperature: float, parameter: torch.Tensor, n_samples: int, loss, to_rate
) -> torch.Tensor:
    """Gradients of ``loss(z)`` w.r.t. ``parameter`` for ``n_samples`` independent draws, shape (N, D).

    Relaxations differentiate through ``rsample``; ``"exact"`` uses the score function
    ``loss(z) * d log p(z) / d parameter``.
    """
    copies = parameter.detach().expand(n_samples, -1).clone().requires_grad_()
    law = _law(relaxation, to_rate(copies), temperature)
    if law.has_rsample:
        loss(law.rsample()).sum().backward()
    else:
        z = law.sample()
        signal, log_p = loss(z).detach(), law.log_prob(z)
        if signal.dim() < log_p.dim():  # one loss per draw, shared by its elements
            signal = signal.unsqueeze(-1)
        (signal * log_p).sum().backward()
    return copies.grad


def gradient_quality(
    relaxation: str,
    g: Callable[[torch.Tensor], torch.Tensor],
    rates: torch.Tensor | Iterable[float],
    temperature: float = 0.5,
    n_samples: int = 10_000,
    seed: int = 0,
) -> dict:
    """Quality of the sampled gradient of ``E[g(z)]`` w.r.t. each rate (metric: identity).

    The exact gradient is ``d/drate E[g(Z)] = sum_k g(k) p(k; rate) (k / rate - 1)`` over the Poisson
    support, truncated where the tail is below 1e-12 (it equals ``E[g(Z + 1)] - E[g(Z)]``). Sampled
    gradients come from ``rsample`` (pathwise) or, for ``"exact"``, the score function.

    Returns the :func:`gradient_metrics` dict plus the ``exact`` gradient (a list).
    """
    rates = torch.as_tensor(
        list(rates) if not isinstance(rates, torch.Tensor) else rates, dtype=torch.float64
    )
    k = torch.arange(relax.poisson_tail_count(float(rates.max()), 1e-12) + 2, dtype=torch.float64)
    log_pmf = torch.xlogy(k[:, None], rates) - rates - torch.lgamma(k[:, None] + 1)
    exact = (g(k)[:, None] * log_pmf.exp() * (k[:, None] / rates - 1)).sum(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = _per_sample_gradients(relaxation, temperature, rates, n_samples, g, lambda r: r)
    return {**gradient_metrics(samples, exact), "exact": exact.tolist()}


def decoder_problem(
    n_latent: int = 8, n_obs: int = 16, rate_range: tuple[float, float] = (0.5, 5.0), seed: int = 0
) -> dict:
    """A linear Poisson decoder ``x ~ Phi z``, ``z ~ Poisson(rate)``, with its loss in closed form.

    ``L(eta) = E||x - Phi z||^2 = ||x - Phi rate||^2 + sum_k rate_k ||phi_k||^2`` with ``rate = exp(eta)``.
    Returns ``phi``, ``x``, ``log_rate`` and the exact ``gradient`` and ``hessian`` w.r.t. ``eta``:
    ``grad = rate * (2 Phi'(Phi rate - x) + c)`` and
    ``H = diag(rate) 2 Phi'Phi diag(rate) + diag(grad)``, with ``c_k = ||phi_k||^2``.
    """
    generator = torch.Generator().manual_seed(seed)
    phi = torch.randn(n_obs, n_latent, generator=generator, dtype=torch.float64) / math.sqrt(n_obs)
    low, high = rate_range
    rate = low + (high - low) * torch.rand(n_latent, generator=generator, dtype=torch.float64)
    x = phi @ torch.poisson(rate, generator=generator) + 0.1 * torch.randn(
        n_obs, generator=generator, dtype=torch.float64
    )
    norms = (phi * phi).sum(0)
    grad_rate = 2 * phi.T @ (phi @ rate - x) + norms
    gradient = rate * grad_rate
    hessian = rate[:, None] * (2 * phi.T @ phi) * rate[None, :] + torch.diag(gradient)
    return {"phi": phi, "x": x, "log_rate": rate.log(), "gradient": gradient, "hessian": hessian}


def decoder_gradient_quality(
    relaxation: str,
    temperature: float = 0.5,
    n_latent: int = 8,
    n_obs: int = 16,
    rate_range: tuple[float, float] = (0.5, 5.0),
    n_samples: int = 5_000,
    seed: int = 0,
) -> dict:
    """Quality of sampled gradients on the linear Poisson decoder (:func:`decoder_problem`).

    Each sampled gradient is that of ``||x - Phi z||^2`` w.r.t. ``eta = log rate`` through one relaxed
    draw ``z``. The metric is the Hessian of the exact loss made positive semi-definite by taking the
    absolute values of its eigenvalues (the Hessian itself may be indefinite away from the optimum).
    """
    problem = decoder_problem(n_latent, n_obs, rate_range, seed)
    phi, x = problem["phi"], problem["x"]

    def loss(z: torch.Tensor) -> torch.Tensor:
        return (x - z @ phi.T).pow(2).sum(-1)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = _per_sample_gradients(
            relaxation, temperature, problem["log_rate"], n_samples, loss, torch.exp
        )
    eigenvalues, vectors = torch.linalg.eigh(problem["hessian"])
    metric = vectors @ torch.diag(eigenvalues.abs()) @ vectors.T
    return gradient_metrics(samples, problem["gradient"], metric)
