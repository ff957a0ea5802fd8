"""How much memory this process can still take, for the checks made before large allocations.

:func:`available_memory` reads what the machine has available now and what is left of a cap on the
process's address space (``ulimit -v``, a scheduler's limit); a fit (:func:`spikeglm.inference.fit_memory`) or
a binning (:meth:`spikeglm.Recording.bin`) that would need more is refused with one line before it
allocates, instead of ending in a MemoryError or a kill. :func:`format_bytes` writes sizes for those
messages.
"""

from __future__ import annotations

import contextlib
import os
import sys

if sys.platform != "win32":  # Windows has no address-space cap to read
    import resource

__all__ = ["available_memory", "format_bytes"]


def available_memory() -> int:
    """Bytes of memory this process can still take: the machine's ``MemAvailable`` (/proc/meminfo; else
    its free pages, ``os.sysconf``), and no more than what is left of a cap on its address space."""
    available = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as handle:
            lines = [line.split() for line in handle if line.startswith("MemAvailable:")]
        available = int(lines[0][1]) * 1024
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            available = 1 << 62
    cap = _address_space_cap()
    if cap is not None:
        available = min(available, cap - _address_space())
    return max(0, available)


def _address_space_cap() -> int | None:
    """The cap on this process's address space in bytes (RLIMIT_AS); None where there is none."""
    if sys.platform == "win32":  # pragma: no cover
        return None
    cap = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if cap in (-1, resource.RLIM_INFINITY) else cap


def _address_space() -> int:
    """Bytes of address space this process has mapped (VmSize of /proc/self/status; 0 where unknown)."""
    with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
        with open("/proc/self/status") as handle:
            return int(next(line.split()[1] for line in handle if line.startswith("VmSize:"))) * 1024
    return 0


def format_bytes(nbytes: float) -> str:
    """A size for a message, in binary units: ``"8 GiB"``, ``"1.5 MiB"``, ``"512 bytes"``.

    Examples
    --------
    >>> format_bytes(8 * 2**30), format_bytes(1.5 * 2**20), format_bytes(512)
    ('8 GiB', '1.5 MiB', '512 bytes')
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"
