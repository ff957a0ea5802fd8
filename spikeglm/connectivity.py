"""The coupling structure of a POGLM and its exports.

A :class:`Connectivity` holds what a fitted (or ground-truth) network says about its neurons: the coupling
weights ``W[post, pre, basis]`` on a history basis over lags ``1..L``, the biases, a label per neuron and a
mask of the visible (recorded) neurons. There are N = V + H neurons: the V visible ones first, then the H
hidden ones.

The integrated coupling ``strength[post, pre] = sum_l filter[post, pre, l]`` is the single number per pair
that the exports and the scores in :mod:`spikeglm.evaluate` use; it is comparable across bases.

Files (format chosen by the extension, always written atomically, never with pickle):

========================  ========================================================  ==================
extension                 content                                                   :meth:`~Connectivity.load`
========================  ========================================================  ==================
``.npz``                  every field (labels as a unicode array, metadata as JSON)  yes, exact
``.h5`` / ``.hdf5``       datasets plus attributes (metadata as a JSON attribute)   yes, exact
``.json``                 every field as nested lists, metadata as an object        yes, exact
``.csv``                  the square strength[post, pre] matrix with labels         no (strength only)
``.graphml``              a directed graph pre -> post of the chosen edges          no (strength only)
========================  ========================================================  ==================

The CSV and GraphML exports keep only the strength, so :meth:`Connectivity.load` refuses them; a strength
matrix from any source becomes a :class:`Connectivity` through :meth:`Connectivity.from_strength`.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike

from spikeglm import significance
from spikeglm.extras import optional
from spikeglm.files import atomic_write

__all__ = ["Connectivity"]

_FORMAT = "spikeglm.Connectivity"
_FORMAT_VERSION = 1
_HEADER = {"format": _FORMAT, "format_version": _FORMAT_VERSION}
_ARRAY_FIELDS = ("weights", "basis_matrix", "bias", "visible")
#: The false discovery rate of a GraphML export's default rule, where the connectivity has standard errors...
GRAPHML_ALPHA = 0.05
#: ... and otherwise its threshold: this fraction of the largest |strength| between two distinct neurons.
GRAPHML_RELATIVE_THRESHOLD = 0.1
#: Metadata that hold a value per (post, pre) pair, as rows of numbers (None: no information).
_PAIR_TABLES = ("strength_se", "entry_strength")
# Characters that XML 1.0 cannot carry at all, not even as a character reference.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A cell starting with one of these is run as a formula by spreadsheets ("CSV injection", OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number, which spreadsheets read as a value ([0-9]: \d also takes other scripts' digits).
_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class Connectivity:
    """Coupling weights, history basis, biases and labels of a network of visible and hidden neurons.

    All arrays are stored as read-only float64 (``visible``: bool) copies; the derived views
    (:meth:`visible_block`, :meth:`permute_hidden`) return new objects.

    Parameters
    ----------
    weights : array_like, shape (N, N, n_basis)
        Coupling weights ``W[post, pre, b]`` over all N = V + H neurons, visible first. The diagonal is each
        neuron's self-history (refractoriness).
    basis_matrix : array_like, shape (n_basis, L)
        The history basis: ``basis_matrix[b, l - 1]`` is basis function ``b`` at lag ``l``, for lags ``1..L``.
    bias : array_like, shape (N,)
        Bias of each neuron (before the link function).
    labels : sequence of str, optional
        One unique label per neuron. Default: ``"0"``, ..., ``"V-1"`` for the visible neurons and
        ``"hidden-0"``, ``"hidden-1"``, ... for the hidden ones.
    visible : array_like of bool, shape (N,), optional
        True for recorded neurons; they must come first. Default: all visible.
    metadata : dict, optional
        JSON-able values (units, bin size, basis, link, relaxation, temperature, version, ...). NumPy scalars
        and arrays are converted to Python numbers and lists, tuples become lists.

    Raises
    ------
    ValueError
        If a shape does not match (the message names the argument), a value is not finite, labels repeat, or a
        visible neuron follows a hidden one.
    TypeError
        If a label is not a string or the metadata are not JSON-able.
    """

    def __init__(
        self,
        weights: ArrayLike,
        basis_matrix: ArrayLike,
        bias: ArrayLike,
        labels: Sequence[str] | None = None,
        visible: ArrayLike | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        weights = _finite_array(weights, "weights")
        if weights.ndim != 3 or weights.shape[0] != weights.shape[1] or weights.shape[0] == 0:
            raise ValueError(
                f"weights must have shape (post, pre, n_basis) with post == pre >= 1, got {weights.shape}"
            )
        n, _, n_basis = weights.shape
        basis_matrix = _finite_array(basis_matrix, "basis_matrix")
        if basis_matrix.ndim != 2 or basis_matrix.shape[0] != n_basis or basis_matrix.shape[1] == 0:
            raise ValueError(
                f"basis_matrix must have shape (n_basis, L) = ({n_basis}, L >= 1) to match weights, "
                f"got {basis_matrix.shape}"
            )
        bias = _finite_array(bias, "bias")
        if bias.shape != (n,):
            raise ValueError(f"bias must have shape ({n},) to match weights, got {bias.shape}")
        visible = np.ones(n, dtype=bool) if visible is None else np.array(visible)
        if visible.dtype != bool or visible.shape != (n,):
            raise ValueError(
                f"visible must be a boolean mask of shape ({n},), got {visible.dtype} {visible.shape}"
            )
        n_visible = int(visible.sum())
        if not visible[:n_visible].all():
            raise ValueError("visible neurons must come first: visible must be True...True, False...False")
        if labels is None:
            labels = [str(k) for k in range(n_visible)] + [f"hidden-{k}" for k in range(n - n_visible)]
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"labels must have one entry per neuron ({n}), got {len(labels)}")
        for position, label in enumerate(labels):
            if not isinstance(label, str):
                raise TypeError(f"labels must be strings, got {type(label).__name__} at position {position}")
        repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
        if repeated:
            raise ValueError(f"labels must be unique, repeated: {repeated}")

        for array in (weights, basis_matrix, bias, visible):
            array.flags.writeable = False
        self._weights = weights
        self._basis_matrix = basis_matrix
        self._bias = bias
        self._visible = visible
        self._labels = [str(label) for label in labels]
        self._metadata = json_plain(metadata or {})
        _check_pair_tables(self._metadata, n)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_strength(
        cls,
        strength: ArrayLike,
        labels: Sequence[str] | None = None,
        visible: ArrayLike | None = None,
        bias: ArrayLike | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Connectivity:
        """Build a Connectivity from an integrated coupling matrix alone.

        The result has a one-function, one-lag basis (``basis_matrix = [[1.0]]``), so that its
        ``weights[..., 0]``, ``filters[..., 0]`` and ``strength`` all equal ``strength``. Use it to score an
        estimate that comes as a plain matrix (e.g. another method's output, or a CSV export).

        Parameters
        ----------
        strength : array_like, shape (N, N)
            Integrated coupling ``strength[post, pre]``.
        labels, visible, metadata
            As for :class:`Connectivity`.
        bias : array_like, shape (N,), optional
            Biases; zeros when not given (a matrix alone says nothing about them).
        """
        strength = np.asarray(strength, dtype=np.float64)
        if strength.ndim != 2:
            raise ValueError(f"strength must be a square (post, pre) matrix, got shape {strength.shape}")
        bias = np.zeros(strength.shape[0]) if bias is None else bias
        return cls(
            strength[..., None], np.ones((1, 1)), bias, labels=labels, visible=visible, metadata=metadata
        )

    # ------------------------------------------------------------------ fields
    @property
    def weights(self) -> np.ndarray:
        """Coupling weights ``W[post, pre, basis]``, shape (N, N, n_basis), read-only."""
        return self._weights

    @property
    def basis_matrix(self) -> np.ndarray:
        """History basis ``[basis, lag - 1]`` over lags ``1..L``, shape (n_basis, L), read-only."""
        return self._basis_matrix

    @property
    def bias(self) -> np.ndarray:
        """Bias per neuron, shape (N,), read-only."""
        return self._bias

    @property
    def visible(self) -> np.ndarray:
        """Boolean mask of the visible neurons (the first ``n_visible``), shape (N,), read-only."""
        return self._visible

    @property
    def labels(self) -> list[str]:
        """One label per neuron (a new list on each access)."""
        return list(self._labels)

    @property
    def metadata(self) -> dict[str, Any]:
        """The JSON-able metadata (a deep copy on each access)."""
        return copy.deepcopy(self._metadata)

    @property
    def filters(self) -> np.ndarray:
        """Coupling filters, shape (N, N, L): ``filters[n, m, l - 1] = sum_b W[n, m, b] basis[b, l - 1]``."""
        return np.einsum("nmb,bl->nml", self._weights, self._basis_matrix)

    @property
    def strength(self) -> np.ndarray:
        """Integrated coupling ``strength[post, pre]``: each filter summed over its lags, shape (N, N).

        For a basis whose functions each sum to 1 over the lags (e.g. the normalised exponential basis) it is
        the sum of the weights over the basis; for the one-function exponential basis it equals the weight.
        """
        return np.einsum("nmb,b->nm", self._weights, self._basis_matrix.sum(axis=1))

    @property
    def n_neurons(self) -> int:
        """Number of neurons N = V + H."""
        return len(self._labels)

    @property
    def n_visible(self) -> int:
        """Number of visible neurons V."""
        return int(self._visible.sum())

    @property
    def n_hidden(self) -> int:
        """Number of hidden neurons H."""
        return self.n_neurons - self.n_visible

    # ------------------------------------------------------------------ views
    def visible_block(self) -> Connectivity:
        """The couplings among the visible neurons only (hidden neurons dropped)."""
        return self._subset(np.arange(self.n_visible))

    def permute_hidden(self, order: Sequence[int]) -> Connectivity:
        """Reorder the hidden neurons.

        Parameters
        ----------
        order : sequence of int
            A permutation of ``range(n_hidden)``: hidden neuron ``k`` of the result is hidden neuron
            ``order[k]`` of this one. Labels, biases and all couplings move with their neuron.
        """
        hidden = np.asarray(order)
        if hidden.shape != (self.n_hidden,) or not np.array_equal(np.sort(hidden), np.arange(self.n_hidden)):
            raise ValueError(f"order must be a permutation of range({self.n_hidden}), got {hidden.tolist()}")
        return self._subset(np.concatenate([np.arange(self.n_visible), self.n_visible + hidden]))

    def significance(self, alpha: float = 0.05, method: str = "wald", **options: Any) -> np.ndarray:
        """Test every coupling: is it there, excitatory or inhibitory, and how sure is that.

        Parameters
        ----------
        alpha : float
            False discovery rate: a coupling is significant where its Benjamini-Hochberg q < alpha.
        method : {"wald", "jitter"}
            ``"wald"``: Wald tests of the strengths against the standard errors the fit stored in the
            metadata (``strength_se``: every fit without hidden neurons has them, and
            :func:`spikeglm.bootstrap.bootstrap_se` gives them to any fit; see :mod:`spikeglm.significance`).
            ``"jitter"``: spike-time jitter tests (:func:`spikeglm.significance.jitter_table`), which
            need the counts the connectivity was fitted to.
        **options
            For ``"jitter"``: ``counts`` (:class:`~spikeglm.SpikeCounts`, those of the fit; required),
            checked against the metadata's ``fitted_on`` (which :meth:`spikeglm.POGLM.connectivity`
            records; without it, a warning), and optionally ``n_jitter`` (default 99), ``jitter``
            (half-width of the jitter intervals in bins; default the history window), ``pvalue``
            (``"normal"``, the default, or ``"empirical"``), ``seed`` (default 0) and ``progress`` (a bar
            over the presynaptic neurons; default where someone watches); for a fit with latent factors,
            ``drive`` (required: :meth:`spikeglm.POGLM.latent_drive` of the counts), which the null model
            includes.

        Returns
        -------
        numpy.ndarray
            One row per (pre, post) pair: ``pre, post, strength, se, z, p, q, significant, sign, self``
            (a structured array; ``pandas.DataFrame(table)`` makes a data frame of it). The jitter test
            leaves the self-couplings untested (NaN): a neuron's jittered spikes fall on its own spikes.

        Raises
        ------
        ValueError
            If the connectivity carries no standard errors (``"wald"``), has hidden neurons or is given
            counts other than those of its fit (``"jitter"``; the message names the difference), or
            ``method``, ``alpha`` or an option is unknown or out of range.
        """
        return self.test_couplings(alpha, method, **options)[0]

    def test_couplings(
        self, alpha: float = 0.05, method: str = "wald", **options: Any
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The table of :meth:`significance` and the test's settings, as :meth:`save` writes them.

        Returns
        -------
        table : numpy.ndarray
            As :meth:`significance`.
        settings : dict
            JSON values: ``test`` (the method), ``alpha`` and, for the jitter test, ``n_jitter``,
            ``jitter_bins``, ``pvalue`` and ``seed``.
        """
        return significance.coupling_tests(self, alpha, method, **options)

    def to_networkx(
        self,
        *,
        threshold: float | None = None,
        alpha: float | None = None,
        self_loops: bool = False,
        tests: tuple[np.ndarray, dict[str, Any]] | None = None,
    ) -> Any:
        """The graph of the couplings as a ``networkx.DiGraph``, the one the GraphML export writes (through
        networkx): its edges chosen by the same rule (see :meth:`save`: ``threshold``, the Wald tests at
        ``alpha``, or ``tests``; with none, the tests at :data:`GRAPHML_ALPHA` where there are standard
        errors).

        Nodes are the neurons' indices (visible first) with ``label``, ``visible`` and ``bias``; an edge
        ``pre -> post`` has ``strength`` (signed), ``weight`` (its magnitude) and, when chosen by a test,
        its fields (``se, z, p, q, sign``). The graph's attributes hold the metadata
        and ``edges``, the rule applied.

        Raises
        ------
        ValueError
            For a threshold with ``alpha`` or ``tests``, or both of these.
        """
        _check_threshold(threshold)
        if threshold is not None and (alpha is not None or tests is not None):
            raise ValueError("give a threshold or a test (alpha, tests), not both")
        return self._graph(threshold, self._chosen_tests(alpha, tests), self_loops)

    def _graph(self, threshold: float | None, tests: tuple | None, self_loops: bool) -> Any:
        """The ``networkx.DiGraph`` of :meth:`to_networkx` and of the GraphML export (arguments checked)."""
        import networkx

        edges, rule = self._graph_edges(threshold, tests, self_loops)
        graph = networkx.DiGraph(metadata=copy.deepcopy(self.metadata), edges=rule)
        for k, (label, visible, bias) in enumerate(zip(self.labels, self.visible, self.bias, strict=True)):
            graph.add_node(k, label=label, visible=bool(visible), bias=float(bias))
        strength = self.strength
        for post, pre, data in edges:
            value = float(strength[post, pre])
            graph.add_edge(int(pre), int(post), strength=value, weight=abs(value), **data)
        return graph

    def to_dataframe(self, alpha: float | None = None, method: str = "wald", **options: Any) -> Any:
        """Every (pre, post) pair as a row of a ``pandas.DataFrame`` (pandas is an optional extra:
        ``pip install "spikeglm[pandas]"``), pre and post by label: with ``alpha``, the table of
        :meth:`significance` (``pre, post, strength, se, z, p, q, significant, sign, self``; ``method``
        and ``options`` as there); without it, the columns of :meth:`pairs`.

        Raises
        ------
        ModuleNotFoundError
            Without pandas, naming the extra.
        """
        pandas = optional("pandas", "Connectivity.to_dataframe")
        if alpha is not None:
            return pandas.DataFrame(self.significance(alpha, method, **options))
        return pandas.DataFrame(self.pairs())

    def pairs(self) -> dict[str, np.ndarray]:
        """Every (pre, post) pair, untested, in the order of :meth:`significance`'s rows: the columns
        ``pre`` and ``post`` (labels), ``strength``, ``se`` where the connectivity carries standard
        errors, ``entry_strength`` where it carries a group-lasso fit's (``POGLM.entry_strength_``), and
        ``self`` (pre = post)."""
        post = np.repeat(np.arange(self.n_neurons), self.n_neurons)
        pre = np.tile(np.arange(self.n_neurons), self.n_neurons)
        labels = np.array(self.labels, dtype=object)
        columns = {"pre": labels[pre], "post": labels[post], "strength": self.strength[post, pre]}
        se = self.metadata.get("strength_se")
        if se is not None:
            columns["se"] = significance.se_from_json(se)[post, pre]
        entry = self.metadata.get("entry_strength")
        if entry is not None:
            columns["entry_strength"] = np.asarray(entry, dtype=np.float64)[post, pre]
        columns["self"] = post == pre
        return columns

    def _subset(self, index: np.ndarray) -> Connectivity:
        metadata = dict(self._metadata)
        for key in ("strength_se", "entry_strength"):  # tables of pairs move with their neurons
            if metadata.get(key) is not None:
                metadata[key] = [[metadata[key][i][j] for j in index] for i in index]
        if metadata.get("covariates"):  # so do the covariates' weights and kernels, row by neuron
            metadata["covariates"] = [
                {
                    **covariate,
                    **{
                        key: None if covariate.get(key) is None else [covariate[key][i] for i in index]
                        for key in ("weight", "values", "se")
                    },
                }
                for covariate in metadata["covariates"]
            ]
        return Connectivity(
            self._weights[np.ix_(index, index)],
            self._basis_matrix,
            self._bias[index],
            labels=[self._labels[k] for k in index],
            visible=self._visible[index],
            metadata=metadata,
        )

    def __repr__(self) -> str:
        n_basis, window = self._basis_matrix.shape
        return (
            f"Connectivity(n_visible={self.n_visible}, n_hidden={self.n_hidden}, n_basis={n_basis}, "
            f"window={window})"
        )

    # ------------------------------------------------------------------ files
    def save(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        threshold: float | None = None,
        alpha: float | None = None,
        self_loops: bool = False,
        tests: tuple[np.ndarray, dict[str, Any]] | None = None,
    ) -> None:
        """Write to a file whose format follows the extension, atomically.

        The content goes to a temporary file in the same directory, which is flushed to disk and then renamed
        over ``path``; a failed write removes the temporary file and leaves ``path`` as it was.

        Parameters
        ----------
        path : str or os.PathLike
            ``.csv``, ``.npz``, ``.h5``/``.hdf5``, ``.graphml`` or ``.json`` (case-insensitive).

            - ``.csv``: the square strength[post, pre] matrix. The first row is an empty cell followed by the
              presynaptic labels, each further row the postsynaptic label followed by its values, written with
              ``repr`` precision (they parse back exactly). No comment lines, so that ``csv``, spreadsheets,
              ``pandas.read_csv(path, index_col=0)`` and ``numpy.genfromtxt(path, delimiter=",",
              skip_header=1)[:, 1:]`` read it as it is; rows end in CRLF and labels holding commas, quotes or
              line breaks are quoted (RFC 4180). A label that spreadsheets would run as a formula (starting
              with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, and not a plain number such as
              ``-1``) is written with a leading ``'``, so that they show it as text. Metadata, bias and
              filters are not part of it.
            - ``.npz``, ``.h5``/``.hdf5``, ``.json``: every field, readable with :meth:`load`.
            - ``.graphml``: a directed graph, nodes ``n0``, ``n1``, ... with data ``label``, ``visible`` and
              ``bias``; an edge pre -> post for each coupling between two distinct neurons that passes the
              ``threshold`` (``|strength| > threshold``) or the test at ``alpha``, with data ``strength``
              (signed) and ``weight`` (its magnitude, for graph tools that want positive weights). With
              neither, the rule is the test at :data:`GRAPHML_ALPHA` where the connectivity carries standard
              errors (fits without hidden neurons), else a threshold of :data:`GRAPHML_RELATIVE_THRESHOLD`
              times the largest ``|strength|`` between distinct neurons. The metadata, as a JSON string on
              the graph, gains ``edges``: the rule applied (and whether it was the default). Labels parse
              back exactly (a carriage return is written as ``&#13;``); a label holding a character that
              XML 1.0 cannot represent (a control character other than tab, line feed and carriage return,
              U+FFFE, U+FFFF or a lone surrogate) is refused.
        overwrite : bool, default False
            Replace an existing file. When False, an existing ``path`` raises FileExistsError before anything
            is written.
        threshold : float, optional
            GraphML only: keep the edges whose ``|strength|`` exceeds it (0: every nonzero coupling).
        alpha : float, optional
            Write the tests of :meth:`significance` at this false discovery rate instead: ``.csv`` becomes an
            edge list with one row per pair and the columns ``pre, post, strength, se, z, p, q,
            significant, sign, self``; ``.graphml`` keeps the significant edges only, each with those
            fields as data; ``.json`` gains ``edges`` (every pair, those fields) and ``significance``
            (the test and its settings). The GraphML metadata records the test and its settings too.
        self_loops : bool, default False
            GraphML only: also write the self-couplings (pre = post) that pass the rule, as self-loops.
        tests : tuple, optional
            Write these tests instead of the Wald tests at ``alpha``: a result of :meth:`test_couplings`,
            e.g. ``conn.test_couplings(0.05, "jitter", counts=counts)``. Same formats as ``alpha``.

        Raises
        ------
        ValueError
            Before anything is written: for an unsupported extension (the message lists the supported ones), a
            threshold or self-loops with a format other than GraphML, both a threshold and ``alpha``, or a
            label the format cannot hold (GraphML: see above; ``.npz``: one ending in ``"\\x00"``, which
            NumPy string arrays drop).
        FileExistsError
            If ``path`` exists and ``overwrite`` is False.
        FileNotFoundError
            If the directory of ``path`` does not exist.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in _WRITERS:
            raise ValueError(
                f"{path}: unsupported extension {path.suffix!r}; supported: {', '.join(_WRITERS)}"
            )
        if suffix != ".graphml" and (threshold is not None or self_loops):
            raise ValueError(f"threshold and self_loops apply only to GraphML exports, not to {suffix}")
        _check_threshold(threshold)
        if alpha is not None or tests is not None:
            if suffix not in (".csv", ".graphml", ".json") or threshold is not None:
                raise ValueError(
                    f"alpha applies to .csv, .graphml and .json exports without threshold, not {suffix}"
                )
            tests = self._chosen_tests(alpha, tests)
        _refuse_unwritable_labels(self._labels, path, suffix)
        options: dict[str, Any]
        write: Callable[..., None]
        if suffix == ".graphml":
            options, write = {"graph": self._graph(threshold, tests, self_loops)}, _write_graphml
        elif tests is not None:
            options, write = {"tests": tests}, _EDGE_WRITERS[suffix]
        else:
            options, write = {}, _WRITERS[suffix]
        atomic_write(path, lambda temporary: write(self, temporary, **options), overwrite=overwrite)

    def _chosen_tests(
        self, alpha: float | None, tests: tuple[np.ndarray, dict[str, Any]] | None
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The tests an export or a graph is made with: ``tests``, or the Wald tests at ``alpha``, or none."""
        if alpha is not None and tests is not None:
            raise ValueError("give alpha (Wald tests) or tests (any test, with its alpha), not both")
        return self.test_couplings(alpha) if alpha is not None else tests

    def _graph_edges(
        self, threshold: float | None, tests: tuple | None, self_loops: bool
    ) -> tuple[list[tuple[int, int, dict]], dict[str, Any]]:
        """The GraphML edges ``(post, pre, test fields)`` that pass the rule, and how they were chosen."""
        default = threshold is None and tests is None
        if default and self.metadata.get("strength_se") is not None:
            tests = self.test_couplings(GRAPHML_ALPHA)
        if tests is not None:
            table, settings = tests
            index = {label: k for k, label in enumerate(self._labels)}
            edges = [
                (index[row["post"]], index[row["pre"]], {name: row[name].item() for name in _TEST_KEYS})
                for row in table[table["significant"]]
            ]
            rule = {"rule": "significance", **settings}
        else:
            strength = np.abs(self.strength)
            if threshold is None:
                between = strength[~np.eye(self.n_neurons, dtype=bool)]
                threshold = GRAPHML_RELATIVE_THRESHOLD * float(between.max(initial=0.0))
            edges = [(post, pre, {}) for post, pre in np.argwhere(strength > threshold)]
            rule = {"rule": "|strength| above threshold", "threshold": float(threshold)}
        if default:
            rule["default"] = (
                f"the test at alpha {GRAPHML_ALPHA:g}"
                if tests is not None
                else f"{GRAPHML_RELATIVE_THRESHOLD:g} times the largest |strength| between distinct neurons"
            )
        rule["self_loops"] = bool(self_loops)
        return [edge for edge in edges if self_loops or edge[0] != edge[1]], rule

    @classmethod
    def load(cls, path: str | os.PathLike) -> Connectivity:
        """Read a Connectivity written by :meth:`save` to ``.npz``, ``.h5``/``.hdf5`` or ``.json``.

        Nothing is unpickled. CSV and GraphML exports hold the strength only and are refused; read such a
        matrix yourself and pass it to :meth:`from_strength`.

        Raises
        ------
        ValueError
            For an unsupported extension, or a file that is not a spikeglm Connectivity (naming the file).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".csv", ".graphml"):
            raise ValueError(
                f"{path}: {suffix} exports hold only the strength matrix and cannot be loaded as a "
                "Connectivity; save to .npz, .h5 or .json for a round trip, or build one with "
                "Connectivity.from_strength"
            )
        if suffix not in _READERS:
            raise ValueError(
                f"{path}: unsupported extension {path.suffix!r}; loadable: {', '.join(_READERS)}"
            )
        fields = _READERS[suffix](path)
        if fields.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a spikeglm Connectivity file (no format marker {_FORMAT!r})")
        if fields.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path}: Connectivity format version {fields.get('format_version')} is not supported "
                f"(this spikeglm reads version {_FORMAT_VERSION})"
            )
        missing = [name for name in (*_ARRAY_FIELDS, "labels", "metadata") if name not in fields]
        if missing:
            raise ValueError(f"{path}: Connectivity file lacks {', '.join(missing)}")
        return cls(
            fields["weights"],
            fields["basis_matrix"],
            fields["bias"],
            labels=fields["labels"],
            visible=np.asarray(fields["visible"], dtype=bool),
            metadata=fields["metadata"],
        )


# ---------------------------------------------------------------------- validation helpers
def _finite_array(values: ArrayLike, name: str) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} must be finite, got {np.size(array) - np.isfinite(array).sum()} non-finite values"
        )
    return array


def _check_pair_tables(metadata: dict[str, Any], n: int) -> None:
    """Refuse each of :data:`_PAIR_TABLES` in ``metadata`` unless it is absent, None, or ``n`` rows of
    ``n`` numbers (or None) each."""
    for key in _PAIR_TABLES:
        table = metadata.get(key)
        if table is None:
            continue
        if not (
            isinstance(table, list)
            and len(table) == n
            and all(
                isinstance(row, list)
                and len(row) == n
                and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row)
                for row in table
            )
        ):
            raise ValueError(f"metadata {key!r} must be {n} rows of {n} numbers, one per (post, pre) pair")


def json_plain(metadata: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """``metadata`` as plain JSON values (NumPy scalars and arrays as numbers and lists).

    Other values raise TypeError with ``strict`` (the metadata of a Connectivity must be data), and are
    kept as their text without (the metadata of recorded counts, e.g. quantities). Non-finite numbers
    are refused either way, as JSON cannot carry them.
    """
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        if strict:
            raise TypeError(f"{type(value).__name__} is not JSON-able")
        return str(value)

    try:
        return json.loads(json.dumps(metadata, default=plain, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must hold JSON-able values (finite numbers, str, lists, dicts): {error}"
        ) from error


# ---------------------------------------------------------------------- writers
def _refuse_unwritable_labels(labels: list[str], path: Path, suffix: str) -> None:
    """Raise before writing, rather than write a label the format would corrupt or lose."""
    for label in labels:
        if suffix == ".graphml" and (match := _NOT_XML.search(label)):
            raise ValueError(
                f"{path}: label {label!r} holds {match.group()!r}, which XML 1.0 (GraphML) cannot represent; "
                "save to .json or .npz to keep such labels"
            )
        if suffix == ".npz" and label.endswith("\x00"):
            raise ValueError(
                f"{path}: label {label!r} ends with '\\x00', which NumPy string arrays drop; "
                "save to .json to keep such labels"
            )


def _csv_label(label: str) -> str:
    """The label as a CSV cell, with a leading "'" where spreadsheets would run it as a formula."""
    if label.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(label):
        return "'" + label
    return label


def _arrays(conn: Connectivity) -> dict[str, np.ndarray]:
    return {name: getattr(conn, name) for name in _ARRAY_FIELDS}


def _write_csv(conn: Connectivity, path: Path) -> None:
    labels = [_csv_label(label) for label in conn.labels]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        # RFC 4180's CRLF: the csv module quotes only the characters of its line terminator, and a bare "\r"
        # left unquoted in a label would split the row for readers.
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["", *labels])
        for label, row in zip(labels, conn.strength, strict=True):
            writer.writerow([label, *(repr(float(value)) for value in row)])


def _write_npz(conn: Connectivity, path: Path) -> None:
    with open(path, "wb") as handle:  # a file object, so that numpy does not append ".npz" to the name
        arrays: dict[str, Any] = {
            **_arrays(conn),
            "labels": np.array(conn.labels, dtype=str),
            "metadata": np.array(json.dumps(conn.metadata)),
            **{key: np.array(value) for key, value in _HEADER.items()},
        }
        np.savez(handle, **arrays)


def _write_h5(conn: Connectivity, path: Path) -> None:
    with h5py.File(path, "w") as file:
        for name, array in _arrays(conn).items():
            file.create_dataset(name, data=array)
        file.create_dataset("labels", data=conn.labels, dtype=h5py.string_dtype())
        file.attrs["metadata"] = json.dumps(conn.metadata)
        file.attrs.update(_HEADER)


def _write_json(conn: Connectivity, path: Path, extra: dict | None = None) -> None:
    document = {
        **_HEADER,
        "labels": conn.labels,
        "metadata": conn.metadata,
        **{name: array.tolist() for name, array in _arrays(conn).items()},
        **(extra or {}),
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, allow_nan=False)
        handle.write("\n")


#: The edge data of a GraphML export with tests, beside ``strength`` and ``weight``.
_TEST_KEYS = ("se", "z", "p", "q", "sign")


def _check_threshold(threshold: float | None) -> None:
    """Refuse a GraphML threshold that is not a finite number >= 0."""
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")


def _write_graphml(conn: Connectivity, path: Path, graph: Any) -> None:
    """The ``graph`` of :meth:`Connectivity._graph` as GraphML, written by networkx: nodes ``n0, n1, ...``
    (visible first), every attribute under its own name, and the metadata (with the rule that chose the
    edges, and for tests their settings) as one JSON text."""
    import networkx
    from networkx.readwrite.graphml import GraphMLWriter

    rule = graph.graph["edges"]
    metadata = {**graph.graph["metadata"], "edges": rule}
    if rule["rule"] == "significance":
        metadata["significance"] = {
            key: value for key, value in rule.items() if key not in ("rule", "self_loops")
        }
    named = networkx.relabel_nodes(graph, {k: f"n{k}" for k in graph.nodes})
    named.graph = {"metadata": json.dumps(metadata)}
    # XML parsers read a raw "\r" in text as a line end ("\n") but keep the reference "&#13;", which cannot go
    # into the text ("&" would become "&amp;"). ElementTree leaves "\r" raw only in texts, and of those only
    # labels can hold one: the metadata JSON escapes its control characters.
    writer = GraphMLWriter(named, named_key_ids=True)
    # networkx writes Python's True and False; GraphML's booleans are XML Schema's true and false.
    booleans = {key.get("id") for key in writer.xml.iter("key") if key.get("attr.type") == "boolean"}
    for data in writer.xml.iter("data"):
        if data.get("key") in booleans and data.text is not None:
            data.text = data.text.lower()
    document = str(writer).replace("\r", "&#13;")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(f"<?xml version='1.0' encoding='utf-8'?>\n{document}\n")


def _write_edges_csv(conn: Connectivity, path: Path, tests: tuple) -> None:
    table, _ = tests
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(table.dtype.names)
        for row in table.tolist():
            writer.writerow(_csv_label(v) if isinstance(v, str) else repr(v) for v in row)


def _write_edges_json(conn: Connectivity, path: Path, tests: tuple) -> None:
    table, test = tests
    # JSON has no infinity: a standard error without information (and its z) is written as null
    rows = [
        [None if isinstance(v, float) and not np.isfinite(v) else v for v in row] for row in table.tolist()
    ]
    edges = [dict(zip(table.dtype.names, row, strict=True)) for row in rows]
    _write_json(conn, path, {"significance": test, "edges": edges})


_EDGE_WRITERS: dict[str, Callable[..., None]] = {".csv": _write_edges_csv, ".json": _write_edges_json}

_WRITERS: dict[str, Callable[..., None]] = {
    ".csv": _write_csv,
    ".npz": _write_npz,
    ".h5": _write_h5,
    ".hdf5": _write_h5,
    ".graphml": _write_graphml,
    ".json": _write_json,
}


# ---------------------------------------------------------------------- readers
def _read_npz(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        fields = {name: data[name] for name in data.files}
    for name in ("format", "format_version", "metadata"):
        if name in fields:
            fields[name] = fields[name].item()
    if "labels" in fields:
        fields["labels"] = fields["labels"].tolist()
    if "metadata" in fields:
        fields["metadata"] = json.loads(fields["metadata"])
    return fields


def _read_h5(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as file:
        fields = {name: file[name][()] for name in _ARRAY_FIELDS if name in file}
        if "labels" in file:
            fields["labels"] = list(file["labels"].asstr()[()])
        fields.update({name: _python(value) for name, value in file.attrs.items()})
    if "metadata" in fields:
        fields["metadata"] = json.loads(fields["metadata"])
    return fields


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a spikeglm Connectivity file (top level is not an object)")
    return document


_READERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    ".npz": _read_npz,
    ".h5": _read_h5,
    ".hdf5": _read_h5,
    ".json": _read_json,
}
