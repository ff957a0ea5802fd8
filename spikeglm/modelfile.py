"""The model file: a fitted POGLM (or a checkpoint of its fit) in HDF5, checked before it is used.

A file starts with a 512-byte header holding the SHA-256 of the rest (HDF5's "userblock", which HDF5
itself leaves alone); the rest is an HDF5 file with the attributes ``format``, ``format_version`` and
``config`` (JSON), the groups ``network``, ``posterior`` and ``history`` of float datasets, and in a
checkpoint a group ``training`` (the optimizer's state and how far the fit has come). No pickle.

Reading verifies the checksum before HDF5 parses a byte, then checks every field against the format
(the config, the size of the model it declares, the shape, type, storage and values of every dataset)
before anything is built, so that a damaged or hostile file is refused with one line naming the file
and the field. Files of format version 1 (earlier releases) have no header and are checked field by
field only.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from spikeglm import basis as basis_module
from spikeglm.covariates import check_records
from spikeglm.files import CHECKSUM_HEADER_BYTES, add_checksum, atomic_write, verify_checksum
from spikeglm.model import DEFAULT_LATENT_TAU, LINKS, Network, check_link, check_own_history, start_tau
from spikeglm.provenance import is_fitted_on
from spikeglm.records import EpochRecord, Selection
from spikeglm.significance import se_from_json
from spikeglm.timeunits import parse_time, seconds
from spikeglm.variational import FAMILIES, Posterior, check_family

FORMAT = "spikeglm-poglm"
#: Version 3 adds the latent factors (``n_latent``, ``latent_tau``); files of versions 1 and 2 have none.
#: Version 4 adds the covariates (``covariates``, ``covariate_se``) and the choice of the history basis
#: (``basis_choice``); files of earlier versions have neither. Version 5 adds the own-history basis
#: (``basis`` may be an ``own-history`` description) and the stages of the basis's choice. A group-lasso
#: fit's ``entry_strength`` came later within version 5: a reader that does not know it loses nothing else.
FORMAT_VERSION = 5

#: The HDF5 signature: at the very start of a file of format version 1, which has no checksum header.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Most values (parameters and basis matrices) a model file may declare: 4 GB of float32.
_MAX_MODEL_VALUES = 10**9
#: Most values of the basis matrix (n_basis x window), which is computed before the parameters are read.
_MAX_BASIS_VALUES = 10**7
_HISTORY = ("objective", "seconds", "validation")
#: History fields that files of earlier releases lack (read as None there).
_HISTORY_OPTIONAL = ("lr",)
#: What Adam (as :func:`spikeglm.inference.train` uses it, without amsgrad) keeps for each parameter.
_ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")
#: Storage layouts read: data in the file itself, uncompressed (no filters, no other files).
_PLAIN_LAYOUTS = (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT)


def write(
    path: str | os.PathLike,
    config: dict,
    states: dict[str, dict[str, torch.Tensor]],
    history: Sequence[EpochRecord],
    training: dict | None,
    *,
    overwrite: bool,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> None:
    """Write a model file atomically: ``config``, the modules' ``states``, the history, ``training``.

    ``states`` maps each module's name (``network``, ``posterior``) to its state dict.

    ``training`` (a checkpoint's state, see :func:`read_training_state`) may be None. ``path`` may not be
    one of ``inputs``, and replaces an existing file only with ``overwrite``.
    """

    def fill(temporary: Path) -> None:
        # HDF5 leaves its userblock alone: the checksum of everything after it goes there, last.
        with h5py.File(temporary, "w", userblock_size=CHECKSUM_HEADER_BYTES) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(config)
            for prefix, state in states.items():
                for name, value in state.items():
                    f[f"{prefix}/{name}"] = value.cpu().numpy()
            for field in (*_HISTORY, *_HISTORY_OPTIONAL):
                values = [getattr(r, field) for r in history]
                f[f"history/{field}"] = [math.nan if v is None else v for v in values]
            if training is not None:
                _write_training_state(f.create_group("training"), training)
        add_checksum(temporary, CHECKSUM_HEADER_BYTES)

    atomic_write(path, fill, overwrite=overwrite, inputs=inputs)


def read(path: str | os.PathLike) -> dict:
    """The state of the fitted model in a model file or checkpoint, once every check has passed.

    Returns
    -------
    dict
        ``config`` (the checked config attribute), ``basis`` (the :class:`~spikeglm.basis.Basis` it
        describes), ``network`` and ``posterior`` (state dicts of tensors), ``history`` (a list of
        :class:`~spikeglm.records.EpochRecord`), ``strength_se`` and ``entry_strength`` (arrays, or
        None) and ``selection`` (a :class:`~spikeglm.records.Selection`, or None).
    """
    with _open_model_file(path) as f:
        return _read_state(f, os.fspath(path))


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: object) -> bool:
    return _is_whole(value) or (isinstance(value, float) and math.isfinite(value))


def _is_finite_or_list(value: object) -> bool:
    """A finite number, or a list of them (a checkpoint's sums per group of segments)."""
    return _is_finite_number(value) or (isinstance(value, list) and all(map(_is_finite_number, value)))


#: Each field of the ``config`` attribute: a test of its value and what the test asks for.
_CONFIG_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_visible": (lambda v: _is_whole(v) and v >= 1, "a whole number >= 1"),
    "n_hidden": (lambda v: _is_whole(v) and v >= 0, "a whole number >= 0"),
    "n_latent": (lambda v: _is_whole(v) and v >= 0, "a whole number >= 0"),
    "latent_tau": (lambda v: v == "auto" or (_is_finite_number(v) and v > 0), 'a number > 0 or "auto"'),
    "basis": (lambda v: isinstance(v, dict), "a basis description (an object)"),
    "link": (lambda v: isinstance(v, str) and v in LINKS, f"one of {', '.join(LINKS)}"),
    "variational": (lambda v: isinstance(v, str) and v in FAMILIES, f"one of {', '.join(FAMILIES)}"),
    "unit_ids": (lambda v: isinstance(v, list) and all(isinstance(u, str) for u in v), "a list of strings"),
    "bin_size": (lambda v: isinstance(v, str), "a string"),
    "data": (lambda v: isinstance(v, dict), "an object"),
    "fitted_on": (
        lambda v: v is None or is_fitted_on(v),
        "null (not known) or an object of unit_ids, bin_size, shape, counts_sha256, source and reading",
    ),
    "fit_options": (lambda v: isinstance(v, dict), "an object"),
    "covariates": (lambda v: isinstance(v, list), "a list of covariate records"),
    "covariate_se": (lambda v: v is None or isinstance(v, dict), "null or an object of tables"),
    "basis_choice": (
        lambda v: (
            v is None
            or (
                isinstance(v, dict)
                and set(v) - {"stages"} == {"candidates", "scores", "folds_by", "chosen"}
                and isinstance(v["candidates"], list)
                and _is_whole(v["chosen"])
                and 0 <= v["chosen"] < len(v["candidates"])
            )
        ),
        "null or an object of candidates, scores, folds_by, chosen (an index of the candidates) and stages",
    ),
    "selection": (lambda v: v is None or isinstance(v, dict), "null or an object"),
    "strength_se": (
        lambda v: (
            v is None
            or (
                isinstance(v, list)
                and all(isinstance(r, list) and all(x is None or _is_finite_number(x) for x in r) for r in v)
            )
        ),
        "null or a table of numbers (null: no information)",
    ),
    "entry_strength": (
        lambda v: (
            v is None
            or (
                isinstance(v, list)
                and all(
                    isinstance(r, list)
                    and len(r) == len(v)
                    and all(_is_finite_number(x) and x >= 0 for x in r)
                    for r in v
                )
            )
        ),
        "null or a square table of numbers >= 0",
    ),
    "strength_se_source": (
        lambda v: (
            v is None
            or v in ({"method": "fisher"}, {"method": "fisher-latent"})
            or (
                isinstance(v, dict)
                and set(v) == {"method", "n_boot", "seed"}
                and v["method"] == "bootstrap"
                and _is_whole(v["n_boot"])
                and v["n_boot"] >= 2
                and _is_whole(v["seed"])
            )
            or (
                isinstance(v, dict)
                and set(v) == {"method", "penalty", "penalty_strength"}
                and v["method"] in ("fisher-penalised", "fisher-latent-penalised")
                and v["penalty"] == "ridge"
                and _is_finite_number(v["penalty_strength"])
                and v["penalty_strength"] >= 0
            )
        ),
        'null, {"method": "fisher"}, {"method": "fisher-latent"}, {"method": "bootstrap", "n_boot": >= 2, '
        '"seed": a whole number} or {"method": "fisher-penalised" or "fisher-latent-penalised", "penalty": '
        '"ridge", "penalty_strength": a number >= 0}',
    ),
}
#: The training state's keys beyond the optimizer's, with the values that stand in for those missing
#: from checkpoints of earlier releases.
_TRAINING_DEFAULTS = {"steps_done": 0, "partial": None, "identity": None}
_TRAINING_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs_done": (lambda v: _is_whole(v) and v >= 0, "a whole number >= 0"),
    "steps_done": (lambda v: _is_whole(v) and v >= 0, "a whole number >= 0"),
    "partial": (
        lambda v: v is None or (isinstance(v, dict) and all(map(_is_finite_or_list, v.values()))),
        "null or an object of finite numbers and lists of them",
    ),
    "identity": (lambda v: v is None or isinstance(v, dict), "null or an object"),
}


def _open_model_file(path: str | os.PathLike) -> h5py.File:
    """Open a model file for reading, once its checksum, format marker and version have passed.

    Files of format version 1 (earlier releases) start with the HDF5 signature and carry no checksum;
    later ones start with a checksum header, verified before HDF5 reads a byte of them.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            legacy = handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({one_line(err)})") from None
    if not legacy:
        verify_checksum(path, CHECKSUM_HEADER_BYTES)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({one_line(err)})") from None
    try:
        _check_format(f, path, legacy)
    except BaseException:
        f.close()
        raise
    return f


def _check_format(f: h5py.File, path: str, legacy: bool) -> None:
    """Refuse a file that is no spikeglm model, or one of a format version this spikeglm cannot read."""
    if "format" not in f.attrs or _attribute(f, "format", path) != FORMAT:
        raise ValueError(f"{path}: not a spikeglm model file")
    version = _attribute(f, "format_version", path)
    if not _is_whole(version):
        raise ValueError(
            f"{path}: attribute 'format_version' must be a whole number; got {reprlib.repr(version)}"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {version} is newer than this spikeglm reads ({FORMAT_VERSION}); "
            "upgrade spikeglm"
        )
    if (version == 1) != legacy:
        layout = "lacks the checksum header of" if legacy else "has a checksum header, unlike"
        raise ValueError(f"{path}: damaged or altered (the file {layout} format version {version})")


def _read_state(f: h5py.File, path: str) -> dict:
    """The state of the fitted model in an open model file (see :func:`read`), every field checked."""
    config, basis = _read_config(f, path)
    with torch.device("meta"):  # names and shapes without storage: nothing is allocated yet
        blueprint = _modules(config, basis)
    state: dict[str, Any] = {
        prefix: _read_arrays(_member(f, prefix, path, h5py.Group), _shapes(module), path)
        for prefix, module in blueprint.items()
    }
    check_own_history(state["network"]["weight"], basis, f"{path}: dataset network/weight")
    state.update(config=config, basis=basis, history=_read_history(f, path), selection=None)
    state["covariate_se"] = _covariate_se(config, path)
    n_neurons = config["n_visible"] + config["n_hidden"]
    for key, read in (("strength_se", se_from_json), ("entry_strength", np.asarray)):
        state[key] = None if config[key] is None else read(config[key])
        if state[key] is not None and state[key].shape != (n_neurons, n_neurons):
            raise ValueError(
                f"{path}: config field {key!r} has shape {state[key].shape}, not that of the model"
            )
    if config["selection"] is not None:
        try:
            state["selection"] = Selection.from_dict(config["selection"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: config field 'selection': {one_line(err)}") from None
    return state


def _covariate_se(config: dict, path: str) -> dict[str, np.ndarray] | None:
    """The covariates' kernels' standard errors of a checked config, each (neurons, points), or None."""
    tables = config["covariate_se"]
    if tables is None:
        return None
    names = [record["name"] for record in config["covariates"]]
    if sorted(tables) != sorted(names):
        raise ValueError(
            f"{path}: config field 'covariate_se' names {sorted(tables)}, not the covariates {names}"
        )
    neurons, out = config["n_visible"] + config["n_hidden"], {}
    for name, rows in tables.items():
        try:
            errors = se_from_json(rows)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: config field 'covariate_se' of {name!r}: {one_line(err)}") from None
        if errors.ndim != 2 or errors.shape[0] != neurons or np.any(errors < 0):
            raise ValueError(f"{path}: config field 'covariate_se' of {name!r} is not a table of the model")
        out[name] = errors
    return out


def _modules(config: dict, basis: basis_module.Basis) -> dict[str, torch.nn.Module]:
    """The network and the posterior of the model that a checked ``config`` declares, unfitted."""
    n_visible, n_hidden, link = config["n_visible"], config["n_hidden"], check_link(config["link"])
    family, n_latent = check_family(config["variational"]), config["n_latent"]
    n_covariates = sum(record["n_features"] for record in config["covariates"])
    return {
        "network": Network(
            n_visible, n_hidden, basis, link, n_latent, start_tau(config["latent_tau"]), n_covariates
        ),
        "posterior": Posterior(family, n_visible, n_hidden, basis.matrix(), link, n_latent),
    }


def _read_config(f: h5py.File, path: str) -> tuple[dict, basis_module.Basis]:
    """The ``config`` attribute, checked field by field, and its basis; the model it declares is sane."""
    config = _json_attribute(f, "config", path)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: attribute 'config' must be a JSON object; got {type(config).__name__}")
    config.setdefault("data", {})  # files of earlier releases may lack these
    config.setdefault("fitted_on", None)  # not known: the tests that need the fit's counts warn
    config.setdefault("selection", None)
    config.setdefault("strength_se", None)
    config.setdefault("strength_se_source", None)
    config.setdefault("entry_strength", None)  # format versions 1 to 5: none recorded
    config.setdefault("n_latent", 0)  # format versions 1 and 2: no latent factor
    config.setdefault("latent_tau", DEFAULT_LATENT_TAU)
    config.setdefault("covariates", [])  # format versions 1 to 3: no covariate
    config.setdefault("covariate_se", None)
    config.setdefault("basis_choice", None)  # format versions 1 to 3: chosen by hand
    _check_fields(config, _CONFIG_FIELDS, path, "config")
    try:
        basis = basis_module.from_dict(config["basis"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: config field 'basis': {one_line(err)}") from None
    _check_size(config, basis, path)
    try:
        check_records(config["covariates"], seconds(parse_time(config["bin_size"], "bin_size"), "bin_size"))
    except ValueError as err:
        raise ValueError(f"{path}: config field 'covariates': {one_line(err)}") from None
    if len(config["unit_ids"]) != config["n_visible"]:
        raise ValueError(
            f"{path}: config field 'unit_ids' has {len(config['unit_ids'])} entries for "
            f"n_visible={config['n_visible']} units"
        )
    return config, basis


def _check_size(config: dict, basis: basis_module.Basis, path: str) -> None:
    """Refuse a model too large to be real before anything of its size is built or read."""
    basis_values = basis.n_basis * basis.window
    if basis_values > _MAX_BASIS_VALUES:
        raise ValueError(
            f"{path}: config field 'basis' declares {reprlib.repr(basis.n_basis)} function(s) of "
            f"{reprlib.repr(basis.window)} lags, which exceed the {_MAX_BASIS_VALUES:,} values read"
        )
    neurons = config["n_visible"] + config["n_hidden"]
    # At most three N x N x n_basis coupling arrays (the network's; the posterior's past, future and
    # self terms together), the biases and two copies of the basis.
    values = 3 * neurons**2 * basis.n_basis + 2 * neurons + 2 * basis_values
    if values > _MAX_MODEL_VALUES:
        raise ValueError(
            f"{path}: config fields 'n_visible' and 'n_hidden' declare {reprlib.repr(neurons)} neurons, "
            f"which with {basis.n_basis} basis function(s) exceed the {_MAX_MODEL_VALUES:,} values read"
        )
    # The loading (N x K), the encoder's readouts (2 x K x V) and the prior's K time constants.
    latent_values = config["n_latent"] * (neurons + 2 * config["n_visible"] + 3)
    if latent_values > _MAX_MODEL_VALUES:
        raise ValueError(
            f"{path}: config field 'n_latent' declares {reprlib.repr(config['n_latent'])} latent factors, "
            f"which with {neurons} neurons exceed the {_MAX_MODEL_VALUES:,} values read"
        )


def _check_fields(values: dict, fields: dict, path: str, where: str) -> None:
    """Refuse a missing field of ``values``, or one whose value fails its test, naming it."""
    for key, (valid, wanted) in fields.items():
        if key not in values:
            raise ValueError(f"{path}: {where} lacks the field {key!r}")
        if not valid(values[key]):
            raise ValueError(
                f"{path}: {where} field {key!r} must be {wanted}; got {reprlib.repr(values[key])}"
            )


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in module.state_dict().items()}


def _read_history(f: h5py.File, path: str) -> list[EpochRecord]:
    """The training history: one record per epoch, from 1-D float datasets of equal length."""
    group = _member(f, "history", path, h5py.Group)
    fields = (*_HISTORY, *(field for field in _HISTORY_OPTIONAL if field in group))
    datasets = {field: _member(group, field, path, h5py.Dataset) for field in fields}
    shape = datasets["objective"].shape
    if shape is None or len(shape) != 1:
        raise ValueError(
            f"{path}: dataset {datasets['objective'].name} must be a 1-D array; it has shape {shape}"
        )
    # NaN stands for a value not recorded at that epoch (a validation not computed, no learning rate).
    values = {field: _read_array(d, path, shape, finite=False) for field, d in datasets.items()}
    absent = np.full(shape, np.nan)
    objective, seconds, validation, lr = (values.get(f, absent) for f in (*_HISTORY, *_HISTORY_OPTIONAL))
    return [
        EpochRecord(i, float(o), float(s), _recorded(v), _recorded(r))
        for i, (o, s, v, r) in enumerate(zip(objective, seconds, validation, lr, strict=True))
    ]


def _recorded(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _member(group: h5py.Group, name: str, path: str, kind: type[h5py.Group | h5py.Dataset]) -> Any:
    """``group[name]``, refused unless it is a ``kind`` stored in this file (not a soft or external link)."""
    where = f"{group.name.rstrip('/')}/{name}"
    noun = "group" if kind is h5py.Group else "dataset"
    try:
        link = group.get(name, getlink=True)
        member = group[name] if isinstance(link, h5py.HardLink) else link
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: {noun} {where} cannot be read ({one_line(err)})") from None
    if link is None:
        raise ValueError(f"{path}: {noun} {where} is missing")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{path}: {where} must be a {noun} stored in the file itself, not a link")
    if not isinstance(member, kind):
        raise ValueError(f"{path}: {where} must be a {noun}, not a {type(member).__name__.lower()}")
    return member


def _names(group: h5py.Group, path: str) -> set[str]:
    try:
        return set(group)
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: group {group.name} cannot be listed ({one_line(err)})") from None


def _read_arrays(group: h5py.Group, shapes: dict[str, tuple[int, ...]], path: str) -> dict[str, torch.Tensor]:
    """Exactly the datasets that ``shapes`` names in ``group`` (no other entry), each of its shape."""
    unexpected = sorted(_names(group, path) - set(shapes))
    if unexpected:
        raise ValueError(f"{path}: group {group.name} holds an unexpected entry {unexpected[0]!r}")
    return {
        name: torch.from_numpy(_read_array(_member(group, name, path, h5py.Dataset), path, shape))
        for name, shape in shapes.items()
    }


def _read_array(dataset: h5py.Dataset, path: str, shape: tuple[int, ...], finite: bool = True) -> np.ndarray:
    """The values of a dataset of floats of exactly ``shape``, stored in full in the file.

    A dataset whose storage is smaller than its declared size is refused before it is read, so that a
    few bytes cannot make the reader allocate gigabytes; with ``finite``, so are NaN and infinities.
    """
    name = dataset.name
    try:
        dtype, stored_shape, stored = dataset.dtype, dataset.shape, dataset.id.get_storage_size()
        properties = dataset.id.get_create_plist()
        plain = properties.get_layout() in _PLAIN_LAYOUTS and properties.get_external_count() == 0
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: dataset {name} cannot be read ({one_line(err)})") from None
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise ValueError(f"{path}: dataset {name} must hold floats; it holds {one_line(dtype)}")
    if stored_shape != shape:
        raise ValueError(f"{path}: dataset {name} has shape {stored_shape}; expected {shape}")
    if not plain:
        raise ValueError(f"{path}: dataset {name} is not stored plainly (chunked, filtered or external)")
    if stored < dataset.nbytes:
        raise ValueError(f"{path}: dataset {name} declares {dataset.nbytes} bytes but stores {stored}")
    try:
        values = np.asarray(dataset[()], dtype=dtype.newbyteorder("="))
    except (OSError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: dataset {name} cannot be read ({one_line(err)})") from None
    if finite and not np.isfinite(values).all():
        raise ValueError(f"{path}: dataset {name} holds non-finite values (NaN or infinity)")
    return values


def _attribute(owner: h5py.Group | h5py.Dataset, name: str, path: str) -> Any:
    """The attribute ``name`` of ``owner``, refused unless it is there and holds a single value."""
    where = _describe(owner, name)
    if name not in owner.attrs:
        raise ValueError(f"{path}: {where} is missing")
    try:
        shape = owner.attrs.get_id(name).shape
        value = owner.attrs[name] if shape == () else None
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: {where} cannot be read ({one_line(err)})") from None
    if shape != ():
        raise ValueError(f"{path}: {where} must be a single value; it has shape {shape}")
    return value.item() if isinstance(value, np.generic) else value  # NumPy scalars as Python values


def _json_attribute(owner: h5py.Group | h5py.Dataset, name: str, path: str) -> Any:
    """The value of the JSON text held by the attribute ``name`` of ``owner``."""
    text = _attribute(owner, name, path)
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as err:
        raise ValueError(f"{path}: {_describe(owner, name)} is not valid JSON ({one_line(err)})") from None


def _describe(owner: h5py.Group | h5py.Dataset, name: str) -> str:
    return f"attribute {name!r}" + ("" if owner.name == "/" else f" of {owner.name}")


def one_line(text: object, longest: int = 300) -> str:
    """``text`` (e.g. an h5py error) as one line of at most ``longest`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= longest else line[: longest - 3] + "..."


def _write_training_state(group: h5py.Group, training: dict) -> None:
    """Store a fit's training state: ``epochs_done``, the ``optimizer`` state and any further keys.

    The further keys (``steps_done``, ``partial``, ``identity``...) must be JSON-able: they are kept
    together as the JSON attribute ``extras``, which :func:`read_training_state` unpacks.
    """
    group.attrs["epochs_done"] = training["epochs_done"]
    optimizer = training["optimizer"]
    group.attrs["param_groups"] = json.dumps(optimizer["param_groups"])
    for index, values in optimizer["state"].items():
        for key, value in values.items():
            group[f"optimizer/{index}/{key}"] = value.cpu().numpy()
    extras = {key: value for key, value in training.items() if key not in ("epochs_done", "optimizer")}
    group.attrs["extras"] = json.dumps(extras)


def read_training_state(path: str | os.PathLike) -> dict | None:
    """The training state of a checkpoint, or None if there is no file at ``path`` yet.

    The dict holds the ``network`` and ``posterior`` states and the ``history`` (checked as :func:`read`
    checks them), ``epochs_done``, the ``optimizer`` state and the further keys of the state written
    (``steps_done``, ``partial`` and ``identity``: 0, None and None in checkpoints of earlier releases).
    """
    if not os.path.exists(path):
        return None
    path = os.fspath(path)
    with _open_model_file(path) as f:
        if "training" not in f:
            raise ValueError(f"{path}: a finished model, not a checkpoint of a fit under way")
        state = _read_state(f, path)
        with torch.device("meta"):
            modules = _modules(state["config"], state["basis"])
        trained = _trained(modules, state["config"]["fit_options"])
        training = _read_training(_member(f, "training", path, h5py.Group), path, trained)
    return {
        **training,
        "network": state["network"],
        "posterior": state["posterior"],
        "history": state["history"],
    }


def _trained(modules: dict[str, torch.nn.Module], fit_options: dict) -> list[torch.nn.Parameter]:
    """The parameters that the fit's optimizer updates, in its order (:func:`spikeglm.inference.train`'s)."""
    frozen = fit_options.get("freeze_network") is True
    chosen = ["posterior"] if frozen else ["network", "posterior"]
    return [p for name in chosen for p in modules[name].parameters() if p.requires_grad]


def _read_training(group: h5py.Group, path: str, parameters: list[torch.nn.Parameter]) -> dict:
    """A checkpoint's ``training`` group, checked against the ``parameters`` its optimizer updates."""
    extras = _json_attribute(group, "extras", path) if "extras" in group.attrs else {}
    if not isinstance(extras, dict):
        raise ValueError(f"{path}: {_describe(group, 'extras')} must be a JSON object")
    training = {**_TRAINING_DEFAULTS, **extras, "epochs_done": _attribute(group, "epochs_done", path)}
    _check_fields(training, _TRAINING_FIELDS, path, "training state")
    param_groups = _json_attribute(group, "param_groups", path)
    listed = isinstance(param_groups, list) and all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in param_groups
    )
    if not listed or [i for g in param_groups for i in g["params"]] != list(range(len(parameters))):
        raise ValueError(
            f"{path}: {_describe(group, 'param_groups')} must be a list of parameter groups that number "
            f"the {len(parameters)} trained parameters in order"
        )
    state = {}
    if "optimizer" in group:  # absent when the fit stopped before its first step
        optimizer = _member(group, "optimizer", path, h5py.Group)
        trained = {str(number): parameter for number, parameter in enumerate(parameters)}
        for index in sorted(_names(optimizer, path)):
            if index not in trained:
                raise ValueError(f"{path}: group {optimizer.name} holds an unexpected entry {index!r}")
            # The step count is a scalar; the moving averages are shaped like their parameter.
            layout = {key: () if key == "step" else tuple(trained[index].shape) for key in _ADAM_STATE}
            state[int(index)] = _read_arrays(_member(optimizer, index, path, h5py.Group), layout, path)
    training["optimizer"] = {"param_groups": param_groups, "state": state}
    return training
