"""Reading and writing recordings: :func:`load` and :func:`save` over every supported format.

========================  ==================================  ===========================
format                    extensions                          written by :func:`save`
========================  ==================================  ===========================
``"nwb"`` (NWB 2.x)       ``.nwb``                            yes (h5py; pynwb reads it)
``"nix"`` (through neo)   ``.nix``                            yes (neo's NixIO)
``"npz"``                 ``.npz``                            yes
``"csv"``                 ``.csv``                            yes
``"neo"``                 any other extension neo reads       no
========================  ==================================  ===========================

The modules :mod:`~spikeglm.io.nwb`, :mod:`~spikeglm.io.neo_io` and :mod:`~spikeglm.io.plain` describe
what each format holds. neo's pickle files are refused. neo is imported only when a neo format is used.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikeglm._files import atomic_write
from spikeglm.recording import Recording

__all__ = ["FORMATS", "load", "save"]

# format -> (extensions, module, reader, writer or None); modules are imported on first use.
FORMATS: dict[str, tuple[tuple[str, ...], str, str, str | None]] = {
    "nwb": ((".nwb",), "nwb", "read", "write"),
    "nix": ((".nix",), "neo_io", "read_nix", "write_nix"),
    "npz": ((".npz",), "plain", "read_npz", "write_npz"),
    "csv": ((".csv",), "plain", "read_csv", "write_csv"),
    "neo": ((), "neo_io", "read", None),
}


def load(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    empty_units: str = "drop",
    units: Sequence[str] | None = None,
    **options: Any,
) -> Recording:
    """Read the sorted units' spike times of a recording.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or, for neo formats stored as folders, the folder).
    format : {"nwb", "nix", "npz", "csv", "neo"}, optional
        The format; default from the extension. Extensions that are not spikeglm's own go to neo.
    empty_units : {"drop", "keep", "error"}
        Units without spikes: drop them with a warning naming them, keep them, or refuse the file.
    units : sequence of str, optional
        Keep only these units, in this order. NWB files are read lazily: only these units' spike times
        are read from the file.
    **options
        Passed to the format's reader, e.g. ``name_column="unit_name"`` for NWB.

    Returns
    -------
    Recording

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the format is unknown or the file cannot be read; the message names the file.

    Examples
    --------
    >>> import spikeglm as sg
    >>> rec = load(sg.examples.path("example.nwb"))  # the bundled example recording
    >>> rec.bin("5 ms", trial_length="500 ms").counts.shape  # trials, bins, units
    (160, 100, 10)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = _format(path, format) if format is not None else _format_of(path)
    _, module, reader, _ = FORMATS[name]
    if units is not None and name == "nwb":
        return _function(module, reader)(path, empty_units=empty_units, units=units, **options)
    recording = _function(module, reader)(path, empty_units=empty_units, **options)
    return recording if units is None else recording.select_units(units)


def save(
    recording: Recording, path: str | os.PathLike, *, format: str | None = None, overwrite: bool = False
) -> None:
    """Write ``recording`` to ``path`` atomically (a temporary file renamed into place).

    Parameters
    ----------
    recording : Recording
    path : str or os.PathLike
        ``.nwb``, ``.nix``, ``.npz`` or ``.csv``.
    format : {"nwb", "nix", "npz", "csv"}, optional
        The format; default from the extension.
    overwrite : bool
        Replace an existing file; otherwise an existing file is left untouched and FileExistsError raised.

    Raises
    ------
    ValueError
        If the format cannot be written, or ``path`` is the file the recording was read from
        (``recording.source``), even with ``overwrite``.
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    name = _format(path, format) if format is not None else _format_of(path)
    _, module, _, writer = FORMATS[name]
    if writer is None:
        writable = ", ".join(f"{key} ({FORMATS[key][0][0]})" for key, spec in FORMATS.items() if spec[3])
        raise ValueError(f"{path}: spikeglm cannot write the {name} format; it writes {writable}")
    write = _function(module, writer)
    # The file the recording was read from is never replaced: NWB units are read from it lazily.
    atomic_write(
        path, lambda temporary: write(recording, temporary), overwrite=overwrite, inputs=[recording.source]
    )


def _format(path: Path, name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"{path}: unknown format {name!r}; use one of {', '.join(FORMATS)}")
    return name


def _format_of(path: Path) -> str:
    """The format of a path, from its extension."""
    suffix = path.suffix.lower()
    for name, (extensions, *_) in FORMATS.items():
        if suffix in extensions:
            return name
    if path.is_dir():
        return "neo"
    neo_io = importlib.import_module("spikeglm.io.neo_io")
    if suffix in neo_io.PICKLE_SUFFIXES:
        return "neo"  # the neo reader refuses pickles with an explanation
    own = [extension for extensions, *_ in FORMATS.values() for extension in extensions]
    neo_extensions = neo_io.neo_extensions(own)
    if suffix in neo_extensions:
        return "neo"
    raise ValueError(
        f"{path}: unknown extension {path.suffix or '(none)'!r}; spikeglm reads {', '.join(own)} and, "
        f"through neo, {', '.join(neo_extensions)}; or pass format="
    )


def _function(module: str, name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module(f"spikeglm.io.{module}"), name)
