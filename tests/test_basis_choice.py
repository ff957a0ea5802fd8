"""``window="auto"``: the history basis chosen by cross-validated likelihood of the visible neurons' GLM."""

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm.inference.basis_choice import candidates, cross_validated_basis


def long_filters(seed: int = 0) -> tuple[sg.SpikeCounts, sg.SpikeCounts]:
    """Counts of 4 neurons coupled through filters that reach 20 bins (raised cosines): the default's 5
    bins miss most of them."""
    basis = sg.basis.get("raised-cosine", window=20, n_basis=4)
    network = sg.model.Network(4, 0, basis, "softplus")
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        network.bias.fill_(-2.5)
        weight = rng.uniform(-1.5, 1.5, (4, 4, 4)) * (rng.random((4, 4, 1)) < 0.6)
        weight[np.arange(4), np.arange(4)] = -2.0
        network.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    counts = network.simulate(50, 400, generator=torch.Generator().manual_seed(seed))
    data = sg.SpikeCounts.from_array(counts.numpy().astype(np.uint8), bin_size="5 ms")
    return data[:40], data[40:]


def test_candidates_are_ordered_simplest_first_and_fit_the_trials():
    bases = candidates(30)
    assert [(b.name, b.window) for b in bases] == [
        ("exponential", 5),
        ("exponential", 10),
        ("exponential", 20),
        ("raised-cosine", 5),
        ("raised-cosine", 10),
        ("raised-cosine", 20),
    ]
    assert [b.window for b in candidates(3)] == [3, 3]


def test_auto_window_finds_long_filters_and_records_its_choice(tmp_path):
    train, test = long_filters()
    auto = sg.POGLM(n_hidden=0, window="auto").fit(train)
    default = sg.POGLM(n_hidden=0).fit(train)
    chosen = auto.checked_settings().basis
    assert chosen.window >= 10  # the data's filters are 20 bins long
    assert auto.score(test) > default.score(test) + 2e-4  # 5.4e-4 per neuron-bin when written
    table = auto.basis_choice_
    assert np.shape(table["scores"]) == (15, 5) and table["candidates"][table["chosen"]] == chosen.to_dict()
    auto.save(tmp_path / "auto.h5")
    loaded = sg.POGLM.load(tmp_path / "auto.h5")
    assert loaded.basis_choice_ == table and loaded.checked_settings().basis.to_dict() == chosen.to_dict()
    assert loaded.score(test) == auto.score(test)
    assert auto.connectivity().metadata["basis_choice"]["chosen"] == table["chosen"]


def test_the_choice_keeps_the_simplest_basis_within_one_paired_error():
    basis = sg.basis.get("exponential", window=5)
    network = sg.model.Network(3, 0, basis, "softplus")
    with torch.no_grad():
        network.bias.fill_(-2.0)
        network.weight.copy_(torch.tensor([[-1.0, 0.6, 0.0], [0.0, -1.0, 0.6], [0.6, 0.0, -1.0]])[..., None])
    counts = network.simulate(20, 300, generator=torch.Generator().manual_seed(1))
    chosen, table = cross_validated_basis(counts, "softplus", None, max_iterations=500, part_bins=2**15)
    scores = np.array(table["scores"])
    assert chosen.to_dict() == basis.to_dict()  # the true basis is the simplest candidate
    assert table["chosen"] == 0 and scores.shape == (15, 5) and table["folds_by"] == "trials"
    # The first stage compares the own history's bases (the simplest alone first), the second the
    # couplings' with the own history chosen (none here): the one row they share is scored once.
    assert table["stages"] == {"own": list(range(8)), "couplings": [0, *range(8, 15)]}
    own = [sg.basis.from_dict(table["candidates"][row]) for row in table["stages"]["own"][1:]]
    assert all(isinstance(b, sg.basis.OwnHistory) and b.couplings == basis for b in own)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"window": "often"}, "window must be a whole number"),
        ({"window": "auto", "basis_options": {"decay": 0.5}}, "so basis_options cannot apply"),
        ({"window": "auto", "self_basis": "raw", "self_window": 9}, r"so self_basis \(--self-basis\) cannot"),
        ({"window": "auto", "self_window": 9}, r"so self_window \(--self-window\) cannot"),
        ({"self_basis": "raw"}, r"self_basis='raw' \(--self-basis\) needs self_window"),
        ({"self_window": 9}, r"self_window=9 \(--self-window\) needs self_basis"),
        ({"self_basis": "exponential", "self_window": 5}, "is the couplings' basis"),
        (
            {
                "basis": sg.basis.OwnHistory(sg.basis.Exponential(), sg.basis.RawLags(3)),
                "self_basis": "raw",
                "self_window": 9,
            },
            "with a basis that has one already",
        ),
    ],
)
def test_bad_window_settings_are_refused_by_name(settings, message):
    train, _ = long_filters()
    with pytest.raises(ValueError, match=message):
        sg.POGLM(n_hidden=0, **settings).fit(train)
