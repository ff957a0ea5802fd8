"""The example recordings bundled with spikeglm, and their ground truth.

They lie in the package's folder ``spikeglm/data/`` and are installed with it as package data, so they
are found the same way in a source checkout (editable install) and in an installed wheel:

``example.nwb``
    10 recorded units of a simulated network with 2 hidden neurons, 80 trials of 1 s (NWB 2.x). The
    hidden neurons drive the recorded ones strongly: a fit with 2 hidden neurons predicts held-out
    trials better than a GLM of the recorded units alone.
``example.nix``
    The same spikes through neo's NixIO, as one continuous segment of 80 s.
``example_truth.json``
    The true connectivity of all 12 neurons (:class:`spikeglm.Connectivity`).
``example_hidden.npz``
    The hidden neurons' spike times, to compare with what a fit infers.

``scripts/make_example.py`` in the source checkout regenerates them.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

import numpy as np

from spikeglm.counts import SpikeCounts
from spikeglm.recording import Recording

#: The names of the bundled files.
NAMES = ("example.nwb", "example.nix", "example_truth.json", "example_hidden.npz")

#: The folder of the bundled files, inside the package (pyproject.toml installs it as package data).
_FOLDER = "data"

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
        Where the file lies; it is not opened, so a checkout whose ``spikeglm/data/`` was deleted gives
        a path that does not exist (``scripts/make_example.py`` writes it again).

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
    return _copies.enter_context(resources.as_file(resources.files("spikeglm") / _FOLDER / name))


def hidden_counts(like: SpikeCounts) -> SpikeCounts:
    """The true hidden neurons' spikes of the bundled example, binned as ``like``.

    Parameters
    ----------
    like : SpikeCounts
        Counts binned from ``example.nwb`` by its trials table (all trials, or some picked with
        :meth:`SpikeCounts.select_trials`): their bin size and trial start times are used.

    Returns
    -------
    SpikeCounts
        Counts (trials, bins, hidden) of the units ``hidden-0``, ``hidden-1``, ... in ``like``'s trials.

    Raises
    ------
    ValueError
        If ``like``'s trials are not trials of the example (no start times, or other starts or lengths).

    Examples
    --------
    >>> import spikeglm as sg
    >>> counts = sg.load(sg.examples.path("example.nwb")).bin("5 ms")
    >>> sg.examples.hidden_counts(counts[60:]).counts.shape
    (20, 200, 2)
    """
    with np.load(path("example_hidden.npz"), allow_pickle=False) as data:
        units = [str(unit) for unit in data["units"]]
        times = [data["spike_times"][data["unit_ids"] == unit] for unit in units]
        recording = Recording(
            times,
            units,
            float(data["t_start"]),
            float(data["t_stop"]),
            trials=data["trials"],
            empty_units="keep",
        )
    binned = recording.bin(like.bin_size)
    starts = np.asarray(binned.metadata["trial_starts_s"])
    wanted = np.asarray(like.metadata.get("trial_starts_s", []), dtype=float)
    index = np.clip(np.searchsorted(starts, wanted - 1e-9), 0, len(starts) - 1)
    if len(wanted) != like.n_trials or binned.n_bins != like.n_bins or not np.allclose(starts[index], wanted):
        raise ValueError(
            "hidden_counts: like must be counts of example.nwb binned by its trials (some of them), which "
            "carry their trials' start times"
        )
    return binned.select_trials(index)
