"""Ground-truth networks with hidden neurons, and spike counts simulated from them.

:func:`network` draws a network by a named protocol and simulates it; it returns a :class:`Simulation`,
which unpacks as ``truth, train, test`` and holds the hidden neurons' counts as well.

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
    ``"strong"``, where hidden neurons clearly pay off). Its weights do not scale with the number of
    neurons: beyond a few tens of neurons, or under a strong drive, the activity often runs away.
``"balanced"``
    The sparse excitatory and inhibitory network at any size, from 3 to thousands of neurons. Each
    neuron receives a coupling from each other one with probability ``connection_prob``, so about
    ``K = connection_prob * (N - 1)`` inputs; an excitatory coupling is ``coupling / sqrt(K)`` times a
    U(0.5, 1.5) draw, an inhibitory one ``inhibition_ratio`` times stronger (a share
    ``inhibitory_fraction`` of the neurons, hidden ones included, is inhibitory: with the defaults 0.2
    and 5, inhibition dominates), and each neuron inhibits itself (refractoriness, -U(1, 2)). Each
    hidden neuron drives half of the visible neurons with ``hidden_drive`` times U(0.5, 1.5), whatever
    the size. Each neuron's target rate is drawn log-uniformly from ``rate`` (Hz; one number: all
    alike), and the biases are set so that the mean rates meet the targets (:func:`bias_for_rates`).
    Before anything is simulated the network's stability is checked (:func:`gain`): a gain that is not
    below ``1 - margin`` is refused (:class:`UnstableNetwork`, naming the setting to lower), or, with
    ``rescale=True``, every coupling is scaled down to bring the gain to ``1 - margin``, with a warning
    that states the factor. The truth's metadata hold the targets (``target_rate_hz``), the ``gain``
    and the ``coupling_factor`` applied. Softplus link, exponential basis as above; trials of 10 s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch

from spikeglm import basis as basis_module
from spikeglm.connectivity import Connectivity
from spikeglm.counts import SpikeCounts
from spikeglm.memory import available_memory, format_bytes
from spikeglm.model import LINKS, Network, RunawayActivity, inverse_link
from spikeglm.options import Registry, whole
from spikeglm.timeunits import seconds

#: The share of the trials that :func:`network` holds out as test trials when given a ``duration``.
TEST_SHARE = 0.2


@dataclass(frozen=True)
class Simulation:
    """A ground-truth network and the counts simulated from it, as :func:`network` returns them.

    It unpacks as its first three fields, ``truth, train, test = network(...)``; the hidden neurons'
    counts are read by name (``sim.hidden_test``).

    Attributes
    ----------
    truth : Connectivity
        All weights, hidden neurons included (labelled ``hidden-0``, ...). Its metadata name the basis,
        link and bin size, and for :func:`network` the ``protocol``, ``seed`` and ``settings`` (with what
        the protocol found, such as the ``"balanced"`` network's ``gain``).
    train, test : SpikeCounts
        Visible counts of the training and test trials (units ``n0``, ``n1``, ...).
    hidden_train, hidden_test : SpikeCounts or None
        The hidden neurons' counts of the same trials (units ``hidden-0``, ...): the ground truth of what
        a fit infers. None for a network without hidden neurons.
    """

    truth: Connectivity
    train: SpikeCounts
    test: SpikeCounts
    hidden_train: SpikeCounts | None
    hidden_test: SpikeCounts | None

    def __iter__(self) -> Iterator[Connectivity | SpikeCounts]:
        """``truth, train, test``: what ``truth, train, test = network(...)`` unpacks."""
        return iter((self.truth, self.train, self.test))


class UnstableNetwork(ValueError):
    """A network whose linearised rate dynamics would not be stable; ``setting`` names what to lower."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def network(protocol: str = "diffpoglm", seed: int = 0, **options: Any) -> Simulation:
    """A ground-truth network and train / test spike counts of its visible (and hidden) neurons.

    Parameters
    ----------
    protocol : {"diffpoglm", "sparse-ei", "balanced"}
        Which generator (see the module documentation).
    seed : int
        Seed of the parameters and the simulation.
    **options
        Overrides of the protocol's settings (:func:`defaults` lists them with their defaults): for every
        protocol ``n_visible``, ``n_hidden``, ``n_bins`` (bins per trial), ``n_train``, ``n_test`` and
        ``bin_size``; for ``"sparse-ei"`` also ``connection_prob``, ``base_rate`` and ``hidden_drive``;
        for ``"balanced"`` ``connection_prob``, ``inhibitory_fraction``, ``inhibition_ratio``,
        ``coupling``, ``rate``, ``hidden_drive``, ``margin`` and ``rescale``. Instead of ``n_train``
        and ``n_test``, ``duration`` (e.g. ``"1 h"``) asks for the trials of ``n_bins`` bins that fill it,
        a fifth of them (:data:`TEST_SHARE`) held out.

    Returns
    -------
    Simulation
        Unpacks as ``truth, train, test``; also holds ``hidden_train`` and ``hidden_test``.

    Raises
    ------
    ValueError
        For an unknown protocol or setting, or a setting out of its range (the message names it).
    UnstableNetwork
        For a ``"balanced"`` network that is not stable, unless ``rescale=True``.
    """
    generate, known = PROTOCOLS[protocol]
    unknown = sorted(set(options) - set(known) - {"duration"})
    if unknown:
        raise ValueError(
            f"{PROTOCOLS.name(protocol)}: no setting {unknown[0]!r}; the settings are "
            f"{', '.join([*known, 'duration'])}"
        )
    settings = {**known, **options}
    if "duration" in options:
        if "n_train" in options or "n_test" in options:
            raise ValueError("duration: give a duration or n_train and n_test, not both")
        n_trials = trials_in(settings.pop("duration"), settings["n_bins"], settings["bin_size"])
        if n_trials < 2:
            raise ValueError(
                f"duration: {options['duration']!r} holds 1 trial; a training and a test one needed"
            )
        settings["n_test"] = max(1, round(TEST_SHARE * n_trials))
        settings["n_train"] = n_trials - settings["n_test"]
    _check_memory(settings)
    net, found = generate(settings, np.random.default_rng(seed))
    metadata = {"protocol": PROTOCOLS.name(protocol), "seed": seed, "settings": _plain(settings), **found}
    n_train, n_test, n_bins = settings["n_train"], settings["n_test"], settings["n_bins"]
    try:
        return simulate(net, n_train, n_test, n_bins, settings["bin_size"], seed, metadata)
    except RunawayActivity as error:
        if "gain" not in found:
            raise
        # The gain is that of small changes: strong couplings can still run away through the link's curvature.
        raise UnstableNetwork(
            f"{metadata['protocol']}: {error.where} although the gain is {found['gain']:.3g}: couplings "
            "this strong run away through the link's curvature; lower coupling or hidden_drive",
            "coupling",
        ) from None


def defaults(protocol: str) -> dict[str, Any]:
    """The settings of a protocol with their defaults (a new dict), without the optional ``duration``."""
    return dict(PROTOCOLS[protocol][1])


def trials_in(duration: float | str, n_bins: int, bin_size: str = "5 ms") -> int:
    """How many trials of ``n_bins`` bins fill ``duration`` (seconds, or a string such as ``"1 h"``).

    Raises
    ------
    ValueError
        If ``duration`` is not a positive whole number of trials (the message names it).
    """
    trial = whole(n_bins, "n_bins") * seconds(bin_size, "bin_size")
    total = seconds(duration, "duration")
    n_trials = round(total / trial)
    if n_trials < 1 or not math.isclose(n_trials * trial, total, rel_tol=1e-9):
        raise ValueError(
            f"duration: {duration!r} is not a whole number of trials of {n_bins} bins ({trial:g} s); "
            "change it or the bins per trial"
        )
    return n_trials


def simulate(
    net: Network,
    n_train: int,
    n_test: int,
    n_bins: int,
    bin_size: str = "5 ms",
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
) -> Simulation:
    """Simulate a network and split its counts into train and test trials (see :func:`network`).

    ``metadata`` are added to the truth's (which name the basis, the link and the bin size).
    """
    generator = torch.Generator().manual_seed(seed)
    counts = net.simulate(n_train + n_test, n_bins, generator=generator, dtype=torch.int16).numpy()
    unit_ids = [f"n{k}" for k in range(net.n_visible)]
    hidden_ids = [f"hidden-{k}" for k in range(net.n_hidden)]
    truth = Connectivity(
        weights=net.weight.detach().double().numpy(),
        basis_matrix=net.basis_matrix.double().numpy(),
        bias=net.bias.detach().double().numpy(),
        labels=unit_ids + hidden_ids,
        visible=np.arange(net.n_neurons) < net.n_visible,
        metadata={
            "basis": net.basis.to_dict(),
            "link": net.link_name,
            "bin_size": bin_size,
            **(metadata or {}),
        },
    )

    def visible(trials: slice) -> SpikeCounts:
        return SpikeCounts.from_array(
            counts[trials, :, : net.n_visible], bin_size=bin_size, unit_ids=unit_ids
        )

    def hidden(trials: slice) -> SpikeCounts | None:
        if not hidden_ids:
            return None
        hidden_counts = counts[trials, :, net.n_visible :]
        return SpikeCounts.from_array(hidden_counts, bin_size=bin_size, unit_ids=hidden_ids)

    train, test = slice(None, n_train), slice(n_train, None)
    return Simulation(truth, visible(train), visible(test), hidden(train), hidden(test))


def gain(weight: np.ndarray, basis_matrix: np.ndarray, rate: np.ndarray, link: str = "softplus") -> float:
    """The gain of a network's rate dynamics linearised at the given rates: below 1, they are stable.

    The spectral radius of ``diag(slope) @ S``, where ``S[n, m]`` is the coupling filter from ``m`` to
    ``n`` summed over its lags and ``slope[n]`` the link's slope where it gives ``rate[n]``: how much a
    small change of every rate comes back, amplified or not, through the couplings.

    Parameters
    ----------
    weight : numpy.ndarray
        Couplings ``W[post, pre, basis]``, shape (N, N, n_basis).
    basis_matrix : numpy.ndarray
        The basis over the lags, shape (n_basis, L).
    rate : numpy.ndarray
        Expected count per bin of each neuron, shape (N,).
    link : str
        The link function (a name of :data:`spikeglm.model.LINKS`).

    Returns
    -------
    float
    """
    predictor = inverse_link(link, torch.as_tensor(rate, dtype=torch.float64)).requires_grad_()
    (slope,) = torch.autograd.grad(LINKS[link](predictor).sum(), predictor)
    summed = np.asarray(weight, dtype=float) @ np.asarray(basis_matrix, dtype=float).sum(axis=1)
    return float(np.abs(np.linalg.eigvals(slope.numpy()[:, None] * summed)).max())


def bias_for_rates(weight: np.ndarray, basis_matrix: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Biases that give each neuron of a softplus network the mean count per bin ``rate``.

    If every neuron fires as an independent Poisson process at its rate, the couplings raise the mean of
    ``exp(predictor)`` by ``sum_{m, l} rate[m] * (exp(F[n, m, l]) - 1)`` (the Poisson moment
    generating function, ``F`` the coupling filters over the lags); at low rates softplus is close to
    the exponential, so the bias is the inverse link of the rate less that amount. Simulation meets the
    targets to within a few percent at the ``"balanced"`` settings (``benchmarks/ground_truth.py``).

    Parameters
    ----------
    weight, basis_matrix, rate : numpy.ndarray
        As for :func:`gain`.

    Returns
    -------
    numpy.ndarray
        Shape (N,).
    """
    weight, basis_matrix = np.asarray(weight, dtype=float), np.asarray(basis_matrix, dtype=float)
    filters = (weight @ basis_matrix[:, lag] for lag in range(basis_matrix.shape[1]))
    drive = sum(np.expm1(f) @ rate for f in filters)
    return inverse_link("softplus", torch.as_tensor(rate, dtype=torch.float64)).numpy() - drive


#: N x N float64 arrays that drawing a network holds at once (its weights and their filters, the stability
#: check's matrix and its eigenvalues, and their copies).
_NETWORK_MATRICES = 8


def _check_memory(settings: dict[str, Any]) -> None:
    """Refuse a network or recording too large for the memory available, before anything is drawn."""
    n = settings["n_visible"] + settings["n_hidden"]
    n_counts = (settings["n_train"] + settings["n_test"]) * settings["n_bins"] * n
    need = _NETWORK_MATRICES * 8.0 * n * n + 4.0 * n_counts
    available = available_memory()
    if need > available:
        raise ValueError(
            f"n_visible={settings['n_visible']}, n_hidden={settings['n_hidden']}: the network and its "
            f"counts would take about {format_bytes(need)}, more than the {format_bytes(available)} "
            "available; simulate fewer neurons (--visible, --hidden) or a shorter recording"
        )


def _with_parameters(net: Network, weight: np.ndarray, bias: np.ndarray) -> Network:
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(weight))
        net.bias.copy_(torch.from_numpy(bias))
    return net


def _diffpoglm(settings: dict, rng: np.random.Generator) -> tuple[Network, dict]:
    n = settings["n_visible"] + settings["n_hidden"]
    basis = basis_module.Exponential(window=5, decay=0.25)
    net = Network(settings["n_visible"], settings["n_hidden"], basis, link="sigmoid")
    weight = rng.uniform(-2, 2, size=(n, n, 1))
    bias = rng.uniform(-0.5, 0.5, size=n)
    return _with_parameters(net, weight, bias), {}


def _sparse_ei(settings: dict, rng: np.random.Generator) -> tuple[Network, dict]:
    n_visible, n_hidden = settings["n_visible"], settings["n_hidden"]
    n = n_visible + n_hidden
    basis = basis_module.Exponential(window=5, decay=0.25)
    net = Network(n_visible, n_hidden, basis, link="softplus")
    # Dale's law: a presynaptic neuron's outgoing weights share its sign; 80% excitatory.
    sign = np.where(rng.random(n) < 0.8, 1.0, -1.0)
    strength = np.where(sign > 0, rng.uniform(0.5, 1.5, (n, n)), rng.uniform(1.0, 2.5, (n, n)))
    present = rng.random((n, n)) < settings["connection_prob"]
    # Each hidden neuron drives half of the visible neurons: the common input a POGLM should find.
    present[:n_visible, n_visible:] = rng.random((n_visible, n_hidden)) < HIDDEN_SHARE
    weight = present * strength * sign[None, :]
    weight[:n_visible, n_visible:] *= hidden_drive(settings["hidden_drive"])
    np.fill_diagonal(weight, -rng.uniform(1.0, 2.0, n))  # refractoriness
    base = float(np.log(np.expm1(settings["base_rate"])))  # softplus^-1 of the base rate per bin
    bias = base + rng.normal(0.0, 0.2, n)
    return _with_parameters(net, weight[..., None], bias), {}


def _balanced(settings: dict, rng: np.random.Generator) -> tuple[Network, dict]:
    n_visible = whole(settings["n_visible"], "n_visible")
    n_hidden = whole(settings["n_hidden"], "n_hidden", minimum=0)
    n = n_visible + n_hidden
    connection_prob = _number(settings["connection_prob"], "connection_prob", 0, 1, low_open=True)
    inhibitory = _number(settings["inhibitory_fraction"], "inhibitory_fraction", 0, 1, high_open=True)
    ratio = _number(settings["inhibition_ratio"], "inhibition_ratio", 0)
    coupling = _number(settings["coupling"], "coupling", 0)
    margin = _number(settings["margin"], "margin", 0, 1, high_open=True)
    if coupling > 0 and not ratio * inhibitory > 1 - inhibitory:
        raise UnstableNetwork(
            f"balanced: inhibition must dominate, but inhibition_ratio x inhibitory_fraction = "
            f"{ratio * inhibitory:.3g} is not above the excitatory share {1 - inhibitory:.3g}; raise "
            "inhibition_ratio",
            "inhibition_ratio",
        )
    bin_seconds = seconds(settings["bin_size"], "bin_size")
    target_hz = _target_rates(settings["rate"], n, rng)
    rate = target_hz * bin_seconds
    # Dale's law, with exactly the asked share of inhibitory neurons; couplings scale with 1 / sqrt(K).
    sign = np.ones(n)
    sign[rng.permutation(n)[: round(inhibitory * n)]] = -1.0
    in_degree = max(connection_prob * (n - 1), 1.0)
    strength = (
        rng.uniform(0.5, 1.5, (n, n)) * np.where(sign > 0, 1.0, ratio) * coupling / math.sqrt(in_degree)
    )
    weight = (rng.random((n, n)) < connection_prob) * strength * sign
    drive = hidden_drive(settings["hidden_drive"])
    driven = rng.random((n_visible, n_hidden)) < HIDDEN_SHARE
    weight[:n_visible, n_visible:] = (
        driven * rng.uniform(0.5, 1.5, (n_visible, n_hidden)) * drive * sign[n_visible:]
    )
    np.fill_diagonal(weight, -rng.uniform(1.0, 2.0, n))  # refractoriness
    weight = weight[..., None]
    basis = basis_module.Exponential(window=5, decay=0.25)
    basis_matrix = basis.matrix().double().numpy()
    unscaled = gain(weight, basis_matrix, rate)
    factor = 1.0
    if unscaled >= 1 - margin:
        if not settings["rescale"]:
            recurrent = weight.copy()
            recurrent[:n_visible, n_visible:] = 0.0
            setting = "hidden_drive" if gain(recurrent, basis_matrix, rate) < 1 - margin else "coupling"
            raise UnstableNetwork(
                f"balanced: unstable network (gain of the linearised rate dynamics {unscaled:.3g}, not below "
                f"1 - margin = {1 - margin:.3g}); lower {setting} (now {settings[setting]!r}) or pass "
                "rescale=True",
                setting,
            )
        factor = (1 - margin) / unscaled
        weight = weight * factor
        warnings.warn(
            f"balanced: every coupling scaled by {factor:.3g} to bring the gain from {unscaled:.3g} to "
            f"{1 - margin:.3g}",
            stacklevel=3,
        )
    net = Network(n_visible, n_hidden, basis, link="softplus")
    bias = bias_for_rates(weight, basis_matrix, rate)
    found = {"target_rate_hz": target_hz, "gain": unscaled * factor, "coupling_factor": factor}
    return _with_parameters(net, weight, bias), found


def _number(
    value: object,
    name: str,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float if it is a number in the range from ``low`` to ``high`` (ends open as told)."""
    number = float(value) if isinstance(value, Real) and not isinstance(value, bool) else math.nan
    if not (low < number if low_open else low <= number) or not (
        number < high if high_open else number <= high
    ):
        interval = (
            f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
        )
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return number


def _target_rates(value: object, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each neuron's target rate in Hz: ``value`` for all, or drawn log-uniformly from a (low, high) pair."""
    if isinstance(value, Real) and not isinstance(value, bool):
        low = high = _number(value, "rate", 0, low_open=True)
    elif isinstance(value, list | tuple) and len(value) == 2:
        low, high = (_number(v, "rate", 0, low_open=True) for v in value)
        if low > high:
            raise ValueError(f"rate: the low end {low:g} Hz exceeds the high end {high:g} Hz")
    else:
        raise ValueError(f"rate must be a rate in Hz or a (low, high) pair; got {value!r}")
    return low * (high / low) ** rng.random(n)


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as JSON values: numbers, strings, booleans and lists stay, anything else is written out."""
    plain = (Real, str, bool, list, tuple, type(None))
    return {key: value if isinstance(value, plain) else str(value) for key, value in settings.items()}


#: The share of the visible neurons that each hidden neuron drives (sparse-ei and balanced).
HIDDEN_SHARE = 0.5

#: Named strengths of ``hidden_drive``: factors on the hidden-to-visible couplings (sparse-ei), or their
#: size (balanced).
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
        "balanced": (
            _balanced,
            dict(
                n_visible=30,
                n_hidden=2,
                n_bins=2000,
                n_train=40,
                n_test=20,
                bin_size="5 ms",
                connection_prob=0.1,
                inhibitory_fraction=0.2,
                inhibition_ratio=5.0,
                coupling=1.0,
                rate=(2.0, 10.0),
                hidden_drive="moderate",
                margin=0.1,
                rescale=False,
            ),
        ),
    },
)
