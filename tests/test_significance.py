"""Standard errors of coupling strengths, Wald tests and Benjamini-Hochberg control."""

import csv
import json
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import false_discovery_control

import spikeglm as sg
from spikeglm.cli import main
from spikeglm.cli.demo import EXAMPLE
from spikeglm.model import Network
from spikeglm.significance import benjamini_hochberg, jitter_table, strength_se


def uncoupled_network(n: int = 8, rate: float = 0.1) -> Network:
    """Neurons with self-history (refractoriness) and no coupling between them: every null is true."""
    network = Network(n, 0, sg.basis.get("exponential"), link="softplus")
    with torch.no_grad():
        network.bias.fill_(float(np.log(np.expm1(rate))))
        for i in range(n):
            network.weight[i, i, 0] = -1.5
    return network


def simulated(network: Network, seed: int, trials: int = 40, bins: int = 500) -> sg.SpikeCounts:
    counts = network.simulate(trials, bins, generator=torch.Generator().manual_seed(seed)).numpy()
    return sg.SpikeCounts.from_array(counts, bin_size="5 ms")


def test_standard_errors_equal_those_of_the_full_hessian():
    # the block per postsynaptic neuron is exact without hidden neurons: compare with the inverse of
    # the Hessian of the whole log-likelihood in every parameter, by autograd
    model = sg.POGLM(n_hidden=0, link="exp").fit(simulated(uncoupled_network(3), seed=0, trials=10, bins=200))
    network = model.network_.double()
    visible = torch.from_numpy(
        np.asarray(simulated(uncoupled_network(3), 0, 10, 200).counts, dtype=np.float64)
    )
    shapes = [p.shape for p in (network.weight, network.bias)]

    def log_likelihood(flat):
        weight = flat[: shapes[0].numel()].reshape(shapes[0])
        bias = flat[shapes[0].numel() :]
        drive = bias + network._drive(visible, weight)
        return sg.relax.poisson_log_pmf(visible, torch.exp(drive)).sum()

    flat = torch.cat([network.weight.detach().flatten(), network.bias.detach()])
    covariance = torch.linalg.inv(-torch.autograd.functional.hessian(log_likelihood, flat)).numpy()
    expected = np.sqrt(np.diag(covariance)[: shapes[0].numel()]).reshape(3, 3)  # one basis function, sum 1
    np.testing.assert_allclose(model.strength_se_, expected, rtol=1e-6)


def test_wald_tests_are_calibrated_on_networks_without_couplings():
    fractions, estimates, errors = [], [], []
    for seed in range(20):
        model = sg.POGLM(n_hidden=0).fit(simulated(uncoupled_network(), seed))
        table = model.connectivity().significance(alpha=0.05)
        pairs = table[~table["self"]]
        fractions.append(np.mean(pairs["p"] < 0.05))
        estimates.append(pairs["strength"][:3])
        errors.append(pairs["se"][:3])
    # 20 recordings x 56 pairs: the rejection rate at 5% lies within 0.03-0.07 (observed 0.044)
    assert 0.03 <= np.mean(fractions) <= 0.07
    # and the standard errors match the spread of the estimates over recordings (observed 0.16-0.19 / 0.18)
    ratio = np.std(estimates, axis=0, ddof=1) / np.mean(errors, axis=0)
    assert np.all((ratio > 0.7) & (ratio < 1.3)), ratio


def test_a_strong_coupling_is_found_with_its_sign(tmp_path):
    network = uncoupled_network(4)
    with torch.no_grad():
        network.weight[1, 0, 0] = 1.5  # 0 excites 1
        network.weight[3, 2, 0] = -2.0  # 2 inhibits 3
    model = sg.POGLM(n_hidden=0).fit(simulated(network, seed=1))
    table = model.connectivity().significance(alpha=0.05)
    found = {(r["pre"], r["post"], int(r["sign"])) for r in table if r["significant"] and not r["self"]}
    assert {("0", "1", 1), ("2", "3", -1)} <= found and len(found) <= 3
    assert set(table.dtype.names) == set(sg.significance.COLUMNS)
    # the standard errors travel with the model file, and the CLI writes the edge list
    path = tmp_path / "m.h5"
    model.save(path)
    np.testing.assert_array_equal(sg.POGLM.load(path).strength_se_, model.strength_se_)
    edges = tmp_path / "edges.csv"
    result = CliRunner().invoke(main, ["export", str(path), "-o", str(edges), "--alpha", "0.05"])
    assert result.exit_code == 0, result.output
    assert "significant at q < 0.05" in result.output
    with open(edges, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and list(rows[0]) == list(sg.significance.COLUMNS)
    excitatory = next(r for r in rows if r["pre"] == "0" and r["post"] == "1")
    assert excitatory["significant"] == "True" and float(excitatory["q"]) < 0.05
    # GraphML: the significant edges with their tests; JSON: every pair, and the test and alpha
    conn = model.connectivity()
    conn.save(tmp_path / "g.graphml", alpha=0.05)
    graph = ET.parse(tmp_path / "g.graphml").getroot()
    namespace = {"g": "http://graphml.graphdrawing.org/xmlns"}
    edges = graph.findall(".//g:edge", namespace)
    assert len(edges) == int((table["significant"] & ~table["self"]).sum())  # no self-loops unless asked
    assert {d.get("key") for d in edges[0]} == {"strength", "weight", "se", "z", "p", "q", "sign"}
    metadata = json.loads(graph.find(".//g:graph/g:data[@key='metadata']", namespace).text)
    assert metadata["significance"] == {"test": "wald", "alpha": 0.05}
    conn.save(tmp_path / "c.json", alpha=0.05)
    document = json.loads((tmp_path / "c.json").read_text())
    assert len(document["edges"]) == 16 and document["significance"]["alpha"] == 0.05
    assert sg.Connectivity.load(tmp_path / "c.json").strength.shape == (4, 4)
    with pytest.raises(ValueError, match=r"alpha applies to \.csv, \.graphml and \.json"):
        conn.save(tmp_path / "c.npz", alpha=0.05)


def test_benjamini_hochberg_controls_the_false_discovery_rate():
    rng = np.random.default_rng(0)
    proportions = []
    for _ in range(200):
        null = rng.uniform(size=90)
        real = rng.uniform(size=10) * 1e-4
        q = benjamini_hochberg(np.concatenate([null, real]))
        found = q < 0.05
        proportions.append(found[:90].sum() / max(1, found.sum()))
    assert np.mean(proportions) <= 0.05


def test_benjamini_hochberg_is_scipys_over_the_tests_made():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=50) ** 3
    np.testing.assert_array_equal(benjamini_hochberg(p), false_discovery_control(p, method="bh"))
    with_nan = p.copy()
    with_nan[[3, 17]] = np.nan  # tests not made: NaN q, and not counted among the tests
    q = benjamini_hochberg(with_nan)
    assert np.isnan(q[[3, 17]]).all()
    made = ~np.isnan(with_nan)
    np.testing.assert_array_equal(q[made], false_discovery_control(p[made], method="bh"))
    assert benjamini_hochberg(np.array([])).shape == (0,)
    assert np.isnan(benjamini_hochberg(np.full(3, np.nan))).all()


def test_significance_needs_standard_errors_and_a_known_method(diffpoglm):
    _, train, _ = diffpoglm
    conn = sg.POGLM(n_hidden=1, link="sigmoid", epochs=2).fit(train).connectivity()
    with pytest.raises(ValueError, match="no standard errors"):
        conn.significance()
    glm = sg.POGLM(n_hidden=0, link="sigmoid").fit(train).connectivity()
    with pytest.raises(ValueError, match="unknown method 'bootstrap'"):
        glm.significance(method="bootstrap")
    with pytest.raises(ValueError, match="jitter test needs counts="):
        glm.significance(method="jitter")
    with pytest.raises(ValueError, match="needs a fit without hidden neurons"):
        conn.significance(method="jitter", counts=train)
    renamed = sg.SpikeCounts(train.counts, train.bin_size, ["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"must hold the connectivity's units in its order .*missing n0, n1, n2"
    ):
        glm.significance(method="jitter", counts=renamed)
    coarse = sg.SpikeCounts(train.counts, "10 ms", train.unit_ids)
    with pytest.raises(ValueError, match=r"binned at 10\.0 ms, the fit at 5\.0 ms"):
        glm.significance(method="jitter", counts=coarse)
    with pytest.raises(ValueError, match="the Wald test takes no options, got counts"):
        glm.significance(counts=train)
    with pytest.raises(ValueError, match="alpha must be in"):
        glm.significance(alpha=1.5)
    network = sg.POGLM(n_hidden=0).fit(train).network_
    segments = sg.segments.Segments(torch.from_numpy(np.array(train.counts)))
    se = strength_se(network, segments)
    assert se.shape == (3, 3) and np.isfinite(se).all()
    # The information is a sum over bins: chunks of one bin give the same errors as the default chunks.
    np.testing.assert_allclose(strength_se(network, segments, max_elements=12), se, rtol=1e-10)


# ---------------------------------------------------------------------- jitter tests
@pytest.mark.parametrize("link", ["softplus", "exp", "sigmoid"])
def test_the_newton_refit_on_the_reached_bins_matches_a_generic_optimiser(link):
    """The whole path (jitter, reached bins, spike split, Newton) against L-BFGS on every bin."""
    from scipy.optimize import minimize

    from spikeglm.significance import _interval_jitter, _Pair, _refit_coupling, _surrogate_bins

    rng = np.random.default_rng(1)
    n_trials, n_bins = 3, 400
    basis = sg.basis.get("raised-cosine", window=6, n_basis=2).matrix().double()
    train = rng.poisson(0.15, n_trials * n_bins)  # some bins with 2 spikes, some filters overlapping
    offset = torch.tensor(rng.normal(-2.5 if link != "sigmoid" else -1.5, 0.5, n_trials * n_bins))
    rate = sg.model.LINKS[link](offset + 0.4)
    counts = torch.poisson(rate, generator=torch.Generator().manual_seed(2))
    trains = _interval_jitter(train, n_bins, 4, 3, rng)
    gains, weights = [], []
    for _, (bins, features) in _surrogate_bins(trains, n_bins, basis, max_elements=2 * trains.shape[1] * 6):
        gain, weight = _refit_coupling(_Pair.gather(link, offset, counts, bins, features), rows_at_once=500)
        gains.append(gain)
        weights.append(weight)
    gains, weights = torch.cat(gains).numpy(), torch.cat(weights).numpy()
    for row, spikes in enumerate(trains):
        moved = np.bincount(spikes, minlength=n_trials * n_bins).reshape(n_trials, n_bins, 1)
        h = sg.basis.history(torch.tensor(moved, dtype=torch.float64), basis).reshape(-1, 2)

        def loss(w, h=h):
            w = torch.tensor(w, requires_grad=True)
            rate = sg.model.LINKS[link](offset + h @ w)
            value = -(torch.xlogy(counts, rate) - rate).sum()
            value.backward()
            return value.item(), w.grad.numpy()

        best = minimize(
            loss, np.zeros(2), jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-10}
        )
        np.testing.assert_allclose(weights[row], best.x, atol=2e-4)
        np.testing.assert_allclose(gains[row], loss(np.zeros(2))[0] - best.fun, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_jitter_p_values_are_valid_without_couplings():
    p_values = {"empirical": [], "normal": []}
    for seed in range(8):
        counts = simulated(uncoupled_network(6), seed, trials=20)
        conn = sg.POGLM(n_hidden=0).fit(counts).connectivity()
        for kind, found in p_values.items():
            table = conn.significance(method="jitter", counts=counts, n_jitter=39, pvalue=kind, seed=seed)
            found.extend(table[~table["self"]]["p"])
            assert np.isnan(table[table["self"]]["p"]).all() and not table["significant"][table["self"]].any()
    # 8 recordings x 30 pairs. Two-sided jitter p-values would be uniform; those against the direction
    # of the fitted coupling are set to 1, which makes them conservative at every level but keeps the
    # share below 0.05 near 0.05 (observed: empirical 0.067, normal 0.071; mean 0.57 and 0.56)
    for kind, p in p_values.items():
        p = np.array(p)
        assert 0.02 <= np.mean(p <= 0.05) <= 0.09, kind
        for level in (0.1, 0.25, 0.5):
            assert np.mean(p <= level) <= level + 0.05, (kind, level)
        assert 0.45 <= np.mean(p) <= 0.65, kind


@pytest.mark.slow
def test_jitter_finds_a_strong_coupling_and_exports_its_tests(tmp_path):
    network = uncoupled_network(4)
    with torch.no_grad():
        network.weight[1, 0, 0] = 1.5  # 0 excites 1
        network.weight[3, 2, 0] = -2.0  # 2 inhibits 3
    counts = simulated(network, seed=1)
    model = sg.POGLM(n_hidden=0).fit(counts)
    conn = model.connectivity()
    table, settings = conn.test_couplings(0.05, "jitter", counts=counts, n_jitter=99)
    found = {(r["pre"], r["post"], int(r["sign"])) for r in table if r["significant"] and not r["self"]}
    assert {("0", "1", 1), ("2", "3", -1)} <= found and len(found) <= 3
    assert table.dtype == conn.significance().dtype
    assert settings == {
        "test": "jitter",
        "alpha": 0.05,
        "n_jitter": 99,
        "jitter_bins": 5,
        "pvalue": "normal",
        "seed": 0,
    }
    conn.save(tmp_path / "g.graphml", tests=(table, settings))
    namespace = {"g": "http://graphml.graphdrawing.org/xmlns"}
    graph = ET.parse(tmp_path / "g.graphml").getroot()
    assert len(graph.findall(".//g:edge", namespace)) == int(table["significant"].sum())
    metadata = json.loads(graph.find(".//g:graph/g:data[@key='metadata']", namespace).text)
    assert metadata["significance"] == settings
    conn.save(tmp_path / "c.json", tests=(table, settings))
    document = json.loads((tmp_path / "c.json").read_text())
    assert (
        document["significance"]["test"] == "jitter" and document["edges"][0]["p"] is None
    )  # self: untested
    with pytest.raises(ValueError, match=r"give alpha .* or tests"):
        conn.save(tmp_path / "d.json", alpha=0.05, tests=(table, settings))
    # the command line: the model, and the recording it was fitted to
    recording = tmp_path / "rec.npz"
    sg.save(sg.Recording.from_counts(counts), recording)
    model.save(tmp_path / "m.h5")
    edges = tmp_path / "edges.csv"
    arguments = ["export", str(tmp_path / "m.h5"), "-o", str(edges), "--alpha", "0.05", "--test", "jitter"]
    result = CliRunner().invoke(main, [*arguments, "--recording", str(recording), "--n-jitter", "99"])
    assert result.exit_code == 0, result.output
    with open(edges, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["pre"], r["post"], r["significant"]) for r in rows] == [
        (r["pre"], r["post"], str(r["significant"])) for r in table
    ]
    result = CliRunner().invoke(main, [*arguments[:-2], "--test", "jitter", "--overwrite"])
    assert result.exit_code != 0 and "--test jitter needs --alpha and --recording" in result.output
    npz = [*arguments[:3], str(tmp_path / "c.npz"), *arguments[4:], "--recording", str(recording)]
    result = CliRunner().invoke(main, npz)
    assert result.exit_code == 2
    assert "--alpha applies to .csv, .graphml, .json and .nwb outputs" in result.output


def test_jitter_table_checks_its_options():
    conn = sg.Connectivity(np.zeros((2, 2, 1)), np.ones((1, 5)) / 5, np.zeros(2))
    counts = np.zeros((1, 50, 2))
    arguments = (conn.weights, conn.basis_matrix, conn.bias, "softplus", counts, conn.labels)
    with pytest.raises(ValueError, match="pvalue must be 'empirical' or 'normal'"):
        jitter_table(*arguments, pvalue="exact")
    with pytest.raises(ValueError, match="n_jitter must be at least 2"):
        jitter_table(*arguments, n_jitter=1)
    with pytest.raises(ValueError, match="jitter must be at least 1 bin"):
        jitter_table(*arguments, jitter=0)
    with pytest.raises(ValueError, match=r"counts must have shape \(trials, bins, 2\)"):
        jitter_table(*arguments[:4], counts[..., :1], conn.labels)
    # neurons that never fire: every pair untested, nothing significant
    table = jitter_table(*arguments, n_jitter=5)
    assert np.isnan(table["p"]).all() and not table["significant"].any()


def test_the_null_model_of_a_pair_is_one_newton_step_from_the_fit():
    """Dropping a coupling moves the neuron's other parameters to (nearly) their refit without it."""
    from scipy.optimize import minimize

    from spikeglm.significance import _null_shifts

    network = uncoupled_network(3)
    with torch.no_grad():
        network.weight[1, 0, 0] = 1.0
        network.weight[1, 2, 0] = 0.5
    counts = simulated(network, seed=3)
    conn = sg.POGLM(n_hidden=0).fit(counts).connectivity()
    spikes = torch.tensor(np.asarray(counts.counts), dtype=torch.float64)
    basis = torch.tensor(conn.basis_matrix)
    features = sg.basis.history(spikes, basis).reshape(-1, 3)
    design = torch.cat([torch.ones_like(features[:, :1]), features], dim=1)
    theta = torch.tensor(np.concatenate([[conn.bias[1]], conn.weights[1, :, 0]]))
    y = spikes.reshape(-1, 3)[:, 1]
    shift = _null_shifts(design, design @ theta, y, theta, "softplus", 1)[0]

    def loss(rest):  # the neuron's parameters with the coupling from neuron 0 held at 0
        rest = torch.tensor(rest, requires_grad=True)
        rate = torch.nn.functional.softplus(design[:, [0, 2, 3]] @ rest)
        value = -(torch.xlogy(y, rate) - rate).sum()
        value.backward()
        return value.item(), rest.grad.numpy()

    start = theta[[0, 2, 3]].numpy()
    refit = minimize(loss, start, jac=True, method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-9}).x
    exact = design[:, [0, 2, 3]] @ torch.tensor(refit)
    naive = design @ torch.cat([theta[:1], torch.zeros(1), theta[2:]])  # the coupling dropped alone
    step = design @ (theta + shift)
    assert shift[1] == -theta[1]
    # the one-step null model lies much closer to the refit than the coupling dropped alone (observed:
    # 0.015 against 0.144 in the predictor, for a coupling of strength 1)
    assert (step - exact).abs().max() < 0.2 * (naive - exact).abs().max()


@pytest.mark.slow
def test_bootstrap_standard_errors_of_a_glm_agree_with_the_fisher_information():
    network = uncoupled_network(3)
    with torch.no_grad():
        network.weight[1, 0, 0] = 1.5
    counts = simulated(network, seed=2, trials=20, bins=400)
    model = sg.POGLM(n_hidden=0).fit(counts)
    fisher = model.strength_se_.copy()
    rounds = []
    se = sg.bootstrap_se(
        model, counts, n_boot=30, seed=0, callback=lambda index, seconds: rounds.append(index)
    )
    assert rounds == list(range(30))
    assert se is model.strength_se_ and se.shape == (3, 3)
    # 30 refits: each standard error is within ~13% (1 / sqrt(58)) of its own expectation, and both
    # estimate the spread of the fit; the median ratio over the 9 pairs lies within 0.8-1.25 (observed 1.03,
    # every pair within 0.80-1.14)
    ratio = se / fisher
    assert 0.8 <= np.median(ratio) <= 1.25, ratio
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    assert model.strength_se_source_ == {"method": "bootstrap", "n_boot": 30, "seed": 0}
    # the same seed gives the same standard errors, another seed others
    twice = [sg.bootstrap_se(model, counts, n_boot=2, seed=seed) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(twice[0], twice[1])
    assert not np.array_equal(twice[0], twice[2])


def test_bootstrap_matches_the_hidden_neurons_of_each_refit(diffpoglm, monkeypatch):
    # refits that come back as the fit with its hidden neurons swapped, one of them inverted (its
    # couplings with the other neurons of the other orientation negated) and every strength scaled by
    # 1 + 0.01 b in refit b: after matching, the standard errors are |strength| * 0.01 * std(0..4)
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=2, link="sigmoid", epochs=3).fit(train)
    weight = model.network_.weight.detach().clone()
    orientation = torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0])
    order = torch.tensor([0, 1, 2, 4, 3])
    turned = (weight * (orientation[:, None] * orientation[None, :])[..., None])[order][:, order]
    done = []

    def swapped_fit(self, counts, **options):
        self.network_ = model._new_network(3)
        with torch.no_grad():
            self.network_.weight.copy_(turned * (1 + 0.01 * len(done)))
            self.network_.bias.copy_(model.network_.bias[order])
        self.posterior_, self.unit_ids_, self.bin_size_ = model.posterior_, model.unit_ids_, model.bin_size_
        done.append(counts.counts.shape)
        return self

    strength = model.connectivity().strength
    monkeypatch.setattr(sg.POGLM, "fit", swapped_fit)
    se = sg.bootstrap_se(model, train, n_boot=5, seed=1)
    assert done == [train.counts.shape] * 5  # simulated like the data, hidden columns dropped
    np.testing.assert_allclose(se, np.abs(strength) * 0.01 * np.std(np.arange(5), ddof=1), rtol=1e-4)


def test_bootstrap_standard_errors_of_hidden_neurons_test_and_travel(diffpoglm, tmp_path):
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=2, link="sigmoid", epochs=5).fit(train)
    assert model.strength_se_ is None
    se = sg.bootstrap_se(model, train, n_boot=3, seed=0)
    assert se.shape == (5, 5) and np.all(np.isfinite(se)) and np.all(se > 0)
    table = model.connectivity().significance(alpha=0.05)
    assert len(table) == 25 and np.all(np.isfinite(table["p"]))
    np.testing.assert_allclose(table["se"], se.ravel())  # rows run over (post, pre) pairs
    metadata = model.connectivity().metadata
    assert metadata["se_method"] == "parametric bootstrap from the fitted model"
    assert metadata["se_n_boot"] == 3 and metadata["se_seed"] == 0
    # the model file keeps the standard errors and their source; the exports say where they came from
    path = tmp_path / "m.h5"
    model.save(path)
    loaded = sg.POGLM.load(path)
    np.testing.assert_array_equal(loaded.strength_se_, se)
    assert loaded.strength_se_source_ == {"method": "bootstrap", "n_boot": 3, "seed": 0}
    loaded.connectivity().save(tmp_path / "c.json", alpha=0.05)
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["metadata"]["se_n_boot"] == 3 and len(document["edges"]) == 25
    # a refit clears them
    assert loaded.set_params(epochs=1).fit(train).strength_se_ is None


def test_bootstrap_refuses_what_it_cannot_repeat(diffpoglm):
    truth, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=1, link="sigmoid", epochs=1).fit(train)
    with pytest.raises(ValueError, match="n_boot must be a whole number >= 2; got 1"):
        sg.bootstrap_se(model, train, n_boot=1)
    with pytest.raises(ValueError, match="counts must be the SpikeCounts of the fit's 3 units; got 2 units"):
        sg.bootstrap_se(model, sg.SpikeCounts.from_array(train.counts[..., :2]), n_boot=2)
    given = sg.POGLM.from_connectivity(truth)
    with pytest.raises(ValueError, match="network was given, not fitted"):
        sg.bootstrap_se(given, train, n_boot=2)


# ---------------------------------------------------------------------- the standard_errors setting
def test_information_work_counts_the_products_over_the_bins_where_a_column_is_not_zero():
    network = uncoupled_network(3)
    counts = torch.zeros(2, 10, 3, dtype=torch.uint8)
    segments = sg.segments.Segments(counts)
    # No spike: every history column is zero; the bias column's row of 4 products, for 3 neurons, 20 bins.
    assert sg.inference.newton.information_work(network, segments) == 20 * 4 * 3
    counts[:, ::2, 1] = 1  # neuron 1 fires in half the bins: its column is taken as 1 - exp(-0.5 L) dense
    share = -np.expm1(-0.5 * network.basis.window)
    expected = 20 * 3 * (4 + share * 2)  # its row holds the columns j >= 2 of 4: 2 products
    assert sg.inference.newton.information_work(network, segments) == pytest.approx(expected)
    seconds = sg.significance.information_seconds(network, segments)
    assert seconds == pytest.approx(expected / sg.significance.CPU_RATE + 3 * 4**3 / 1e10)


def test_auto_skips_standard_errors_beyond_the_budget_and_says_how_to_get_them(monkeypatch):
    train = simulated(uncoupled_network(4), seed=3, trials=10, bins=300)
    full = sg.POGLM(n_hidden=0).fit(train)
    assert full.standard_errors == "auto" and np.isfinite(full.strength_se_).all()
    monkeypatch.setattr(sg.poglm, "CPU_BUDGET", 1e-9)  # seconds: every fit now costs more
    with pytest.warns(
        UserWarning, match=r"standard errors were not computed: at 4 neurons and 3,000 bins they"
    ):
        skipped = sg.POGLM(n_hidden=0).fit(train)
    assert skipped.strength_se_ is None and skipped.strength_se_source_ is None
    with pytest.raises(ValueError, match=r"standard_errors=True \(--standard-errors yes\)"):
        skipped.connectivity().significance()
    np.testing.assert_array_equal(skipped.connectivity().strength, full.connectivity().strength)
    forced = sg.POGLM(n_hidden=0, standard_errors=True).fit(train)  # whatever they cost
    np.testing.assert_array_equal(forced.strength_se_, full.strength_se_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no is no: nothing to warn of
        assert sg.POGLM(n_hidden=0, standard_errors=False).fit(train).strength_se_ is None


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_standard_errors_takes_true_false_or_auto(bad):
    train = simulated(uncoupled_network(3), seed=1, trials=4, bins=100)
    with pytest.raises(ValueError, match=rf"standard_errors must be True or False or 'auto'; got {bad!r}"):
        sg.POGLM(n_hidden=0, standard_errors=bad).fit(train)
    assert sg.POGLM(standard_errors="AUTO").checked_settings().standard_errors == "auto"


def test_cross_validation_fits_compute_no_standard_errors(monkeypatch):
    train = simulated(uncoupled_network(3), seed=2, trials=8, bins=200)
    calls = []
    original = sg.poglm.standard_errors
    monkeypatch.setattr(
        sg.poglm, "standard_errors", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    )
    model = sg.select_hidden(train, candidates=(0,), folds=2, model=sg.POGLM(epochs=2), n_particles=10)
    assert len(calls) == 1 and model.strength_se_ is not None  # the refit on all the data only


def test_the_command_line_sets_standard_errors_and_the_model_file_keeps_it(tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.h5"
    fit = ["fit", str(EXAMPLE), "-o", str(out), "--hidden", "0", "--standard-errors", "no"]
    result = runner.invoke(main, fit)
    assert result.exit_code == 0, result.output
    loaded = sg.POGLM.load(out)
    assert loaded.standard_errors is False and loaded.strength_se_ is None
    result = runner.invoke(main, [*fit[:-1], "maybe", "--overwrite"])
    assert result.exit_code == 2 and "'maybe' is not one of yes, no, auto" in result.output
