"""The optional extras: importing one where a feature needs it, and naming it in messages.

An extra is a set of packages that ``pip install "spikeglm[NAME]"`` adds (``pyproject.toml``'s
``[project.optional-dependencies]``); nothing in the core needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["install_hint", "optional"]


def install_hint(extra: str) -> str:
    """How to install an extra: ``pip install "spikeglm[NAME]"``."""
    return f'pip install "spikeglm[{extra}]"'


def optional(name: str, needed_by: str, extra: str | None = None) -> Any:
    """Import the module ``name`` of an optional extra (``extra``, default ``name``), or say which one to
    install.

    Raises
    ------
    ModuleNotFoundError
        Naming ``needed_by`` and the extra, when the module is not installed.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"{needed_by} needs {name}, an optional extra: {install_hint(extra or name)}"
        ) from None
