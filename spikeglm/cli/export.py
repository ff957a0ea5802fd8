"""``spikeglm export``: the fitted connectivity, or tests of its couplings, in a file."""

from __future__ import annotations

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.covariates import read_covariates, recorded_specs
from spikeglm.cli.options import DATA_READING, READ_LIMIT, check_output, counts_like, output_options


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@output_options("File by extension: .csv, .npz, .h5, .graphml or .json.")
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(min=0),
    help="GraphML: keep the edges with |strength| above it (default: the significant ones where the model "
    "has standard errors, else those above a tenth of the largest |strength|; the file's metadata says "
    "which).",
)
@click.option(
    "--self-loops", is_flag=True, help="GraphML: also write each neuron's self-coupling as an edge."
)
@click.option(
    "--alpha",
    default=None,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Export tests of the couplings (fits without hidden neurons): .csv an edge list of pre, post, "
    "strength, se, z, p, q, significant (q < ALPHA, Benjamini-Hochberg), sign, self; .graphml the "
    "significant edges with those fields; .json every field plus the edges.",
)
@click.option(
    "--test",
    "method",
    default="wald",
    show_default=True,
    type=click.Choice(["wald", "jitter"]),
    help="With --alpha: Wald tests from the fit's standard errors, or spike-time jitter tests (need "
    "--recording).",
)
@click.option(
    "--recording",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="The recording the model was fitted to (--test jitter), read and binned as for the fit; another "
    "recording is refused.",
)
@click.option(
    "--n-jitter",
    default=sg.significance.N_JITTER,
    show_default=True,
    type=click.IntRange(2),
    help="--test jitter: jittered copies of each neuron's spikes.",
)
@click.option(
    "--jitter-bins",
    default=None,
    type=click.IntRange(1),
    help="--test jitter: half-width of the jitter intervals in bins [default: the history window].",
)
@click.option(
    "--p-values",
    "pvalue",
    default="normal",
    show_default=True,
    type=click.Choice(["normal", "empirical"]),
    help="--test jitter: p-values from a normal null fitted to the jittered couplings, or the share of "
    "jittered couplings at least as strong (exact, but none below 1/(N_JITTER + 1)).",
)
@click.option("--seed", default=0, show_default=True, help="--test jitter: seed of the jitter.")
@READ_LIMIT
def export(
    model: str,
    output: str,
    threshold: float | None,
    self_loops: bool,
    alpha: float | None,
    method: str,
    recording: str | None,
    n_jitter: int,
    jitter_bins: int | None,
    pvalue: str,
    seed: int,
    read_limit: str | None,
    overwrite: bool,
) -> None:
    """Export the fitted connectivity (weights, filters, strength, bias, labels), or tests of it.

    CSV holds the strength[post, pre] matrix with labels (hidden neurons are hidden-0, hidden-1, ...);
    NPZ, HDF5 and JSON hold every field and the metadata; GraphML a directed graph of the edges that
    pass --threshold or the test at --alpha (edge data: strength, signed, and weight = |strength|). With
    --alpha, the tests of each coupling (CSV: an edge list; GraphML: the significant edges; JSON: both).
    The jitter test reads --recording with the options the fit read its recording with (the model
    records them), and refuses a recording other than the fit's.

    Example: spikeglm export model.h5 -o connectivity.csv

    Example: spikeglm export model.h5 -o edges.csv --alpha 0.05

    Example: spikeglm export model.h5 -o edges.csv --alpha 0.05 --test jitter --recording rec.nwb
    """
    inputs = (model,) if recording is None else (model, recording)
    out = check_output(output, overwrite, inputs)
    if self_loops and out.suffix.lower() != ".graphml":
        raise click.BadParameter("applies to .graphml exports only", param_hint="--self-loops")
    if method == "jitter" and (alpha is None or recording is None):
        raise click.UsageError("--test jitter needs --alpha and --recording")
    if alpha is not None and (
        threshold is not None or out.suffix.lower() not in (".csv", ".graphml", ".json")
    ):
        # refused before the tests run, which may take minutes
        raise click.UsageError("--alpha applies to .csv, .graphml and .json outputs without --threshold")
    fitted = sg.POGLM.load(model)
    conn = fitted.connectivity()
    if alpha is None:
        conn.save(out, overwrite=overwrite, threshold=threshold, self_loops=self_loops)
        click.echo(f"connectivity of {conn.n_neurons} neurons ({conn.n_hidden} hidden): {out}")
        return
    options = {}
    if method == "jitter":
        assert recording is not None  # refused above without --recording
        reading = _fit_reading(fitted, model)
        if read_limit is not None:
            reading["read_limit"] = read_limit
        counts = counts_like(fitted, recording, reading)
        options = {"counts": counts, "n_jitter": n_jitter, "jitter": jitter_bins}
        options.update(pvalue=pvalue, seed=seed)
        if fitted.n_latent or fitted.covariates_:
            options["drive"] = fitted.known_drive(counts, read_covariates(recording, recorded_specs(fitted)))
    tests = conn.test_couplings(alpha, method, **options)
    conn.save(out, overwrite=overwrite, threshold=threshold, self_loops=self_loops, tests=tests)
    table = tests[0]
    pairs = table[~table["self"]]
    click.echo(
        f"{int(pairs['significant'].sum())} of {len(pairs)} couplings significant at q < {alpha:g} "
        f"({int((pairs['sign'] > 0).sum())} excitatory, {int((pairs['sign'] < 0).sum())} inhibitory): {out}"
    )


def _fit_reading(fitted: sg.POGLM, model: str) -> dict:
    """The reading options that the fit of ``fitted`` (loaded from ``model``) read its recording with."""
    reading = dict((fitted.fitted_on_ or {}).get("reading") or {})
    unknown = sorted(set(reading) - set(DATA_READING))
    if unknown:
        raise ValueError(
            f"{model}: records the reading option(s) {', '.join(unknown)}, unknown to this spikeglm"
        )
    return reading
