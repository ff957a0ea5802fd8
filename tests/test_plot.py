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
from spikeglm.records import EpochRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(diffpoglm_with_hidden, diffpoglm_fitted):
    """The published synthetic network, its data with the true hidden counts, and a briefly fitted model
    (the session's, from conftest.py)."""
    sim = diffpoglm_with_hidden
    return {"truth": sim.truth, "test": sim.test, "hidden_test": sim.hidden_test, "model": diffpoglm_fitted}


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
    assert ax.get_xlabel() == "time from trial start (ms)"
    assert [t.get_text() for t in ax.get_yticklabels()] == list(test.unit_ids)
    assert ax.get_title().startswith(f"Trial 3 (of 0-{test.n_trials - 1}); 5 ms bins")


def test_raster_marks_bins_with_several_spikes_thicker() -> None:
    counts = sg.SpikeCounts.from_array(np.array([[0, 1], [2, 0], [0, 0]]), bin_size="5 ms")
    (marks,) = plot.raster(counts).collections
    widths = marks.get_linewidths()
    assert len(widths) == 2
    single, several = sorted(widths)
    assert several > single


def test_raster_uses_seconds_for_trials_over_two_seconds() -> None:
    counts = sg.SpikeCounts.from_array(np.ones((1, 600, 2)), bin_size="5 ms")
    ax = plot.raster(counts)
    assert ax.get_xlabel() == "time from trial start (s)"
    assert ax.get_xlim() == pytest.approx((0.0, 3.0))


def _continuous(seconds: float, start: float, burst_at: float) -> sg.SpikeCounts:
    """Counts of one long trial starting at ``start`` s on the recording's clock: sparse spikes of 40
    units, all of which fire in the 2 s page starting at ``burst_at`` s into the trial."""
    rng = np.random.default_rng(0)
    array = (rng.random((1, round(seconds / 0.005), 40)) < 0.002).astype(int)
    burst = slice(round(burst_at / 0.005), round((burst_at + 2) / 0.005))
    array[0, burst] += rng.random(array[0, burst].shape) < 0.05
    metadata = {"trial_starts_s": [start]}
    return sg.SpikeCounts.from_array(array, bin_size="5 ms", metadata=metadata)


def test_a_long_trial_is_drawn_a_page_at_a_time_on_the_recordings_clock() -> None:
    counts = _continuous(60.0, start=100.0, burst_at=24.0)
    ax = plot.raster(counts)  # the busiest page: page 12 holds the burst
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_xlim() == pytest.approx((124.0, 126.0))
    assert ax.get_title().startswith("124-126 s (page 12 of 0-29); 5 ms bins")
    (marks,) = ax.collections
    assert len(marks.get_segments()) == np.count_nonzero(counts.counts[0, 4800:5200])
    first = plot.raster(counts, page=0)
    assert first.get_xlim() == pytest.approx((100.0, 102.0))
    last = plot.raster(counts, page=29)
    assert last.get_xlim()[1] == pytest.approx(160.0)
    with pytest.raises(ValueError, match=r"page must be in 0\.\.29"):
        plot.raster(counts, page=30)
    short = sg.SpikeCounts.from_array(np.ones((2, 100, 2)), bin_size="5 ms")
    with pytest.raises(ValueError, match="drawn whole"):
        plot.raster(short, page=1)


def test_without_start_times_a_long_trial_is_timed_from_its_start() -> None:
    counts = _continuous(30.0, start=0.0, burst_at=4.0)
    counts.metadata.clear()
    ax = plot.raster(counts, page=3)
    assert ax.get_xlabel() == "time from trial start (s)"
    assert ax.get_xlim() == pytest.approx((6.0, 8.0))


def test_the_default_trial_is_the_busiest() -> None:
    array = np.zeros((3, 50, 4), dtype=int)
    array[0, :5, 0] = 3  # many spikes, one unit
    array[2, 10, :] = 1  # every unit
    ax = plot.raster(sg.SpikeCounts.from_array(array, bin_size="5 ms"))
    assert ax.get_title().startswith("Trial 2 (of 0-2)")


def test_raster_with_hidden_rates_returns_a_figure_with_a_rate_panel(fitted) -> None:
    model, test, hidden = fitted["model"], fitted["test"], fitted["hidden_test"]
    fig = plot.raster(test, trial=1, hidden_rates=model.infer(test), truth_rates=hidden.counts)
    assert isinstance(fig, Figure)
    spikes_ax, rates_ax = fig.axes
    assert rates_ax.get_shared_x_axes().joined(spikes_ax, rates_ax)
    assert rates_ax.get_ylabel() == "rate (Hz)"
    (counts_axis,) = rates_ax.child_axes  # the same rates read as counts per bin
    assert counts_axis.get_ylabel() == "count per 5 ms bin"
    assert len(rates_ax.lines) == 4  # two inferred, two true (dashed)
    assert [line.get_linestyle() for line in rates_ax.lines[2:]] == ["--", "--"]
    inferred = model.infer(test)[1, :, 0] / 0.005
    np.testing.assert_allclose(rates_ax.lines[0].get_ydata(), inferred)
    # the panel's height does not shrink with the number of units
    assert rates_ax.get_position().height * fig.get_figheight() > 1.0


def test_raster_draws_the_latent_paths_in_a_panel_of_their_own(fitted) -> None:
    model, test = fitted["model"], fitted["test"]
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(test.n_trials, test.n_bins, 2))
    sd = np.full_like(mean, 0.3)
    fig = plot.raster(
        test, trial=1, hidden_rates=model.infer(test), latent=(mean, sd), truth_latent=-mean[..., :1]
    )
    spikes_ax, rates_ax, latent_ax = fig.axes[:3]
    assert latent_ax.get_shared_x_axes().joined(spikes_ax, latent_ax) and rates_ax.get_xlabel() == ""
    assert latent_ax.get_ylabel() == "factor (prior sd)" and "dashed: true paths" in latent_ax.get_title()
    labels = [line.get_label() for line in latent_ax.lines]
    assert labels[:3] == ["population rate (z)", "latent-0", "latent-1"] and "true path" in labels
    np.testing.assert_allclose(latent_ax.lines[1].get_ydata(), mean[1, :, 0])
    assert len(latent_ax.collections) == 2  # one sd band per factor
    alone = plot.raster(test, trial=1, latent=(mean, sd))
    assert len(alone.axes) == 2
    with pytest.raises(ValueError, match=r"latent mean must have shape \(trials, bins, H\)"):
        plot.raster(test, latent=(mean[:, :5], sd))
    with pytest.raises(ValueError, match="truth_latent is drawn over latent"):
        plot.raster(test, truth_latent=mean)


def test_raster_overlays_the_true_hidden_spikes(fitted) -> None:
    model, test, hidden = fitted["model"], fitted["test"], fitted["hidden_test"]
    fig = plot.raster(test, trial=4, hidden_rates=model.infer(test), truth_spikes=hidden.counts)
    rates_ax = fig.axes[1]
    ticks = [c for c in rates_ax.collections if isinstance(c, LineCollection)]
    assert [len(t.get_segments()) for t in ticks] == np.count_nonzero(hidden.counts[4], axis=0).tolist()
    assert "ticks: true spikes" in rates_ax.get_title()
    top = max(line.get_ydata().max() for line in rates_ax.lines)
    assert min(t.get_segments()[0][0, 1] for t in ticks) > top  # above the rate curves


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
    visible, hidden = ax.images  # two blocks, each on its own colour scale
    with_hidden = np.ones((5, 5), dtype=bool)
    with_hidden[:3, :3] = False
    np.testing.assert_array_equal(visible.get_array().mask, with_hidden)
    np.testing.assert_array_equal(hidden.get_array().mask, ~with_hidden)
    np.testing.assert_array_equal(visible.get_array().filled(0) + hidden.get_array().filled(0), conn.strength)
    low, high = hidden.get_clim()
    assert low == -high == -np.abs(conn.strength[with_hidden]).max()
    assert ax.get_xlabel() == "presynaptic" and ax.get_ylabel() == "postsynaptic"
    assert [t.get_text() for t in ax.get_xticklabels()] == conn.labels
    assert [t.get_text() for t in ax.get_yticklabels()] == conn.labels
    assert len(ax.figure.axes) == 3  # the heatmap and its two colour bars
    assert "strength" in ax.figure.axes[1].get_ylabel()
    assert "hidden" in ax.figure.axes[2].get_ylabel()
    assert len(ax.lines) == 2  # the visible | hidden separators


def test_one_large_weight_does_not_set_the_colours_of_the_visible_block() -> None:
    rng = np.random.default_rng(1)
    strength = rng.normal(0, 0.3, (42, 42))
    strength[5, 40] = 50.0  # a hidden neuron's huge coupling onto visible neuron 5
    strength[7, 3] = 20.0  # an outlier between visible neurons
    visible = [True] * 40 + [False] * 2
    labels = [f"n{k}" for k in range(40)] + ["hidden-0", "hidden-1"]
    conn = sg.Connectivity.from_strength(strength, labels=labels, visible=visible)
    ax = plot.connectivity(conn, order="given")
    visible_image, hidden_image = ax.images
    between = np.abs(strength[:40, :40][~np.eye(40, dtype=bool)])
    limit = np.percentile(between, plot.ROBUST_PERCENTILE)
    assert visible_image.get_clim() == pytest.approx((-limit, limit))
    assert limit < 1.5  # neither 50 nor 20 washes the block out
    assert hidden_image.get_clim() == pytest.approx((-50.0, 50.0))
    visible_bar = ax.figure.axes[1]
    assert "clipped" in visible_bar.get_ylabel()  # 20 lies beyond the scale: the bar says so
    with pytest.raises(ValueError, match="vmax"):
        plot.connectivity(conn, vmax=(1.0, -2.0))


def test_a_large_heatmap_labels_sparsely_and_groups_by_the_driving_hidden_neuron() -> None:
    n_visible, n_hidden = 120, 3
    strength = np.zeros((123, 123))
    driver = np.arange(n_visible) % n_hidden  # visible k is driven by hidden k mod 3
    strength[np.arange(n_visible), n_visible + driver] = 1.0 + np.arange(n_visible) / 1000
    labels = [f"n{k}" for k in range(n_visible)] + [f"hidden-{h}" for h in range(n_hidden)]
    conn = sg.Connectivity.from_strength(strength, labels=labels, visible=[True] * n_visible + [False] * 3)
    order = plot.neuron_order(conn)  # auto: by the hidden neuron that drives them
    assert sorted(order.tolist()) == list(range(123))
    assert (driver[order[:n_visible]] == np.repeat([0, 1, 2], 40)).all()
    first_group = order[:40]
    assert first_group.tolist() == sorted(first_group, reverse=True)  # most strongly driven first
    assert order[n_visible:].tolist() == [120, 121, 122]
    ax = plot.connectivity(conn)
    labels_shown = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels_shown) <= 31 and labels_shown[-1] == "3 hidden"
    assert labels_shown[0] == f"n{order[0]}"
    assert "grouped by their strongest hidden input" in ax.get_xlabel()
    assert len(ax.lines) == 2 + 2 * 2  # the visible | hidden separators and the lines between 3 groups
    with pytest.raises(ValueError, match="order 'hidden' needs hidden neurons"):
        plot.neuron_order(conn.visible_block(), "hidden")


def test_clustering_puts_neurons_with_the_same_couplings_together() -> None:
    rng = np.random.default_rng(2)
    group = rng.permutation(40) % 2  # two groups, mixed in the given order
    strength = np.where(group[:, None] == group[None, :], 1.0, -1.0) + rng.normal(0, 0.05, (40, 40))
    order = plot.neuron_order(sg.Connectivity.from_strength(strength), "cluster")
    assert sorted(order.tolist()) == list(range(40))
    assert np.count_nonzero(np.diff(group[order])) == 1  # one boundary: each group in one run


def test_connectivity_peak_values_and_fixed_limits(fitted) -> None:
    conn = fitted["truth"]
    visible, hidden = plot.connectivity(conn, value="peak", vmax=3.0).images
    assert visible.get_clim() == hidden.get_clim() == (-3.0, 3.0)
    drawn = visible.get_array().filled(0) + hidden.get_array().filled(0)
    np.testing.assert_allclose(drawn, conn.filters[..., 0])  # decaying filters peak at lag 1
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
    training, smoothed, validation = ax.lines
    np.testing.assert_array_equal(training.get_xdata(), np.arange(1, 7))
    np.testing.assert_array_equal(validation.get_xdata(), [2, 4, 6])
    # the moving average the stopping rule reads: it starts at the first value and lags behind
    assert smoothed.get_ydata()[0] == -1.0
    assert smoothed.get_ydata()[1] == pytest.approx(-1.0 + 0.2 * 0.01)
    assert "epoch" in ax.get_xlabel() and "neuron-bin" in ax.get_ylabel()
    assert "ELBO" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert ax.get_title() == "Training"


def test_training_curve_marks_the_lowered_learning_rate_and_says_why_it_stopped() -> None:
    history = [EpochRecord(k, -1.0 + 0.01 * k, 0.1, lr=0.05 if k < 8 else 0.01) for k in range(12)]
    stopped = "converged: the smoothed objective rose by less than 0.0005 nats per spike in 10 epochs"
    ax = plot.training_curve(history, stopped=stopped)
    (marker,) = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert marker.get_xdata()[0] == pytest.approx(8.5)  # between epochs 8 and 9 (counted from 1)
    assert any(text.get_text() == "lr 0.05 → 0.01" for text in ax.texts)
    assert ax.get_title() == "Training: converged"
    assert "nats per spike in 10 epochs" in ax.get_legend().get_title().get_text()
    capped = plot.training_curve(history, stopped="ran the 12 epochs set")
    assert capped.get_title() == "Training: NOT converged (epoch cap reached)"


def test_the_fitted_models_history_keeps_its_learning_rates(fitted, tmp_path: Path) -> None:
    model = fitted["model"]
    assert all(record.lr is not None for record in model.history_)
    model.save(tmp_path / "m.h5")
    again = sg.POGLM.load(tmp_path / "m.h5")
    assert [r.lr for r in again.history_] == pytest.approx([r.lr for r in model.history_])


def test_training_curve_of_an_empty_history_says_so() -> None:
    ax = plot.training_curve([])
    assert "no training history" in ax.texts[0].get_text()


# ---------------------------------------------------------------------- summary
def test_summary_with_data_and_truth(fitted, tmp_path: Path) -> None:
    fig = plot.summary(fitted["model"], fitted["test"], trial=2, truth=fitted["truth"])
    assert isinstance(fig, Figure)
    # raster + rates, fitted heatmap + 2 colour bars, true heatmap + 2 colour bars, training curve
    assert len(fig.get_axes()) == 9
    titles = " ".join(_texts(ax) for ax in fig.get_axes())
    for expected in ("Trial 2", "inferred rate", "Fitted connectivity", "True connectivity", "Training:"):
        assert expected in titles
    assert "5 ms bins" in fig.get_suptitle()
    fitted_map, true_map = ([*ax.images] for ax in fig.get_axes() if ax.images)
    assert [i.get_clim() for i in fitted_map] == [i.get_clim() for i in true_map]
    plot.save_figure(fig, tmp_path / "summary.png")
    assert (tmp_path / "summary.png").read_bytes().startswith(PNG_SIGNATURE)


def test_summary_without_data(fitted) -> None:
    fig = plot.summary(fitted["model"])
    assert len(fig.get_axes()) == 4  # fitted heatmap + 2 colour bars, training curve


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


def test_shared_colour_limits_suit_every_network(fitted) -> None:
    fitted_conn, truth = fitted["model"].connectivity(), fitted["truth"]
    limits = plot.color_limits(fitted_conn, truth)
    one, other = plot.color_limits(fitted_conn), plot.color_limits(truth)
    assert limits == (max(one[0], other[0]), max(one[1], other[1]))
    assert (
        limits[1] == np.abs(np.concatenate([truth.strength[3:].ravel(), truth.strength[:, 3:].ravel()])).max()
    )
    with pytest.raises(ValueError, match="at least one"):
        plot.color_limits()


def test_a_heatmap_can_take_another_networks_order() -> None:
    strength = np.arange(16.0).reshape(4, 4)
    conn = sg.Connectivity.from_strength(strength, labels=["a", "b", "c", "d"])
    ax = plot.connectivity(conn, order=[2, 0, 3, 1])
    np.testing.assert_array_equal(ax.images[0].get_array(), strength[np.ix_([2, 0, 3, 1], [2, 0, 3, 1])])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a", "d", "b"]
    assert ax.get_xlabel() == "presynaptic, visible in the order given"
    assert plot.connectivity(conn, order=[0, 1, 2, 3]).get_xlabel() == "presynaptic"
    with pytest.raises(ValueError, match="permutation"):
        plot.connectivity(conn, order=[0, 0, 1, 2])


def test_the_summary_of_a_fit_without_hidden_neurons_names_its_objective(diffpoglm):
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=0, link="sigmoid", epochs=5).fit(train)
    fig = plot.summary(model, train)
    (training,) = [ax for ax in fig.axes if ax.get_title().startswith("Training")]
    assert "training log-likelihood" in [t.get_text() for t in training.get_legend().get_texts()]
    assert training.get_xlabel() == "solver iteration"
    assert training.get_title() == "Training: NOT converged (epoch cap reached)"  # 5 iterations are too few
    assert len(fig.axes) == 4  # raster (no hidden-rate panel), heatmap + colour bar, training curve


def test_kernels_are_drawn_alone_and_on_the_summary_page(tmp_path: Path) -> None:
    sim = sg.synthetic.network(
        "balanced", seed=0, n_visible=5, n_hidden=0, stimulus="strong", duration="2 min"
    )
    cue = sg.Covariate.events("cue", np.arange(0.5, 120, 2.0), kernel=sg.covariates.Around(0.05, 0.3, 4))
    starts = [k * sim.train.bin_seconds * sim.train.n_bins for k in range(sim.train.n_trials)]
    train = sg.SpikeCounts(sim.train.counts, "5 ms", sim.train.unit_ids, {"trial_starts_s": starts})
    model = sg.POGLM(n_hidden=0).fit(train, covariates=[*sim.covariates_train, cue])
    fig = plot.kernels(model.connectivity())
    assert [ax.get_title() for ax in fig.get_axes()] == [
        "stimulus (lags, 5 of 5 neurons)",
        "cue (around, 5 of 5 neurons)",
    ]
    assert fig.get_axes()[1].get_xlabel() == "time from the event (s)"
    assert len(fig.get_axes()[0].collections) == 1  # the 95% interval of the largest kernel
    page = plot.summary(model, train)
    assert "stimulus (lags, 5 of 5 neurons)" in " ".join(_texts(ax) for ax in page.get_axes())
    plot.save_figure(page, tmp_path / "summary.png")
    with pytest.raises(ValueError, match="this connectivity has no covariates"):
        plot.kernels(sg.Connectivity(np.zeros((2, 2, 1)), np.ones((1, 1)), np.zeros(2)))
