"""Hostile and careless input to the text, phy and npz/csv readers, their time units, and the comparison
of units: each is read within the read budget or refused with one line naming the file and the part at
fault. The files are made here, small, under ``tmp_path``.
"""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest
from conftest import assert_refused, run_cli

import spikeglm as sg
from spikeglm.io.text import MAX_LINE
from spikeglm.recording import CROWD, REPEATS_REFUSED


def repeated_gzip(path, block: bytes, copies: int):
    """A gzip file that expands to ``copies`` times ``block``: one member compressed, then repeated."""
    member = gzip.compress(block, compresslevel=9)
    path.write_bytes(member * copies)
    return path


def npy_bytes(shape: tuple, descr: str = "<f8", data: bytes = b"") -> bytes:
    """A ``.npy`` header declaring ``shape`` and ``descr``, followed by ``data`` (whatever it holds)."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": False, "shape": shape})
    return stream.getvalue() + data


def write_phy(folder, times=None, clusters=None, rate="30000.0"):
    folder.mkdir()
    times = np.array([30, 300, 3000, 30000], dtype=np.int64) if times is None else times
    np.save(folder / "spike_times.npy", times)
    np.save(folder / "spike_clusters.npy", np.array([1, 2, 1, 2]) if clusters is None else clusters)
    (folder / "params.py").write_text(f"sample_rate = {rate}\n")
    return folder


# ------------------------------------------------------------------------------- text: memory and time


@pytest.mark.slow
def test_a_gzip_of_one_endless_line_is_refused_at_line_1(tmp_path):
    path = repeated_gzip(tmp_path / "a.txt.gz", b"0" * (1 << 24), 128)  # 2 GiB of '0' in 2 MB
    assert path.stat().st_size < 3_000_000
    assert_refused(run_cli("info", path), "a.txt.gz", f"line 1 is longer than {MAX_LINE} characters")


def test_a_gzip_past_the_read_limit_is_refused_while_it_streams(tmp_path):
    path = repeated_gzip(tmp_path / "a.txt.gz", b"0.5\n" * 1_000_000, 20)  # 80 MB of text
    with pytest.raises(ValueError, match=r"a\.txt\.gz: the unit files' text and spike times .* read limit"):
        sg.load(path, read_limit="5 MB")


def test_one_time_repeated_is_not_a_spike_train(tmp_path):
    path = repeated_gzip(tmp_path / "a.txt.gz", b"0.5\n" * 5000, 1)
    with pytest.raises(ValueError, match=r"a\.txt\.gz: unit 'a': 4999 of its 5000 spike times repeat"):
        sg.load(path)
    # A few repeats are read, and named among the suspicious units.
    recording = sg.Recording([[0.1, 0.2, 0.2, 0.3] + [0.4] * 30, np.arange(40) / 10], ["a", "b"])
    notes = recording.suspicious_units()
    assert "unit 'a': 30 spike(s) at the same time as its previous spike" in " ".join(notes)
    assert not any("'b': " in note and "same time" in note for note in notes)
    assert REPEATS_REFUSED > 30


def test_chunked_text_keeps_exact_line_numbers(tmp_path):
    lines = [f"{k * 1e-4:.6f}" for k in range(300_000)]  # over 2 MB: several chunks
    lines[5] = "# a comment"
    lines[200_001] = "0.5 0.6"
    path = tmp_path / "cell.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"cell\.txt: line 200002: '0\.5 0\.6' is not one spike time"):
        sg.load(path)
    lines[200_001] = "1-2"  # numpy alone would read two numbers here
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"cell\.txt: line 200002: '1-2' is not one spike time"):
        sg.load(path)
    lines[200_001] = "1" * (MAX_LINE + 1)
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"cell\.txt: line 200002 is longer than 100 characters"):
        sg.load(path)
    lines[200_001] = "20.0001"
    path.write_text("\r\n".join(lines) + "\r\n")
    recording = sg.load(path)
    assert recording.n_spikes[0] == 299_999 and recording.spike_times[0][-1] == pytest.approx(29.9999)


# ------------------------------------------------------------------------------------------ encodings


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8-sig"),  # Excel's UTF-8, with a byte-order mark
        lambda text: text.encode("utf-16"),
        lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
    ],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be"],
)
def test_text_csv_and_phy_tables_read_utf8_with_a_bom_and_utf16(tmp_path, encode):
    (tmp_path / "cell.txt").write_bytes(encode("# caf\u00e9\n0.1\n0.2\n"))
    assert sg.load(tmp_path / "cell.txt").spike_times[0].tolist() == [0.1, 0.2]
    (tmp_path / "spikes.csv").write_bytes(encode("unit,time\ncaf\u00e9,0.1\n"))
    assert sg.load(tmp_path / "spikes.csv").unit_ids.tolist() == ["caf\u00e9"]
    folder = write_phy(tmp_path / "sorted")
    (folder / "cluster_group.tsv").write_bytes(encode("cluster_id\tgroup\n1\tgood\n2\tmua\n"))
    (folder / "params.py").write_bytes(encode("# r\u00e9glages\nsample_rate = 30000.0\n"))
    recording = sg.load(folder)
    assert [note["label"] for note in recording.unit_annotations] == ["good", "mua"]


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("cell.txt", lambda path: path.write_bytes("# caf\u00e9\n0.1\n".encode("latin-1"))),
        ("spikes.csv", lambda path: path.write_bytes("unit,time\ncaf\u00e9,0.1\n".encode("latin-1"))),
        (
            "cluster_group.tsv",
            lambda path: path.write_bytes("cluster_id\tgroup\n1\tb\u00e9\n".encode("latin-1")),
        ),
        ("params.py", lambda path: path.write_bytes(b"# r\xe9glages\nsample_rate = 30000.0\n")),
    ],
)
def test_latin1_text_is_refused_naming_the_file_and_byte(tmp_path, name, write):
    folder = write_phy(tmp_path / "sorted")
    path = folder / name if name.endswith((".tsv", ".py")) else tmp_path / name
    write(path)
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(
        ValueError, match=rf"{name}: is not UTF-8 text: byte {offset} \(0xe9\) cannot be decoded"
    ):
        sg.load(folder if path.parent == folder else path)


@pytest.mark.slow
def test_a_refused_recording_writes_nothing(tmp_path):
    path = tmp_path / "cell.txt"
    path.write_bytes(b"0.1\n0.2\xe9\n")
    before = path.read_bytes()
    output = tmp_path / "model.h5"
    assert_refused(run_cli("fit", path, "-o", output), "cell.txt", "byte 7")
    assert not output.exists() and path.read_bytes() == before


# ------------------------------------------------------------------------------------------ npz and npy


def write_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_npz_members_are_checked_before_they_are_read(tmp_path):
    ids = npy_bytes((2,), "<i8", np.arange(2).tobytes())
    declared = write_zip(
        tmp_path / "declared.npz", {"spike_times.npy": npy_bytes((10**9,)), "unit_ids.npy": ids}
    )
    with pytest.raises(
        ValueError, match=r"declared\.npz: array 'spike_times' \(1000000000 values of float64\) "
    ):
        sg.load(declared)
    truncated = write_zip(
        tmp_path / "truncated.npz", {"spike_times.npy": npy_bytes((2,)), "unit_ids.npy": ids}
    )
    with pytest.raises(
        ValueError, match=r"truncated\.npz: array 'spike_times' declares 2 values .* holds only"
    ):
        sg.load(truncated)
    bomb = write_zip(
        tmp_path / "bomb.npz",
        {"spike_times.npy": npy_bytes((1 << 23,), data=bytes(1 << 26)), "unit_ids.npy": ids},
    )
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(
        ValueError, match=r"bomb\.npz: array 'spike_times' \(decompressed.*over the read limit of 9\.54 MiB"
    ):
        sg.load(bomb, read_limit="10 MB")


@pytest.mark.slow
def test_a_large_npz_member_is_refused_under_a_memory_cap(tmp_path):
    path = write_zip(tmp_path / "bomb.npz", {"spike_times.npy": npy_bytes((1 << 21,), data=bytes(1 << 24))})
    assert_refused(run_cli("info", path, "--read-limit", "4 MB"), "bomb.npz", "'spike_times'", "read limit")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"spike_times": np.array([0.1 + 1j])},
            r"array 'spike_times' must hold real numbers \(s\); got complex",
        ),
        ({"spike_times": np.array([True])}, r"array 'spike_times' must hold real numbers \(s\); got bool"),
        ({"unit_ids": np.array([b"\xe9"])}, r"array 'unit_ids' holds bytes that are not UTF-8"),
        ({"t_stop": np.array([1.0, 2.0])}, r"array 't_stop' must be one number \(s\); got shape \(2,\)"),
        ({"t_start": np.array("zero")}, r"array 't_start' must hold a real number \(s\); got <U4"),
        ({"trials": np.array([["a", "b"]])}, r"array 'trials' must hold real numbers \(s\); got <U1"),
    ],
    ids=["complex", "bool", "bytes", "t_stop", "t_start", "trials"],
)
def test_npz_arrays_of_the_wrong_kind_are_named(tmp_path, arrays, message):
    path = tmp_path / "x.npz"
    np.savez(path, **{"spike_times": np.array([0.1]), "unit_ids": np.array([1]), **arrays})
    with pytest.raises(ValueError, match=rf"x\.npz: {message}"):
        sg.load(path)


def test_many_units_are_counted_against_the_read_limit(tmp_path):
    path = tmp_path / "units.npz"
    np.savez(path, spike_times=np.arange(50_000) * 1e-3, unit_ids=np.arange(50_000))
    with pytest.raises(
        ValueError, match=r"units\.npz: 50000 units would take 47\.7 MiB, over the read limit"
    ):
        sg.load(path, read_limit="10 MB")


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (
            "spike_times.npy",
            npy_bytes((10**10,), "<i8"),
            r"spike_times\.npy: the array \(10000000000 values of int64",
        ),
        (
            "spike_times.npy",
            npy_bytes((4,), "<i8", bytes(16)),
            r"spike_times\.npy: declares 4 values of int64",
        ),
        ("spike_times.npy", npy_bytes((4,), "<c16", bytes(64)), r"spike_times\.npy: expected real-numbered"),
        (
            "spike_times.npy",
            npy_bytes((4,), "|b1", bytes(4)),
            r"spike_times\.npy: expected real-numbered .* bool",
        ),
        (
            "spike_times.npy",
            npy_bytes((4,), "<U3", bytes(48)),
            r"spike_times\.npy: expected real-numbered .* <U3",
        ),
        ("spike_times.npy", b"\x93NUMPY\x01\x00\xff\xff", r"spike_times\.npy: is not a readable \.npy array"),
        (
            "spike_clusters.npy",
            npy_bytes((4,), "<f8", bytes(32)),
            r"spike_clusters\.npy: expected whole-number",
        ),
        (
            "params.py",
            b"sample_rate = 1e-300\n",
            r"in samples at 1e-300 Hz the times reach .* params\.py sample_rate",
        ),
        (
            "params.py",
            b"sample_rate = 1e-320\n",
            r"params\.py sample_rate: 1e-320 is not a normal positive number",
        ),
        ("params.py", b"sample_rate = (" * 300 + b"\n", r"params\.py: is not readable Python"),
        ("params.py", b"sample_rate = " + b"-" * 100_000 + b"1\n", r"params\.py: is not readable Python"),
        (
            "params.py",
            b"sample_rate = 1" + b"0" * 400 + b"\n",
            r"params\.py: no positive sample_rate \(got 1000",
        ),
        (
            "params.py",
            b"sample_rate = " + b"[" * 150 + b"]" * 150,
            r"params\.py: no positive sample_rate \(got \[\[\[",
        ),
        ("params.py", b"#" * (2 << 20), r"params\.py: is longer than 1 MiB"),
        (
            "cluster_group.tsv",
            b"cluster_id\tgroup\n1\t" + b"x" * 200_000 + b"\n",
            r"cluster_group\.tsv: line 2 is longer",
        ),
        (
            "cluster_info.tsv",
            b"cluster_id\tgroup\tKSLabel\n1\tgood\tmua\n2\t\n",
            r"cluster_info\.tsv: row 3 has 2 field\(s\); expected 3",
        ),
    ],
    ids=[
        "huge",
        "truncated",
        "complex",
        "bool",
        "str",
        "header",
        "float-ids",
        "rate-1e-300",
        "rate-1e-320",
        "nested",
        "deep",
        "huge-int",
        "deep-list",
        "long-params",
        "field",
        "info-short-row",
    ],
)
def test_phy_files_that_are_not_what_they_claim_are_named(tmp_path, file, content, message):
    folder = write_phy(tmp_path / "sorted")
    (folder / file).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        sg.load(folder)


def test_a_sampling_rate_that_is_not_a_normal_number_names_the_option(tmp_path):
    folder = write_phy(tmp_path / "sorted")
    with pytest.raises(
        ValueError, match=r"sorted: sampling_rate= \(--sampling-rate\): 1e-320 is not a normal"
    ):
        sg.load(folder, sampling_rate=1e-320)
    path = tmp_path / "cell.txt"
    path.write_text("10\n20\n")
    with pytest.raises(ValueError, match=r"cell\.txt: in samples at 1e-300 Hz the times reach 2e\+301 s"):
        sg.load(path, sampling_rate=1e-300)


# ------------------------------------------------------------------------------------------------- csv


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"unit,time\na,0.1\nb," + b"1" * 200_000 + b"\n", r"line 3 is longer than 10000 characters"),
        (b'unit,time\na,0.1\nb,"' + b"1\n" * 70_000, r"row 3 is not a readable CSV row \(field larger"),
        (b"unit,time\na,0.1\nb\n", r"row 3 has 1 field\(s\)"),
        (b"unit,time\na,0.1\nb,1e400x\n", r"row 3: time '1e400x' is not a number"),
        (b"unit,time\na,0.1\r\nb,0.2\x00\n", r"row 3: time '0.2\\x00' is not a number"),
        (b"", r"expected a header .* got an empty file"),
    ],
    ids=["long-line", "huge-field", "short-row", "bad-number", "nul", "empty"],
)
def test_csv_rows_that_are_not_spikes_are_named(tmp_path, content, message):
    path = tmp_path / "spikes.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"spikes\.csv: {message}"):
        sg.load(path)


# ------------------------------------------------------------------------------------ pairs of units


def test_shared_spikes_of_many_units_are_sparse():
    rng = np.random.default_rng(0)
    n_units = 100_000
    times = [[t] for t in np.sort(rng.uniform(0, 100, n_units))]
    times[1] = times[0]  # one shared time
    recording = sg.Recording(times, t_stop=100.0)
    np.testing.assert_array_equal(recording.shared_spikes(), [[0, 1, 1]])
    notes = recording.suspicious_units()
    assert len(notes) == n_units and all("only 1 spike(s)" in note for note in notes)


def test_times_that_crowd_many_units_are_noted_once_and_left_out_of_pairs():
    shared = np.arange(1, 11) * 1.0
    times = [np.sort(np.r_[shared, np.arange(30) + 0.01 * k + 0.005]) for k in range(CROWD + 4)]
    recording = sg.Recording(times, t_stop=40.0)
    assert len(recording.shared_spikes()) == (CROWD + 4) * (CROWD + 3) // 2
    assert len(recording.shared_spikes(max_units=CROWD)) == 0
    notes = recording.suspicious_units()
    assert notes == [
        f"10 time(s) at which more than {CROWD} units spike at once (first at 1 s): an artifact on "
        "every channel, left out of the pairs below"
    ]


@pytest.mark.slow
def test_info_on_100000_units_is_bounded(tmp_path):
    path = tmp_path / "many.npz"
    rng = np.random.default_rng(0)
    np.savez(path, spike_times=np.sort(rng.uniform(0, 100, 100_000)), unit_ids=np.arange(100_000))
    result = run_cli("info", path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) < 300 and "... and 99800 more units" in result.stdout
    assert "suspicious units (100000 note(s)" in result.stdout and "... and 99988 more" in result.stdout
