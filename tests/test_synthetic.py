"""Ground-truth generators: the published protocol's settings, reproducibility, sparse E/I structure, and
the balanced network at any size: its scaling, its stability check and its rates."""

import numpy as np
import pytest
from click.testing import CliRunner

import spikeglm as sg
from spikeglm.cli import main

#: A small balanced network and a short simulation, for the tests that look at the network only.
SMALL = {"n_visible": 8, "n_hidden": 2, "n_train": 2, "n_test": 1, "n_bins": 200}


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
    assert np.array_equal(a.truth.weights, b.truth.weights) and np.array_equal(a.train.counts, b.train.counts)
    assert not np.array_equal(a.truth.weights, c.truth.weights)


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
    with pytest.raises(
        ValueError, match="unknown protocol 'dense'; choose one of diffpoglm, sparse-ei, balanced"
    ):
        sg.synthetic.network(protocol="dense")
    with pytest.raises(ValueError, match="diffpoglm: no setting 'with_hidden'; the settings are n_visible"):
        sg.synthetic.network(protocol="diffpoglm", with_hidden=True)
    with pytest.raises(ValueError, match="duration: give a duration or n_train and n_test, not both"):
        sg.synthetic.network(protocol="diffpoglm", duration="1 s", n_train=3)
    with pytest.raises(
        ValueError, match=r"duration: '1 s' is not a whole number of trials of 30 bins \(0.15 s\)"
    ):
        sg.synthetic.network(protocol="diffpoglm", duration="1 s", n_bins=30)


def test_a_network_too_large_for_the_memory_is_refused_before_it_is_drawn(monkeypatch):
    monkeypatch.setattr(sg.synthetic, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match=r"n_visible=100000, n_hidden=2: .* more than the 1 GiB available"):
        sg.synthetic.network("balanced", n_visible=100_000, n_train=1, n_test=1)
    sg.synthetic.network("balanced", n_visible=30, n_train=1, n_test=1, n_bins=100)  # small: drawn


def test_a_duration_is_cut_into_trials_a_fifth_of_them_held_out():
    sim = sg.synthetic.network(protocol="diffpoglm", duration="5 s", n_bins=100)  # 10 trials of 0.5 s
    assert (sim.train.n_trials, sim.test.n_trials, sim.train.n_bins) == (8, 2, 100)
    assert sg.synthetic.trials_in("1 h", 2000, "5 ms") == 360


def test_the_simulation_unpacks_as_truth_train_test_and_holds_the_hidden_spikes():
    sim = sg.synthetic.network(protocol="sparse-ei", seed=2, n_visible=6, n_hidden=2, n_train=3, n_test=2)
    truth, train, test = sim
    assert truth is sim.truth and train is sim.train and test is sim.test
    assert sim.hidden_train.counts.shape == (3, 500, 2) and sim.hidden_test.counts.shape == (2, 500, 2)
    assert list(sim.hidden_train.unit_ids) == ["hidden-0", "hidden-1"]
    assert sim.hidden_train.counts.sum() > 0
    assert truth.metadata["protocol"] == "sparse-ei" and truth.metadata["settings"]["n_visible"] == 6
    # The hidden spikes are those the network was simulated with: re-simulating it gives the same ones.
    net = sg.POGLM.from_connectivity(truth).network_
    again = sg.synthetic.simulate(net, n_train=3, n_test=2, n_bins=500, seed=2)
    assert np.array_equal(again.hidden_test.counts, sim.hidden_test.counts)
    assert np.array_equal(again.train.counts, sim.train.counts)
    alone = sg.synthetic.network("balanced", n_visible=4, n_hidden=0, n_train=1, n_test=1, n_bins=10)
    assert alone.hidden_train is None and alone.hidden_test is None and alone.truth.n_hidden == 0


def test_the_older_protocols_draw_the_networks_and_spikes_they_always_drew():
    # Fixed values of seed 0 (as drawn before the balanced protocol and the faster simulation were added).
    diffpoglm = sg.synthetic.network(protocol="diffpoglm", seed=0)
    np.testing.assert_allclose(
        diffpoglm.truth.weights[:2, :2, 0], [[0.5478, -0.9209], [1.6510, 0.4265]], atol=1e-4
    )
    sparse = sg.synthetic.network(protocol="sparse-ei", seed=0)
    assert (int(diffpoglm.train.counts.sum()), int(sparse.train.counts.sum())) == (5158, 54063)
    assert int(sparse.hidden_test.counts.sum()) == 2871


def test_hidden_drive_scales_only_the_hidden_neurons_couplings_onto_the_visible_ones():
    small = {"n_visible": 8, "n_hidden": 2, "n_train": 2, "n_test": 1, "n_bins": 20}
    default = sg.synthetic.network(protocol="sparse-ei", seed=3, **small).truth.strength
    moderate = sg.synthetic.network(protocol="sparse-ei", seed=3, hidden_drive=1.0, **small).truth.strength
    strong = sg.synthetic.network(protocol="sparse-ei", seed=3, hidden_drive="strong", **small).truth.strength
    np.testing.assert_array_equal(default, moderate)
    np.testing.assert_allclose(strong[:8, 8:], 2.5 * default[:8, 8:])
    rest = np.ones_like(default, dtype=bool)
    rest[:8, 8:] = False
    np.testing.assert_array_equal(strong[rest], default[rest])
    with pytest.raises(ValueError, match="hidden_drive: unknown strength 'huge'"):
        sg.synthetic.network(protocol="sparse-ei", hidden_drive="huge", **small)
    with pytest.raises(ValueError, match="hidden_drive must be a number >= 0"):
        sg.synthetic.network(protocol="sparse-ei", hidden_drive=-1, **small)


@pytest.mark.parametrize("n_visible", [40, 400])
def test_balanced_couplings_scale_with_the_expected_number_of_inputs(n_visible):
    truth = sg.synthetic.network("balanced", seed=1, n_visible=n_visible, n_train=1, n_test=1, n_bins=5).truth
    n = truth.n_neurons
    strength = truth.strength
    recurrent = ~np.eye(n, dtype=bool)
    recurrent[:n_visible, n_visible:] = False  # the hidden neurons' drive is set apart
    in_degree = 0.1 * (n - 1)
    assert (strength[recurrent] != 0).sum() / n == pytest.approx(in_degree, rel=0.1)
    off = strength * ~np.eye(n, dtype=bool)
    assert not ((off > 0).any(axis=0) & (off < 0).any(axis=0)).any()  # Dale's law, column by column
    assert (off < 0).any(axis=0).sum() == round(0.2 * n)  # exactly the asked share is inhibitory
    excitatory = strength[recurrent][(strength[recurrent] > 0)]
    # Mean U(0.5, 1.5) = 1: an excitatory coupling is coupling / sqrt(K), an inhibitory one 5 times that.
    assert excitatory.mean() * np.sqrt(in_degree) == pytest.approx(1.0, rel=0.06)
    inhibition = -strength[recurrent][strength[recurrent] < 0].mean()
    assert inhibition / excitatory.mean() == pytest.approx(5.0, rel=0.15)
    assert (np.diag(strength) < -0.99).all()  # refractory
    # Each hidden neuron drives about half of the visible ones, at the size of the drive whatever the size.
    drive = np.abs(strength[:n_visible, n_visible:])
    assert 0.3 < (drive > 0).mean() < 0.7 and drive[drive > 0].mean() == pytest.approx(1.0, rel=0.25)


def test_balanced_refuses_an_unstable_network_naming_the_setting():
    with pytest.raises(sg.synthetic.UnstableNetwork, match=r"balanced: unstable network \(gain of the lin"):
        sg.synthetic.network("balanced", coupling=40, **SMALL)
    with pytest.raises(sg.synthetic.UnstableNetwork, match="lower hidden_drive") as refused:
        sg.synthetic.network("balanced", seed=1, hidden_drive=100, rate=40, **SMALL)
    assert refused.value.setting == "hidden_drive"
    with pytest.raises(ValueError, match=r"inhibition must dominate.*raise inhibition_ratio"):
        sg.synthetic.network("balanced", inhibition_ratio=3, **SMALL)
    with pytest.raises(ValueError, match=r"connection_prob must be a number in \(0, 1\]; got 0"):
        sg.synthetic.network("balanced", connection_prob=0, **SMALL)
    with pytest.raises(ValueError, match="rate: the low end 10 Hz exceeds the high end 2 Hz"):
        sg.synthetic.network("balanced", rate=(10, 2), **SMALL)


def test_balanced_rescales_on_request_and_says_by_how_much():
    settings = {"n_visible": 30, "rate": (40, 100), "n_train": 2, "n_test": 1, "n_bins": 200}
    with pytest.raises(sg.synthetic.UnstableNetwork, match="lower coupling"):
        sg.synthetic.network("balanced", **settings)
    with pytest.warns(UserWarning, match=r"balanced: every coupling scaled by 0\.\d+ to bring the gain from"):
        truth = sg.synthetic.network("balanced", rescale=True, **settings).truth
    factor, gain = truth.metadata["coupling_factor"], truth.metadata["gain"]
    assert 0 < factor < 1 and gain == pytest.approx(0.9)
    rate = np.asarray(truth.metadata["target_rate_hz"]) * 0.005
    assert sg.synthetic.gain(truth.weights, truth.basis_matrix, rate) == pytest.approx(0.9)


@pytest.mark.parametrize("drive", ["weak", "strong"])
def test_balanced_rates_meet_their_targets(drive):
    # 10 minutes of 32 neurons at 2-10 Hz: about 1,200-6,000 spikes each, a Poisson error of 1.3-2.9%.
    # The biases come from a mean-field approximation; every neuron is asked to be within 20% of its target
    # and the population within 5%.
    sim = sg.synthetic.network("balanced", seed=5, hidden_drive=drive, duration="10 min")
    ratio = rate_ratios(sim)
    assert np.abs(ratio - 1).max() < 0.2 and abs(ratio.mean() - 1) < 0.05
    assert sim.truth.metadata["gain"] < 0.9


def test_simulate_command_writes_a_balanced_network_its_truth_and_hidden_spikes(tmp_path):
    out = tmp_path / "sim.npz"
    arguments = ["simulate", "-o", str(out), "--visible", "12", "--hidden", "2", "--duration", "2min"]
    arguments += ["--rate", "5", "--hidden-drive", "strong", "--seed", "3"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    recording = sg.load(out)
    assert recording.n_units == 12 and len(recording.trials) == 12  # 2 minutes as trials of 10 s
    truth = sg.Connectivity.load(tmp_path / "sim_truth.json")
    assert (truth.n_visible, truth.n_hidden) == (12, 2) and truth.metadata["protocol"] == "balanced"
    assert (
        truth.metadata["target_rate_hz"] == [5.0] * 14
        and truth.metadata["settings"]["hidden_drive"] == "strong"
    )
    counts = recording.bin("5 ms")
    assert counts.counts.mean() / 0.005 == pytest.approx(5.0, rel=0.2)
    hidden = sg.load(tmp_path / "sim_hidden.npz")
    assert list(hidden.unit_ids) == ["hidden-0", "hidden-1"] and sum(len(t) for t in hidden.spike_times) > 0
    again = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "b.npz"), "--coupling", "40"])
    assert again.exit_code == 2 and "--coupling" in again.output and "unstable network" in again.output
    wrong = CliRunner().invoke(
        main, ["simulate", "-o", str(tmp_path / "c.npz"), "--protocol", "diffpoglm", "--rate", "5"]
    )
    assert wrong.exit_code == 2 and "--rate: not a setting of protocol diffpoglm" in wrong.output.replace(
        "Invalid value for ", ""
    )


def rate_ratios(sim: sg.synthetic.Simulation) -> np.ndarray:
    """Each neuron's mean rate (visible then hidden, over train and test, 5 ms bins) over its target."""
    counts = [
        np.concatenate([a.counts, b.counts])
        for a, b in ((sim.train, sim.test), (sim.hidden_train, sim.hidden_test))
    ]
    rate = np.concatenate(counts, axis=2).mean(axis=(0, 1)) / sim.train.bin_seconds
    return rate / np.asarray(sim.truth.metadata["target_rate_hz"])
