"""``spikeglm`` command line (click): a thin layer over the library.

Every command refuses to overwrite an existing output unless given ``--overwrite``, and reports bad
input as one line on stderr with a non-zero exit (``spikeglm --debug ...`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import click
import numpy as np

import spikeglm as sg
from spikeglm.files import atomic_write, check_output, exclusive_lock
from spikeglm.io.matlab import COLUMN_ORDERS
from spikeglm.modelfile import read_training_state

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The bundled example recording that ``spikeglm demo`` fits (installed with the library, see
#: spikeglm.examples; in a source checkout the project's data/ folder).
EXAMPLE = sg.examples.path("example.nwb")


class _Commands(click.Group):
    """A group that turns errors into one line on stderr (the traceback only with --debug)."""

    def invoke(self, ctx: click.Context):
        with _warnings_on_one_line():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # here, where a closed pipe can still be told apart
            return result
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else "spikeglm"
            click.echo(f"spikeglm: error: {_one_line(error)} (see {where} --help)", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            _closed_pipe()
        except click.ClickException as error:
            click.echo(f"spikeglm: error: {_one_line(error)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("spikeglm: interrupted", err=True)
            sys.exit(130)
        except Exception as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"spikeglm: error: {_one_line(error)}", err=True)
            sys.exit(1)


@contextlib.contextmanager
def _warnings_on_one_line():
    """While a command runs, each warning is shown as one line, ``spikeglm: warning: <message>``, on stderr.

    Python's own form names the library's file and line and repeats its source line, which tells the user
    of the command line nothing. Only the form changes (``warnings.formatwarning``, which Python's
    ``showwarning`` writes): the library's warnings themselves are as they were, and code that records
    them (``warnings.catch_warnings(record=True)``, ``pytest.warns``) still receives them.
    """
    shown = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None) -> str:
        return f"spikeglm: warning: {_one_line(message)}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = shown


def _closed_pipe() -> None:
    """The reader of the output went away (``spikeglm info x | head``): end quietly, as ``cat`` does.

    What is left in the output buffer goes to /dev/null, so that Python's last flush does not complain;
    the exit status is that of a process ended by SIGPIPE (141).
    """
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + 13)


def _one_line(error: Exception, longest: int = 1000) -> str:
    """An error as one line of at most ``longest`` characters (a blank message names the error's type)."""
    message = error.format_message() if isinstance(error, click.ClickException) else str(error)
    text = " ".join(message.split()) or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) is the bare key in quotes
        text = f"missing {text}"
    return text if len(text) <= longest else text[: longest - 15] + " ... (cut short)"


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sg.__version__, prog_name="spikeglm")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Fit partially observable GLMs (visible + hidden neurons) to spike trains.

    Example: spikeglm fit data/example.nwb -o model.h5 --hidden 2
    """
    ctx.obj = {"debug": debug}


def _output(description: str):
    """The -o/--output option of a command that writes one file."""
    return click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help=description)


def _check_output(path: str, overwrite: bool, inputs: tuple = ()) -> Path:
    """The output path, once it is known not to be an input and to be writable (before any work)."""
    try:
        return check_output(path, overwrite=overwrite, inputs=inputs)
    except FileExistsError:
        raise click.ClickException(f"{path}: exists; pass --overwrite to replace it") from None


def _write_npz(path: Path, arrays: dict, overwrite: bool, inputs: tuple = ()) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write, overwrite=overwrite, inputs=inputs)


def _load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> str | None:
    """Read a TOML file of option defaults (keys: option names with _ or -); the command line wins."""
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            config = tomllib.load(handle)
    except OSError as error:
        raise click.BadParameter(f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise click.BadParameter(f"{path}: not valid TOML ({error})") from None
    # Keys are the options' names on the command line (hidden, bin_size or bin-size), whatever the
    # name of the parameter they fill.
    params = {
        option[2:].replace("-", "_"): p
        for p in ctx.command.params
        for option in p.opts
        if option.startswith("--")
    }
    settings = {key.replace("-", "_"): value for key, value in config.items()}
    unknown = sorted(set(settings) - set(params))
    if unknown:
        raise click.BadParameter(f"{path}: unknown option(s) {', '.join(unknown)}")
    for key, value in settings.items():
        _check_config_type(path, key, params[key], value)
    defaults = {params[k].name: json.dumps(v) if isinstance(v, list) else v for k, v in settings.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["config"] = path
    return path


class HiddenCount(click.ParamType):
    """``--hidden``: a whole number >= 0 written in digits, or ``auto``."""

    name = "INTEGER|auto"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        if text.startswith("-") and text[1:].isdigit():
            self.fail(f"{text} is negative", param, ctx)
        if not (text.isdigit() and text.isascii()):
            self.fail(f"{value!r} is neither a whole number nor 'auto'", param, ctx)
        return int(text)


class WholeNumbers(click.ParamType):
    """``--candidates``: whole numbers >= 0 separated by commas, checked whether or not they are used."""

    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        if not all(part.isdigit() and part.isascii() for part in parts):
            self.fail(f"expected whole numbers >= 0 separated by commas; got {value!r}", param, ctx)
        return tuple(int(part) for part in parts)


def _check_config_type(path: str, key: str, param: click.Parameter, value: object) -> None:
    """Refuse a TOML value of the wrong kind (``hidden = 2.7`` or ``hidden = true``) instead of casting it."""
    kind = param.type
    if getattr(param, "is_flag", False):
        fits, wanted = isinstance(value, bool), "true or false"
    elif isinstance(kind, HiddenCount):
        fits, wanted = (
            value == "auto" or (isinstance(value, int) and not isinstance(value, bool)),
            "a whole number or 'auto'",
        )
    elif isinstance(kind, click.types.IntParamType):
        fits, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(kind, click.types.FloatParamType):
        fits, wanted = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif param.name == "units":
        fits = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        wanted = "a string or a list of strings"
    else:
        fits, wanted = isinstance(value, str), "a string"
    if not fits:
        raise click.BadParameter(f"{path}: option {key} must be {wanted}; got {value!r}")


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


#: How much memory reading a recording may take: a bound on the reading, not on what is read.
_READ_LIMIT = click.option(
    "--read-limit",
    metavar="SIZE",
    help="The most memory reading the recording may take, e.g. 4GB (default 1 GiB, or the environment "
    "variable SPIKEGLM_READ_LIMIT); a file that declares or decompresses to more is refused.",
)
#: The options of the commands that read a recording: how to read it, and which part of it to keep.
_READING_OPTIONS = (
    click.option(
        "--format",
        type=click.Choice(list(sg.io.FORMATS)),
        help="Read the recording as this format (default: from the extension, or the folder's files).",
    ),
    click.option(
        "--trials",
        metavar="TABLE",
        help="NWB: the TimeIntervals table under /intervals whose rows are the trials (default: trials; "
        "spikeglm info lists the tables).",
    ),
    click.option("--t-start", type=float, help="Keep the recording from this time on (s)."),
    click.option("--t-stop", type=float, help="Keep the recording up to this time (s)."),
    click.option(
        "--label",
        help="Keep the units with this label (phy/Kilosort: good, mua, noise...; NWB: the quality column; "
        "several: good,mua).",
    ),
    click.option(
        "--min-spikes",
        default=0,
        show_default=True,
        type=click.IntRange(min=0),
        help="Keep the units with at least this many spikes (in the window kept).",
    ),
    click.option(
        "--min-rate",
        default=0.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Keep the units firing at least this many spikes per second (in the window kept).",
    ),
    click.option(
        "--time-unit",
        type=click.Choice(sg.timeunits.TIME_UNITS),
        help="Unit of the times in a MATLAB or text file (default s) or a phy folder (default samples).",
    ),
    click.option(
        "--sampling-rate",
        type=click.FloatRange(min=0, min_open=True),
        metavar="HZ",
        help="Samples per second, for --time-unit samples (phy: instead of params.py's sample_rate).",
    ),
    click.option(
        "--variable",
        metavar="NAME",
        help="MATLAB: the variable (or struct field, NAME.FIELD) holding the spike times, if not unique.",
    ),
    click.option(
        "--columns",
        type=click.Choice(COLUMN_ORDERS),
        help="MATLAB: the column order of an [id, time] array if it cannot be told from the values, or the "
        "axes of a sparse raster (id,time: a row per unit; default: the shorter axis holds the units).",
    ),
    _READ_LIMIT,
)


#: The parameters of those options, in that order.
_READING_NAMES = (
    "format",
    "trials",
    "t_start",
    "t_stop",
    "label",
    "min_spikes",
    "min_rate",
    "time_unit",
    "sampling_rate",
    "variable",
    "columns",
    "read_limit",
)
#: Those that decide what is read, which a fitted model records (the read limit only bounds the memory).
_DATA_READING = tuple(name for name in _READING_NAMES if name != "read_limit")


def _reading_options(command):
    """Give a command the options of :data:`_READING_OPTIONS`; :func:`_load` applies them."""

    @functools.wraps(command)
    def with_reading(*args, **kwargs):
        reading = {name: kwargs.pop(name) for name in _READING_NAMES}
        click.get_current_context().meta["reading"] = reading
        return command(*args, **kwargs)

    for option in reversed(_READING_OPTIONS):
        with_reading = option(with_reading)
    return with_reading


def _given_reading() -> dict:
    """The reading options given on the command line (see :func:`_reading_options`), as ``sg.load``
    takes them."""
    reading = click.get_current_context().meta.get("reading", {})
    given = {name: value for name, value in reading.items() if value is not None}
    if "label" in given:
        given["label"] = [part.strip() for part in given["label"].split(",")]
    return given


def _load(recording: str, reading: dict | None = None, **options) -> sg.Recording:
    """``sg.load`` with the ``reading`` options, by default those given on the command line."""
    return sg.load(recording, **(_given_reading() if reading is None else reading), **options)


def _counts(
    recording: str,
    bin_size: str,
    trial_length: str | None,
    units: list[str] | None,
    empty_units: str = "drop",
) -> sg.SpikeCounts:
    """Counts of a recording: trials of ``trial_length``, else its trials table, else one long trial.

    Only the ``units`` are read; a long trial is fitted in segments whose context carries the history
    across the cuts.
    """
    loaded = _load(recording, empty_units=empty_units, units=units)
    return loaded.bin(bin_size, trial_length=trial_length)


def _counts_like(model: sg.POGLM, recording: str, reading: dict | None = None) -> sg.SpikeCounts:
    """Counts of a recording's units that the model knows, binned and cut as for its fit (read with the
    ``reading`` options, by default those given on the command line)."""
    return model.bin_like(_load(recording, reading, units=list(model.unit_ids_)))


#: Notes on suspicious units that ``info`` prints before it says how many more there are.
_NOTES_SHOWN = 12
#: Units whose spikes and rates ``info`` lists before it says how many more there are.
_UNITS_SHOWN = 200


@main.command()
@click.argument("recording", type=click.Path())
@click.option("--bin-size", default="5 ms", show_default=True, help="Bin size for the count summary.")
@_reading_options
def info(recording: str, bin_size: str) -> None:
    """Describe a recording: what was assumed in reading it, units, spikes, duration, trials, firing
    rates, and units that look suspicious (few spikes; spikes repeated at one time; many spikes at the same
    times as another unit). Only the first 200 units are listed.

    RECORDING is a file, a phy/Kilosort folder, a folder of per-unit text files, or a quoted glob
    pattern of such files.

    Example: spikeglm info data/example.nwb

    Example: spikeglm info "cells/cell*.txt.gz" --time-unit ms --t-start 0 --t-stop 5400
    """
    rec = _load(recording)
    duration = float(rec.duration.rescale("s").magnitude)
    click.echo(
        f"{recording}: {rec.n_units} units, {int(rec.n_spikes.sum())} spikes, {duration:g} s "
        f"({float(rec.t_start):g} s to {float(rec.t_stop):g} s)"
    )
    for subject, assumption in rec.annotations.get("assumed", {}).items():
        click.echo(f"  {subject}: {assumption}")
    tables = rec.annotations.get("interval_tables") or {}
    if tables:
        click.echo(
            "interval tables: "
            + ", ".join(
                f"{name} ({table['rows']} rows, {table['start_s']:g} to {table['stop_s']:g} s)"
                if table["rows"]
                else f"{name} (empty)"
                for name, table in tables.items()
            )
        )
    if rec.trials is not None:
        lengths = rec.trials[:, 1] - rec.trials[:, 0]
        click.echo(f"trials: {len(rec.trials)}, {lengths.min():g} to {lengths.max():g} s long")
    shown = rec.select_units(rec.unit_ids[:_UNITS_SHOWN].tolist())
    counts = shown.bin(bin_size)  # only the units shown: the counts of every unit could be gigabytes
    click.echo(f"binned at {bin_size}: {counts.n_trials} trials x {counts.n_bins} bins")
    width = max(len(u) for u in shown.unit_ids)
    click.echo(f"{'unit':<{width}}  {'spikes':>7}  {'rate (Hz)':>9}  {'per bin':>7}")
    per_bin = counts.counts.mean(axis=(0, 1))
    for unit, n, mean in zip(shown.unit_ids, shown.n_spikes, per_bin, strict=True):
        click.echo(f"{unit:<{width}}  {int(n):>7}  {n / duration:>9.2f}  {mean:>7.3f}")
    if rec.n_units > _UNITS_SHOWN:
        click.echo(f"... and {rec.n_units - _UNITS_SHOWN} more units (--min-spikes or fit's --units choose)")
    notes = rec.suspicious_units()
    if notes:
        click.echo(
            f"suspicious units ({len(notes)} note(s); --min-spikes, --min-rate or fit's --units "
            "leave units out):"
        )
        for note in notes[:_NOTES_SHOWN]:
            click.echo(f"  {note}")
        if len(notes) > _NOTES_SHOWN:
            click.echo(f"  ... and {len(notes) - _NOTES_SHOWN} more")


@main.command()
@click.argument("recording", type=click.Path())
@_output("Model file (.h5).")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
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
@click.option(
    "--hidden",
    "n_hidden",
    default="2",
    show_default=True,
    type=HiddenCount(),
    help="Number of hidden neurons, or 'auto': chosen among --candidates by cross-validation.",
)
@click.option(
    "--candidates",
    default="0,1,2,4",
    show_default=True,
    type=WholeNumbers(),
    help="With --hidden auto: the numbers of hidden neurons tried, separated by commas (at most what the "
    "data can carry: more parameters than counts, or more memory than there is, are refused).",
)
@click.option(
    "--folds",
    default=5,
    show_default=True,
    type=click.IntRange(min=2),
    help="With --hidden auto: cross-validation folds (whole trials, or blocks of time of each trial).",
)
@click.option(
    "--basis",
    default="exponential",
    show_default=True,
    type=click.Choice(sg.basis.BASES.names(), case_sensitive=False),
    help="History basis.",
)
@click.option(
    "--window", default=5, show_default=True, type=click.IntRange(min=1), help="History length in bins."
)
@click.option(
    "--link",
    default="softplus",
    show_default=True,
    type=click.Choice(sg.model.LINKS.names(), case_sensitive=False),
    help="Link from the linear predictor to the rate per bin (sigmoid keeps rates below 1 per bin, as "
    "in the published POGLM experiments).",
)
@click.option(
    "--variational",
    default="forward-backward",
    show_default=True,
    type=click.Choice(sg.variational.FAMILIES.names(), case_sensitive=False),
    help="Posterior family of the hidden counts: forward-backward reads the visible past and future, "
    "forward the past only, forward-self also the sampled hidden past, smoothing all three "
    "(the last two sample bin by bin: slower).",
)
@click.option(
    "--objective",
    default="elbo",
    show_default=True,
    type=click.Choice(sg.fit.OBJECTIVES.names(), case_sensitive=False),
    help="What the fit maximises: elbo; iwae (importance-weighted over --samples); fivo (a particle "
    "filter's bound over --samples particles); likelihood (the log-likelihood itself, its gradient from "
    "a particle smoother of --samples particles: hidden neurons are not shrunk, several times slower; "
    "try --samples 16).",
)
@click.option(
    "--relaxation",
    default="eat-cubic",
    show_default=True,
    type=click.Choice(sg.relax.RELAXATIONS.names(), case_sensitive=False),
    help="Differentiable relaxation of the sampled hidden counts (exact: score-function gradients).",
)
@click.option(
    "--temperature",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Relaxation temperature (eat-cubic: at most 1).",
)
@click.option(
    "--init",
    default="glm",
    show_default=True,
    type=click.Choice(sg.fit.STARTS.names(), case_sensitive=False),
    help="How a fit with hidden neurons starts: glm (the visible neurons' GLM, each hidden neuron "
    "along a principal component of its errors) or random (small random couplings).",
)
@click.option(
    "--straight-through/--relaxed",
    default=False,
    show_default=True,
    help="Train on exact integer hidden counts with the relaxation's gradient (eat-cubic only).",
)
@click.option(
    "--samples",
    "n_samples",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hidden-count samples (fivo: particles) per trial and step.",
)
@click.option(
    "--epochs",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most epochs (a fit stops earlier once converged, see --tol).",
)
@click.option(
    "--lr",
    default=0.05,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate.",
)
@click.option(
    "--tol",
    default=5e-4,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Once the smoothed objective rises less than this (nats per spike) in 10 epochs, lower the "
    "learning rate five-fold; at the next such plateau, stop. 0: run all --epochs.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help="Trials (or segments) per step (default: a quarter of them, at most 2^14 bins).",
)
@click.option(
    "--segment-bins",
    default=sg.poglm.SEGMENT_BINS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Trials longer than this are fitted in segments of this many bins (history kept across cuts).",
)
@click.option(
    "--part-bins",
    default=sg.fit.PART_BINS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Bins computed at once (bounds memory; under torchrun the parts are shared among processes).",
)
@click.option(
    "--device", default="auto", show_default=True, help="cpu, cuda, cuda:N, or auto (a GPU if there is one)."
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of the initial parameters, the batches and the samples (same seed, same fit).",
)
@click.option(
    "--checkpoint-every",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Epochs between checkpoints.",
)
@click.option(
    "--resume", is_flag=True, help="Continue from the checkpoint OUTPUT.ckpt.h5 (it says from which epoch)."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing OUTPUT, or its checkpoint when not resuming."
)
@click.option(
    "--bootstrap",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="After the fit, this many refits to recordings simulated from it give the standard errors of the "
    "couplings (parametric bootstrap; for fits with hidden neurons, which have none otherwise). 0: none.",
)
@_reading_options
@click.pass_context
def fit(
    ctx: click.Context,
    recording: str,
    output: str,
    bin_size: str,
    trial_length: str | None,
    units: str | None,
    empty_units: str,
    device: str,
    checkpoint_every: int,
    resume: bool,
    overwrite: bool,
    candidates: tuple[int, ...],
    folds: int,
    bootstrap: int,
    **settings,
) -> None:
    """Fit a POGLM with hidden neurons to a recording and save the model.

    A checkpoint (OUTPUT.ckpt.h5) is written every --checkpoint-every epochs and on Ctrl-C; run the
    same command with --resume to continue. Options may also come from a TOML file (--config).
    Launched by torchrun, the processes share each step's work (gloo on CPU, NCCL on GPU) and give the
    fit of one process; only the first writes files.

    Example: spikeglm fit data/example.nwb -o model.h5 --hidden 2 --epochs 300

    \b
    Example, two processes:
    torchrun --standalone --nproc-per-node 2 -m spikeglm fit long.nwb -o model.h5 --batch-size 64
    """
    if bootstrap == 1:
        raise click.BadParameter("0 (none) or at least 2 refits", param_hint="--bootstrap")
    auto = settings["n_hidden"] == "auto"
    if not auto:
        _refuse_selection_options(ctx)
    inputs = (recording, ctx.meta.get("config"))
    out = _check_output(output, overwrite, inputs)
    checkpoint = _check_output(str(out) + ".ckpt.h5", True, inputs)
    if checkpoint.exists() and not (resume or overwrite):
        raise click.ClickException(
            f"{checkpoint}: a checkpoint of an earlier fit exists; add --resume to continue it, "
            "or --overwrite to start afresh"
        )
    counts = _counts(recording, bin_size, trial_length, _unit_list(units), empty_units)
    # the model records how its data was read
    counts.metadata["reading"] = {k: v for k, v in _given_reading().items() if k in _DATA_READING}
    settings["tol"] = settings["tol"] or None  # --tol 0: no stopping rule
    model = sg.POGLM(**{**settings, "n_hidden": 0 if auto else settings["n_hidden"]})  # by their names
    model.check_fit(counts)  # before a lock is taken, a checkpoint removed or anything printed
    if auto:
        candidates = sg.selection.check_candidates(counts, candidates, folds, model)
    with (
        sg.parallel.distributed(None if device == "auto" else device) as where,
        contextlib.ExitStack() as stack,
    ):
        rank, world = sg.parallel.rank(), sg.parallel.world_size()
        if rank == 0:
            stack.enter_context(exclusive_lock(out, "fitting a model to this output"))
            processes = f" in {world} processes" if world > 1 else ""
            click.echo(
                f"{recording}: {counts.n_trials} trials x {counts.n_bins} bins x {counts.n_units} units; "
                f"fitting on {where}{processes}"
            )
            if resume:
                click.echo(_resuming(checkpoint, settings["epochs"]))
        signals = stack.enter_context(_signals_as_interrupt())
        selection = None
        if auto:
            selection = _cross_validate(counts, candidates, folds, model, rank == 0, where)
            model.set_params(n_hidden=selection.chosen)
        if rank == 0 and checkpoint.exists() and not resume:
            checkpoint.unlink()  # --overwrite: start afresh (once the candidates are accepted)
        try:
            model.fit(
                counts,
                device=where,
                progress=True,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                resume=resume,
            )
            if bootstrap:
                _bootstrap(model, counts, bootstrap, where, rank == 0)
        except KeyboardInterrupt:
            if rank == 0:
                saved = f"the fit so far is in {checkpoint}; add --resume to continue"
                click.echo(
                    f"\ninterrupted: {saved if checkpoint.exists() else 'nothing was written'}", err=True
                )
            sys.exit(128 + (signals[-1] if signals else signal.SIGINT))
        if rank != 0:
            return
        model.selection_ = selection
        model.save(out, overwrite=overwrite)
        checkpoint.unlink(missing_ok=True)
    final, steps = model.history_[-1].objective, len(model.history_)
    click.echo(f"model: {out} (objective per neuron-bin {final:.4f} after {steps} steps; {model.stopped_})")


def _bootstrap(model: sg.POGLM, counts: sg.SpikeCounts, n_boot: int, where: object, report: bool) -> None:
    """``--bootstrap``: the standard errors of the couplings from ``n_boot`` refits (each reported) on the
    device ``where``."""

    def progress(index: int, seconds: float) -> None:
        if report:
            click.echo(f"  bootstrap refit {index + 1}/{n_boot}: {seconds:.1f} s")

    if report:
        click.echo(f"standard errors by parametric bootstrap ({n_boot} refits to simulated recordings):")
    model.bootstrap_se(counts, n_boot=n_boot, callback=progress, device=where)


def _resuming(checkpoint: Path, epochs: int) -> str:
    """Where ``--resume`` picks the fit up, for the user to see before it goes on."""
    state = read_training_state(checkpoint, sg.POGLM)
    if state is None:
        return f"--resume: no checkpoint {checkpoint} yet; starting from epoch 1"
    done, steps = state["epochs_done"], state["steps_done"]
    within = f" (and {steps} steps into epoch {done + 1})" if steps else ""
    return f"resuming {checkpoint}: {done} of at most {epochs} epochs done{within}; on at epoch {done + 1}"


def _refuse_selection_options(ctx: click.Context) -> None:
    """Refuse --candidates and --folds given on the command line for a fit that does not choose."""
    given = [
        f"--{name}"
        for name in ("candidates", "folds")
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    ]
    if given:
        verb, pronoun = ("applies", "it") if len(given) == 1 else ("apply", "them")
        raise click.ClickException(
            f"{' and '.join(given)} {verb} only with --hidden auto (cross-validation); add --hidden auto, "
            f"or leave {pronoun} out to fit --hidden {ctx.params['n_hidden']}"
        )


def _cross_validate(counts, candidates, folds, model, report, where) -> sg.selection.Selection:
    """``--hidden auto``: score each candidate on held-out folds (printed as they come), then the table."""

    def progress(n_hidden: int, fold: int, score: float) -> None:
        if report:
            click.echo(f"  {n_hidden} hidden, fold {fold + 1}/{folds}: held-out {score:.6f} per neuron-bin")

    if report:
        click.echo(f"choosing the number of hidden neurons among {', '.join(map(str, candidates))}:")
    selection = sg.selection.cross_validate(counts, candidates, folds, model, callback=progress, device=where)
    if report:
        click.echo(str(selection))
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


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("recording", type=click.Path(exists=True))
@_output("Output .npz file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
@_reading_options
def infer(model: str, recording: str, output: str, overwrite: bool) -> None:
    """Infer the hidden neurons' rates in a recording, binned as the model was fitted.

    Writes an .npz (read it with numpy.load; no pickle) holding hidden_rates, the posterior mean of
    each hidden neuron's count per bin (trials, bins, hidden), and hidden_rates_hz, the same in spikes
    per second (divided by the bin size); each with its unit in hidden_rates_unit and
    hidden_rates_hz_unit; bin_size_s and trial_starts_s (s); hidden_labels and visible_units; and
    metadata, a JSON string naming the model file, the recording and the model's settings.

    Example: spikeglm infer model.h5 data/example.nwb -o hidden.npz
    """
    out = _check_output(output, overwrite, (model, recording))
    fitted = sg.POGLM.load(model)
    counts = _counts_like(fitted, recording)
    arrays = _hidden_arrays(fitted, counts, {"model": model, "recording": recording})
    _write_npz(out, arrays, overwrite, (model, recording))
    click.echo(
        f"hidden rates {arrays['hidden_rates'].shape} (trials, bins, hidden), in expected counts per "
        f"{fitted.bin_size_} bin and in Hz: {out}"
    )


def _hidden_arrays(model: sg.POGLM, counts: sg.SpikeCounts, sources: dict) -> dict[str, np.ndarray]:
    """What ``infer`` and ``demo`` write of the hidden rates: both units, named, and where they came from."""
    rates = model.infer(counts)
    metadata = {
        **sources,
        "spikeglm": sg.__version__,
        "bin_size": model.bin_size_,
        "n_hidden": model.n_hidden,
        "link": model.link,
        "variational": model.variational,
        "trial_length": model.data_.get("trial_length"),
    }
    return {
        "hidden_rates": rates,
        "hidden_rates_unit": np.array("expected spike count per bin"),
        "hidden_rates_hz": rates / model.bin_seconds,
        "hidden_rates_hz_unit": np.array("Hz (spikes per second)"),
        "bin_size_s": np.float64(model.bin_seconds),
        "trial_starts_s": np.asarray(counts.metadata.get("trial_starts_s", []), dtype=np.float64),
        "hidden_labels": np.array([f"hidden-{k}" for k in range(model.n_hidden)]),
        "visible_units": np.array(model.unit_ids_),
        "metadata": np.array(json.dumps(metadata)),
    }


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@_output("File by extension: .csv, .npz, .h5, .graphml or .json.")
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
@_READ_LIMIT
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
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
    out = _check_output(output, overwrite, inputs)
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
        reading = _fit_reading(fitted, model)
        if read_limit is not None:
            reading["read_limit"] = read_limit
        counts = _counts_like(fitted, recording, reading)
        options = {"counts": counts, "n_jitter": n_jitter, "jitter": jitter_bins}
        options.update(pvalue=pvalue, seed=seed)
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
    unknown = sorted(set(reading) - set(_DATA_READING))
    if unknown:
        raise ValueError(
            f"{model}: records the reading option(s) {', '.join(unknown)}, unknown to this spikeglm"
        )
    return reading


@main.command()
@_output("Recording file: .nwb, .nix, .npz or .csv.")
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
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
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
    out = _check_output(output, overwrite)
    truth_path = _check_output(str(out.with_name(out.stem + "_truth.json")), overwrite)
    options = {"n_visible": visible, "n_hidden": hidden, "n_bins": bins, "n_train": trials, "n_test": 1}
    truth, counts, _ = sg.synthetic.network(
        protocol, seed=seed, **{k: v for k, v in options.items() if v is not None}
    )
    sg.save(counts.to_recording(seed=seed), out, overwrite=overwrite)
    truth.save(truth_path, overwrite=overwrite)
    click.echo(f"recording ({counts.n_units} units, {counts.n_trials} trials): {out}\ntruth: {truth_path}")


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@_output(".png, .pdf or .svg")
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
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
@_reading_options
def plot(
    model: str,
    output: str,
    recording: str | None,
    truth: str | None,
    trial: int | None,
    page: int | None,
    overwrite: bool,
) -> None:
    """Draw a fitted model: raster with inferred hidden rates, connectivity, training curve.

    Example: spikeglm plot model.h5 --recording data/example.nwb -o fit.png
    """
    from spikeglm import plot as plots

    out = _check_output(output, overwrite, (model, recording, truth))
    fitted = sg.POGLM.load(model)
    counts = None if recording is None else _counts_like(fitted, recording)
    conn_truth = None if truth is None else sg.Connectivity.load(truth)
    figure = plots.summary(fitted, counts, trial=trial, truth=conn_truth, page=page)
    plots.save_figure(figure, out, overwrite=overwrite)
    click.echo(f"figure: {out}")


@main.command()
@click.option(
    "-o",
    "--output",
    default="results/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the results (model.h5, hidden.npz, connectivity.csv, fit.png).",
)
@click.option("--out", "old_output", default=None, hidden=True, type=click.Path(file_okay=False))
@click.option(
    "--epochs", default=300, show_default=True, type=click.IntRange(min=1), help="Most training epochs."
)
@click.option("--overwrite", is_flag=True, help="Replace the results of an earlier demo in OUTPUT.")
def demo(output: str, old_output: str | None, epochs: int, overwrite: bool) -> None:
    """Run the whole pipeline on the bundled example recording.

    data/example.nwb holds 10 recorded units of a simulated network with 2 hidden neurons (80 trials of
    1 s). The demo fits a POGLM with 2 hidden neurons on 60 trials, scores it on the other 20 beside
    the true network, and writes the model, the inferred hidden rates, the connectivity and a figure.

    Example: spikeglm demo -o /tmp/demo
    """
    from spikeglm import plot as plots

    if old_output is not None:  # the option's name before -o/--output was used by every command
        click.echo("spikeglm: --out is deprecated; use -o/--output", err=True)
        output = old_output
    truth_file, hidden_file = sg.examples.path("example_truth.json"), sg.examples.path("example_hidden.npz")
    for bundled in (EXAMPLE, truth_file, hidden_file):
        if not bundled.exists():
            raise click.ClickException(
                f"{bundled}: the bundled example is missing (reinstall spikeglm; in a source checkout, "
                "run python data/make_example.py)"
            )
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise click.ClickException(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    inputs = (EXAMPLE, truth_file, hidden_file)
    names = ("model.h5", "hidden.npz", "connectivity.csv", "fit.png")
    outputs = {name: _check_output(str(folder / name), overwrite, inputs) for name in names}
    counts = sg.load(EXAMPLE).bin("5 ms")
    truth = sg.Connectivity.load(truth_file)
    train, test = counts.select_trials(slice(0, 60)), counts.select_trials(slice(60, None))
    click.echo(
        f"{EXAMPLE}: {train.n_trials} training and {test.n_trials} test trials, {counts.n_units} units"
    )
    model = sg.POGLM(n_hidden=truth.n_hidden, epochs=epochs, seed=0).fit(train, progress=True)
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
    hidden = _hidden_arrays(model, counts, {"model": str(outputs["model.h5"]), "recording": str(EXAMPLE)})
    _write_npz(outputs["hidden.npz"], hidden, overwrite, inputs)
    model.connectivity().save(outputs["connectivity.csv"], overwrite=overwrite)
    true_spikes = sg.examples.hidden_counts(test)
    figure = plots.summary(model, test, truth=truth, truth_spikes=true_spikes)
    plots.save_figure(figure, outputs["fit.png"], overwrite=overwrite)
    click.echo("results:\n" + "\n".join(f"  {path}" for path in outputs.values()))
