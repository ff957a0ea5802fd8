"""Figures of spike data and fitted POGLMs (matplotlib).

===========================  ==================================================================
:func:`raster`               spikes of one trial, with the inferred hidden rates below them
:func:`connectivity`         the coupling matrix ``strength[post, pre]`` as a heatmap
:func:`filters`              the coupling filters over the history lags, one panel per pair
:func:`training_curve`       the training objective (and validation score) against epoch
:func:`summary`              one page with all of the above but the filters (``spikeglm plot``)
:func:`save_figure`          write a figure to PNG, PDF or SVG, atomically
===========================  ==================================================================

Every function draws on the Axes or Figure it is given, or on a new figure, and returns what it drew on.
New figures are made with :mod:`matplotlib.pyplot` (so that notebooks show them), which is imported only
then: this module never chooses a backend and never calls ``show()``. Hidden neurons are drawn in one
colour (purple) throughout: in tick labels, in panel titles and in the hidden-rate traces' legend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import quantities as pq
from numpy.typing import ArrayLike

from spikeglm._files import atomic_write
from spikeglm.connectivity import Connectivity
from spikeglm.counts import SpikeCounts
from spikeglm.evaluate import match_hidden
from spikeglm.timeunits import parse_time

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

    from spikeglm.fit import EpochRecord
    from spikeglm.poglm import POGLM

__all__ = ["connectivity", "filters", "raster", "save_figure", "summary", "training_curve"]

HIDDEN_COLOR = "tab:purple"
"""Colour that marks hidden neurons in every figure."""

WEIGHT_CMAP = "RdBu_r"
"""Diverging colour map of the coupling heatmaps: red excitatory, blue inhibitory, white zero."""

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
"""File extensions :func:`save_figure` writes, and matplotlib's name of each format."""

_VALUES = {
    "strength": "coupling strength (filter summed over lags)",
    "peak": "peak coupling filter value",
}
_SECONDS_ABOVE = 2.0  # trials longer than this are drawn in s, shorter ones in ms
_ANNOTATE_UP_TO = 10  # heatmaps of at most this many neurons show their values in the cells


# ---------------------------------------------------------------------- the figures
def raster(
    counts: SpikeCounts,
    trial: int = 0,
    hidden_rates: ArrayLike | None = None,
    truth_rates: ArrayLike | None = None,
    ax: Axes | None = None,
    fig: Figure | SubFigure | None = None,
) -> Axes | Figure | SubFigure:
    """Spike raster of the visible units in one trial, optionally with hidden rates in a panel below.

    Each bin with spikes is one vertical tick in its unit's row, at the bin's centre; bins with more
    than one spike are drawn thicker and black, single spikes thinner and grey. Time is in ms (or in s
    for trials longer than 2 s).

    Parameters
    ----------
    counts : SpikeCounts
        The visible counts; their ``unit_ids`` label the rows and their ``bin_size`` gives the time axis.
    trial : int
        Which trial to draw.
    hidden_rates : array_like, shape (trials, bins, H), optional
        Expected hidden counts per bin (e.g. :meth:`spikeglm.POGLM.infer`), drawn as lines in spikes/s
        in a second panel that shares the time axis.
    truth_rates : array_like, shape (trials, bins, H'), optional
        True hidden rates (or counts) per bin of synthetic data, drawn dashed over ``hidden_rates`` in
        the same colours (match the hidden neurons first: they are identifiable only up to order).
        Needs ``hidden_rates``.
    ax : matplotlib.axes.Axes, optional
        Where to draw the raster when there are no hidden rates.
    fig : matplotlib.figure.Figure or SubFigure, optional
        Where to draw: the raster alone or, with hidden rates, both panels. A new figure if neither
        ``ax`` nor ``fig`` is given.

    Returns
    -------
    matplotlib.axes.Axes
        Without ``hidden_rates``: the raster's Axes.
    matplotlib.figure.Figure or SubFigure
        With ``hidden_rates``: the figure holding the two panels (raster above, rates below).

    Raises
    ------
    ValueError
        If ``trial`` is out of range, the rates do not have shape (trials, bins, H) of ``counts``,
        ``truth_rates`` come without ``hidden_rates``, both ``ax`` and ``fig`` are given, or ``ax`` is
        given with hidden rates (two panels need a figure).
    """
    if not 0 <= trial < counts.n_trials:
        raise ValueError(f"trial must be in 0..{counts.n_trials - 1}; got {trial}")
    if ax is not None and fig is not None:
        raise ValueError("give ax or fig, not both")
    if truth_rates is not None and hidden_rates is None:
        raise ValueError("truth_rates are drawn over hidden_rates: give hidden_rates too")
    if hidden_rates is None:
        if ax is None:
            ax = (fig or _new_figure(figsize=(8, 1 + 0.3 * counts.n_units))).subplots()
        _draw_spikes(ax, counts, trial)
        return ax
    if ax is not None:
        raise ValueError("with hidden_rates the raster needs two panels: pass fig=..., not ax=...")
    hidden = _rates(hidden_rates, counts, "hidden_rates")
    truth = None if truth_rates is None else _rates(truth_rates, counts, "truth_rates")
    fig = fig or _new_figure(figsize=(8, 3 + 0.3 * counts.n_units))
    spikes_ax, rates_ax = fig.subplots(2, 1, sharex=True, height_ratios=[max(counts.n_units, 3), 3])
    _draw_spikes(spikes_ax, counts, trial)
    spikes_ax.set_xlabel("")
    _draw_rates(rates_ax, counts, hidden[trial], None if truth is None else truth[trial])
    return fig


def connectivity(
    conn: Connectivity,
    ax: Axes | None = None,
    value: str = "strength",
    vmax: float | None = None,
    alpha: float | None = 0.05,
) -> Axes:
    """Heatmap of the coupling matrix: postsynaptic neurons in rows, presynaptic ones in columns.

    The colour map is diverging and centred on zero (red excitatory, blue inhibitory) with symmetric
    limits; hidden neurons' labels are purple and lines separate them from the visible block. Networks
    of up to 10 neurons also show the values in the cells.

    Parameters
    ----------
    conn : Connectivity
        A fitted or true network.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted. The colour bar takes space from its figure.
    value : {"strength", "peak"}
        ``"strength"``: each filter summed over the lags (:attr:`Connectivity.strength`);
        ``"peak"``: each filter's value of largest magnitude.
    vmax : float, optional
        Colour limits ``[-vmax, vmax]``; default the largest magnitude in the matrix. Give two
        heatmaps the same ``vmax`` to compare them.
    alpha : float, optional
        Where the connectivity carries standard errors (fits without hidden neurons), a dot marks each
        coupling between two neurons that is significant at this false discovery rate
        (:meth:`Connectivity.significance`). None: no marks.

    Returns
    -------
    matplotlib.axes.Axes
        The heatmap's Axes; its image is ``ax.images[0]``.
    """
    if value not in _VALUES:
        raise ValueError(f"unknown value {value!r}; choose one of {', '.join(_VALUES)}")
    matrix = conn.strength if value == "strength" else _peak(conn.filters)
    if vmax is None:
        vmax = float(np.abs(matrix).max())
    vmax = vmax if vmax > 0 else 1.0
    if ax is None:
        ax = _new_figure(figsize=(5.5, 4.5)).subplots()
    image = ax.imshow(matrix, cmap=WEIGHT_CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=_VALUES[value], shrink=0.9)
    title = f"Connectivity ({conn.n_visible} visible + {conn.n_hidden} hidden)"
    significant = set()
    if alpha is not None and conn.metadata.get("strength_se") is not None:
        table = conn.significance(alpha)
        marked = table[table["significant"] & ~table["self"]]
        index = {label: k for k, label in enumerate(conn.labels)}
        significant = {
            (index[post], index[pre]) for pre, post in zip(marked["pre"], marked["post"], strict=True)
        }
        mark = "*" if conn.n_neurons <= _ANNOTATE_UP_TO else "dots"
        title += f"\n{mark}: {len(marked)} couplings with q < {alpha:g}"
    if conn.n_neurons <= _ANNOTATE_UP_TO:
        for (post, pre), number in np.ndenumerate(matrix):
            color = "white" if abs(number) > 0.6 * vmax else "black"
            text = f"{number:.2f}{'*' if (post, pre) in significant else ''}"
            ax.text(pre, post, text, ha="center", va="center", fontsize=7, color=color)
    elif significant:
        post, pre = zip(*sorted(significant), strict=True)
        size = float(np.clip(600 / conn.n_neurons, 2, 30))
        ax.scatter(pre, post, s=size, color="black", marker="o", linewidths=0)
    if conn.n_hidden:
        for line in (ax.axhline, ax.axvline):
            line(conn.n_visible - 0.5, color="black", linewidth=1.2)
    _label_neurons(ax, conn)
    ax.set_xlabel("presynaptic")
    ax.set_ylabel("postsynaptic")
    ax.set_title(title)
    return ax


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


def training_curve(history: Sequence[EpochRecord], ax: Axes | None = None, objective: str = "ELBO") -> Axes:
    """Training objective per visible neuron-bin against epoch, with the validation scores as points.

    Parameters
    ----------
    history : sequence of EpochRecord
        A fit's records, e.g. :attr:`spikeglm.POGLM.history_`. Empty: the panel says so.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure if omitted.
    objective : str
        Name of the objective in the legend (``"ELBO"``, ``"IWAE"``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        ax = _new_figure(figsize=(5, 3.5)).subplots()
    ax.set_title("Training")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per visible neuron-bin")
    if not history:
        ax.text(0.5, 0.5, "no training history", transform=ax.transAxes, ha="center", va="center")
        return ax
    epochs = np.array([record.epoch + 1 for record in history])
    ax.plot(epochs, [record.objective for record in history], color="black", label=f"training {objective}")
    checked = [record for record in history if record.validation is not None]
    if checked:
        ax.plot(
            [record.epoch + 1 for record in checked],
            [record.validation for record in checked],
            linestyle="none",
            marker="o",
            color="tab:orange",
            label="validation log-likelihood",
        )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def summary(
    model: POGLM, counts: SpikeCounts | None = None, trial: int = 0, truth: Connectivity | None = None
) -> Figure:
    """One page on a fitted model: data and hidden rates, connectivity, training.

    Layout: with ``counts``, the top row is the :func:`raster` of ``trial`` with the inferred hidden
    rates below it; the bottom row holds the fitted :func:`connectivity`, the true one beside it when
    ``truth`` is given (same colour limits, and the fitted hidden neurons reordered to match the
    truth's when both have the same visible and hidden neurons), the choice of the number of hidden
    neurons when the model has one (:meth:`spikeglm.selection.Selection.plot`), and the
    :func:`training_curve`.
    Without ``counts`` the figure is the bottom row alone.

    Parameters
    ----------
    model : POGLM
        A fitted model.
    counts : SpikeCounts, optional
        Visible counts of the units the model was fitted on (for the raster and the hidden rates).
    trial : int
        The trial shown in the raster.
    truth : Connectivity, optional
        The true network (synthetic data).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fitted = model.connectivity()
    selection = model.selection_
    panels = (2 if truth is None else 3) + (selection is not None)
    fig = _new_figure(figsize=(4.6 * panels, 8.5 if counts is not None else 4.2))
    fig.suptitle(
        f"POGLM fit: {fitted.n_visible} visible + {fitted.n_hidden} hidden neurons, "
        f"{model.link} link, {model.basis!r}",
        fontsize=11,
    )
    if counts is None:
        bottom = fig
    else:
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
        rates = model.infer(counts) if fitted.n_hidden else None
        raster(counts, trial, hidden_rates=rates, fig=top)
    axes = bottom.subplots(1, panels, width_ratios=[1] * (panels - 1) + [1.1])
    if truth is None:
        _retitle(connectivity(fitted, axes[0]), "Fitted connectivity")
    else:
        if _comparable(truth, fitted):
            fitted = fitted.permute_hidden([j for _, j in match_hidden(truth, fitted)])
        vmax = float(max(np.abs(fitted.strength).max(), np.abs(truth.strength).max()))
        _retitle(connectivity(fitted, axes[0], vmax=vmax), "Fitted connectivity (hidden matched)")
        connectivity(truth, axes[1], vmax=vmax).set_title("True connectivity")
    if selection is not None:
        selection.plot(axes[-2])
    training_curve(
        model.history_, axes[-1], objective=str(model.fit_options_.get("objective", "elbo")).upper()
    )
    return fig


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


def _time_axis(counts: SpikeCounts) -> tuple[np.ndarray, str]:
    """Bin centres of a trial in ms, or in s for long trials, and the unit's name."""
    unit = pq.s if float(counts.trial_duration.rescale(pq.s).magnitude) > _SECONDS_ABOVE else pq.ms
    width = float(counts.bin_size.rescale(unit).magnitude)
    return (np.arange(counts.n_bins) + 0.5) * width, unit.dimensionality.string


def _draw_spikes(ax: Axes, counts: SpikeCounts, trial: int) -> None:
    times, unit = _time_axis(counts)
    spike_bin, unit_row = np.nonzero(counts.counts[trial])
    several = counts.counts[trial][spike_bin, unit_row] > 1
    ax.vlines(
        times[spike_bin],
        unit_row - 0.4,
        unit_row + 0.4,
        colors=np.where(several, "black", "0.45"),
        linewidths=np.where(several, 2.2, 1.0),
    )
    step = int(np.ceil(counts.n_units / 30))
    rows = np.arange(0, counts.n_units, step)
    ax.set_yticks(rows, [str(counts.unit_ids[k]) for k in rows], fontsize=8 if counts.n_units > 10 else None)
    ax.set_ylim(counts.n_units - 0.5, -0.5)
    ax.set_xlim(0, times[-1] + times[0])
    ax.set_ylabel("unit")
    ax.set_xlabel(f"time ({unit})")
    ax.set_title(f"Trial {trial}: spikes of the visible units (thick black: > 1 spike per bin)", fontsize=10)


def _draw_rates(ax: Axes, counts: SpikeCounts, hidden: np.ndarray, truth: np.ndarray | None) -> None:
    times, unit = _time_axis(counts)
    per_second = 1.0 / counts.bin_seconds
    for k in range(hidden.shape[1]):
        ax.plot(times, hidden[:, k] * per_second, color=f"C{k % 10}", label=f"hidden-{k}")
    for k in range(0 if truth is None else truth.shape[1]):
        label = "truth (dashed)" if k == 0 else None
        ax.plot(times, truth[:, k] * per_second, color=f"C{k % 10}", linestyle="--", label=label)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("rate (spikes/s)")
    ax.set_title("Inferred hidden rates (posterior mean)", fontsize=10, color=HIDDEN_COLOR)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _rates(rates: ArrayLike, counts: SpikeCounts, name: str) -> np.ndarray:
    array = np.asarray(rates, dtype=float)
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


def _label_neurons(ax: Axes, conn: Connectivity) -> None:
    """Neuron labels on both axes of a heatmap, hidden ones in the hidden colour."""
    positions = np.arange(conn.n_neurons)
    step = int(np.ceil(conn.n_neurons / 40))
    shown = positions[::step]
    labels = [conn.labels[k] for k in shown]
    ax.set_xticks(
        shown,
        labels,
        rotation=45 if conn.n_neurons <= 10 else 90,
        ha="right",
        va="center",
        rotation_mode="anchor",
    )
    ax.set_yticks(shown, labels)
    for tick_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        for k, text in zip(shown, tick_labels, strict=True):
            if not conn.visible[k]:
                text.set_color(HIDDEN_COLOR)
    if conn.n_neurons > 10:
        ax.tick_params(labelsize=7)


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
