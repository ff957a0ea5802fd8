"""Long recordings in segments: context carries the history across cuts; memory-bounded scoring."""

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm import basis as basis_module
from spikeglm.model import Network
from spikeglm.segments import Segments, on_device
from spikeglm.variational import Posterior, log_weights


@pytest.fixture(scope="module")
def long_recording():
    """One continuous trial of 2,000 bins from a network with 2 hidden neurons."""
    truth, counts, _ = sg.synthetic.network("sparse-ei", seed=4, n_train=1, n_test=1, n_bins=2000)
    return truth, counts


def test_every_bin_is_scored_once_and_context_is_the_neighbouring_data():
    counts = torch.randint(0, 4, (3, 47, 2), dtype=torch.uint8)
    segments = Segments(counts, length=10, context=3)
    assert len(segments) == 3 * 5 and segments.bins == 16 and segments.n_scored == 3 * 47
    batch = segments.batch(torch.arange(len(segments)))
    assert batch.visible.dtype == torch.float32
    assert int(batch.scored.sum()) == segments.n_scored
    for number in range(len(segments)):
        trial, piece = divmod(number, segments.per_trial)
        for j in range(segments.bins):
            position = piece * 10 + j - 3
            inside = 0 <= position < 47
            assert batch.present[number, j] == inside
            assert batch.scored[number, j] == (inside and 3 <= j < 13)
            expected = counts[trial, position] if inside else torch.zeros(2, dtype=torch.uint8)
            assert torch.equal(batch.visible[number, j], expected.float())


@pytest.mark.parametrize("length", [10, None])
def test_segments_moved_to_a_device_gather_their_batches_there(length):
    """Every tensor of a batch is made where the counts are (the meta device stands in for a GPU: a tensor
    left on the host meets one there and fails, as it would on CUDA), and the batches are the host's."""
    counts = torch.randint(0, 4, (3, 47, 2), dtype=torch.uint8)
    covariates = torch.randn(3, 47, 1)
    segments = Segments(counts, length=length, context=3, covariates=covariates)
    index = torch.tensor([2, 0, 1])
    moved = segments.to("meta").batch(index, device="meta")
    assert all(t is None or t.device.type == "meta" for t in vars(moved).values())
    here, there = segments.batch(index), segments.to("cpu").batch(index)
    for name, tensor in vars(here).items():
        other = getattr(there, name)
        assert (tensor is None and other is None) or torch.equal(tensor, other)
        assert tensor is None or getattr(moved, name).shape == tensor.shape
    assert on_device(segments, "cpu") is segments  # only a CUDA device takes the counts


def test_short_trials_are_used_whole_without_masks():
    counts = torch.randint(0, 4, (4, 30, 2), dtype=torch.uint8)
    segments = Segments(counts, length=30, context=5)
    batch = segments.batch(torch.tensor([2, 0]))
    assert batch.present is None and batch.scored is None
    assert torch.equal(batch.visible, counts[[2, 0]].float())


def test_bad_segment_settings_are_refused():
    counts = torch.zeros(1, 10, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="segment length"):
        Segments(counts, length=0)
    with pytest.raises(ValueError, match="context"):
        Segments(counts, length=5, context=-1)
    with pytest.raises(ValueError, match="segment_bins"):
        sg.POGLM(n_hidden=0, segment_bins=0).fit(sg.SpikeCounts.from_array(np.ones((1, 10, 2)), "5 ms"))


@pytest.mark.parametrize("length", [7, 100, 333])
@torch.no_grad()
def test_cutting_loses_no_history(length):
    """Fully observed, the log-likelihood summed over segments is exactly that of the uncut trial."""
    torch.manual_seed(0)
    basis = basis_module.RaisedCosine(window=8, n_basis=3)
    net = Network(4, 0, basis, link="softplus").double()
    with torch.no_grad():
        net.weight.normal_(0.0, 0.5)
        net.bias.fill_(-1.0)
    counts = net.simulate(2, 1000).to(torch.uint8)
    posterior = Posterior("forward", 4, 0, basis.matrix(), "softplus").double()
    whole = float(net.log_likelihood(counts.double()).sum())
    segments = Segments(counts, length=length, context=basis.window)
    batch = segments.batch(torch.arange(len(segments)), dtype=torch.float64)
    cut = float(log_weights(net, posterior, batch, n_samples=1)[0].sum())
    assert cut == pytest.approx(whole, rel=1e-12)
    # Without context the first bins of each segment lose their history, and the sum differs.
    bare = Segments(counts, length=length, context=0)
    naive = float(log_weights(net, posterior, bare.batch(torch.arange(len(bare)), torch.float64), 1)[0].sum())
    assert abs(naive - whole) > 1e-3


def test_inferred_rates_do_not_depend_on_the_cuts(long_recording):
    """The forward-backward posterior sees L bins either way, so segments give the uncut rates exactly."""
    _, counts = long_recording
    model = sg.POGLM(n_hidden=2, epochs=3, seed=0, segment_bins=None).fit(counts)
    whole = model.infer(counts)
    model.fit_options_["segment_bins"] = 150
    np.testing.assert_allclose(model.infer(counts), whole, rtol=1e-5, atol=1e-7)


def test_a_long_recording_is_fitted_in_segments_and_scored(long_recording, fit_poglm):
    """A fit in segments learns as well as the uncut fit: scores agree within Monte-Carlo noise."""
    _truth, counts = long_recording
    # 10 segments of 200 bins, 2 steps of 5 segments per epoch; the uncut fit takes 1 step per epoch.
    # All 60 epochs, both, from a random start so that the objective has far to rise.
    fixed = {"n_hidden": 2, "epochs": 60, "lr": 0.05, "seed": 0, "tol": None, "init": "random"}
    cut = fit_poglm(counts, segment_bins=200, batch_size=5, **fixed)
    whole = fit_poglm(counts, segment_bins=None, batch_size=10**6, **fixed)
    assert cut.fit_options_["segment_bins"] == 200
    assert len(cut.history_) == 60
    # Both far better than the start and within 0.5% of each other (per neuron-bin, same data).
    # Observed: scores -0.28190 (cut) and -0.28203 (uncut), 0.05% apart; objectives rose by 0.015.
    score_cut, score_whole = cut.score(counts, n_particles=200), whole.score(counts, n_particles=200)
    assert score_cut == pytest.approx(score_whole, rel=5e-3)
    for model in (cut, whole):
        assert model.history_[-1].objective > model.history_[0].objective + 0.01


def test_scoring_in_pieces_matches_scoring_at_once():
    """The evaluator's memory cap changes how the work is split, not the estimate (same draws per trial)."""
    torch.manual_seed(1)
    basis = basis_module.Exponential()
    net = Network(3, 0, basis, link="softplus")
    counts = net.simulate(6, 40)
    posterior = Posterior("forward", 3, 0, basis.matrix(), "softplus")
    small = sg.variational.marginal_log_likelihood(net, posterior, counts, n_samples=4, max_elements=200)
    large = sg.variational.marginal_log_likelihood(net, posterior, counts, n_samples=4)
    assert small == pytest.approx(large, rel=1e-6)


@pytest.mark.parametrize("length", [None, 30])
def test_filtered_segments_keep_the_history_and_future_each_batch_would_filter(length):
    """``Segments.filtered`` keeps each segment's visible history and future through the basis: a batch
    gathers exactly what filtering its own counts gives (cut segments with their context, padding
    zero), on any device they are moved to, in the memory it says."""
    generator = torch.Generator().manual_seed(5)
    counts = torch.poisson(torch.full((3, 100, 4), 0.4), generator=generator).to(torch.uint8)
    matrix = sg.basis.get("raised-cosine", window=8, n_basis=3).matrix()
    segments = Segments(counts, length=length, context=8)
    kept = segments.filtered(matrix, future=True)
    assert segments.filters is None and kept.filtered_bytes(3, True) == 2 * 4 * kept.filters[0].numel()
    index = torch.tensor([len(segments) - 1, 0, 1])
    for gathered in (kept.batch(index), kept.to("cpu").batch(index)):
        plain = segments.batch(index)
        torch.testing.assert_close(gathered.visible, plain.visible, rtol=0, atol=0)
        torch.testing.assert_close(gathered.past, basis_module.history(plain.visible, matrix))
        torch.testing.assert_close(gathered.future, basis_module.future(plain.visible, matrix))
    assert segments.filtered(matrix, future=False).batch(index).future is None


def test_a_fit_that_keeps_its_filtered_counts_trains_as_one_that_filters_them_each_step(monkeypatch):
    """A fit with hidden neurons keeps its segments' filtered visible counts (within its share of the
    memory) and trains as one that filters each batch again: the same objectives and parameters, to
    float32 rounding; with no memory to spare it keeps none."""
    from spikeglm.inference import trainer

    _, train, _ = sg.synthetic.network("diffpoglm", seed=1)
    settings = {"n_hidden": 1, "epochs": 3, "tol": None, "basis": "raised-cosine", "window": 8, "seed": 0}
    kept = []
    filtered = Segments.filtered
    monkeypatch.setattr(Segments, "filtered", lambda self, *a: kept.append(1) or filtered(self, *a))
    fits = [sg.POGLM(link="sigmoid", **settings).fit(train, progress=False)]
    monkeypatch.setattr(trainer, "FILTERED_SHARE", 0.0)
    fits.append(sg.POGLM(link="sigmoid", **settings).fit(train, progress=False))
    assert kept == [1]  # the first fit kept them, the second could not
    objectives = [[record.objective for record in fit.history_] for fit in fits]
    np.testing.assert_allclose(*objectives, rtol=1e-6)
    torch.testing.assert_close(fits[0].network_.weight, fits[1].network_.weight, rtol=1e-5, atol=1e-6)
