"""MATLAB ``.mat`` files: v4 to v7 through :func:`scipy.io.loadmat`, v7.3 (HDF5) through h5py.

The spike times are found in one variable (or a field of a struct variable, named ``"data.spikes"``),
in one of these layouts:

- an ``[id, time]`` array: one row per spike, the unit's id and the time. The id column is the one
  holding whole numbers, or, when both do, the one with at most half as many distinct values;
  otherwise ``columns="id,time"`` or ``"time,id"`` says which. A ``2 x n`` array is read as its
  transpose. Units are named by their ids.
- a cell array of spike-time vectors, one cell per unit; units are named by position, from 1 as in
  MATLAB.
- a struct array with a field of spike times (``spike_times``, ``spiketimes``, ``times``,
  ``timestamps``, ``ts``, ``spikes`` or ``t``), one element per unit, named by a field ``name``, ``id``,
  ``label``, ``unit``, ``unit_id`` or ``cluster_id`` when it holds unique values, else by position
  from 1; or a struct whose fields are all numeric vectors (one at least longer than one value), one
  field per unit, named by the fields.

The variable is found on its own when exactly one variable (or field of a struct variable) has one of
these layouts; otherwise ``variable=`` names it. Times are in seconds unless ``time_unit`` says
otherwise (see :func:`spikeglm.io._times.to_seconds`). ``t_start`` is 0 s or the first spike if it is
earlier, ``t_stop`` the last spike: a MATLAB file states no span.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from spikeglm.io._times import to_seconds
from spikeglm.io.plain import group_spikes
from spikeglm.recording import Recording

__all__ = ["COLUMN_ORDERS", "read"]

#: The orders of the columns of an ``[id, time]`` array that ``columns=`` names.
COLUMN_ORDERS = ("id,time", "time,id")
_TIME_FIELDS = ("spike_times", "spiketimes", "times", "timestamps", "ts", "spikes", "t")
_NAME_FIELDS = ("name", "id", "label", "unit", "unit_id", "cluster_id")
_LAYOUTS = (
    "an [id, time] two-column array, a cell array of spike-time vectors, or a struct of spike-time vectors"
)
_DEPTH = 3  # how deep into struct fields the spike times are looked for


class _Cell(list):
    """A MATLAB cell array, its elements in MATLAB's (column-major) order."""


class _Struct(list):
    """A MATLAB struct array: one dict of fields per element, in MATLAB's order."""


def read(
    path: Path,
    *,
    empty_units: str = "drop",
    variable: str | None = None,
    columns: str | None = None,
    time_unit: str | None = None,
    sampling_rate: float | None = None,
) -> Recording:
    """Read the spike times of a MATLAB file (see the module's description).

    Parameters
    ----------
    path : pathlib.Path
        The ``.mat`` file.
    empty_units : {"drop", "keep", "error"}
        Units without spikes (empty cells or fields).
    variable : str, optional
        The variable holding the spike times; a struct's field as ``"name.field"``.
    columns : {"id,time", "time,id"}, optional
        The order of the columns of an ``[id, time]`` array, when it cannot be told from the values.
    time_unit : {"s", "ms", "us", "samples"}, optional
        The unit of the stored times; default seconds (refused when the times do not look like seconds).
    sampling_rate : float, optional
        Samples per second, for ``time_unit="samples"``.

    Raises
    ------
    ValueError
        If the file is not a readable MATLAB file, no variable or several variables hold spike times,
        the layout is ambiguous, or the times are not in seconds and no ``time_unit`` is given; the
        message names the option that resolves it.
    """
    if columns is not None and columns not in COLUMN_ORDERS:
        raise ValueError(f"columns: expected one of {', '.join(COLUMN_ORDERS)}; got {columns!r}")
    variables, version = _variables(path)
    block = variables.get("block")
    if variable is None and isinstance(block, _Struct) and block and "segments" in block[0]:
        raise ValueError(
            f"{path}: is a neo MATLAB file (a 'block' struct); read it with format='neo' (--format neo)"
        )
    if variable is None:
        found = [match for name, value in variables.items() for match in _search(name, value)]
        if not found:
            raise ValueError(f"{path}: {_no_layout(variables)}")
        if len(found) > 1:
            names = ", ".join(name for name, _ in found)
            raise ValueError(
                f"{path}: several variables could hold the spike times ({names}); choose one with variable= "
                "(--variable NAME)"
            )
        variable, layout = found[0]
    else:
        value = _lookup(variables, variable, path)
        layout = _layout(value)
        if layout is None:
            raise ValueError(f"{path}: {variable} is {_describe(value)}, not {_LAYOUTS}")
    raw, ids, how = _unit_times(layout, variable, columns, path)
    times, stated = to_seconds(raw, time_unit, sampling_rate, path)
    assumed = {
        "variable": f"{variable}: {how} ({version})",
        "time unit": stated,
        "span": "from 0 s (or the first spike, if earlier) to the last spike: the file states no span",
    }
    return Recording(times, ids, annotations={"assumed": assumed}, source=path, empty_units=empty_units)


def _variables(path: Path) -> tuple[dict[str, Any], str]:
    """The file's variables in a common form (numeric arrays, str, _Cell, _Struct), and its version."""
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as handle:
                names = [name for name in handle if not name.startswith("#")]
                return {name: _from_hdf5(handle[name], handle) for name in names}, "MATLAB v7.3, h5py"
        except OSError as error:
            raise ValueError(f"{path}: is not a readable MATLAB v7.3 (HDF5) file ({error})") from None
    try:
        contents = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True, chars_as_strings=True)
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, NotImplementedError) as error:
        raise ValueError(f"{path}: is not a readable MATLAB file ({error})") from None
    variables = {name: _from_scipy(value) for name, value in contents.items() if not name.startswith("__")}
    return variables, "MATLAB v5, scipy.io"


def _from_scipy(value: Any) -> Any:
    """What :func:`scipy.io.loadmat` returns, in the common form."""
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.names:
        return _Struct(
            {field: _from_scipy(element[field]) for field in value.dtype.names}
            for element in value.ravel("F")
        )
    if value.dtype == object:
        return _Cell(_from_scipy(element) for element in value.ravel("F"))
    if value.dtype.kind == "U":
        return "".join(value.ravel().tolist())
    return value


def _from_hdf5(obj: h5py.HLObject, handle: h5py.File) -> Any:
    """A MATLAB v7.3 object (an HDF5 group or dataset), in the common form.

    HDF5 holds MATLAB's arrays transposed; a cell array is a dataset of references, a struct a group
    of fields, and a struct array a group whose fields are datasets of references, one per element.
    """
    kind = obj.attrs.get("MATLAB_class", b"")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if isinstance(obj, h5py.Group):
        # MATLAB_fields keeps the fields' order (HDF5 lists them by name).
        order = [b"".join(name).decode() for name in obj.attrs.get("MATLAB_fields", [])] or list(obj)
        fields = {name: obj[name] for name in order if name in obj}
        per_element = [
            name
            for name, field in fields.items()
            if isinstance(field, h5py.Dataset)
            and h5py.check_ref_dtype(field.dtype) is h5py.Reference
            and "MATLAB_class" not in field.attrs
        ]
        if per_element and len(per_element) == len(fields):
            references = {name: fields[name][()].ravel() for name in fields}
            n_elements = len(next(iter(references.values())))
            return _Struct(
                {name: _from_hdf5(handle[refs[k]], handle) for name, refs in references.items()}
                for k in range(n_elements)
            )
        return _Struct([{name: _from_hdf5(field, handle) for name, field in fields.items()}])
    if obj.attrs.get("MATLAB_empty", 0):
        return _Cell() if kind == "cell" else np.zeros((0, 0))
    data = obj[()]
    if kind == "cell":
        return _Cell(_from_hdf5(handle[reference], handle) for reference in np.asarray(data).ravel())
    if kind == "char":
        return "".join(chr(code) for code in np.asarray(data).ravel())
    return np.asarray(data).T


def _search(name: str, value: Any, depth: int = _DEPTH) -> Iterator[tuple[str, tuple]]:
    """Every variable or field (``name.field``) inside ``value`` that has a spike-time layout."""
    layout = _layout(value)
    if layout is not None:
        yield name, layout
    elif isinstance(value, _Struct) and len(value) == 1 and depth > 1:
        for field, inner in value[0].items():
            yield from _search(f"{name}.{field}", inner, depth - 1)


def _lookup(variables: dict[str, Any], variable: str, path: Path) -> Any:
    """The value of ``name`` or ``name.field.field``; a clear error if there is none."""
    head, *fields = variable.split(".")
    if head not in variables:
        raise ValueError(f"{path}: no variable {head!r}; the file has {', '.join(variables) or 'none'}")
    value, where = variables[head], head
    for field in fields:
        if not (isinstance(value, _Struct) and len(value) == 1 and field in value[0]):
            known = ", ".join(value[0]) if isinstance(value, _Struct) and len(value) == 1 else "none"
            raise ValueError(f"{path}: {where} has no field {field!r} (its fields: {known})")
        value, where = value[0][field], f"{where}.{field}"
    return value


def _is_numeric(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _is_vector(value: Any) -> bool:
    """A numeric array with at most one dimension longer than 1 (a vector, a scalar or empty)."""
    return _is_numeric(value) and sum(size > 1 for size in value.shape) <= 1


def _layout(value: Any) -> tuple | None:
    """``(kind, ...)`` if ``value`` holds spike times in a layout this reader knows, else None."""
    if _is_numeric(value) and value.ndim == 2 and 2 in value.shape and value.size > 2:
        return ("list", value if value.shape[1] == 2 else value.T)
    if isinstance(value, _Cell) and value and all(_is_vector(element) for element in value):
        return ("cell", list(value))
    if not (isinstance(value, _Struct) and value):
        return None
    fields = list(value[0])
    time_fields = [field for field in _TIME_FIELDS if field in fields]
    if len(time_fields) == 1 and all(_is_vector(element[time_fields[0]]) for element in value):
        return ("struct array", value, time_fields[0])
    members = [value[0][field] for field in fields]
    if (
        len(value) == 1
        and len(fields) > 1
        and all(map(_is_vector, members))
        and max(map(np.size, members)) > 1
    ):
        return ("fields", value[0])
    return None


def _unit_times(layout: tuple, variable: str, columns: str | None, path: Path) -> tuple[list, list, str]:
    """Each unit's stored times, the units' ids, and a sentence on how they were found."""
    kind = layout[0]
    if kind == "list":
        rows = np.asarray(layout[1], dtype=np.float64)
        id_column = _id_column(rows, columns, variable, path)
        ids, times = rows[:, id_column], rows[:, 1 - id_column]
        if not np.all(np.isfinite(ids) & (ids == np.round(ids))):
            raise ValueError(
                f"{path}: {variable}: the id column {id_column + 1} holds values that are not whole numbers"
            )
        ids = ids.astype(np.int64)
        raw, order = group_spikes(times, ids, np.unique(ids).tolist(), path)
        order_text = "[id, time]" if id_column == 0 else "[time, id]"
        return (
            raw,
            [str(unit) for unit in order],
            f"{order_text} rows of {len(rows)} spikes, units named by id",
        )
    if kind == "cell":
        cells = layout[1]
        raw = [np.asarray(cell, dtype=np.float64).ravel() for cell in cells]
        return (
            raw,
            [str(k + 1) for k in range(len(cells))],
            f"a cell array of {len(cells)} units, named 1 to {len(cells)}",
        )
    if kind == "struct array":
        elements, field = layout[1], layout[2]
        raw = [np.asarray(element[field], dtype=np.float64).ravel() for element in elements]
        ids, named_by = _element_names(elements)
        return raw, ids, f"a struct array of {len(elements)} units, times in .{field}, {named_by}"
    fields = layout[1]
    raw = [np.asarray(values, dtype=np.float64).ravel() for values in fields.values()]
    return raw, list(fields), f"a struct of {len(fields)} units, one field each, named by field"


def _id_column(rows: np.ndarray, columns: str | None, variable: str, path: Path) -> int:
    """Which column of an ``[id, time]`` array holds the ids (0 or 1)."""
    if columns is not None:
        return COLUMN_ORDERS.index(columns)
    whole = [bool(np.all(rows[:, k] == np.round(rows[:, k]))) for k in (0, 1)]
    distinct = [np.unique(rows[:, k]).size for k in (0, 1)]
    if whole == [True, False]:
        return 0
    if whole == [False, True]:
        return 1
    if all(whole):
        if 2 * distinct[0] <= distinct[1]:
            return 0
        if 2 * distinct[1] <= distinct[0]:
            return 1
    found = "both" if all(whole) else "neither"
    raise ValueError(
        f"{path}: {variable}: cannot tell which column holds the unit ids ({found} column(s) hold whole "
        f"numbers; {distinct[0]} and {distinct[1]} distinct values); pass columns= (--columns id,time or "
        "--columns time,id)"
    )


def _element_names(elements: _Struct) -> tuple[list[str], str]:
    """Names of the elements of a struct array from a name field, else their positions from 1."""
    for field in _NAME_FIELDS:
        if field not in elements[0]:
            continue
        names = [_scalar_text(element[field]) for element in elements]
        if None not in names and len(set(names)) == len(names):
            return names, f"named by .{field}"
    return [str(k + 1) for k in range(len(elements))], f"named 1 to {len(elements)}"


def _scalar_text(value: Any) -> str | None:
    """A name from a string or a one-number array (whole numbers without a decimal point)."""
    if isinstance(value, str):
        return value.strip() or None
    if _is_numeric(value) and value.size == 1:
        number = value.ravel()[0].item()
        return str(int(number)) if float(number).is_integer() else str(number)
    return None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {'x'.join(map(str, value.shape))} {value.dtype} array"
    if isinstance(value, _Cell):
        return f"a cell array of {len(value)}"
    if isinstance(value, _Struct):
        return f"a struct ({len(value)} element(s); fields {', '.join(value[0]) if value else 'none'})"
    return f"a {type(value).__name__}"


def _no_layout(variables: dict[str, Any]) -> str:
    """Why no variable was taken: none has a known layout (with what there is)."""
    listing = "; ".join(f"{name}: {_describe(value)}" for name, value in list(variables.items())[:8])
    return (
        f"no variable holds spike times as {_LAYOUTS} (variables: {listing or 'none'}); name one with "
        "variable= (--variable NAME)"
    )
