"""The fully observed GLM's solvers side by side: spikeglm's Newton solve (the default up to 200 design
columns), its L-BFGS solve (in whitened coordinates, the solve beyond) and scikit-learn's
``PoissonRegressor`` (``newton-cholesky`` and ``lbfgs``).

Every solver fits the same Poisson GLM with the exp link (scikit-learn's) to the same counts: one
intercept and every neuron's history through spikeglm's default basis (exponential, 5 lags). spikeglm
solves all neurons together from its counts (building the design is part of its time); scikit-learn
fits one regressor per neuron on the design built beforehand (not part of its time), with its
tolerance lowered until its held-out log-likelihood stops changing at 1e-7. All are scored by one
NumPy function: the exact Poisson log-likelihood per neuron-bin of held-out trials.

Times are CPU seconds of this process with one thread everywhere (torch, and the BLAS scikit-learn
calls, through threadpoolctl), measured one after the other in this run.

scikit-learn is an optional extra of spikeglm (``pip install -e ".[sklearn]"``). Run::

    python benchmarks/glm_solvers.py [--quick]

Cases: ``sparse-ei`` (30 neurons) with 20,000 and 200,000 bins to fit, and, unless ``--quick``, a
``balanced`` network of 100 neurons (10-30 Hz in 5 ms bins) with 100,000 bins.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import _results
import numpy as np
import torch
from scipy.special import gammaln

import spikeglm as sg
from spikeglm.basis import history
from spikeglm.inference import solve_glm
from spikeglm.model import Network, inverse_link
from spikeglm.segments import Segments

try:
    import sklearn
    from sklearn.linear_model import PoissonRegressor
    from threadpoolctl import threadpool_limits
except ImportError as error:  # pragma: no cover - depends on the environment
    raise SystemExit(f'this benchmark needs scikit-learn ({error}): pip install -e ".[sklearn]"') from None


def design(counts: np.ndarray, basis_matrix: torch.Tensor) -> np.ndarray:
    """Trials x bins rows of every neuron's filtered history (N * B columns, neuron-major), float64."""
    features = history(torch.from_numpy(np.array(counts, dtype=np.float32)), basis_matrix)
    return features.flatten(-2).reshape(-1, features.shape[-2] * features.shape[-1]).double().numpy()


def log_likelihood(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> float:
    """Exact Poisson log-likelihood per neuron-bin under the exp link, in float64."""
    predictor = x @ weights + bias
    return float(np.mean(y * predictor - np.exp(predictor) - gammaln(y + 1)))


def spikeglm_fit(train: np.ndarray, basis: sg.basis.Basis, solver: str) -> tuple[np.ndarray, np.ndarray, int]:
    """spikeglm's solve from the usual start (biases at the mean rates, no coupling): weights (P, N)."""
    counts = torch.from_numpy(np.array(train))
    network = Network(counts.shape[-1], 0, basis, "exp")
    with torch.no_grad():
        network.bias.copy_(inverse_link("exp", counts.double().mean((0, 1))))
    records, reason = solve_glm(network, Segments(counts), solver=solver)
    if not reason.startswith("converged") and len(train) > 4:  # the warm-up's few trials may not
        raise RuntimeError(f"spikeglm's {solver} solve did not converge: {reason}")
    weights = network.weight.detach().double().flatten(1).T.numpy()
    return weights, network.bias.detach().double().numpy(), len(records)


def sklearn_fit(
    x: np.ndarray, y: np.ndarray, solver: str, tol: float = 1e-7
) -> tuple[np.ndarray, np.ndarray, int]:
    """One ``PoissonRegressor`` per neuron, unpenalised: weights (P, N), biases, most iterations."""
    weights, biases, iterations = [], [], 0
    for neuron in range(y.shape[1]):
        model = PoissonRegressor(alpha=0.0, solver=solver, tol=tol, max_iter=10_000).fit(x, y[:, neuron])
        weights.append(model.coef_)
        biases.append(model.intercept_)
        iterations = max(iterations, model.n_iter_)
    return np.stack(weights, axis=1), np.array(biases), iterations


def compare(name: str, train: sg.SpikeCounts, test: sg.SpikeCounts) -> dict:
    basis = sg.basis.get("exponential", window=5)
    n = train.n_units
    x_train = design(np.asarray(train.counts), basis.matrix())
    x_test = design(np.asarray(test.counts), basis.matrix())
    y_train = np.asarray(train.counts).reshape(-1, n).astype(np.float64)
    y_test = np.asarray(test.counts).reshape(-1, n).astype(np.float64)

    def fits(rows: int) -> dict:
        """Each solver on the first ``rows`` rows (bins) of the training data."""
        trials = rows // train.n_bins
        return {
            "spikeglm newton": lambda: spikeglm_fit(train.counts[:trials], basis, "newton"),
            "spikeglm lbfgs": lambda: spikeglm_fit(train.counts[:trials], basis, "lbfgs"),
            "sklearn newton-cholesky": lambda: sklearn_fit(x_train[:rows], y_train[:rows], "newton-cholesky"),
            "sklearn lbfgs": lambda: sklearn_fit(x_train[:rows], y_train[:rows], "lbfgs"),
        }

    for warm_up in fits(4 * train.n_bins).values():  # each solver's first call (its kernels' set-up) untimed
        with threadpool_limits(1):
            warm_up()
    row: dict = {"case": name, "neurons": n, "bins": int(y_train.shape[0])}
    for label, fit in fits(len(y_train)).items():
        cpu = time.process_time()
        with threadpool_limits(1):
            weights, bias, iterations = fit()
        cpu = time.process_time() - cpu
        row[label] = {
            "cpu_s": cpu,
            "iterations": iterations,
            "test_ll": log_likelihood(x_test, y_test, weights, bias),
        }
        print(
            f"{name:<30} {label:<24} {cpu:7.2f} s CPU {iterations:5d} iterations "
            f"held-out LL {row[label]['test_ll']:.7f}",
            flush=True,
        )
    best = min(row[k]["cpu_s"] for k in ("sklearn newton-cholesky", "sklearn lbfgs"))
    row["ratio_to_sklearn_best"] = row["spikeglm newton"]["cpu_s"] / best
    row["ratio_to_lbfgs"] = row["spikeglm newton"]["cpu_s"] / row["spikeglm lbfgs"]["cpu_s"]
    row["ll_difference_to_newton_cholesky"] = (
        row["spikeglm newton"]["test_ll"] - row["sklearn newton-cholesky"]["test_ll"]
    )
    print(
        f"{name:<30} Newton / scikit-learn's best: {row['ratio_to_sklearn_best']:.2f}; Newton / L-BFGS: "
        f"{row['ratio_to_lbfgs']:.2f}; held-out LL, Newton less newton-cholesky: "
        f"{row['ll_difference_to_newton_cholesky']:+.1e}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two sparse-ei cases only")
    _results.add_option(parser, "glm_solvers")
    args = parser.parse_args()
    path = _results.output(args.json, "glm_solvers", args.quick)
    torch.set_num_threads(1)
    cases = [
        ("sparse-ei, 20,000 bins", dict(protocol="sparse-ei", n_train=40, n_bins=500)),
        ("sparse-ei, 200,000 bins", dict(protocol="sparse-ei", n_train=400, n_bins=500)),
    ]
    if not args.quick:
        options = dict(protocol="balanced", n_visible=100, n_hidden=0, n_bins=1000, n_train=100, n_test=20)
        cases.append(("balanced 100, 100,000 bins", options))
    rows = []
    print(f"spikeglm {sg.__version__}, scikit-learn {sklearn.__version__}, one thread each")
    for name, options in cases:
        _, train, test = sg.synthetic.network(seed=0, **options)
        rows.append(compare(name, train, test))
    _results.write(path, "glm solvers", {"link": "exp", "basis": "exponential, 5 lags"}, {"rows": rows})


if __name__ == "__main__":
    main()
