"""The optional extras: a module that only some features need, imported where they run.

A feature that needs one calls :func:`optional`, which imports the module or says, in one line, which
extra of spikeglm installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def optional(module: str, needed_by: str, extra: str | None = None) -> ModuleType:
    """Import ``module``, an optional extra, or say which extra to install.

    Parameters
    ----------
    module : str
        The module's name, e.g. ``"pynwb"``.
    needed_by : str
        What needs it, named in the message, e.g. ``"Connectivity.to_networkx"``.
    extra : str, optional
        The extra of spikeglm that installs it (``pip install "spikeglm[EXTRA]"``); default ``module``.

    Raises
    ------
    ModuleNotFoundError
        Where ``module`` is not installed: ``NEEDED_BY needs MODULE, an optional extra: pip install
        "spikeglm[EXTRA]"``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f'{needed_by} needs {module}, an optional extra: pip install "spikeglm[{extra or module}]"'
        ) from None
