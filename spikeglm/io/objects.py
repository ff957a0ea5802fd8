"""Spike trains that other toolkits hold in memory, as the parts of a :class:`~spikeglm.Recording`.

Each function returns the keyword arguments of :class:`~spikeglm.Recording` (``spike_times``,
``unit_ids``, ``t_start``, ``t_stop``, ``trials``, ``annotations``, ``unit_annotations``), which
``Recording.from_pynapple``, ``Recording.from_spikeinterface`` and ``Recording.from_neo`` build on; the
neo reader of files (:mod:`spikeglm.io.neo_io`) uses :func:`neo_parts` too. None of these toolkits is
imported: an object is recognised by what it has (:func:`kind_of`), and only read, never changed.

- **pynapple** (:func:`pynapple_parts`): a ``TsGroup``'s units in the order of its keys. They are named
  by the first of the metadata columns ``unit_name``, ``name``, ``label`` that holds unique text (as
  pynapple's NWB loader gives them), else by their keys; the other metadata columns but pynapple's
  computed ``rate`` become the units' annotations, with the key as ``"tsgroup_key"``. ``trials`` (an
  ``IntervalSet``) gives the trials; without it, a time support of several intervals does, one trial
  each. The span runs from the first start to the last end of the time support and the trials.
- **SpikeInterface** (:func:`spikeinterface_parts`): a sorting's units in the order of
  ``get_unit_ids()``, their times in seconds as the sorting gives them (its registered recording's
  times, else the samples over the sampling frequency from the segment's start). One segment
  (``segment_index``, or a sorting of one segment) is the whole recording; with several, each segment
  is a trial on its own clock, laid end to end as neo's Segments are (below). A segment spans its
  recording where one is registered, else its start to its last spike. The properties of one simple
  value per unit become the units' annotations; the ``quality`` property (phy's curated group) or else
  ``KSLabel`` (Kilosort's) gives the annotation ``"label"``, ``unsorted`` where a unit has none, as
  :mod:`spikeglm.io.phy` labels phy's folders.
- **neo** (:func:`neo_parts`): every SpikeTrain of every Segment of a Block (or of a list of Blocks,
  as neo's IOs read them), of one Segment, or of a list of SpikeTrains (one Segment spanning them):

  - With two or more Segments, each Segment is a trial ``[t_start, t_stop]``. When Segments overlap in
    time (typically every trial starting at 0 s), they are laid end to end: each one that starts before
    the previous one stops is shifted to start where it stopped (``annotations["segment_offsets_s"]``).
  - The SpikeTrains of one unit in different Segments are matched by a key: the SpikeTrain's ``name``,
    else its ``unit_id`` or ``unit_name`` annotation, else its position within the Segment. The key is
    the unit's id. The unit's annotations are those of its first SpikeTrain.
  - ``t_start`` and ``t_stop`` are the first start and the last stop of the Segments.

Times are checked as every recording's are (:class:`~spikeglm.Recording`): NaN, infinite or unsorted
spike times are refused naming the unit, and so are duplicate unit ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spikeglm.extras import install_hint
from spikeglm.io.signals import pynapple_times
from spikeglm.unitids import NAME_COLUMNS, listing

__all__ = ["KINDS", "kind_of", "neo_parts", "pynapple_parts", "segments_parts", "spikeinterface_parts"]

#: The objects that :func:`kind_of` recognises, by the name of the ``Recording.from_...`` that reads them.
KINDS = {
    "pynapple": f"a pynapple TsGroup (the pynapple extra: {install_hint('pynapple')})",
    "spikeinterface": (
        f"a SpikeInterface sorting (the spikeinterface extra: {install_hint('spikeinterface')})"
    ),
    "neo": "a neo Block, Segment, list of Blocks or list of SpikeTrains",
}

#: One segment of a recording: its start and stop in s, and per unit its key, times in s, annotations.
Piece = tuple[float, float, list[tuple[str, np.ndarray, dict[str, Any]]]]

_SORTING_METHODS = ("get_unit_ids", "get_num_segments", "get_sampling_frequency", "get_unit_spike_train")
#: SpikeInterface's properties that label units, in this order: phy's curated group, Kilosort's label.
_LABEL_PROPERTIES = ("quality", "KSLabel")
_KEY_ANNOTATIONS = ("unit_id", "unit_name")
#: NixIO's own bookkeeping: object names that must stay unique within a file.
_NIX_BOOKKEEPING = ("nix_name",)
_SIMPLE = (str, int, float, bool)


def kind_of(obj: Any) -> str | None:
    """Which of :data:`KINDS` ``obj`` is (``"pynapple"``, ``"spikeinterface"``, ``"neo"``), or None."""
    if hasattr(obj, "time_support") and callable(getattr(obj, "keys", None)):
        return "pynapple"
    if all(callable(getattr(obj, method, None)) for method in _SORTING_METHODS):
        return "spikeinterface"
    if _neo_segments(obj) is not None:
        return "neo"
    return None


def _wrong_kind(kind: str, obj: Any) -> TypeError:
    """The refusal of an object that is not of ``kind``, naming what was expected."""
    return TypeError(f"Recording.from_{kind}: expected {KINDS[kind]}; got {_described(obj)}")


def _described(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__name__


# ----------------------------------------------------------------------------------------- pynapple


def pynapple_parts(group: Any, trials: Any = None) -> dict[str, Any]:
    """The parts of a recording from a pynapple ``TsGroup`` and, optionally, an ``IntervalSet`` of trials
    (or an ``(n_trials, 2)`` array of ``[start, end]`` in s); see the module's description.

    Raises
    ------
    TypeError
        If ``group`` is not a TsGroup.
    ValueError
        If it has no units, a unit's times are not numbers, or ``trials`` is not intervals.
    """
    if kind_of(group) != "pynapple":
        raise _wrong_kind("pynapple", group)
    where = "pynapple TsGroup"
    keys = list(group.keys())
    if not keys:
        raise ValueError(f"{where}: has no units")
    spike_times = [pynapple_times(group[key], f"{where}: unit {key!r}") for key in keys]
    columns = _pynapple_metadata(group, len(keys))
    names, named = _pynapple_names(columns, keys)
    notes = [
        {"tsgroup_key": _plain(key), **{name: _plain(values[k]) for name, values in columns.items()}}
        for k, key in enumerate(keys)
    ]
    support = _intervals(group.time_support, f"{where}: time_support")
    given = None if trials is None else _intervals(trials, "trials")
    spans = [part for part in (support, given) if part is not None and len(part)]
    bounds = np.concatenate(spans) if spans else None
    if given is not None:
        told = f"the {len(given)} intervals given (trials=)"
    elif support is not None and len(support) > 1:
        given, told = support, f"the {len(support)} intervals of the time support"
    else:
        told = "none (the time support is one interval)"
    return {
        "spike_times": spike_times,
        "unit_ids": names,
        "t_start": None if bounds is None else float(bounds[:, 0].min()),
        "t_stop": None if bounds is None else float(bounds[:, 1].max()),
        "trials": given,
        "annotations": {
            "assumed": {
                "units": named,
                "trials": told,
                "span": "the time support" + " and the trials" * (trials is not None),
            }
        },
        "unit_annotations": notes,
    }


def _pynapple_metadata(group: Any, n_units: int) -> dict[str, list[Any]]:
    """A TsGroup's metadata columns of one value per unit, but pynapple's computed ``rate``."""
    columns = {}
    for name in getattr(group, "metadata_columns", ()):
        if name == "rate":
            continue
        values = list(np.asarray(group.get_info(name), dtype=object))
        if len(values) == n_units:
            columns[str(name)] = values
    return columns


def _pynapple_names(columns: dict[str, list[Any]], keys: list[Any]) -> tuple[list[str], str]:
    """The units' names from the first naming column of unique text, else the keys; and how they were
    named, for ``annotations["assumed"]``."""
    passed = []
    for name in NAME_COLUMNS:
        values = columns.get(name)
        if values is None:
            continue
        if all(isinstance(value, str) for value in values) and len(set(values)) == len(values):
            return list(values), f"named by the metadata column {name!r}"
        passed.append(name)
    why = f" ({', '.join(passed)}: not unique text)" if passed else ""
    return [str(key) for key in keys], f"named by the TsGroup's keys{why}"


def _intervals(obj: Any, where: str) -> np.ndarray | None:
    """An IntervalSet's ``[start, end]`` rows (or an array of them) as an ``(n, 2)`` float64 array; None
    for an object without intervals (a TsGroup's missing time support)."""
    if obj is None:
        return None
    if hasattr(obj, "start") and hasattr(obj, "end"):
        obj = np.column_stack([np.asarray(obj.start), np.asarray(obj.end)])
    try:
        array = np.array(obj, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where}: expected a pynapple IntervalSet or an (n, 2) array of [start, end]; got "
            f"{_described(obj)} ({error})"
        ) from None
    if array.size == 0:
        return array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{where}: expected intervals of shape (n, 2); got shape {array.shape}")
    return array


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------------------------ SpikeInterface


def spikeinterface_parts(sorting: Any, segment_index: int | None = None) -> dict[str, Any]:
    """The parts of a recording from a SpikeInterface sorting: one segment (``segment_index``), or
    every segment, each a trial; see the module's description.

    Raises
    ------
    TypeError
        If ``sorting`` is not a sorting.
    ValueError
        If it has no units, or ``segment_index`` is not one of its segments.
    """
    if kind_of(sorting) != "spikeinterface":
        raise _wrong_kind("spikeinterface", sorting)
    where = "SpikeInterface sorting"
    n_segments = int(sorting.get_num_segments())
    if segment_index is not None:
        if isinstance(segment_index, bool) or not isinstance(segment_index, int | np.integer):
            raise ValueError(f"segment_index: expected a whole number; got {segment_index!r}")
        if not 0 <= segment_index < n_segments:
            raise ValueError(
                f"segment_index={segment_index} is out of range: the sorting has {n_segments} segment(s), "
                f"0 to {n_segments - 1}"
            )
    unit_ids = list(sorting.get_unit_ids())
    if not unit_ids:
        raise ValueError(f"{where}: has no units")
    notes = _sorting_annotations(sorting, len(unit_ids))
    pieces = []
    for index in range(n_segments) if segment_index is None else [int(segment_index)]:
        trains = [
            (str(unit), _seconds(sorting, unit, index), note)
            for unit, note in zip(unit_ids, notes, strict=True)
        ]
        pieces.append((*_segment_span(sorting, index, trains), trains))
    parts = segments_parts(pieces, where)
    chosen = "all" if segment_index is None else f"segment {segment_index} of {n_segments}"
    parts["annotations"]["assumed"]["segments"] = chosen
    parts["annotations"]["sampling_frequency_hz"] = float(sorting.get_sampling_frequency())
    return parts


def _seconds(sorting: Any, unit: Any, index: int) -> np.ndarray:
    """One unit's spike times in one segment, in seconds, as the sorting gives them."""
    times = sorting.get_unit_spike_train(unit, segment_index=index, return_times=True)
    return np.array(times, dtype=np.float64)


def _segment_span(
    sorting: Any, index: int, trains: list[tuple[str, np.ndarray, dict]]
) -> tuple[float, float]:
    """Where a segment starts and stops, in s: its registered recording's span where it has one, else
    the time of its first sample (0 s unless the sorting states one) to its last spike."""
    first_sample = getattr(sorting, "sample_index_to_time", None)
    start = float(first_sample(0, segment_index=index)) if callable(first_sample) else 0.0
    has_recording = getattr(sorting, "has_recording", None)
    if callable(has_recording) and has_recording():
        return start, float(sorting.get_end_time(segment_index=index))
    finite = [times[np.isfinite(times)] for _, times, _ in trains]  # the others are refused by unit
    return start, float(max((times.max() for times in finite if times.size), default=start))


def _sorting_annotations(sorting: Any, n_units: int) -> list[dict[str, Any]]:
    """Each unit's properties of simple values, and its ``"label"`` from :data:`_LABEL_PROPERTIES`."""
    notes: list[dict[str, Any]] = [{} for _ in range(n_units)]
    keys = getattr(sorting, "get_property_keys", None)
    for key in keys() if callable(keys) else ():
        values = sorting.get_property(key)
        if values is None or np.ndim(values) != 1 or len(values) != n_units:
            continue
        for note, value in zip(notes, values, strict=True):
            value = _plain(value)
            if isinstance(value, _SIMPLE):
                note[str(key)] = value
    if any(key in note for key in _LABEL_PROPERTIES for note in notes):
        for note in notes:
            found = (str(note.get(key, "")).strip() for key in _LABEL_PROPERTIES)
            note["label"] = next((value for value in found if value and value != "nan"), "unsorted")
    return notes


# ------------------------------------------------------------------------------------------- segments


def segments_parts(pieces: Sequence[Piece], where: str) -> dict[str, Any]:
    """The parts of a recording made of segments: each segment a trial where there are several, laid end
    to end where they overlap, and each unit's times joined across segments by its key (see the
    module's description). ``where`` names the source in messages.

    Raises
    ------
    ValueError
        If a segment does not end after it starts, or holds two units of one key.
    """
    times: dict[str, list[np.ndarray]] = {}
    notes: dict[str, dict[str, Any]] = {}
    spans, offsets, previous_stop = [], [], -np.inf
    for number, (start, stop, trains) in enumerate(pieces):
        if not start < stop:
            raise ValueError(
                f"{where}: segment {number} spans {start:g} s to {stop:g} s; it must end after it starts"
            )
        offset = max(0.0, previous_stop - start)
        offsets.append(offset)
        spans.append((start + offset, stop + offset))
        previous_stop = stop + offset
        keys = [key for key, _, _ in trains]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(
                f"{where}: segment {number} has several units with the id(s) {listing(duplicates)}; "
                "units are matched across segments by id"
            )
        for key, values, unit_notes in trains:
            times.setdefault(key, []).append(values + offset)
            notes.setdefault(key, unit_notes)
    bounds = np.array(spans)  # (segments, 2): where each segment starts and stops, laid end to end
    told = f"one per segment ({len(pieces)})" if len(pieces) > 1 else "none (one segment)"
    annotations: dict[str, Any] = {}
    if any(offsets):
        annotations["segment_offsets_s"] = offsets
        told += ", laid end to end where they overlap"
    annotations["assumed"] = {"trials": told}
    return {
        "spike_times": [np.concatenate(parts) for parts in times.values()],
        "unit_ids": list(times),
        "t_start": float(bounds[:, 0].min()),
        "t_stop": float(bounds[:, 1].max()),
        "trials": bounds if len(pieces) > 1 else None,
        "annotations": annotations,
        "unit_annotations": list(notes.values()),
    }


# ----------------------------------------------------------------------------------------------- neo


def neo_parts(obj: Any, where: str = "neo objects") -> dict[str, Any]:
    """The parts of a recording from neo objects: a Block, a list of Blocks, a Segment or a list of
    SpikeTrains (see the module's description); the Blocks' names and annotations become the
    recording's. ``where`` names the source in messages.

    Raises
    ------
    TypeError
        If ``obj`` is none of those.
    ValueError
        If it holds no spike trains, or a Segment holds two spike trains of one key.
    """
    segments = _neo_segments(obj)
    if segments is None:
        raise _wrong_kind("neo", obj)
    # A Segment with no data at all has no times (t_start is None): it holds no trial.
    segments = [segment for segment in segments if segment.t_start is not None]
    if not any(segment.spiketrains for segment in segments):
        raise ValueError(f"{where}: has no spike trains; spikeglm needs sorted units")
    pieces = []
    for segment in segments:
        start, stop = (_neo_seconds(value) for value in (segment.t_start, segment.t_stop))
        trains = [
            (
                _key(train, position),
                _neo_times(train),
                _annotations(train),
            )
            for position, train in enumerate(segment.spiketrains)
        ]
        pieces.append((float(start), float(stop), trains))
    parts = segments_parts(pieces, where)
    blocks = obj if isinstance(obj, list | tuple) else [obj]
    parts["annotations"] = {
        **{
            key: value
            for block in blocks
            if _is_block(block)
            for key, value in {"name": block.name, **block.annotations}.items()
            if key not in _NIX_BOOKKEEPING and value is not None
        },
        **parts["annotations"],
    }
    return parts


def _neo_segments(obj: Any) -> list[Any] | None:
    """The Segments of neo objects (a Block, Blocks, a Segment, or SpikeTrains as one Segment), or None
    for anything else."""
    if hasattr(obj, "spiketrains"):
        return [obj]
    if _is_block(obj):
        return list(obj.segments)
    if not isinstance(obj, list | tuple) or not obj:
        return None
    if all(_is_block(block) for block in obj):
        return [segment for block in obj for segment in block.segments]
    if all(_is_spiketrain(train) for train in obj):
        return [_TrainsSegment(list(obj))]
    return None


def _is_block(obj: Any) -> bool:
    """Whether ``obj`` holds a list of Segments (a SpikeInterface sorting's segments hold no spike trains)."""
    segments = getattr(obj, "segments", None)
    if segments is None or isinstance(segments, str) or not hasattr(segments, "__iter__"):
        return False
    return all(hasattr(segment, "spiketrains") for segment in segments)


def _is_spiketrain(obj: Any) -> bool:
    return all(hasattr(obj, name) for name in ("times", "t_start", "t_stop", "annotations"))


class _TrainsSegment:
    """Spike trains given without a Segment, as one Segment from their first start to their last stop."""

    def __init__(self, spiketrains: list[Any]) -> None:
        self.spiketrains = spiketrains
        self.t_start = min((train.t_start for train in spiketrains), key=_neo_seconds)
        self.t_stop = max((train.t_stop for train in spiketrains), key=_neo_seconds)


def _neo_seconds(value: Any) -> float:
    """A neo time (a quantity) in seconds."""
    return float(value.rescale("s").magnitude)


def _neo_times(train: Any) -> np.ndarray:
    """A SpikeTrain's times in seconds, as a new float64 array."""
    return np.array(train.times.rescale("s").magnitude, dtype=np.float64)


def _key(train: Any, position: int) -> str:
    """The id that matches one unit's SpikeTrains across Segments."""
    if train.name:
        return str(train.name)
    for name in _KEY_ANNOTATIONS:
        if train.annotations.get(name) is not None:
            return str(train.annotations[name])
    return str(position)


def _annotations(train: Any) -> dict[str, Any]:
    values = {key: value for key, value in train.annotations.items() if key not in _NIX_BOOKKEEPING}
    if getattr(train, "description", None):
        values["description"] = train.description
    return values
