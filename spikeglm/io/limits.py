"""How much one read may hold in memory: a budget known before any reader allocates.

A small file can declare (or decompress to) gigabytes: a compressed dataset of zeros, a gzip of one
repeated line, an array whose header states a size its bytes do not hold. Every reader checks what it
is about to allocate or decompress against :func:`read_limit` first, and refuses with one line naming
the file, the variable and the size (:func:`check_size`) instead of running out of memory.

The limit is 1 GiB by default (a one-hour recording of 100 units at 20 Hz is about 60 MB of spike
times); ``load(..., read_limit="4 GB")``, ``spikeglm ... --read-limit 4GB`` or the environment variable
``SPIKEGLM_READ_LIMIT`` raise it for a genuine large file.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator
from pathlib import Path

from spikeglm.memory import format_bytes

__all__ = [
    "DEFAULT_READ_LIMIT",
    "ENVIRONMENT",
    "Budget",
    "check_size",
    "parse_size",
    "read_limit",
    "reading",
]

#: The default budget of one read, in bytes.
DEFAULT_READ_LIMIT = 1 << 30
#: The environment variable that sets the budget when no ``read_limit`` is passed.
ENVIRONMENT = "SPIKEGLM_READ_LIMIT"
#: What a refusal tells the user to do, for a file that is genuine.
HINT = f"if the file is genuine, raise the limit with read_limit= (--read-limit SIZE, or {ENVIRONMENT})"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]\+?(\d+))?\s*([A-Za-z]*)\s*$")
_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("read_limit", default=None)


def parse_size(value: int | str, name: str = "read_limit") -> int:
    """A size in bytes from a whole number or a string such as ``"512 MB"``, ``"2GiB"`` or ``"1e9"``.

    Raises
    ------
    ValueError
        If the value cannot be read or is not positive; the message names ``name``.

    Examples
    --------
    >>> parse_size("2 GiB"), parse_size("512MB"), parse_size(4096)
    (2147483648, 512000000, 4096)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a size such as '2 GB'; got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        unit = match.group(3).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(f"{name}: cannot read {value!r} as a size; write e.g. '2 GB' or '512 MiB'")
        exponent = int(match.group(2) or 0)
        if exponent > 30:
            raise ValueError(f"{name}: {value!r} is not a size this machine can hold")
        size = int(float(match.group(1)) * 10**exponent * _UNITS[unit])
    else:
        raise ValueError(f"{name}: expected a size such as '2 GB'; got {type(value).__name__} {value!r}")
    if size <= 0:
        raise ValueError(f"{name}: must be a positive size; got {value!r}")
    return size


def read_limit() -> int:
    """The budget of the current read in bytes: :func:`reading`'s, else ``SPIKEGLM_READ_LIMIT``, else 1 GiB.

    Raises
    ------
    ValueError
        If ``SPIKEGLM_READ_LIMIT`` is set to something that is not a size.
    """
    limit = _LIMIT.get()
    if limit is not None:
        return limit
    text = os.environ.get(ENVIRONMENT)
    return DEFAULT_READ_LIMIT if not text else parse_size(text, ENVIRONMENT)


@contextlib.contextmanager
def reading(limit: int | str | None) -> Iterator[int]:
    """Within the block, reads are limited to ``limit`` bytes (None keeps the current limit)."""
    budget = read_limit() if limit is None else parse_size(limit)
    token = _LIMIT.set(budget)
    try:
        yield budget
    finally:
        _LIMIT.reset(token)


def check_size(nbytes: float, what: str, path: str | Path) -> None:
    """Refuse, before allocating, to hold ``nbytes`` bytes for ``what`` of the file ``path``.

    Raises
    ------
    ValueError
        One line naming the file, ``what``, the size and the limit, when ``nbytes`` exceeds
        :func:`read_limit`.

    Examples
    --------
    >>> with reading("1 MB"):
    ...     check_size(8e9, "variable 'x' (1e9 doubles)", "big.mat")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: big.mat: variable 'x' (1e9 doubles) would take 7.45 GiB, over the read limit of 977 KiB; ...
    """
    limit = read_limit()
    if nbytes > limit:
        raise ValueError(
            f"{path}: {what} would take {format_bytes(nbytes)}, over the read limit of "
            f"{format_bytes(limit)}; {HINT}"
        )


class Budget:
    """What one read has taken so far, each part charged against :func:`read_limit` as it is met.

    A file of many parts (references to one array, members of an archive, chunks of text) is refused by
    the sum of its parts, not only part by part; a refusal past the first part says so.

    Parameters
    ----------
    path : str or pathlib.Path
        The file (or folder) being read, named in a refusal unless a charge names another.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.used = 0.0

    def charge(self, nbytes: float, what: str, path: str | Path | None = None) -> None:
        """Count ``nbytes`` more for ``what``, refusing first (:func:`check_size`) past the read limit."""
        so_far = " with what was read before it" if self.used else ""
        check_size(self.used + nbytes, f"{what}{so_far}", self.path if path is None else path)
        self.used += nbytes
