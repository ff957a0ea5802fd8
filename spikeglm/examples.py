"""The example recordings bundled with spikeglm, and their ground truth.

The project's ``data/`` folder is installed with the package, so these files are found the same way in
a source checkout (editable install) and in an installed wheel:

``example.nwb``
    10 recorded units of a simulated network with 2 hidden neurons, 80 trials of 1 s (NWB 2.x).
``example.nix``
    The same spikes through neo's NixIO, as one continuous segment of 80 s.
``example_truth.json``
    The true connectivity of all 12 neurons (:class:`spikeglm.Connectivity`).
``example_hidden.npz``
    The hidden neurons' spike times, to compare with what a fit infers.

``data/make_example.py`` in the source checkout regenerates them.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

#: The names of the bundled files.
NAMES = ("example.nwb", "example.nix", "example_truth.json", "example_hidden.npz")

#: The package whose data files are the project's data/ folder (pyproject.toml maps it there).
_PACKAGE = "spikeglm._example_data"

# An installation that is not a folder on disk (a zip) has its files copied out on first use; the
# copies are removed when the interpreter exits.
_copies = contextlib.ExitStack()
atexit.register(_copies.close)


def path(name: str = "example.nwb") -> Path:
    """The path of one bundled example file.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.

    Returns
    -------
    Path
        Where the file lies; it is not opened, so a checkout whose data/ was deleted gives a path that
        does not exist (``data/make_example.py`` writes it again).

    Raises
    ------
    ValueError
        If ``name`` is not a bundled file.

    Examples
    --------
    >>> import spikeglm as sg
    >>> counts = sg.load(sg.examples.path("example.nwb")).bin("5 ms")
    >>> truth = sg.Connectivity.load(sg.examples.path("example_truth.json"))
    """
    if name not in NAMES:
        raise ValueError(f"unknown example {name!r}; choose one of {', '.join(NAMES)}")
    return _copies.enter_context(resources.as_file(resources.files(_PACKAGE) / name))
