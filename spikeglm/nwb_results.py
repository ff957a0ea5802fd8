"""A model's results in a new NWB file: hidden rates, latent factors, couplings and settings.

:func:`save_results` writes, through pynwb (an optional extra: ``pip install "spikeglm[nwb]"``), a new
NWB 2.x file that holds what a fitted :class:`~spikeglm.POGLM` says about a recording. It never writes
into the recording's own file. Everything lies in the processing module ``spikeglm``:

==================  =========================================================================================
``hidden_rates``    TimeSeries, Hz: each hidden neuron's posterior mean rate per bin (data: bins x hidden,
                    columns ``hidden-0``, ``hidden-1``, ...); with counts, and hidden neurons
``latent_mean``,    TimeSeries, in the factor's stationary standard deviations: the posterior mean and sd of
``latent_sd``       each latent factor's path per bin (bins x factors); with counts, and latent factors
``binned_trials``   TimeIntervals: each trial's binned span (start, stop), in s; with counts
``latent_factors``  DynamicTable, one row per factor: ``label``, ``tau_s`` (its time constant) and
                    ``loading`` (its loading on every neuron, visible then hidden); with latent factors
``couplings``       DynamicTable, one row per (pre, post) pair in the order of
                    :meth:`~spikeglm.Connectivity.significance`: its columns (``pre, post, strength, se, z,
                    p, q, significant, sign, self``) where tests were given or the model has standard
                    errors (then Wald tests at :data:`ALPHA`), else ``pre, post, strength, self``; its
                    description names the test and its settings
``settings``        DynamicTable of ``key`` and ``value`` (JSON text): the model's settings
                    (``model.*``), what the fit recorded (``fit.*``), the test's settings (``test.*``) and
                    the files used (``source.*``)
==================  =========================================================================================

The time series are on the recording's clock: trials one after another, each bin at its centre
(:meth:`spikeglm.SpikeCounts.bin_times`). Where the bins are evenly spaced throughout (trials that
follow one another without gaps) a series states its first time and its rate, else the time of every
bin; ``TimeSeries.get_timestamps()`` gives the times either way, and pynapple reads each series as a
``TsdFrame``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spikeglm._version import __version__
from spikeglm.connectivity import GRAPHML_ALPHA, Connectivity, json_plain
from spikeglm.counts import SpikeCounts
from spikeglm.extras import optional
from spikeglm.files import atomic_write, check_output
from spikeglm.io.nwb import SUBJECT_FIELDS
from spikeglm.poglm import POGLM

__all__ = ["ALPHA", "MODULE", "save_results"]

#: The processing module that holds the results.
MODULE = "spikeglm"
#: The false discovery rate of the Wald tests written where none were given and the model has standard
#: errors (that of a GraphML export's default rule).
ALPHA = GRAPHML_ALPHA

#: What each column of the couplings table holds.
_COLUMNS = {
    "pre": "label of the presynaptic neuron (hidden neurons: hidden-0, hidden-1, ...)",
    "post": "label of the postsynaptic neuron",
    "strength": "integrated coupling: the coupling filter summed over the lags (the link's scale)",
    "se": "standard error of the strength (inf: no information)",
    "entry_strength": "of a group-lasso fit: the least penalty strength that keeps the filter at zero, "
    "the others held (nats per spike)",
    "z": "the test's z score",
    "p": "two-sided p-value (NaN: a pair the test does not cover)",
    "q": "Benjamini-Hochberg q-value, over the pairs of distinct neurons and over the self-couplings apart",
    "significant": "q < alpha",
    "sign": "1 excitatory, -1 inhibitory, 0 not significant",
    "self": "pre and post are the same neuron (its refractoriness)",
}


def save_results(
    path: str | os.PathLike,
    model: POGLM,
    counts: SpikeCounts | None = None,
    *,
    tests: tuple[np.ndarray, dict[str, Any]] | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    session: Mapping[str, Any] | None = None,
    sources: dict[str, str] | None = None,
    subject: Mapping[str, str] | None = None,
) -> None:
    """Write a fitted model's results to a new NWB file at ``path``, atomically.

    Parameters
    ----------
    path : path
        The new file (``.nwb``). It is written to a temporary file beside it, then renamed onto it.
    model : POGLM
        A fitted model.
    counts : SpikeCounts, optional
        Counts binned as the model's (:meth:`~spikeglm.POGLM.bin_like`): the hidden rates and the latent
        factors' paths in them are written (see the module's description); without them, the couplings
        and the settings only.
    tests : tuple, optional
        A result of :meth:`~spikeglm.Connectivity.test_couplings` of the model's connectivity, written as
        the couplings table; default the Wald tests at :data:`ALPHA` where the model has standard
        errors, else the strengths alone.
    overwrite : bool
        Whether an existing file at ``path`` may be replaced.
    inputs : paths
        The files read to make the results (the model file, the recording): ``path`` may be none of them.
    session : mapping, optional
        The recording's session, as :attr:`spikeglm.Recording.annotations` hold it for an NWB file: its
        ``session_start_time`` (ISO 8601), which the times count from (default: now), and its
        ``subject`` (text fields of ``/general/subject``), which the new file repeats. Without a subject
        (here or in ``subject``) the file names none, and the NWB inspector reports that as critical.
    sources : dict, optional
        Names of the files used (e.g. ``{"model": ..., "recording": ...}``), kept as ``source.*`` settings.
    subject : mapping, optional
        Fields of the subject (:data:`spikeglm.io.nwb.SUBJECT_FIELDS`: ``subject_id``, ``species``,
        ``sex``, ``age``, ...) that the file states over the recording's own, e.g. for a recording that
        names none; the NWB inspector finds nothing critical once ``subject_id``, ``species``, ``sex``
        and ``age`` (or ``date_of_birth``) are there.

    Raises
    ------
    ModuleNotFoundError
        Without pynwb, naming the extra ``spikeglm[nwb]``.
    ValueError, FileExistsError, OSError
        Before any work, for an output that is an input, exists without ``overwrite`` or cannot be
        written (:func:`spikeglm.files.check_output`); for overlapping trials
        (:meth:`~spikeglm.SpikeCounts.bin_times`); for a subject field NWB does not know.
    """
    pynwb = optional("pynwb", "writing results to NWB", extra="nwb")
    check_output(path, overwrite=overwrite, inputs=inputs)
    session = session or {}
    start = session.get("session_start_time")
    unknown = sorted(set(subject or {}) - set(SUBJECT_FIELDS))
    if unknown:
        raise ValueError(
            f"subject: NWB's subject has no field {', '.join(map(repr, unknown))}; its fields are "
            f"{', '.join(SUBJECT_FIELDS)}"
        )
    stated: dict[str, Any] = {**dict(session.get("subject") or {}), **dict(subject or {})}
    conn = model.connectivity()
    texts = {f"the subject's {key}": value for key, value in stated.items()}
    _refuse_nul({**texts, "the neuron label": conn.labels})
    if "date_of_birth" in stated:
        stated["date_of_birth"] = _datetime(stated["date_of_birth"], "the subject's date_of_birth")
    nwbfile = pynwb.NWBFile(
        session_description=f"results of a spikeglm {__version__} model: hidden rates, couplings, settings",
        identifier=str(uuid.uuid4()),
        session_start_time=datetime.now(timezone.utc)
        if start is None
        else _datetime(start, "the recording's session_start_time"),
        subject=pynwb.file.Subject(**stated) if stated else None,
    )
    module = nwbfile.create_processing_module(MODULE, "results of a model fitted by spikeglm")
    if counts is not None:
        for container in _series(model, conn, counts):
            module.add(container)
    if conn.metadata.get("latent"):
        module.add(_latent_factors(conn, model.bin_seconds))
    if tests is None and conn.metadata.get("strength_se") is not None:
        table, settings = conn.test_couplings(ALPHA)
        tests = table, {**settings, "default": f"the Wald tests at {ALPHA:g} where there are standard errors"}
    module.add(_couplings(conn, tests))
    module.add(_settings(model, conn, tests, sources or {}))

    def write(temporary: Path) -> None:
        # an open file, as pynwb warns of a path that does not end in .nwb, as the temporary's does not
        with h5py.File(temporary, "w") as handle, pynwb.NWBHDF5IO(file=handle, mode="w") as io:
            io.write(nwbfile)

    atomic_write(path, write, overwrite=overwrite, inputs=inputs)


def _datetime(value: datetime | str, name: str) -> datetime:
    """``value`` as a datetime with a time zone (a naive one is taken as local time, as pynwb takes it)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is {value!r}, not an ISO 8601 time") from None
    return value if value.tzinfo is not None else value.astimezone()


def _refuse_nul(texts: dict[str, str | list[str]]) -> None:
    """Refuse text that HDF5 cannot hold (a zero character), naming where it is, before any work."""
    for what, text in texts.items():
        for item in [text] if isinstance(text, str) else text:
            if "\x00" in item:
                raise ValueError(
                    f"{what} {item!r} holds a zero character, which NWB (HDF5) text cannot carry"
                )


def _series(model: POGLM, conn: Connectivity, counts: SpikeCounts) -> list[Any]:
    """The time series of ``counts`` under ``model`` (hidden rates, latent paths) and the trials' spans."""
    from pynwb import TimeSeries
    from pynwb.epoch import TimeIntervals

    centres, spans = counts.bin_times()
    timing = _timing(centres.reshape(-1), counts.bin_seconds)
    labels = ", ".join(conn.labels[conn.n_visible :])
    values = []
    if conn.n_hidden:
        rates = model.infer(counts) / np.float32(counts.bin_seconds)
        description = f"posterior mean rate of each hidden neuron per bin; columns: {labels}"
        values.append(("hidden_rates", rates, "Hz", description))
    if conn.metadata.get("latent"):
        mean, sd = model.infer_latent(counts)
        unit = "standard deviations of the factor's stationary prior"
        values.append(("latent_mean", mean, unit, "posterior mean of each latent factor's path per bin"))
        values.append(("latent_sd", sd, unit, "posterior sd of each latent factor's path per bin"))
    containers: list[Any] = [
        TimeSeries(name=name, data=data.reshape(-1, data.shape[-1]), unit=unit, description=text, **timing)
        for name, data, unit, text in values
    ]
    trials = TimeIntervals(name="binned_trials", description="each trial's binned span, in s")
    for start, stop in spans:
        trials.add_interval(start_time=float(start), stop_time=float(stop))
    containers.append(trials)
    return containers


def _timing(times: np.ndarray, bin_seconds: float) -> dict[str, Any]:
    """A series' times: its first and its rate where they are evenly spaced by a bin, else each one."""
    steps = np.diff(times)
    if np.allclose(steps, bin_seconds, rtol=0, atol=1e-6 * bin_seconds):
        return {"starting_time": float(times[0]), "rate": 1 / bin_seconds}
    return {"timestamps": times}


def _latent_factors(conn: Connectivity, bin_seconds: float) -> Any:
    """The latent factors' table: label, time constant (s) and loading on every neuron."""
    from pynwb.core import DynamicTable, VectorData

    record = conn.metadata["latent"]
    tau = np.asarray(record["tau_bins"], dtype=np.float64) * bin_seconds
    loading = np.asarray(record["loading"], dtype=np.float64).T  # (factors, neurons)
    labels = [f"latent-{k}" for k in range(len(tau))]
    columns = [
        VectorData(name="label", description="the factor", data=labels),
        VectorData(name="tau_s", description="the time constant of its AR(1) prior, in s", data=tau),
        VectorData(name="loading", description=f"its loading on {', '.join(conn.labels)}", data=loading),
    ]
    return DynamicTable(name="latent_factors", description="the latent factors", columns=columns)


def _couplings(conn: Connectivity, tests: tuple[np.ndarray, dict[str, Any]] | None) -> Any:
    """The couplings table: the tests' rows where there are tests, else every pair's strength."""
    from pynwb.core import DynamicTable, VectorData

    if tests is None:
        columns: dict[str, np.ndarray] = conn.pairs()
        description = "every coupling pre -> post, untested (the model has no standard errors)"
    else:
        table, settings = tests
        columns = {name: table[name] for name in table.dtype.names or ()}
        description = f"every coupling pre -> post and its test; the test's settings: {json.dumps(settings)}"
    data = [
        VectorData(name=name, description=_COLUMNS[name], data=values.astype(str).tolist())
        if values.dtype.kind in "OU"
        else VectorData(name=name, description=_COLUMNS[name], data=values)
        for name, values in columns.items()
    ]
    return DynamicTable(name="couplings", description=description, columns=data)


def _settings(model: POGLM, conn: Connectivity, tests: tuple | None, sources: dict[str, str]) -> Any:
    """The settings table: ``key`` and its ``value`` as JSON text."""
    from pynwb.core import DynamicTable, VectorData

    # tables of pairs are in the couplings table
    metadata = {
        key: value for key, value in conn.metadata.items() if key not in ("strength_se", "entry_strength")
    }
    groups = {"model": model.get_params(), "fit": metadata, "test": tests[1] if tests else {}}
    groups["source"] = dict(sources)
    rows = json_plain(
        {
            "spikeglm": __version__,
            **{f"{group}.{key}": value for group, values in groups.items() for key, value in values.items()},
        },
        strict=False,
    )
    columns = [
        VectorData(name="key", description="the setting", data=list(rows)),
        VectorData(
            name="value", description="its value, as JSON", data=[json.dumps(v) for v in rows.values()]
        ),
    ]
    return DynamicTable(name="settings", description="the model's settings and sources", columns=columns)
