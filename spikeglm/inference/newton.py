"""Newton's method for the GLM: each neuron's own Newton steps, all neurons at once.

Without hidden neurons the log-likelihood is a sum over postsynaptic neurons, each term depending on that
neuron's parameters only (its bias, its row of couplings, its covariate weights): ``P = 1 + N B + F``
numbers, read off one shared design (every neuron's basis-filtered past, then the covariates' columns).
The problem is therefore ``N`` small problems, each solved by Newton's method with its own line search;
they share every pass over the data. With an :class:`~spikeglm.basis.OwnHistory` basis each neuron also
weighs ``O`` columns of its own past through the own-history functions (:func:`own_rows`), which differ
from neuron to neuron: the curvature adds their products with the shared columns and with each other
neuron by neuron.

A pass computes, in float64, every neuron's predictor, log-likelihood and gradient; and in float32, the
curvature blocks ``X^T diag(c_n) X`` of the neurons not yet converged. The blocks are one matrix product
for all neurons: the rows' pairwise products ``x_i x_j`` (``i <= j``, computed once per row whatever the
number of neurons) weighted by every neuron's curvature ``c_n``. The curvature only steers the steps,
so its float32 rounding costs at most an iteration; the gradient, which decides where the solve stops,
is exact to float64.

The curvature is the observed one under the exp and softplus links, where each bin's log-likelihood is
concave in the predictor (Newton's method, quadratic convergence), and the expected one (Fisher
scoring) under the sigmoid link, where it is not.

Beyond :data:`NEWTON_COLUMNS` the exact blocks cost more per pass than L-BFGS's iterations, and L-BFGS
solves a smooth problem. The group lasso is not smooth; there, ``curvature="design"`` builds each
block from its diagonal, exact at every pass (a pass then costs what a gradient does), and the design's
correlations: ``D^1/2 C D^1/2``, where ``C`` is the matrix of the design's second moments scaled to a
unit diagonal. Where a neuron's curvature weight is the same in every bin, as at the start of a solve
under the exp link, that block is the exact one; elsewhere it is close, and the line search makes up the
rest (proximal quasi-Newton steps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch

from spikeglm import parallel
from spikeglm.basis import history
from spikeglm.inference.penalty import GroupLasso, Penalty, shrink
from spikeglm.inference.stopping import spikes_per_bin
from spikeglm.memory import available_memory
from spikeglm.model import Network, link_derivatives, mean_counts, observed_curvature
from spikeglm.records import EpochRecord
from spikeglm.segments import Batch, Segments

#: Bytes of one block of pairwise products (rows x P(P+1)/2 float32) or of float64 rows x N predictors.
_BLOCK_BYTES = 1 << 25
#: Most bytes of pairwise products kept between passes (beyond it they are made again at each pass, which
#: costs about as much as the pass's curvature product when there are 30 neurons, and less with more).
_KEPT_PRODUCTS = 1 << 29
#: The most columns of the design (``1 + N B + F``) for which Newton's solve is the faster one. Measured
#: on `balanced` networks (12,000 bins, one thread): 151 columns, Newton 8.2 s against L-BFGS's 15.3 s;
#: 301 columns, 114 s against 41 s.
NEWTON_COLUMNS = 200
#: The Armijo fraction of a step's predicted decrease that it must achieve; halvings tried at most.
_ARMIJO, _MAX_HALVINGS = 1e-4, 40
#: Most proximal gradient steps on the quadratic model of a proximal Newton step (the group lasso).
_INNER_STEPS = 5000


def newton_memory(n_neurons: int, n_columns: int) -> float:
    """Bytes :func:`newton_solve` holds beyond the data: the curvature blocks (float64, with their
    factors) and one block of pairwise products."""
    return 3.0 * n_neurons * n_columns**2 * 8 + _BLOCK_BYTES


#: The most bins of one group of :func:`observed_information`'s pass as the standard errors run it
#: (:func:`spikeglm.significance.standard_errors`): beyond, the curvatures' temporaries grow slow.
INFORMATION_BINS = 2**14
#: Float64 tensors of a group's bins x (columns + neurons) that the pass holds at once, about.
_GROUP_TENSORS = 6


def information_memory(n_neurons: int, n_columns: int, group_bins: int) -> float:
    """Bytes :func:`observed_information` holds: the blocks (float64), and a group of ``group_bins``
    bins' design, curvatures and their temporaries."""
    return n_neurons * n_columns**2 * 8 + _GROUP_TENSORS * group_bins * (n_columns + n_neurons) * 8


def design_columns(network: Network) -> int:
    """Parameters of each neuron: the columns of the design (:func:`design_rows`), ``1 + N B + F``, and
    those of its own history (:func:`own_rows`), ``O``."""
    return shared_columns(network) + own_functions(network)


def shared_columns(network: Network) -> int:
    """Columns of the design that every neuron shares (:func:`design_rows`), ``1 + N B + F``, ``B`` the
    couplings' functions."""
    return 1 + network.n_neurons * network.basis.n_coupling + network.n_covariates


def own_functions(network: Network) -> int:
    """``O``, the functions of an :class:`~spikeglm.basis.OwnHistory` basis that only each neuron's own
    history has (0 for any other basis)."""
    return network.basis.n_basis - network.basis.n_coupling


def blocks_fit(network: Network) -> bool:
    """Whether :func:`newton_solve`'s curvature blocks of this network fit in a quarter of the memory
    available now."""
    return newton_memory(network.n_neurons, design_columns(network)) <= available_memory() / 4


def newton_pays(network: Network) -> bool:
    """Whether :func:`newton_solve` is the faster solve of this network, and can hold its blocks in a
    quarter of the memory available now (else L-BFGS solves it: it holds a few copies of the parameters
    only). Newton's curvature costs ``P^2 / 2`` multiply-adds per neuron and bin (``P = 1 + N B + F``
    columns), an L-BFGS evaluation a few times ``P``: Newton pays up to :data:`NEWTON_COLUMNS` columns."""
    return design_columns(network) <= NEWTON_COLUMNS and blocks_fit(network)


def design_rows(network: Network, batch: Batch) -> torch.Tensor:
    """The design that every neuron shares, one row per bin: 1, every neuron's past filtered by the
    couplings' functions (``pre * B + b``), then the covariates' columns; shape (segments * bins,
    :func:`shared_columns`), in the batch's dtype."""
    basis = network.basis_matrix[: network.basis.n_coupling]
    features = history(batch.visible, basis.to(batch.visible.dtype)).flatten(-2)
    columns = [torch.ones_like(features[..., :1]), features]
    if network.covariate_weight is not None:
        if batch.covariates is None:
            raise ValueError("a network with covariates needs their columns")
        columns.append(batch.covariates.to(features.dtype))
    return torch.cat(columns, dim=-1).flatten(0, -2)


def own_rows(network: Network, batch: Batch) -> torch.Tensor | None:
    """Each neuron's past filtered by the functions of its own history alone (:func:`own_functions`), one
    row per bin: (segments * bins, N, O) in the batch's dtype; None where the basis has none."""
    if not own_functions(network):
        return None
    basis = network.basis_matrix[network.basis.n_coupling :].to(batch.visible.dtype)
    return history(batch.visible, basis).flatten(0, -3)


def parameters_of(network: Network, gradient: bool = False) -> torch.Tensor:
    """The GLM's parameters as one row per neuron, (N, P) in float64: :func:`design_rows`' order, then the
    weights of :func:`own_rows`; with ``gradient``, their gradients instead (zero where a parameter has
    none)."""

    def read(parameter: torch.Tensor) -> torch.Tensor:
        if not gradient:
            return parameter.detach()
        return torch.zeros_like(parameter) if parameter.grad is None else parameter.grad

    weight, functions = read(network.weight), network.basis.n_coupling
    parts = [read(network.bias)[:, None], weight[..., :functions].flatten(1)]
    if network.covariate_weight is not None:
        parts.append(read(network.covariate_weight))
    if own_functions(network):
        parts.append(weight.diagonal().T[:, functions:])
    return torch.cat(parts, dim=1).double()


@torch.no_grad()
def set_parameters(network: Network, theta: torch.Tensor) -> None:
    """Write rows of :func:`parameters_of` back into the network."""
    n, functions = network.n_neurons, network.basis.n_coupling
    assert theta.shape == (n, design_columns(network))
    size, shared = n * functions, shared_columns(network)
    network.bias.copy_(theta[:, 0])
    network.weight[..., :functions] = theta[:, 1 : 1 + size].reshape(n, n, functions)
    if network.covariate_weight is not None:
        network.covariate_weight.copy_(theta[:, 1 + size : shared])
    if own_functions(network):
        network.weight[..., functions:] = torch.diag_embed(theta[:, shared:].T).permute(1, 2, 0)


def observed_information(
    network: Network,
    data: Segments,
    part_bins: int,
    offset: Callable[[Batch], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The blocks of the observed Fisher information of a network without hidden neurons at its
    parameters, in nats: one block per postsynaptic neuron, (N, P, P) float64 in :func:`design_rows`'
    order, computed in float64 throughout in one pass over the data, ``part_bins`` bins at a time (what
    the couplings' standard errors invert). ``offset(batch)``, (segments, bins, N), is a known part of the
    predictor (the latent factors' drive).

    Entry ``(n, i, j)`` is ``sum_t c_tn x_ti x_tj`` (``c`` each bin's curvature, ``x`` the design). A
    history column is zero in every bin where its presynaptic neuron has not fired within the window:
    most bins, for most recordings. So row ``i`` of every block is summed over the bins where ``x_i`` is
    not zero only, as one product of those bins' columns ``j >= i`` with their curvatures: the work is the
    design's density times that of the dense sums (:func:`information_work`).
    """
    theta = parameters_of(network).to(network.bias.device)
    n, size = theta.shape
    blocks = torch.zeros(n, size, size, dtype=torch.float64, device=theta.device)
    shared = shared_columns(network)
    for index in data.groups(part_bins)[parallel.rank() :: parallel.world_size()]:
        batch = data.batch(index, dtype=torch.float64, device=theta.device)
        design, own = design_rows(network, batch), own_rows(network, batch)
        predictor = _predictor(design, own, theta, shared)
        if offset is not None:
            predictor = predictor + offset(batch).double().reshape(-1, n)
        counts = batch.visible.reshape(-1, n)
        curvature = _derivatives(network.link_name, counts, predictor, True, observed=True)[2]
        assert curvature is not None  # asked for (gradients=True)
        if batch.scored is not None:
            curvature = curvature * batch.scored.reshape(-1, 1)
        for i in range(shared):
            rows = design[:, i].nonzero()[:, 0]
            if len(rows) == len(design):  # a dense column (the bias, a covariate): no gathering
                weighted, columns = curvature * design[:, i : i + 1], design[:, i:]
            else:
                weighted, columns = curvature[rows] * design[rows, i : i + 1], design[rows, i:]
            blocks[:, i, i:shared] += weighted.T @ columns
        if own is not None:  # each neuron's own columns, with the shared ones and with each other
            weighted = curvature[:, :, None] * own
            blocks[:, :shared, shared:] += torch.einsum("rnb,rp->npb", weighted, design)
            blocks[:, shared:, shared:] += torch.einsum("rnb,rnc->nbc", weighted, own)
    parallel.all_sum(blocks)
    for i in range(size - 1):  # the lower halves, in place
        blocks[:, i + 1 :, i] = blocks[:, i, i + 1 :]
    return blocks


def information_work(network: Network, data: Segments) -> float:
    """The multiply-adds of :func:`observed_information` over ``data``, estimated before it runs: for row
    ``i`` of the blocks, the bins where column ``i`` is not zero times ``(P - i) N``. A history column of
    presynaptic neuron ``m`` is taken as non-zero in ``1 - exp(-r_m L)`` of the bins (``r_m`` its mean
    count per bin, ``L`` the window: the chance that it fired within the window, for Poisson counts); the
    bias's and the covariates' columns in every bin; each neuron's own columns (:func:`own_rows`) in
    every bin, with all the others."""
    n, n_basis, size = network.n_neurons, network.basis.n_coupling, shared_columns(network)
    rate = mean_counts(data.counts).to(torch.float64).cpu()
    share = torch.ones(size, dtype=torch.float64)
    share[1 : 1 + n * n_basis] = (-torch.expm1(-rate * network.basis.window)).repeat_interleave(n_basis)
    width = size - torch.arange(size, dtype=torch.float64)  # the columns j >= i of row i
    own = own_functions(network) * (size + own_functions(network))
    return float(data.n_trials * data.n_bins) * (float((share * width).sum()) + own) * n


class _Chunk:
    """Rows of the data as the solve reads them: the design, each neuron's own columns (:func:`own_rows`;
    None: none) and the counts (float64), each row's weight (1 where scored; None: all are) and fixed
    offset of the predictor (the latent factors' drive; None: none), each neuron's summed
    log-factorials, and the rows' pairwise products (:func:`pair_products`, float32; None where they
    are not kept)."""

    def __init__(self, design, own, counts, weight, offset, products) -> None:
        self.design, self.own, self.counts, self.weight, self.offset = design, own, counts, weight, offset
        self.log_factorial = _log_factorials(counts, weight)
        self.products = products

    def pairs(self) -> torch.Tensor:
        """The rows' pairwise products, kept or built now."""
        return pair_products(self.design) if self.products is None else self.products


def pair_products(design: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``design[:, i] * design[:, j]`` for every pair ``i <= j`` in the order of ``torch.triu_indices``:
    shape (pairs, rows), in ``dtype``, built one column ``i`` at a time into one buffer (much faster
    than gathering the pairs)."""
    columns = design.T.to(dtype).contiguous()
    size = columns.shape[0]
    products = torch.empty(size * (size + 1) // 2, columns.shape[1], dtype=dtype, device=design.device)
    first = 0
    for i in range(size):
        torch.mul(columns[i : i + 1], columns[i:], out=products[first : first + size - i])
        first += size - i
    return products


def _log_factorials(counts: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Each neuron's ``sum_t weight_t lgamma(counts_t + 1)``, from the counts above 1 (the others add 0)."""
    row, neuron = (counts > 1).nonzero(as_tuple=True)
    terms = torch.lgamma(counts[row, neuron] + 1)
    if weight is not None:
        terms = terms * weight[row]
    return torch.zeros(counts.shape[1], dtype=counts.dtype, device=counts.device).index_add_(0, neuron, terms)


class _Problem:
    """The data of a solve, in chunks of rows (this process's share): kept in memory when they fit in
    a quarter of what is available (with the pairwise products, in float32, where those fit too and take
    at most :data:`_KEPT_PRODUCTS`), else built again at each pass. ``offset(batch)``, (segments, bins,
    N), is a fixed part of the predictor (the latent factors' drive)."""

    def __init__(
        self,
        network: Network,
        data: Segments,
        part_bins: int,
        offset: Callable[[Batch], torch.Tensor] | None,
        exact: bool = True,
    ) -> None:
        self.network, self.data, self.offset = network, data, offset
        self.groups = data.groups(part_bins)[parallel.rank() :: parallel.world_size()]
        n, size, shared = network.n_neurons, design_columns(network), shared_columns(network)
        self.upper = torch.triu_indices(shared, shared, device=network.bias.device)
        n_pairs, width = self.upper.shape[1], torch.float32.itemsize
        row_bytes = 8 * (shared + n * (size - shared) + 3 * n)
        self.rows = max(1, min(_BLOCK_BYTES // row_bytes, _BLOCK_BYTES // (width * n_pairs)))
        n_rows = data.n_trials * data.n_bins
        budget = available_memory() / 4 - newton_memory(n, size)
        data_bytes, products_bytes = n_rows * row_bytes, n_rows * width * n_pairs
        self.keep_products = (
            exact and products_bytes <= _KEPT_PRODUCTS and data_bytes + products_bytes < budget
        )
        self.kept = None
        if data_bytes < budget:
            self.kept = list(self._build())
        self.correlations = None if exact else self._correlations()

    def chunks(self) -> Iterator[_Chunk]:
        return iter(self.kept) if self.kept is not None else self._build()

    def _correlations(self) -> torch.Tensor:
        """The design's second moments over the scored bins, summed over the processes and scaled to a unit
        diagonal, (P, P) float64 over the shared columns: ``C`` of ``curvature="design"`` (a column that is
        zero throughout has no correlation, and 1 on the diagonal)."""
        size = shared_columns(self.network)
        moments = torch.zeros(size, size, dtype=torch.float64, device=self.network.bias.device)
        for chunk in self.chunks():
            design = chunk.design if chunk.weight is None else chunk.design * chunk.weight[:, None]
            moments += design.T @ design
        parallel.all_sum(moments)
        deviation = moments.diagonal().sqrt()
        deviation = torch.where(deviation > 0, deviation, torch.ones_like(deviation))
        correlations = moments / deviation[:, None] / deviation[None, :]
        correlations.diagonal().fill_(1.0)
        return correlations

    def _build(self) -> Iterator[_Chunk]:
        network, device = self.network, self.network.bias.device
        for index in self.groups:
            batch = self.data.batch(index, dtype=torch.float64, device=device)
            design, own = design_rows(network, batch), own_rows(network, batch)
            counts = batch.visible.reshape(-1, network.n_neurons).double()
            weight = None if batch.scored is None else batch.scored.reshape(-1).double()
            offset = None
            if self.offset is not None:
                offset = self.offset(batch).double().reshape(-1, network.n_neurons)
            for first in range(0, design.shape[0], self.rows):
                rows = slice(first, first + self.rows)
                products = pair_products(design[rows]) if self.keep_products else None
                yield _Chunk(
                    design[rows],
                    None if own is None else own[rows],
                    counts[rows],
                    None if weight is None else weight[rows],
                    None if offset is None else offset[rows],
                    products,
                )


def newton_solve(
    network: Network,
    data: Segments,
    *,
    max_iterations: int,
    part_bins: int,
    tolerance_grad: float,
    callback: Callable[[EpochRecord], None] | None = None,
    latent: Callable[[Batch], torch.Tensor] | None = None,
    penalty: Penalty | None = None,
    curvature: str = "exact",
) -> tuple[list[EpochRecord], str]:
    """Maximise the log-likelihood (less a ``penalty``) of a network without hidden neurons by Newton's
    method, each neuron with its own step and line search; the arguments and what is returned are those
    of :func:`spikeglm.inference.solve_glm`, and ``curvature`` is ``"exact"`` or ``"design"`` (the blocks'
    diagonals with the design's correlations; see the module).

    The objective is the same as L-BFGS's there: minus the log-likelihood per spike plus the penalty. A
    neuron's step is halved until it lowers that neuron's part of it by an Armijo fraction of the
    predicted decrease; a neuron is done once no gradient component of its part exceeds
    ``tolerance_grad`` (or when no step lowers its part beyond the rounding of the sums: it is at its
    optimum to float64's precision). The solve stops when every neuron is done, or after
    ``max_iterations``. Under the group lasso, which is not smooth, the steps are proximal Newton steps
    (:func:`_proximal_steps`) and the gradient mapping stands for the gradient.
    """
    offset = None
    if latent is not None and network.loading is not None:
        loading = network.loading.detach().double()
        offset = lambda batch: latent(batch).double() @ loading.T  # noqa: E731 - the factors' fixed drive
    if curvature not in ("exact", "design"):
        raise ValueError(f"curvature must be 'exact' or 'design'; got {curvature!r}")
    problem = _Problem(network, data, part_bins, offset, exact=curvature == "exact")
    per_bin = spikes_per_bin(data)
    scale = 1.0 / (per_bin * data.n_scored * data.n_units)
    theta = parameters_of(network).to(network.bias.device)
    smooth = _Smooth(network, penalty)
    active = torch.ones(theta.shape[0], dtype=torch.bool, device=theta.device)
    records: list[EpochRecord] = []
    clock = time.perf_counter()
    reason = f"reached the cap of {max_iterations} iterations (epochs) before converging"
    value, gradient, blocks = _pass(problem, theta, active, scale, smooth)
    for iteration in range(1, max_iterations + 1):
        moving, step, decrease = _directions(
            network, penalty, theta, gradient, blocks, active, tolerance_grad
        )
        if len(moving):
            theta, (value, gradient, blocks) = _step(
                problem, theta, value, active, moving, step, decrease, scale, smooth
            )
        total = float(value.sum())
        if not math.isfinite(total):
            raise FloatingPointError(f"the log-likelihood became non-finite at iteration {iteration}")
        now = time.perf_counter()
        records.append(EpochRecord(iteration, -total * per_bin, now - clock))
        clock = now
        if callback is not None:
            callback(records[-1])
        if not bool(active.any()):
            quasi = "" if curvature == "exact" else "quasi-"
            kind = (
                (f"proximal {quasi}Newton", "gradient mapping")
                if isinstance(penalty, GroupLasso)
                else (f"{quasi}Newton", "gradient")
            )
            reason = f"converged in {iteration} {kind[0]} iterations (every {kind[1]} below tolerance)"
            break
    set_parameters(network, theta.to(network.bias.dtype))
    return records, reason


def _directions(
    network: Network,
    penalty: Penalty | None,
    theta: torch.Tensor,
    gradient: torch.Tensor,
    blocks: torch.Tensor,
    active: torch.Tensor,
    tolerance_grad: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The active neurons that have not converged (set the others inactive), with their steps and the
    decreases the steps predict: Newton's, or under the group lasso the proximal Newton steps. A neuron
    has converged when no component of its gradient (under the group lasso, of its gradient mapping)
    exceeds ``tolerance_grad``; ``blocks`` are the active neurons' curvature blocks."""
    chosen = active.nonzero()[:, 0]
    shape = (network.n_neurons, network.basis.n_coupling)
    if isinstance(penalty, GroupLasso):
        residual = _Groups(penalty, chosen, *shape).mapping(theta[chosen], gradient[chosen])
    else:
        residual = gradient[chosen]
    still = residual.abs().amax(1) > tolerance_grad
    active[chosen[~still]] = False
    moving = chosen[still]
    if isinstance(penalty, GroupLasso):
        groups = _Groups(penalty, moving, *shape)
        return moving, *_proximal_steps(theta[moving], gradient[moving], blocks[still], groups)
    return moving, *_newton_steps(gradient[moving], blocks[still])


def _newton_steps(gradient: torch.Tensor, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's Newton step ``-H^-1 g`` and decrement ``g^T H^-1 g / 2``. A block that is singular
    (a silent presynaptic neuron's columns are zero) is damped by a multiple of its mean diagonal, raised
    until it factors; its step along those columns, where the gradient is zero too, is then zero."""
    scale = 1 + blocks.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    eye = torch.eye(blocks.shape[-1], dtype=blocks.dtype, device=blocks.device)
    damping = 1e-12
    factor, failed = torch.linalg.cholesky_ex(blocks + damping * scale * eye)
    while bool(failed.any()):
        damping *= 100
        if damping > 1:
            raise FloatingPointError("the curvature of the log-likelihood is not positive definite")
        again = failed.nonzero()[:, 0]
        factor[again], failed[again] = torch.linalg.cholesky_ex(blocks[again] + damping * scale[again] * eye)
    solved = torch.cholesky_solve(gradient[..., None], factor)[..., 0]
    return -solved, (gradient * solved).sum(-1) / 2


class _Groups:
    """The group lasso in the layout of :func:`parameters_of` for some postsynaptic neurons ``posts``:
    each row's coupling filters (``N`` groups of ``B`` columns after the bias) with the penalty's
    threshold ``strength sqrt(B)``, zero on the neuron's own filter."""

    def __init__(self, penalty: GroupLasso, posts: torch.Tensor, n_neurons: int, n_basis: int) -> None:
        self.n_neurons, self.n_basis = n_neurons, n_basis
        own = posts[:, None] == torch.arange(n_neurons, device=posts.device)
        self.threshold = penalty.strength * math.sqrt(n_basis) * (~own).double()  # (A, N)

    def filters(self, rows: torch.Tensor) -> torch.Tensor:
        """The coupling columns of ``rows`` (A, P) as filters, (A, N, B): a view."""
        return rows[:, 1 : 1 + self.n_neurons * self.n_basis].unflatten(1, (self.n_neurons, self.n_basis))

    def value(self, rows: torch.Tensor) -> torch.Tensor:
        """Each row's penalty, (A,)."""
        return (self.filters(rows).norm(dim=-1) * self.threshold).sum(-1)

    def shrink(self, rows: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        """Each filter of ``rows`` shrunk towards zero by ``threshold`` (A, N) in norm, zero if shorter."""
        rows = rows.clone()
        filters = self.filters(rows)
        filters.copy_(shrink(filters, threshold))
        return rows

    def mapping(self, rows: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient mapping of unit step, ``rows - prox(rows - gradient)``: zero exactly at the
        penalised optimum, the gradient itself where nothing is penalised; what decides convergence."""
        return rows - self.shrink(rows - gradient, self.threshold)


def _proximal_steps(
    theta: torch.Tensor, gradient: torch.Tensor, blocks: torch.Tensor, groups: _Groups
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each neuron's proximal Newton step and the decrease it predicts, for the group lasso.

    The step ``d`` minimises the quadratic model ``g^T d + d^T H d / 2`` plus the penalty at ``theta +
    d``. That subproblem has no closed form; accelerated proximal gradient steps on it (FISTA, restarted
    where the momentum turns back) solve it without touching the data, in coordinates scaled by the
    square root of the curvature's diagonal (one scale per filter, so that its proximal step stays a
    shrinkage): this evens out neurons of very different rates. The subproblem is solved until its own
    gradient mapping is a tenth of the outer one. The decrease is minus half ``g^T d`` plus the change of
    the penalty: the Armijo test of :func:`_enough` then asks the step for a fraction of what the model
    predicts, as for a smooth penalty.
    """
    diagonal = blocks.diagonal(dim1=-2, dim2=-1).clamp_min(0.0)
    filters = groups.filters(diagonal)
    filters.copy_(filters.amax(-1, keepdim=True).expand_as(filters))
    scale = diagonal.sqrt()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    curvature = blocks / scale[:, :, None] / scale[:, None, :]
    lipschitz = torch.linalg.eigvalsh(curvature)[:, -1].clamp_min(torch.finfo(blocks.dtype).tiny)[:, None]
    start, slope = theta * scale, gradient / scale
    threshold = groups.threshold / groups.filters(scale)[..., 0] / lipschitz
    wanted = groups.mapping(theta, gradient).abs().amax(-1) / 10
    current, point = start, start
    momentum = torch.ones(len(theta), 1, dtype=theta.dtype, device=theta.device)
    for _ in range(_INNER_STEPS):
        moved = point - (slope + ((point - start)[:, None, :] @ curvature)[:, 0]) / lipschitz
        moved = groups.shrink(moved, threshold)
        if bool(((point - moved).abs() * lipschitz * scale).amax(-1).le(wanted).all()):
            current = moved
            break
        turned = ((point - moved) * (moved - current)).sum(-1, keepdim=True) > 0
        momentum = torch.where(turned, torch.ones_like(momentum), momentum)
        following = (1 + torch.sqrt(1 + 4 * momentum**2)) / 2
        push = torch.where(turned, torch.zeros_like(momentum), (momentum - 1) / following)
        point, current, momentum = moved + push * (moved - current), moved, following
    # The accelerated steps need not lower the model at every step: where the last one left it higher than
    # one plain proximal gradient step from the start does (which always lowers it), take that step.
    accelerated = current / scale - theta
    plain = groups.shrink(start - slope / lipschitz, threshold) / scale - theta
    better = _model(theta, gradient, blocks, groups, plain) < _model(
        theta, gradient, blocks, groups, accelerated
    )
    step = torch.where(better[:, None], plain, accelerated)
    change = (gradient * step).sum(-1) + groups.value(theta + step) - groups.value(theta)
    return step, -change / 2


def _model(
    theta: torch.Tensor, gradient: torch.Tensor, blocks: torch.Tensor, groups: _Groups, step: torch.Tensor
) -> torch.Tensor:
    """Each neuron's quadratic model of a step's change of the objective, with the penalty's change:
    ``g^T d + d^T H d / 2 + P(theta + d) - P(theta)``."""
    curved = (step[:, None, :] @ blocks @ step[:, :, None])[:, 0, 0] / 2
    return (gradient * step).sum(-1) + curved + groups.value(theta + step) - groups.value(theta)


def _step(
    problem: _Problem,
    theta: torch.Tensor,
    value: torch.Tensor,
    active: torch.Tensor,
    moving: torch.Tensor,
    step: torch.Tensor,
    decrease: torch.Tensor,
    scale: float,
    smooth: _Smooth,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Move the ``moving`` neurons by their full Newton steps, or less where that is not enough (see
    :func:`_enough`); returns the new parameters and the pass there (:func:`_pass`). In the common case
    one pass evaluates the full steps and gives the next iteration its gradients and curvature; a
    neuron whose full step falls short is moved by halving its step (passes of the objectives only),
    is set aside if no halving will do (it is at its optimum, to rounding), and a second pass follows."""
    trial = theta.clone()
    trial[moving] += step
    found = _pass(problem, trial, active, scale, smooth)
    short = ~_enough(found[0][moving], value[moving], decrease, 1.0)
    if not bool(short.any()):
        return trial, found
    back = moving[short]
    trial[back], start = theta[back], found[0].clone()
    start[back] = value[back]
    trial, stuck = _halve(problem, trial, start, back, step[short], decrease[short], scale, smooth)
    active[back[stuck]] = False
    return trial, _pass(problem, trial, active, scale, smooth)


def _enough(found: torch.Tensor, value: torch.Tensor, decrease: torch.Tensor, length) -> torch.Tensor:
    """Whether a step of ``length`` times the Newton step lowered the objective from ``value`` to
    ``found`` by the Armijo fraction of the decrease it predicts, within the rounding of the sums."""
    noise = 64 * torch.finfo(torch.float64).eps * value.abs()
    return torch.isfinite(found) & (found <= value - 2 * _ARMIJO * length * decrease + noise)


def _halve(
    problem: _Problem,
    theta: torch.Tensor,
    value: torch.Tensor,
    moving: torch.Tensor,
    step: torch.Tensor,
    decrease: torch.Tensor,
    scale: float,
    smooth: _Smooth,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each of the ``moving`` neurons by half its step, a quarter, ..., until it is enough
    (:func:`_enough`). Returns the new parameters and which of the moving neurons no halving moved
    (left where they were)."""
    length = torch.full((len(moving),), 0.5, dtype=theta.dtype, device=theta.device)
    pending = torch.ones(len(moving), dtype=torch.bool, device=theta.device)
    theta, start = theta.clone(), theta[moving].clone()
    for _ in range(_MAX_HALVINGS):
        trial = theta.clone()
        trial[moving[pending]] = start[pending] + length[pending, None] * step[pending]
        found = _pass(problem, trial, None, scale, smooth)[0][moving]
        accepted = pending & _enough(found, value[moving], decrease, length)
        theta[moving[accepted]] = trial[moving[accepted]]
        pending &= ~accepted
        if not bool(pending.any()):
            break
        length = torch.where(pending, length / 2, length)
    return theta, pending


class _Smooth:
    """A penalty of the couplings as each neuron's value; for a smooth one, also its gradient and
    curvature (none, or the group lasso's: zeros, its part handled by :func:`_proximal_steps`).

    The curvature is kept as its diagonal, (N, P): the ridge's is diagonal, and a penalty whose
    curvature is not is refused rather than solved with part of it.
    """

    def __init__(self, network: Network, penalty: Penalty | None) -> None:
        n, n_basis = network.n_neurons, network.basis.n_coupling
        self.penalty, self.shape = penalty, (n, n, n_basis)
        self.diagonals = None
        if penalty is not None and penalty.smooth:
            diagonals = torch.zeros(n, design_columns(network), dtype=torch.float64)
            for post in range(n):
                curvature = penalty.curvature(n, n_basis, post)
                if bool((curvature - torch.diag(curvature.diagonal())).any()):
                    raise NotImplementedError(
                        f"Newton's solve takes penalties of diagonal curvature; {penalty!r}"
                    )
                diagonals[post, : 1 + n * n_basis] = curvature.diagonal()
            self.diagonals = diagonals.to(network.bias.device)

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each neuron's penalty (N,) and its gradient in that neuron's parameters (N, P)."""
        if self.penalty is None:
            return torch.zeros_like(theta[:, 0]), torch.zeros_like(theta)
        size = self.shape[1] * self.shape[2]
        if not self.penalty.smooth:
            return self.penalty.rows(theta[:, 1 : 1 + size].reshape(self.shape)), torch.zeros_like(theta)
        weight = theta[:, 1 : 1 + size].detach().clone().reshape(self.shape).requires_grad_(True)
        values = self.penalty.rows(weight)
        (weight_gradient,) = torch.autograd.grad(values.sum(), weight)
        gradient = torch.zeros_like(theta)
        gradient[:, 1 : 1 + size] = weight_gradient.flatten(1)
        return values.detach(), gradient


def _derivatives(
    link: str, counts: torch.Tensor, predictor: torch.Tensor, gradients: bool, observed: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Each bin's ``counts log rate - rate`` at the predictor, with (where ``gradients``) its first
    derivative in the predictor and the curvature that weighs the bin: minus the second derivative,
    except under the sigmoid link, where that can be negative, its expectation (unless ``observed``)."""
    if link == "exp":  # the canonical link: log rate is the predictor, and the curvature the rate
        rate = torch.exp(predictor)
        return counts * predictor - rate, (counts - rate if gradients else None), rate
    rate, slope, curve = link_derivatives(link, predictor)
    rate = rate.clamp_min(torch.finfo(rate.dtype).tiny)
    likelihood = torch.xlogy(counts, rate) - rate
    if not gradients:
        return likelihood, None, None
    first = counts * slope / rate - slope
    expected = link == "sigmoid" and not observed
    second = slope * slope / rate if expected else observed_curvature(counts, rate, slope, curve)
    return likelihood, first, second


def _pass(
    problem: _Problem,
    theta: torch.Tensor,
    active: torch.Tensor | None,
    scale: float,
    smooth: _Smooth,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each neuron's objective (N,) at ``theta``; with ``active`` (a mask), also the gradients (N, P)
    and the curvature blocks of the active neurons (A, P, P), summed over the parts and the processes.
    Without it, the objectives only (and empty tensors)."""
    link = problem.network.link_name
    n = theta.shape[0]
    chosen = (
        torch.zeros(0, dtype=torch.long, device=theta.device) if active is None else active.nonzero()[:, 0]
    )
    value = torch.zeros(n, dtype=torch.float64, device=theta.device)
    gradient = torch.zeros_like(theta)
    curvature = _Curvature(problem, chosen)
    shared = shared_columns(problem.network)
    for chunk in problem.chunks():
        predictor = _predictor(chunk.design, chunk.own, theta, shared)
        if chunk.offset is not None:
            predictor = predictor + chunk.offset
        likelihood, first, second = _derivatives(link, chunk.counts, predictor, active is not None)
        weight = chunk.weight
        value -= (likelihood if weight is None else likelihood * weight[:, None]).sum(0) - chunk.log_factorial
        if first is None or second is None:
            continue
        if weight is not None:
            first, second = first * weight[:, None], second * weight[:, None]
        gradient[:, :shared] -= first.T @ chunk.design
        if chunk.own is not None:
            gradient[:, shared:] -= torch.einsum("rn,rnb->nb", first, chunk.own)
        curvature.add(chunk, second)
    for total in (value, gradient, *curvature.totals()):
        parallel.all_sum(total)
    penalty, penalty_gradient = smooth(theta)
    blocks = curvature.blocks(scale)
    if smooth.diagonals is not None:
        blocks.diagonal(dim1=-2, dim2=-1).add_(smooth.diagonals[chosen])
    return value * scale + penalty, gradient * scale + penalty_gradient, blocks


class _Curvature:
    """The curvature blocks of the ``chosen`` neurons, summed over a pass: exact, ``X^T diag(c_n) X`` from
    the rows' pairwise products (float32) and, for each neuron's own columns (:func:`own_rows`), their
    products with the shared ones and with each other (float64); or where the problem has the design's
    correlations, each block's diagonal (float64) with them, ``D^1/2 C D^1/2`` (see the module), its own
    columns' correlations left out."""

    def __init__(self, problem: _Problem, chosen: torch.Tensor) -> None:
        self.problem, self.chosen = problem, chosen
        network, device = problem.network, chosen.device
        self.shared, own = shared_columns(network), own_functions(network)
        exact = problem.correlations is None
        width = problem.upper.shape[1] if exact else self.shared
        self.sums = torch.zeros(len(chosen), width, dtype=torch.float64, device=device)
        self.cross = (
            torch.zeros(len(chosen), self.shared, own, dtype=torch.float64, device=device) if exact else None
        )
        self.own = torch.zeros(len(chosen), own, own if exact else 1, dtype=torch.float64, device=device)

    def add(self, chunk: _Chunk, second: torch.Tensor) -> None:
        """Add a chunk's rows, of curvature weights ``second`` (rows, N)."""
        weights = second[:, self.chosen]
        if self.cross is None:
            self.sums += weights.T @ chunk.design.square()
        else:
            self.sums += (weights.float().T @ chunk.pairs().T).double()
        if chunk.own is not None:
            own = chunk.own[:, self.chosen]
            weighted = weights[:, :, None] * own
            if self.cross is None:
                self.own[..., 0] += torch.einsum("rab,rab->ab", weighted, own)
            else:
                self.cross += torch.einsum("rab,rp->apb", weighted, chunk.design)
                self.own += torch.einsum("rab,rac->abc", weighted, own)

    def totals(self) -> list[torch.Tensor]:
        """The sums a pass adds up over the processes."""
        return [t for t in (self.sums, self.cross, self.own) if t is not None]

    def blocks(self, scale: float) -> torch.Tensor:
        """The blocks (chosen, P, P), times ``scale``, once the sums are complete."""
        sums, correlations, shared = self.sums * scale, self.problem.correlations, self.shared
        size = design_columns(self.problem.network)
        blocks = torch.zeros(len(self.chosen), size, size, dtype=torch.float64, device=sums.device)
        if correlations is not None:
            deviation = sums.clamp_min(0.0).sqrt()
            blocks[:, :shared, :shared] = deviation[:, :, None] * correlations * deviation[:, None, :]
            blocks[:, shared:, shared:] = torch.diag_embed(self.own[..., 0] * scale)
            return blocks
        upper = self.problem.upper
        blocks[:, upper[0], upper[1]] = sums
        blocks[:, upper[1], upper[0]] = sums
        if self.cross is not None and size > shared:
            blocks[:, :shared, shared:] = self.cross * scale
            blocks[:, shared:, :shared] = self.cross.transpose(1, 2) * scale
            blocks[:, shared:, shared:] = self.own * scale
        return blocks


def _predictor(
    design: torch.Tensor, own: torch.Tensor | None, theta: torch.Tensor, shared: int
) -> torch.Tensor:
    """Each row's predictor of each neuron, (rows, N): the shared design's and the own columns' terms."""
    predictor = design @ theta[:, :shared].T
    if own is not None:
        predictor = predictor + (own * theta[:, shared:]).sum(-1)
    return predictor
