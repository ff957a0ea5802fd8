"""History bases: the shapes of the coupling filters over the lags ``1..L``.

A coupling filter from neuron ``m`` to neuron ``n`` is a weighted sum of ``n_basis`` basis functions
over the lags ``l = 1..L`` (strictly causal: a bin never sees its own count). :func:`history` turns
spike counts into the basis-filtered history that the GLM weights multiply,

    h[r, t, m, b] = sum_{l=1..L} basis[b, l - 1] * counts[r, t - l, m]      (zero before the trial starts)

and :func:`future` is its anti-causal mirror, used by the forward-backward variational family.

==================  ======================================================================
``"exponential"``   :class:`Exponential`: one decaying function, the POGLM literature default
``"raised-cosine"`` :class:`RaisedCosine`: raised-cosine bumps equally spaced in log time
``"raw"``           :class:`RawLags`: one weight per lag (identity basis)
==================  ======================================================================

:class:`OwnHistory` pairs two of them: one for the couplings between neurons, and for each neuron's own
history (its self-coupling) that one and a second, usually longer (the post-spike filters of Pillow et
al. 2008 outlast the coupling filters: refractoriness, bursts, rhythms).

A basis is described completely by :meth:`Basis.to_dict` (plain JSON values), and rebuilt by
:func:`from_dict`, so model files store it without pickle.
"""

from __future__ import annotations

import inspect
import json
import math
from abc import ABC, abstractmethod
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from spikeglm.options import Registry

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "Basis",
    "Exponential",
    "OwnHistory",
    "RaisedCosine",
    "RawLags",
    "from_dict",
    "future",
    "get",
    "history",
    "names",
]


class Basis(ABC):
    """A set of ``n_basis`` functions over the history lags ``1..window``.

    Subclasses set :attr:`name`, call ``super().__init__(window, n_basis)`` and implement
    :meth:`_values` and :meth:`_arguments`.

    Attributes
    ----------
    name : str
        Registry name, the one :func:`get` accepts.
    window : int
        Number of lags ``L``; the lags are ``1..L``.
    n_basis : int
        Number of basis functions.
    """

    name: ClassVar[str]

    def __init__(self, window: int, n_basis: int) -> None:
        self.window = _check_int(window, "window", low=1)
        self.n_basis = _check_int(n_basis, "n_basis", low=1, high=self.window, high_name="window")

    @property
    def label(self) -> str:
        """A short description for titles and tables: ``"raised-cosine over 20 bins"``."""
        return f"{self.name} over {self.window} bins"

    @property
    def n_coupling(self) -> int:
        """How many of the functions, the first ones, the couplings between distinct neurons use: all of
        them, except in :class:`OwnHistory`, whose others serve each neuron's own history only."""
        return self.n_basis

    @abstractmethod
    def _values(self) -> np.ndarray:
        """The basis as a float64 array of shape (n_basis, window)."""

    @abstractmethod
    def _arguments(self) -> dict[str, Any]:
        """Constructor arguments as plain JSON values (window included)."""

    @property
    def lags(self) -> np.ndarray:
        """The lags ``1..window`` (in bins) that the columns of :meth:`matrix` correspond to."""
        return np.arange(1, self.window + 1)

    def matrix(
        self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The basis as a tensor of shape (n_basis, window).

        Row ``b`` is basis function ``b`` at lags ``1..window``: ``matrix()[b, l - 1]`` is its value at
        lag ``l``.
        """
        return torch.as_tensor(self._values(), dtype=dtype, device=device)

    def to_dict(self) -> dict[str, Any]:
        """The name and constructor arguments as plain JSON values; :func:`from_dict` inverts it."""
        return {"name": self.name, **self._arguments()}

    def plot(self, ax: Axes | None = None) -> Axes:
        """Draw each basis function against lag.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made if omitted.

        Returns
        -------
        matplotlib.axes.Axes
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
        for b, row in enumerate(self._values()):
            ax.plot(self.lags, row, marker="o", label=f"{self.name} {b}")
        ax.set_xlabel("lag (bins)")
        ax.set_ylabel("basis value")
        ax.set_title(repr(self))
        if self.n_basis > 1:
            ax.legend()
        return ax

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._arguments().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Basis):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


class Exponential(Basis):
    """One exponentially decaying function, normalised to sum 1 over the lags.

    ``phi[l] = exp(-decay * l) / sum_k exp(-decay * k)`` for ``l = 1..window``: successive lags differ by
    the factor ``exp(-decay)``. With ``window=5, decay=0.25`` this is the basis of the POGLM literature;
    because it sums to 1, a coupling weight equals the total effect of one presynaptic spike.

    Parameters
    ----------
    window : int
        Number of lags ``L`` (>= 1).
    decay : float
        Decay rate per bin (> 0).
    """

    name = "exponential"

    def __init__(self, window: int = 5, decay: float = 0.25) -> None:
        super().__init__(window, 1)
        self.decay = _check_positive(decay, "decay")

    def _values(self) -> np.ndarray:
        phi = np.exp(-self.decay * self.lags)
        return (phi / phi.sum())[None, :]

    def _arguments(self) -> dict[str, Any]:
        return {"window": self.window, "decay": self.decay}


class RaisedCosine(Basis):
    """Raised-cosine bumps equally spaced in log time (after Pillow et al., Nature 2008).

    Construction: lag ``l`` is mapped to ``x(l) = log(l + stretch)``. The ``n_basis`` centres ``c_b`` are
    equally spaced from ``x(1)`` to ``x(window)`` with spacing ``d`` (for a single function, ``d`` is the
    whole range ``x(window) - x(1)``), and function ``b`` is the bump

        phi_b(l) = (1 + cos(clip(pi * (x(l) - c_b) / (2 d), -pi, pi))) / 2,

    of half-width ``2 d``, so neighbouring bumps overlap and the first and last peak at lags 1 and
    ``window``: every lag is covered. Short lags get narrow bumps and long lags wide ones; a larger
    ``stretch`` makes the spacing closer to linear. Each row is then divided by its sum, so that every
    function sums to 1 over the lags (as the exponential basis does) and a weight is the total effect
    of one presynaptic spike through that function. With ``window=1`` the basis is ``[[1]]``.

    Parameters
    ----------
    window : int
        Number of lags ``L`` (>= 1).
    n_basis : int, optional
        Number of bumps, ``1 <= n_basis <= window``; default ``min(4, window)``.
    stretch : float
        Offset added to the lag before the logarithm (>= 0).
    """

    name = "raised-cosine"

    def __init__(self, window: int = 5, n_basis: int | None = None, stretch: float = 1.0) -> None:
        window = _check_int(window, "window", low=1)
        super().__init__(window, min(4, window) if n_basis is None else n_basis)
        self.stretch = _check_real(stretch, "stretch")
        if self.stretch < 0:
            raise ValueError(f"stretch must be >= 0; got {stretch!r}")

    def _values(self) -> np.ndarray:
        if self.window == 1:
            return np.ones((1, 1))
        x = np.log(self.lags + self.stretch)
        centres = np.linspace(x[0], x[-1], self.n_basis)
        spacing = (x[-1] - x[0]) / max(self.n_basis - 1, 1)
        phase = np.clip(np.pi * (x[None, :] - centres[:, None]) / (2 * spacing), -np.pi, np.pi)
        bumps = (1 + np.cos(phase)) / 2
        return bumps / bumps.sum(axis=1, keepdims=True)

    def _arguments(self) -> dict[str, Any]:
        return {"window": self.window, "n_basis": self.n_basis, "stretch": self.stretch}


class RawLags(Basis):
    """The identity basis: one function per lag, so one free weight per lag (``n_basis = window``).

    Parameters
    ----------
    window : int
        Number of lags ``L`` (>= 1).
    """

    name = "raw"

    def __init__(self, window: int = 5) -> None:
        super().__init__(window, window)

    def _values(self) -> np.ndarray:
        return np.eye(self.window)

    def _arguments(self) -> dict[str, Any]:
        return {"window": self.window}


class OwnHistory(Basis):
    """Couplings over one basis; each neuron's own history over that one and a second one besides.

    The functions are those of ``couplings`` and then those of ``own``, each over the longer of the two
    windows (zero beyond its own): ``n_basis`` is the sum of theirs, and :attr:`n_coupling` that of
    ``couplings``. A network with this basis keeps a coupling's weights on the ``own`` functions at zero,
    so that its self-coupling filters are ``couplings``' functions and ``own``'s weighted together and the
    other filters ``couplings``' alone. ``own`` must differ from ``couplings`` (the same functions twice
    would leave the weights undetermined).

    Parameters
    ----------
    couplings, own : Basis
        The two bases (neither an :class:`OwnHistory`).
    """

    name = "own-history"

    def __init__(self, couplings: Basis, own: Basis) -> None:
        for basis, role in ((couplings, "couplings"), (own, "own")):
            if not isinstance(basis, Basis) or isinstance(basis, OwnHistory):
                raise ValueError(f"{role} of an own-history basis must be a plain basis; got {basis!r}")
        if couplings == own:
            raise ValueError(
                f"the own-history basis {own!r} is the couplings' basis: a neuron's own history already "
                "has those functions; leave it out"
            )
        self.couplings, self.own = couplings, own
        self.window = max(couplings.window, own.window)
        self.n_basis = couplings.n_basis + own.n_basis

    @property
    def n_coupling(self) -> int:
        return self.couplings.n_basis

    @property
    def label(self) -> str:
        return f"{self.couplings.label}, own history also {self.own.label}"

    def _values(self) -> np.ndarray:
        values = np.zeros((self.n_basis, self.window))
        values[: self.n_coupling, : self.couplings.window] = self.couplings._values()
        values[self.n_coupling :, : self.own.window] = self.own._values()
        return values

    def _arguments(self) -> dict[str, Any]:
        return {"couplings": self.couplings.to_dict(), "own": self.own.to_dict()}

    def __repr__(self) -> str:
        return f"OwnHistory(couplings={self.couplings!r}, own={self.own!r})"


#: The history bases by name.
BASES: Registry[type[Basis]] = Registry(
    "basis", {cls.name: cls for cls in (Exponential, RaisedCosine, RawLags)}
)


def names() -> tuple[str, ...]:
    """The registered basis names."""
    return BASES.names()


def get(name_or_basis: str | Basis, window: int = 5, **kwargs: Any) -> Basis:
    """A basis by name, or the given :class:`Basis` unchanged.

    Parameters
    ----------
    name_or_basis : str or Basis
        ``"exponential"``, ``"raised-cosine"`` or ``"raw"`` (case-insensitive, ``_`` accepted for ``-``),
        or a ready instance, which is returned as it is (its own window counts; ``window`` is ignored).
    window : int
        Number of lags ``L``.
    **kwargs
        Further constructor arguments of the named basis (``decay``; ``n_basis``, ``stretch``).

    Raises
    ------
    ValueError
        For an unknown name, an argument the basis does not take, options given with an instance,
        or an invalid value (``window < 1``, ``decay <= 0``, ``n_basis`` outside ``1..window``).
    """
    if isinstance(name_or_basis, Basis):
        if kwargs:
            raise ValueError(
                f"basis options {sorted(kwargs)} were given with a ready {name_or_basis!r}; "
                "set them on the instance"
            )
        return name_or_basis
    key = BASES.name(name_or_basis)
    cls = BASES[key]
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"the {key} basis takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted)}"
        )
    return cls(window=window, **kwargs)


def from_dict(spec: dict[str, Any]) -> Basis:
    """Rebuild a basis from :meth:`Basis.to_dict` output."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a basis description must be a dict with a 'name'; got {spec!r}")
    arguments = {key: value for key, value in spec.items() if key != "name"}
    if spec["name"] == OwnHistory.name:
        if set(arguments) != {"couplings", "own"}:
            raise ValueError(f"an own-history basis is described by 'couplings' and 'own'; got {spec!r}")
        couplings, own = (arguments[part] for part in ("couplings", "own"))
        if any(isinstance(part, dict) and part.get("name") == OwnHistory.name for part in (couplings, own)):
            raise ValueError(f"an own-history basis cannot hold another; got {spec!r}")
        return OwnHistory(from_dict(couplings), from_dict(own))
    return get(spec["name"], **arguments)


def history(counts: torch.Tensor, basis_matrix: torch.Tensor) -> torch.Tensor:
    """Basis-filtered past of each unit, ``sum_{l=1..L} basis[b, l-1] * counts[..., t-l, m]``.

    Strictly causal, with zero history before the first bin: every trial (each index of the leading
    dimensions) is filtered on its own. One depthwise ``conv1d`` over time (units as channels) computes
    all trials, units and basis functions at once; it is differentiable with respect to both arguments
    and runs on any device.

    Parameters
    ----------
    counts : torch.Tensor
        Floating-point counts, shape (..., bins, units), typically (trials, bins, units). Relaxed
        (real-valued) counts are fine.
    basis_matrix : torch.Tensor
        Shape (n_basis, L), e.g. :meth:`Basis.matrix`; cast to the dtype and device of ``counts``.

    Returns
    -------
    torch.Tensor
        Shape (..., bins, units, n_basis).
    """
    if counts.dim() < 2:
        raise ValueError(f"counts must have shape (..., bins, units); got {tuple(counts.shape)}")
    if basis_matrix.dim() != 2:
        raise ValueError(f"basis_matrix must have shape (n_basis, L); got {tuple(basis_matrix.shape)}")
    *lead, n_bins, n_units = counts.shape
    n_basis, window = basis_matrix.shape
    # Units are the channels of a depthwise convolution (groups = units): (trials, units, bins).
    series = counts.reshape(-1, n_bins, n_units).transpose(1, 2)
    # conv1d correlates: out[t] = sum_k kernel[k] * padded[t + k] = sum_k kernel[k] * counts[t + k - L].
    # With the kernel reversed along lag, kernel[k] = basis[L - 1 - k], i.e. lag l = L - k, which gives
    # sum_l basis[l - 1] * counts[t - l]. The output has bins + 1 entries; the last one would be bin T.
    kernel = basis_matrix.to(dtype=counts.dtype, device=counts.device).flip(-1).unsqueeze(1)
    filtered = F.conv1d(F.pad(series, (window, 0)), kernel.repeat(n_units, 1, 1), groups=n_units)
    return filtered[..., :n_bins].reshape(*lead, n_units, n_basis, n_bins).movedim(-1, -3)


def future(counts: torch.Tensor, basis_matrix: torch.Tensor) -> torch.Tensor:
    """Basis-filtered future of each unit, ``sum_{l=1..L} basis[b, l-1] * counts[..., t+l, m]``.

    The anti-causal mirror of :func:`history` (zero past the last bin): the history of the
    time-reversed counts, reversed back. Same arguments and shapes as :func:`history`.
    """
    return history(counts.flip(-2), basis_matrix).flip(-3)


def _check_int(value: Any, name: str, low: int, high: int | None = None, high_name: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be a whole number; got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high_name}={high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}; got {number}")
    return number


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def _check_positive(value: Any, name: str) -> float:
    value = _check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return value
