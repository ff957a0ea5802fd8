"""``spikeglm export``: the fitted connectivity, or tests of its couplings, in a file."""

from __future__ import annotations

from pathlib import Path

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.covariates import read_covariates, recorded_specs
from spikeglm.cli.options import DATA_READING, READ_LIMIT, SUBJECT, check_output, output_options, units_like


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@output_options("File by extension: .csv, .npz, .h5, .graphml, .json or .nwb.")
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
    "significant edges with those fields; .json every field plus the edges; .nwb the couplings table with "
    "those fields.",
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
    help="The recording the model was fitted to, read and binned as for the fit: for --test jitter "
    "(another recording is refused) and, in an .nwb output, its hidden rates.",
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
@SUBJECT
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
    subject: dict[str, str],
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

    NWB (.nwb; pip install "spikeglm[nwb]") is a new file whose processing module "spikeglm" holds the
    couplings as a table (with the tests at --alpha, or the Wald tests at 0.05 where the model has
    standard errors, the test's settings in its description) and the model's settings; with
    --recording (read as for the fit, never written to), also the hidden rates in Hz and the latent
    factors' paths on the recording's clock, with its session start time and subject. See
    spikeglm.nwb_results.

    Example: spikeglm export model.h5 -o connectivity.csv

    Example: spikeglm export model.h5 -o edges.csv --alpha 0.05

    Example: spikeglm export model.h5 -o edges.csv --alpha 0.05 --test jitter --recording rec.nwb

    Example: spikeglm export model.h5 -o results.nwb --alpha 0.05 --recording rec.nwb

    Example: spikeglm export model.h5 -o results.nwb --subject subject_id=m12 --subject species='Mus musculus'
    --subject sex=F --subject age=P90D
    """
    inputs = (model,) if recording is None else (model, recording)
    out = check_output(output, overwrite, inputs)
    suffix = out.suffix.lower()
    _refuse_choices(suffix, threshold, self_loops, alpha, method, recording, subject)
    fitted = sg.POGLM.load(model)
    conn = fitted.connectivity()
    units = None
    if recording is not None and (method == "jitter" or suffix == ".nwb"):
        units = units_like(fitted, recording, _fit_reading(fitted, model, read_limit))
    counts = None if units is None else fitted.bin_like(units)
    tests = None
    if alpha is not None:
        options = {}
        if method == "jitter":
            assert counts is not None and recording is not None  # refused above without --recording
            options = {"counts": counts, "n_jitter": n_jitter, "jitter": jitter_bins, "pvalue": pvalue}
            options["seed"] = seed
            if fitted.n_latent or fitted.covariates_:
                covariates = read_covariates(recording, recorded_specs(fitted))
                options["drive"] = fitted.known_drive(counts, covariates)
        tests = conn.test_couplings(alpha, method, **options)
    if suffix == ".nwb":
        _save_nwb(out, fitted, counts, units, tests, overwrite, inputs, subject)
    else:
        conn.save(out, overwrite=overwrite, threshold=threshold, self_loops=self_loops, tests=tests)
    if tests is None:
        click.echo(f"connectivity of {conn.n_neurons} neurons ({conn.n_hidden} hidden): {out}")
        return
    pairs = tests[0][~tests[0]["self"]]
    click.echo(
        f"{int(pairs['significant'].sum())} of {len(pairs)} couplings significant at q < {alpha:g} "
        f"({int((pairs['sign'] > 0).sum())} excitatory, {int((pairs['sign'] < 0).sum())} inhibitory): {out}"
    )


def _save_nwb(
    out: Path,
    fitted: sg.POGLM,
    counts: sg.SpikeCounts | None,
    units: sg.Recording | None,
    tests: tuple | None,
    overwrite: bool,
    inputs: tuple[str, ...],
    subject: dict[str, str],
) -> None:
    """The results in a new NWB file, with the recording's session (where one was read) and the files
    used (the model, and the recording where given) named."""
    sg.nwb_results.save_results(
        out,
        fitted,
        counts,
        tests=tests,
        overwrite=overwrite,
        inputs=inputs,
        session=None if units is None else units.annotations,
        sources=dict(zip(("model", "recording"), inputs, strict=False)),
        subject=subject,
    )


def _refuse_choices(
    suffix: str,
    threshold: float | None,
    self_loops: bool,
    alpha: float | None,
    method: str,
    recording: str | None,
    subject: dict[str, str],
) -> None:
    """Refuse options that do not go together or with the output's format, before any work."""
    if subject and suffix != ".nwb":
        raise click.BadParameter("applies to .nwb outputs only", param_hint="--subject")
    if self_loops and suffix != ".graphml":
        raise click.BadParameter("applies to .graphml exports only", param_hint="--self-loops")
    if threshold is not None and suffix == ".nwb":
        raise click.BadParameter("applies to .graphml exports only", param_hint="--threshold")
    if method == "jitter" and (alpha is None or recording is None):
        raise click.UsageError("--test jitter needs --alpha and --recording")
    if alpha is not None and (threshold is not None or suffix not in (".csv", ".graphml", ".json", ".nwb")):
        # refused before the tests run, which may take minutes
        raise click.UsageError(
            "--alpha applies to .csv, .graphml, .json and .nwb outputs without --threshold"
        )


def _fit_reading(fitted: sg.POGLM, model: str, read_limit: str | None) -> dict:
    """The reading options that the fit of ``fitted`` (loaded from ``model``) read its recording with,
    and ``read_limit`` where given."""
    reading = dict((fitted.fitted_on_ or {}).get("reading") or {})
    unknown = sorted(set(reading) - set(DATA_READING))
    if unknown:
        raise ValueError(
            f"{model}: records the reading option(s) {', '.join(unknown)}, unknown to this spikeglm"
        )
    if read_limit is not None:
        reading["read_limit"] = read_limit
    return reading
