"""Ground-truth generators: the published protocol's settings, reproducibility, sparse E/I structure."""

import numpy as np
import pytest

import spikeglm as sg


def test_diffpoglm_protocol():
    truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=4)
    assert (truth.n_visible, truth.n_hidden) == (3, 2)
    assert train.counts.shape == (40, 100, 3) and test.counts.shape == (20, 100, 3)
    assert np.abs(truth.weights).max() <= 2 and np.abs(truth.bias).max() <= 0.5
    assert truth.metadata["link"] == "sigmoid"
    phi = truth.basis_matrix[0]
    np.testing.assert_allclose(phi.sum(), 1.0)
    np.testing.assert_allclose(phi[1:] / phi[:-1], np.exp(-0.25))
    assert len(phi) == 5
    # Sigmoid rates are below 1 per bin, so counts of 1 dominate the non-zero ones.
    assert train.counts.mean() < 1


def test_datasets_are_reproducible_and_distinct():
    a = sg.synthetic.network(protocol="diffpoglm", seed=1)
    b = sg.synthetic.network(protocol="diffpoglm", seed=1)
    c = sg.synthetic.network(protocol="diffpoglm", seed=2)
    assert np.array_equal(a[0].weights, b[0].weights) and np.array_equal(a[1].counts, b[1].counts)
    assert not np.array_equal(a[0].weights, c[0].weights)


def test_sparse_ei_network():
    truth, train, _ = sg.synthetic.network(protocol="sparse-ei", seed=0, n_visible=20, n_bins=200)
    strength = truth.strength
    n = truth.n_neurons
    assert (truth.n_visible, truth.n_hidden) == (20, 3)
    off = ~np.eye(n, dtype=bool)
    assert 0.05 < (strength[off] != 0).mean() < 0.5  # sparse, with exact zeros for absent edges
    assert (np.diag(strength) < 0).all()  # refractory self-coupling
    # Dale's law: the outgoing (off-diagonal) couplings of each presynaptic neuron share one sign.
    for pre in range(n):
        signs = np.sign(strength[off[:, pre], pre])
        assert len(set(signs[signs != 0])) <= 1
    # Every hidden neuron drives some visible neurons; firing stays sparse and stable.
    assert (strength[: truth.n_visible, truth.n_visible :] != 0).any(axis=0).all()
    assert 0.02 < train.counts.mean() < 0.3


def test_options_and_errors():
    _, train, test = sg.synthetic.network(protocol="diffpoglm", seed=0, n_train=5, n_test=2, n_bins=30)
    assert train.counts.shape == (5, 30, 3) and test.counts.shape == (2, 30, 3)
    with pytest.raises(ValueError, match="unknown protocol 'dense'; choose one of diffpoglm, sparse-ei"):
        sg.synthetic.network(protocol="dense")


def test_hidden_drive_scales_only_the_hidden_neurons_couplings_onto_the_visible_ones():
    small = {"n_visible": 8, "n_hidden": 2, "n_train": 2, "n_test": 1, "n_bins": 20}
    default = sg.synthetic.network(protocol="sparse-ei", seed=3, **small)[0].strength
    moderate = sg.synthetic.network(protocol="sparse-ei", seed=3, hidden_drive=1.0, **small)[0].strength
    strong = sg.synthetic.network(protocol="sparse-ei", seed=3, hidden_drive="strong", **small)[0].strength
    np.testing.assert_array_equal(default, moderate)
    np.testing.assert_allclose(strong[:8, 8:], 2.5 * default[:8, 8:])
    rest = np.ones_like(default, dtype=bool)
    rest[:8, 8:] = False
    np.testing.assert_array_equal(strong[rest], default[rest])
    with pytest.raises(ValueError, match="hidden_drive: unknown strength 'huge'"):
        sg.synthetic.network(protocol="sparse-ei", hidden_drive="huge", **small)
    with pytest.raises(ValueError, match="hidden_drive must be a number >= 0"):
        sg.synthetic.network(protocol="sparse-ei", hidden_drive=-1, **small)
