"""``spikeglm`` command line (click). Each command is a thin layer over the library."""

from __future__ import annotations

from pathlib import Path

import click

import spikeglm as sg


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sg.__version__, prog_name="spikeglm")
def main() -> None:
    """Fit partially observable GLMs (visible + hidden neurons) to spike trains."""


@main.command()
@click.option(
    "-o",
    "--out",
    default="results/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's outputs (its own files there are replaced).",
)
@click.option("--epochs", default=500, show_default=True, help="Training epochs.")
@click.option("--seed", default=0, show_default=True, help="Dataset and fit seed.")
def demo(out: str, epochs: int, seed: int) -> None:
    """Fit a POGLM with hidden neurons to a synthetic network and score it against the truth.

    Simulates the published benchmark network (3 visible + 2 hidden neurons, 40 training and 20 test
    trials of 100 bins), fits a POGLM with 2 hidden neurons by variational inference with the Eat-cubic
    relaxation, and reports the test log-likelihood beside the oracle (the true network) and the
    connectivity recovered. Writes the model, the connectivity and the inferred hidden rates to OUT.

    Example: spikeglm demo --epochs 200 -o /tmp/demo
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=seed)
    click.echo(
        f"data: {train.n_trials} training and {test.n_trials} test trials, {train.n_units} visible units"
    )
    model = sg.POGLM(n_hidden=truth.n_hidden, link="sigmoid").fit(
        train, epochs=epochs, seed=seed, progress=True
    )
    oracle = sg.POGLM.from_connectivity(truth).fit(train, epochs=epochs, seed=seed, freeze_network=True)
    fitted_ll, oracle_ll = model.score(test), oracle.score(test)
    scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
    click.echo(f"test log-likelihood per neuron-bin: {fitted_ll:.4f} (oracle, true network: {oracle_ll:.4f})")
    click.echo(
        f"coupling weights after matching hidden neurons: MAE {scores['mae']:.3f} "
        f"(visible block {scores['mae_visible']:.3f}), Pearson r {scores['pearson_r']:.3f}"
    )
    outputs = {
        "model": folder / "model.h5",
        "connectivity": folder / "connectivity.csv",
        "truth": folder / "truth.csv",
    }
    model.save(outputs["model"], overwrite=True)
    model.connectivity().save(outputs["connectivity"], overwrite=True)
    truth.save(outputs["truth"], overwrite=True)
    for name, path in outputs.items():
        click.echo(f"{name:>13}: {path}")
