"""The fully observed GLM: spikeglm's solve against NeMoS's, on the same counts and basis.

With ``n_hidden=0`` a POGLM is an ordinary Poisson GLM. This fits it with spikeglm (its default solve:
Newton's method per neuron in float64, ``solver="auto"``) and with NeMoS's ``PopulationGLM`` (JAX in its
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

``--ridge``: the penalised fit a user would run with each tool, on short recordings of the same network
(5,000 and 20,000 bins to fit), where a penalty pays: spikeglm's ``penalty="ridge", penalty_strength="cv"``
(its own 5-fold path of 11 strengths, warm-started), against NeMoS's ``Ridge`` regulariser with its strength
chosen the same way by hand (5 folds of whole trials, 11 strengths on a log grid, each fit from its default
start, and the vertex of the parabola through the best and its neighbours cross-validated and kept where it
scores better, as spikeglm refines its own; then a refit at the strength chosen on all the training trials).
The two penalties differ (spikeglm leaves each neuron's own history filter unpenalised, NeMoS penalises
every coefficient but the intercepts), so the figures are the held-out log-likelihood each reaches and the
CPU it takes, not a common optimum. Then the common optimum: NeMoS at spikeglm's chosen strength, on the
same objective (its strength an array, zero on each neuron's own history, and scaled to its loss, the
mean over bins summed over neurons: ``strength * spikes / bins``), against spikeglm's fit.
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
from spikeglm.inference.strength import refined_strength

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


#: NeMoS's ridge strengths tried (its loss is the mean over bins and neurons).
NEMOS_STRENGTHS = np.logspace(-7.0, -2.0, 11)


def nemos_fit(x: np.ndarray, y: np.ndarray, strength: float | np.ndarray):
    glm = nemos.glm.PopulationGLM(
        inverse_link_function=jax.nn.softplus,
        regularizer="Ridge",
        regularizer_strength=strength if isinstance(strength, np.ndarray) else float(strength),
        solver_name="LBFGS",
    )
    return glm.fit(x, y.astype(np.float32))


def spikeglms_ridge(strength: float, counts: np.ndarray, n_basis: int) -> np.ndarray:
    """spikeglm's ridge of ``strength`` (per spike, each neuron's own history free) as NeMoS's strength of
    each coefficient, shape (N * B, N): its loss is minus the log-likelihood over the bins (summed over
    neurons), spikeglm's over the spikes."""
    n = counts.shape[-1]
    scale = strength * float(counts.sum()) / (counts.size // n)
    own = np.kron(np.eye(n), np.ones((n_basis, 1)))  # rows pre * B + b, column post
    return (scale * (1.0 - own)).astype(np.float32)


def nemos_ridge_cv(train_counts: np.ndarray, basis_matrix: torch.Tensor) -> tuple[object, float, dict]:
    """NeMoS's ridge with its strength chosen by 5-fold cross-validation over whole trials, refitted on
    all of them: the fit, the chosen strength and each strength's mean held-out log-likelihood. As
    spikeglm refines its own path, the vertex of the parabola through the grid's best point and its
    neighbours is cross-validated too, and kept where it scores better."""
    n = train_counts.shape[-1]
    folds = np.array_split(np.arange(train_counts.shape[0]), 5)

    def cross_validated(strengths: list[float]) -> np.ndarray:
        scores = np.zeros(len(strengths))
        for held in folds:
            kept = np.setdiff1d(np.arange(train_counts.shape[0]), held)
            x_fit, y_fit = design(train_counts[kept], basis_matrix), train_counts[kept].reshape(-1, n)
            x_out = design(train_counts[held], basis_matrix)
            y_out = train_counts[held].reshape(-1, n).astype(np.float64)
            for k, strength in enumerate(strengths):
                fit = nemos_fit(x_fit, y_fit, strength)
                coef, intercept = np.asarray(fit.coef_), np.asarray(fit.intercept_)
                scores[k] += log_likelihood(x_out, y_out, coef, intercept) / len(folds)
        return scores

    grid = NEMOS_STRENGTHS.tolist()
    scores = cross_validated(grid)
    table = dict(zip(grid, scores.tolist(), strict=True))
    best = grid[int(np.argmax(scores))]
    # spikeglm's path runs largest first, to none.
    vertex = refined_strength([*grid[::-1], 0.0], np.append(scores[::-1], -np.inf))
    if vertex != best:
        table[vertex] = float(cross_validated([vertex])[0])
        best = vertex if table[vertex] > table[best] else best
    x_all, y_all = design(train_counts, basis_matrix), train_counts.reshape(-1, n)
    return nemos_fit(x_all, y_all, best), best, table


def compare_ridge(name: str, train: sg.SpikeCounts, test: sg.SpikeCounts) -> dict:
    """Each tool's cross-validated ridge on the same trials, scored on the same held-out trials."""
    train_counts, test_counts = np.asarray(train.counts), np.asarray(test.counts)
    n = train.n_units
    settings = {"n_hidden": 0, "penalty": "ridge", "penalty_strength": "cv"}
    model, cpu, wall = timed(lambda: sg.POGLM(**settings).fit(train))
    plain = sg.POGLM(n_hidden=0).fit(train)
    basis_matrix = model.network_.basis_matrix
    x_test, y_test = design(test_counts, basis_matrix), test_counts.reshape(-1, n).astype(np.float64)

    def held_out(network) -> float:
        weights = network.weight.detach().numpy().astype(np.float64).reshape(n, -1).T
        return log_likelihood(x_test, y_test, weights, network.bias.detach().numpy())

    row = {
        "case": name,
        "bins": int(train_counts.shape[0] * train_counts.shape[1]),
        "spikeglm unpenalised": {"test_ll": held_out(plain.network_)},
        "spikeglm ridge cv": {
            "cpu_s": cpu,
            "wall_s": wall,
            "strength": model.fit_options_["penalty_strength"],
            "test_ll": held_out(model.network_),
        },
    }
    (fitted, strength, table), cpu, wall = timed(lambda: nemos_ridge_cv(train_counts, basis_matrix))
    row["nemos ridge cv"] = {
        "cpu_s": cpu,
        "wall_s": wall,
        "strength": strength,
        "cv_scores": table,
        "test_ll": log_likelihood(x_test, y_test, np.asarray(fitted.coef_), np.asarray(fitted.intercept_)),
    }
    n_basis = model.network_.weight.shape[-1]
    same = spikeglms_ridge(row["spikeglm ridge cv"]["strength"], train_counts, n_basis)
    x_all, y_all = design(train_counts, basis_matrix), train_counts.reshape(-1, n)
    fitted, cpu, wall = timed(lambda: nemos_fit(x_all, y_all, same))
    coef = np.asarray(fitted.coef_)
    ours_weights = model.network_.weight.detach().numpy().astype(np.float64).reshape(n, -1).T
    row["nemos ridge, spikeglm's objective"] = {
        "cpu_s": cpu,
        "wall_s": wall,
        "test_ll": log_likelihood(x_test, y_test, coef, np.asarray(fitted.intercept_)),
        "largest_weight_difference": float(np.abs(coef - ours_weights).max()),
    }
    ours, theirs = row["spikeglm ridge cv"], row["nemos ridge cv"]
    row["cpu_ratio"] = ours["cpu_s"] / theirs["cpu_s"]
    row["ll_difference"] = ours["test_ll"] - theirs["test_ll"]
    print(
        f"{name:<28} unpenalised LL {row['spikeglm unpenalised']['test_ll']:.6f} | spikeglm ridge cv "
        f"{ours['cpu_s']:6.1f} s CPU, strength {ours['strength']:.2g}, LL {ours['test_ll']:.6f} | NeMoS "
        f"ridge cv {theirs['cpu_s']:6.1f} s CPU, strength {theirs['strength']:.2g}, LL "
        f"{theirs['test_ll']:.6f} | CPU ratio {row['cpu_ratio']:.2f}, LL difference "
        f"{row['ll_difference']:+.1e}",
        flush=True,
    )
    same_objective = row["nemos ridge, spikeglm's objective"]
    print(
        f"{'':<28} NeMoS on spikeglm's objective at its strength: {same_objective['cpu_s']:6.1f} s CPU, LL "
        f"{same_objective['test_ll']:.6f}, difference {ours['test_ll'] - same_objective['test_ll']:+.1e}, "
        f"largest weight difference {same_objective['largest_weight_difference']:.1e}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 20,000-bin case")
    parser.add_argument("--ridge", action="store_true", help="the cross-validated ridge fits instead")
    _results.add_option(parser, "nemos_glm")
    args = parser.parse_args()
    name = "nemos_ridge" if args.ridge else "nemos_glm"
    path = _results.output(args.json, name, args.quick)
    torch.set_num_threads(1)
    print(f"spikeglm {sg.__version__}, nemos {nemos.__version__}, jax {jax.__version__}")
    if args.ridge:
        rows = []
        for n_train in (10,) if args.quick else (10, 40):
            _, train, test = sg.synthetic.network(protocol="sparse-ei", seed=0, n_train=n_train)
            rows.append(compare_ridge(f"sparse-ei, {n_train * 500:,} bins", train, test))
        _results.write(path, "nemos ridge", {"link": "softplus", "folds": 5}, {"rows": rows})
        return
    _, train, test = sg.synthetic.network(protocol="sparse-ei", seed=0)
    rows = [compare("sparse-ei, 20,000 bins", train, test)]
    if not args.quick:
        _, train, test = sg.synthetic.network(protocol="sparse-ei", seed=0, n_train=400, n_bins=500)
        rows.append(compare("sparse-ei, 200,000 bins", train, test))
    _results.write(path, "nemos glm", {"link": "softplus", "nemos solver": "LBFGS"}, {"rows": rows})


if __name__ == "__main__":
    main()
