"""Reading and writing recordings: :func:`load` and :func:`save` over every supported format.

=========================  ====================================  ===========================
format                     found by                              written by :func:`save`
=========================  ====================================  ===========================
``"nwb"`` (NWB 2.x)        ``.nwb``                              yes (h5py; pynwb reads it)
``"nix"`` (through neo)    ``.nix``                              yes (neo's NixIO)
``"npz"``                  ``.npz``                              yes
``"csv"``                  ``.csv``                              yes
``"phy"`` (phy, Kilosort)  a folder with ``spike_times.npy``     no
``"mat"`` (MATLAB)         ``.mat`` (v5 and v7.3)                no
``"text"`` (per unit)      ``.txt``, ``.gz``, a glob pattern,    no
                           a folder of ``.txt``/``.txt.gz``
``"neo"``                  any other extension neo reads         no
=========================  ====================================  ===========================

No reader holds more than a budget of memory (:mod:`~spikeglm.io.limits`, 1 GiB by default): a small
file that declares or decompresses to more is refused with one line before it is read.

The modules :mod:`~spikeglm.io.nwb`, :mod:`~spikeglm.io.neo_io`, :mod:`~spikeglm.io.plain`,
:mod:`~spikeglm.io.phy`, :mod:`~spikeglm.io.matlab` and :mod:`~spikeglm.io.text` describe what each
format holds. Every reader records what it assumed (time unit, span, trials, units kept) in the
recording's ``annotations["assumed"]``, which ``spikeglm info`` prints. neo's pickle files are
refused. neo is imported only when a neo format is used.

:func:`load` also takes spike trains that other toolkits hold in memory, a pynapple ``TsGroup``, a
SpikeInterface sorting or neo's Blocks, Segments and SpikeTrains (:mod:`~spikeglm.io.objects`), and
chooses units, labels and a window in them as in files.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikeglm.files import atomic_write
from spikeglm.io.limits import reading
from spikeglm.io.matlab import NeoMatlabFile
from spikeglm.io.objects import KINDS, kind_of
from spikeglm.io.phy import is_phy_folder
from spikeglm.io.text import is_pattern, unit_files
from spikeglm.recording import Recording
from spikeglm.unitids import listing

__all__ = ["FORMATS", "load", "save"]

#: The unit annotations that ``label=`` reads, in this order: phy's and Kilosort's labels, an NWB column.
_LABEL_KEYS = ("label", "quality")

# format -> (extensions, module, reader, writer or None); modules are imported on first use.
FORMATS: dict[str, tuple[tuple[str, ...], str, str, str | None]] = {
    "nwb": ((".nwb",), "nwb", "read", "write"),
    "nix": ((".nix",), "neo_io", "read_nix", "write_nix"),
    "npz": ((".npz",), "plain", "read_npz", "write_npz"),
    "csv": ((".csv",), "plain", "read_csv", "write_csv"),
    "phy": ((), "phy", "read", None),
    "mat": ((".mat",), "matlab", "read", None),
    "text": ((".txt", ".gz"), "text", "read", None),
    "neo": ((), "neo_io", "read", None),
}


def load(
    path: str | os.PathLike | Any,
    *,
    format: str | None = None,
    empty_units: str = "drop",
    units: Sequence[str] | None = None,
    label: str | Sequence[str] | None = None,
    trials: str | Any | None = None,
    t_start: float | str | None = None,
    t_stop: float | str | None = None,
    min_spikes: int = 0,
    min_rate: float = 0.0,
    read_limit: int | str | None = None,
    **options: Any,
) -> Recording:
    """Read the sorted units' spike times of a recording, from a file or from an object in memory.

    Parameters
    ----------
    path : str or os.PathLike, or a pynapple TsGroup, SpikeInterface sorting or neo objects
        The file, the folder (phy/Kilosort output, per-unit text files, neo formats stored as folders)
        or, for per-unit text files, a glob pattern such as ``"cells/cell*.txt.gz"``. Or spike trains
        already in memory, read by :meth:`Recording.from_pynapple` (a ``TsGroup``),
        :meth:`Recording.from_spikeinterface` (a sorting; ``segment_index=`` is its option) or
        :meth:`Recording.from_neo` (a Block, a list of Blocks, a Segment or a list of SpikeTrains);
        the choice of units, labels, window and activity below applies to them as to files, and
        ``annotations["assumed"]["format"]`` names the kind (``"pynapple"``, ``"spikeinterface"``,
        ``"neo"``).
    format : {"nwb", "nix", "npz", "csv", "phy", "mat", "text", "neo"}, optional
        The format of a file; default from the extension or the folder's contents. Extensions that
        are not spikeglm's own go to neo.
    empty_units : {"drop", "keep", "error"}
        Units without spikes: drop them with a warning naming them, keep them, or refuse the file.
    units : sequence of str, optional
        Keep only these units, in this order. NWB files are read lazily: only these units' spike times
        are read from the file.
    label : str or sequence of str, optional
        Keep only the units with this label (or one of these), e.g. ``"good"`` for phy's curated
        units: the unit annotation ``"label"`` (see :mod:`~spikeglm.io.phy`), else ``"quality"`` (a
        column of an NWB Units table).
    trials : str or pynapple.IntervalSet, optional
        NWB: the TimeIntervals table under ``/intervals`` that gives the trials, e.g.
        ``"encoding_table"``; default ``"trials"`` when there is one. A pynapple TsGroup: the
        IntervalSet of the trials.
    t_start, t_stop : float or str, optional
        Keep only this window of the recording (a bare number is in seconds), see
        :meth:`Recording.window`: it must lie inside the span the file states (e.g. an NWB file's
        ``obs_intervals``), and the trials it cuts are dropped with a warning.
    min_spikes : int
        Keep only the units with at least this many spikes (in the window).
    min_rate : float
        Keep only the units firing at least this many spikes per second on average (in the window).
    read_limit : int or str, optional
        The most memory the reading of a file may take, in bytes or as ``"4 GB"``; default 1 GiB, or
        the environment variable ``SPIKEGLM_READ_LIMIT`` (see :mod:`~spikeglm.io.limits`). A file that
        declares or decompresses to more is refused before it is read.
    **options
        Passed to the format's reader: ``name_column`` and ``units_table`` (NWB: the Units table's path in
        the file, e.g. ``"processing/ecephys/units"``); ``time_unit`` and ``sampling_rate``
        (MATLAB, text, phy); ``variable`` and ``columns`` (MATLAB); ``segment_index``
        (a SpikeInterface sorting).

    Returns
    -------
    Recording
        ``annotations["assumed"]`` says what was assumed and kept, one phrase per subject.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (or, as a pattern, matches nothing).
    TypeError
        If ``path`` is neither a path nor one of the objects above; the message names those accepted.
    ValueError
        If the format is unknown, an option does not apply to it (``format`` and ``read_limit`` do not
        apply to objects), the file or object cannot be read, or the choice of units or window leaves
        nothing; the message names the file or object and the option.

    Examples
    --------
    >>> import spikeglm as sg
    >>> rec = load(sg.examples.path("example.nwb"))  # the bundled example recording
    >>> rec.bin("5 ms", trial_length="500 ms").counts.shape  # trials, bins, units
    (160, 100, 10)
    >>> window = load(sg.examples.path("example.nwb"), t_start=10, t_stop=20)  # trials inside are kept
    >>> float(window.duration), len(window.trials)
    (10.0, 10)
    """
    if isinstance(path, str | os.PathLike):
        recording, name, where = _read(path, format, empty_units, units, trials, read_limit, options)
    else:
        recording, name, where = _convert(path, format, empty_units, trials, read_limit, options)
    n_read = recording.n_units
    kept = []
    if units is not None:
        recording = recording.select_units(units) if name != "nwb" else recording
        kept.append(f"{len(units)} named")
    if label is not None:
        labels = [label] if isinstance(label, str) else list(label)
        recording = _with_label(recording, labels, where)
        kept.append(f"labelled {' or '.join(labels)}")
    if t_start is not None or t_stop is not None:
        recording = recording.window(t_start, t_stop, empty_units=empty_units)
    if min_spikes or min_rate:
        recording = recording.select_active(min_spikes, min_rate)
        floors = [f"{min_spikes} spikes"] * bool(min_spikes) + [f"{min_rate:g} Hz"] * bool(min_rate)
        kept.append(f"with at least {' and '.join(floors)}")
    assumed = {"format": name, **recording.annotations.get("assumed", {})}
    if t_start is not None or t_stop is not None:
        assumed["window"] = f"{float(recording.t_start):g} s to {float(recording.t_stop):g} s"
    if kept:
        assumed["units kept"] = f"{recording.n_units} of {n_read}: " + "; ".join(kept)
    recording.annotations["assumed"] = assumed
    return recording


def _read(
    path: str | os.PathLike,
    format: str | None,
    empty_units: str,
    units: Sequence[str] | None,
    trials: str | None,
    read_limit: int | str | None,
    options: dict[str, Any],
) -> tuple[Recording, str, str]:
    """The recording a file holds as its format's reader gives it, the format, and the file's name."""
    path = Path(path)
    if not (path.exists() or is_pattern(path)):
        raise FileNotFoundError(f"{path}: no such file")
    name = _format(path, format) if format is not None else _format_of(path)
    _, module, reader_name, _ = FORMATS[name]
    reader = _function(module, reader_name)
    if trials is not None:
        options["trials"] = trials
    _check_options(reader, options, f"the {name} format", path)
    if units is not None and name == "nwb":
        options["units"] = units
    with reading(read_limit):
        try:
            recording = reader(path, empty_units=empty_units, **options)
        except NeoMatlabFile:
            if format is not None or options:  # the MATLAB reader was asked for, by name or options
                raise
            name = "neo"  # a MATLAB file neo wrote: read through neo
            recording = _function(*FORMATS[name][1:3])(path, empty_units=empty_units, **options)
    return recording, name, str(path)


def _convert(
    obj: Any,
    format: str | None,
    empty_units: str,
    trials: Any,
    read_limit: int | str | None,
    options: dict[str, Any],
) -> tuple[Recording, str, str]:
    """The recording an object in memory holds (see :mod:`~spikeglm.io.objects`), its kind, and its
    description for messages."""
    kind = kind_of(obj)
    if kind is None:
        raise TypeError(
            f"load: cannot read {type(obj).__name__!r} objects; expected a path (str or os.PathLike) to a "
            f"file or folder, or {', or '.join(KINDS.values())}"
        )
    where = f"the {kind} object given to load"
    for option, value in (("format", format), ("read_limit", read_limit)):
        if value is not None:
            raise ValueError(f"{where}: {option}= applies to files, not to objects in memory")
    if trials is not None:
        options["trials"] = trials
    convert = getattr(Recording, f"from_{kind}")
    _check_options(convert, options, f"a {kind} object", where)
    return convert(obj, empty_units=empty_units, **options), kind, where


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
    """The format of a path, from its extension, or for a folder or pattern from the files in it."""
    if is_pattern(path):
        return "text"
    if path.is_dir():
        if is_phy_folder(path):
            return "phy"
        try:
            unit_files(path)
            return "text"
        except ValueError:
            return "neo"
    suffix = path.suffix.lower()
    for name, (extensions, *_) in FORMATS.items():
        if suffix in extensions:
            return name
    neo_io = importlib.import_module("spikeglm.io.neo_io")
    if suffix in neo_io.PICKLE_SUFFIXES:
        return "neo"  # the neo reader refuses pickles with an explanation
    own = [extension for extensions, *_ in FORMATS.values() for extension in extensions]
    neo_extensions = neo_io.neo_extensions(own)
    if suffix in neo_extensions:
        return "neo"
    raise ValueError(
        f"{path}: unknown extension {path.suffix or '(none)'!r}; spikeglm reads {', '.join(own)}, phy and "
        f"Kilosort folders, folders of per-unit text files, and, through neo, {len(neo_extensions)} more "
        f"extensions; or pass format= (--format) with one of {', '.join(FORMATS)}"
    )


def _check_options(
    reader: Callable[..., Any], options: dict[str, Any], name: str, where: str | os.PathLike
) -> None:
    """Refuse options that a reader (or a ``Recording.from_...``) does not take, naming those it does;
    ``name`` is what it reads, ``where`` what messages start with."""
    accepted = [
        parameter
        for parameter in list(inspect.signature(reader).parameters)[1:]  # the first is what it reads
        if parameter not in ("empty_units", "units")
    ]
    foreign = [option for option in options if option not in accepted]
    if foreign:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
        raise ValueError(f"{where}: option(s) {', '.join(foreign)} do not apply to {name} ({takes})")


def _with_label(recording: Recording, labels: list[str], where: str) -> Recording:
    """The units whose label (annotation ``"label"``, else ``"quality"``) is one of ``labels``; ``where``
    names the recording in messages."""
    key = next(
        (key for key in _LABEL_KEYS if any(key in notes for notes in recording.unit_annotations)), None
    )
    if key is None:
        raise ValueError(
            f"{where}: its units carry no labels; label= (--label) keeps units by the label of a "
            "phy or Kilosort folder (cluster_group.tsv or cluster_KSLabel.tsv), an NWB Units table's "
            "quality column, a SpikeInterface sorting's quality or KSLabel property or a pynapple "
            "TsGroup's label or quality metadata"
        )
    found = [notes.get(key) for notes in recording.unit_annotations]
    keep = [unit for unit, value in zip(recording.unit_ids, found, strict=True) if value in labels]
    if not keep:
        present = sorted({str(value) for value in found if value is not None})
        raise ValueError(
            f"{where}: no unit is labelled {listing(labels)}; the labels ({key}) are {listing(present)}"
        )
    return recording.select_units(keep)


def _function(module: str, name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module(f"spikeglm.io.{module}"), name)
