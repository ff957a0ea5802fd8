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

Shared drive
------------
A ``"balanced"`` network may also receive a slow drive shared by all its neurons, hidden ones included:
one latent factor ``x[r, t]`` of unit variance (a brain state that raises every rate together) enters
neuron ``n``'s linear predictor as ``loading[n] * x[r, t]``, with ``loading[n] = shared_drive * U(0.5,
1.5)`` (:data:`SHARED_DRIVES` names strengths), so ``shared_drive`` is the standard deviation of the
drive's term on average. ``drive_spectrum`` chooses the path (:func:`drive_path`): ``"ar1"``, the model's
own :class:`~spikeglm.latent.AR1Prior` with time constant ``drive_tau``, or ``"pink"``, power in 1/f.
The biases still meet the target mean rates (the link averaged over the drive, :func:`bias_for_rates`),
and the stability check takes the rates at the drive's peak, :data:`DRIVE_PEAK` standard deviations
up. The truth network has ``n_latent=1``; the truth's metadata hold ``"latent"``
(:meth:`~spikeglm.model.Network.latent_record`: ``n_latent``; ``loading``, N x 1, visible then hidden;
``tau_bins``; and ``spectrum``) and the :class:`Simulation` the paths. Without a drive
(``shared_drive=0``, the default) networks and counts are those drawn before the drive existed.
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
from spikeglm.covariates import Covariate, Lags, kernel_metadata
from spikeglm.latent import AR1Prior
from spikeglm.memory import available_memory, format_bytes
from spikeglm.model import LINKS, MAX_SIMULATED_RATE, Network, RunawayActivity, inverse_link
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
    latent_train, latent_test : numpy.ndarray or None
        The paths of the latent factors (the shared drive) in the same trials, float32 (trials, bins, K),
        in units of their standard deviation. None for a network without factors.
    stimulus_train, stimulus_test : numpy.ndarray or None
        The known stimulus of the same trials (``"balanced"`` with ``stimulus``), float32 (trials, bins),
        of unit variance; :attr:`covariates_train` and :attr:`covariates_test` give it as the
        covariates a fit takes. None without a stimulus.
    """

    truth: Connectivity
    train: SpikeCounts
    test: SpikeCounts
    hidden_train: SpikeCounts | None
    hidden_test: SpikeCounts | None
    latent_train: np.ndarray | None = None
    latent_test: np.ndarray | None = None
    stimulus_train: np.ndarray | None = None
    stimulus_test: np.ndarray | None = None

    @property
    def covariates_train(self) -> list[Covariate]:
        """The stimulus of the training trials as the covariates of a fit (empty without a stimulus)."""
        return _stimulus_covariates(self.stimulus_train)

    @property
    def covariates_test(self) -> list[Covariate]:
        """The stimulus of the test trials as covariates (empty without a stimulus)."""
        return _stimulus_covariates(self.stimulus_test)

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
        ``coupling``, ``rate``, ``hidden_drive``, ``margin`` and ``rescale``, and the shared drive's
        ``shared_drive`` (its strength: a number >= 0 or a name of :data:`SHARED_DRIVES`; 0, the
        default, for none), ``drive_tau`` (its time constant: seconds, or a string such as ``"500
        ms"``; 0.5 s) and ``drive_spectrum`` (``"ar1"`` or ``"pink"``, see :func:`drive_path`). The
        other protocols accept the drive's settings only without a drive. Instead of ``n_train`` and
        ``n_test``, ``duration`` (e.g. ``"1 h"``) asks for the trials of ``n_bins`` bins that fill it,
        a fifth of them (:data:`TEST_SHARE`) held out.

    Returns
    -------
    Simulation
        Unpacks as ``truth, train, test``; also holds ``hidden_train`` and ``hidden_test``, and with a
        shared drive its paths ``latent_train`` and ``latent_test``.

    Raises
    ------
    ValueError
        For an unknown protocol or setting, or a setting out of its range (the message names it).
    UnstableNetwork
        For a ``"balanced"`` network that is not stable, unless ``rescale=True``.
    """
    generate, known = PROTOCOLS[protocol]
    options = _without_drive(PROTOCOLS.name(protocol), known, options)
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
    spectrum = found.get("latent", {}).get("spectrum", "ar1")
    try:
        return simulate(net, n_train, n_test, n_bins, settings["bin_size"], seed, metadata, spectrum)
    except RunawayActivity as error:
        if "gain" not in found:
            raise
        # The gain is that of small changes: strong couplings can still run away through the link's curvature.
        lower = "coupling, hidden_drive or shared_drive" if "latent" in found else "coupling or hidden_drive"
        raise UnstableNetwork(
            f"{metadata['protocol']}: {error.where} although the gain is {found['gain']:.3g}: couplings "
            f"this strong run away through the link's curvature; lower {lower}",
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
    spectrum: str = "ar1",
) -> Simulation:
    """Simulate a network and split its counts into train and test trials (see :func:`network`).

    ``metadata`` are added to the truth's (which name the basis, the link and the bin size). A network
    with latent factors is driven by paths that :func:`drive_path` draws with its prior's time constants
    and ``spectrum``, from a stream of their own: the spikes' draws are those of the same ``seed``
    without factors.
    """
    generator = torch.Generator().manual_seed(seed)
    path = None
    if net.latent_prior is not None:
        tau = net.latent_prior.tau.detach()
        path = drive_path(tau, spectrum, n_train + n_test, n_bins, _drive_generator(seed))
    stimulus, columns, kernels = _stimulus(
        net, (metadata or {}).get("stimulus"), n_train + n_test, n_bins, seed, bin_size
    )
    drawn = net.simulate(
        n_train + n_test, n_bins, generator=generator, dtype=torch.int16, latent=path, covariates=columns
    )
    counts = drawn.numpy()
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
            **({"covariates": kernels} if kernels else {}),
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

    def known(values: np.ndarray | None, trials: slice) -> np.ndarray | None:
        return None if values is None else values[trials]

    latent = None if path is None else path.numpy()
    train, test = slice(None, n_train), slice(n_train, None)
    return Simulation(
        truth, visible(train), visible(test), hidden(train), hidden(test), known(latent, train),
        known(latent, test), known(stimulus, train), known(stimulus, test),
    )  # fmt: skip


#: The stimulus of ``"balanced"`` networks: its name, and the kernel through which it drives each neuron.
STIMULUS_NAME, STIMULUS_KERNEL = "stimulus", Lags("100 ms", 4)


def _stimulus_covariates(values: np.ndarray | None) -> list[Covariate]:
    if values is None:
        return []
    return [Covariate.binned(STIMULUS_NAME, values, kernel=STIMULUS_KERNEL, source="synthetic")]


def _stimulus(
    net: Network, found: dict[str, Any] | None, n_trials: int, n_bins: int, seed: int, bin_size: str
) -> tuple[np.ndarray | None, torch.Tensor | None, list[dict[str, Any]]]:
    """A network's stimulus (trials, bins), its columns and the truth's record of its kernel (for the
    connectivity's metadata, as a fit's); None, None, [] for a network without one. The stimulus is an
    AR(1) path of unit variance from a stream of its own."""
    if net.covariate_weight is None or found is None:
        return None, None, []
    path = drive_path(found["tau_bins"], "ar1", n_trials, n_bins, _drive_generator(seed, 0x57))[..., 0]
    stimulus = path.numpy()
    bin_seconds = seconds(bin_size, "bin_size")
    columns = torch.from_numpy(
        STIMULUS_KERNEL.columns(stimulus.astype(np.float64), bin_seconds).astype(np.float32)
    )
    record = {
        "name": STIMULUS_NAME,
        "kind": "binned",
        "source": "synthetic",
        "kernel": STIMULUS_KERNEL.to_dict(),
        "scale": 1.0,
        "span": None,
        "n_features": net.n_covariates,
    }
    weight = net.covariate_weight.detach().double().numpy()
    return stimulus, columns, kernel_metadata([record], weight, bin_seconds)


def drive_path(
    tau_bins: float | torch.Tensor,
    spectrum: str,
    n_trials: int,
    n_bins: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Paths of a shared drive: stationary Gaussian factors of unit variance, float32 (n_trials, n_bins, K).

    Parameters
    ----------
    tau_bins : float or torch.Tensor
        The time constant of each of the ``K`` factors in bins (one number: ``K = 1``).
    spectrum : {"ar1", "pink"}
        ``"ar1"``: the model's own prior, :class:`~spikeglm.latent.AR1Prior`, drawn by its ``sample``
        (lag-1 autocorrelation ``exp(-1 / tau_bins)``; power flat below the corner frequency ``1 / (2 pi
        tau_bins)`` and falling as ``1 / f^2`` above it). ``"pink"``: power in ``1 / f`` from the corner
        ``f_c = max(1 / (2 pi tau_bins), 1 / n_bins)`` (the AR(1)'s corner, but not below one cycle per
        trial) up to the Nyquist frequency, one cycle per two bins, and flat below ``f_c``; see
        :func:`_pink`.
    n_trials, n_bins : int
        Trials (independent paths) and bins per trial.
    generator : torch.Generator, optional
        Source of the draws.

    Returns
    -------
    torch.Tensor
    """
    tau = torch.as_tensor(tau_bins, dtype=torch.float64).reshape(-1)
    if spectrum not in DRIVE_SPECTRA:
        raise ValueError(f"drive_spectrum: unknown spectrum {spectrum!r}; one of {', '.join(DRIVE_SPECTRA)}")
    if spectrum == "pink":
        return _pink(tau, n_trials, n_bins, generator).float()
    with torch.no_grad():
        return AR1Prior(tau.tolist()).float().sample((n_trials,), n_bins, generator=generator)


def _pink(
    tau_bins: torch.Tensor, n_trials: int, n_bins: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Pink paths (see :func:`drive_path`), float64: white noise shaped in the Fourier domain.

    Each path is drawn twice as long as a trial and its first half kept, so that its end, which the
    discrete transform joins to its start, is not part of the trial. Its Fourier coefficients are
    independent complex Gaussians whose variances follow the spectrum, scaled so that every bin's value
    is exactly N(0, 1).
    """
    length = 2 * n_bins
    frequency = torch.fft.rfftfreq(length, dtype=torch.float64)[:, None]  # cycles per bin, 0 .. 1/2
    corner = torch.clamp(1 / (2 * math.pi * tau_bins), min=1 / n_bins)
    power = 1 / torch.maximum(frequency, corner)  # (frequencies, K)
    # A coefficient's share in a bin's variance: the mean and the Nyquist term once, the others twice.
    share = torch.full_like(frequency, 2.0)
    share[0] = share[-1] = 1.0
    shape = (n_trials, *power.shape)
    real, imaginary = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(2))
    imaginary[:, 0] = imaginary[:, -1] = 0.0  # the mean and the Nyquist term are real
    coefficients = torch.complex(real, imaginary) * (power / share).sqrt()
    paths = torch.fft.irfft(coefficients, n=length, dim=1)[:, :n_bins]
    return paths * length / (share * power).sum(0).sqrt()


def _drive_generator(seed: int, stream: int = 0x5D) -> torch.Generator:
    """The source of a shared drive's paths (or, with another ``stream``, of a stimulus): a stream of its
    own, apart from the spikes' of ``seed``."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


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


def bias_for_rates(
    weight: np.ndarray, basis_matrix: np.ndarray, rate: np.ndarray, drive_sd: np.ndarray | None = None
) -> np.ndarray:
    """Biases that give each neuron of a softplus network the mean count per bin ``rate``.

    If every neuron fires as an independent Poisson process at its rate, the couplings raise the mean of
    ``exp(predictor)`` by ``sum_{m, l} rate[m] * (exp(F[n, m, l]) - 1)`` (the Poisson moment
    generating function, ``F`` the coupling filters over the lags); at low rates softplus is close to
    the exponential, so the bias is the inverse link of the rate less that amount. Simulation meets the
    targets to within a few percent at the ``"balanced"`` settings (``benchmarks/ground_truth.py``).

    Under a shared drive (``drive_sd``) the same holds at each level ``z`` of the drive, with the rates
    of that level: the biases are those whose link, averaged over the drive's Gaussian law, gives
    ``rate``, each level's coupling term computed from the rates the last round found at that level
    (:data:`_MEAN_FIELD_ROUNDS` rounds from the rates without the drive). An hour of the strong drive
    meets the targets to within 2% (``tests/test_synthetic_drive.py``).

    Parameters
    ----------
    weight, basis_matrix, rate : numpy.ndarray
        As for :func:`gain`.
    drive_sd : numpy.ndarray, optional
        Shape (N,): the standard deviation of the drive's term in each neuron's predictor.

    Returns
    -------
    numpy.ndarray
        Shape (N,).
    """
    weight, basis_matrix = np.asarray(weight, dtype=float), np.asarray(basis_matrix, dtype=float)
    filters = [np.expm1(weight @ basis_matrix[:, lag]) for lag in range(basis_matrix.shape[1])]
    if drive_sd is None:
        drive = sum(f @ rate for f in filters)
        return inverse_link("softplus", torch.as_tensor(rate, dtype=torch.float64)).numpy() - drive
    levels, weights = _drive_levels()
    shift = np.asarray(drive_sd, dtype=float)[:, None] * levels  # (N, levels)
    coupled, at_levels = sum(filters), np.repeat(np.asarray(rate, dtype=float)[:, None], len(levels), 1)
    for _ in range(_MEAN_FIELD_ROUNDS):
        offset = shift + coupled @ at_levels
        bias = _solve_mean(rate, offset, weights)
        # Far out, where the quadrature's weights are nil, rates may not settle: bounded, they do no harm.
        at_levels = np.minimum(_link(bias[:, None] + offset), MAX_SIMULATED_RATE)
    return bias


#: Gauss-Hermite nodes of the averages over a drive's Gaussian law: exact for polynomials of degree up to
#: 79, far more than a smooth link over a few standard deviations needs.
_QUADRATURE_NODES = 40

#: Rounds of :func:`bias_for_rates`' mean field under a drive: the last change of a rate is below 1e-15 at
#: the ``"balanced"`` settings.
_MEAN_FIELD_ROUNDS = 20


def _drive_levels() -> tuple[np.ndarray, np.ndarray]:
    """Levels of a drive of unit variance and their weights: a quadrature of the law N(0, 1)."""
    levels, weights = np.polynomial.hermite_e.hermegauss(_QUADRATURE_NODES)
    return levels, weights / math.sqrt(2 * math.pi)


def _link(predictor: np.ndarray, link: str = "softplus") -> np.ndarray:
    return LINKS[link](torch.as_tensor(predictor, dtype=torch.float64)).numpy()


def _solve_mean(
    rate: np.ndarray, offset: np.ndarray, weights: np.ndarray, link: str = "softplus"
) -> np.ndarray:
    """``eta`` (N,) such that ``sum_j weights[j] * link(eta + offset[:, j]) = rate``, by Newton's method.

    For a convex increasing link (softplus, exp) Newton's steps converge from any start once they pass
    the root; they start where the exponential link would meet the rate with the offsets' mean.
    """
    target, offsets = torch.as_tensor(rate, dtype=torch.float64), torch.as_tensor(offset, dtype=torch.float64)
    mass = torch.as_tensor(weights, dtype=torch.float64)
    eta = inverse_link(link, target) - offsets @ mass
    for _ in range(100):
        eta = eta.detach().requires_grad_()
        mean = LINKS[link](eta[:, None] + offsets) @ mass
        (slope,) = torch.autograd.grad(mean.sum(), eta)
        step = (mean.detach() - target) / slope
        eta = eta.detach() - step
        if not bool(step.abs().max() > 1e-12):
            break
    return eta.numpy()


def predictor_for_rates(rate: np.ndarray, sd: np.ndarray, link: str = "softplus") -> np.ndarray:
    """The predictor ``eta`` whose link gives the mean count ``rate`` under a Gaussian drive of sd ``sd``.

    Solves ``E[link(eta + sd * Z)] = rate`` with ``Z ~ N(0, 1)``, neuron by neuron, on a Gauss-Hermite
    quadrature of the expectation. A drive raises the mean of a convex link, so ``eta`` is below the
    inverse link of the rate; with ``sd = 0`` it is that inverse.

    Parameters
    ----------
    rate, sd : numpy.ndarray
        Shape (N,): the mean counts per bin and the drive's standard deviations.
    link : str
        The link function (a name of :data:`spikeglm.model.LINKS`).

    Returns
    -------
    numpy.ndarray
        Shape (N,), float64.
    """
    levels, weights = _drive_levels()
    return _solve_mean(rate, np.asarray(sd, dtype=float)[:, None] * levels, weights, link)


def _peak_rates(rate: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The rates of a softplus network whose mean rates are ``rate`` when a drive of sd ``sd`` stands
    :data:`DRIVE_PEAK` standard deviations up (its couplings aside: the inhibition that lowers the peak
    is left out, which errs on the side of caution)."""
    return _link(predictor_for_rates(rate, sd) + DRIVE_PEAK * np.asarray(sd))


#: N x N float64 arrays that drawing a network holds at once (its weights and their filters, the stability
#: check's matrix and its eigenvalues, and their copies).
_NETWORK_MATRICES = 8

#: Bytes per bin of a shared drive's path while it is drawn (a pink one: its float64 noise, complex
#: coefficients and transform of twice the bins) and kept (float32).
_PATH_BYTES = 64


def _check_memory(settings: dict[str, Any]) -> None:
    """Refuse a network or recording too large for the memory available, before anything is drawn."""
    n = settings["n_visible"] + settings["n_hidden"]
    n_bins = (settings["n_train"] + settings["n_test"]) * settings["n_bins"]
    n_paths = 0 if _drive(settings) is None else 1
    need = _NETWORK_MATRICES * 8.0 * n * n + 4.0 * n_bins * n + _PATH_BYTES * n_bins * n_paths
    available = available_memory()
    if need > available:
        raise ValueError(
            f"n_visible={settings['n_visible']}, n_hidden={settings['n_hidden']}: the network and its "
            f"counts would take about {format_bytes(need)}, more than the {format_bytes(available)} "
            "available; simulate fewer neurons (--visible, --hidden) or a shorter recording"
        )


def _with_parameters(
    net: Network,
    weight: np.ndarray,
    bias: np.ndarray,
    loading: np.ndarray | None = None,
    covariate_weight: np.ndarray | None = None,
) -> Network:
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(weight))
        net.bias.copy_(torch.from_numpy(bias))
        if net.loading is not None and loading is not None:
            net.loading.copy_(torch.from_numpy(loading))
        if net.covariate_weight is not None and covariate_weight is not None:
            net.covariate_weight.copy_(torch.from_numpy(covariate_weight))
    return net


@dataclass(frozen=True)
class _Stimulus:
    """A ``"balanced"`` network's stimulus: its time constant in bins, each neuron's weights of its
    columns (N, F) and the sd of its term in each neuron's predictor (N,)."""

    tau_bins: float
    weights: np.ndarray
    sd: np.ndarray


def _stimulus_weights(settings: dict, n: int, rng: np.random.Generator) -> _Stimulus | None:
    """The stimulus that ``settings`` ask for, or None. Each neuron's kernel has a random shape over
    :data:`STIMULUS_KERNEL`'s bumps, scaled so that its term in the predictor has sd ``stimulus`` times a
    gain drawn in [0.5, 1.5] (the stimulus is an AR(1) of unit variance)."""
    strength = _strength(settings["stimulus"], "stimulus", STIMULI)
    tau = settings["stimulus_tau"]
    if isinstance(tau, bool) or not seconds(tau, "stimulus_tau") > 0:
        raise ValueError(f"stimulus_tau must be a positive duration (seconds, or e.g. '20 ms'); got {tau!r}")
    if strength == 0:
        return None
    bin_seconds = seconds(settings["bin_size"], "bin_size")
    tau_bins = seconds(tau, "stimulus_tau") / bin_seconds
    functions = STIMULUS_KERNEL.functions(bin_seconds)[1]
    lags = np.arange(functions.shape[1])
    covariance = functions @ np.exp(-np.abs(lags[:, None] - lags[None]) / tau_bins) @ functions.T
    shape = rng.standard_normal((n, functions.shape[0]))
    sd = strength * rng.uniform(0.5, 1.5, n)
    unit = np.sqrt(np.einsum("nf,fg,ng->n", shape, covariance, shape))
    return _Stimulus(tau_bins, shape / unit[:, None] * sd[:, None], sd)


def _combined_sd(sd: np.ndarray | None, stimulus: _Stimulus | None) -> np.ndarray | None:
    """The sd of the shared drive's and the stimulus's terms in each predictor together, or None without
    either: what the biases and the stability check take as one Gaussian drive."""
    if stimulus is None:
        return sd
    return stimulus.sd if sd is None else np.sqrt(sd**2 + stimulus.sd**2)


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
    shared = _drive(settings)
    # Drawn after everything else, so that without a drive the network is the one drawn before it existed.
    sd = None if shared is None else shared.strength * rng.uniform(0.5, 1.5, n)
    stimulus = _stimulus_weights(settings, n, rng)  # and the stimulus after the drive
    known_sd = _combined_sd(sd, stimulus)
    basis = basis_module.Exponential(window=5, decay=0.25)
    basis_matrix = basis.matrix().double().numpy()
    weight, checked, factor = _stable(weight[..., None], basis_matrix, rate, known_sd, settings, margin)
    bias = bias_for_rates(weight, basis_matrix, rate, known_sd)
    found: dict[str, Any] = {"target_rate_hz": target_hz, "gain": checked, "coupling_factor": factor}
    plain = Network(n_visible, n_hidden, basis, link="softplus")
    return _known_inputs(plain, weight, bias, rate, found, shared, sd, stimulus)


#: The most that a drive may lower a bias below the inverse link of its rate: past it, the biases'
#: mean field has not settled (drives of several sd in the predictor), and the rates would miss their
#: targets by far.
_LOWEST_BIAS_SHIFT = 10.0


def _known_inputs(
    plain: Network,
    weight: np.ndarray,
    bias: np.ndarray,
    rate: np.ndarray,
    found: dict[str, Any],
    shared: _Drive | None,
    sd: np.ndarray | None,
    stimulus: _Stimulus | None,
) -> tuple[Network, dict[str, Any]]:
    """The ``"balanced"`` network with its parameters, its shared drive and its stimulus where asked (the
    size and basis of ``plain``), both recorded in ``found``."""
    free = inverse_link("softplus", torch.as_tensor(rate, dtype=torch.float64)).numpy()
    if not np.all(bias > free - _LOWEST_BIAS_SHIFT):
        asked = [name for name, on in (("shared_drive", shared), ("stimulus", stimulus)) if on is not None]
        raise UnstableNetwork(
            f"balanced: the drives are too strong for the biases to meet the target rates; lower "
            f"{' or '.join(asked)}",
            asked[0],
        )
    columns = 0 if stimulus is None else stimulus.weights.shape[1]
    if stimulus is not None:
        found["stimulus"] = {"tau_bins": stimulus.tau_bins, "kernel": STIMULUS_KERNEL.to_dict()}
    n_latent, tau = (0, 1.0) if shared is None else (1, shared.tau_bins)
    net = Network(plain.n_visible, plain.n_hidden, plain.basis, "softplus", n_latent, tau, columns)
    loading = None if sd is None else sd[:, None]
    _with_parameters(net, weight, bias, loading, None if stimulus is None else stimulus.weights)
    if shared is not None:  # the time constant as asked, not as the network's float32 parameter rounds it
        record = {**(net.latent_record() or {}), "tau_bins": [shared.tau_bins]}
        found["latent"] = {**record, "spectrum": shared.spectrum}
    return net, found


def _stable(
    weight: np.ndarray,
    basis_matrix: np.ndarray,
    rate: np.ndarray,
    sd: np.ndarray | None,
    settings: dict[str, Any],
    margin: float,
) -> tuple[np.ndarray, float, float]:
    """The couplings of a ``"balanced"`` network once its stability is checked, their gain and the factor
    they were scaled by (1 unless an unstable network is rescaled on request).

    The gain is taken at the mean rates ``rate``, or with a shared drive of sd ``sd`` at the rates of
    its peak (:data:`DRIVE_PEAK` sd up), where the couplings are the most amplified.

    Raises
    ------
    UnstableNetwork
        If the gain is not below ``1 - margin`` and ``settings["rescale"]`` is false.
    """
    peak = rate if sd is None else _peak_rates(rate, sd)
    unscaled = gain(weight, basis_matrix, peak)
    if unscaled < 1 - margin:
        return weight, unscaled, 1.0
    if not settings["rescale"]:
        n_visible = whole(settings["n_visible"], "n_visible")
        recurrent = weight.copy()
        recurrent[:n_visible, n_visible:] = 0.0
        if sd is not None and gain(weight, basis_matrix, rate) < 1 - margin:
            setting = "shared_drive"
        else:
            setting = "hidden_drive" if gain(recurrent, basis_matrix, peak) < 1 - margin else "coupling"
        where = "" if sd is None else " at the shared drive's peak"
        raise UnstableNetwork(
            f"balanced: unstable network (gain of the linearised rate dynamics{where} {unscaled:.3g}, not "
            f"below 1 - margin = {1 - margin:.3g}); lower {setting} (now {settings[setting]!r}) or pass "
            "rescale=True",
            setting,
        )
    factor = (1 - margin) / unscaled
    warnings.warn(
        f"balanced: every coupling scaled by {factor:.3g} to bring the gain from {unscaled:.3g} to "
        f"{1 - margin:.3g}",
        stacklevel=4,
    )
    return weight * factor, unscaled * factor, factor


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
    return _strength(value, "hidden_drive", HIDDEN_DRIVES)


#: Named strengths of ``shared_drive`` (``"balanced"``): the standard deviation of the drive's term in a
#: neuron's linear predictor, on average. At the drive's peaks (+2 sd) a neuron of average loading ``s``
#: fires ``exp(2 s - s^2 / 2)`` times its mean rate (at low rates, where softplus is the exponential):
#: 1.4 times (weak), 1.9 times (moderate), 2.4 times (strong), its loading's spread aside.
SHARED_DRIVES = {"weak": 0.2, "moderate": 0.35, "strong": 0.5}

#: Named strengths of ``stimulus`` (``"balanced"``): the standard deviation of the stimulus's term in a
#: neuron's linear predictor, on average.
STIMULI = {"weak": 0.2, "moderate": 0.35, "strong": 0.5}

#: The spectra of a shared drive's path (:func:`drive_path`).
DRIVE_SPECTRA = ("ar1", "pink")

#: Where the stability check of a network with a shared drive takes the rates: this many standard
#: deviations up the drive.
DRIVE_PEAK = 2.0

#: The shared drive's settings and defaults (of ``"balanced"``; other protocols accept them without drive).
DRIVE_DEFAULTS: dict[str, Any] = {"shared_drive": 0.0, "drive_tau": 0.5, "drive_spectrum": "ar1"}


def shared_drive(value: str | float) -> float:
    """The strength of a ``shared_drive`` setting: a name of :data:`SHARED_DRIVES` or a number >= 0."""
    return _strength(value, "shared_drive", SHARED_DRIVES)


def _strength(value: object, name: str, named: dict[str, float]) -> float:
    """A strength setting ``name``: one of the ``named`` strengths, or a finite number >= 0."""
    if isinstance(value, str):
        if value not in named:
            raise ValueError(f"{name}: unknown strength {value!r}; one of {', '.join(named)}")
        return named[value]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a number >= 0 or a strength name; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class _Drive:
    """A shared drive's settings, checked: its strength, time constant in bins and spectrum."""

    strength: float
    tau_bins: float
    spectrum: str


def _drive(settings: dict[str, Any]) -> _Drive | None:
    """The shared drive that ``settings`` ask for (the defaults where they are silent), or None for none.

    Every drive setting is checked, even without a drive; a bad one is refused, naming it.
    """
    given = {**DRIVE_DEFAULTS, **settings}
    strength = shared_drive(given["shared_drive"])
    tau = given["drive_tau"]
    if isinstance(tau, bool) or not seconds(tau, "drive_tau") > 0:
        raise ValueError(f"drive_tau must be a positive duration (seconds, or e.g. '500 ms'); got {tau!r}")
    if given["drive_spectrum"] not in DRIVE_SPECTRA:
        raise ValueError(
            f"drive_spectrum: unknown spectrum {given['drive_spectrum']!r}; one of {', '.join(DRIVE_SPECTRA)}"
        )
    if strength == 0:
        return None
    tau_bins = seconds(tau, "drive_tau") / seconds(given["bin_size"], "bin_size")
    return _Drive(strength, tau_bins, given["drive_spectrum"])


def _without_drive(protocol: str, known: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options of a protocol without a shared drive (all but ``"balanced"``), less the drive's
    settings, which it accepts as long as they ask for no drive; the protocol's own options as given."""
    if "shared_drive" in known or not set(DRIVE_DEFAULTS) & set(options):
        return options
    if _drive({"bin_size": known["bin_size"], **options}) is not None:
        raise ValueError(
            f"{protocol}: no shared drive in this protocol (shared_drive={options['shared_drive']!r}); "
            "it is a setting of protocol balanced"
        )
    return {name: value for name, value in options.items() if name not in DRIVE_DEFAULTS}


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
                stimulus=0.0,
                stimulus_tau=0.02,
                **DRIVE_DEFAULTS,
            ),
        ),
    },
)
