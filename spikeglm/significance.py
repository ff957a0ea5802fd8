"""Which couplings are real: standard errors of the coupling strengths, Wald tests and FDR control.

With no hidden neuron a POGLM is a Poisson GLM, and each postsynaptic neuron's parameters (its bias and
its weights from every presynaptic neuron) enter only its own log-likelihood. The observed Fisher
information is therefore block diagonal, one block of ``1 + N * n_basis`` parameters per postsynaptic
neuron::

    I_n = sum_t c[t, n] x_t x_t^T,    x_t = (1, history features of every neuron at bin t),
    c[t, n] = -d^2 log p(y[t, n] | eta) / d eta^2  at the fitted linear predictor eta[t, n]

and no dense Hessian of all the parameters is ever built. The covariance of neuron ``n``'s estimates is
``I_n^-1``; a coupling's strength ``sum_b W[n, m, b] * sum_l basis[b, l]`` is linear in them, so its
standard error is exact to first order (the usual asymptotics of maximum likelihood).

:func:`wald_table` turns strengths and standard errors into a table of every pair: Wald ``z``, two-sided
``p``, Benjamini-Hochberg ``q`` over the couplings between different neurons (self-couplings, almost
always inhibitory refractoriness, get their own ``q``), the decision at ``alpha`` and the sign.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from spikeglm.basis import history
from spikeglm.model import LINKS, Network
from spikeglm.relax import poisson_log_pmf
from spikeglm.segments import Segments

#: The columns of :func:`wald_table`.
COLUMNS = ("pre", "post", "strength", "se", "z", "p", "q", "significant", "sign", "self")


def se_to_json(se: np.ndarray) -> list[list[float | None]]:
    """Standard errors as nested lists for JSON (model files, metadata), null where infinite."""
    return [[float(v) if np.isfinite(v) else None for v in row] for row in se]


def se_from_json(rows: list[list[float | None]]) -> np.ndarray:
    """The inverse of :func:`se_to_json`."""
    return np.array([[np.inf if v is None else v for v in row] for row in rows], dtype=float)


def strength_se(network: Network, data: Segments, max_elements: int = 2**25) -> np.ndarray:
    """Standard errors of the coupling strengths of a fitted GLM (no hidden neuron), shape (post, pre).

    Parameters
    ----------
    network : Network
        Fitted to ``data`` by maximum likelihood (e.g. :func:`spikeglm.fit.solve_glm`).
    data : Segments
        The counts the network was fitted to.
    max_elements : int
        Bins x neurons x parameters computed at once (bounds the memory: 256 MB at the default).

    Returns
    -------
    numpy.ndarray
        ``se[post, pre]``; ``inf`` for a neuron whose information matrix is singular (e.g. one that never
        fires, or one whose presynaptic neuron is silent).
    """
    if network.n_hidden:
        raise ValueError("strength_se covers networks without hidden neurons")
    n, n_basis = network.n_neurons, network.weight.shape[-1]
    information = _information(network, data, max(1, max_elements // (n * (1 + n * n_basis))))
    sums = network.basis_matrix.double().sum(dim=1).cpu().numpy()  # strength = weight . sums
    se = np.full((n, n), np.inf)
    for post in range(n):
        try:
            covariance = np.linalg.inv(information[post])
        except np.linalg.LinAlgError:
            continue
        for pre in range(n):
            block = slice(1 + pre * n_basis, 1 + (pre + 1) * n_basis)
            variance = sums @ covariance[block, block] @ sums
            se[post, pre] = np.sqrt(variance) if variance > 0 else np.inf
    return se


@torch.no_grad()
def _information(network: Network, data: Segments, part_bins: int) -> np.ndarray:
    """The blocks ``I_n`` of the observed Fisher information, shape (N, P, P) with P = 1 + N * n_basis."""
    link = LINKS[network.link_name]
    weight = network.weight.detach().double()
    bias = network.bias.detach().double()
    basis = network.basis_matrix.double()
    n = network.n_neurons
    size = 1 + n * weight.shape[-1]
    total = torch.zeros(n, size, size, dtype=torch.float64, device=bias.device)
    for index in data.groups(part_bins):
        batch = data.batch(index, dtype=torch.float64, device=bias.device)
        features = history(batch.visible, basis).flatten(-2)  # (segments, bins, N * n_basis)
        rows = torch.cat([torch.ones_like(features[..., :1]), features], dim=-1).reshape(-1, size)
        with torch.enable_grad():
            predictor = (bias + features @ weight.flatten(1).T).reshape(-1, n).requires_grad_()
            log_p = poisson_log_pmf(batch.visible.reshape(-1, n), link(predictor)).sum()
            (slope,) = torch.autograd.grad(log_p, predictor, create_graph=True)
            # log p is a sum of one term per entry, so this gradient is each entry's own curvature
            (curvature,) = torch.autograd.grad(slope.sum(), predictor)
        weights = -curvature
        if batch.scored is not None:
            weights = weights * batch.scored.reshape(-1, 1)
        total += torch.einsum("tn,ti,tj->nij", weights, rows, rows)
    return total.cpu().numpy()


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of independent or positively dependent tests.

    Examples
    --------
    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    q = np.empty_like(p)
    q[order] = adjusted
    return q


def wald_table(strength: np.ndarray, se: np.ndarray, labels: list[str], alpha: float = 0.05) -> np.ndarray:
    """Wald tests of every coupling ``strength[post, pre]``, with FDR control at ``alpha``.

    Returns
    -------
    numpy.ndarray
        A structured array, one row per (pre, post) pair, with the fields of :data:`COLUMNS`: the
        labels, strength, standard error, Wald z, two-sided p, Benjamini-Hochberg q (computed apart
        for the self-couplings), ``significant`` (q < alpha), ``sign`` (+1 excitatory, -1 inhibitory,
        0 if not significant) and ``self``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    n = len(labels)
    post, pre = np.divmod(np.arange(n * n), n)
    values = strength[post, pre]
    errors = se[post, pre]
    z = np.divide(values, errors, out=np.zeros_like(values), where=np.isfinite(errors) & (errors > 0))
    p = 2 * norm.sf(np.abs(z))
    own = pre == post
    q = np.empty_like(p)
    q[~own], q[own] = benjamini_hochberg(p[~own]), benjamini_hochberg(p[own])
    significant = q < alpha
    longest = max(len(label) for label in labels)
    table = np.empty(
        n * n,
        dtype=[
            ("pre", f"U{longest}"),
            ("post", f"U{longest}"),
            ("strength", float),
            ("se", float),
            ("z", float),
            ("p", float),
            ("q", float),
            ("significant", bool),
            ("sign", int),
            ("self", bool),
        ],
    )
    names = np.array(labels)
    table["pre"], table["post"] = names[pre], names[post]
    table["strength"], table["se"], table["z"], table["p"], table["q"] = values, errors, z, p, q
    table["significant"], table["sign"], table["self"] = significant, np.sign(values) * significant, own
    return table
