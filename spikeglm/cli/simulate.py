"""``spikeglm simulate``: a recording of a simulated network with hidden neurons, and its truth."""

from __future__ import annotations

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.options import check_output, output_options


@main.command()
@output_options("Recording file: .nwb, .nix, .npz or .csv.", "Replace existing outputs.")
@click.option(
    "--protocol",
    default="sparse-ei",
    show_default=True,
    type=click.Choice(sg.synthetic.PROTOCOLS.names(), case_sensitive=False),
    help="Generator of the network: diffpoglm (the published benchmark: 3 visible, 2 hidden, sigmoid "
    "link) or sparse-ei (sparse excitatory and inhibitory couplings, softplus link).",
)
@click.option(
    "--visible", default=None, type=int, help="Number of recorded neurons (default: the protocol's)."
)
@click.option("--hidden", default=None, type=int, help="Number of hidden neurons (default: the protocol's).")
@click.option("--trials", default=40, show_default=True, help="Number of trials written.")
@click.option("--bins", default=None, type=int, help="Bins per trial (default: the protocol's).")
@click.option("--seed", default=0, show_default=True, help="Seed of the network and of the spikes.")
def simulate(
    output: str,
    protocol: str,
    visible: int | None,
    hidden: int | None,
    trials: int,
    bins: int | None,
    seed: int,
    overwrite: bool,
) -> None:
    """Simulate a network with hidden neurons; write its recorded units and the true connectivity.

    The truth goes beside OUTPUT as OUTPUT-STEM_truth.json.

    Example: spikeglm simulate -o sim.nwb --visible 20 --hidden 3 --trials 50
    """
    out = check_output(output, overwrite)
    truth_path = check_output(str(out.with_name(out.stem + "_truth.json")), overwrite)
    options = {"n_visible": visible, "n_hidden": hidden, "n_bins": bins, "n_train": trials, "n_test": 1}
    truth, counts, _ = sg.synthetic.network(
        protocol, seed=seed, **{k: v for k, v in options.items() if v is not None}
    )
    sg.save(sg.Recording.from_counts(counts, seed=seed), out, overwrite=overwrite)
    truth.save(truth_path, overwrite=overwrite)
    click.echo(f"recording ({counts.n_units} units, {counts.n_trials} trials): {out}\ntruth: {truth_path}")
