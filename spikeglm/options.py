"""Named choices of an option: relaxations, bases, links, posterior families, objectives, protocols.

Every option that is chosen by name is resolved here, once, where it enters: a name matches whatever its
case, with ``_`` for ``-`` and surrounding spaces ignored; the registered object itself (e.g. a relaxation
class) is accepted in place of its name; anything else is refused with the list of known names.

Examples
--------
>>> from spikeglm.options import Registry
>>> colours = Registry("colour", {"dark-red": "#8b0000", "navy": "#000080"})
>>> colours.name("Dark_Red")
'dark-red'
>>> colours["NAVY"]
'#000080'
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from numbers import Integral, Real
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """The named choices of one kind of option, as a read-only mapping from canonical names.

    Parameters
    ----------
    kind : str
        What is chosen (e.g. ``"relaxation"``), for error messages.
    entries : mapping
        Canonical names (lower case, ``-`` between words) to what they stand for.
    """

    def __init__(self, kind: str, entries: Mapping[str, T]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def name(self, value: str | T) -> str:
        """The canonical name of ``value``: a name in any spelling, or one of the entries itself.

        Raises
        ------
        ValueError
            If ``value`` names no entry; the message lists the known names.
        """
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "-")
            if key in self._entries:
                return key
        else:
            for key, entry in self._entries.items():
                if value is entry:
                    return key
        raise ValueError(f"unknown {self.kind} {value!r}; choose one of {', '.join(self._entries)}")

    def names(self) -> tuple[str, ...]:
        """The canonical names, in registration order."""
        return tuple(self._entries)

    def __getitem__(self, value: str | T) -> T:
        return self._entries[self.name(value)]

    def __contains__(self, value: object) -> bool:
        try:
            self.name(value)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def whole(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (numpy integers too, not bools)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {value!r}")
    return int(value)


def positive(value: object, name: str) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 < float(value) < math.inf):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)
