"""The ``spikeglm`` command group: how every command reports errors and warnings.

Every command refuses to overwrite an existing output unless given ``--overwrite``, and reports bad
input as one line on stderr with a non-zero exit (``spikeglm --debug ...`` shows the traceback). Each
command lives in a module of its own, which registers it on :func:`main`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import click

import spikeglm as sg


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

    Example: spikeglm fit spikeglm/data/example.nwb -o model.h5 --hidden 2
    """
    ctx.obj = {"debug": debug}
