"""Hostile MATLAB files: sparse rasters read honestly, memory bombs, loops and deep nesting refused in one
line naming the file and the variable.

Every file is made here, small, under ``tmp_path``: v5 with :func:`scipy.io.savemat` or by hand
(:func:`v5_file`), v7.3 with h5py as MATLAB lays it out (``MATLAB_class`` attributes, ``#refs#``).
"""

from __future__ import annotations

import struct
import zlib

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from conftest import assert_refused, run_cli
from test_readers import write_v73

import spikeglm as sg

# A raster of 3 units by 8 bins (one row per unit): counts of spikes per bin.
RASTER = np.array([[0, 2, 0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 3], [0, 0, 0, 1, 0, 0, 0, 0]])
RATE = 100.0
RASTER_TIMES = {"1": [0.01, 0.01, 0.04], "2": [0.0, 0.07, 0.07, 0.07], "3": [0.03]}


def mark(obj, kind: str):
    """Give an HDF5 object MATLAB's class attribute."""
    obj.attrs["MATLAB_class"] = np.bytes_(kind)
    return obj


def write_sparse_v73(path, matrix, kind: str = "double") -> None:
    """``matrix`` as MATLAB v7.3 stores a sparse matrix: a group of its compressed columns."""
    csc = scipy.sparse.csc_matrix(matrix)
    with h5py.File(path, "w") as handle:
        group = mark(handle.create_group("raster"), kind)
        group.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
        group.create_dataset("data", data=csc.data)
        group.create_dataset("ir", data=csc.indices.astype(np.uint64))
        group.create_dataset("jc", data=csc.indptr.astype(np.uint64))


def element(kind: int, payload: bytes) -> bytes:
    """A v5 data element: its tag (type, byte count), then the payload padded to 8 bytes."""
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def matrix_head(matlab_class: int, dims: list[int], name: str) -> bytes:
    """A v5 matrix's array flags, dimensions and name."""
    return (
        element(6, struct.pack("<II", matlab_class, 0))
        + element(5, struct.pack(f"<{len(dims)}i", *dims))
        + element(1, name.encode())
    )


def v5_file(path, *elements: bytes) -> None:
    """A v5 MAT-file: the 128-byte header (little-endian), then ``elements``."""
    text = b"MATLAB 5.0 MAT-file, made by hand".ljust(116, b" ")
    path.write_bytes(text + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM" + b"".join(elements))


def deep_v5_struct(name: str, depth: int) -> bytes:
    """A v5 struct ``name.a.a.a...`` nested ``depth`` levels around a vector."""
    inner = element(14, matrix_head(6, [1, 2], "") + element(9, np.array([1.0, 2.0]).tobytes()))
    field = element(5, struct.pack("<i", 32)) + element(1, b"a".ljust(32, b"\0"))
    for level in range(depth):
        inner = element(14, matrix_head(2, [1, 1], name if level == depth - 1 else "") + field + inner)
    return inner


def assert_units(recording, expected):
    assert recording.unit_ids.tolist() == list(expected)
    for times, want in zip(recording.spike_times, expected.values(), strict=True):
        np.testing.assert_allclose(times, want)


# ------------------------------------------------------------------------------------ sparse rasters


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_sparse_raster_read_the_same_in_both_versions(tmp_path, version):
    path = tmp_path / "raster.mat"
    if version == "v5":
        scipy.io.savemat(path, {"raster": scipy.sparse.csc_matrix(RASTER.astype(float))})
    else:
        write_sparse_v73(path, RASTER.astype(float))
    recording = sg.load(path, sampling_rate=RATE)
    assert_units(recording, RASTER_TIMES)
    assert recording.t_start == 0.0 and recording.t_stop == pytest.approx(8 / RATE)
    assumed = recording.annotations["assumed"]
    assert assumed["variable"].startswith("raster: a sparse raster of 3 units (the rows, the shorter axis)")
    assert assumed["time unit"] == "samples at 100 Hz (as told)"
    transposed = tmp_path / "transposed.mat"
    if version == "v5":
        scipy.io.savemat(transposed, {"raster": scipy.sparse.csc_matrix(RASTER.T.astype(float))})
    else:
        write_sparse_v73(transposed, RASTER.T.astype(float))
    assert_units(sg.load(transposed, sampling_rate=RATE), RASTER_TIMES)  # units on the shorter axis
    # columns= overrides: "time,id" reads the 8 rows of the original as units, named 1 to 8
    assert sg.load(path, sampling_rate=RATE, columns="time,id", empty_units="keep").n_units == 8


def test_sparse_raster_logical_v73(tmp_path):
    path = tmp_path / "logical.mat"
    write_sparse_v73(path, (RASTER > 0).astype(np.uint8), kind="logical")
    recording = sg.load(path, sampling_rate=RATE)
    assert recording.n_spikes.tolist() == [2, 2, 1]


def test_sparse_raster_needs_its_rate_and_counts(tmp_path):
    path = tmp_path / "raster.mat"
    write_sparse_v73(path, RASTER.astype(float))
    with pytest.raises(ValueError, match=r"raster\.mat: raster is a spike raster .*--sampling-rate HZ"):
        sg.load(path)
    with pytest.raises(ValueError, match=r"raster\.mat: raster .*not in time_unit='ms'.*--sampling-rate"):
        sg.load(path, time_unit="ms", sampling_rate=RATE)
    for bad in (0.5, -1.0):
        values = RASTER.astype(float)
        values[0, 0] = bad
        write_sparse_v73(path, values)
        with pytest.raises(ValueError, match=r"raster\.mat: raster: .* negative or not whole numbers"):
            sg.load(path, sampling_rate=RATE)
    square = tmp_path / "square.mat"
    scipy.io.savemat(square, {"raster": scipy.sparse.csc_matrix(np.eye(3))})
    with pytest.raises(ValueError, match=r"square\.mat: raster: cannot tell which axis .*--columns id,time"):
        sg.load(square, sampling_rate=RATE)


def test_sparse_raster_spike_count_is_bounded(tmp_path):
    path = tmp_path / "many.mat"
    write_sparse_v73(path, np.array([[0.0, 1e12, 0.0]]))
    with pytest.raises(
        ValueError, match=r"many\.mat: raster \(a raster of 1000000000000 spikes\) would take"
    ):
        sg.load(path, sampling_rate=RATE)


def test_sparse_group_is_never_a_struct(tmp_path):
    path = tmp_path / "broken.mat"
    write_sparse_v73(path, RASTER.astype(float))
    with h5py.File(path, "r+") as handle:
        del handle["raster/ir"]
    with pytest.raises(ValueError, match=r"broken\.mat: raster: is a sparse matrix without its parts"):
        sg.load(path, sampling_rate=RATE)
    write_sparse_v73(path, RASTER.astype(float))
    with h5py.File(path, "r+") as handle:
        handle["raster"].attrs["MATLAB_sparse"] = np.uint64(2)  # row indices beyond the rows
    with pytest.raises(ValueError, match=r"broken\.mat: raster: is a malformed sparse matrix \(row indices"):
        sg.load(path, sampling_rate=RATE)


@pytest.mark.slow
def test_sparse_raster_cli_without_rate_refused(tmp_path):
    path = tmp_path / "raster.mat"
    write_sparse_v73(path, RASTER.astype(float))
    output = tmp_path / "model.h5"
    before = path.read_bytes()
    result = run_cli("fit", str(path), "-o", str(output), "--epochs", "1")
    assert_refused(result, "raster.mat", "raster", "--sampling-rate")
    assert not output.exists() and path.read_bytes() == before


# -------------------------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_v73_unwritten_huge_dataset_refused(tmp_path):
    path = tmp_path / "declared.mat"
    with h5py.File(path, "w") as handle:
        x = handle.create_dataset("x", shape=(1, 10**9), dtype="f8", chunks=(1, 10**5), compression="gzip")
        mark(x, "double")
    assert path.stat().st_size < 10_000
    assert_refused(run_cli("info", str(path)), "declared.mat", "x (1x1000000000 float64)", "read limit")
    with h5py.File(path, "w") as handle:  # within the budget, but nothing written: refused all the same
        x = handle.create_dataset("x", shape=(1, 1000), dtype="f8", chunks=(1, 100), compression="gzip")
        mark(x, "double")
    with pytest.raises(ValueError, match=r"declared\.mat: x: declares 1x1000 values but stores none"):
        sg.load(path)


def write_shared_cell(path, n_refs: int, values: np.ndarray) -> None:
    """A cell of ``n_refs`` references to one compressed dataset of ``values``."""
    with h5py.File(path, "w") as handle:
        target = handle.create_group("#refs#").create_dataset(
            "z", data=values[None, :], chunks=(1, min(values.size, 10**5)), compression="gzip"
        )
        mark(target, "double")
        references = np.array([target.ref] * n_refs, dtype=h5py.ref_dtype)[:, None]
        mark(handle.create_dataset("c", data=references), "cell")


@pytest.mark.slow
def test_v73_references_charged_each_time(tmp_path):
    path = tmp_path / "shared.mat"
    write_shared_cell(path, 2000, np.zeros(10**6))
    assert path.stat().st_size < 100_000
    assert_refused(run_cli("info", str(path)), "shared.mat", "c{", "read limit")
    write_shared_cell(path, 20, np.arange(1000) / 1000)  # a few references to a small dataset: read
    assert sg.load(path).n_units == 20
    with pytest.raises(
        ValueError, match=r"shared\.mat: c\{6\} with what was read before it would take 47\.9 KiB"
    ):
        sg.load(path, read_limit=5 * 8000 + 5000)


@pytest.mark.slow
def test_v5_compressed_bomb_refused_before_inflating(tmp_path):
    """About 2**29 zero doubles declared in a compressed element: refused from its first inflated bytes
    (the stream here holds only its first megabyte; it is never inflated further)."""
    path = tmp_path / "bomb.mat"
    n = 2**29 - 64  # the most doubles a v5 element can declare
    content = matrix_head(6, [1, n], "big") + struct.pack("<II", 9, 8 * n)
    head = struct.pack("<II", 14, len(content) + 8 * n) + content
    stream = zlib.compressobj(9)
    compressed = stream.compress(head + bytes(1 << 20)) + stream.flush(zlib.Z_SYNC_FLUSH)
    v5_file(path, struct.pack("<II", 15, len(compressed)) + compressed)
    assert_refused(run_cli("info", str(path)), "bomb.mat", "'big' (decompressed)", "read limit")


def test_v5_cell_declaring_more_than_it_holds(tmp_path):
    path = tmp_path / "cells.mat"
    v5_file(path, element(14, matrix_head(1, [100000, 100000], "c")))
    with pytest.raises(ValueError, match=r"cells\.mat: c: declares a 100000x100000 cell it does not hold"):
        sg.load(path)


def test_v5_element_tags_checked_before_scipy_reads_them(tmp_path):
    """scipy's reader trusts the tags (a wrong type can crash it): every tag is checked first."""
    path = tmp_path / "tags.mat"
    scipy.io.savemat(path, {"unit_t": np.array([[0.1, 0.2, 0.3]])})
    body = path.read_bytes()[128:]
    v5_file(path, struct.pack("<HHI", 5, 4, 7), body)  # a small miINT32 element where a variable belongs
    with pytest.raises(
        ValueError, match=r"tags\.mat: element 1: an element of type 5 where one of \[14, 15\]"
    ):
        sg.load(path)
    data_tag = body.index(struct.pack("<II", 9, 24))  # the doubles' tag
    v5_file(path, body[:data_tag] + struct.pack("<II", 89, 24) + body[data_tag + 8 :])
    with pytest.raises(ValueError, match=r"tags\.mat: unit_t: an element of type 89 where one of \[1, "):
        sg.load(path)
    v5_file(path, body[:data_tag] + struct.pack("<HH", 9, 0x7B00) + body[data_tag + 4 :])
    with pytest.raises(ValueError, match=r"tags\.mat: unit_t: a small element of 31488 bytes"):
        sg.load(path)
    flags = body.index(struct.pack("<IIII", 6, 8, 6, 0))  # the array flags: class 6 (double)
    complex_flag = struct.pack("<IIII", 6, 8, 6 | 0x800, 0)  # says complex: scipy would read a part not there
    v5_file(path, body[:flags] + complex_flag + body[flags + 16 :])
    with pytest.raises(ValueError, match=r"tags\.mat: unit_t: 1 data element\(s\) where its class has 2"):
        sg.load(path)


def test_v4_declared_size_checked(tmp_path):
    path = tmp_path / "v4.mat"
    name = b"x\0"
    path.write_bytes(struct.pack("<5i", 0, 100000, 100000, 0, len(name)) + name + bytes(64))
    with pytest.raises(ValueError, match=r"v4\.mat: variable 'x' \(100000x100000\) would take 74\.5 GiB"):
        sg.load(path)
    path.write_bytes(struct.pack("<5i", 0, 100, 100, 0, len(name)) + name + bytes(64))
    with pytest.raises(ValueError, match=r"v4\.mat: variable 'x': declares 100x100 values, more than"):
        sg.load(path)
    values = np.arange(1.0, 7.0)  # a genuine v4 file still reads
    scipy.io.savemat(path, {"rows": np.column_stack([[1, 1, 2, 2, 3, 3], values / 10])}, format="4")
    assert sg.load(path).n_units == 3


# ---------------------------------------------------------------------------------- depth and loops


def test_v73_cell_that_contains_itself(tmp_path):
    path = tmp_path / "loop.mat"
    with h5py.File(path, "w") as handle:
        refs = handle.create_group("#refs#")
        cell = mark(refs.create_dataset("a", shape=(1, 1), dtype=h5py.ref_dtype), "cell")
        cell[0, 0] = cell.ref
        mark(handle.create_dataset("c", data=np.array([[cell.ref]], dtype=h5py.ref_dtype)), "cell")
    with pytest.raises(ValueError, match=r"loop\.mat: c\{1\}\{1\}: contains itself"):
        sg.load(path)


def test_v73_structs_nested_deep(tmp_path):
    path = tmp_path / "deep.mat"
    with h5py.File(path, "w") as handle:
        group = handle
        for _ in range(1000):
            group = mark(group.create_group("s"), "struct")
        mark(group.create_dataset("t", data=np.arange(5.0)[:, None]), "double")
    with pytest.raises(ValueError, match=r"deep\.mat: s(\.s){32}: .* nested deeper than 32 levels"):
        sg.load(path)


@pytest.mark.parametrize("link", ["hard", "soft"])
def test_v73_link_loops(tmp_path, link):
    path = tmp_path / "links.mat"
    with h5py.File(path, "w") as handle:
        group = mark(handle.create_group("s"), "struct")
        mark(group.create_dataset("t", data=np.arange(5.0)[:, None]), "double")
        group["back"] = group if link == "hard" else h5py.SoftLink("/s")
    with pytest.raises(ValueError, match=r"links\.mat: s\.back: contains itself"):
        sg.load(path)
    with h5py.File(path, "w") as handle:  # soft links that lead to each other
        handle["a"], handle["b"] = h5py.SoftLink("/b"), h5py.SoftLink("/a")
    with pytest.raises(ValueError, match=r"links\.mat: a: cannot be opened \(.*too many links"):
        sg.load(path)


def test_v73_external_links_refused(tmp_path):
    other = tmp_path / "other.mat"
    write_v73(other, {"t": [np.arange(5.0)]})
    path = tmp_path / "outside.mat"
    for target in (other.name, "missing.mat"):
        with h5py.File(path, "w") as handle:
            handle["spikes"] = h5py.ExternalLink(target, "/t")
        with pytest.raises(ValueError, match=rf"outside\.mat: spikes: is an external link to /t in {target}"):
            sg.load(path)


def test_v5_structs_nested_deep(tmp_path):
    path = tmp_path / "deep5.mat"
    v5_file(path, deep_v5_struct("x", 40))
    with pytest.raises(ValueError, match=r"deep5\.mat: x(\.a){32}: cells or structs nested deeper than 32"):
        sg.load(path)
    v5_file(path, deep_v5_struct("x", 3))  # shallow nesting is read (and holds no spike times)
    with pytest.raises(ValueError, match=r"deep5\.mat: no variable holds spike times .* x: a struct"):
        sg.load(path)


# ---------------------------------------------------------------------------- library text, replaced


def test_v73_truncated_file(tmp_path):
    path = tmp_path / "cut.mat"
    write_v73(path, {"unit_t": [np.arange(5.0), np.arange(3.0)]})
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ValueError, match=r"^[^\n]*cut\.mat: [^\n]*$") as caught:
        sg.load(path)
    assert "Unable to synchronously" not in str(caught.value)


def test_v73_null_and_dangling_references(tmp_path):
    path = tmp_path / "refs.mat"
    with h5py.File(path, "w") as handle:
        mark(
            handle.create_dataset("c", data=np.array([[h5py.Reference()]] * 2, dtype=h5py.ref_dtype)), "cell"
        )
    with pytest.raises(ValueError, match=r"refs\.mat: c\{1\}: is a null reference"):
        sg.load(path)
    with h5py.File(path, "w") as handle:
        target = mark(handle.create_group("#refs#").create_dataset("x", data=[[1.0]]), "double")
        mark(handle.create_dataset("c", data=np.array([[target.ref]], dtype=h5py.ref_dtype)), "cell")
        del handle["#refs#/x"]
    with pytest.raises(ValueError, match=r"refs\.mat: c\{1\}: is a reference that leads nowhere"):
        sg.load(path)


def test_v73_malformed_fields_attribute(tmp_path):
    path = tmp_path / "fields.mat"
    write_v73(path, {"data": {"alpha": np.arange(5.0), "be": np.arange(4.0)}})
    with h5py.File(path, "r+") as handle:
        del handle["data"].attrs["MATLAB_fields"]
        handle["data"].attrs["MATLAB_fields"] = 7
    with pytest.raises(
        ValueError, match=r"fields\.mat: data: has a MATLAB_fields attribute that is not a list"
    ):
        sg.load(path)


def test_v73_char_code_points(tmp_path):
    path = tmp_path / "chars.mat"
    with h5py.File(path, "w") as handle:
        mark(handle.create_dataset("label", data=np.array([[72], [0x110000]], dtype=np.int64)), "char")
        mark(handle.create_dataset("t", data=np.arange(5.0)[None, :].T), "double")
    with pytest.raises(ValueError, match=r"chars\.mat: label: is marked char but holds int64 values"):
        sg.load(path)
    with h5py.File(path, "w") as handle:  # a lone surrogate: replaced, not an error
        mark(handle.create_dataset("label", data=np.array([[72], [0xD800]], dtype=np.uint16)), "char")
        mark(handle.create_dataset("spks", data=np.array([[1, 1, 2, 2], [0.1, 0.2, 0.3, 0.4]])), "double")
    assert sg.load(path).n_units == 2
