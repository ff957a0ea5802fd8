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
- a sparse matrix (a spike raster): the count of each unit's spikes in each time bin. The shorter axis
  holds the units unless ``columns=`` says otherwise (``"id,time"``: one row per unit, one column per
  bin; ``"time,id"``: the transpose); units are named by position, from 1. The bins are samples:
  ``sampling_rate=`` (bins per second) is required, and a count of k in bin j (from 0) is k spikes at
  j / rate seconds; the recording spans the raster's bins. Counts must be whole and not negative.

The variable is found on its own when exactly one variable (or field of a struct variable) has one of
these layouts; otherwise ``variable=`` names it. Times are in seconds unless ``time_unit`` says
otherwise (see :func:`spikeglm.io._times.to_seconds`). ``t_start`` is 0 s or the first spike if it is
earlier, ``t_stop`` the last spike: a MATLAB file states no span (a raster's bins excepted).

A read is bounded by the read budget (:mod:`spikeglm.io.limits`) before anything is allocated: a v7.3
dataset's declared size, every dataset a reference expands (counted again at each reference), a v5
element's decompressed size and the elements its cells and structs declare, a v4 matrix's declared
size. Cells and structs nested deeper than 32 levels, v7.3 objects that contain themselves (through
references or links), external links and datasets stored in other files are refused, as are
references that lead nowhere; every refusal is one line naming the file and the variable.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
import scipy.sparse

from spikeglm.io._hdf5 import external_link, open_file, reason
from spikeglm.io._times import to_seconds
from spikeglm.io.limits import Budget, check_size
from spikeglm.io.plain import group_spikes
from spikeglm.recording import Recording

__all__ = ["COLUMN_ORDERS", "read"]

#: The orders of the columns of an ``[id, time]`` array (or the axes of a raster) that ``columns=`` names.
COLUMN_ORDERS = ("id,time", "time,id")
_TIME_FIELDS = ("spike_times", "spiketimes", "times", "timestamps", "ts", "spikes", "t")
_NAME_FIELDS = ("name", "id", "label", "unit", "unit_id", "cluster_id")
_LAYOUTS = (
    "an [id, time] two-column array, a cell array of spike-time vectors, a struct of spike-time vectors "
    "or a sparse spike raster"
)
_DEPTH = 3  # how deep into struct fields the spike times are looked for
_MAX_NESTING = 32  # how deep cells and structs may nest in a file at all
_OBJECT_COST = 128  # bytes charged to the budget for each array, cell or struct element built
_RASTER_HINT = "pass sampling_rate= (--sampling-rate HZ, bins per second)"


class _Cell(list):
    """A MATLAB cell array, its elements in MATLAB's (column-major) order."""


class _Struct(list):
    """A MATLAB struct array: one dict of fields per element, in MATLAB's order."""


class NeoMatlabFile(ValueError):
    """A MATLAB file that neo wrote (a ``block`` struct of segments): :func:`spikeglm.io.load` reads it
    through neo instead, unless the MATLAB reader was asked for by name or options."""


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
        The order of the columns of an ``[id, time]`` array, when it cannot be told from the values; for
        a sparse raster, which axis holds the units (``"id,time"``: the rows).
    time_unit : {"s", "ms", "us", "samples"}, optional
        The unit of the stored times; default seconds (refused when the times do not look like seconds).
    sampling_rate : float, optional
        Samples per second, for ``time_unit="samples"``; a sparse raster's bins per second (required).

    Raises
    ------
    ValueError
        If the file is not a readable MATLAB file, holds more than the read budget or is damaged, no
        variable or several variables hold spike times, the layout is ambiguous, or the times are not in
        seconds and no ``time_unit`` is given; the message (one line) names the file, the variable and
        the option that resolves it.
    """
    if columns is not None and columns not in COLUMN_ORDERS:
        raise ValueError(f"columns: expected one of {', '.join(COLUMN_ORDERS)}; got {columns!r}")
    variables, version = _variables(path)
    block = variables.get("block")
    if variable is None and isinstance(block, _Struct) and block and "segments" in block[0]:
        raise NeoMatlabFile(
            f"{path}: is a neo MATLAB file (a 'block' struct); read it with format='neo' (--format neo)"
        )
    layout: tuple | None
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
    n_bins = None
    if layout[0] == "raster":
        raw, ids, how, n_bins = _raster(layout[1], variable, columns, time_unit, sampling_rate, path)
    else:
        raw, ids, how = _unit_times(layout, variable, columns, path)
    times, stated = to_seconds(raw, time_unit, sampling_rate, path)
    t_start = t_stop = None
    span = "from 0 s (or the first spike, if earlier) to the last spike: the file states no span"
    if n_bins is not None:
        assert sampling_rate is not None  # _raster refuses a raster without one
        t_start, t_stop = 0.0, n_bins / sampling_rate
        span = f"the raster's {n_bins} bins: from 0 s to {t_stop:g} s"
    assumed = {"variable": f"{variable}: {how} ({version})", "time unit": stated, "span": span}
    return Recording(
        times, ids, t_start, t_stop, annotations={"assumed": assumed}, source=path, empty_units=empty_units
    )


def _too_deep(path: Path, where: str) -> ValueError:
    return ValueError(
        f"{path}: {where}: cells or structs nested deeper than {_MAX_NESTING} levels; spike times need "
        "at most a few"
    )


def _variables(path: Path) -> tuple[dict[str, Any], str]:
    """The file's variables in a common form (numeric arrays, scipy.sparse matrices, str, _Cell,
    _Struct), and its version."""
    if h5py.is_hdf5(path):
        with open_file(path, "MATLAB v7.3 (HDF5)") as handle:
            reader = _Hdf5Reader(handle, path)
            try:
                return reader.variables(), "MATLAB v7.3, h5py"
            except (AttributeError, KeyError, OSError, RuntimeError, TypeError) as error:
                # damage met where no finer check applies: named by the object being read
                raise reader.error(reader.where, f"is damaged ({reason(error)})") from None
    _check_v4_v5(path)
    try:
        contents = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True, chars_as_strings=True)
    except (
        scipy.io.matlab.MatReadError,
        ValueError,
        TypeError,
        OSError,
        NotImplementedError,
        IndexError,
        KeyError,
        AttributeError,
        OverflowError,
        EOFError,
        struct.error,
        zlib.error,
    ) as error:
        raise ValueError(f"{path}: is not a readable MATLAB file ({reason(error)})") from None
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


class _Hdf5Reader:
    """The variables of one MATLAB v7.3 file, read within one budget, every failure one line.

    HDF5 holds MATLAB's arrays transposed; a cell array is a dataset of references, a struct a group
    of fields, a struct array a group whose fields are datasets of references (one per element), and a
    sparse matrix a group of its compressed columns (``data``, ``ir``, ``jc``). An object referred to
    is read once (and charged again at every reference to it); an object met again inside itself is a
    loop.
    """

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self.handle, self.path = handle, path
        self.budget = Budget(path)
        self.done: dict[int, tuple[Any, float]] = {}  # object's address -> (value, bytes it was charged)
        self.where = "/"  # the object being read, for the messages

    def error(self, where: str, what: str) -> ValueError:
        return ValueError(f"{self.path}: {_printable(where)}: {what}")

    def variables(self) -> dict[str, Any]:
        """Every variable of the file (``#refs#`` and MATLAB's other bookkeeping groups left out)."""
        names = [name for name in self.members(self.handle, "/") if not name.startswith("#")]
        return {name: self.value(self.open(self.handle, name, name), name, ()) for name in names}

    def members(self, group: h5py.Group, where: str) -> list[str]:
        """The names in a group."""
        try:
            names = list(group)
        except (KeyError, OSError, RuntimeError, ValueError) as error:
            raise self.error(where, f"cannot be listed ({reason(error)})") from None
        if not all(isinstance(name, str) for name in names):
            raise self.error(where, "holds a name that is not UTF-8 text")
        return names

    def open(self, group: h5py.Group, name: str, where: str) -> h5py.HLObject:
        """The object at ``group[name]``; external links and links that lead nowhere are refused."""
        self.where = where
        try:
            outside = external_link(group, name)
            if outside:
                raise self.error(where, outside)
            return group[name]
        except (KeyError, RuntimeError, OSError) as error:
            raise self.error(where, f"cannot be opened ({reason(error)})") from None

    def references(self, dataset: h5py.Dataset, where: str) -> list[tuple[Any, int]]:
        """A dataset's references, each with the address it points to (one address, one object)."""
        references = self.array(dataset, where).ravel()
        addresses = np.empty(references.shape, "<u8")
        try:
            dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, addresses, mtype=h5py.h5t.STD_REF_OBJ)
        except (KeyError, OSError, RuntimeError, TypeError, ValueError) as error:
            raise self.error(where, f"cannot be read ({reason(error)})") from None
        return list(zip(references, addresses.tolist(), strict=True))

    def dereference(self, reference: tuple[Any, int], where: str, within: tuple) -> Any:
        """The value a cell's or struct array's reference points to; an object referred to again is not
        read again, but charged again."""
        target, address = reference
        if address in self.done:
            value, cost = self.done[address]
            self.budget.charge(cost, where)
            return value
        if not target:
            raise self.error(where, "is a null reference (points to nothing)")
        try:
            obj = self.handle[target]
        except (KeyError, ValueError, RuntimeError, OSError) as error:
            raise self.error(where, f"is a reference that leads nowhere ({reason(error)})") from None
        before = self.budget.used
        value = self.value(obj, where, within)
        self.done[address] = (value, self.budget.used - before)
        return value

    def value(self, obj: h5py.HLObject, where: str, within: tuple) -> Any:
        """The object in the common form; ``within`` holds the ids of the objects that contain it."""
        self.where = where
        key = obj.id
        if key in within:
            raise self.error(where, "contains itself (a reference or link back to an enclosing object)")
        if len(within) >= _MAX_NESTING:
            raise _too_deep(self.path, where)
        if isinstance(obj, h5py.Group):
            return self.group(obj, where, (*within, key))
        return self.dataset(obj, where, (*within, key))

    def attribute(self, obj: h5py.HLObject, name: str, where: str) -> Any:
        try:
            return obj.attrs.get(name)
        except (AttributeError, KeyError, OSError, RuntimeError, TypeError, ValueError) as error:
            raise self.error(where, f"has an unreadable {name} attribute ({reason(error)})") from None

    def matlab_class(self, obj: h5py.HLObject, where: str) -> str:
        kind = self.attribute(obj, "MATLAB_class", where)
        if isinstance(kind, np.ndarray) and kind.size == 1:
            kind = kind.item()
        return kind.decode("utf-8", "replace") if isinstance(kind, bytes) else str(kind or "")

    def field_names(self, group: h5py.Group, where: str) -> list[str]:
        """The fields of a struct in MATLAB's order (``MATLAB_fields``; HDF5 lists them by name)."""
        present = self.members(group, where)
        names = self.attribute(group, "MATLAB_fields", where)
        if names is None:
            return present
        order = [_field_name(name) for name in np.atleast_1d(names)]
        if None in order:
            raise self.error(
                where,
                "has a MATLAB_fields attribute that is not a list of field names "
                f"({' '.join(repr(names).split()):.60})",
            )
        return [name for name in order if name in present] or present

    def group(self, group: h5py.Group, where: str, within: tuple) -> Any:
        if self.attribute(group, "MATLAB_sparse", where) is not None:
            return self.sparse(group, where)
        fields = {name: self.open(group, name, f"{where}.{name}") for name in self.field_names(group, where)}
        per_element = [
            field
            for name, field in fields.items()
            if isinstance(field, h5py.Dataset)
            and h5py.check_ref_dtype(self.dtype(field, f"{where}.{name}")) is h5py.Reference
            and self.attribute(field, "MATLAB_class", f"{where}.{name}") is None
        ]
        if not (per_element and len(per_element) == len(fields)):
            return _Struct(
                [{name: self.value(field, f"{where}.{name}", within) for name, field in fields.items()}]
            )
        references = {name: self.references(field, f"{where}.{name}") for name, field in fields.items()}
        counts = {len(refs) for refs in references.values()}
        if len(counts) > 1:
            raise self.error(
                where, f"is a struct array whose fields hold different numbers of elements {sorted(counts)}"
            )
        return _Struct(
            {
                name: self.dereference(refs[k], f"{where}({k + 1}).{name}", within)
                for name, refs in references.items()
            }
            for k in range(counts.pop())
        )

    def dataset(self, dataset: h5py.Dataset, where: str, within: tuple) -> Any:
        kind = self.matlab_class(dataset, where)
        if self.attribute(dataset, "MATLAB_empty", where):
            return _Cell() if kind == "cell" else np.zeros((0, 0))
        if kind == "cell":
            dtype = self.dtype(dataset, where)
            if h5py.check_ref_dtype(dtype) is not h5py.Reference:
                raise self.error(where, f"is marked a cell array but holds {dtype} values, not references")
            return _Cell(
                self.dereference(reference, f"{where}{{{k + 1}}}", within)
                for k, reference in enumerate(self.references(dataset, where))
            )
        data = self.array(dataset, where)
        if kind == "char":
            return self.text(data, where)
        return data.T

    def text(self, codes: np.ndarray, where: str) -> str:
        """A char array: MATLAB's UTF-16 code units (a lone surrogate becomes U+FFFD)."""
        codes = codes.ravel()
        if codes.dtype.kind not in "biu" or (codes.size and (codes.min() < 0 or codes.max() > 0xFFFF)):
            raise self.error(
                where, f"is marked char but holds {codes.dtype} values that are not UTF-16 codes"
            )
        return codes.astype("<u2").tobytes().decode("utf-16-le", "replace")

    def dtype(self, dataset: h5py.Dataset, where: str) -> np.dtype:
        try:
            return dataset.dtype
        except (TypeError, ValueError) as error:
            raise self.error(where, f"has an unreadable type ({reason(error)})") from None

    def array(self, dataset: h5py.Dataset, where: str) -> np.ndarray:
        """A dataset's values, its declared size charged to the budget before it is read."""
        dtype, shape = self.dtype(dataset, where), dataset.shape
        if shape is None:
            raise self.error(where, "is a dataset without a shape (an HDF5 null dataspace)")
        if dtype.kind == "O" and h5py.check_ref_dtype(dtype) is not h5py.Reference:
            raise self.error(
                where, f"holds {dtype} values (variable-length or region references), not MATLAB data"
            )
        if dataset.external or dataset.is_virtual:
            raise self.error(
                where,
                "is stored in other files (external or virtual storage); only what the file "
                "itself holds is read",
            )
        nbytes = math.prod(shape) * dtype.itemsize
        chunk = math.prod(dataset.chunks) * dtype.itemsize if dataset.chunks else 0
        size = "x".join(map(str, shape)) or "scalar"
        self.budget.charge(max(nbytes, chunk) + _OBJECT_COST, f"{where} ({size} {dtype})")
        if nbytes and not dataset.id.get_storage_size():
            raise self.error(where, f"declares {size} values but stores none (nothing was written)")
        try:
            return np.asarray(dataset[()])
        except (AttributeError, KeyError, OSError, RuntimeError, TypeError, ValueError) as error:
            raise self.error(where, f"cannot be read ({reason(error)})") from None

    def sparse(self, group: h5py.Group, where: str) -> scipy.sparse.csc_matrix:
        """A sparse matrix: ``jc`` the columns' starts in ``ir`` (rows) and ``data``, ``MATLAB_sparse``
        the number of rows; ``ir`` and ``data`` are absent when no value is stored."""
        rows = np.ravel(self.attribute(group, "MATLAB_sparse", where))
        if not (rows.size == 1 and rows.dtype.kind in "iu" and rows[0] >= 0):
            raise self.error(
                where, f"is a sparse matrix with an invalid number of rows (MATLAB_sparse {rows})"
            )
        parts, present = {}, self.members(group, where)
        for name in ("jc", "ir", "data"):
            if name in present:
                parts[name] = self.array(self.open(group, name, f"{where}.{name}"), f"{where}.{name}").ravel()
        if "jc" not in parts or ("ir" in parts) != ("data" in parts):
            raise self.error(
                where,
                f"is a sparse matrix without its parts (has {', '.join(parts) or 'none'} of jc, ir, data)",
            )
        data = parts.get("data", np.zeros(0))
        if data.dtype.names and set(data.dtype.names) == {"real", "imag"}:
            data = data["real"] + 1j * data["imag"]
        return _csc(
            data, parts.get("ir", np.zeros(0, np.int64)), parts["jc"], int(rows[0]), f"{self.path}: {where}"
        )


def _field_name(name: Any) -> str | None:
    """One name of a ``MATLAB_fields`` attribute (an array of single bytes), or None if it is not one."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    if isinstance(name, np.ndarray) and name.dtype.kind == "S" and name.ndim == 1:
        return b"".join(name.tolist()).decode("utf-8", "replace")
    return None


def _csc(
    data: np.ndarray, rows: np.ndarray, starts: np.ndarray, n_rows: int, where: str
) -> scipy.sparse.csc_matrix:
    """A sparse matrix from its compressed columns, checked (``where`` names the file and variable)."""
    problem = None
    if data.dtype.kind not in "biufc":
        problem = f"its values are {data.dtype}"
    elif rows.dtype.kind not in "iu" or starts.dtype.kind not in "iu":
        problem = "its row indices or column starts are not whole numbers"
    elif starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) < 0):
        problem = "its column starts do not rise from 0"
    elif not starts[-1] == rows.size == data.size:
        problem = f"{starts[-1]} entries by its column starts, {rows.size} row indices, {data.size} values"
    elif rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        problem = f"row indices run outside its {n_rows} rows"
    if problem is not None:
        raise ValueError(f"{where}: is a malformed sparse matrix ({problem})")
    return scipy.sparse.csc_matrix(
        (data, rows.astype(np.int64), starts.astype(np.int64)), shape=(n_rows, starts.size - 1)
    )


def _check_v4_v5(path: Path) -> None:
    """Refuse, before scipy reads it, a v4 or v5 file that would take more than the read budget, nests
    deeper than it may, or declares more than it holds."""
    check_size(path.stat().st_size, "the file", path)
    data = path.read_bytes()
    try:
        major, _ = scipy.io.matlab.matfile_version(io.BytesIO(data))
    except (scipy.io.matlab.MatReadError, ValueError, IndexError, struct.error) as error:
        raise ValueError(f"{path}: is not a readable MATLAB file ({reason(error)})") from None
    if major == 0:
        _V4Scan(data, path).run()
    elif major == 1:
        _V5Scan(data, path).run()


class _V4Scan:
    """The headers of a v4 file's matrices (``mopt, mrows, ncols, imagf, namlen``), checked against the
    file's size and the budget."""

    _ITEMSIZES = (8, 4, 4, 2, 2, 1)  # by precision digit: double, single, int32, int16, uint16, uint8

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.budget = data, path, Budget(path)

    def run(self) -> None:
        offset = 0
        while offset + 20 <= len(self.data):
            for order in "<>":
                mopt, mrows, ncols, imagf, namlen = struct.unpack_from(f"{order}5i", self.data, offset)
                if 0 <= mopt < 5000 and (mopt // 100) % 10 == 0 and (mopt // 10) % 10 < 6 and mopt % 10 < 3:
                    break
            else:
                raise ValueError(
                    f"{self.path}: is not a readable MATLAB v4 file (no matrix header at byte {offset})"
                )
            name = (
                self.data[offset + 20 : offset + 20 + min(max(namlen, 0), 64)]
                .split(b"\0")[0]
                .decode("latin-1")
            )
            if min(mrows, ncols, namlen) < 0:
                raise ValueError(f"{self.path}: variable {name!r}: a negative size in its v4 header")
            nbytes = mrows * ncols * self._ITEMSIZES[(mopt // 10) % 10] * (2 if imagf else 1)
            self.budget.charge(nbytes, f"variable {name!r} ({mrows}x{ncols})")
            offset += 20 + namlen + nbytes
            if offset > len(self.data):
                raise ValueError(
                    f"{self.path}: variable {name!r}: declares {mrows}x{ncols} values, more than the file "
                    "holds"
                )


class _V5Scan:
    """A v5 file's elements walked before scipy reads them (scipy's reader trusts what the file says):
    every element's type and byte count checked, each compressed variable's decompressed size charged to
    the budget (only its first bytes inflated before), its cells and structs' declared elements charged
    and their depth bounded."""

    _MATRIX, _COMPRESSED = 14, 15
    _CONTAINERS = ("", "cell", "struct", "object")  # by MATLAB class number
    _DATA = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16, 17, 18})  # numbers and text

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.budget = data, path, Budget(path)
        self.order = "<" if data[126:128] == b"IM" else ">"

    def malformed(self, where: str, what: str) -> ValueError:
        return ValueError(
            f"{self.path}: {_printable(where)}: {what}; the file is damaged or not a MATLAB file"
        )

    def run(self) -> None:
        offset, number = 128, 0
        while offset + 8 <= len(self.data):
            number += 1
            top = {self._MATRIX, self._COMPRESSED}
            kind, nbytes, start, after = self.tag(self.data, offset, len(self.data), f"element {number}", top)
            if kind == self._COMPRESSED:
                body = self.inflate(self.data[start : start + nbytes], number)
                self.matrix(body, 0, len(body), None, 0)
            else:
                self.matrix(self.data, offset, len(self.data), None, 0)
            offset = after

    def tag(
        self, buffer: bytes, offset: int, end: int, where: str, allowed: frozenset | set
    ) -> tuple[int, int, int, int]:
        """An element's type (one of ``allowed``), byte count, where its data start and where the next
        element starts."""
        if offset + 8 > end:
            raise self.malformed(where, "ends inside an element's tag")
        kind, nbytes = struct.unpack_from(f"{self.order}II", buffer, offset)
        small = kind >> 16  # a small element: type and byte count in 4 bytes, data in the next 4
        if small:
            kind, nbytes = kind & 0xFFFF, small
        if kind not in allowed:
            raise self.malformed(where, f"an element of type {kind} where one of {sorted(allowed)} belongs")
        if small:
            if nbytes > 4:
                raise self.malformed(where, f"a small element of {nbytes} bytes (at most 4 fit)")
            return kind, nbytes, offset + 4, offset + 8
        if nbytes > end - offset - 8:
            raise self.malformed(where, f"an element declares {nbytes} bytes, more than it holds")
        padding = 0 if kind == self._COMPRESSED else -nbytes % 8
        return kind, nbytes, offset + 8, min(offset + 8 + nbytes + padding, end)

    def inflate(self, compressed: bytes, number: int) -> bytes:
        """A compressed variable, its declared size checked before it is decompressed."""
        inflater = zlib.decompressobj()
        try:
            head = inflater.decompress(compressed, 4096)
        except zlib.error as error:
            raise self.malformed(
                f"element {number}", f"its compressed data are corrupt ({reason(error)})"
            ) from None
        if len(head) < 8:
            raise self.malformed(f"element {number}", "its compressed data end inside its tag")
        declared = 8 + struct.unpack_from(f"{self.order}I", head, 4)[0]
        try:
            where = self.header(head, 8, len(head), None)[2]
        except ValueError:  # too little inflated to hold its name: the element is named by its place
            where = f"element {number}"
        self.budget.charge(declared, f"variable {where!r} (decompressed)")
        try:
            rest = inflater.decompress(inflater.unconsumed_tail, max(declared - len(head), 1))
        except zlib.error as error:
            raise self.malformed(where, f"its compressed data are corrupt ({reason(error)})") from None
        return (head + rest)[:declared]

    def header(
        self, buffer: bytes, start: int, stop: int, where: str | None
    ) -> tuple[int, list[int], str, int]:
        """A matrix's array flags (its class in the low byte), dimensions and name (or ``where``), read from
        its contents at ``start``, and where its contents go on."""
        label = where or "a variable"
        _, size, flags, position = self.tag(buffer, start, stop, label, {6})
        _, size_dims, dims_at, position = self.tag(buffer, position, stop, label, {5})
        _, size_name, name_at, position = self.tag(buffer, position, stop, label, {1})
        if size < 4 or size_dims % 4:
            raise self.malformed(label, "a matrix without its class or dimensions")
        flags_word = struct.unpack_from(f"{self.order}I", buffer, flags)[0]
        dims = list(struct.unpack_from(f"{self.order}{size_dims // 4}i", buffer, dims_at))
        name = where or buffer[name_at : name_at + size_name].decode("latin-1")
        return flags_word, dims, name, position

    def matrix(self, buffer: bytes, offset: int, end: int, where: str | None, depth: int) -> int:  # noqa: C901
        """Check the matrix at ``offset`` and everything it nests; where the next element starts.

        One walk through the format's cases (data elements, cells, structs, objects), each refused the
        moment it disagrees with what it declares: kept whole so that every check reads in the order of
        the bytes it guards (hence the noqa of the complexity rule).
        """
        _, nbytes, start, after = self.tag(buffer, offset, end, where or "a variable", {self._MATRIX})
        if nbytes == 0:
            return after
        stop = start + nbytes
        flags, dims, where, position = self.header(buffer, start, stop, where)
        matlab_class = flags & 0xFF
        if not 1 <= matlab_class <= 17:
            raise self.malformed(where, f"an unknown MATLAB class {matlab_class}")
        if not 1 <= matlab_class <= 3:  # numbers, text, sparse: data elements; functions, opaque: any
            allowed = self._DATA if matlab_class < 16 else self._DATA | {self._MATRIX}
            n_elements = 0
            while position < stop:
                kind, _, _, following = self.tag(buffer, position, stop, where, allowed)
                if kind == self._MATRIX:
                    self.matrix(buffer, position, stop, where, depth + 1)
                position, n_elements = following, n_elements + 1
            # scipy reads as many parts as the class and the complex flag say, present or not
            expected = (3 if matlab_class == 5 else 1) + bool(flags & 0x800)
            if matlab_class < 16 and n_elements != expected:
                raise self.malformed(where, f"{n_elements} data element(s) where its class has {expected}")
            return after
        if depth >= _MAX_NESTING:
            raise _too_deep(self.path, where)
        if min(dims, default=0) < 0:
            raise self.malformed(where, f"negative dimensions {dims}")
        count = math.prod(dims)
        fields = [""]
        if matlab_class != 1:
            if matlab_class == 3:  # an object: its class name comes first
                position = self.tag(buffer, position, stop, where, {1})[3]
            _, size, length_at, position = self.tag(buffer, position, stop, where, {5})
            _, size_names, names_at, position = self.tag(buffer, position, stop, where, {1})
            length = struct.unpack_from(f"{self.order}i", buffer, length_at)[0] if size >= 4 else 0
            if length <= 0 and size_names:
                raise self.malformed(where, "struct field names of no length")
            fields = [
                buffer[names_at + k : names_at + k + length].split(b"\0")[0].decode("latin-1")
                for k in range(0, size_names if length > 0 else 0, max(length, 1))
            ]
        slots = count * len(fields)
        shape = "x".join(map(str, dims))
        if slots * 8 > stop - position:
            raise self.malformed(
                where, f"declares a {shape} {self._CONTAINERS[matlab_class]} it does not hold"
            )
        self.budget.charge(
            max(slots, count) * _OBJECT_COST, f"{where} ({shape} {self._CONTAINERS[matlab_class]})"
        )
        for k in range(count):
            for field in fields:
                inner = f"{where}{{{k + 1}}}" if matlab_class == 1 else f"{where}({k + 1}).{field}"
                if matlab_class != 1 and count == 1:
                    inner = f"{where}.{field}"
                position = self.matrix(buffer, position, stop, inner, depth + 1)
        return after


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
    if scipy.sparse.issparse(value) and value.ndim == 2 and value.dtype.kind in "biuf":
        return ("raster", value)
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
        names, named_by = _element_names(elements)
        return raw, names, f"a struct array of {len(elements)} units, times in .{field}, {named_by}"
    fields = layout[1]
    raw = [np.asarray(values, dtype=np.float64).ravel() for values in fields.values()]
    return raw, list(fields), f"a struct of {len(fields)} units, one field each, named by field"


def _raster(
    matrix: scipy.sparse.spmatrix,
    variable: str,
    columns: str | None,
    time_unit: str | None,
    sampling_rate: float | None,
    path: Path,
) -> tuple[list, list, str, int]:
    """Each unit's spikes as bin indices (a count of k in a bin: k spikes there), the units' names, a
    sentence on how they were found, and the number of bins."""
    shape = "x".join(map(str, matrix.shape))
    if sampling_rate is None or time_unit not in (None, "samples"):
        told = "" if time_unit in (None, "samples") else f", not in time_unit={time_unit!r}"
        raise ValueError(
            f"{path}: {variable} is a spike raster (a sparse {shape} matrix of counts per bin) whose bins "
            f"are samples{told}; {_RASTER_HINT}"
        )
    n_rows, n_cols = matrix.shape
    if columns is None and n_rows == n_cols:
        raise ValueError(
            f"{path}: {variable}: cannot tell which axis of the {shape} raster holds the units (neither is "
            "shorter); pass columns= (--columns id,time for one row per unit, or time,id)"
        )
    by_rows = columns == "id,time" if columns is not None else n_rows < n_cols
    n_units, n_bins = (n_rows, n_cols) if by_rows else (n_cols, n_rows)
    check_size(n_units * _OBJECT_COST, f"{variable} (a raster of {n_units} units)", path)
    # scipy.io.loadmat does not check a sparse matrix's parts: checked here before any use
    matrix = _csc(matrix.data, matrix.indices, matrix.indptr, n_rows, f"{path}: {variable}")
    units = matrix.tocsr() if by_rows else matrix
    units.sort_indices()
    counts = np.asarray(units.data, dtype=np.float64)
    bad = ~(np.isfinite(counts) & (counts >= 0) & (counts == np.round(counts)))
    if bad.any():
        raise ValueError(
            f"{path}: {variable}: a spike raster holds counts, but {int(bad.sum())} of its values are "
            f"negative or not whole numbers (e.g. {counts[bad][0]:g})"
        )
    total = float(counts.sum())
    check_size(total * 8, f"{variable} (a raster of {total:.0f} spikes)", path)
    repeats = counts.astype(np.int64)
    bins = np.repeat(units.indices.astype(np.float64), repeats)
    entry_unit = np.repeat(np.arange(n_units), np.diff(units.indptr))
    per_unit = np.bincount(entry_unit, weights=repeats, minlength=n_units).astype(np.int64)
    axis = ("rows" if by_rows else "columns") + (", as told" if columns else ", the shorter axis")
    return (
        np.split(bins, np.cumsum(per_unit)[:-1]),
        [str(k + 1) for k in range(n_units)],
        f"a sparse raster of {n_units} units (the {axis}) by {n_bins} bins, named 1 to {n_units}",
        n_bins,
    )


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
        texts = [_scalar_text(element[field]) for element in elements]
        names = [text for text in texts if text is not None]
        if len(names) == len(texts) and len(set(names)) == len(names):
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


def _printable(text: str) -> str:
    """``text`` (a name read from the file) for a one-line message: characters that do not print escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _describe(value: Any) -> str:
    if scipy.sparse.issparse(value):
        return f"a {'x'.join(map(str, value.shape))} sparse {value.dtype} matrix"
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
