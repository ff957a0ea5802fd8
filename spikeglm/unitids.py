"""Unit ids, shared by spike times, spike counts and the file readers.

:func:`check_unit_ids` makes the ids of a recording or of counts (strings, unique, one per unit);
:func:`unit_columns` finds the columns of given ids, with one error for unknown ids; :func:`listing`
names a few of them in a message; :data:`NAME_COLUMNS` are the columns of a table of units that name them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import numpy as np

__all__ = ["NAME_COLUMNS", "UnitIds", "check_unit_ids", "listing", "unit_columns"]

#: Unit ids as callers give them: a sequence of strings, or an array of ids (each read with ``str``).
UnitIds: TypeAlias = "Sequence[str] | np.ndarray"
#: The columns of a table of units (an NWB Units table, a pynapple TsGroup's metadata) that name the
#: units, the first holding unique text used; without one, units go by the table's own ids.
NAME_COLUMNS = ("unit_name", "name", "label")


def check_unit_ids(unit_ids: UnitIds | None, n_units: int) -> np.ndarray:
    """One unique string id per unit, as a read-only array; default ``"0", "1", ...``.

    Raises
    ------
    ValueError
        If a single string is given, the number of ids is not ``n_units``, or ids are duplicated.
    """
    if unit_ids is None:
        ids = [str(k) for k in range(n_units)]
    elif isinstance(unit_ids, str):
        raise ValueError(f"unit_ids: expected one id per unit, got the single string {unit_ids!r}")
    else:
        ids = [str(unit) for unit in unit_ids]
    if len(ids) != n_units:
        raise ValueError(f"unit_ids: {len(ids)} id(s) given for {n_units} unit(s)")
    duplicates = sorted(unit for unit, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"unit_ids: duplicate id(s) {', '.join(map(repr, duplicates))}")
    array = np.array(ids, dtype=str)
    array.flags.writeable = False
    return array


def unit_columns(
    ids: str | Iterable[str] | None,
    known: UnitIds,
    where: str,
    unknown_message: str = "unknown unit id(s) {unknown}; known: {known}",
) -> list[int]:
    """The positions in ``known`` of ``ids``, in their order; all positions if ``ids`` is None.

    Parameters
    ----------
    ids : str or iterable of str, optional
        The ids to find; a single string is one id, other values are converted with ``str``.
    known : sequence of str or numpy.ndarray
        The ids in column order.
    where : str
        What the error message starts with: the caller's name, or the file.
    unknown_message : str
        The rest of the error message, with ``{unknown}`` and ``{known}`` for short listings of the
        unknown and the known ids.

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        If an id is not in ``known``: ``"{where}: "`` followed by ``unknown_message``.
    """
    known = [str(unit) for unit in known]
    if ids is None:
        return list(range(len(known)))
    ids = [ids] if isinstance(ids, str) else [str(unit) for unit in ids]
    position = {unit: k for k, unit in enumerate(known)}
    unknown = [unit for unit in ids if unit not in position]
    if unknown:
        raise ValueError(
            f"{where}: " + unknown_message.format(unknown=listing(unknown), known=listing(known))
        )
    return [position[unit] for unit in ids]


def listing(names: Sequence[str], shown: int = 5) -> str:
    """Names for a message: all of a few, else the first ``shown`` and how many there are in all."""
    names = list(names)
    text = ", ".join(map(repr, names[:shown]))
    return text if len(names) <= shown else f"{text}, ... ({len(names)} in all)"
