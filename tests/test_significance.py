"""Standard errors of coupling strengths, Wald tests and Benjamini-Hochberg control."""

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import spikeglm as sg
from spikeglm.model import Network
from spikeglm.significance import benjamini_hochberg, strength_se
from spikeglm_cli.main import main


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


def test_significance_needs_standard_errors_and_a_known_method(diffpoglm):
    _, train, _ = diffpoglm
    conn = sg.POGLM(n_hidden=1, link="sigmoid", epochs=2).fit(train).connectivity()
    with pytest.raises(ValueError, match="no standard errors"):
        conn.significance()
    glm = sg.POGLM(n_hidden=0, link="sigmoid").fit(train).connectivity()
    with pytest.raises(ValueError, match="unknown method 'jitter'"):
        glm.significance(method="jitter")
    with pytest.raises(ValueError, match="alpha must be in"):
        glm.significance(alpha=1.5)
    assert strength_se(
        sg.POGLM(n_hidden=0).fit(train).network_,
        sg.segments.Segments(torch.from_numpy(np.array(train.counts))),
    ).shape == (3, 3)
