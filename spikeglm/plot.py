"""Figures of spike data and fitted POGLMs (matplotlib).

===========================  ==================================================================
:func:`raster`               spikes of one trial (or a page of a long one), the hidden rates below
:func:`connectivity`         the coupling matrix ``strength[post, pre]`` as a heatmap
:func:`neuron_order`         an order of the neurons that keeps related ones together (large heatmaps)
:func:`color_limits`         colour limits shared by several heatmaps, to compare them
:func:`filters`              the coupling filters over the history lags, one panel per pair
:func:`training_curve`       the training objective against epoch: learning-rate changes, why it stopped
:func:`summary`              one page with all of the above but the filters (``spikeglm plot``)
:func:`save_figure`          write a figure to PNG, PDF or SVG, atomically
===========================  ==================================================================

Every function draws on the Axes or Figure it is given, or on a new figure, and returns what it drew on.
New figures are made with :mod:`matplotlib.pyplot` (so that notebooks show them), which is imported only
then: this module never chooses a backend and never calls ``show()``. Hidden neurons are drawn in one
colour (purple) throughout: in tick labels, in panel titles and in the hidden-rate traces' legend.
"""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import quantities as pq
from matplotlib.colors import ListedColormap
from numpy.typing import ArrayLike

from spikeglm.connectivity import Connectivity
from spikeglm.counts import SpikeCounts
from spikeglm.evaluate import match_hidden
from spikeglm.files import atomic_write
from spikeglm.inference.stopping import PLATEAU_SMOOTHING
from spikeglm.poglm import POGLM
from spikeglm.records import EpochRecord
from spikeglm.timeunits import format_time, parse_time

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

__all__ = [
    "color_limits",
    "connectivity",
    "filters",
    "neuron_order",
    "raster",
    "save_figure",
    "summary",
    "training_curve",
]

HIDDEN_COLOR = "tab:purple"
"""Colour that marks hidden neurons in every figure."""

WEIGHT_CMAP = "RdBu_r"
"""Diverging colour map of the couplings between visible neurons: red excitatory, blue inhibitory."""

HIDDEN_CMAP = "PuOr_r"
"""Colour map of the couplings with a hidden neuron (own scale): orange excitatory, purple inhibitory."""

ROBUST_PERCENTILE = 98.0
"""Default colour limit of the visible block: this percentile of its magnitudes (larger ones clipped)."""

ORDERS = ("auto", "given", "hidden", "cluster")
"""Orders of the neurons in a heatmap (:func:`neuron_order`)."""

LONG_TRIAL_SECONDS = 10.0
"""Trials longer than this (continuous recordings) are drawn in pages."""

PAGE_SECONDS = 2.0
"""Default length of a page of a long trial, in s."""

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
"""File extensions :func:`save_figure` writes, and matplotlib's name of each format."""

_VALUES = {
    "strength": "coupling strength (filter summed over lags)",
    "peak": "peak coupling filter value",
}
_SECONDS_ABOVE = 2.0  # trials longer than this are drawn in s, shorter ones in ms
_ANNOTATE_UP_TO = 10  # heatmaps of at most this many neurons show their values in the cells
_ORDER_ABOVE = 30  # heatmaps of more neurons are reordered by default
_MAX_LABELS = 30  # most visible neurons labelled on an axis
_RATE_PANEL_INCHES = 2.2  # height of the hidden-rate panel


# ---------------------------------------------------------------------- the figures
def raster(
    counts: SpikeCounts,
    trial: int | None = None,
    hidden_rates: ArrayLike | None = None,
    truth_rates: ArrayLike | None = None,
    ax: Axes | None = None,
    fig: Figure | SubFigure | None = None,
    *,
    page: int | None = None,
    page_seconds: float = PAGE_SECONDS,
    truth_spikes: ArrayLike | SpikeCounts | None = None,
    latent: tuple[ArrayLike, ArrayLike] | None = None,
    truth_latent: ArrayLike | None = None,
) -> Axes | Figure | SubFigure:
    """Spike raster of the visible units in one trial (or one page of a long one), hidden rates and latent
    factors below.

    Each bin with spikes is one vertical tick in its unit's row, at the bin's centre; bins with more
    than one spike are drawn thicker and black, single spikes thinner and grey. A trial of at most
    :data:`LONG_TRIAL_SECONDS` is drawn whole, its time axis running from the trial's start (in ms up to
    2 s, else in s). A longer trial (a continuous recording) is drawn one page of ``page_seconds`` at a
    time, on the recording's own clock in s when the counts know where the trial starts
    (``metadata["trial_starts_s"]``, as :meth:`spikeglm.Recording.bin` records it). The title names the
    trial or page and the bin size.

    Parameters
    ----------
    counts : SpikeCounts
        The visible counts; their ``unit_ids`` label the rows and their ``bin_size`` gives the time axis.
    trial : int, optional
        Which trial to draw; default the busiest (the most units with spikes, then the most spikes).
    hidden_rates : array_like, shape (trials, bins, H), optional
        Expected hidden counts per bin (e.g. :meth:`spikeglm.POGLM.infer`), drawn as rates in Hz (the
        count per bin divided by the bin size; the right axis reads the count per bin) in a panel of
        their own below, sharing the time axis.
    truth_rates : array_like, shape (trials, bins, H'), optional
        True hidden rates (expected counts per bin) of synthetic data, drawn dashed over
        ``hidden_rates`` in the same colours (match the hidden neurons first: they are identifiable
        only up to order). Needs ``hidden_rates``.
    ax : matplotlib.axes.Axes, optional
        Where to draw the raster when there are no hidden rates.
    fig : matplotlib.figure.Figure or SubFigure, optional
        Where to draw: the raster alone or, with hidden rates, both panels. A new figure if neither
        ``ax`` nor ``fig`` is given.
    page : int, optional
        The page of a long trial (0 is its first ``page_seconds``); default the busiest page. Only
        trials longer than :data:`LONG_TRIAL_SECONDS` have pages.
    page_seconds : float
        Length of a page of a long trial, in s.
    truth_spikes : array_like, shape (trials, bins, H'), or SpikeCounts, optional
        True hidden spike counts of synthetic data (e.g. :func:`spikeglm.examples.hidden_counts`),
        drawn as ticks in the top band of the rate panel, in the colours of the inferred rates. Needs
        ``hidden_rates``.
    latent : (mean, sd), each array_like of shape (trials, bins, K), optional
        The latent factors' posterior paths (:meth:`spikeglm.POGLM.infer_latent`), drawn in a panel of
        their own below, each mean with a band of one sd, beside the population rate (all visible
        spikes per bin, smoothed over 20 bins and z-scored) for comparison.
    truth_latent : array_like, shape (trials, bins, K'), optional
        True paths of synthetic data, dashed in the same panel (a factor's sign is arbitrary: match it
        first). Needs ``latent``.

    Returns
    -------
    matplotlib.axes.Axes
        Without ``hidden_rates`` or ``latent``: the raster's Axes.
    matplotlib.figure.Figure or SubFigure
        With them: the figure holding the panels (raster above, rates and factors below).

    Raises
    ------
    ValueError
        If ``trial`` or ``page`` is out of range (or a page is asked of a trial that is drawn whole), the
        rates or paths do not have shape (trials, bins, ...) of ``counts``, truth comes without what it is
        drawn over, both ``ax`` and ``fig`` are given, or ``ax`` is given with panels below the raster.
    """
    if ax is not None and fig is not None:
        raise ValueError("give ax or fig, not both")
    if (truth_rates is not None or truth_spikes is not None) and hidden_rates is None:
        raise ValueError("truth_rates and truth_spikes are drawn over hidden_rates: give hidden_rates too")
    if truth_latent is not None and latent is None:
        raise ValueError("truth_latent is drawn over latent: give latent too")
    view = _page(counts, trial, page, page_seconds)
    height = _raster_height(counts.n_units)
    panels = [hidden_rates is not None, latent is not None]
    if not any(panels):
        if ax is None:
            ax = (fig or _new_figure(figsize=(9, height + 0.8))).subplots()
        _draw_spikes(ax, counts, view)
        return ax
    if ax is not None:
        raise ValueError(
            "with hidden_rates or latent the raster needs panels below: pass fig=..., not ax=..."
        )
    below = sum(panels)
    fig = fig or _new_figure(figsize=(9, height + below * _RATE_PANEL_INCHES + 0.8))
    spikes_ax, *lower = fig.subplots(
        1 + below, 1, sharex=True, height_ratios=[height] + [_RATE_PANEL_INCHES] * below
    )
    _draw_spikes(spikes_ax, counts, view)
    spikes_ax.set_xlabel("")
    if hidden_rates is not None:
        truth = [
            None if t is None else _rates(t, counts, n)
            for t, n in ((truth_rates, "truth_rates"), (truth_spikes, "truth_spikes"))
        ]
        _draw_rates(lower[0], counts, view, _rates(hidden_rates, counts, "hidden_rates"), *truth)
    if latent is not None:
        mean, sd = (_rates(latent[i], counts, name) for i, name in enumerate(("latent mean", "latent sd")))
        true_paths = None if truth_latent is None else _rates(truth_latent, counts, "truth_latent")
        _draw_latent(lower[-1], counts, view, mean, sd, true_paths)
    if len(lower) == 2:
        lower[0].set_xlabel("")
    return fig


def connectivity(
    conn: Connectivity,
    ax: Axes | None = None,
    value: str = "strength",
    vmax: float | tuple[float, float] | None = None,
    alpha: float | None = 0.05,
    order: str | Sequence[int] | np.ndarray = "auto",
) -> Axes:
    """Heatmap of the coupling matrix: postsynaptic neurons in rows, presynaptic ones in columns.

    The colour maps are diverging and centred on zero with symmetric limits. The couplings between
    visible neurons (red excitatory, blue inhibitory) have a colour scale of their own, robust to
    outliers: by default it ends at the :data:`ROBUST_PERCENTILE` th percentile of their magnitudes
    between distinct neurons, and larger values (often the self-couplings) are clipped to the ends of
    the scale, which the colour bar marks with arrows. The couplings to and from hidden neurons (orange
    excitatory, purple inhibitory) have a second scale and colour bar, so one large hidden weight does
    not wash out the visible block; lines separate the two, and hidden neurons' labels are purple.

    Networks of up to 10 neurons show the values in the cells. Larger ones label at most 30 neurons
    per axis (and every hidden neuron), and above 30 neurons the visible ones are reordered
    (``order="auto"``) so that related neurons sit together; see :func:`neuron_order`.

    Parameters
    ----------
    conn : Connectivity
        A fitted or true network.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted. The colour bars take space from its figure.
    value : {"strength", "peak"}
        ``"strength"``: each filter summed over the lags (:attr:`Connectivity.strength`);
        ``"peak"``: each filter's value of largest magnitude.
    vmax : float or (float, float), optional
        Colour limits ``[-vmax, vmax]``: one number for both scales, or a pair (visible, hidden); default
        the robust limit of the visible block and the largest magnitude involving a hidden neuron. Give
        two heatmaps the same ``vmax`` to compare them.
    alpha : float, optional
        Where the connectivity carries standard errors (fits without hidden neurons), a mark (``*`` in
        small networks, else a dot) shows each coupling between two neurons that is significant at this
        false discovery rate (:meth:`Connectivity.significance`). None: no marks.
    order : {"auto", "given", "hidden", "cluster"} or sequence of int
        Order of the visible neurons (:func:`neuron_order`; hidden neurons come last), or the neuron
        indices in drawing order (e.g. another network's ``neuron_order``, to compare two heatmaps).

    Returns
    -------
    matplotlib.axes.Axes
        The heatmap's Axes; its image of the visible block is ``ax.images[0]``, that of the couplings
        with hidden neurons (when there are any) ``ax.images[1]``; the data of both are in the drawn
        order, masked outside their block.
    """
    if value not in _VALUES:
        raise ValueError(f"unknown value {value!r}; choose one of {', '.join(_VALUES)}")
    index, by = _drawing_order(conn, order)
    matrix = (conn.strength if value == "strength" else _peak(conn.filters))[np.ix_(index, index)]
    visible = conn.visible[index]
    with_hidden = ~(visible[:, None] & visible[None, :])
    limits = _limits(conn, value) if vmax is None else _pair(vmax)
    if ax is None:
        side = float(np.clip(2.5 + 0.045 * conn.n_neurons, 5.0, 10.0))
        ax = _new_figure(figsize=(side + 1.5, side)).subplots()
    blocks = [("visible", WEIGHT_CMAP, ~with_hidden, limits[0])]
    if conn.n_hidden:
        blocks.append(("hidden", HIDDEN_CMAP, with_hidden, limits[1]))
    for name, cmap, inside, limit in blocks:
        image = ax.imshow(
            np.ma.masked_where(~inside, matrix), cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest"
        )
        clipped = bool((np.abs(matrix[inside]) > limit * (1 + 1e-9)).any())
        label = _VALUES[value] if name == "visible" else f"{value}, with a hidden neuron"
        bar = ax.figure.colorbar(
            image, ax=ax, shrink=0.9 if conn.n_hidden == 0 else 0.6, extend="both" if clipped else "neither"
        )
        bar.set_label(label + ("\n(clipped: arrows)" if clipped else ""), fontsize=8)
    title = f"Connectivity ({conn.n_visible} visible + {conn.n_hidden} hidden)"
    significant: set[tuple[int, int]] = set()
    if alpha is not None and conn.metadata.get("strength_se") is not None:
        significant, told = _significant_cells(conn, index, alpha)
        title += f"\n{told}"
    if conn.n_neurons <= _ANNOTATE_UP_TO:
        for (post, pre), number in np.ndenumerate(matrix):
            limit = limits[1] if with_hidden[post, pre] else limits[0]
            color = "white" if abs(number) > 0.6 * limit else "black"
            text = f"{number:.2f}{'*' if (post, pre) in significant else ''}"
            ax.text(pre, post, text, ha="center", va="center", fontsize=7, color=color)
    elif significant:
        _mark_cells(ax, significant, matrix.shape)
    _draw_groups(ax, conn, index, by)
    ordered = {
        "hidden": ", visible grouped by their strongest hidden input",
        "cluster": ", visible clustered by their couplings",
        "explicit": ", visible in the order given",
    }
    ax.set_xlabel("presynaptic" + ordered.get(by, ""), fontsize=None if by == "given" else 8)
    ax.set_ylabel("postsynaptic")
    ax.set_title(title)
    return ax


def _drawing_order(conn: Connectivity, order: str | Sequence[int] | np.ndarray) -> tuple[np.ndarray, str]:
    """The neurons in the order :func:`connectivity` draws them, and the name of that order (an ordering
    of :data:`ORDERS`, ``"given"`` or ``"explicit"``)."""
    if isinstance(order, str):
        by = _resolve_order(conn, order)
        return neuron_order(conn, by), by
    index = np.asarray(order, dtype=int)
    if sorted(index.tolist()) != list(range(conn.n_neurons)):
        raise ValueError(f"order must be a permutation of 0..{conn.n_neurons - 1}")
    return index, "given" if np.array_equal(index, np.arange(conn.n_neurons)) else "explicit"


def _significant_cells(
    conn: Connectivity, index: np.ndarray, alpha: float
) -> tuple[set[tuple[int, int]], str]:
    """The cells (row, column, in the drawn ``index`` order) of the couplings between two distinct neurons
    that are significant at ``alpha``, and the line of the title that says how they are marked."""
    table = conn.significance(alpha)
    marked = table[table["significant"] & ~table["self"]]
    where = {conn.labels[neuron]: k for k, neuron in enumerate(index)}
    cells = {(where[post], where[pre]) for pre, post in zip(marked["pre"], marked["post"], strict=True)}
    mark = "*" if conn.n_neurons <= _ANNOTATE_UP_TO else "dots"
    faded = "" if conn.n_neurons <= _ANNOTATE_UP_TO else ", the others faded"
    return cells, f"{mark}: {len(marked)} couplings with q < {alpha:g}{faded}"


def _mark_cells(ax: Axes, cells: set[tuple[int, int]], shape: tuple[int, ...]) -> None:
    """Dots on the significant ``cells`` of a large map, whose other cells are faded under a white veil
    (in a large map, dark cells look like dots)."""
    veil = np.ones(shape, dtype=bool)
    veil[tuple(np.array(sorted(cells)).T)] = False
    white = ListedColormap(["white"])
    ax.imshow(np.ma.masked_where(~veil, veil), cmap=white, alpha=0.7, interpolation="nearest")
    post, pre = zip(*sorted(cells), strict=True)
    size = float(np.clip(900 / shape[0], 3, 30))
    ax.scatter(pre, post, s=size, color="black", marker="o", linewidths=0)


def _draw_groups(ax: Axes, conn: Connectivity, index: np.ndarray, by: str) -> None:
    """Lines between the visible and the hidden neurons, and (``by="hidden"``) between the groups of
    visible neurons with the same strongest hidden input; the neurons' labels."""
    if conn.n_hidden:
        for line in (ax.axhline, ax.axvline):
            line(conn.n_visible - 0.5, color="black", linewidth=1.2)
    if by == "hidden":
        drivers = _drivers(conn)[index[: conn.n_visible]]  # neuron_order puts the visible ones first
        for edge in np.flatnonzero(np.diff(drivers)) + 0.5:
            for line in (ax.axhline, ax.axvline):
                line(edge, color="0.5", linewidth=0.6)
    _label_neurons(ax, conn, index)


def color_limits(*conns: Connectivity, value: str = "strength") -> tuple[float, float]:
    """Colour limits (visible, hidden) of :func:`connectivity` that suit all the given networks.

    Each network's default limits (see :func:`connectivity`), the larger of each pair: pass the result as
    ``vmax`` to every heatmap to compare them colour for colour.

    Examples
    --------
    >>> import spikeglm as sg
    >>> truth = sg.Connectivity.load(sg.examples.path("example_truth.json"))
    >>> visible, hidden = color_limits(truth, truth)  # e.g. a fit and the truth, to draw side by side
    >>> (visible, hidden) == color_limits(truth) and visible > 0 and hidden > 0
    True
    """
    if value not in _VALUES:
        raise ValueError(f"unknown value {value!r}; choose one of {', '.join(_VALUES)}")
    if not conns:
        raise ValueError("color_limits needs at least one Connectivity")
    limits = np.max([_limits(conn, value) for conn in conns], axis=0)
    return float(limits[0]), float(limits[1])


def neuron_order(conn: Connectivity, by: str = "auto") -> np.ndarray:
    """An order of the neurons for a heatmap: the visible ones (reordered), then the hidden ones.

    Parameters
    ----------
    conn : Connectivity
        A fitted or true network.
    by : {"auto", "given", "hidden", "cluster"}
        ``"given"``: the network's own order. ``"hidden"``: the visible neurons grouped by the hidden
        neuron with the strongest coupling (largest ``|strength|``) onto them, in the order of the
        hidden neurons, the most strongly driven first within a group; neurons no hidden neuron reaches
        come last. ``"cluster"``: the visible neurons in the leaf order of a hierarchical clustering
        (Ward, optimal leaf order) of their couplings to and from the other visible neurons.
        ``"auto"``: ``"given"`` up to 30 neurons; above, ``"hidden"`` when the network has hidden
        neurons, else ``"cluster"``.

    Returns
    -------
    numpy.ndarray of int
        Neuron indices in drawing order (a permutation of ``range(conn.n_neurons)``).

    Raises
    ------
    ValueError
        For an unknown ``by``, or ``"hidden"`` for a network without hidden neurons.
    """
    by = _resolve_order(conn, by)
    visible, hidden = np.flatnonzero(conn.visible), np.flatnonzero(~conn.visible)
    if by == "hidden":
        drive = np.abs(conn.strength[np.ix_(visible, hidden)]).max(axis=1)
        visible = visible[np.lexsort((-drive, _drivers(conn)[visible]))]
    elif by == "cluster" and visible.size > 2:
        from scipy.cluster.hierarchy import leaves_list, linkage

        block = conn.strength[np.ix_(visible, visible)].copy()
        np.fill_diagonal(block, 0.0)
        profiles = np.hstack([block, block.T])  # what reaches each neuron, and what it sends
        visible = visible[leaves_list(linkage(profiles, method="ward", optimal_ordering=True))]
    return np.concatenate([visible, hidden]).astype(int)


def filters(
    conn: Connectivity,
    fig: Figure | SubFigure | None = None,
    max_neurons: int = 8,
    bin_size: str | pq.Quantity | None = None,
) -> Figure | SubFigure:
    """Grid of coupling filters over the history lags: row = postsynaptic, column = presynaptic neuron.

    Panel ``(post, pre)`` shows the effect of a ``pre`` spike on ``post``'s linear predictor at lags
    ``1..L``; the panels share their axes, self-couplings (the diagonal) are shaded, and titles of
    panels involving a hidden neuron are purple.

    Parameters
    ----------
    conn : Connectivity
        A fitted or true network.
    fig : matplotlib.figure.Figure or SubFigure, optional
        Where to draw; a new figure, sized to the grid, if omitted.
    max_neurons : int
        At most this many neurons per side. A larger network shows its first visible neurons and up to
        ``max_neurons // 2`` of its hidden neurons.
    bin_size : str or quantities.Quantity, optional
        Bin width, e.g. ``"5 ms"``: lags are then in ms instead of bins.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
        The figure; its Axes are ``fig.axes``, row by row.
    """
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1; got {max_neurons}")
    shown = _selected_neurons(conn, max_neurons)
    lags = np.arange(1, conn.basis_matrix.shape[1] + 1, dtype=float)
    lag_unit = "bins"
    if bin_size is not None:
        lags *= float(parse_time(bin_size).rescale(pq.ms).magnitude)
        lag_unit = "ms"
    n = len(shown)
    fig = fig or _new_figure(figsize=(1.2 + 1.6 * n, 0.9 + 1.4 * n))
    grid = np.atleast_2d(fig.subplots(n, n, sharex=True, sharey=True, squeeze=False))
    all_filters, labels = conn.filters, conn.labels
    for (row, col), ax in np.ndenumerate(grid):
        post, pre = shown[row], shown[col]
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.plot(lags, all_filters[post, pre], marker="o", markersize=3, color="black")
        if post == pre:
            ax.set_facecolor("0.93")
        involves_hidden = not (conn.visible[post] and conn.visible[pre])
        ax.set_title(
            f"{labels[pre]} → {labels[post]}", fontsize=8, color=HIDDEN_COLOR if involves_hidden else "black"
        )
        ax.tick_params(labelsize=7)
    fig.supxlabel(f"lag ({lag_unit})")
    fig.supylabel("coupling filter (pre → post)")
    fig.suptitle("Coupling filters (shaded: self-history; purple: hidden neuron)", fontsize=10)
    return fig


#: At most this many neurons' kernels are drawn per covariate (those of largest effect), beside the median.
KERNEL_LINES = 40


def kernels(conn: Connectivity, fig: Figure | SubFigure | None = None) -> Figure | SubFigure:
    """The covariates' fitted kernels, one panel per covariate: each visible neuron's kernel as a thin line
    (at most :data:`KERNEL_LINES`, those of largest peak), their median in black, and where the fit has
    standard errors the 95% interval of the kernel that stands out most from its errors (largest |z|).

    The x axis is the lag (causal kernels), the time from the event (event kernels) or the covariate's
    value (splines); the y axis the kernel's term in the linear predictor, per unit of the covariate
    (per event).

    Raises
    ------
    ValueError
        If the connectivity has no covariates.
    """
    covariates = conn.metadata.get("covariates") or []
    if not covariates:
        raise ValueError("kernels: this connectivity has no covariates (fit with covariates=)")
    fig = fig or _new_figure(figsize=(1.0 + 3.6 * len(covariates), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(covariates), squeeze=False)[0])
    visible = int(conn.visible.sum())
    for ax, covariate in zip(axes, covariates, strict=True):
        axis = np.asarray(covariate["axis"])
        values = np.asarray(covariate["values"])[:visible]
        largest = np.argsort(-np.abs(values).max(axis=1))[:KERNEL_LINES]
        ax.axhline(0, color="0.6", linewidth=0.8)
        for k in largest:
            ax.plot(axis, values[k], color="tab:blue", alpha=0.35, linewidth=0.8)
        if covariate.get("se") is not None:  # the neuron whose kernel stands out most from its errors
            errors = np.asarray(covariate["se"], dtype=float)[:visible]
            top = int(np.nanargmax(np.max(np.abs(values) / np.where(errors > 0, errors, np.inf), axis=1)))
            band = (values[top] - 1.96 * errors[top], values[top] + 1.96 * errors[top])
            ax.fill_between(
                axis, *band, color="tab:blue", alpha=0.2, linewidth=0, label="95% interval, most significant"
            )
        ax.plot(axis, np.median(values, axis=0), color="black", linewidth=2, label="median")
        kernel = covariate["kernel"]["name"]
        ax.set_xlabel({"lags": "lag (s)", "around": "time from the event (s)"}.get(kernel, "value"))
        ax.set_title(f"{covariate['name']} ({kernel}, {len(largest)} of {visible} neurons)", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("term in the predictor")
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def training_curve(
    history: Sequence[EpochRecord],
    ax: Axes | None = None,
    objective: str = "ELBO",
    stopped: str | None = None,
    step: str = "epoch",
) -> Axes:
    """Training objective per visible neuron-bin against epoch: did the fit converge?

    The objective of each epoch is drawn thin and grey, its exponential moving average (what the
    stopping rule of :func:`spikeglm.inference.train` reads) black, the validation scores as points; a dotted
    vertical line marks each change of the learning rate (the rule lowers it at the first plateau), and
    the title says why the fit stopped.

    Parameters
    ----------
    history : sequence of EpochRecord
        A fit's records, e.g. :attr:`spikeglm.POGLM.history_`. Empty: the panel says so.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted.
    objective : str
        Name of the objective in the legend (``"ELBO"``, ``"IWAE"``).
    stopped : str, optional
        Why the fit stopped (:attr:`spikeglm.POGLM.stopped_`): the title's verdict (converged, stopped
        early, or not converged) and, in small print, the reason.
    step : str
        What one record is, for the x axis: ``"epoch"``, or ``"solver iteration"`` for a fit without
        hidden neurons (Newton's or L-BFGS's).

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        ax = _new_figure(figsize=(5, 3.8)).subplots()
    ax.set_title(_verdict(stopped), fontsize=10)
    ax.set_xlabel(step)
    ax.set_ylabel("nats per visible neuron-bin")
    if not history:
        ax.text(0.5, 0.5, "no training history", transform=ax.transAxes, ha="center", va="center")
        return ax
    epochs = np.array([record.epoch + 1 for record in history])
    values = np.array([record.objective for record in history])
    ax.plot(epochs, values, color="0.6", linewidth=0.8, label=f"training {objective}")
    smoothed = np.empty_like(values)
    smoothed[0] = values[0]
    for k in range(1, values.size):
        smoothed[k] = smoothed[k - 1] + PLATEAU_SMOOTHING * (values[k] - smoothed[k - 1])
    ax.plot(epochs, smoothed, color="black", linewidth=1.4, label="smoothed (read by the stopping rule)")
    checked = [(record.epoch + 1, record.validation) for record in history if record.validation is not None]
    if checked:
        ax.plot(
            [epoch for epoch, _ in checked],
            [value for _, value in checked],
            linestyle="none",
            marker="o",
            color="tab:orange",
            label="validation log-likelihood",
        )
    for before, after in itertools.pairwise(history):
        if before.lr is not None and after.lr is not None and not np.isclose(before.lr, after.lr):
            ax.axvline(after.epoch + 0.5, color="tab:red", linestyle=":", linewidth=1.2)
            ax.annotate(
                f"lr {before.lr:.3g} → {after.lr:.3g}",
                (after.epoch + 0.5, 0.97),
                xycoords=("data", "axes fraction"),
                rotation=90,
                ha="right",
                va="top",
                fontsize=7,
                color="tab:red",
            )
    # the first epochs of a long fit often start far below: the limits then leave out its first tenth
    first = values.size // 10 if values.size >= 30 else 0
    settled = np.concatenate([values[first:], smoothed[first:], [value for _, value in checked]])
    low, high = float(np.min(settled)), float(np.max(settled))
    margin = 0.08 * (high - low) or 0.05 * abs(high) or 0.1
    ax.set_ylim(low - margin, high + margin)
    legend = ax.legend(
        loc="lower right", fontsize=7, title=None if stopped is None else textwrap.fill(stopped, 50)
    )
    legend.get_title().set_fontsize(6.5)
    ax.grid(alpha=0.3)
    return ax


def _verdict(stopped: str | None) -> str:
    """The training panel's title: whether the fit converged, from its stop reason."""
    if stopped is None:
        return "Training"
    if stopped.startswith("converged"):
        return "Training: converged"
    if stopped.startswith("stopped early"):
        return "Training: stopped early (validation)"
    return "Training: NOT converged (epoch cap reached)"


def summary(
    model: POGLM,
    counts: SpikeCounts | None = None,
    trial: int | None = None,
    truth: Connectivity | None = None,
    *,
    page: int | None = None,
    truth_spikes: ArrayLike | SpikeCounts | None = None,
    covariates: list | None = None,
) -> Figure:
    """One page on a fitted model: data and hidden rates, connectivity, training.

    Layout: with ``counts``, the top row is the :func:`raster` of ``trial`` (or of a ``page`` of a long
    trial) with the inferred hidden rates in a panel below it; the bottom row holds the fitted
    :func:`connectivity`, the true one beside it when ``truth`` is given (same colour limits, and the
    fitted hidden neurons reordered to match the truth's when both have the same visible and hidden
    neurons), the choice of the number of hidden neurons when the model has one
    (:meth:`spikeglm.records.Selection.plot`), and the :func:`training_curve` with the fit's stop
    reason. A model with covariates gets a last row of their :func:`kernels`. The title names the
    network, the bin size and the model's options. Panels grow with the number of neurons. Without
    ``counts`` the figure is the connectivity row (and the kernels) alone.

    Parameters
    ----------
    model : POGLM
        A fitted model.
    counts : SpikeCounts, optional
        Visible counts of the units the model was fitted on (for the raster and the hidden rates).
    trial : int, optional
        The trial shown in the raster; default the busiest.
    truth : Connectivity, optional
        The true network (synthetic data).
    page : int, optional
        The page of a long trial shown (see :func:`raster`); default the busiest.
    truth_spikes : array_like, shape (trials, bins, H), or SpikeCounts, optional
        The true hidden neurons' spike counts in ``counts``' bins (synthetic data), drawn over the
        inferred rates; with ``truth``, in the order of its hidden neurons.
    covariates : list of Covariate, optional
        The fit's covariates for ``counts``: needed with ``counts`` by a model that has latent factors
        and covariates (the factors' path is inferred with them).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fitted = model.connectivity()
    selection = model.selection_
    rates = model.infer(counts) if counts is not None and fitted.n_hidden else None
    latent = _latent_path(model, counts, covariates)
    if truth is not None and _comparable(truth, fitted):
        order = [j for _, j in match_hidden(truth, fitted)]
        fitted = fitted.permute_hidden(order)
        rates = None if rates is None else rates[..., order]
    panels = (2 if truth is None else 3) + (selection is not None)
    side = float(np.clip(2.8 + 0.04 * fitted.n_neurons, 4.2, 8.0))
    widths = [side + 1.4] * (panels - 1 - (selection is not None)) + [4.6] * (selection is not None) + [5.0]
    top_height = 0.0
    if counts is not None:
        below = (rates is not None) + (latent is not None)
        top_height = _raster_height(counts.n_units) + below * _RATE_PANEL_INCHES + 1.0
    kernel_height = 3.4 if fitted.metadata.get("covariates") else 0.0
    fig = _new_figure(figsize=(max(sum(widths), 9.0), side + 0.6 + top_height + kernel_height))
    checked = model.checked_settings()
    fig.suptitle(
        f"POGLM fit: {fitted.n_visible} visible + {fitted.n_hidden} hidden neurons"
        + (f" + {checked.n_latent} latent factor(s)" if checked.n_latent else "")
        + ", "
        f"{_bin_label(model.bin_size_)} bins, {checked.link} link, {checked.basis.label}",
        fontsize=11,
    )
    heights = [h for h in (top_height, side + 0.6, kernel_height) if h]
    rows = list(fig.subfigures(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0])
    if counts is not None:
        spikes = truth_spikes if rates is not None else None
        raster(
            counts, trial, hidden_rates=rates, fig=rows.pop(0), page=page, truth_spikes=spikes, latent=latent
        )
    bottom = rows.pop(0)
    if kernel_height:
        kernels(fitted, rows.pop(0))
    axes = bottom.subplots(1, panels, width_ratios=widths)
    _fitted_and_true(fitted, truth, axes)
    if selection is not None:
        selection.plot(axes[-2])
    training_curve(
        model.history_,
        axes[-1],
        # a GLM's fit maximises the log-likelihood itself (Newton's method or L-BFGS)
        objective="log-likelihood"
        if checked.glm
        else str(model.fit_options_.get("objective", "elbo")).upper(),
        stopped=model.stopped_,
        step="solver iteration" if checked.glm else "epoch",
    )
    return fig


def _latent_path(model: POGLM, counts: SpikeCounts | None, covariates: list | None) -> tuple | None:
    """The latent factors' posterior path in ``counts`` (mean, sd), or None without counts or factors."""
    if counts is None or not model.checked_settings().n_latent:
        return None
    return model.infer_latent(counts, covariates)


def _fitted_and_true(fitted: Connectivity, truth: Connectivity | None, axes: Sequence[Axes]) -> None:
    """The fitted connectivity in ``axes[0]`` and, where the truth is known, the true one in ``axes[1]``
    with the same colour limits (and, for the same recorded neurons, in the true network's order)."""
    if truth is None:
        _retitle(connectivity(fitted, axes[0]), "Fitted connectivity")
        return
    limits = color_limits(fitted, truth)
    v = fitted.n_visible
    if truth.n_visible == v and truth.labels[:v] == fitted.labels[:v]:  # the same recorded neurons
        shown = np.concatenate([neuron_order(truth)[:v], np.arange(v, fitted.n_neurons)])
        ax = connectivity(fitted, axes[0], vmax=limits, order=shown)
        _retitle(ax, "Fitted connectivity" + (" (hidden matched)" if _comparable(truth, fitted) else ""))
        if truth.n_neurons > _ORDER_ABOVE:
            ax.set_xlabel("presynaptic, in the true network's order", fontsize=8)
    else:
        _retitle(connectivity(fitted, axes[0], vmax=limits), "Fitted connectivity")
    connectivity(truth, axes[1], vmax=limits).set_title("True connectivity")


def _retitle(ax: Axes, first_line: str) -> None:
    """Replace the first line of a panel's title, keeping what follows (e.g. the significance note)."""
    ax.set_title("\n".join([first_line, *ax.get_title().split("\n")[1:]]))


def save_figure(fig: Figure, path: str | os.PathLike, overwrite: bool = False, dpi: float = 150) -> None:
    """Write a figure to a PNG, PDF or SVG file (by the extension), atomically.

    The figure is rendered into a temporary file next to ``path``, which is then renamed onto it: a failed
    write leaves no partial file and leaves an existing ``path`` as it was.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure to write.
    path : str or os.PathLike
        ``.png``, ``.pdf`` or ``.svg`` (case-insensitive).
    overwrite : bool
        Replace an existing file.
    dpi : float
        Resolution of the PNG (and of raster images inside PDF and SVG files).

    Raises
    ------
    ValueError
        For another extension (the message lists the supported ones).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: unsupported figure format {path.suffix!r}; supported: {', '.join(FORMATS)}"
        )
    atomic_write(
        path,
        lambda temporary: fig.savefig(temporary, format=fmt, dpi=dpi, bbox_inches="tight"),
        overwrite=overwrite,
    )


# ---------------------------------------------------------------------- helpers
def _new_figure(figsize: tuple[float, float]) -> Figure:
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")


def _bin_label(bin_size: str | pq.Quantity) -> str:
    """A bin size as people write it: ``"5 ms"``, ``"1.5 s"``."""
    size = parse_time(bin_size)
    unit = pq.ms if float(size.rescale(pq.s).magnitude) < 1 else pq.s
    return format_time(size.rescale(unit))


def _raster_height(n_units: int) -> float:
    """Height in inches of a raster of this many rows: a row each, within bounds."""
    return float(np.clip(0.9 + 0.22 * n_units, 1.6, 6.0))


@dataclass(frozen=True)
class _Page:
    """What a raster shows: bins ``first`` to ``stop`` of a trial, and where they lie in time."""

    trial: int
    first: int
    stop: int
    number: int | None  # the page of a long trial; None when the trial is shown whole
    n_pages: int
    start_s: float | None  # where the trial starts on the recording's clock, when the counts know it


def _page(counts: SpikeCounts, trial: int | None, page: int | None, page_seconds: float) -> _Page:
    """The trial and bins a raster shows; by default the busiest trial, and its busiest page."""
    if trial is None:
        trial = _busiest(counts.counts.sum(axis=1))
    if not 0 <= trial < counts.n_trials:
        raise ValueError(f"trial must be in 0..{counts.n_trials - 1}; got {trial}")
    starts = counts.metadata.get("trial_starts_s")
    start_s = float(starts[trial]) if starts is not None and len(starts) == counts.n_trials else None
    seconds = counts.n_bins * counts.bin_seconds
    if seconds <= LONG_TRIAL_SECONDS:
        if page not in (None, 0):
            raise ValueError(
                f"page {page}: trial {trial} is {seconds:g} s long and drawn whole (only trials over "
                f"{LONG_TRIAL_SECONDS:g} s are drawn in pages)"
            )
        return _Page(trial, 0, counts.n_bins, None, 1, start_s)
    if not page_seconds > 0:
        raise ValueError(f"page_seconds must be > 0; got {page_seconds}")
    per_page = max(1, round(page_seconds / counts.bin_seconds))
    n_pages = -(-counts.n_bins // per_page)
    if page is None:
        padded = np.zeros((n_pages * per_page, counts.n_units), dtype=np.int64)
        padded[: counts.n_bins] = counts.counts[trial]
        page = _busiest(padded.reshape(n_pages, per_page, counts.n_units).sum(axis=1))
    if not 0 <= page < n_pages:
        raise ValueError(f"page must be in 0..{n_pages - 1} (pages of {page_seconds:g} s); got {page}")
    first = page * per_page
    return _Page(trial, first, min(first + per_page, counts.n_bins), page, n_pages, start_s)


def _busiest(per_unit: np.ndarray) -> int:
    """The row (trial or page) of ``per_unit`` counts with the most units active, then the most spikes."""
    active = (per_unit > 0).sum(axis=1).astype(np.int64)
    spikes = per_unit.sum(axis=1).astype(np.int64)
    return int(np.argmax(active * (spikes.max() + 1) + spikes))


def _time_axis(counts: SpikeCounts, view: _Page) -> tuple[np.ndarray, str]:
    """Bin centres of the bins shown and the time axis' label.

    A page of a long trial is on the recording's clock in s (from the trial's start when that is not
    known); a whole trial is in time from its start, in ms up to 2 s.
    """
    bins = np.arange(view.first, view.stop) + 0.5
    if view.number is not None:
        offset = 0.0 if view.start_s is None else view.start_s
        label = "time (s)" if view.start_s is not None else "time from trial start (s)"
        return offset + bins * counts.bin_seconds, label
    unit = pq.s if counts.n_bins * counts.bin_seconds > _SECONDS_ABOVE else pq.ms
    width = float(counts.bin_size.rescale(unit).magnitude)
    return bins * width, f"time from trial start ({unit.dimensionality.string})"


def _where(counts: SpikeCounts, view: _Page) -> str:
    """Which part of the data a raster shows, for its title."""
    bins = f"{_bin_label(counts.bin_size)} bins"
    if view.number is None:
        start = "" if view.start_s is None else f", from {view.start_s:g} s"
        return f"Trial {view.trial} (of 0-{counts.n_trials - 1}){start}; {bins}"
    times, _ = _time_axis(counts, view)
    half = counts.bin_seconds / 2
    trial = f" of trial {view.trial}" if counts.n_trials > 1 else ""
    pages = f"page {view.number} of 0-{view.n_pages - 1}"
    return f"{times[0] - half:g}-{times[-1] + half:g} s ({pages}{trial}); {bins}"


def _draw_spikes(ax: Axes, counts: SpikeCounts, view: _Page) -> None:
    times, label = _time_axis(counts, view)
    shown = counts.counts[view.trial, view.first : view.stop]
    spike_bin, unit_row = np.nonzero(shown)
    several = shown[spike_bin, unit_row] > 1
    ax.vlines(
        times[spike_bin],
        unit_row - 0.4,
        unit_row + 0.4,
        colors=np.where(several, "black", "0.45").tolist(),
        linewidths=np.where(several, 2.2, 1.0),
    )
    step = int(np.ceil(counts.n_units / _MAX_LABELS))
    rows = np.arange(0, counts.n_units, step)
    ax.set_yticks(rows, [str(counts.unit_ids[k]) for k in rows], fontsize=7 if counts.n_units > 10 else None)
    ax.set_ylim(counts.n_units - 0.5, -0.5)
    half = (times[1] - times[0]) / 2 if times.size > 1 else counts.bin_seconds / 2
    ax.set_xlim(times[0] - half, times[-1] + half)
    ax.set_ylabel(f"unit ({counts.n_units})" if counts.n_units > _MAX_LABELS else "unit")
    ax.set_xlabel(label)
    ax.set_title(f"{_where(counts, view)}. Visible spikes (thick black: > 1 spike per bin)", fontsize=10)


def _draw_rates(
    ax: Axes,
    counts: SpikeCounts,
    view: _Page,
    hidden: np.ndarray,
    truth_rates: np.ndarray | None,
    truth_spikes: np.ndarray | None,
) -> None:
    times, label = _time_axis(counts, view)
    part = slice(view.first, view.stop)
    per_second = 1.0 / counts.bin_seconds
    for k in range(hidden.shape[2]):
        ax.plot(times, hidden[view.trial, part, k] * per_second, color=f"C{k % 10}", label=f"hidden-{k}")
    notes = []
    if truth_rates is not None:
        for k in range(truth_rates.shape[2]):
            rate = truth_rates[view.trial, part, k] * per_second
            ax.plot(times, rate, color=f"C{k % 10}", linestyle="--", label="true rate" if k == 0 else None)
        notes.append("dashed: true rates")
    top = max(float(np.max(line.get_ydata())) for line in ax.lines) if ax.lines else 0.0
    top = top if top > 0 else 1.0
    if truth_spikes is not None:
        # the true spikes as ticks in a band above the curves, one row per hidden neuron
        n_true = truth_spikes.shape[2]
        band = 0.35 * top
        for k in range(n_true):
            spike_bins = np.flatnonzero(truth_spikes[view.trial, part, k])
            low = top * 1.05 + band * k / n_true
            ax.vlines(times[spike_bins], low, low + 0.8 * band / n_true, color=f"C{k % 10}", linewidth=1.0)
        notes.append("ticks: true spikes")
        top = top * 1.05 + band
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel(label)
    ax.set_ylabel("rate (Hz)")
    width = _bin_label(counts.bin_size)
    ax.secondary_yaxis(
        "right",
        functions=(lambda hz: np.asarray(hz) / per_second, lambda count: np.asarray(count) * per_second),
    ).set_ylabel(f"count per {width} bin", fontsize=8)
    title = "Hidden neurons: inferred rate (posterior mean)"
    ax.set_title(title + (f"; {', '.join(notes)}" if notes else ""), fontsize=10, color=HIDDEN_COLOR)
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8, frameon=False)


#: Bins the population rate is smoothed over in the latent factors' panel.
_POPULATION_SMOOTHING = 20


def _draw_latent(
    ax: Axes, counts: SpikeCounts, view: _Page, mean: np.ndarray, sd: np.ndarray, truth: np.ndarray | None
) -> None:
    """Each factor's posterior mean with a band of one sd, the true paths dashed, and the population rate
    (smoothed, z-scored) in grey behind them."""
    times, label = _time_axis(counts, view)
    part = slice(view.first, view.stop)
    population = counts.counts[view.trial, part].sum(axis=-1).astype(float)
    width = min(_POPULATION_SMOOTHING, len(population))
    smooth = np.convolve(population, np.ones(width) / width, mode="same")
    spread = smooth.std()
    if spread > 0:
        z = (smooth - smooth.mean()) / spread
        ax.plot(times, z, color="0.6", linewidth=1.0, label="population rate (z)")
    for k in range(mean.shape[2]):
        middle, band = mean[view.trial, part, k], sd[view.trial, part, k]
        ax.fill_between(times, middle - band, middle + band, color=f"C{k % 10}", alpha=0.25, linewidth=0)
        ax.plot(times, middle, color=f"C{k % 10}", label=f"latent-{k}")
    if truth is not None:
        for k in range(truth.shape[2]):
            path = truth[view.trial, part, k]
            ax.plot(times, path, color=f"C{k % 10}", linestyle="--", label="true path" if k == 0 else None)
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel(label)
    ax.set_ylabel("factor (prior sd)")
    notes = "; dashed: true paths" if truth is not None else ""
    title = f"Latent factors: posterior mean and sd{notes}"
    ax.set_title(title, fontsize=10, color=HIDDEN_COLOR)
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8, frameon=False)


def _rates(rates: ArrayLike | SpikeCounts, counts: SpikeCounts, name: str) -> np.ndarray:
    array = np.asarray(rates.counts if isinstance(rates, SpikeCounts) else rates, dtype=float)
    if array.ndim != 3 or array.shape[:2] != counts.counts.shape[:2]:
        raise ValueError(
            f"{name} must have shape (trials, bins, H) = ({counts.n_trials}, {counts.n_bins}, H) to match "
            f"counts; got {array.shape}"
        )
    return array


def _peak(filters: np.ndarray) -> np.ndarray:
    """Each filter's value of largest magnitude over the lags, shape (post, pre)."""
    lag = np.abs(filters).argmax(axis=-1)
    return np.take_along_axis(filters, lag[..., None], axis=-1)[..., 0]


def _limits(conn: Connectivity, value: str = "strength") -> tuple[float, float]:
    """Default colour limits of a heatmap: (visible block, couplings with a hidden neuron).

    The visible limit is the :data:`ROBUST_PERCENTILE` th percentile of the magnitudes between distinct
    visible neurons (their largest if that is 0; the self-couplings' if those are all there is); the hidden
    limit is the largest magnitude involving a hidden neuron. A limit of 0 becomes 1.
    """
    matrix = np.abs(conn.strength if value == "strength" else _peak(conn.filters))
    visible = conn.visible
    block = matrix[np.ix_(visible, visible)]
    between = block[~np.eye(len(block), dtype=bool)]
    limit = float(np.percentile(between, ROBUST_PERCENTILE)) if between.size else 0.0
    limit = limit or (float(between.max()) if between.size else 0.0) or float(block.max(initial=0.0))
    with_hidden = matrix[~(visible[:, None] & visible[None, :])]
    hidden = float(with_hidden.max(initial=0.0))
    return (limit or 1.0, hidden or 1.0)


def _pair(vmax: float | tuple[float, float]) -> tuple[float, float]:
    message = f"vmax must be a number > 0 or a pair (visible, hidden) of them; got {vmax!r}"
    try:
        values = np.asarray(vmax, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    pair = np.full(2, values) if values.ndim == 0 else values
    if pair.shape != (2,) or not np.all(np.isfinite(pair) & (pair > 0)):
        raise ValueError(message)
    return float(pair[0]), float(pair[1])


def _resolve_order(conn: Connectivity, by: str) -> str:
    """The ordering that ``by`` names for this network (``"auto"`` resolved)."""
    if by not in ORDERS:
        raise ValueError(f"unknown order {by!r}; choose one of {', '.join(ORDERS)}")
    if by == "hidden" and conn.n_hidden == 0:
        raise ValueError("order 'hidden' needs hidden neurons; this network has none (use 'cluster')")
    if by != "auto":
        return by
    if conn.n_neurons <= _ORDER_ABOVE:
        return "given"
    return "hidden" if conn.n_hidden else "cluster"


def _drivers(conn: Connectivity) -> np.ndarray:
    """For each neuron, the hidden neuron (0..H-1) with the strongest coupling onto it; H if none reaches it.

    Hidden neurons get -1.
    """
    drivers = np.full(conn.n_neurons, -1)
    visible, hidden = np.flatnonzero(conn.visible), np.flatnonzero(~conn.visible)
    if hidden.size:
        drive = np.abs(conn.strength[np.ix_(visible, hidden)])
        drivers[visible] = np.where(drive.max(axis=1) > 0, drive.argmax(axis=1), hidden.size)
    return drivers


def _label_neurons(ax: Axes, conn: Connectivity, index: np.ndarray) -> None:
    """Neuron labels on both axes of a heatmap drawn in ``index`` order, hidden ones in the hidden colour.

    At most :data:`_MAX_LABELS` visible neurons are labelled (evenly spaced); hidden neurons each have
    a label, or in a large map one label for their block.
    """
    positions = np.arange(conn.n_neurons)
    visible = conn.visible[index]
    step = int(np.ceil(conn.n_visible / _MAX_LABELS))
    shown, labels = list(positions[visible][::step]), [conn.labels[k] for k in index[visible][::step]]
    if conn.n_hidden and conn.n_neurons > 2 * _MAX_LABELS:  # rows too thin for a label each: one for all
        shown.append(float(positions[~visible].mean()))
        labels.append(f"{conn.n_hidden} hidden")
    elif conn.n_hidden:
        shown += list(positions[~visible])
        labels += [conn.labels[k] for k in index[~visible]]
    many = conn.n_neurons > _ANNOTATE_UP_TO
    ax.set_xticks(shown, labels, rotation=90 if many else 45, ha="right", va="center", rotation_mode="anchor")
    ax.set_yticks(shown, labels)
    for tick_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for text in tick_labels[len(positions[visible][::step]) :]:
            text.set_color(HIDDEN_COLOR)
    if many:
        ax.tick_params(labelsize=7 if conn.n_neurons <= 60 else 6)


def _selected_neurons(conn: Connectivity, max_neurons: int) -> np.ndarray:
    """The first visible neurons and up to half of the places for hidden ones, at most max_neurons."""
    n_hidden = min(conn.n_hidden, max(max_neurons // 2, max_neurons - conn.n_visible))
    n_visible = min(conn.n_visible, max_neurons - n_hidden)
    return np.concatenate([np.arange(n_visible), conn.n_visible + np.arange(n_hidden)]).astype(int)


def _comparable(truth: Connectivity, fitted: Connectivity) -> bool:
    """Whether the fitted hidden neurons can be reordered to the truth's (same neurons on both sides)."""
    v = truth.n_visible
    return (
        truth.n_hidden == fitted.n_hidden > 0
        and v == fitted.n_visible
        and truth.labels[:v] == fitted.labels[:v]
    )
