"""Tests of spikeglm.connectivity: the Connectivity result, its contractions, views and file exports."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import hide_module

from spikeglm import connectivity
from spikeglm.connectivity import Connectivity

GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"
LOADABLE = ["npz", "h5", "hdf5", "json"]
ALL_FORMATS = ["csv", "npz", "h5", "hdf5", "graphml", "json"]


@pytest.fixture
def conn() -> Connectivity:
    """3 visible + 2 hidden neurons, 2 basis functions over 5 lags, some couplings exactly zero."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 5, 2))
    weights[0, 1] = 0.0
    weights[3, 2] = 0.0
    return Connectivity(
        weights,
        rng.random((2, 5)),
        rng.normal(size=5),
        labels=["a", "b, with comma", "c", "hidden-0", "hidden-1"],
        visible=[True, True, True, False, False],
        metadata={"bin_size": "5 ms", "temperature": np.float32(0.5), "basis": {"name": "raw", "window": 5}},
    )


# ---------------------------------------------------------------------- construction and properties
def test_filters_and_strength_are_the_basis_contraction(conn: Connectivity) -> None:
    weights, basis = conn.weights, conn.basis_matrix
    expected = np.zeros((5, 5, 5))
    for post in range(5):
        for pre in range(5):
            for b in range(2):
                expected[post, pre] += weights[post, pre, b] * basis[b]
    np.testing.assert_allclose(conn.filters, expected, rtol=1e-14)
    np.testing.assert_allclose(conn.strength, expected.sum(axis=-1), rtol=1e-13)


def test_strength_equals_weight_for_a_normalised_single_function_basis() -> None:
    rng = np.random.default_rng(1)
    basis = np.exp(-0.25 * np.arange(1, 6))[None, :]
    weights = rng.uniform(-2, 2, size=(4, 4, 1))
    conn = Connectivity(weights, basis / basis.sum(), np.zeros(4))
    np.testing.assert_allclose(conn.strength, weights[..., 0], rtol=1e-14)


def test_defaults_and_counts() -> None:
    conn = Connectivity(np.zeros((4, 4, 1)), np.ones((1, 3)), np.zeros(4), visible=[True, True, False, False])
    assert conn.labels == ["0", "1", "hidden-0", "hidden-1"]
    assert (conn.n_neurons, conn.n_visible, conn.n_hidden) == (4, 2, 2)
    assert conn.metadata == {}
    assert Connectivity(np.zeros((2, 2, 1)), np.ones((1, 3)), np.zeros(2)).visible.tolist() == [True, True]
    assert repr(conn) == "Connectivity(n_visible=2, n_hidden=2, n_basis=1, window=3)"


def test_metadata_is_normalised_to_json_values(conn: Connectivity) -> None:
    assert conn.metadata == {"bin_size": "5 ms", "temperature": 0.5, "basis": {"name": "raw", "window": 5}}
    conn.metadata["bin_size"] = "changed"
    assert conn.metadata["bin_size"] == "5 ms"


@pytest.mark.parametrize("key", ["strength_se", "entry_strength"])
@pytest.mark.parametrize(
    "table",
    [
        [[0.1, 0.2]],
        [[0.1, 0.2], [0.3]],
        [[0.1, "x"], [0.3, 0.4]],
        [[0.1, True], [0.3, 0.4]],
        "0.1",
        [0.1, 0.2],
    ],
)
def test_a_table_of_pairs_of_the_wrong_shape_is_refused_by_name(key, table) -> None:
    """A table of one value per pair (standard errors, entry strengths) that is not N x N numbers would
    fail later, in an export or a score, far from its cause."""
    with pytest.raises(ValueError, match=f"metadata '{key}' must be 2 rows of 2 numbers"):
        Connectivity.from_strength(np.zeros((2, 2)), metadata={key: table})
    kept = Connectivity.from_strength(np.zeros((2, 2)), metadata={key: [[None, 0.5], [1, 0.0]]})
    assert kept.metadata[key] == [[None, 0.5], [1, 0.0]]


def test_fields_are_read_only_copies() -> None:
    weights = np.zeros((2, 2, 1))
    conn = Connectivity(weights, np.ones((1, 1)), np.zeros(2))
    weights[0, 0, 0] = 1.0
    assert conn.weights[0, 0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        conn.weights[0, 0, 0] = 1.0


def test_from_strength() -> None:
    strength = np.array([[-1.0, 0.5], [0.0, -2.0]])
    conn = Connectivity.from_strength(strength, labels=["x", "y"])
    np.testing.assert_array_equal(conn.strength, strength)
    np.testing.assert_array_equal(conn.filters[..., 0], strength)
    np.testing.assert_array_equal(conn.bias, [0.0, 0.0])
    with pytest.raises(ValueError, match="strength"):
        Connectivity.from_strength(np.zeros(3))


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"weights": np.zeros((3, 4, 1))}, ValueError, "weights"),
        ({"weights": np.zeros((3, 3))}, ValueError, "weights"),
        ({"weights": np.full((3, 3, 1), np.nan)}, ValueError, "weights must be finite"),
        ({"basis_matrix": np.ones((2, 5))}, ValueError, "basis_matrix"),
        ({"basis_matrix": np.ones(5)}, ValueError, "basis_matrix"),
        ({"bias": np.zeros(4)}, ValueError, "bias"),
        ({"labels": ["a", "b"]}, ValueError, "labels"),
        ({"labels": ["a", "b", "a"]}, ValueError, "unique"),
        ({"labels": ["a", "b", 3]}, TypeError, "labels"),
        ({"visible": [1, 1, 0]}, ValueError, "visible"),
        ({"visible": [True, True]}, ValueError, "visible"),
        ({"visible": [True, False, True]}, ValueError, "visible neurons must come first"),
        ({"metadata": {"device": object()}}, TypeError, "metadata"),
        ({"metadata": {"loss": float("nan")}}, TypeError, "metadata"),
    ],
)
def test_constructor_rejects_bad_arguments(arguments: dict, error: type[Exception], match: str) -> None:
    valid = {"weights": np.zeros((3, 3, 1)), "basis_matrix": np.ones((1, 5)), "bias": np.zeros(3)}
    with pytest.raises(error, match=match):
        Connectivity(**{**valid, **arguments})


# ---------------------------------------------------------------------- views
def test_visible_block(conn: Connectivity) -> None:
    block = conn.visible_block()
    assert (block.n_visible, block.n_hidden) == (3, 0)
    assert block.labels == conn.labels[:3]
    np.testing.assert_array_equal(block.strength, conn.strength[:3, :3])
    np.testing.assert_array_equal(block.bias, conn.bias[:3])
    assert block.metadata == conn.metadata


def test_permute_hidden_moves_neurons_with_their_labels(conn: Connectivity) -> None:
    permuted = conn.permute_hidden([1, 0])
    index = [0, 1, 2, 4, 3]
    assert permuted.labels == [conn.labels[k] for k in index]
    np.testing.assert_array_equal(permuted.weights, conn.weights[np.ix_(index, index)])
    np.testing.assert_array_equal(permuted.bias, conn.bias[index])
    np.testing.assert_array_equal(permuted.permute_hidden([1, 0]).weights, conn.weights)
    for order in ([0, 0], [0, 1, 2], [1, 2]):
        with pytest.raises(ValueError, match="permutation"):
            conn.permute_hidden(order)


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("extension", LOADABLE)
def test_round_trip_is_exact(conn: Connectivity, tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"conn.{extension}"
    conn.save(path)
    loaded = Connectivity.load(path)
    for name in ("weights", "basis_matrix", "bias", "visible"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(conn, name))
        assert getattr(loaded, name).dtype == getattr(conn, name).dtype
    assert loaded.labels == conn.labels
    assert loaded.metadata == conn.metadata


def test_csv_layout(conn: Connectivity, tmp_path: Path) -> None:
    path = tmp_path / "conn.csv"
    conn.save(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", *conn.labels]
    assert [row[0] for row in rows[1:]] == conn.labels
    values = np.array([[float(cell) for cell in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(values, conn.strength, rtol=0, atol=1e-15)
    assert values[0, 1] == 0.0


def test_csv_reads_with_numpy(tmp_path: Path) -> None:
    conn = Connectivity.from_strength(np.random.default_rng(2).normal(size=(3, 3)))
    conn.save(tmp_path / "conn.csv")
    values = np.genfromtxt(tmp_path / "conn.csv", delimiter=",", skip_header=1)[:, 1:]
    np.testing.assert_array_equal(values, conn.strength)


def test_graphml_structure(conn: Connectivity, tmp_path: Path) -> None:
    path = tmp_path / "conn.graphml"
    conn.save(path, threshold=0.0)
    root = ET.parse(path).getroot()
    assert root.tag == f"{GRAPHML}graphml"
    keys = {key.get("id"): (key.get("for"), key.get("attr.type")) for key in root.iter(f"{GRAPHML}key")}
    assert keys["weight"] == keys["strength"] == ("edge", "double")
    assert keys["visible"] == ("node", "boolean")
    graph = root.find(f"{GRAPHML}graph")
    assert graph.get("edgedefault") == "directed"
    rule = {"rule": "|strength| above threshold", "threshold": 0.0, "self_loops": False}
    assert json.loads(graph.find(f"{GRAPHML}data").text) == {**conn.metadata, "edges": rule}

    nodes = graph.findall(f"{GRAPHML}node")
    assert len(nodes) == conn.n_neurons
    data = [{d.get("key"): d.text for d in node.findall(f"{GRAPHML}data")} for node in nodes]
    assert [d["label"] for d in data] == conn.labels
    assert [d["visible"] for d in data] == ["true"] * 3 + ["false"] * 2
    assert [float(d["bias"]) for d in data] == conn.bias.tolist()

    edges = graph.findall(f"{GRAPHML}edge")
    strength = conn.strength
    off_diagonal = ~np.eye(5, dtype=bool)
    assert len(edges) == np.count_nonzero(strength[off_diagonal]) == 18  # no self-loops
    node_index = {node.get("id"): k for k, node in enumerate(nodes)}
    signs = set()
    for edge in edges:
        pre, post = node_index[edge.get("source")], node_index[edge.get("target")]
        assert pre != post
        values = {d.get("key"): float(d.text) for d in edge.findall(f"{GRAPHML}data")}
        assert values == {"strength": strength[post, pre], "weight": abs(strength[post, pre])}
        signs.add(np.sign(values["strength"]))
    assert signs == {-1.0, 1.0}  # both kinds of coupling, so the magnitude really differs from the sign


def test_graphml_threshold_and_self_loops(conn: Connectivity, tmp_path: Path) -> None:
    conn.save(tmp_path / "conn.graphml", threshold=1.0)
    edges = ET.parse(tmp_path / "conn.graphml").getroot().iter(f"{GRAPHML}edge")
    above = np.abs(conn.strength) > 1.0
    assert len(list(edges)) == np.count_nonzero(above & ~np.eye(5, dtype=bool))
    conn.save(tmp_path / "loops.graphml", threshold=1.0, self_loops=True)
    edges = ET.parse(tmp_path / "loops.graphml").getroot().iter(f"{GRAPHML}edge")
    assert len(list(edges)) == np.count_nonzero(above) > np.count_nonzero(above & ~np.eye(5, dtype=bool))
    with pytest.raises(ValueError, match="only to GraphML"):
        conn.save(tmp_path / "conn.csv", threshold=1.0)
    with pytest.raises(ValueError, match="only to GraphML"):
        conn.save(tmp_path / "conn.json", self_loops=True)
    with pytest.raises(ValueError, match="threshold"):
        conn.save(tmp_path / "other.graphml", threshold=-1.0)


def test_graphml_default_keeps_the_strong_couplings_and_says_so(tmp_path: Path) -> None:
    strength = np.array([[5.0, 2.0, 0.1], [-0.3, -9.0, 0.05], [0.0, -1.0, 4.0]])
    Connectivity.from_strength(strength).save(tmp_path / "c.graphml")
    graph = ET.parse(tmp_path / "c.graphml").getroot().find(f"{GRAPHML}graph")
    pairs = {(e.get("source"), e.get("target")) for e in graph.iter(f"{GRAPHML}edge")}
    # the largest |strength| between distinct neurons is 2.0: edges above 0.2, diagonal left out
    assert pairs == {("n1", "n0"), ("n0", "n1"), ("n1", "n2")}
    rule = json.loads(graph.find(f"{GRAPHML}data[@key='metadata']").text)["edges"]
    assert rule["threshold"] == pytest.approx(0.2)
    assert "largest |strength| between distinct neurons" in rule["default"]


def test_graphml_reads_with_networkx(conn: Connectivity, tmp_path: Path) -> None:
    import networkx

    conn.save(tmp_path / "conn.graphml", threshold=0.0)
    graph = networkx.read_graphml(tmp_path / "conn.graphml")
    assert graph.is_directed()
    assert graph.number_of_nodes() == 5
    assert graph.number_of_edges() == 18
    assert graph.nodes["n3"] == {"label": "hidden-0", "visible": False, "bias": conn.bias[3]}
    assert graph.edges["n0", "n2"]["strength"] == conn.strength[2, 0]
    assert graph.edges["n0", "n2"]["weight"] == abs(conn.strength[2, 0])


def test_to_networkx_is_the_graph_the_graphml_export_writes(conn: Connectivity, tmp_path: Path) -> None:
    import networkx

    conn.save(tmp_path / "conn.graphml", threshold=0.0)
    written = networkx.read_graphml(tmp_path / "conn.graphml")
    graph = conn.to_networkx(threshold=0.0)
    assert graph.is_directed() and graph.graph["edges"]["rule"] == "|strength| above threshold"
    assert sorted(graph.edges) == sorted((int(a[1:]), int(b[1:])) for a, b in written.edges)
    assert graph.nodes[3] == {"label": "hidden-0", "visible": False, "bias": conn.bias[3]}
    assert graph.edges[0, 2]["strength"] == conn.strength[2, 0]
    assert graph.edges[0, 2]["weight"] == abs(conn.strength[2, 0])
    assert graph.graph["metadata"]["bin_size"] == "5 ms"
    assert set(conn.to_networkx(threshold=0.0, self_loops=True).edges) - set(graph.edges) == {
        (k, k) for k in range(5)
    }
    with pytest.raises(ValueError, match="not both"):
        conn.to_networkx(threshold=0.1, alpha=0.05)


def test_to_networkx_and_to_dataframe_carry_the_tests(conn: Connectivity) -> None:
    se = np.full((5, 5), 0.1)
    se[4, 3] = np.inf
    tested = Connectivity(
        conn.weights, conn.basis_matrix, conn.bias, labels=conn.labels, visible=conn.visible,
        metadata={**conn.metadata, "strength_se": connectivity.significance.se_to_json(se)},
    )  # fmt: skip
    table = tested.significance(0.05)
    graph = tested.to_networkx()  # the default rule: the Wald tests at GRAPHML_ALPHA
    assert graph.graph["edges"]["rule"] == "significance"
    significant = table[table["significant"] & ~table["self"]]
    index = {label: k for k, label in enumerate(conn.labels)}
    assert sorted(graph.edges) == sorted((index[r["pre"]], index[r["post"]]) for r in significant)
    pre, post = next(iter(graph.edges))
    row = table[(table["pre"] == conn.labels[pre]) & (table["post"] == conn.labels[post])][0]
    assert graph.edges[pre, post]["q"] == row["q"] and graph.edges[pre, post]["sign"] == row["sign"]
    frame = tested.to_dataframe(alpha=0.05)
    assert list(frame.columns) == list(table.dtype.names) and len(frame) == 25
    np.testing.assert_array_equal(frame["q"].to_numpy(), table["q"])
    plain = tested.to_dataframe()
    assert list(plain.columns) == ["pre", "post", "strength", "se", "self"] and len(plain) == 25
    row = plain[(plain["pre"] == "hidden-0") & (plain["post"] == "hidden-1")].iloc[0]
    assert row["strength"] == conn.strength[4, 3] and row["se"] == np.inf and not row["self"]
    assert "se" not in conn.to_dataframe().columns  # no standard errors, no column of them


@pytest.mark.parametrize(("name", "method"), [("pandas", "to_dataframe")])
def test_an_absent_extra_is_named(conn: Connectivity, monkeypatch, name: str, method: str) -> None:
    hide_module(monkeypatch, name)
    with pytest.raises(ModuleNotFoundError, match=rf"needs {name}, an optional extra: .*spikeglm\[{name}\]"):
        getattr(conn, method)()


# Labels that a file format could mangle: separators, quotes, padding, line breaks of every kind.
AWKWARD_LABELS = [
    "a, b",
    'say "hi"',
    "it's",
    "  padded  ",
    "two\nlines",
    "cr\ronly",
    "crlf\r\nend",
    "",
    "ünï 神経",
]


def test_graphml_labels_parse_back_exactly(tmp_path: Path) -> None:
    labels = [
        "cr\r",
        "crlf\r\n",
        "new\nline",
        "\ttab",
        "a & b",
        "<b>",
        "]]>",
        "\"q\" 'q'",
        "neurône 神経",
        " x ",
    ]
    metadata = {"note": "\r\n\x01 & <"}
    conn = Connectivity.from_strength(np.eye(len(labels)), labels=labels, metadata=metadata)
    conn.save(tmp_path / "c.graphml")
    graph = ET.parse(tmp_path / "c.graphml").getroot().find(f"{GRAPHML}graph")
    nodes = graph.findall(f"{GRAPHML}node")
    assert [node.find(f"{GRAPHML}data[@key='label']").text for node in nodes] == labels
    written = json.loads(graph.find(f"{GRAPHML}data[@key='metadata']").text)
    assert written == {**metadata, "edges": written["edges"]}


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_graphml_refuses_labels_xml_cannot_hold(tmp_path: Path, character: str) -> None:
    label = f"bad{character}label"
    conn = Connectivity.from_strength(np.eye(2), labels=["fine", label])
    path = tmp_path / "c.graphml"
    with pytest.raises(ValueError, match=re.escape(f"{path}: label {label!r} holds {character!r}")) as error:
        conn.save(path)
    assert "\n" not in str(error.value)
    assert ".json" in str(error.value)
    assert list(tmp_path.iterdir()) == []
    conn.save(tmp_path / "c.json")  # the suggested formats keep the label
    conn.save(tmp_path / "c.npz")
    assert (
        Connectivity.load(tmp_path / "c.json").labels
        == Connectivity.load(tmp_path / "c.npz").labels
        == conn.labels
    )


def test_npz_refuses_a_label_ending_in_nul(tmp_path: Path) -> None:
    conn = Connectivity.from_strength(np.eye(2), labels=["x", "x\x00"])
    with pytest.raises(ValueError, match=re.escape("label 'x\\x00' ends with")):
        conn.save(tmp_path / "c.npz")
    assert list(tmp_path.iterdir()) == []
    conn.save(tmp_path / "c.json")
    assert Connectivity.load(tmp_path / "c.json").labels == ["x", "x\x00"]


def test_csv_quotes_formula_labels(tmp_path: Path) -> None:
    formulas = ['=HYPERLINK("http://x","y")', "+1+2", "@SUM(A1)", "-2+3", "\tcmd", "\r=1", "-", "-inf"]
    kept = ["-1", "+2.5", "-3e-2", ".5", " -1", "plain", "a-b", "a=b", "'quoted"]
    conn = Connectivity.from_strength(np.eye(len(formulas) + len(kept)), labels=formulas + kept)
    conn.save(tmp_path / "c.csv")
    with open(tmp_path / "c.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    expected = ["'" + label for label in formulas] + kept
    assert rows[0][1:] == expected
    assert [row[0] for row in rows[1:]] == expected


@pytest.mark.parametrize("extension", ["csv", *LOADABLE])
def test_awkward_labels_round_trip(tmp_path: Path, extension: str) -> None:
    conn = Connectivity.from_strength(
        np.random.default_rng(3).normal(size=(len(AWKWARD_LABELS),) * 2), labels=AWKWARD_LABELS
    )
    path = tmp_path / f"c.{extension}"
    conn.save(path)
    if extension != "csv":
        assert Connectivity.load(path).labels == AWKWARD_LABELS
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["", *AWKWARD_LABELS]
    assert [row[0] for row in rows[1:]] == AWKWARD_LABELS
    np.testing.assert_array_equal([[float(cell) for cell in row[1:]] for row in rows[1:]], conn.strength)


def test_existing_file_is_kept_without_overwrite(conn: Connectivity, tmp_path: Path) -> None:
    path = tmp_path / "conn.npz"
    path.write_bytes(b"precious user data")
    with pytest.raises(FileExistsError, match=r"conn\.npz"):
        conn.save(path)
    assert path.read_bytes() == b"precious user data"
    assert [p.name for p in tmp_path.iterdir()] == ["conn.npz"]
    conn.save(path, overwrite=True)
    np.testing.assert_array_equal(Connectivity.load(path).weights, conn.weights)


@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_no_trace(
    conn: Connectivity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    def failing_writer(conn: Connectivity, path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setitem(connectivity._WRITERS, ".npz", failing_writer)
    path = tmp_path / "conn.npz"
    if existing:
        path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        conn.save(path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == (["conn.npz"] if existing else [])
    if existing:
        assert path.read_bytes() == b"old"


@pytest.mark.parametrize("extension", ALL_FORMATS)
def test_save_leaves_only_the_output(conn: Connectivity, tmp_path: Path, extension: str) -> None:
    conn.save(tmp_path / f"conn.{extension.upper()}")
    assert [p.name for p in tmp_path.iterdir()] == [f"conn.{extension.upper()}"]


def test_unsupported_extensions(conn: Connectivity, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported extension '\.txt'.*\.csv.*\.graphml"):
        conn.save(tmp_path / "conn.txt")
    with pytest.raises(ValueError, match="unsupported extension"):
        Connectivity.load(tmp_path / "conn.txt")
    for extension in ("csv", "graphml"):
        conn.save(tmp_path / f"conn.{extension}")
        with pytest.raises(ValueError, match="from_strength"):
            Connectivity.load(tmp_path / f"conn.{extension}")


def test_missing_directory(conn: Connectivity, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        conn.save(tmp_path / "absent" / "conn.json")


def test_load_rejects_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"weights": [[[0.0]]]}))
    with pytest.raises(ValueError, match="not a spikeglm Connectivity"):
        Connectivity.load(path)
    path.write_text(json.dumps({"format": "spikeglm.Connectivity", "format_version": 1}))
    with pytest.raises(ValueError, match="lacks weights"):
        Connectivity.load(path)
