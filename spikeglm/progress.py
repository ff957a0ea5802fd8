"""Progress bars of the loops a user waits on (fits, folds, bootstrap refits, jitter tests), by tqdm.

A bar is drawn only where someone watches: a text bar on a terminal (standard error a TTY), a widget in a
Jupyter notebook (a text bar there where ``ipywidgets`` is not installed), and nothing when the output
goes to a file or a pipe, or in a process of a ``torchrun`` launch other than the main one. Every function
that draws one takes ``progress``: ``None`` (the default) for that rule, ``True`` or ``False`` to force it.

Examples
--------
>>> from spikeglm.progress import progress_bar
>>> with progress_bar(3, "refits", "refit", show=False) as bar:
...     for _ in range(3):
...         bar.update()
>>> bar.disable  # show=False: nothing drawn, whoever watches
True
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from tqdm import std

from spikeglm import parallel

__all__ = ["progress_bar", "watched"]


def watched() -> bool:
    """Whether someone watches this process's progress: the main process, with standard error on a
    terminal or inside a Jupyter kernel."""
    if not parallel.is_main():
        return False
    return _in_notebook() or bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(total: int | None, description: str, unit: str, show: bool | None = None) -> Any:
    """A tqdm bar of ``total`` steps (None: unknown), drawn where :func:`watched` (or as ``show`` says).

    Use it as a context manager, so that the bar closes with the loop, whole or broken off.
    """
    shown = watched() if show is None else bool(show)
    options: dict[str, Any] = {"total": total, "desc": description, "unit": unit, "disable": not shown}
    if shown and _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm import notebook

        return notebook.tqdm(**options)
    return std.tqdm(file=sys.stderr, dynamic_ncols=True, **options)


def _in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's kernel shell, not its terminal)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and hasattr(shell, "kernel")
