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

With hidden neurons the likelihood is an integral over their counts, and a variational fit gives no
closed form of its observed information: :func:`spikeglm.bootstrap.bootstrap_se` takes the standard
errors from refits of the estimator to recordings simulated from the fit instead.

:func:`wald_table` turns strengths and standard errors into a table of every pair: Wald ``z``, two-sided
``p``, Benjamini-Hochberg ``q`` over the couplings between different neurons (self-couplings, almost
always inhibitory refractoriness, get their own ``q``), the decision at ``alpha`` and the sign.

The Wald tests ask whether a coupling differs from zero in a GLM of the recorded neurons. Input shared
with unrecorded neurons makes pairs co-fire, and the GLM reads that as couplings: the tests are then
right about the model but wrong about synapses. :func:`jitter_table` asks a narrower question, whether
the postsynaptic neuron follows the presynaptic spikes more closely in time than the slow co-modulation
of the two explains: the presynaptic spikes are jittered within short intervals (keeping every slower
rate change), the pair's coupling is refitted to each jittered copy, and the observed coupling is
compared with the refitted ones.

:func:`coupling_tests` runs either test on a connectivity (read through :class:`Couplings`, which
:class:`spikeglm.Connectivity` is); :meth:`spikeglm.Connectivity.significance` calls it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
from scipy.stats import false_discovery_control, norm, t

from spikeglm.basis import history
from spikeglm.counts import SpikeCounts
from spikeglm.inference.newton import (
    INFORMATION_BINS,
    design_columns,
    information_work,
    observed_information,
    shared_columns,
)
from spikeglm.inference.penalty import Penalty
from spikeglm.inference.stopping import spikes_per_bin
from spikeglm.model import Network, link_derivatives, observed_curvature
from spikeglm.progress import progress_bar
from spikeglm.provenance import check_fitted_on
from spikeglm.segments import Batch, Segments
from spikeglm.timeunits import seconds

#: The columns of :func:`wald_table` and :func:`jitter_table`.
COLUMNS = ("pre", "post", "strength", "se", "z", "p", "q", "significant", "sign", "self")

#: Jittered copies of each presynaptic neuron in :func:`jitter_table` by default.
N_JITTER = 99


def se_to_json(se: np.ndarray) -> list[list[float | None]]:
    """Standard errors as nested lists for JSON (model files, metadata), null where infinite."""
    return [[float(v) if np.isfinite(v) else None for v in row] for row in se]


def se_from_json(rows: list[list[float | None]]) -> np.ndarray:
    """The inverse of :func:`se_to_json`."""
    return np.array([[np.inf if v is None else v for v in row] for row in rows], dtype=float)


def strength_se(
    network: Network,
    data: Segments,
    max_elements: int | None = None,
    offset: Callable[[Batch], torch.Tensor] | None = None,
    penalty: Penalty | None = None,
) -> np.ndarray:
    """Standard errors of the coupling strengths of a fitted GLM (no hidden neuron), shape (post, pre).

    Parameters
    ----------
    network : Network
        Fitted to ``data`` by maximum likelihood (e.g. :func:`spikeglm.inference.solve_glm`). Its
        covariates' weights, where it has covariates (``data`` carries their columns), are estimated
        with the couplings, and the errors account for them.
    data : Segments
        The counts the network was fitted to.
    max_elements : int, optional
        Bins x (parameters + neurons) computed at once (float64), which bounds the memory beyond the
        information's blocks (:func:`~spikeglm.inference.newton.observed_information`). Default: 2**25
        (256 MB) on the CPU; on a CUDA device, an eighth of its free memory, so that each chunk keeps it
        busy.
    offset : callable, optional
        ``offset(batch)``, a known term of every neuron's predictor in the batch's bins, shape (segments,
        bins, N): for a network with latent factors, the drive of their posterior mean path. The errors
        are then those of the couplings given that drive: the path's own uncertainty is not carried
        into them (the parametric bootstrap carries it).
    penalty : Penalty, optional
        The penalty the network was fitted under (:class:`~spikeglm.inference.penalty.Ridge`): its
        curvature joins the information, which makes the errors those of the posterior under the
        matching Gaussian prior of the couplings.

    Returns
    -------
    numpy.ndarray
        ``se[post, pre]``; ``inf`` for a neuron whose information matrix is singular (e.g. one that never
        fires, or one whose presynaptic neuron is silent).
    """
    return standard_errors(network, data, max_elements, offset, penalty)[0]


def standard_errors(
    network: Network,
    data: Segments,
    max_elements: int | None = None,
    offset: Callable[[Batch], torch.Tensor] | None = None,
    penalty: Penalty | None = None,
    kernels: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """:func:`strength_se`, and the standard errors of the covariates' kernels from the same information.

    ``kernels`` holds each covariate's functions over its axis, (n_features, points), in the order of the
    network's covariate columns (:func:`spikeglm.covariates.kernel_functions`); each kernel's errors are
    returned as (neurons, points), ``inf`` where a neuron's information is singular.
    """
    if network.n_hidden:
        raise ValueError("strength_se covers networks without hidden neurons")
    if network.n_latent and offset is None:
        raise ValueError("strength_se of a network with latent factors needs their drive (offset)")
    n, n_basis = network.n_neurons, network.basis.n_coupling
    size, shared = 1 + n * n_basis, shared_columns(network)
    if max_elements is None:
        max_elements = _chunk_elements(network.bias.device)
    part_bins = max(1, min(INFORMATION_BINS, max_elements // (size + network.n_covariates + n)))
    with torch.no_grad():
        information = observed_information(network, data, part_bins, offset).cpu().numpy()
    if penalty is not None:  # the information of the penalised likelihood (in nats, not per spike)
        spikes = float(spikes_per_bin(data)) * data.n_scored * data.n_units
        for post in range(n):
            information[post, :size, :size] += spikes * penalty.curvature(n, n_basis, post).numpy()
    sums = network.basis_matrix.double().sum(dim=1).cpu().numpy()  # strength = weight . sums
    own = np.arange(shared, design_columns(network))  # a neuron's own-history functions (if any)
    se = np.full((n, n), np.inf)
    kernels = kernels or []
    kernel_se = [np.full((n, functions.shape[1]), np.inf) for functions in kernels]
    for post in range(n):
        try:
            covariance = np.linalg.inv(information[post])
        except np.linalg.LinAlgError:
            continue
        for pre in range(n):
            filter_block = np.arange(1 + pre * n_basis, 1 + (pre + 1) * n_basis)
            if pre == post:
                filter_block = np.concatenate([filter_block, own])
            functions = sums[: len(filter_block)]
            variance = functions @ covariance[np.ix_(filter_block, filter_block)] @ functions
            se[post, pre] = np.sqrt(variance) if variance > 0 else np.inf
        first = size
        for functions, errors in zip(kernels, kernel_se, strict=True):
            block = slice(first, first + functions.shape[0])
            variance = np.einsum("fp,fg,gp->p", functions, covariance[block, block], functions)
            errors[post] = np.where(variance > 0, np.sqrt(np.maximum(variance, 0)), np.inf)
            first += functions.shape[0]
    return se, kernel_se


#: The most seconds of one CPU core that a fit spends on its standard errors under
#: ``standard_errors="auto"`` (:func:`information_seconds`).
CPU_BUDGET = 3 * 3600.0
#: One CPU core's rate of the information's multiply-adds
#: (:func:`~spikeglm.inference.newton.information_work`), measured with one thread on the 2-core machine
#: of docs/benchmarks.md: 8.7e9 a second at 300 neurons, 1.0e10 at 600, 4.4e9 at 1,000.
CPU_RATE = 5e9


def information_seconds(network: Network, data: Segments) -> float:
    """The seconds of one CPU core that :func:`standard_errors` would take: the information's pass
    (:func:`~spikeglm.inference.newton.information_work` at :data:`CPU_RATE`), about 4 minutes for 300
    neurons firing at 5 Hz over an hour at 5 ms and 2.4 hours for 1,000 (measured: about 2); and the
    inversion of its blocks (``N P^3`` at 1e10 a second, a minute or two at 1,000 neurons)."""
    size = design_columns(network)
    return information_work(network, data) / CPU_RATE + network.n_neurons * size**3 / 1e10


def _chunk_elements(device: torch.device) -> int:
    """The default ``max_elements`` of :func:`standard_errors` on ``device``."""
    if device.type != "cuda":
        return 2**25
    free, _ = torch.cuda.mem_get_info(device)
    return max(2**25, free // 8 // 8)


class Couplings(Protocol):
    """What the tests read of a coupling structure: a :class:`spikeglm.Connectivity` is one."""

    @property
    def weights(self) -> np.ndarray: ...

    @property
    def basis_matrix(self) -> np.ndarray: ...

    @property
    def bias(self) -> np.ndarray: ...

    @property
    def labels(self) -> list[str]: ...

    @property
    def metadata(self) -> dict[str, Any]: ...

    @property
    def strength(self) -> np.ndarray: ...

    @property
    def n_hidden(self) -> int: ...


def coupling_tests(
    conn: Couplings, alpha: float = 0.05, method: str = "wald", **options: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """Test every coupling of ``conn``: the table of :meth:`spikeglm.Connectivity.significance` and the
    test's settings, as :meth:`spikeglm.Connectivity.save` writes them.

    Parameters
    ----------
    conn : Connectivity
        The couplings; the Wald test reads the standard errors of its metadata (``strength_se``).
    alpha, method, **options
        As :meth:`spikeglm.Connectivity.significance`.

    Returns
    -------
    table : numpy.ndarray
        The rows of :data:`COLUMNS`, one per (pre, post) pair.
    settings : dict
        JSON values: ``test`` (the method), ``alpha`` and, for the jitter test, ``n_jitter``,
        ``jitter_bins``, ``pvalue`` and ``seed``.
    """
    if method == "jitter":
        return _jitter_tests(conn, alpha, **options)
    if method != "wald":
        raise ValueError(f"significance: unknown method {method!r}; available: 'wald', 'jitter'")
    if options:
        raise ValueError(f"significance: the Wald test takes no options, got {', '.join(options)}")
    se = conn.metadata.get("strength_se")
    if se is None and conn.metadata.get("penalty") == "group-lasso":
        raise ValueError(
            "significance: a group-lasso fit has no standard errors, and no Wald test: the couplings it "
            "set to zero have no sampling distribution to test against; fit with penalty='ridge' or none "
            "(--penalty) for Wald tests"
        )
    if se is None:
        raise ValueError(
            "significance: this connectivity carries no standard errors. A fit without hidden neurons has "
            "them unless standard_errors=False, or 'auto' found them too costly for its size (the fit then "
            "warned): refit with standard_errors=True (--standard-errors yes), or test with "
            "method='jitter'. For fits with hidden neurons, run spikeglm.bootstrap_se(model, counts) or fit "
            "with --bootstrap N"
        )
    se = se_from_json(se)
    if se.shape != conn.strength.shape:
        raise ValueError(f"significance: strength_se has shape {se.shape}, strength {conn.strength.shape}")
    return wald_table(conn.strength, se, conn.labels, alpha), {"test": "wald", "alpha": float(alpha)}


def _jitter_tests(
    conn: Couplings,
    alpha: float,
    counts: SpikeCounts | None = None,
    n_jitter: int = N_JITTER,
    jitter: int | None = None,
    pvalue: str = "normal",
    seed: int = 0,
    drive: np.ndarray | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    labels, metadata = conn.labels, conn.metadata
    if conn.n_hidden:
        raise ValueError(
            f"significance: the jitter test needs a fit without hidden neurons; this one has {conn.n_hidden}"
        )
    known = [name for name in ("latent", "covariates") if metadata.get(name)]
    if known and drive is None:
        what = {"latent": "latent factors", "covariates": "covariates"}
        raise ValueError(
            f"significance: this fit has {' and '.join(what[k] for k in known)}, which the jitter test's "
            "null model must include: pass drive=model.known_drive(counts, covariates), their drive"
        )
    if counts is None:
        raise ValueError("significance: the jitter test needs counts=, the counts of the fit")
    if list(counts.unit_ids) != labels:
        missing = [label for label in labels if label not in list(counts.unit_ids)]
        raise ValueError(
            "significance: counts must hold the connectivity's units in its order "
            f"({', '.join(labels)}); "
            + (f"missing {', '.join(missing)}" if missing else f"got {', '.join(counts.unit_ids)}")
        )
    bin_size = metadata.get("bin_size")
    if bin_size is not None and not np.isclose(seconds(bin_size, "bin_size"), counts.bin_seconds):
        raise ValueError(f"significance: counts are binned at {counts.bin_size}, the fit at {bin_size}")
    check_fitted_on(metadata.get("fitted_on"), counts, "the jitter test")
    jitter = conn.basis_matrix.shape[1] if jitter is None else int(jitter)
    table = jitter_table(
        conn.weights,
        conn.basis_matrix,
        conn.bias,
        metadata.get("link", "softplus"),
        counts.counts,
        labels,
        alpha=alpha,
        n_jitter=n_jitter,
        jitter=jitter,
        pvalue=pvalue,
        seed=seed,
        drive=drive,
        progress=progress,
    )
    settings = {"n_jitter": int(n_jitter), "jitter_bins": jitter, "pvalue": pvalue, "seed": int(seed)}
    if drive is not None:
        settings["drive"] = "given (the covariates' drive and the latent factors' posterior mean drive)"
    return table, {"test": "jitter", "alpha": float(alpha), **settings}


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of independent or positively dependent tests.

    The adjustment is scipy's (:func:`scipy.stats.false_discovery_control`, ``method="bh"``). A NaN
    p-value (a test not made) has a NaN q-value and does not count among the tests; an empty array gives
    an empty array.

    Examples
    --------
    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    >>> benjamini_hochberg(np.array([0.01, np.nan, 0.02])).tolist()
    [0.02, nan, 0.02]
    """
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    made = ~np.isnan(p)
    q[made] = false_discovery_control(p[made], method="bh")
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
    _check_alpha(alpha)
    z = np.divide(strength, se, out=np.zeros_like(strength), where=np.isfinite(se) & (se > 0))
    return _table(strength, se, z, 2 * norm.sf(np.abs(z)), labels, alpha)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")


def _table(
    strength: np.ndarray, se: np.ndarray, z: np.ndarray, p: np.ndarray, labels: list[str], alpha: float
) -> np.ndarray:
    """The rows of :data:`COLUMNS` from (post, pre) matrices of the tests, with BH q-values."""
    n = len(labels)
    post, pre = np.divmod(np.arange(n * n), n)
    values = strength[post, pre]
    p = p[post, pre]
    own = pre == post
    q = np.empty_like(p)
    for part in (~own, own):  # NaN p: a pair the test does not cover, NaN q
        q[part] = benjamini_hochberg(p[part])
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
    table["strength"], table["se"], table["z"] = values, se[post, pre], z[post, pre]
    table["p"], table["q"] = p, q
    table["significant"], table["self"] = significant, own
    table["sign"] = np.where(significant, np.sign(z[post, pre]), 0)  # the direction the test found
    return table


# ---------------------------------------------------------------------- jitter tests
#: Largest magnitude a refitted coupling weight may take (a pair whose postsynaptic neuron never fires
#: after the presynaptic spikes would otherwise run off towards minus infinity, gaining ever less).
_MAX_WEIGHT = 30.0
#: Linear predictor of the padding in the surrogates' bins: a rate of ~1e-22, which adds nothing.
_PADDING = -50.0


def jitter_table(
    weights: np.ndarray,
    basis_matrix: np.ndarray,
    bias: np.ndarray,
    link: str,
    counts: np.ndarray,
    labels: list[str],
    alpha: float = 0.05,
    n_jitter: int = N_JITTER,
    jitter: int | None = None,
    pvalue: str = "normal",
    seed: int = 0,
    max_elements: int = 2**22,
    drive: np.ndarray | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Spike-time jitter tests of every coupling of a fitted GLM (no hidden neuron), with FDR control.

    For each pair (pre -> post):

    1. The null model: the fit without that coupling. Its other parameters (the postsynaptic bias,
       self-history and couplings from the other neurons) are moved to the fit with ``W[post, pre] = 0``
       by one Newton step from the full fit (using that neuron's block of the observed information), so
       that they do not depend on the presynaptic spike times.
    2. The statistic: the log-likelihood gain of refitting only ``W[post, pre, :]`` on top of the null
       model, for the observed presynaptic spikes and for ``n_jitter`` jittered copies of them.
    3. Interval jitter: the trial is cut into fixed intervals of ``2 * jitter + 1`` bins and every
       spike moves to a uniformly drawn bin of its own interval. The spike count of each interval, and
       with it every rate modulation slower than the interval (slow shared input), is kept; timing
       within an interval is not. Under the null hypothesis that the presynaptic spikes are placed at
       random within their intervals, the observed and the jittered gains are exchangeable, and the
       empirical p-value is exact.
    4. The direction: a pair counts only where the observed coupling exceeds the jittered ones in the
       direction of the fitted strength (``z`` and ``strength`` of one sign); elsewhere ``p = 1``. This
       never lowers a p-value, so the test stays valid, and it removes the commonest false finding:
       when ``post`` drives ``pre``, the jittered presynaptic spikes land before the postsynaptic spikes
       that caused them, which lifts the jittered couplings above the observed one (``z < 0`` for a
       coupling the fit finds positive, or near 0).

    Self-couplings are not tested (p, q NaN; never significant): a neuron's jittered spikes fall on its
    own spikes. Nor is a pair whose presynaptic neuron never fires.

    The coupling changes the postsynaptic rate only in the ``L`` bins after each presynaptic spike
    (``L`` the history window), so each refit runs on those bins alone: they are gathered once per
    presynaptic neuron for all its surrogates, and the few weights are fitted by Newton's method with
    the closed-form gradient and Hessian of the Poisson log-likelihood under the link, for all the
    surrogates at once.

    Parameters
    ----------
    weights, basis_matrix, bias : numpy.ndarray
        The fitted GLM: ``W[post, pre, basis]`` (N, N, n_basis), the basis (n_basis, L), the biases (N,).
    link : {"softplus", "exp", "sigmoid"}
        The fit's link.
    counts : numpy.ndarray
        The counts the GLM was fitted to, shape (trials, bins, N).
    labels : list of str
        One label per neuron.
    alpha : float
        False discovery rate of the Benjamini-Hochberg decisions.
    n_jitter : int
        Jittered copies of each presynaptic neuron (shared by its postsynaptic neurons). With
        ``"empirical"`` p-values no p is below ``1 / (n_jitter + 1)``, so Benjamini-Hochberg over ``m``
        pairs can find ``k`` couplings only if ``n_jitter + 1 >= m / (alpha * k)``.
    jitter : int, optional
        Half-width ``J`` of the jitter intervals in bins. Default ``L``: intervals of about twice the
        coupling filter, so that jittering removes its timing while keeping co-modulation slower than
        that. Shorter intervals keep more of the shared input (fewer false findings) and less of the
        coupling (less power).
    pvalue : {"empirical", "normal"}
        ``"empirical"``: ``(1 + #{jittered gain >= observed gain}) / (1 + n_jitter)``, exact under the
        jitter null whatever its shape. ``"normal"``: the refitted strengths taken as normal under the
        null, the jittered ones giving its mean and spread: the two-sided p of the observed strength as
        one more draw (Student t with ``n_jitter - 1`` degrees of freedom, of ``z / sqrt(1 + 1 /
        n_jitter)``). Finer than ``1 / n_jitter``, as Benjamini-Hochberg over many pairs needs.
    seed : int
        Seed of the jitter.
    max_elements : int
        Surrogate bins refitted at once (bounds the memory: about 100 bytes each).
    drive : numpy.ndarray, optional
        A known input to every neuron's predictor, shape (trials, bins, N), which the null model and every
        refit take as given: for a fit with latent factors, their posterior mean drive
        (:meth:`spikeglm.POGLM.latent_drive`).
    progress : bool, optional
        Draw a progress bar over the presynaptic neurons. Default: where someone watches
        (:func:`spikeglm.progress.watched`).

    Returns
    -------
    numpy.ndarray
        The rows of :data:`COLUMNS`, as :func:`wald_table`: ``strength`` is the fit's, ``se`` the
        standard deviation of the refitted strengths over the jittered copies, ``z`` the observed
        refitted strength less their mean, over ``se``; ``p`` as chosen above; ``q`` Benjamini-Hochberg
        over the tested pairs; ``sign`` that of the strength (and ``z``) where significant.
    """
    _check_alpha(alpha)
    if pvalue not in ("empirical", "normal"):
        raise ValueError(f"pvalue must be 'empirical' or 'normal'; got {pvalue!r}")
    if n_jitter < 2:
        raise ValueError(f"n_jitter must be at least 2; got {n_jitter}")
    n, _, n_basis = weights.shape
    jitter = basis_matrix.shape[1] if jitter is None else jitter  # default: the history window
    if jitter < 1:
        raise ValueError(f"jitter must be at least 1 bin; got {jitter}")
    if counts.ndim != 3 or counts.shape[2] != n:
        raise ValueError(f"counts must have shape (trials, bins, {n}); got {counts.shape}")
    known = _known_drive(drive, counts.shape)
    basis = torch.tensor(np.asarray(basis_matrix), dtype=torch.float64)
    spikes = torch.tensor(np.asarray(counts), dtype=torch.float64)
    n_bins = counts.shape[1]
    spikes, features = spikes.reshape(-1, n), history(spikes, basis).reshape(-1, n * n_basis)
    design = torch.cat([torch.ones_like(features[:, :1]), features], dim=1)  # (bins, 1 + N * n_basis)
    del features
    theta = torch.cat(
        [torch.tensor(np.asarray(bias))[:, None], torch.tensor(np.asarray(weights)).flatten(1)], 1
    )
    theta = theta.double()
    predictor = design @ theta.T if known is None else design @ theta.T + known  # (bins, N)
    shifts = [
        _null_shifts(design, predictor[:, post], spikes[:, post], theta[post], link, n_basis)
        for post in range(n)
    ]
    sums = basis.sum(dim=1)
    rng = np.random.default_rng(seed)
    gains = np.full((n, n, n_jitter + 1), np.nan)
    strengths = np.full((n, n, n_jitter + 1), np.nan)
    with _one_thread(), progress_bar(n, "jitter tests", "neuron", progress) as bar:
        for pre in range(n):
            trains = _interval_jitter(spikes[:, pre].numpy(), n_bins, jitter, n_jitter, rng)
            for first, (bins, reach) in _surrogate_bins(trains, n_bins, basis, max_elements):
                chosen = slice(first, first + len(bins))
                for post in set(range(n)) - {pre}:
                    offset = predictor[:, post] + design @ shifts[post][pre]
                    problem = _Pair.gather(link, offset, spikes[:, post], bins, reach)
                    gain, fitted = _refit_coupling(problem)
                    gains[post, pre, chosen], strengths[post, pre, chosen] = gain, fitted @ sums
            bar.update()
    strength = np.einsum("nmb,b->nm", weights, sums.numpy())
    return _table(strength, *_jitter_statistics(gains, strengths, strength, pvalue), labels, alpha)


def _known_drive(drive: np.ndarray | None, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A known drive of every neuron (trials, bins, N) as (trials x bins, N) float64, checked; or None."""
    if drive is None:
        return None
    if np.shape(drive) != shape:
        raise ValueError(f"drive must have the counts' shape {shape}; got {np.shape(drive)}")
    return torch.tensor(np.asarray(drive), dtype=torch.float64).reshape(-1, shape[-1])


def _jitter_statistics(
    gains: np.ndarray, strengths: np.ndarray, strength: np.ndarray, pvalue: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``se``, ``z`` and ``p`` of the jitter tests (see :func:`jitter_table`) from the refits' ``gains``
    and ``strengths`` (post, pre, 1 + n_jitter; the observed spikes first) and the fit's ``strength``."""
    n_jitter = gains.shape[-1] - 1
    se = strengths[..., 1:].std(axis=-1, ddof=1)
    z = (strengths[..., 0] - strengths[..., 1:].mean(axis=-1)) / np.where(se > 0, se, np.nan)
    if pvalue == "empirical":
        exceed = (gains[..., 1:] >= gains[..., :1] * (1 - 1e-9)).sum(axis=-1)
        p = (1 + exceed) / (1 + n_jitter)
    else:  # the observed strength as one more draw of a normal null: a Student t prediction
        p = 2 * t.sf(np.abs(z) / np.sqrt(1 + 1 / n_jitter), df=n_jitter - 1)
    p[np.sign(z) != np.sign(strength)] = 1.0  # not in the direction of the fitted coupling
    p[np.isnan(gains[..., 0]) | np.isnan(z)] = np.nan  # the self-couplings, and pairs with no spike
    return se, z, p


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: the refits are many small operations, sized to stay in the cache, for
    which sharing each among threads costs more than it saves (25 times more on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _null_shifts(
    design: torch.Tensor,
    predictor: torch.Tensor,
    counts: torch.Tensor,
    theta: torch.Tensor,
    link: str,
    n_basis: int,
) -> list[torch.Tensor]:
    """For each presynaptic neuron, the change of one neuron's parameters that drops that coupling.

    One Newton step from the fit ``theta`` (bias, then the weights from each neuron): the coupling is
    set to 0 and the other parameters move by ``I_rest^-1 I_rest,pair w``, with ``I`` the observed
    information of the neuron's log-likelihood.
    """
    curvature = _observed_curvature(link, counts, predictor)
    information = (design * curvature[:, None]).T @ design
    shifts = []
    for pre in range((len(theta) - 1) // n_basis):
        pair = torch.zeros(len(theta), dtype=torch.bool)
        pair[1 + pre * n_basis : 1 + (pre + 1) * n_basis] = True
        shift = torch.zeros_like(theta)
        shift[pair] = -theta[pair]
        solution, failed = torch.linalg.solve_ex(
            information[~pair][:, ~pair], information[~pair][:, pair] @ theta[pair]
        )
        if not failed:  # else, e.g. a silent neuron, there is no information to move the rest by
            shift[~pair] = solution
        shifts.append(shift)
    return shifts


def _interval_jitter(
    train: np.ndarray, n_bins: int, jitter: int, n_jitter: int, rng: np.random.Generator
) -> np.ndarray:
    """Bins (flat over trials) of each spike of ``train``: row 0 as observed, then ``n_jitter`` jittered.

    Each spike moves uniformly within its interval of ``2 * jitter + 1`` bins (the last interval of a
    trial may be shorter); a bin with several spikes moves each on its own.
    """
    occupied = np.flatnonzero(train)
    spikes = np.repeat(occupied, train[occupied].astype(np.int64))
    width = 2 * jitter + 1
    trial, position = np.divmod(spikes, n_bins)
    start = position - position % width
    length = np.minimum(width, n_bins - start)
    moved = start + (rng.random((n_jitter, spikes.size)) * length).astype(np.int64)
    return np.concatenate([spikes[None], trial * n_bins + moved])


def _pad_rows(row: torch.Tensor, n_rows: int, *columns: tuple[torch.Tensor, float]) -> list[torch.Tensor]:
    """Entries sorted by ``row`` as arrays (n_rows, widest row, ...), each padded with its fill value."""
    sizes = torch.bincount(row, minlength=n_rows)
    position = torch.arange(len(row)) - (torch.cumsum(sizes, 0) - sizes)[row]
    width = int(sizes.max()) if len(row) else 0
    padded = []
    for values, fill in columns:
        array = torch.full((n_rows, width, *values.shape[1:]), fill, dtype=values.dtype)
        array[row, position] = values
        padded.append(array)
    return padded


def _surrogate_bins(trains: np.ndarray, n_bins: int, basis: torch.Tensor, max_elements: int):
    """The bins each spike train's coupling reaches, in chunks of trains.

    Yields ``(first train, (bins, features))`` with one row per train of the chunk: the flat bins
    reached by at least one spike (padded with -1) and the presynaptic history features there (rows,
    reached, n_basis), zero on the padding.
    """
    n_trains, n_spikes = trains.shape
    window = basis.shape[1]
    per_chunk = max(1, max_elements // max(1, n_spikes * window))
    lags = np.arange(1, window + 1)
    total = int(trains.max(initial=0)) + window + 1
    for first in range(0, n_trains, per_chunk):
        chunk = trains[first : first + per_chunk]
        reached = chunk[..., None] + lags  # (trains, spikes, L)
        inside = (reached % n_bins) >= lags  # the lag did not cross into the next trial
        keys = torch.from_numpy((np.arange(len(chunk))[:, None, None] * total + reached)[inside])
        lag = torch.from_numpy(np.broadcast_to(lags - 1, reached.shape)[inside])
        unique, inverse = torch.unique(keys, return_inverse=True)
        features = torch.zeros(len(unique), len(basis), dtype=torch.float64).index_add_(
            0, inverse, basis.T[lag]
        )
        yield first, _pad_rows(unique // total, len(chunk), (unique % total, -1), (features, 0.0))


def _observed_curvature(link: str, counts: torch.Tensor, predictor: torch.Tensor) -> torch.Tensor:
    """``-d^2/d eta^2`` of the Poisson log-likelihood of each entry of ``counts`` at the linear predictor
    ``eta``: the weight of its row in the observed information (rates floored as in the log-pmf)."""
    rate, slope, curve = link_derivatives(link, predictor)
    return observed_curvature(counts, rate.clamp_min(torch.finfo(rate.dtype).tiny), slope, curve)


def _first(weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``sum_i weight[g, i] * features[g, i]``, shape (rows, n_basis)."""
    return (weight[:, None, :] @ features)[:, 0]


def _second(weight: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``sum_i weight[g, i] * features[g, i] features[g, i]^T``, shape (rows, n_basis, n_basis)."""
    return (weight[..., None] * features).transpose(1, 2) @ features


class _Pair:
    """One pair's refit problem ``max_w sum_i counts_i log rate_i - rate_i`` for rows of surrogates.

    ``rate[g, i] = link(offset[g, i] + features[g, i] . w[g])`` over the bins ``i`` that row ``g``'s
    presynaptic train reaches. The log of the rate is needed only where the postsynaptic neuron fired,
    which is rare, so those bins are held apart too (``spike_*``); padding has features 0 and a rate of
    ~0 (all bins) or a count of 0 (spike bins), and adds nothing.
    """

    def __init__(self, link: str, offset, features, spike_offset, spike_counts, spike_features) -> None:
        self.link, self.offset, self.features = link, offset, features
        self.spike_offset, self.spike_counts, self.spike_features = spike_offset, spike_counts, spike_features

    @classmethod
    def gather(
        cls, link: str, offset: torch.Tensor, counts: torch.Tensor, bins: torch.Tensor, features: torch.Tensor
    ) -> _Pair:
        """The problem on ``bins`` (rows, reached; -1 pads) of the recording's ``offset`` and ``counts``."""
        inside = bins >= 0
        offset = torch.where(inside, offset[bins], _PADDING)
        counts = torch.where(inside, counts[bins], 0.0)
        row, column = counts.nonzero(as_tuple=True)
        spike_columns = [
            (offset[row, column], _PADDING),
            (counts[row, column], 0.0),
            (features[row, column], 0.0),
        ]
        return cls(link, offset, features, *_pad_rows(row, len(bins), *spike_columns))

    def rows(self, index: slice | torch.Tensor) -> _Pair:
        fields = (self.offset, self.features, self.spike_offset, self.spike_counts, self.spike_features)
        return _Pair(self.link, *(field[index] for field in fields))

    def evaluate(
        self, weight: torch.Tensor, fisher: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-likelihood (less the constant lgamma terms), gradient and negative Hessian per row.

        With ``fisher``, the expected negative Hessian (Fisher information) instead, positive
        semi-definite under every link.
        """
        floor = torch.finfo(torch.float64).tiny
        predictor = self.offset + (self.features @ weight[..., None])[..., 0]
        rate, slope, curve = link_derivatives(self.link, predictor)
        spiking = self.spike_offset + (self.spike_features @ weight[..., None])[..., 0]
        spike_rate, spike_slope, spike_curve = link_derivatives(self.link, spiking)
        spike_rate = spike_rate.clamp_min(floor)
        value = (self.spike_counts * torch.log(spike_rate)).sum(-1) - rate.sum(-1)
        ratio = self.spike_counts * spike_slope / spike_rate
        gradient = _first(ratio, self.spike_features) - _first(slope, self.features)
        if fisher:
            return value, gradient, _second(slope * slope / rate.clamp_min(floor), self.features)
        spike_weight = (ratio * spike_slope - self.spike_counts * spike_curve) / spike_rate
        return value, gradient, _second(curve, self.features) + _second(spike_weight, self.spike_features)


def _refit_coupling(
    pair: _Pair, max_iterations: int = 50, tolerance: float = 1e-5, rows_at_once: int = 2**16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit each row's weights of ``pair`` by Newton's method, ``rows_at_once`` bins' worth of rows at a time.

    A step that lowers a row's log-likelihood is halved (under the sigmoid link the log-likelihood is not
    concave); where the negative Hessian is not positive definite the Fisher information stands in.

    Returns
    -------
    gain : torch.Tensor
        Log-likelihood at the maximum less that at ``w = 0``, shape (rows,).
    weight : torch.Tensor
        The maximising weights, shape (rows, n_basis).
    """
    rows, width, n_basis = pair.features.shape
    step = max(1, rows_at_once // max(1, width))
    gains, weights = [], []
    for first in range(0, rows, step):
        part = pair.rows(slice(first, first + step))
        gain, weight = _newton(part, n_basis, max_iterations, tolerance)
        gains.append(gain)
        weights.append(weight)
    return torch.cat(gains), torch.cat(weights)


def _newton(
    pair: _Pair, n_basis: int, max_iterations: int, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = pair.features.shape[0]
    accepted = weight = torch.zeros(rows, n_basis, dtype=torch.float64)
    best = torch.full((rows,), -torch.inf, dtype=torch.float64)
    ridge = 1e-12 * torch.eye(n_basis, dtype=torch.float64)
    start: torch.Tensor | None = None
    for _ in range(max_iterations):
        value, gradient, curvature = pair.evaluate(weight)
        start = value if start is None else start
        worse = (value < best - 1e-12 * best.abs())[:, None]
        accepted = torch.where(worse, accepted, weight)
        best = torch.where(worse[:, 0], best, value)
        scale = 1 + curvature.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
        factor, failed = torch.linalg.cholesky_ex(curvature + scale * ridge)
        if bool(failed.any()):
            information = pair.rows(failed.nonzero()[:, 0]).evaluate(weight[failed != 0], fisher=True)[2]
            scale = 1 + information.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
            factor[failed != 0] = torch.linalg.cholesky(information + 1e-9 * scale * torch.eye(n_basis))
        newton = torch.cholesky_solve(gradient[..., None], factor)[..., 0]
        weight = torch.where(worse, (accepted + weight) / 2, accepted + newton).clamp(
            -_MAX_WEIGHT, _MAX_WEIGHT
        )
        change = (weight - accepted).abs().amax(-1)
        if bool((change <= tolerance * (1 + accepted.abs().amax(-1))).all()):
            break
    assert start is not None, "max_iterations must be at least 1"
    return best - start, accepted
