"""The ``spikeglm`` command line: a thin layer over the :mod:`spikeglm` library.

:mod:`~spikeglm.cli.app` holds the command group, :mod:`~spikeglm.cli.options` the options that
several commands share, and each command has a module of its own that registers it on the group.
"""

# Each command module registers its command on main when it is imported.
from spikeglm.cli import demo, export, fit, infer, info, plot, simulate  # noqa: F401
from spikeglm.cli.app import main

__all__ = ["main"]
