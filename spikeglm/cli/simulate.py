"""``spikeglm simulate``: a recording of a simulated network with hidden neurons, and its truth."""

from __future__ import annotations

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.options import check_output, output_options


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


def _drive(context: click.Context, parameter: click.Parameter, value: str | None) -> str | float | None:
    """``--hidden-drive``: a strength's name or a number."""
    if value is None or value in sg.synthetic.HIDDEN_DRIVES:
        return value
    try:
        return float(value)
    except ValueError:
        names = ", ".join(sg.synthetic.HIDDEN_DRIVES)
        raise click.BadParameter(f"{value!r} is neither a number nor one of {names}") from None


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
    callback=_drive,
    help="balanced, sparse-ei: how hard the hidden neurons drive the visible ones: weak, moderate (the "
    "default), strong or a number.",
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
    stability gain), the hidden neurons' spikes as OUTPUT-STEM_hidden.npz. A network whose rate
    dynamics would not be stable is refused before anything is simulated, naming the option to lower
    (or rescaled, with --rescale).

    \b
    Example: spikeglm simulate -o sim.nwb --visible 300 --hidden 2 --duration 1h --rate 2,10
    Example: spikeglm simulate -o strong.nwb --visible 300 --hidden-drive strong --duration 10min
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
    truth_path = check_output(str(out.with_name(out.stem + "_truth.json")), overwrite)
    hidden_path = check_output(str(out.with_name(out.stem + "_hidden.npz")), overwrite)
    try:
        simulation = sg.synthetic.network(protocol, seed=seed, **options)
    except sg.synthetic.UnstableNetwork as error:
        raise click.BadParameter(str(error), param_hint=_option(error.setting)) from None
    counts = simulation.train
    sg.save(sg.Recording.from_counts(counts, seed=seed), out, overwrite=overwrite)
    simulation.truth.save(truth_path, overwrite=overwrite)
    if simulation.hidden_train is not None:
        hidden_spikes = sg.Recording.from_counts(simulation.hidden_train, seed=seed + 1)
        sg.save(hidden_spikes, hidden_path, overwrite=overwrite)
    gain = simulation.truth.metadata.get("gain")
    click.echo(
        f"recording ({counts.n_units} units, {counts.n_trials} trials of {counts.n_bins} bins): {out}\n"
        f"truth{'' if gain is None else f' (gain {gain:.2f})'}: {truth_path}"
        + ("" if simulation.hidden_train is None else f"\nhidden spikes: {hidden_path}")
    )


def _option(setting: str) -> str:
    """The command line option that sets a protocol's setting."""
    named = {"n_visible": "--visible", "n_hidden": "--hidden", "n_bins": "--bins", "n_train": "--trials"}
    return named.get(setting, "--" + setting.replace("_", "-"))
