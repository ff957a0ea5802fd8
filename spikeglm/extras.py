"""The optional extras: importing one where a feature needs it, and naming it in messages.

An extra is a set of packages that ``pip install "spikeglm[NAME]"`` adds (``pyproject.toml``'s
``[project.optional-dependencies]``); nothing in the core needs them. A feature that needs one calls
:func:`optional`, which imports the module or says, in one line, which extra installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["install_hint", "optional"]


def install_hint(extra: str) -> str:
    """How to install an extra: ``pip install "spikeglm[NAME]"``."""
    return f'pip install "spikeglm[{extra}]"'


def optional(module: str, needed_by: str, extra: str | None = None) -> ModuleType:
    """Import ``module``, an optional extra, or say which extra to install.

    Parameters
    ----------
    module : str
        The module's name, e.g. ``"pynwb"``.
    needed_by : str
        What needs it, named in the message, e.g. ``"Connectivity.to_networkx"``.
    extra : str, optional
        The extra of spikeglm that installs it; default ``module``.

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
            f"{needed_by} needs {module}, an optional extra: {install_hint(extra or module)}"
        ) from None
