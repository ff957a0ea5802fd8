"""Ground-truth networks with hidden neurons, and spike counts simulated from them.

Protocols
---------
``"diffpoglm"``
    The published POGLM benchmark: 3 visible and 2 hidden neurons, every coupling weight (self-coupling
    included) drawn from U(-2, 2), biases from U(-0.5, 0.5), sigmoid link (rates below 1 per bin),
    exponential basis with decay 0.25 over L = 5 lags normalised to sum 1, 100-bin trials, 40 training
    and 20 test trials. Dataset ``k`` of the benchmark uses ``seed=k``.
``"sparse-ei"``
    A larger sparse network for connectivity detection: excitatory and inhibitory neurons (Dale's
    law: each presynaptic neuron's outgoing weights share a sign), connection probability
    ``connection_prob``, refractory self-inhibition, and a few hidden neurons that each drive a large
    share of the visible ones (the unrecorded common input a POGLM is meant to explain). Softplus link.
    ``hidden_drive`` scales the hidden neurons' couplings onto the visible ones: a factor, or one of
    :data:`HIDDEN_DRIVES` (``"weak"``, where a plain GLM does as well; ``"moderate"``, the default;
    ``"strong"``, where hidden neurons clearly pay off).
"""

from __future__ import annotations

import numpy as np
import torch

from spikeglm import basis as basis_module
from spikeglm.connectivity import Connectivity
from spikeglm.counts import SpikeCounts
from spikeglm.model import Network
from spikeglm.options import Registry


def network(protocol: str = "diffpoglm", seed: int = 0, with_hidden: bool = False, **options) -> tuple:
    """A ground-truth network and train / test spike counts of its visible neurons.

    Parameters
    ----------
    protocol : {"diffpoglm", "sparse-ei"}
        Which generator (see the module documentation).
    seed : int
        Seed of the parameters and the simulation.
    with_hidden : bool
        Also return the hidden neurons' counts of the training and test trials (ground truth of what
        a fit infers).
    **options
        Overrides of the protocol's settings: ``n_visible``, ``n_hidden``, ``n_bins``, ``n_train``,
        ``n_test``, ``bin_size``, and for ``"sparse-ei"`` also ``connection_prob``, ``base_rate`` and
        ``hidden_drive``.

    Returns
    -------
    truth : Connectivity
        All weights, hidden neurons included (labelled ``hidden-0``, ...).
    train, test : SpikeCounts
        Visible counts of the training and test trials.
    hidden_train, hidden_test : SpikeCounts
        Only with ``with_hidden=True``: the hidden neurons' counts (units ``hidden-0``, ...).
    """
    generate, defaults = PROTOCOLS[protocol]
    settings = {**defaults, **options}
    net = generate(settings, np.random.default_rng(seed))
    n_train, n_test, n_bins = settings["n_train"], settings["n_test"], settings["n_bins"]
    return simulate(net, n_train, n_test, n_bins, settings["bin_size"], seed, with_hidden)


def simulate(
    net: Network,
    n_train: int,
    n_test: int,
    n_bins: int,
    bin_size: str = "5 ms",
    seed: int = 0,
    with_hidden: bool = False,
) -> tuple:
    """Simulate a network and split the visible counts into train and test trials (see :func:`network`)."""
    generator = torch.Generator().manual_seed(seed)
    counts = net.simulate(n_train + n_test, n_bins, generator=generator).numpy()
    unit_ids = [f"n{k}" for k in range(net.n_visible)]
    visible = counts[..., : net.n_visible]
    train = SpikeCounts.from_array(visible[:n_train], bin_size=bin_size, unit_ids=unit_ids)
    test = SpikeCounts.from_array(visible[n_train:], bin_size=bin_size, unit_ids=unit_ids)
    hidden_ids = [f"hidden-{k}" for k in range(net.n_hidden)]
    labels = unit_ids + hidden_ids
    truth = Connectivity(
        weights=net.weight.detach().double().numpy(),
        basis_matrix=net.basis_matrix.double().numpy(),
        bias=net.bias.detach().double().numpy(),
        labels=labels,
        visible=np.arange(net.n_neurons) < net.n_visible,
        metadata={"basis": net.basis.to_dict(), "link": net.link_name, "bin_size": bin_size},
    )
    if not with_hidden:
        return truth, train, test
    hidden = counts[..., net.n_visible :]
    return (
        truth,
        train,
        test,
        SpikeCounts.from_array(hidden[:n_train], bin_size=bin_size, unit_ids=hidden_ids),
        SpikeCounts.from_array(hidden[n_train:], bin_size=bin_size, unit_ids=hidden_ids),
    )


def _with_parameters(net: Network, weight: np.ndarray, bias: np.ndarray) -> Network:
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(weight))
        net.bias.copy_(torch.from_numpy(bias))
    return net


def _diffpoglm(settings: dict, rng: np.random.Generator) -> Network:
    n = settings["n_visible"] + settings["n_hidden"]
    basis = basis_module.Exponential(window=5, decay=0.25)
    net = Network(settings["n_visible"], settings["n_hidden"], basis, link="sigmoid")
    weight = rng.uniform(-2, 2, size=(n, n, 1))
    bias = rng.uniform(-0.5, 0.5, size=n)
    return _with_parameters(net, weight, bias)


def _sparse_ei(settings: dict, rng: np.random.Generator) -> Network:
    n_visible, n_hidden = settings["n_visible"], settings["n_hidden"]
    n = n_visible + n_hidden
    basis = basis_module.Exponential(window=5, decay=0.25)
    net = Network(n_visible, n_hidden, basis, link="softplus")
    # Dale's law: a presynaptic neuron's outgoing weights share its sign; 80% excitatory.
    sign = np.where(rng.random(n) < 0.8, 1.0, -1.0)
    strength = np.where(sign > 0, rng.uniform(0.5, 1.5, (n, n)), rng.uniform(1.0, 2.5, (n, n)))
    present = rng.random((n, n)) < settings["connection_prob"]
    # Each hidden neuron drives half of the visible neurons: the common input a POGLM should find.
    present[:n_visible, n_visible:] = rng.random((n_visible, n_hidden)) < 0.5
    weight = present * strength * sign[None, :]
    weight[:n_visible, n_visible:] *= hidden_drive(settings["hidden_drive"])
    np.fill_diagonal(weight, -rng.uniform(1.0, 2.0, n))  # refractoriness
    base = float(np.log(np.expm1(settings["base_rate"])))  # softplus^-1 of the base rate per bin
    bias = base + rng.normal(0.0, 0.2, n)
    return _with_parameters(net, weight[..., None], bias)


#: Named strengths of ``hidden_drive`` (sparse-ei): factors on the hidden-to-visible couplings.
HIDDEN_DRIVES = {"weak": 0.5, "moderate": 1.0, "strong": 2.5}


def hidden_drive(value: str | float) -> float:
    """The factor of a ``hidden_drive`` setting: a name of :data:`HIDDEN_DRIVES` or a number >= 0."""
    if isinstance(value, str):
        if value not in HIDDEN_DRIVES:
            raise ValueError(f"hidden_drive: unknown strength {value!r}; one of {', '.join(HIDDEN_DRIVES)}")
        return HIDDEN_DRIVES[value]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"hidden_drive must be a number >= 0 or a strength name; got {value!r}")
    return float(value)


#: The published protocols: each a generator of the network and its default settings.
PROTOCOLS: Registry[tuple] = Registry(
    "protocol",
    {
        "diffpoglm": (
            _diffpoglm,
            dict(n_visible=3, n_hidden=2, n_bins=100, n_train=40, n_test=20, bin_size="5 ms"),
        ),
        "sparse-ei": (
            _sparse_ei,
            dict(
                n_visible=30,
                n_hidden=3,
                n_bins=500,
                n_train=40,
                n_test=20,
                bin_size="5 ms",
                connection_prob=0.15,
                base_rate=0.08,
                hidden_drive="moderate",
            ),
        ),
    },
)
