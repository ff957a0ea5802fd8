"""The fully observed GLM: spikeglm's L-BFGS solve against NeMoS's, on the same counts and basis.

With ``n_hidden=0`` a POGLM is an ordinary Poisson GLM. This fits it with spikeglm (float32, L-BFGS
with a strong-Wolfe line search, per-spike objective) and with NeMoS's ``PopulationGLM`` (JAX in its
default float32, its L-BFGS solver, no regulariser), both on the same design: every neuron's counts
filtered by spikeglm's basis, zero before each trial starts, softplus link. Both fits are scored by the
same NumPy function: the exact Poisson log-likelihood per neuron-bin of the held-out trials.

Times are CPU seconds of this process (all threads, as ``time.process_time`` counts them) and wall
seconds; NeMoS's first fit includes JAX's compilation, so it is run twice and both are printed.

NeMoS is not a dependency of spikeglm; run this in an environment of its own::

    python -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 nemos -e .
    .venv-bench/bin/python benchmarks/nemos_glm.py [--quick]

Cases: ``sparse-ei`` (30 neurons, seed 0, 40 x 500 bins to fit) and, unless ``--quick``, the same
network simulated for 200,000 bins.
"""

from __future__ import annotations

import argparse
import time

import _results
import numpy as np
import torch
from scipy.special import gammaln

import spikeglm as sg
from spikeglm.basis import history

try:
    import jax
    import nemos
except ImportError as error:  # pragma: no cover - depends on the benchmark environment
    message = f"this benchmark needs NeMoS in its own environment ({error}); see its docstring"
    raise SystemExit(message) from None


def design(counts: np.ndarray, basis_matrix: torch.Tensor) -> np.ndarray:
    """Trials x bins rows of every neuron's filtered history (N * B columns, neuron-major)."""
    features = history(torch.from_numpy(np.array(counts, dtype=np.float32)), basis_matrix)  # (R, T, N, B)
    return features.flatten(-2).reshape(-1, features.shape[-2] * features.shape[-1]).numpy()


def log_likelihood(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> float:
    """Exact Poisson log-likelihood per neuron-bin under a softplus link, in float64."""
    predictor = x.astype(np.float64) @ weights + bias
    rate = np.logaddexp(0.0, predictor)
    return float(np.mean(y * np.log(rate) - rate - gammaln(y + 1)))


def timed(function):
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def compare(name: str, train: sg.SpikeCounts, test: sg.SpikeCounts) -> dict:
    train_counts, test_counts = np.asarray(train.counts), np.asarray(test.counts)
    n = train.n_units
    model, cpu, wall = timed(lambda: sg.POGLM(n_hidden=0).fit(train))
    basis_matrix = model.network_.basis_matrix
    x_train, x_test = design(train_counts, basis_matrix), design(test_counts, basis_matrix)
    y_train, y_test = train_counts.reshape(-1, n), test_counts.reshape(-1, n).astype(np.float64)
    weights = model.network_.weight.detach().numpy().astype(np.float64)  # (post, pre, basis)
    row = {
        "case": name,
        "bins": int(y_train.shape[0]),
        "spikeglm": {
            "cpu_s": cpu,
            "wall_s": wall,
            "iterations": len(model.history_),
            "test_ll": log_likelihood(
                x_test, y_test, weights.reshape(n, -1).T, model.network_.bias.detach().numpy()
            ),
        },
    }
    for run in ("nemos (first)", "nemos (again)"):
        glm = nemos.glm.PopulationGLM(
            inverse_link_function=jax.nn.softplus, regularizer="UnRegularized", solver_name="LBFGS"
        )
        fitted, cpu, wall = timed(lambda glm=glm: glm.fit(x_train, y_train.astype(np.float32)))
        row[run] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "test_ll": log_likelihood(
                x_test, y_test, np.asarray(fitted.coef_), np.asarray(fitted.intercept_)
            ),
        }
    parts = [f"{name:<28}"] + [
        f"{label}: {r['cpu_s']:6.1f} s CPU {r['wall_s']:5.1f} s wall LL {r['test_ll']:.6f}"
        for label, r in row.items()
        if isinstance(r, dict)
    ]
    ratio = row["spikeglm"]["cpu_s"] / row["nemos (again)"]["cpu_s"]
    gap = row["spikeglm"]["test_ll"] - row["nemos (again)"]["test_ll"]
    print(" | ".join(parts) + f" | CPU ratio {ratio:.2f}, LL difference {gap:+.1e}", flush=True)
    row["cpu_ratio"], row["ll_difference"] = ratio, gap
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 20,000-bin case")
    _results.add_option(parser, "nemos_glm")
    args = parser.parse_args()
    path = _results.output(args.json, "nemos_glm", args.quick)
    torch.set_num_threads(1)
    print(f"spikeglm {sg.__version__}, nemos {nemos.__version__}, jax {jax.__version__}")
    _, train, test = sg.synthetic.network(protocol="sparse-ei", seed=0)
    rows = [compare("sparse-ei, 20,000 bins", train, test)]
    if not args.quick:
        _, train, test = sg.synthetic.network(protocol="sparse-ei", seed=0, n_train=400, n_bins=500)
        rows.append(compare("sparse-ei, 200,000 bins", train, test))
    _results.write(path, "nemos glm", {"link": "softplus", "solver": "LBFGS"}, {"rows": rows})


if __name__ == "__main__":
    main()
