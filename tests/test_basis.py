"""History bases and the history / future filters, against brute-force loops."""

import json
import math

import numpy as np
import pytest
import torch

from spikeglm import basis as basis_module
from spikeglm.basis import Basis, Exponential, RaisedCosine, RawLags, future, get, history

BASES = [
    Exponential(window=3, decay=0.25),
    RaisedCosine(window=6, n_basis=3),
    RawLags(window=4),
    RawLags(window=9),  # longer than the trials below
]


def brute_force(counts: np.ndarray, basis: np.ndarray, direction: int) -> np.ndarray:
    """``sum_l basis[b, l-1] * counts[r, t + direction * l, m]`` by explicit loops, zero outside the trial."""
    n_trials, n_bins, n_units = counts.shape
    n_basis, window = basis.shape
    out = np.zeros((n_trials, n_bins, n_units, n_basis))
    for r in range(n_trials):
        for t in range(n_bins):
            for m in range(n_units):
                for b in range(n_basis):
                    for lag in range(1, window + 1):
                        s = t + direction * lag
                        if 0 <= s < n_bins:
                            out[r, t, m, b] += basis[b, lag - 1] * counts[r, s, m]
    return out


def random_counts(shape=(3, 7, 4), seed=0, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).poisson(1.5, size=shape)).to(dtype)


@pytest.mark.parametrize("basis", BASES, ids=repr)
@pytest.mark.parametrize(("filter_", "direction"), [(history, -1), (future, +1)], ids=["history", "future"])
def test_filters_match_brute_force(basis, filter_, direction):
    counts = random_counts() + torch.rand(3, 7, 4, dtype=torch.float64)  # relaxed counts are real-valued
    matrix = basis.matrix(torch.float64)
    expected = brute_force(counts.numpy(), matrix.numpy(), direction)
    result = filter_(counts, matrix)
    assert result.shape == (3, 7, 4, basis.n_basis)
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("filter_", "edge"), [(history, 0), (future, -1)], ids=["history", "future"])
def test_trials_are_independent(filter_, edge):
    counts = random_counts()
    matrix = RawLags(window=5).matrix(torch.float64)
    before = filter_(counts, matrix)
    changed = counts.clone()
    changed[1] += 7.0
    after = filter_(changed, matrix)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    torch.testing.assert_close(after[2], before[2], rtol=0, atol=0)
    assert not torch.equal(after[1], before[1])
    assert torch.all(after[:, edge] == 0)  # nothing before the first bin (history) / after the last (future)


def test_history_is_strictly_causal():
    counts = torch.zeros(1, 6, 2, dtype=torch.float64)
    counts[0, 2, 1] = 1.0
    h = history(counts, RawLags(window=3).matrix(torch.float64))
    # A spike in bin 2 shows at lag 1 in bin 3, lag 2 in bin 4, lag 3 in bin 5, and never in bin 2 itself.
    assert torch.count_nonzero(h) == 3
    assert h[0, 3, 1, 0] == h[0, 4, 1, 1] == h[0, 5, 1, 2] == 1.0


def test_leading_dimensions_are_trials():
    counts = random_counts(shape=(2, 3, 7, 4))
    matrix = RaisedCosine(window=4, n_basis=2).matrix(torch.float64)
    stacked = history(counts, matrix)
    assert stacked.shape == (2, 3, 7, 4, 2)
    for k in range(2):
        torch.testing.assert_close(stacked[k], history(counts[k], matrix), rtol=0, atol=0)


def test_basis_is_cast_to_the_counts_dtype():
    counts = random_counts(dtype=torch.float32)
    h = history(counts, Exponential().matrix(torch.float64))
    assert h.dtype == torch.float32
    expected = brute_force(counts.double().numpy(), Exponential().matrix(torch.float64).numpy(), -1)
    np.testing.assert_allclose(h.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("filter_", [history, future], ids=["history", "future"])
def test_gradcheck(filter_):
    counts = torch.rand(2, 5, 2, dtype=torch.float64, requires_grad=True)
    matrix = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(filter_, (counts, matrix))


# Every device this machine has (CPU always; CUDA where present), so nothing is skipped.
@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_device_matches_cpu(device):
    counts = random_counts()
    matrix = RaisedCosine(window=6, n_basis=3).matrix(torch.float64)
    for filter_ in (history, future):
        on_device = filter_(counts.to(device), matrix.to(device))
        assert on_device.device.type == device
        torch.testing.assert_close(on_device.cpu(), filter_(counts, matrix))


def test_bad_shapes():
    with pytest.raises(ValueError, match="counts must have shape"):
        history(torch.zeros(5), RawLags(3).matrix())
    with pytest.raises(ValueError, match="basis_matrix must have shape"):
        history(torch.zeros(2, 5, 3), torch.zeros(3))


def test_exponential():
    basis = Exponential()
    assert (basis.window, basis.n_basis, basis.decay) == (5, 1, 0.25)
    phi = basis.matrix(torch.float64)[0].numpy()
    assert phi.shape == (5,)
    assert phi.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(phi[1:] / phi[:-1], math.exp(-0.25), rtol=1e-14)
    np.testing.assert_array_equal(basis.lags, [1, 2, 3, 4, 5])


def test_raised_cosine_shape_and_coverage():
    basis = RaisedCosine(window=20, n_basis=5, stretch=1.0)
    matrix = basis.matrix(torch.float64).numpy()
    assert matrix.shape == (5, 20)
    assert np.all(matrix >= 0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-14)
    assert np.all(matrix.sum(axis=0) > 0), "every lag is covered by some function"
    peaks = matrix.argmax(axis=1) + 1
    assert peaks[0] == 1 and peaks[-1] == 20
    assert np.all(np.diff(peaks) > 0)
    support = (matrix > 0).sum(axis=1)
    assert support[0] < support[-1], "log spacing: early bumps are narrower than late ones"


def test_raised_cosine_bumps_sum_to_a_constant_between_interior_centres():
    # Before normalisation, bumps spaced d apart with half-width 2d add up to 2 wherever four overlap.
    basis = RaisedCosine(window=200, n_basis=8, stretch=2.0)
    x = np.log(basis.lags + basis.stretch)
    centres = np.linspace(x[0], x[-1], 8)
    spacing = centres[1] - centres[0]
    bumps = (1 + np.cos(np.clip(np.pi * (x - centres[:, None]) / (2 * spacing), -np.pi, np.pi))) / 2
    interior = (x >= centres[2]) & (x <= centres[-3])
    np.testing.assert_allclose(bumps[:, interior].sum(axis=0), 2.0, rtol=1e-12)
    normalised = bumps / bumps.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(basis.matrix(torch.float64).numpy(), normalised, rtol=1e-12, atol=1e-15)


def test_raised_cosine_small_cases():
    assert RaisedCosine(window=1).matrix().tolist() == [[1.0]]
    assert RaisedCosine(window=3).n_basis == 3  # default min(4, window)
    assert RaisedCosine(window=10).n_basis == 4
    single = RaisedCosine(window=5, n_basis=1).matrix(torch.float64)[0].numpy()
    assert single.sum() == pytest.approx(1.0) and np.all(np.diff(single) < 0)


def test_raw_lags_is_identity():
    torch.testing.assert_close(RawLags(window=4).matrix(torch.float64), torch.eye(4, dtype=torch.float64))
    assert RawLags(window=4).n_basis == 4


@pytest.mark.parametrize("basis", BASES, ids=repr)
def test_dict_round_trip(basis):
    spec = json.loads(json.dumps(basis.to_dict()))
    rebuilt = basis_module.from_dict(spec)
    assert type(rebuilt) is type(basis)
    assert rebuilt == basis and hash(rebuilt) == hash(basis)
    torch.testing.assert_close(rebuilt.matrix(), basis.matrix(), rtol=0, atol=0)
    assert repr(rebuilt) == repr(basis)


def test_equality_and_repr():
    assert Exponential(window=5, decay=0.25) == Exponential()
    assert Exponential(decay=0.5) != Exponential()
    assert RawLags(window=3) != Exponential(window=3)
    assert repr(RaisedCosine(window=6, n_basis=3)) == "RaisedCosine(window=6, n_basis=3, stretch=1.0)"
    assert Exponential().to_dict() == {"name": "exponential", "window": 5, "decay": 0.25}


def test_matrix_dtype():
    assert Exponential().matrix().dtype == torch.float32
    assert RawLags(3).matrix(dtype=torch.float64, device="cpu").dtype == torch.float64


def test_get():
    assert basis_module.names() == ("exponential", "raised-cosine", "raw")
    assert get("exponential") == Exponential()
    assert get("raised-cosine", window=8, n_basis=2) == RaisedCosine(window=8, n_basis=2)
    assert get("Raised_Cosine", window=8) == RaisedCosine(window=8)
    assert get("raw", window=3) == RawLags(window=3)
    instance = RawLags(window=2)
    assert get(instance) is instance
    assert get(instance, window=7) is instance


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get("gaussian"), "unknown basis 'gaussian'; choose one of exponential, raised-cosine, raw"),
        (lambda: get("exponential", window=0), "window must be >= 1; got 0"),
        (lambda: get("raw", window=-2), "window must be >= 1; got -2"),
        (lambda: get("exponential", window=2.5), "window must be a whole number; got 2.5"),
        (lambda: get("exponential", decay=0), "decay must be > 0; got 0"),
        (lambda: get("exponential", decay=-1.0), "decay must be > 0; got -1.0"),
        (lambda: get("exponential", decay=float("nan")), "decay must be a finite number"),
        (lambda: get("raised-cosine", window=5, n_basis=0), "n_basis must be between 1 and window=5; got 0"),
        (lambda: get("raised-cosine", window=5, n_basis=6), "n_basis must be between 1 and window=5; got 6"),
        (lambda: get("raised-cosine", stretch=-1), "stretch must be >= 0; got -1"),
        (lambda: get("raw", decay=0.3), "the raw basis takes no option 'decay'; its options: window"),
        (lambda: get(RawLags(3), decay=0.3), "basis options ['decay'] were given with a ready RawLags"),
        (lambda: basis_module.from_dict({"window": 3}), "must be a dict with a 'name'"),
    ],
)
def test_get_errors(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = RaisedCosine(window=10, n_basis=3).plot()
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(1, 11))
    assert ax.get_xlabel() == "lag (bins)"
    _, own = plt.subplots()
    assert Exponential().plot(ax=own) is own
    plt.close("all")


def test_basis_is_abstract():
    with pytest.raises(TypeError):
        Basis(3, 1)
