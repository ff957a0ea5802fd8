"""Tests of spikeglm.plot: what each figure draws, and the atomic, format-checked saving of figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

import spikeglm as sg
from spikeglm import plot
from spikeglm.fit import EpochRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(diffpoglm_with_hidden, diffpoglm_fitted):
    """The published synthetic network, its data with the true hidden counts, and a briefly fitted model
    (the session's, from conftest.py)."""
    truth, _, test, _, hidden_test = diffpoglm_with_hidden
    return {"truth": truth, "test": test, "hidden_test": hidden_test, "model": diffpoglm_fitted}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(ax: Axes) -> str:
    return " ".join([ax.get_title(), ax.get_xlabel(), ax.get_ylabel()])


# ---------------------------------------------------------------------- raster
def test_raster_draws_one_mark_per_bin_with_spikes(fitted) -> None:
    test = fitted["test"]
    ax = plot.raster(test, trial=3)
    assert isinstance(ax, Axes)
    (marks,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(marks.get_segments()) == np.count_nonzero(test.counts[3])
    assert "time (ms)" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(test.unit_ids)


def test_raster_marks_bins_with_several_spikes_thicker() -> None:
    counts = sg.SpikeCounts.from_array(np.array([[0, 1], [2, 0], [0, 0]]), bin_size="5 ms")
    (marks,) = plot.raster(counts).collections
    widths = marks.get_linewidths()
    assert len(widths) == 2
    single, several = sorted(widths)
    assert several > single


def test_raster_uses_seconds_for_long_trials() -> None:
    counts = sg.SpikeCounts.from_array(np.ones((1, 600, 2)), bin_size="5 ms")
    ax = plot.raster(counts)
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_xlim()[1] == pytest.approx(3.0)


def test_raster_with_hidden_rates_returns_a_figure_with_a_rate_panel(fitted) -> None:
    model, test, hidden = fitted["model"], fitted["test"], fitted["hidden_test"]
    fig = plot.raster(test, trial=1, hidden_rates=model.infer(test), truth_rates=hidden.counts)
    assert isinstance(fig, Figure)
    spikes_ax, rates_ax = fig.axes
    assert rates_ax.get_shared_x_axes().joined(spikes_ax, rates_ax)
    assert "spikes/s" in rates_ax.get_ylabel()
    assert len(rates_ax.lines) == 4  # two inferred, two true (dashed)
    assert [line.get_linestyle() for line in rates_ax.lines[2:]] == ["--", "--"]
    inferred = model.infer(test)[1, :, 0] / 0.005
    np.testing.assert_allclose(rates_ax.lines[0].get_ydata(), inferred)


def test_raster_rejects_bad_arguments(fitted) -> None:
    test = fitted["test"]
    rates = np.zeros((test.n_trials, test.n_bins, 2))
    with pytest.raises(ValueError, match="trial"):
        plot.raster(test, trial=test.n_trials)
    with pytest.raises(ValueError, match="hidden_rates must have shape"):
        plot.raster(test, hidden_rates=rates[:, :-1])
    with pytest.raises(ValueError, match="fig"):
        plot.raster(test, hidden_rates=rates, ax=plt.figure().subplots())
    with pytest.raises(ValueError, match="truth_rates"):
        plot.raster(test, truth_rates=rates)


# ---------------------------------------------------------------------- connectivity
def test_connectivity_heatmap_shows_the_strength(fitted) -> None:
    conn = fitted["model"].connectivity()
    ax = plot.connectivity(conn)
    assert isinstance(ax, Axes)
    (image,) = ax.images
    np.testing.assert_array_equal(image.get_array(), conn.strength)
    low, high = image.get_clim()
    assert low == -high == -np.abs(conn.strength).max()
    assert ax.get_xlabel() == "presynaptic" and ax.get_ylabel() == "postsynaptic"
    assert [t.get_text() for t in ax.get_xticklabels()] == conn.labels
    assert [t.get_text() for t in ax.get_yticklabels()] == conn.labels
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    assert "strength" in ax.figure.axes[1].get_ylabel()
    assert len(ax.lines) == 2  # the visible | hidden separators


def test_connectivity_peak_values_and_fixed_limits(fitted) -> None:
    conn = fitted["truth"]
    (image,) = plot.connectivity(conn, value="peak", vmax=3.0).images
    assert image.get_clim() == (-3.0, 3.0)
    np.testing.assert_allclose(image.get_array(), conn.filters[..., 0])  # decaying filters peak at lag 1
    with pytest.raises(ValueError, match="strength"):
        plot.connectivity(conn, value="weights")


# ---------------------------------------------------------------------- filters
def test_filters_draws_one_panel_per_pair(fitted) -> None:
    conn = fitted["truth"]
    fig = plot.filters(conn, bin_size="5 ms")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == conn.n_neurons**2
    first = fig.axes[0]
    np.testing.assert_allclose(first.lines[-1].get_xdata(), [5, 10, 15, 20, 25])
    assert fig.get_supxlabel() == "lag (ms)"
    assert len({ax.get_ylim() for ax in fig.axes}) == 1
    hidden_to_first = fig.axes[conn.n_visible]
    assert hidden_to_first.get_title() == f"hidden-0 → {conn.labels[0]}"
    assert hidden_to_first.title.get_color() == plot.HIDDEN_COLOR


def test_filters_keeps_hidden_neurons_when_limited(fitted) -> None:
    conn = fitted["truth"]
    fig = plot.filters(conn, max_neurons=3)
    assert len(fig.axes) == 9
    assert fig.get_supxlabel() == "lag (bins)"
    assert [ax.get_title().split(" → ")[0] for ax in fig.axes[:3]] == ["n0", "n1", "hidden-0"]


# ---------------------------------------------------------------------- training curve
def test_training_curve_plots_each_epoch_and_validation_points() -> None:
    history = [EpochRecord(k, -1.0 + 0.01 * k, 0.1, -0.9 if k % 2 else None) for k in range(6)]
    ax = plot.training_curve(history)
    assert isinstance(ax, Axes)
    training, validation = ax.lines
    np.testing.assert_array_equal(training.get_xdata(), np.arange(1, 7))
    np.testing.assert_array_equal(validation.get_xdata(), [2, 4, 6])
    assert "epoch" in ax.get_xlabel() and "neuron-bin" in ax.get_ylabel()
    assert "ELBO" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_training_curve_of_an_empty_history_says_so() -> None:
    ax = plot.training_curve([])
    assert "no training history" in ax.texts[0].get_text()


# ---------------------------------------------------------------------- summary
def test_summary_with_data_and_truth(fitted, tmp_path: Path) -> None:
    fig = plot.summary(fitted["model"], fitted["test"], trial=2, truth=fitted["truth"])
    assert isinstance(fig, Figure)
    # raster + rates, fitted heatmap + colour bar, true heatmap + colour bar, training curve
    assert len(fig.get_axes()) == 7
    titles = " ".join(_texts(ax) for ax in fig.get_axes())
    for expected in ("Trial 2", "hidden rates", "Fitted connectivity", "True connectivity", "Training"):
        assert expected in titles
    fitted_map, true_map = (ax.images[0] for ax in fig.get_axes() if ax.images)
    assert fitted_map.get_clim() == true_map.get_clim()
    plot.save_figure(fig, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").read_bytes().startswith(PNG_SIGNATURE)


def test_summary_without_data(fitted) -> None:
    fig = plot.summary(fitted["model"])
    assert len(fig.get_axes()) == 3  # fitted heatmap + colour bar, training curve


# ---------------------------------------------------------------------- saving
@pytest.fixture
def small_figure() -> Figure:
    return plot.training_curve([EpochRecord(0, -1.0, 0.1)]).figure


@pytest.mark.parametrize(("name", "header"), [("fit.png", PNG_SIGNATURE), ("fit.PDF", b"%PDF")])
def test_save_figure_writes_the_format_of_the_extension(small_figure, tmp_path, name, header) -> None:
    path = tmp_path / name
    plot.save_figure(small_figure, path)
    assert path.read_bytes().startswith(header)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def test_save_figure_writes_svg(small_figure, tmp_path: Path) -> None:
    path = tmp_path / "fit.svg"
    plot.save_figure(small_figure, path)
    assert "<svg" in path.read_text()


def test_save_figure_refuses_to_overwrite(small_figure, tmp_path: Path) -> None:
    path = tmp_path / "fit.png"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        plot.save_figure(small_figure, path)
    assert path.read_bytes() == b"keep"
    plot.save_figure(small_figure, path, overwrite=True)
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in tmp_path.iterdir()] == ["fit.png"]


def test_save_figure_rejects_an_unknown_extension(small_figure, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png, \.pdf, \.svg"):
        plot.save_figure(small_figure, tmp_path / "fit.jpg")
    assert list(tmp_path.iterdir()) == []


def test_the_heatmap_marks_the_significant_couplings():
    rng = np.random.default_rng(0)
    strength = rng.normal(0, 1, (12, 12))
    se = np.full((12, 12), 10.0)
    se[3, 5] = se[7, 1] = 0.01  # only these two are significant (the diagonal aside)
    np.fill_diagonal(se, 0.01)
    labels = [f"n{k}" for k in range(12)]
    conn = sg.Connectivity.from_strength(strength, labels=labels, metadata={"strength_se": se.tolist()})
    ax = plot.connectivity(conn)
    (dots,) = ax.collections
    assert sorted(map(tuple, dots.get_offsets().tolist())) == [(1.0, 7.0), (5.0, 3.0)]  # (pre, post)
    assert "dots: 2 couplings with q < 0.05" in ax.get_title()
    small = sg.Connectivity.from_strength(
        strength[:3, :3], labels=labels[:3], metadata={"strength_se": se[:3, :3].tolist()}
    )
    texts = [t.get_text() for t in plot.connectivity(small).texts]
    assert not any(t.endswith("*") for t in texts)  # only self-couplings are significant: not marked
    assert not plot.connectivity(conn, alpha=None).collections
    plt.close("all")


def test_the_summary_shows_how_the_number_of_hidden_neurons_was_chosen(diffpoglm):
    _, train, _ = diffpoglm
    model = sg.select_hidden(train, (0, 1), folds=2, model=sg.POGLM(link="sigmoid", epochs=5))
    titles = [ax.get_title() for ax in plot.summary(model).axes]
    assert f"{model.n_hidden} hidden chosen (2 folds by trials)" in titles
    assert any(title.startswith("Fitted connectivity") for title in titles)
    plt.close("all")
