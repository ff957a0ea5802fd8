"""``spikeglm demo``: the whole pipeline on the bundled example recording."""

from __future__ import annotations

from pathlib import Path

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.infer import hidden_arrays, write_npz
from spikeglm.cli.options import check_output, output_options
from spikeglm.cli.progress import progress_line

#: The bundled example recording that ``spikeglm demo`` fits (installed with the library from its folder
#: spikeglm/data/, see spikeglm.examples).
EXAMPLE = sg.examples.path("example.nwb")


@main.command()
@output_options(
    "Folder for the results (model.h5, hidden.npz, connectivity.csv, fit.png).",
    "Replace the results of an earlier demo in OUTPUT.",
    folder="results/demo",
)
@click.option(
    "--epochs", default=300, show_default=True, type=click.IntRange(min=1), help="Most training epochs."
)
def demo(output: str, epochs: int, overwrite: bool) -> None:
    """Run the whole pipeline on the bundled example recording.

    The bundled example.nwb holds 10 recorded units of a simulated network with 2 hidden neurons (80
    trials of 1 s). The demo fits a POGLM with 2 hidden neurons on 60 trials, scores it on the other 20
    beside the true network, and writes the model, the inferred hidden rates, the connectivity and a
    figure.

    Example: spikeglm demo -o /tmp/demo
    """
    from spikeglm import plot as plots

    truth_file, hidden_file = sg.examples.path("example_truth.json"), sg.examples.path("example_hidden.npz")
    for bundled in (EXAMPLE, truth_file, hidden_file):
        if not bundled.exists():
            raise click.ClickException(
                f"{bundled}: the bundled example is missing (reinstall spikeglm; in a source checkout, "
                "run python scripts/make_example.py)"
            )
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise click.ClickException(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    inputs = (EXAMPLE, truth_file, hidden_file)
    names = ("model.h5", "hidden.npz", "connectivity.csv", "fit.png")
    outputs = {name: check_output(str(folder / name), overwrite, inputs) for name in names}
    counts = sg.load(EXAMPLE).bin("5 ms")
    truth = sg.Connectivity.load(truth_file)
    train, test = counts.select_trials(slice(0, 60)), counts.select_trials(slice(60, None))
    click.echo(
        f"{EXAMPLE}: {train.n_trials} training and {test.n_trials} test trials, {counts.n_units} units"
    )
    model = sg.POGLM(n_hidden=truth.n_hidden, epochs=epochs, seed=0)
    model.fit(train, callback=progress_line(model))
    click.echo(f"fit: {model.stopped_}")
    click.echo(
        "scoring the true network for comparison: its network is kept fixed while a posterior of its "
        f"hidden neurons is trained (up to {epochs} epochs, about as long as the fit above) ..."
    )
    oracle = sg.POGLM.from_connectivity(truth, epochs=epochs, seed=0).fit(train)
    click.echo("scoring both on the test trials ...")
    scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
    click.echo(
        f"test log-likelihood per neuron-bin: {model.score(test):.4f} "
        f"(true network: {oracle.score(test):.4f})\n"
        f"connectivity: AUROC {scores['auroc']:.3f}, MCC {scores['mcc']:.3f}, "
        f"visible-block MAE {scores['mae_visible']:.3f}, sign accuracy {scores['sign_accuracy']:.3f}"
    )
    model.save(outputs["model.h5"], overwrite=overwrite)
    hidden = hidden_arrays(model, counts, {"model": str(outputs["model.h5"]), "recording": str(EXAMPLE)})
    write_npz(outputs["hidden.npz"], hidden, overwrite, inputs)
    model.connectivity().save(outputs["connectivity.csv"], overwrite=overwrite)
    true_spikes = sg.examples.hidden_counts(test)
    figure = plots.summary(model, test, truth=truth, truth_spikes=true_spikes)
    plots.save_figure(figure, outputs["fit.png"], overwrite=overwrite)
    click.echo("results:\n" + "\n".join(f"  {path}" for path in outputs.values()))
