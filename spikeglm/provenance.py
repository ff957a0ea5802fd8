"""What a fit was made on, and the refusal of other data where a computation needs the fit's own.

A fit records a fingerprint of its data (:attr:`spikeglm.POGLM.fitted_on_`): the unit ids, the bin size,
the trial layout (trials x bins x units), a SHA-256 of the binned counts and, where known, the file they
were read from and the options it was read with. The tests of the couplings that assume they are given
the fit's own counts (the jitter test, the parametric bootstrap) check the counts they are given against
it with :func:`check_fitted_on`; scoring, inference and plots take any data, held-out data being their
point.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from spikeglm.counts import SpikeCounts
from spikeglm.timeunits import seconds

#: The entries of a :func:`fitted_on` record that say where the counts came from, beyond the counts.
ORIGIN = ("source", "reading")
#: Characters of a SHA-256 shown in a message: enough to tell two apart at a glance.
_SHOWN_DIGITS = 12


def counts_fingerprint(counts: SpikeCounts) -> dict[str, Any]:
    """The unit ids, bin size, shape and SHA-256 of binned counts (JSON values).

    The hash covers the shape, the dtype and every count; counts hold the most compact dtype of their
    values (:class:`~spikeglm.SpikeCounts`), so the same counts always hash alike.
    """
    array = np.ascontiguousarray(counts.counts)
    digest = hashlib.sha256()
    digest.update(str((array.shape, array.dtype.str)).encode())
    digest.update(array.data.cast("B"))
    return {
        "unit_ids": [str(u) for u in counts.unit_ids],
        "bin_size": str(counts.bin_size),
        "shape": list(array.shape),
        "counts_sha256": digest.hexdigest(),
    }


def fitted_on(counts: SpikeCounts) -> dict[str, Any]:
    """What a fit to ``counts`` records of them: :func:`counts_fingerprint`, plus the ``source`` file
    and the ``reading`` options of their metadata (None where not known)."""
    return {**counts_fingerprint(counts), **{key: counts.metadata.get(key) for key in ORIGIN}}


def is_fitted_on(value: object) -> bool:
    """Whether ``value`` has the form of a :func:`fitted_on` record (as a model file must hold it)."""
    keys = {"unit_ids", "bin_size", "shape", "counts_sha256", *ORIGIN}
    if not isinstance(value, dict) or set(value) != keys:
        return False
    shape = value["shape"]
    digest = value["counts_sha256"]
    return (
        isinstance(value["unit_ids"], list)
        and all(isinstance(u, str) for u in value["unit_ids"])
        and isinstance(value["bin_size"], str)
        and isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        and isinstance(digest, str)
        and len(digest) == 64
        and all(c in "0123456789abcdef" for c in digest)
        and (value["source"] is None or isinstance(value["source"], str))
        and (value["reading"] is None or isinstance(value["reading"], dict))
    )


def check_fitted_on(recorded: dict[str, Any] | None, counts: SpikeCounts, purpose: str) -> None:
    """Refuse ``counts`` unless they are those the fit recorded in ``recorded`` was made on.

    Parameters
    ----------
    recorded : dict or None
        The fit's :func:`fitted_on` record; None where the fit does not record it (a model file of an
        earlier release), which gives a warning instead of a check.
    counts : SpikeCounts
        The counts given; their ``metadata["source"]`` names them in the messages.
    purpose : str
        What needs the fit's own counts (e.g. ``"the jitter test"``), for the messages.

    Raises
    ------
    ValueError
        One line naming the counts and each difference (unit ids, bin size, trial layout, or the
        counts themselves), and what agrees.
    """
    source = counts.metadata.get("source")
    name = source or "counts"
    if recorded is None:
        warnings.warn(
            f"{name}: the model does not record the data it was fitted on (it was saved by an earlier "
            f"spikeglm); {purpose} assumes these are its counts, which cannot be checked",
            UserWarning,
            stacklevel=2,
        )
        return
    given = counts_fingerprint(counts)
    aspects: dict[str, tuple[str, Callable[[Any], str]]] = {
        "unit ids": ("unit_ids", _ids),
        "bin size": ("bin_size", str),
        "trial layout": ("shape", _layout),
    }
    differ = {
        aspect: f"({show(given[key])} here, {show(recorded[key])} in the fit)"
        for aspect, (key, show) in aspects.items()
        if not _same(key, given[key], recorded[key])
    }
    if not differ and given["counts_sha256"] != recorded["counts_sha256"]:
        now, then = (digest[:_SHOWN_DIGITS] for digest in (given["counts_sha256"], recorded["counts_sha256"]))
        differ["binned counts"] = f"(sha256 {now}... here, {then}... in the fit)"
    if differ:
        fitted = f" ({recorded['source']})" if recorded["source"] else ""
        agree = [aspect for aspect in aspects if aspect not in differ]
        raise ValueError(
            f"{name}: {'is not the recording' if source else 'are not the counts'} the model was fitted "
            f"on{fitted}: the "
            + "; the ".join(f"{aspect} {_verb(aspect)} {shown}" for aspect, shown in differ.items())
            + (f"; the {_listing(agree)} agree" if agree else "")
            + f"; {purpose} needs the counts of the fit"
        )


def _same(key: str, now: Any, then: Any) -> bool:
    if key == "bin_size":  # "5.0 ms" and "0.005 s" bin alike
        return bool(np.isclose(seconds(now, "bin_size"), seconds(then, "bin_size"), rtol=1e-9, atol=0))
    return now == then


def _verb(aspect: str) -> str:
    return "differ" if aspect.endswith("s") else "differs"


def _ids(ids: list[str], shown: int = 4) -> str:
    return ", ".join(ids[:shown]) + (f", ... ({len(ids)} units)" if len(ids) > shown else "")


def _layout(shape: list[int]) -> str:
    trials, bins, units = shape
    return f"{trials} trials x {bins} bins x {units} units"


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
