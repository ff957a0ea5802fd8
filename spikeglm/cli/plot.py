"""``spikeglm plot``: a figure of a fitted model."""

from __future__ import annotations

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.covariates import read_covariates, recorded_specs
from spikeglm.cli.options import Reading, check_output, counts_like, output_options, reading_options


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@output_options(".png, .pdf or .svg")
@click.option("--recording", type=click.Path(exists=True), help="Recording for the raster and hidden rates.")
@click.option(
    "--truth", type=click.Path(exists=True, dir_okay=False), help="True connectivity (.json/.npz/.h5)."
)
@click.option(
    "--trial",
    default=None,
    type=click.IntRange(min=0),
    help="Trial shown in the raster, counting from 0, as the model cut the recording (its trials table, "
    "its --trial-length, or the whole recording as trial 0). Default: the busiest trial.",
)
@click.option(
    "--page",
    default=None,
    type=click.IntRange(min=0),
    help="Trials over 10 s (continuous recordings) are drawn 2 s at a time, on the recording's clock: "
    "the page shown, counting from 0 (page P covers 2P to 2P + 2 s of the trial). Default: the busiest.",
)
@reading_options
def plot(
    model: str,
    output: str,
    recording: str | None,
    truth: str | None,
    trial: int | None,
    page: int | None,
    overwrite: bool,
    reading: Reading,
) -> None:
    """Draw a fitted model: raster with inferred hidden rates, connectivity, training curve.

    Example: spikeglm plot model.h5 --recording spikeglm/data/example.nwb -o fit.png
    """
    from spikeglm import plot as plots

    out = check_output(output, overwrite, (model, recording, truth))
    fitted = sg.POGLM.load(model)
    counts = None if recording is None else counts_like(fitted, recording, reading.given())
    conn_truth = None if truth is None else sg.Connectivity.load(truth)
    known = None
    if counts is not None and recording is not None and fitted.covariates_ and fitted.n_latent:
        known = read_covariates(recording, recorded_specs(fitted))  # the factors' path is inferred with them
    figure = plots.summary(fitted, counts, trial=trial, truth=conn_truth, page=page, covariates=known)
    plots.save_figure(figure, out, overwrite=overwrite)
    click.echo(f"figure: {out}")
