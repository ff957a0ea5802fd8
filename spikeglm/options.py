"""Named choices of an option (relaxations, bases, links, posterior families, objectives, protocols) and
the declaration of one setting.

Every option that is chosen by name is resolved here, once, where it enters: a name matches whatever its
case, with ``_`` for ``-`` and surrounding spaces ignored; the registered object itself (e.g. a relaxation
class) is accepted in place of its name; anything else is refused with the list of known names.
A :class:`Setting` declares one setting of the estimator (name, type, default, check, help).

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
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Generic, TypeVar

import numpy as np

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

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under the canonical ``name`` (lower case, ``-`` between words); returns it.

        Raises
        ------
        ValueError
            If ``name`` is not canonical or is taken.
        """
        if not name or name != name.strip().lower().replace("_", "-"):
            raise ValueError(f"a {self.kind} is registered by its canonical name (lower case, '-'): {name!r}")
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove the entry registered as ``name`` (any spelling) and return it."""
        return self._entries.pop(self.name(name))

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


def whole(value: object, name: str, minimum: int = 1, words: tuple[str, ...] = ()) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (numpy integers too, not bools); the
    refusal also names the ``words`` the setting takes instead."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}{_or(words)}; got {value!r}")
    return int(value)


def positive(value: object, name: str, words: tuple[str, ...] = ()) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool); the refusal also names the
    ``words`` the setting takes instead."""
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 < float(value) < math.inf):
        raise ValueError(f"{name} must be a finite number > 0{_or(words)}; got {value!r}")
    return float(value)


def _or(words: tuple[str, ...]) -> str:
    """`` or 'auto'`` for the words a number setting also takes (nothing without any)."""
    return "".join(f" or {word!r}" for word in words)


@dataclass(frozen=True)
class Setting:
    """One setting of the estimator, declared once: what its checks, defaults and help are read from.

    Parameters
    ----------
    name : str
        Its name, as the constructor's argument.
    kind : type
        ``int`` (a whole number >= ``minimum``), ``float`` (a finite number > 0), ``bool``, ``str`` (one
        of ``choices``) or ``dict``.
    default : object
        Its default value.
    help : str
        What it does, in a line or two (the command line's help).
    choices : Registry, optional
        The named choices of a ``str`` setting.
    minimum : int
        The least whole number an ``int`` setting takes.
    optional : bool
        Whether None is accepted (for "none", "automatic" or "never").
    words : tuple of str
        Words a number setting also takes (e.g. ``"cv"``: chosen by cross-validation), in lower case.
    """

    name: str
    kind: type
    default: Any
    help: str = ""
    choices: Registry | None = None
    minimum: int = 1
    optional: bool = False
    words: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """``value`` checked and in its canonical form (a choice by its canonical name).

        Raises
        ------
        ValueError
            If ``value`` is not a valid value of this setting; the message names the setting.
        """
        if value is None and self.optional:
            return None
        if isinstance(value, str) and value.strip().lower() in self.words:
            return value.strip().lower()
        if self.choices is not None:
            return self.choices.name(value)
        if self.kind is int:
            return whole(value, self.name, minimum=self.minimum, words=self.words)
        if self.kind is float:
            return positive(value, self.name, words=self.words)
        if self.kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{self.name} must be True or False{_or(self.words)}; got {value!r}")
            return bool(value)
        return value


def declare(*settings: Setting) -> dict[str, Setting]:
    """Settings by name, in the order given."""
    return {setting.name: setting for setting in settings}
