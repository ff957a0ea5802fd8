"""``spikeglm fit``: fit a POGLM to a recording, with checkpoints, and save the model."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click
import torch

import spikeglm as sg
from spikeglm import files
from spikeglm.cli.app import main
from spikeglm.cli.covariates import COVARIATE_HELP, CovariateSpec, CovariateType, read_covariates
from spikeglm.cli.options import (
    Reading,
    check_output,
    load_config,
    model_options,
    output_options,
    reading_options,
)
from spikeglm.cli.progress import progress_line
from spikeglm.modelfile import read_training_state


@main.command()
@click.argument("recording", type=click.Path())
@output_options("Model file (.h5).", "Replace an existing OUTPUT, or its checkpoint when not resuming.")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=load_config,
    is_eager=True,
    help="TOML file of option defaults (e.g. hidden = 3).",
)
@click.option("--bin-size", default="5 ms", show_default=True, help="Width of a count bin.")
@click.option(
    "--trial-length",
    default=None,
    help="Cut into trials of this length, each starting with no history (default: the recording's "
    "trials table, else the whole recording as one trial).",
)
@click.option(
    "--units",
    default=None,
    help='Unit ids to use, comma-separated, or a JSON list of exact ids (\'["a,b", " c"]\'); default: all.',
)
@click.option(
    "--empty-units",
    default="drop",
    show_default=True,
    type=click.Choice(["drop", "keep", "error"]),
    help="Units without spikes: drop them (with a warning), keep them, or refuse the file.",
)
@click.option("--covariate", "covariates", multiple=True, type=CovariateType(), help=COVARIATE_HELP)
@model_options
@reading_options
@click.pass_context
def fit(
    ctx: click.Context,
    recording: str,
    output: str,
    config: str | None,
    bin_size: str,
    trial_length: str | None,
    units: str | None,
    empty_units: str,
    covariates: tuple[CovariateSpec, ...],
    device: str,
    checkpoint_every: int,
    resume: bool,
    overwrite: bool,
    candidates: tuple[int, ...],
    latent_candidates: tuple[int, ...] | None,
    folds: int,
    jobs: int,
    bootstrap: int,
    reading: Reading,
    **settings,
) -> None:
    """Fit a POGLM with hidden neurons to a recording and save the model.

    A checkpoint (OUTPUT.ckpt.h5) is written every --checkpoint-every epochs and on Ctrl-C; run the
    same command with --resume to continue. Options may also come from a TOML file (--config).
    Launched by torchrun, the processes share each step's work (gloo on CPU, NCCL on GPU) and give the
    fit of one process; only the first writes files.

    Example: spikeglm fit spikeglm/data/example.nwb -o model.h5 --hidden 2 --epochs 300

    \b
    Example, a slow drive shared by the neurons (brain state), beside no hidden neuron:
    spikeglm fit spikeglm/data/example.nwb -o model.h5 --hidden 0 --latent 1

    \b
    Example, a large population: couplings penalised, whole filters set to zero, the strength chosen
    by cross-validation (--penalty ridge shrinks them instead, and keeps the Wald tests):
    spikeglm fit spikeglm/data/example.nwb -o model.h5 --hidden 0 --penalty group-lasso

    \b
    Example, the stimulus onsets of the trials table and the running speed as known inputs:
    spikeglm fit session.nwb -o model.h5 --hidden 0 --covariate "cue=trials.start_time@around(after=500 ms)"
    --covariate "speed=/acquisition/running_speed@spline(n_basis=6)"

    \b
    Example, two processes:
    torchrun --standalone --nproc-per-node 2 -m spikeglm fit long.nwb -o model.h5 --batch-size 64
    """
    auto = _check_choices(ctx, settings["n_hidden"], bootstrap)
    inputs = (recording, config)
    out = check_output(output, overwrite, inputs)
    # The library's rule for an existing checkpoint, checked before the recording is read.
    checkpoint = files.check_checkpoint(f"{out}.ckpt.h5", resume=resume, overwrite=overwrite, inputs=inputs)
    counts = _counts(recording, reading, bin_size, trial_length, _unit_list(units), empty_units)
    settings.update(
        n_hidden=0 if auto else settings["n_hidden"], tol=settings["tol"] or None
    )  # --tol 0: none
    model = sg.POGLM(**settings)  # by their names
    known, n_covariates = _covariates(recording, covariates, counts)
    model.check_fit(counts, n_covariates=n_covariates)  # before the checkpoint is claimed or anything printed
    candidates = sg.selection.check_candidates(counts, candidates, folds, model) if auto else ()
    with (
        sg.parallel.distributed(None if device == "auto" else device) as where,
        contextlib.ExitStack() as stack,
    ):
        rank = sg.parallel.rank()
        if rank == 0:
            stack.enter_context(_claim(checkpoint, resume, overwrite, inputs))
            _announce(recording, counts, where, checkpoint if resume else None, settings["epochs"])
        signals = stack.enter_context(_signals_as_interrupt())
        selection = None
        if auto:
            selection = _cross_validate(
                counts, candidates, latent_candidates, folds, jobs, model, rank == 0, where, known
            )
        try:
            _fit_model(
                model, counts, where, checkpoint, checkpoint_every, resume, overwrite, bootstrap, known
            )
        except KeyboardInterrupt:
            _interrupted(checkpoint, signals)
        if rank != 0:
            return
        _save(model, selection, covariates, out, overwrite)
        checkpoint.unlink(missing_ok=True)
    click.echo(f"model: {out} ({_summary(model)})")


def _covariates(
    recording: str, specs: tuple[CovariateSpec, ...], counts: sg.SpikeCounts
) -> tuple[list[sg.Covariate] | None, int]:
    """The ``--covariate`` options read beside the recording and checked against its counts (refused now,
    naming the covariate, rather than once the fit has begun), and the number of their columns."""
    known = read_covariates(recording, specs)
    if not known:
        return known, 0
    return known, sg.covariates.covariate_design(known, counts).n_features


def _claim(
    checkpoint: Path, resume: bool, overwrite: bool, inputs: tuple
) -> contextlib.AbstractContextManager:
    """The hold on the checkpoint, from before a choice of hidden neurons until the model is saved; the
    fit's own claim of it nests in this one."""
    return files.claim_checkpoint(checkpoint, resume=resume, overwrite=overwrite, inputs=inputs)


def _announce(
    recording: str, counts: sg.SpikeCounts, where: torch.device, resumed: Path | None, epochs: int
) -> None:
    """What is fitted where, and with ``--resume``, where the checkpoint ``resumed`` picks the fit up."""
    click.echo(f"{recording}: {_shape(counts)}; fitting on {where}{_processes()}")
    if resumed is not None:
        click.echo(_resuming(resumed, epochs))


def _save(
    model: sg.POGLM,
    selection: sg.records.Selection | None,
    specs: tuple[CovariateSpec, ...],
    out: Path,
    overwrite: bool,
) -> None:
    """Save the fitted model with the choice of hidden neurons, and the ``--covariate`` options as given,
    so that ``export`` and ``plot`` can read the covariates again beside the recording."""
    model.selection_ = selection
    if specs:
        model.fit_options_["covariate_options"] = [spec.text for spec in specs]
    model.save(out, overwrite=overwrite)


def _fit_model(
    model: sg.POGLM,
    counts: sg.SpikeCounts,
    where: torch.device,
    checkpoint: Path,
    checkpoint_every: int,
    resume: bool,
    overwrite: bool,
    bootstrap: int,
    covariates: list[sg.Covariate] | None,
) -> None:
    """The fit, with its progress line and checkpoints, and the bootstrap refits when asked."""
    model.fit(
        counts,
        covariates=covariates,
        device=where,
        callback=progress_line(model),
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        overwrite=overwrite,
    )
    if bootstrap:
        _bootstrap(model, counts, bootstrap, where, sg.parallel.is_main(), covariates)


def _summary(model: sg.POGLM) -> str:
    final, steps = model.history_[-1].objective, len(model.history_)
    return f"objective per neuron-bin {final:.4f} after {steps} steps; {model.stopped_}"


def _shape(counts: sg.SpikeCounts) -> str:
    return f"{counts.n_trials} trials x {counts.n_bins} bins x {counts.n_units} units"


def _processes() -> str:
    world = sg.parallel.world_size()
    return f" in {world} processes" if world > 1 else ""


def _check_choices(ctx: click.Context, n_hidden: object, bootstrap: int) -> bool:
    """Refuse ``--bootstrap 1`` and the options of a choice of hidden neurons without
    ``--hidden auto``; return whether the number of hidden neurons is to be chosen."""
    if bootstrap == 1:
        raise click.BadParameter("0 (none) or at least 2 refits", param_hint="--bootstrap")
    auto = n_hidden == "auto"
    if not auto:
        _refuse_selection_options(ctx)
    return auto


def _interrupted(checkpoint: Path, signals: list[int]) -> NoReturn:
    """Say where the fit so far is (the first process) and exit with 128 + the signal's number."""
    if sg.parallel.is_main():
        saved = f"the fit so far is in {checkpoint}; add --resume to continue"
        click.echo(f"\ninterrupted: {saved if checkpoint.exists() else 'nothing was written'}", err=True)
    sys.exit(128 + (signals[-1] if signals else signal.SIGINT))


def _bootstrap(
    model: sg.POGLM,
    counts: sg.SpikeCounts,
    n_boot: int,
    where: torch.device,
    report: bool,
    covariates: list[sg.Covariate] | None,
) -> None:
    """``--bootstrap``: the standard errors of the couplings from ``n_boot`` refits (each reported) on the
    device ``where``, the simulations driven by the fit's covariates."""

    def progress(index: int, seconds: float) -> None:
        if report:
            click.echo(f"  bootstrap refit {index + 1}/{n_boot}: {seconds:.1f} s")

    if report:
        click.echo(f"standard errors by parametric bootstrap ({n_boot} refits to simulated recordings):")
    sg.bootstrap_se(
        model, counts, n_boot=n_boot, callback=progress, device=where, covariates=covariates, progress=False
    )


def _resuming(checkpoint: Path, epochs: int) -> str:
    """Where ``--resume`` picks the fit up, for the user to see before it goes on."""
    state = read_training_state(checkpoint)
    if state is None:
        return f"--resume: no checkpoint {checkpoint} yet; starting from epoch 1"
    done, steps = state["epochs_done"], state["steps_done"]
    within = f" (and {steps} steps into epoch {done + 1})" if steps else ""
    return f"resuming {checkpoint}: {done} of at most {epochs} epochs done{within}; on at epoch {done + 1}"


def _refuse_selection_options(ctx: click.Context) -> None:
    """Refuse --candidates, --folds and --jobs given on the command line for a fit that does not choose."""
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("candidates", "latent_candidates", "folds", "jobs")
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    ]
    if given:
        verb, pronoun = ("applies", "it") if len(given) == 1 else ("apply", "them")
        raise click.ClickException(
            f"{' and '.join(given)} {verb} only with --hidden auto (cross-validation); add --hidden auto, "
            f"or leave {pronoun} out to fit --hidden {ctx.params['n_hidden']}"
        )


def _cross_validate(
    counts: sg.SpikeCounts,
    candidates: tuple[int, ...],
    latent: tuple[int, ...] | None,
    folds: int,
    jobs: int,
    model: sg.POGLM,
    report: bool,
    where: torch.device,
    covariates: list[sg.Covariate] | None,
) -> sg.records.Selection:
    """``--hidden auto``: score each candidate on held-out folds (printed as they come), then the table;
    ``model`` takes the chosen numbers of hidden neurons (and latent factors)."""

    def progress(candidate: int | tuple[int, int], fold: int, score: float) -> None:
        if report:
            named = (
                f"{candidate} hidden"
                if isinstance(candidate, int)
                else "{} hidden + {} latent".format(*candidate)
            )
            click.echo(f"  {named}, fold {fold + 1}/{folds}: held-out {score:.6f} per neuron-bin")

    if report:
        among = f"choosing the number of hidden neurons among {', '.join(map(str, candidates))}"
        factors = f" and of latent factors among {', '.join(map(str, latent))}" if latent else ""
        click.echo(f"{among}{factors}:")
    selection = sg.selection.cross_validate(
        counts,
        candidates,
        folds,
        model,
        callback=progress,
        device=where,
        latent=latent,
        covariates=covariates,
        progress=False,  # each fold's score is printed as it comes
        n_jobs=jobs,
    )
    if report:
        click.echo(str(selection))
    if selection.chosen_latent is not None:
        model.set_params(n_latent=selection.chosen_latent)
    model.set_params(n_hidden=selection.chosen)
    return selection


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM (schedulers, ``timeout``) stops a fit as Ctrl-C does, with a checkpoint.

    Yields the list of the signals received, for the exit status (128 + the signal's number).
    """
    received: list[int] = []

    def interrupt(number: int, _frame) -> None:
        received.append(number)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _unit_list(units: str | None) -> list[str] | None:
    """``--units``: ids separated by commas (spaces around them dropped), or a JSON list of exact ids."""
    if units is None:
        return None
    if units.lstrip().startswith("["):
        try:
            ids = json.loads(units)
        except json.JSONDecodeError as error:
            raise click.BadParameter(f"not a JSON list of unit ids ({error})", param_hint="--units") from None
        if not (isinstance(ids, list) and ids and all(isinstance(u, str | int) for u in ids)):
            raise click.BadParameter("a JSON list of unit ids (strings) is wanted", param_hint="--units")
        return [str(u) for u in ids]
    ids = [u.strip() for u in units.split(",")]
    if not all(ids):
        raise click.BadParameter(f"an empty unit id in {units!r}", param_hint="--units")
    return ids


def _counts(
    recording: str,
    reading: Reading,
    bin_size: str,
    trial_length: str | None,
    units: list[str] | None,
    empty_units: str = "drop",
) -> sg.SpikeCounts:
    """Counts of a recording: trials of ``trial_length``, else its trials table, else one long trial.

    The recording is read with the ``reading`` options, and only its ``units``; a long trial is fitted
    in segments whose context carries the history across the cuts. The counts' metadata record the
    reading options, which the model keeps.
    """
    loaded = sg.load(recording, **reading.given(), empty_units=empty_units, units=units)
    counts = loaded.bin(bin_size, trial_length=trial_length)
    counts.metadata["reading"] = reading.recorded()
    return counts
