"""Any format neo reads (NIX, Spike2, Plexon, Blackrock, ...), and NIX files written through neo.

Reading takes every SpikeTrain of every Segment of every Block, Segments in file order, as
``Recording.from_neo`` takes neo objects in memory (:func:`spikeglm.io.objects.neo_parts`): with two or
more Segments each is a trial, laid end to end where they overlap, and the SpikeTrains of one unit are
matched across Segments by name.

neo's pickle format (``.pkl``, ``.pickle``) is refused: unpickling a file can run any code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import neo
import numpy as np
from neo.io import NixIO, PickleIO

from spikeglm.io.objects import neo_parts
from spikeglm.recording import Recording

__all__ = ["PICKLE_SUFFIXES", "neo_extensions", "read", "read_nix", "write_nix"]

# neo's pickle format: refused, whatever reads it (the package's load routes these files here).
PICKLE_SUFFIXES = (".pkl", ".pickle")

_SIMPLE = (str, int, float, bool, np.integer, np.floating, np.bool_)
_SPIKETRAIN_ARGUMENTS = {"times", "t_start", "t_stop", "units", "name", "dtype", "copy", "sampling_rate"} | {
    "waveforms",
    "left_sweep",
    "file_origin",
    "description",
    "array_annotations",
}


def neo_extensions(exclude: Iterable[str] = ()) -> list[str]:
    """The file extensions (with a dot) of the formats neo reads, but its pickle format and ``exclude``."""
    extensions = {f".{extension.lower()}" for io in neo.io.iolist for extension in io.extensions if extension}
    return sorted(extensions - set(PICKLE_SUFFIXES) - set(exclude))


def read(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read the spike trains of a file or folder in any format neo reads (see the module's description).

    Raises
    ------
    ValueError
        If it is a pickle file, no neo IO recognises it, or neo fails to read it.
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path}: refusing to unpickle {path.name}: pickle files can execute code; "
            "convert it to NIX or NWB"
        )
    try:
        candidates = [io for io in neo.io.list_candidate_ios(path) if io is not PickleIO]
    except ValueError as error:
        raise ValueError(f"{path}: no neo IO reads this file ({error})") from None
    errors = []
    for io_class in candidates:
        try:
            return _read_with(io_class, path, empty_units)
        except _NeoFailure as failure:
            errors.append(f"{io_class.__name__}: {failure.__cause__}")
    raise ValueError(f"{path}: neo could not read it ({'; '.join(errors) or 'no candidate IO'})")


def read_nix(path: Path, *, empty_units: str = "drop") -> Recording:
    """Read the spike trains of a NIX file with neo's NixIO (see the module's description)."""
    try:
        return _read_with(NixIO, path, empty_units)
    except _NeoFailure as failure:
        raise ValueError(f"{path}: is not a readable NIX file ({failure.__cause__})") from None


class _NeoFailure(Exception):
    """neo raised while opening or reading a file (the cause holds neo's exception)."""


def _read_with(io_class: type, path: Path, empty_units: str) -> Recording:
    # Anything may fail inside a third-party reader; keep its message as the cause.
    try:
        io = io_class(str(path), mode="ro") if io_class is NixIO else io_class(str(path))
        try:
            blocks = io.read(lazy=False)
        finally:
            if hasattr(io, "close"):
                io.close()
    except Exception as error:
        raise _NeoFailure from error
    return _recording(blocks, path, empty_units, io_class.__name__)


def _recording(blocks: list[neo.Block], path: Path, empty_units: str, reader: str) -> Recording:
    parts = neo_parts(blocks, f"{path} (read with neo's {reader})")
    assumed = {"reader": f"neo's {reader}", **parts["annotations"].pop("assumed")}
    parts["annotations"].update(reader=reader, assumed=assumed)
    return Recording(**parts, source=path, empty_units=empty_units)


def write_nix(recording: Recording, path: Path) -> None:
    """Write ``recording`` as a NIX file through neo: one Segment per trial, one SpikeTrain per unit.

    Without trials there is one Segment, ``[t_start, t_stop]``. Spikes outside every trial are not
    written. SpikeTrains carry the unit id as ``name`` and the unit's annotations of simple types
    (str, int, float, bool).
    """
    whole = [[float(recording.t_start), float(recording.t_stop)]]
    spans = whole if recording.trials is None else recording.trials
    block = neo.Block(name=str(recording.annotations.get("name") or "spikeglm recording"))
    for number, (start, stop) in enumerate(np.asarray(spans, dtype=np.float64)):
        segment = neo.Segment(name=f"trial {number}")
        for unit, times, notes in zip(
            recording.unit_ids, recording.spike_times, recording.unit_annotations, strict=True
        ):
            # [start, stop), but the recording's last spike, at t_stop, stays in.
            side: Literal["left", "right"] = "right" if stop >= float(recording.t_stop) else "left"
            inside = times[np.searchsorted(times, start) : np.searchsorted(times, stop, side=side)]
            simple = {
                key: value
                for key, value in notes.items()
                if isinstance(value, _SIMPLE) and key not in _SPIKETRAIN_ARGUMENTS
            }
            train = neo.SpikeTrain(inside, t_start=start, t_stop=stop, units="s", name=str(unit), **simple)
            segment.spiketrains.append(train)
        block.segments.append(segment)
    io = NixIO(str(path), mode="ow")
    try:
        io.write_block(block)
    finally:
        io.close()
