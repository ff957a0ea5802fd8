"""The options that several commands share, each declared once, and what they are turned into.

-o/--output with --overwrite (:func:`output_options`) and the check of the output (:func:`check_output`); the
options that say how to read a recording (:func:`reading_options`), which reach the command as one
:class:`Reading`; and the model and training options of ``fit`` (:func:`model_options`), which may also
come from a TOML file (:func:`load_config`).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import click

import spikeglm as sg
from spikeglm import files
from spikeglm.io.matlab import COLUMN_ORDERS
from spikeglm.settings import SETTINGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def output_options(
    description: str, overwrite: str = "Replace an existing OUTPUT.", folder: str | None = None
) -> Callable:
    """The -o/--output option of a command and its --overwrite flag.

    Parameters
    ----------
    description : str
        Help of -o/--output.
    overwrite : str
        Help of --overwrite.
    folder : str, optional
        For a command that writes a folder: its default. Without it the output is one file, which the
        command must be given.
    """
    if folder is None:
        output_option = click.option(
            "-o", "--output", help=description, required=True, type=click.Path(dir_okay=False)
        )
    else:
        output_option = click.option(
            "-o",
            "--output",
            help=description,
            default=folder,
            show_default=True,
            type=click.Path(file_okay=False),
        )
    overwrite_option = click.option("--overwrite", is_flag=True, help=overwrite)

    def with_output(command: Callable) -> Callable:
        return output_option(overwrite_option(command))

    return with_output


def check_output(path: str, overwrite: bool, inputs: tuple = ()) -> Path:
    """The output path, once it is known not to be an input and to be writable (before any work)."""
    try:
        return files.check_output(path, overwrite=overwrite, inputs=inputs)
    except FileExistsError:
        raise click.ClickException(f"{path}: exists; pass --overwrite to replace it") from None


def _subject(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``--subject FIELD=VALUE`` options as a mapping, each field one of NWB's subject's."""
    known, fields = sg.io.nwb.SUBJECT_FIELDS, {}
    for value in values:
        field, equals, text = value.partition("=")
        field = field.strip()
        if not equals or not field:
            raise click.BadParameter(f"{value!r}: expected FIELD=VALUE, e.g. species=Mus musculus")
        if field not in known:
            raise click.BadParameter(
                f"{field!r} is no field of NWB's subject; its fields: {', '.join(known)}"
            )
        fields[field] = text
    return fields


#: The subject an .nwb output of results states, over the recording's own (one option per field).
SUBJECT = click.option(
    "--subject",
    multiple=True,
    metavar="FIELD=VALUE",
    callback=_subject,
    help=".nwb outputs: a field of the subject the file states, over the recording's own (repeat it: "
    "--subject subject_id=m12 --subject species='Mus musculus' --subject sex=F --subject age=P90D; the "
    "NWB inspector asks for these four).",
)


#: How much memory reading a recording may take: a bound on the reading, not on what is read.
READ_LIMIT = click.option(
    "--read-limit",
    metavar="SIZE",
    help="The most memory reading the recording may take, e.g. 4GB (default 1 GiB, or the environment "
    "variable SPIKEGLM_READ_LIMIT); a file that declares or decompresses to more is refused.",
)
#: The options of the commands that read a recording: how to read it, and which part of it to keep.
READING_OPTIONS = (
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
    click.option(
        "--units-table",
        metavar="PATH",
        help="NWB: the Units table to read, as its path in the file, e.g. processing/ecephys/units "
        "(default: /units, else the only Units table; spikeglm info lists them).",
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
    READ_LIMIT,
)


@dataclass(frozen=True)
class Reading:
    """The reading options as given on the command line (None: not given), in the order of
    :data:`READING_OPTIONS`."""

    format: str | None
    trials: str | None
    units_table: str | None
    t_start: float | None
    t_stop: float | None
    label: str | None
    min_spikes: int
    min_rate: float
    time_unit: str | None
    sampling_rate: float | None
    variable: str | None
    columns: str | None
    read_limit: str | None

    def given(self) -> dict:
        """The options given, as ``sg.load`` takes them (``label``: the labels separated by commas)."""
        given = {name: value for name, value in asdict(self).items() if value is not None}
        if "label" in given:
            given["label"] = [part.strip() for part in given["label"].split(",")]
        return given

    def recorded(self) -> dict:
        """The options given that decide what is read, which a fitted model records."""
        return {name: value for name, value in self.given().items() if name in DATA_READING}


#: The reading options that decide what is read (the read limit only bounds the memory).
DATA_READING = tuple(field.name for field in fields(Reading) if field.name != "read_limit")


def reading_options(command: Callable) -> Callable:
    """Give a command the options of :data:`READING_OPTIONS`; it receives them as ``reading``, a
    :class:`Reading`."""

    @functools.wraps(command)
    def with_reading(*args, **kwargs):
        reading = Reading(**{field.name: kwargs.pop(field.name) for field in fields(Reading)})
        return command(*args, reading=reading, **kwargs)

    for option in reversed(READING_OPTIONS):
        with_reading = option(with_reading)
    return with_reading


def counts_like(model: sg.POGLM, recording: str, reading: dict) -> sg.SpikeCounts:
    """Counts of a recording's units that the model knows, binned and cut as for its fit (read with the
    ``reading`` options, as ``sg.load`` takes them)."""
    return model.bin_like(units_like(model, recording, reading))


def units_like(model: sg.POGLM, recording: str, reading: dict) -> sg.Recording:
    """The recording's units that the model knows, read with the ``reading`` options."""
    return sg.load(recording, **reading, units=list(model.unit_ids_))


def load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> str | None:
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
    return path


class WholeOrAuto(click.ParamType):
    """``--hidden``, ``--window``: a whole number of at least ``minimum`` written in digits, or ``auto``."""

    name = "INTEGER|auto"

    def __init__(self, minimum: int = 0) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        if text.startswith("-") and text[1:].isdigit():
            self.fail(f"{text} is negative", param, ctx)
        if not (text.isdigit() and text.isascii()):
            self.fail(f"{value!r} is neither a whole number nor 'auto'", param, ctx)
        if int(text) < self.minimum:
            self.fail(f"{text} is less than {self.minimum}", param, ctx)
        return int(text)


class NumberOrWords(click.ParamType):
    """A setting that takes a number > 0 or one of a few words (``--penalty-strength``: a number or cv)."""

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words
        self.name = "NUMBER|" + "|".join(words)

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text in self.words:
            return text
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is neither a number > 0 nor {' or '.join(self.words)}", param, ctx)
        return number


class YesNoAuto(click.ParamType):
    """``--standard-errors``: yes, no or auto (True, False, ``"auto"``); a TOML file may say true or false."""

    name = "yes|no|auto"
    _WORDS: ClassVar[dict[str, bool | str]] = {"yes": True, "no": False, "auto": "auto"}

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in self._WORDS:
            self.fail(f"{value!r} is not one of yes, no, auto", param, ctx)
        return self._WORDS[word]


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
    elif isinstance(kind, WholeOrAuto):
        fits, wanted = (
            value == "auto" or (isinstance(value, int) and not isinstance(value, bool)),
            "a whole number or 'auto'",
        )
    elif isinstance(kind, YesNoAuto):
        fits, wanted = isinstance(value, bool) or value == "auto", "true, false or 'auto'"
    elif isinstance(kind, NumberOrWords):
        fits = value in kind.words or (isinstance(value, int | float) and not isinstance(value, bool))
        wanted = f"a number or {' or '.join(repr(w) for w in kind.words)}"
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


def setting_option(name: str, *flags: str, **changes: Any) -> Callable:
    """The option of the estimator's setting ``name``, with its default, type and help from its declaration.

    Parameters
    ----------
    name : str
        The setting (:data:`spikeglm.settings.SETTINGS`); also the name of the command's argument.
    *flags : str
        The option's flags; default ``--name`` with ``-`` for ``_``.
    **changes
        Arguments of :func:`click.option` that differ from the declaration's (e.g. a type of its own).
    """
    setting = SETTINGS[name]
    kind: click.ParamType | None
    if setting.choices is not None:
        kind = click.Choice(setting.choices.names(), case_sensitive=False)
    elif setting.kind is int:
        kind = click.IntRange(min=setting.minimum)
    elif setting.kind is float and setting.words:
        kind = NumberOrWords(setting.words)
    elif setting.kind is float:
        kind = click.FloatRange(min=0, min_open=True)
    else:
        kind = None
    declared = {
        "default": setting.default,
        "show_default": setting.default is not None,
        "type": kind,
        "help": setting.help,
    }
    return click.option(*(flags or (f"--{name.replace('_', '-')}",)), name, **{**declared, **changes})


#: The options of ``fit`` that set the model, its training and the choice of its number of hidden
#: neurons; all but --candidates, --folds, --jobs, --device, --checkpoint-every, --resume and --bootstrap are
#: the estimator's settings, declared in :mod:`spikeglm.settings`.
MODEL_OPTIONS = (
    setting_option("n_hidden", "--hidden", type=WholeOrAuto()),
    click.option(
        "--candidates",
        default="0,1,2,4",
        show_default=True,
        type=WholeNumbers(),
        help="With --hidden auto: the numbers of hidden neurons tried, separated by commas (at most what the "
        "data can carry: more parameters than counts, or more memory than there is, are refused).",
    ),
    click.option(
        "--latent-candidates",
        default=None,
        type=WholeNumbers(),
        help="With --hidden auto: also choose the number of latent factors among these (e.g. 0,1), with "
        "every number of hidden neurons; the simplest pair within one paired SE of the best is kept. "
        "Default: --latent, fixed.",
    ),
    click.option(
        "--folds",
        default=5,
        show_default=True,
        type=click.IntRange(min=2),
        help="With --hidden auto: cross-validation folds (whole trials, or blocks of time of each trial).",
    ),
    click.option(
        "--jobs",
        default=1,
        show_default=True,
        type=click.IntRange(min=-1),
        help="With --hidden auto: worker processes that fit the folds, one torch thread each (-1: one per "
        "CPU). Each holds a copy of the recording.",
    ),
    setting_option("n_latent", "--latent"),
    setting_option("latent_tau", metavar="BINS|auto"),
    setting_option("penalty"),
    setting_option("penalty_strength"),
    setting_option("basis"),
    setting_option("window", type=WholeOrAuto(minimum=1)),
    setting_option("self_basis"),
    setting_option("self_window"),
    setting_option("link"),
    setting_option("variational"),
    setting_option("objective"),
    setting_option("relaxation"),
    setting_option("temperature"),
    setting_option("init"),
    setting_option("straight_through", "--straight-through/--relaxed"),
    setting_option("n_samples", "--samples"),
    setting_option("epochs"),
    setting_option("lr"),
    setting_option("tol", type=click.FloatRange(min=0)),  # 0: no stopping rule (None)
    setting_option("batch_size"),
    setting_option("segment_bins"),
    setting_option("standard_errors", type=YesNoAuto()),
    setting_option("part_bins"),
    click.option(
        "--device",
        default="auto",
        show_default=True,
        help="cpu, cuda, cuda:N, or auto (a GPU if there is one).",
    ),
    setting_option("seed"),
    click.option(
        "--checkpoint-every",
        default=50,
        show_default=True,
        type=click.IntRange(min=1),
        help="Epochs between checkpoints.",
    ),
    click.option(
        "--resume",
        is_flag=True,
        help="Continue from the checkpoint OUTPUT.ckpt.h5 (it says from which epoch).",
    ),
    click.option(
        "--bootstrap",
        default=0,
        show_default=True,
        type=click.IntRange(min=0),
        help="After the fit, this many refits to recordings simulated from it give the standard errors of "
        "the couplings (parametric bootstrap; for fits with hidden neurons, which have none otherwise). "
        "0: none.",
    ),
)


def model_options(command: Callable) -> Callable:
    """Give a command the options of :data:`MODEL_OPTIONS`."""
    for option in reversed(MODEL_OPTIONS):
        command = option(command)
    return command
