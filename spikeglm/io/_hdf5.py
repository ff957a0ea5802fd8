"""What the HDF5-based readers (NWB, MATLAB v7.3) share: opening a file safely and wording h5py's errors.

HDF5 stores variable-length data (text columns, attributes such as MATLAB's ``MATLAB_fields``) in
*global heap collections*. A damaged size inside one can make the HDF5 library loop without end when it
reads that data, which no Python-level timeout can stop. :func:`open_file` therefore walks every
collection of the file from its raw bytes before h5py touches it, and refuses a file whose collections
do not add up.

A collection is the signature ``GCOL``, a version byte (1), three reserved bytes and its total size
(8 bytes, the file's usual length size), then its objects, each an index (2 bytes), a reference count
(2), 4 reserved bytes, the object's size (8) and its data padded to a multiple of 8 bytes, up to a
free-space object (index 0) whose size is the rest of the collection (a full collection may end with
fewer bytes than an object's header instead).
"""

from __future__ import annotations

import mmap
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np

from spikeglm.io.limits import Budget

__all__ = ["Reader", "damaged_heap", "external_link", "kind", "open_file", "read_with", "reason"]

#: What h5py and numpy raise on a damaged file, or on an object of a kind the reader did not expect.
DAMAGE = (OSError, KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError)
#: How deep a search of a file for groups goes, and how many groups in all it opens (hard links may loop).
SEARCH_DEPTH, SEARCH_GROUPS = 8, 10_000
_R = TypeVar("_R", bound="Reader")
_T = TypeVar("_T")


class Reader:
    """An open HDF5 file being read: its members reached without leaving it, and the memory its reads take
    (charged to a read :class:`~spikeglm.io.limits.Budget`). ``at`` names the object being read, for the
    message when h5py fails on it (:func:`read_with`)."""

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self.handle = handle
        self.path = path
        self.at = "/"
        self.budget = Budget(path)

    def refuse(self, name: str, problem: str) -> ValueError:
        """The error for the object ``name`` of the file."""
        return ValueError(f"{self.path}: {name} {problem}")

    def member(self, group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset | None:
        """``group[name]`` (one link, not a path); None when it is missing or a soft link to nothing.

        A link to another file, or a soft link that cannot be followed (a loop), is refused.
        """
        self.at = full = f"{group.name.rstrip('/')}/{name}"
        if "/" in name or name in ("", ".", ".."):
            return None
        outside = external_link(group, name)
        if outside:
            raise self.refuse(full, outside)
        try:
            found = group.get(name)
        except RuntimeError as error:
            raise self.refuse(full, f"is a link that cannot be followed ({reason(error)})") from None
        if found is not None and found.file.filename != self.handle.filename:
            raise self.refuse(
                full,
                f"leads into another file, {found.file.filename}; spikeglm reads only what the file itself "
                "holds",
            )
        return found

    def names(self, group: h5py.Group) -> list[str]:
        """The names of the members of ``group`` (their links are not followed)."""
        self.at = group.name
        return list(group.keys())

    def find(self, name: str) -> h5py.Group | h5py.Dataset | None:
        """The object at the path ``name`` from the root, one link at a time (:meth:`member`); None when
        missing."""
        found: h5py.Group | h5py.Dataset | None = self.handle
        for part in name.strip("/").split("/"):
            if not isinstance(found, h5py.Group):
                return None
            found = self.member(found, part)
        return found

    def groups(self, start: h5py.Group, names: Iterable[str]) -> Iterator[tuple[str, h5py.Group]]:
        """The groups among the members ``names`` of ``start`` and below them, with their paths.

        Only hard links are walked (no soft or external link is followed), breadth first, each group
        once (hard links may loop), to :data:`SEARCH_DEPTH` levels below ``names`` and
        :data:`SEARCH_GROUPS` groups in all.
        """
        top = start.name.rstrip("/")
        waiting = deque((start, name, f"{top}/{name}", 0) for name in names)
        seen: set[Any] = set()
        while waiting and len(seen) < SEARCH_GROUPS:
            parent, name, at, depth = waiting.popleft()
            self.at = at
            if not isinstance(parent.get(name, getlink=True), h5py.HardLink):
                continue
            group = parent[name]
            if not isinstance(group, h5py.Group) or group.id in seen:
                continue
            seen.add(group.id)
            yield at, group
            if depth < SEARCH_DEPTH:
                waiting.extend((group, key, f"{at}/{key}", depth + 1) for key in sorted(group.keys()))

    def text_attribute(self, obj: h5py.HLObject, name: str) -> str | None:
        """The text in the attribute ``name`` of ``obj``, or None when it has none (or not text)."""
        self.at = f"{obj.name} (its {name} attribute)"
        if name not in obj.attrs:
            return None
        # Check the type before reading: HDF5 can crash on a damaged attribute of another type.
        stored = obj.attrs.get_id(name)
        if stored.shape != () or kind(stored.dtype) != "text":
            return None
        value = obj.attrs[name]
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def read_with(path: Path, what: str, reader: Callable[[h5py.File, Path], _R], task: Callable[[_R], _T]) -> _T:
    """``task`` done on the file ``path`` (opened by :func:`open_file` as a ``what`` file, read through
    ``reader``), with h5py's and numpy's failures worded as one line naming the object being read."""
    handle = open_file(path, what)
    file = reader(handle, path)
    try:
        with handle:
            return task(file)
    except DAMAGE as error:
        if isinstance(error, ValueError) and str(error).startswith(f"{path}: "):
            raise
        raise ValueError(
            f"{path}: {file.at} cannot be read ({reason(error)}); the file may be truncated or damaged"
        ) from None


def kind(dtype: np.dtype) -> str:
    """What a dataset's values are, in words: numbers, booleans, text, references, or the dtype."""
    if h5py.check_string_dtype(dtype) is not None:
        return "text"
    if dtype.kind in "iuf":
        return "numbers"
    if dtype.kind == "b":
        return "booleans"
    if h5py.check_ref_dtype(dtype) is not None:
        return "references"
    return f"values of type {dtype}"


_SIGNATURE = b"GCOL\x01\x00\x00\x00"
#: The smallest collection HDF5 writes.
_SMALLEST = 4096
_HEADER = len(_SIGNATURE) + 8  # signature, version, reserved, collection size
_OBJECT_HEADER = 16  # index, references, reserved, size


def open_file(path: Path, kind: str) -> h5py.File:
    """``path`` opened read-only with h5py, once its heap collections are known to be sound.

    Raises
    ------
    ValueError
        One line naming the file: it is not readable HDF5 (``kind`` names what it was meant to be, e.g.
        ``"HDF5/NWB"``), or one of its heap collections is damaged.
    """
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: is not a readable {kind} file ({reason(error)})") from None
    offset = damaged_heap(path)
    if offset is not None:
        handle.close()
        raise ValueError(
            f"{path}: the heap of variable-length data at byte {offset} is damaged (its objects do not "
            "add up to its size); the file is damaged and cannot be read safely"
        )
    return handle


def damaged_heap(path: Path) -> int | None:
    """The byte offset of the first damaged global heap collection of the file, or None if all are sound.

    Only the bytes at each ``GCOL`` signature are read, through a memory map; a file without
    variable-length data has none.
    """
    with open(path, "rb") as raw:
        if raw.seek(0, 2) == 0:
            return None
        with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as data:
            start = data.find(_SIGNATURE)
            while start >= 0:
                if not _sound(data, start):
                    return start
                start = data.find(_SIGNATURE, start + 1)
    return None


def _sound(data: mmap.mmap, start: int) -> bool:
    """Whether the collection at ``start`` fits in the file and its objects fill it exactly."""
    if start + _HEADER > len(data):
        return False
    size = int.from_bytes(data[start + 8 : start + _HEADER], "little")
    if size < _SMALLEST or start + size > len(data):
        return False
    position, seen = _HEADER, set()
    while position + _OBJECT_HEADER <= size:
        at = start + position
        index = int.from_bytes(data[at : at + 2], "little")
        length = int.from_bytes(data[at + 8 : at + _OBJECT_HEADER], "little")
        if index == 0:  # the free space: the rest of the collection, header included
            return length == size - position
        if index in seen:
            return False
        seen.add(index)
        position += _OBJECT_HEADER + -(-length // 8) * 8
    return position <= size  # a full collection: what is left is too short to be an object


def external_link(group: h5py.Group, name: str) -> str | None:
    """Why ``group[name]`` may not be followed, when it is a link into another file; else None.

    The readers take only what a file itself holds: a link elsewhere could reach any file on the machine.
    """
    link = group.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        return (
            f"is an external link to {link.path} in {link.filename}; spikeglm reads only what the file "
            "itself holds (copy that data into the file)"
        )
    return None


def reason(error: BaseException) -> str:
    """A library's error as a short clause: its first line, without h5py's "Unable to ..." wrapper."""
    lines = str(error).strip().strip("'\"").splitlines()
    text = lines[0] if lines else type(error).__name__
    wrapped = re.fullmatch(r"Unable to synchronously [^(]*\((.*)\)", text)
    return wrapped.group(1) if wrapped else text
