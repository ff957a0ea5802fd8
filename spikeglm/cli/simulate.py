"""``spikeglm simulate``: a recording of a simulated network with hidden neurons, and its truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.infer import write_npz
from spikeglm.cli.options import check_output, output_options
from spikeglm.files import atomic_write


def _rate(context: click.Context, parameter: click.Parameter, value: str | None) -> float | tuple | None:
    """``--rate``: one rate in Hz, or a range ``LOW,HIGH``."""
    if value is None:
        return None
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a rate in Hz or a range LOW,HIGH") from None
    if len(numbers) > 2:
        raise click.BadParameter(f"{value!r}: one rate or a range LOW,HIGH")
    return numbers[0] if len(numbers) == 1 else numbers


def _strength(named: dict[str, float]) -> Callable[[click.Context, click.Parameter, str | None], object]:
    """The callback of a strength option (``--hidden-drive``, ``--shared-drive``): a name of ``named`` or
    a number."""

    def strength(context: click.Context, parameter: click.Parameter, value: str | None) -> str | float | None:
        if value is None or value in named:
            return value
        try:
            return float(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is neither a number nor one of {', '.join(named)}") from None

    return strength


@main.command()
@output_options("Recording file: .nwb, .nix, .npz or .csv.", "Replace existing outputs.")
@click.option(
    "--protocol",
    default="balanced",
    show_default=True,
    type=click.Choice(sg.synthetic.PROTOCOLS.names(), case_sensitive=False),
    help="Generator of the network: balanced (excitation and inhibition balanced at any size, checked "
    "for stability, rates set in Hz), diffpoglm (the published benchmark: 3 visible, 2 hidden, sigmoid "
    "link) or sparse-ei (the earlier sparse network, whose activity runs away beyond a few tens of "
    "neurons).",
)
@click.option(
    "--visible", type=click.IntRange(min=1), help="Number of recorded neurons (default: the protocol's)."
)
@click.option(
    "--hidden", type=click.IntRange(min=0), help="Number of hidden neurons (default: the protocol's)."
)
@click.option("--trials", type=click.IntRange(min=1), help="Number of trials written (default 40).")
@click.option(
    "--bins", type=click.IntRange(min=1), help="Bins per trial (default: the protocol's; balanced: 2000)."
)
@click.option(
    "--duration",
    metavar="TIME",
    help="Instead of --trials: the time to simulate, e.g. 1h or 30min, as trials of --bins bins.",
)
@click.option("--bin-size", metavar="TIME", help="Width of a bin (default 5ms).")
@click.option(
    "--connection-prob",
    type=click.FloatRange(0, 1, min_open=True),
    help="balanced, sparse-ei: probability of a coupling between two neurons (balanced: 0.1).",
)
@click.option(
    "--inhibitory-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    help="balanced: share of inhibitory neurons (0.2).",
)
@click.option(
    "--inhibition-ratio",
    type=click.FloatRange(min=0),
    help="balanced: how much stronger an inhibitory coupling is than an excitatory one (5); inhibition "
    "must dominate.",
)
@click.option(
    "--coupling",
    type=click.FloatRange(min=0),
    help="balanced: size of an excitatory coupling times the square root of a neuron's expected number "
    "of inputs (1).",
)
@click.option(
    "--rate",
    metavar="HZ",
    callback=_rate,
    help="balanced: target rate of every neuron in Hz, or a range LOW,HIGH from which each neuron's is "
    "drawn (2,10).",
)
@click.option(
    "--hidden-drive",
    metavar="STRENGTH",
    callback=_strength(sg.synthetic.HIDDEN_DRIVES),
    help="balanced, sparse-ei: how hard the hidden neurons drive the visible ones: weak, moderate (the "
    "default), strong or a number.",
)
@click.option(
    "--shared-drive",
    metavar="STRENGTH",
    callback=_strength(sg.synthetic.SHARED_DRIVES),
    help="balanced: a slow drive shared by every neuron (a brain state), its strength the standard "
    "deviation of its term in a neuron's linear predictor: weak (0.2), moderate (0.35), strong (0.5, "
    "which more than doubles the rates at its peaks) or a number; 0, the default, for none. Its path is "
    "written as OUTPUT-STEM_latent.npz.",
)
@click.option(
    "--drive-tau",
    metavar="TIME",
    help="balanced: time constant of the shared drive, e.g. 500ms or 2s (default 0.5 s).",
)
@click.option(
    "--drive-spectrum",
    type=click.Choice(sg.synthetic.DRIVE_SPECTRA),
    help="balanced: the shared drive's path: ar1 (the default; the model's own AR(1) prior) or pink "
    "(power in 1/f above the AR(1)'s corner frequency, 1 / (2 pi tau)).",
)
@click.option(
    "--stimulus",
    metavar="STRENGTH",
    callback=_strength(sg.synthetic.STIMULI),
    help="balanced: a known stimulus driving every neuron through a 100 ms kernel of its own, its strength "
    "the standard deviation of its term in a neuron's linear predictor: weak (0.2), moderate (0.35), strong "
    "(0.5) or a number; 0, the default, for none. It is written as OUTPUT-STEM_stimulus.csv (time, value), "
    "ready for spikeglm fit --covariate.",
)
@click.option(
    "--stimulus-tau",
    metavar="TIME",
    help="balanced: time constant of the stimulus (an AR(1) of unit variance), e.g. 20ms (the default).",
)
@click.option(
    "--rescale",
    is_flag=True,
    help="balanced: scale an unstable network's couplings down until it is stable (the factor is "
    "printed), instead of refusing it.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the network and of the spikes.")
def simulate(
    output: str,
    protocol: str,
    visible: int | None,
    hidden: int | None,
    trials: int | None,
    bins: int | None,
    duration: str | None,
    rescale: bool,
    seed: int,
    overwrite: bool,
    **settings: object,
) -> None:
    """Simulate a network with hidden neurons; write its recorded units, its truth and its hidden spikes.

    The truth goes beside OUTPUT as OUTPUT-STEM_truth.json (with the settings, the target rates and the
    stability gain), the hidden neurons' spikes as OUTPUT-STEM_hidden.npz, and with --shared-drive the
    drive's path as OUTPUT-STEM_latent.npz (read it with numpy.load: latent, the path in units of its
    standard deviation (trials, bins, 1); bin_times_s, the start of each bin on the recording's clock;
    bin_size_s; loading, each neuron's (neurons, 1), visible then hidden as named in units; tau_bins
    and spectrum). A network whose rate dynamics would not be stable is refused before anything is
    simulated, naming the option to lower (or rescaled, with --rescale).

    \b
    Example: spikeglm simulate -o sim.nwb --visible 300 --hidden 2 --duration 1h --rate 2,10
    Example: spikeglm simulate -o strong.nwb --visible 300 --hidden-drive strong --duration 10min
    Example: spikeglm simulate -o state.nwb --visible 50 --shared-drive strong --drive-tau 0.5s --duration 1h
    Example: spikeglm simulate -o stim.nwb --visible 30 --hidden 0 --stimulus strong --duration 20min
    then: spikeglm fit stim.nwb -o m.h5 --hidden 0 --covariate "stimulus=stim_stimulus.csv@lags"
    """
    if trials is not None and duration is not None:
        raise click.UsageError("give --trials or --duration, not both")
    defaults = sg.synthetic.defaults(protocol)
    options: dict[str, object] = {"n_visible": visible, "n_hidden": hidden, "n_bins": bins, "n_test": 1}
    options |= {name: value for name, value in settings.items() if value is not None}
    if rescale:
        options["rescale"] = True
    for name in options:
        if name not in defaults:
            raise click.BadParameter(f"not a setting of protocol {protocol}", param_hint=_option(name))
    options = {name: value for name, value in options.items() if value is not None}
    n_bins = defaults["n_bins"] if bins is None else bins
    if duration is None:
        options["n_train"] = 40 if trials is None else trials
    else:
        try:
            options["n_train"] = sg.synthetic.trials_in(
                duration, n_bins, str(options.get("bin_size", "5 ms"))
            )
        except ValueError as error:
            raise click.BadParameter(str(error).removeprefix("duration: "), param_hint="--duration") from None
    out = check_output(output, overwrite)
    truth_path, hidden_path, latent_path, stimulus_path = (
        check_output(str(out.with_name(out.stem + suffix)), overwrite)
        for suffix in ("_truth.json", "_hidden.npz", "_latent.npz", "_stimulus.csv")
    )
    try:
        simulation = sg.synthetic.network(protocol, seed=seed, **options)
    except sg.synthetic.UnstableNetwork as error:
        raise click.BadParameter(str(error), param_hint=_option(error.setting)) from None
    counts = simulation.train
    sg.save(sg.Recording.from_counts(counts, seed=seed), out, overwrite=overwrite)
    simulation.truth.save(truth_path, overwrite=overwrite)
    _write_truths(simulation, seed, (hidden_path, latent_path, stimulus_path), overwrite)
    gain = simulation.truth.metadata.get("gain")
    click.echo(
        f"recording ({counts.n_units} units, {counts.n_trials} trials of {counts.n_bins} bins): {out}\n"
        f"truth{'' if gain is None else f' (gain {gain:.2f})'}: {truth_path}"
        + ("" if simulation.hidden_train is None else f"\nhidden spikes: {hidden_path}")
        + ("" if simulation.latent_train is None else f"\nshared drive's path: {latent_path}")
        + ("" if simulation.stimulus_train is None else f"\nstimulus: {stimulus_path}")
    )


def _latent_arrays(simulation: sg.synthetic.Simulation) -> dict[str, np.ndarray]:
    """What ``simulate`` writes of the shared drive: its path in the recorded trials, on the recording's
    clock (trials end to end from 0 s, as :meth:`spikeglm.Recording.from_counts` lays them), and its
    loadings."""
    counts, latent = simulation.train, simulation.truth.metadata["latent"]
    bins = np.arange(counts.n_trials * counts.n_bins).reshape(counts.n_trials, counts.n_bins)
    return {
        "latent": np.asarray(simulation.latent_train, dtype=np.float32),
        "bin_times_s": bins * counts.bin_seconds,
        "bin_size_s": np.float64(counts.bin_seconds),
        "loading": np.asarray(latent["loading"], dtype=np.float64),
        "units": np.array(simulation.truth.labels),
        "tau_bins": np.asarray(latent["tau_bins"], dtype=np.float64),
        "spectrum": np.array(latent["spectrum"]),
    }


def _write_truths(
    simulation: sg.synthetic.Simulation, seed: int, paths: tuple[Path, Path, Path], overwrite: bool
) -> None:
    """What the simulation has of the hidden neurons' spikes, the shared drive's path and the stimulus,
    each to its path."""
    hidden_path, latent_path, stimulus_path = paths
    if simulation.hidden_train is not None:
        hidden_spikes = sg.Recording.from_counts(simulation.hidden_train, seed=seed + 1)
        sg.save(hidden_spikes, hidden_path, overwrite=overwrite)
    if simulation.latent_train is not None:
        write_npz(latent_path, _latent_arrays(simulation), overwrite)
    if simulation.stimulus_train is not None:
        _write_stimulus(stimulus_path, simulation.train, simulation.stimulus_train, overwrite)


def _write_stimulus(path: Path, counts: sg.SpikeCounts, stimulus: np.ndarray, overwrite: bool) -> None:
    """The stimulus as text, ``time,stimulus`` at the centre of every bin on the recording's clock (trials
    end to end from 0 s, as :meth:`spikeglm.Recording.from_counts` lays them), written atomically."""
    times = (np.arange(stimulus.size) + 0.5) * counts.bin_seconds
    rows = "".join(f"{t:.9g},{v:.7g}\n" for t, v in zip(times, stimulus.ravel(), strict=True))

    def write(temporary: Path) -> None:
        temporary.write_text("time,stimulus\n" + rows)

    atomic_write(path, write, overwrite=overwrite)


def _option(setting: str) -> str:
    """The command line option that sets a protocol's setting."""
    named = {"n_visible": "--visible", "n_hidden": "--hidden", "n_bins": "--bins", "n_train": "--trials"}
    return named.get(setting, "--" + setting.replace("_", "-"))
