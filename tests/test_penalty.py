"""Penalised couplings: the solve reaches the penalised optimum, the strength is cross-validated, and the
errors say what they mean under the penalty."""

import math

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm.basis import get as get_basis
from spikeglm.inference import solve_glm
from spikeglm.inference.glm import likelihood_gradient
from spikeglm.inference.penalty import Ridge
from spikeglm.model import Network
from spikeglm.segments import Segments


@pytest.fixture(scope="module")
def small():
    """A sparse network of 6 neurons, 8 trials of 300 bins: few enough spikes that penalties matter."""
    return sg.synthetic.network("sparse-ei", seed=1, n_visible=6, n_hidden=0, n_train=8, n_test=4, n_bins=300)


def _network(counts: torch.Tensor, basis: str = "raised-cosine") -> Network:
    network = Network(counts.shape[-1], 0, get_basis(basis, window=10, n_basis=3), "softplus")
    network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
    return network


def _stationary_gradient(network: Network, data: Segments) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of minus the log-likelihood per spike in the weights and the biases."""
    weight = likelihood_gradient(network, data)
    network.zero_grad(set_to_none=True)
    return weight, _bias_gradient(network, data)


def _bias_gradient(network: Network, data: Segments) -> torch.Tensor:
    spikes = float(data.counts.sum())
    loss = -network.log_likelihood(data.counts).sum() / spikes
    (gradient,) = torch.autograd.grad(loss, network.bias)
    return gradient


def test_ridge_solve_is_stationary_for_the_penalised_objective(small):
    counts = torch.tensor(small.train.counts, dtype=torch.float32)
    network, data, strength = _network(counts), Segments(counts), 3e-3
    solve_glm(network, data, penalty=Ridge(strength))
    weight_gradient, bias_gradient = _stationary_gradient(network, data)
    pairs = Ridge.pairs(network.weight.detach())
    penalised = weight_gradient + strength * network.weight.detach() * pairs
    scale = likelihood_gradient(_network(counts), data).abs().max()  # the gradient at the start
    assert penalised.abs().max() < 1e-2 * scale
    assert bias_gradient.abs().max() < 1e-2 * scale
    # The penalty did something: the couplings are smaller than without it.
    free = _network(counts)
    solve_glm(free, data)
    assert (network.weight.detach() * pairs).norm() < 0.9 * (free.weight.detach() * pairs).norm()


def test_cross_validated_ridge_fit_records_its_choice_and_errors(small, tmp_path):
    plain = sg.POGLM(n_hidden=0).fit(small.train)
    model = sg.POGLM(n_hidden=0, penalty="ridge").fit(small.train)
    table = model.fit_options_["penalty_cv"]
    scores = np.asarray(table["scores"])
    assert scores.shape == (len(table["strengths"]), 5) and table["strengths"][-1] == 0.0
    assert table["chosen"] == table["strengths"][int(np.argmax(scores.mean(axis=1)))]
    assert model.fit_options_["penalty_strength"] == table["chosen"]
    # Errors of the penalised information: a prior on the couplings narrows them.
    off = ~np.eye(6, dtype=bool)
    if table["chosen"] > 0:
        assert np.all(model.strength_se_[off] < plain.strength_se_[off])
    conn = model.connectivity()
    assert "penalised" in conn.metadata["se_method"] and conn.metadata["penalty"] == "ridge"
    assert len(conn.significance()) == 36
    model.save(tmp_path / "ridge.h5")
    loaded = sg.POGLM.load(tmp_path / "ridge.h5")
    assert (loaded.penalty, loaded.penalty_strength) == ("ridge", table["chosen"])
    np.testing.assert_array_equal(loaded.strength_se_, model.strength_se_)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_hidden": 1, "penalty": "ridge"}, r"penalty='ridge' \(--penalty\) applies to fits without"),
        ({"n_hidden": 0, "n_latent": 1, "penalty": "ridge"}, "n_latent=1"),
        ({"n_hidden": 0, "penalty": "group-lasso"}, "penalty"),
        ({"n_hidden": 0, "penalty": "ridge", "penalty_strength": "fast"}, "penalty_strength"),
        ({"n_hidden": 0, "penalty": "ridge", "penalty_strength": -1.0}, "penalty_strength"),
    ],
)
def test_bad_penalty_settings_are_refused_by_name(small, settings, message):
    with pytest.raises(ValueError, match=message):
        sg.POGLM(**settings).fit(small.train)


def test_penalty_strength_is_checked():
    with pytest.raises(ValueError, match="penalty_strength"):
        Ridge(math.nan)
