"""``--covariate``: known inputs of a fit named on the command line, read beside the recording.

A covariate is ``NAME=WHERE`` or ``NAME=WHERE@KERNEL``:

- ``WHERE`` is a TimeSeries of the recording's NWB file by its path (``/acquisition/running_speed``; a
  channel of a multi-channel one as ``/processing/behavior/Position/pos[0]``), a column of event times of
  one of its intervals tables (``trials.stim_on_time``), or a text file (``.csv``, ``.txt``) of event
  times (one column) or of times and values (two);
- ``KERNEL`` is ``lags``, ``around``, ``instant`` or ``spline``, with options in brackets:
  ``lags(window=200 ms, n_basis=4)``, ``around(before=100 ms, after=500 ms)``, ``spline(n_basis=6)``.
  By default a signal takes ``lags`` and events take ``around``.

The model file records the covariates as given, so that ``spikeglm export --test jitter`` reads them
again beside the recording it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

import spikeglm as sg
from spikeglm.io import signals

#: The help of ``--covariate``.
COVARIATE_HELP = (
    "A known input, NAME=WHERE[@KERNEL] (repeat for several): WHERE a TimeSeries of the NWB recording "
    "(/acquisition/running_speed, /x/pos[0] for a channel), an intervals table's column of event times "
    "(trials.stim_on_time) or a .csv/.txt file (times, or times and values); KERNEL lags, around, instant "
    "or spline, with options: 'lags(window=200 ms, n_basis=4)', 'around(before=0.1, after=0.5)'."
)

_SPEC = re.compile(r"^\s*([^=@\s][^=@]*?)\s*=\s*([^@]+?)\s*(?:@\s*(.+?)\s*)?$")
_KERNEL = re.compile(r"^([A-Za-z][\w-]*)\s*(?:\((.*)\))?$")
_CHANNEL = re.compile(r"^(.*)\[(\d+)\]$")
_TABLE_COLUMN = re.compile(r"^([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)$")


@dataclass(frozen=True)
class CovariateSpec:
    """One ``--covariate``, parsed: its name, where it is read, its kernel (None: the default), and the
    text as given (what the model file records)."""

    name: str
    where: str
    kernel: sg.covariates.Kernel | None
    text: str

    def read(self, recording: str) -> sg.Covariate:
        """The covariate, read from ``recording`` (an NWB file) or from its own file."""
        if self.where.lower().endswith((".csv", ".txt")):
            source = signals.text_source(self.where)
            return sg.Covariate.from_source(self.name, source, kernel=self.kernel)
        channel = None
        where = self.where
        if match := _CHANNEL.match(where):
            where, channel = match.group(1), int(match.group(2))
        if where.startswith("/"):
            return sg.Covariate.from_nwb(self.name, recording, where, kernel=self.kernel, channel=channel)
        table, column = _TABLE_COLUMN.match(where).groups()  # type: ignore[union-attr]  # checked
        return sg.Covariate.from_nwb(self.name, recording, table=table, column=column, kernel=self.kernel)


class CovariateType(click.ParamType):
    """``NAME=WHERE[@KERNEL]``, checked as given (before the recording is read)."""

    name = "covariate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> CovariateSpec:
        if isinstance(value, CovariateSpec):
            return value
        match = _SPEC.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not NAME=WHERE or NAME=WHERE@KERNEL", param, ctx)
        name, where, kernel = match.groups()
        plain = _CHANNEL.sub(r"\1", where)
        if not (
            plain.startswith("/") or _TABLE_COLUMN.match(plain) or plain.lower().endswith((".csv", ".txt"))
        ):
            self.fail(
                f"{where!r}: expected a TimeSeries path (/acquisition/x), a table's column (trials.x) or a "
                ".csv/.txt file",
                param,
                ctx,
            )
        try:
            return CovariateSpec(name, where, None if kernel is None else parse_kernel(kernel), str(value))
        except (TypeError, ValueError) as error:
            self.fail(f"{value!r}: {error}", param, ctx)


def parse_kernel(text: str) -> sg.covariates.Kernel:
    """``name`` or ``name(option=value, ...)``: a kernel of :data:`spikeglm.covariates.KERNELS`; whole
    numbers are read as such, other numbers as seconds, anything else as text (a time such as
    ``200 ms``)."""
    match = _KERNEL.match(text.strip())
    if match is None:
        raise ValueError(f"kernel {text!r} is not NAME or NAME(option=value, ...)")
    name, arguments = match.groups()
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (arguments or "").split(","))):
        key, sep, value = (piece.strip() for piece in item.partition("="))
        if not sep or not key:
            raise ValueError(f"kernel option {item!r} is not option=value")
        options[key] = _value(value)
    kind = sg.covariates.KERNELS[name]
    return kind(**options)


def _value(text: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def read_covariates(recording: str, specs: tuple[CovariateSpec, ...]) -> list[sg.Covariate] | None:
    """The covariates that ``specs`` name, read beside ``recording``; None for none. A text file is
    looked for where it is named, relative to the working directory."""
    if not specs:
        return None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"a name is given twice among {', '.join(names)}", param_hint="--covariate")
    for spec in specs:
        if not spec.where.lower().endswith((".csv", ".txt")) and Path(recording).suffix.lower() != ".nwb":
            raise click.BadParameter(
                f"{spec.text!r} reads from the recording, which is not an NWB file ({recording}); give the "
                "covariate as a .csv/.txt file",
                param_hint="--covariate",
            )
    return [spec.read(recording) for spec in specs]


def recorded_specs(model: sg.POGLM) -> tuple[CovariateSpec, ...]:
    """The ``--covariate`` options a model was fitted with (its fit options record them), parsed again;
    empty for a model without covariates. A model whose covariates were given in Python is refused."""
    if not model.covariates_:
        return ()
    given = model.fit_options_.get("covariate_options")
    if not given:
        raise click.ClickException(
            "this model's covariates were given in Python, not with --covariate; run the jitter test in "
            "Python with drive=model.known_drive(counts, covariates)"
        )
    kind = CovariateType()
    return tuple(kind.convert(text, None, None) for text in given)
