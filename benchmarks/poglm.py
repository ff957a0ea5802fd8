"""The published POGLM benchmark, and training throughput against a per-sequence loop implementation.

Quality (``quality``): the "diffpoglm" synthetic protocol (3 visible + 2 hidden neurons, W ~ U(-2, 2),
b ~ U(-0.5, 0.5), sigmoid link, exponential basis L = 5, 100-bin trials, 40 train / 20 test trials;
dataset k has seed k). For every dataset, relaxation and temperature a POGLM is fit with the library's
defaults (sigmoid link to match the protocol) and reported are
  * the test log-likelihood per visible neuron-bin (importance sampling, exact Poisson p and q),
  * beside it the oracle: the same estimator with the true network (only q fit), the ceiling,
  * the weight MAE after matching the hidden neurons (all weights, and the visible block),
  * the fit time.
Fits run in parallel worker processes, one torch thread each; a fit whose scores are not finite stops
the benchmark. ``--quick`` is a smoke run: 2 datasets, 20 epochs, temperatures 0.2 and 1 (the options
given explicitly still apply).

Throughput (``throughput``): one training epoch of the shipped, vectorised objective against a
straightforward implementation of the same model and ELBO that loops over sequences, samples and lags
in Python (vectorised over bins), on the same data, side by side in one run; neuron-bins per second.
Before anything is timed, the two ELBOs are computed with the same parameters (the true network and a
posterior with random couplings, so that every term matters) on the same hidden samples, and the
benchmark stops unless they agree to a relative 1e-5 (float32 sums taken in different orders).

Each writes its figures as JSON beside the printed table (``--json PATH``, default
results/benchmarks/poglm-quality.json or poglm-throughput.json; "-quick" before ".json" for --quick).

Usage:
  python benchmarks/poglm.py quality [--datasets 10] [--epochs 500] [--workers 2] [--quick] [--json PATH]
  python benchmarks/poglm.py throughput [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import product

import _results
import torch

import spikeglm as sg
from spikeglm.model import Network
from spikeglm.relax import poisson_log_pmf
from spikeglm.variational import Posterior, log_weights

RELAXATIONS = ("eat-cubic", "eat-sigmoid", "gumbel-softmax")
SCORE_PARTICLES = 1000
#: Datasets, epochs and temperatures of the quality benchmark, and of its --quick smoke run.
FULL = {"datasets": 10, "epochs": 500, "temperatures": [0.1, 0.2, 0.5, 1.0]}
QUICK = {"datasets": 2, "epochs": 20, "temperatures": [0.2, 1.0]}

#: Hidden-count samples per sequence and temperature of Eat-cubic in the throughput benchmark.
SAMPLES, TEMPERATURE = 5, 0.5
#: Largest relative difference allowed between the loop and vectorised ELBOs on the same samples. Both
#: are float32 sums of about 20,000 terms taken in different orders (6e-8 apart when measured).
ELBO_RTOL = 1e-5


# ---------------------------------------------------------------------------------------------- quality
def _fit_one(job: tuple) -> dict:
    dataset, relaxation, temperature, epochs = job
    torch.set_num_threads(1)
    truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=dataset)
    start = time.perf_counter()
    if relaxation == "oracle":
        model = sg.POGLM.from_connectivity(truth, epochs=epochs, seed=0).fit(train)
    else:
        # "exact" has no temperature, and the estimator refuses None for one.
        relaxed = {} if temperature is None else {"temperature": temperature}
        model = sg.POGLM(
            n_hidden=truth.n_hidden, link="sigmoid", relaxation=relaxation, epochs=epochs, seed=0, **relaxed
        ).fit(train)
    seconds = time.perf_counter() - start
    scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
    row = {
        "dataset": dataset,
        "relaxation": relaxation,
        "temperature": temperature,
        "test_ll": model.score(test, n_particles=SCORE_PARTICLES),
        "mae": scores["mae"],
        "mae_visible": scores["mae_visible"],
        "seconds": seconds,
    }
    if not all(math.isfinite(row[key]) for key in ("test_ll", "mae", "mae_visible")):
        raise RuntimeError(f"a fit went wrong, its scores are not all finite: {row}")
    return row


def quality(
    datasets: int, epochs: int, workers: int, relaxations: list[str], temperatures: list[float]
) -> dict:
    """Fit and score every dataset, relaxation and temperature; print the table and return the figures."""
    jobs = [(d, "oracle", None, epochs) for d in range(datasets)]
    jobs += [(d, r, t, epochs) for d, r, t in product(range(datasets), relaxations, temperatures)]
    jobs += [(d, "exact", None, epochs) for d in range(datasets)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_fit_one, jobs))
    print(
        f"\ndiffpoglm protocol, {datasets} datasets, {epochs} epochs, test LL per neuron-bin "
        f"({SCORE_PARTICLES} particles); mean ± sd over datasets"
    )
    print(
        f"{'relaxation':<15} {'tau':>4} | {'test LL':>16} {'oracle gap':>10} | "
        f"{'MAE':>13} {'MAE vis':>13} | {'s/fit':>5}"
    )
    oracle = {row["dataset"]: row["test_ll"] for row in rows if row["relaxation"] == "oracle"}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["relaxation"], row["temperature"]), []).append(row)
    by_relaxation: dict[str, list[float]] = {}
    table = []
    for (relaxation, temperature), group in groups.items():
        ll = [g["test_ll"] for g in group]
        gap = [g["test_ll"] - oracle[g["dataset"]] for g in group]
        mae = [g["mae"] for g in group]
        mae_v = [g["mae_visible"] for g in group]
        secs = statistics.mean(g["seconds"] for g in group)
        tau = "" if temperature is None else f"{temperature:g}"
        print(
            f"{relaxation:<15} {tau:>4} | {_mean_sd(ll):>16} {statistics.mean(gap):>10.4f} | "
            f"{_mean_sd(mae):>13} {_mean_sd(mae_v):>13} | {secs:>5.1f}"
        )
        table.append(
            {
                "relaxation": relaxation,
                "temperature": temperature,
                "test_ll_mean": statistics.mean(ll),
                "test_ll_sd": _sd(ll),
                "oracle_gap_mean": statistics.mean(gap),
                "mae_mean": statistics.mean(mae),
                "mae_sd": _sd(mae),
                "mae_visible_mean": statistics.mean(mae_v),
                "mae_visible_sd": _sd(mae_v),
                "seconds_per_fit": secs,
            }
        )
        if temperature is not None:
            by_relaxation.setdefault(relaxation, []).append(statistics.mean(ll))
    print("\nSpread of the mean test LL across temperatures, (max - min) / |mean|:")
    spread = {}
    for relaxation, means in by_relaxation.items():
        spread[relaxation] = (max(means) - min(means)) / abs(statistics.mean(means))
        print(f"  {relaxation:<15} {100 * spread[relaxation]:.2f}%")
    return {"table": table, "temperature_spread": spread, "fits": rows}


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {_sd(values):.4f}"


# ------------------------------------------------------------------------------------------- throughput
def _lagged(x: torch.Tensor, phi: torch.Tensor, direction: int) -> torch.Tensor:
    """sum_l phi[:, l] x[t - l] (direction 1) or x[t + l] (direction -1), lag by lag: (bins, M, B)."""
    n_bins = x.shape[0]
    out = x.new_zeros(n_bins, x.shape[1], phi.shape[0])
    for lag in range(1, phi.shape[1] + 1):
        if lag >= n_bins:
            break
        shifted = x[: n_bins - lag] if direction == 1 else x[lag:]
        contribution = shifted.unsqueeze(-1) * phi[:, lag - 1]
        out = out + torch.cat(
            [x.new_zeros(lag, *contribution.shape[1:]), contribution]
            if direction == 1
            else [contribution, x.new_zeros(lag, *contribution.shape[1:])]
        )
    return out


def loop_elbo(
    network: Network,
    posterior: Posterior,
    visible: torch.Tensor,
    n_samples: int,
    hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """The forward-backward ELBO of ``spikeglm.inference.objectives``, sequence by sequence and lag by lag.

    The hidden counts are drawn from Eat-cubic sequence by sequence, or taken from ``hidden``
    (n_samples, trials, bins, H) where given.
    """
    phi = network.basis_matrix
    total = visible.new_zeros(())
    for i, x in enumerate(visible):  # one sequence, (bins, V)
        past, future = _lagged(x, phi, 1), _lagged(x, phi, -1)
        q_pre = posterior.bias + torch.einsum("tvb,hvb->th", past, posterior.past)
        q_rate = network.link(q_pre + torch.einsum("tvb,hvb->th", future, posterior.future))
        for s in range(n_samples):
            if hidden is None:
                z = sg.relax.EatCubic(q_rate, temperature=TEMPERATURE, validate_args=False).rsample()
            else:
                z = hidden[s, i]
            y = torch.cat([x, z], dim=-1)
            rate = network.link(
                network.bias + torch.einsum("tmb,nmb->tn", _lagged(y, phi, 1), network.weight)
            )
            total = total + poisson_log_pmf(y, rate).sum() - poisson_log_pmf(z, q_rate).sum()
    return total / (visible.shape[0] * n_samples)


class _Drawn:
    """A law whose draw is the given hidden counts, so that ``log_weights`` sees the loop's samples."""

    has_rsample = True

    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden

    def rsample(self, sample_shape: tuple = ()) -> torch.Tensor:
        return self.hidden


@torch.no_grad()
def check_elbos_agree(network: Network, posterior: Posterior, visible: torch.Tensor) -> dict:
    """Both ELBOs with the same parameters on the same hidden samples; RuntimeError beyond ``ELBO_RTOL``."""
    law = functools.partial(sg.relax.EatCubic, temperature=TEMPERATURE, validate_args=False)
    hidden, _ = posterior.sample(visible, SAMPLES, law)
    log_w, _ = log_weights(network, posterior, visible, SAMPLES, lambda rate: _Drawn(hidden))
    vectorised = float(log_w.mean())
    loop = float(loop_elbo(network, posterior, visible, SAMPLES, hidden=hidden))
    difference = abs(loop - vectorised) / abs(vectorised)
    print(f"check: ELBO vectorised {vectorised:.6f}, loop {loop:.6f}, relative difference {difference:.1e}")
    if not difference <= ELBO_RTOL:  # written so that NaN fails too
        raise RuntimeError(
            f"the loop and vectorised ELBOs disagree on the same samples: {loop} against {vectorised} "
            f"(relative difference {difference:.2e} > {ELBO_RTOL:g}); nothing was timed"
        )
    return {"elbo_vectorised": vectorised, "elbo_loop": loop, "relative_difference": difference}


def throughput(repeats: int) -> dict:
    """Check, then time one epoch of both objectives ``repeats`` times; print and return the figures."""
    torch.manual_seed(0)
    truth, train, _ = sg.synthetic.network(protocol="diffpoglm", seed=0)
    visible = train.to_tensor()
    model = sg.POGLM.from_connectivity(truth)
    network = model.network_
    posterior = Posterior("forward-backward", 3, 2, network.basis_matrix, "sigmoid")
    # Random couplings, so that the check sees the posterior's past and future terms; the rates stay
    # near 0.5, those of an untrained posterior, so that sampling costs the same.
    posterior.init_rates(0.5, 0.1, torch.Generator().manual_seed(0))
    check = check_elbos_agree(network, posterior, visible)
    params = list(network.parameters()) + list(posterior.parameters())
    optimizer = torch.optim.Adam(params, lr=0.01)
    law = functools.partial(sg.relax.EatCubic, temperature=TEMPERATURE, validate_args=False)

    def vectorised():
        log_w, _ = log_weights(network, posterior, visible, SAMPLES, law)
        optimizer.zero_grad()
        (-log_w.mean()).backward()
        optimizer.step()

    def loop():
        optimizer.zero_grad()
        (-loop_elbo(network, posterior, visible, SAMPLES)).backward()
        optimizer.step()

    neuron_bins = visible.shape[0] * visible.shape[1] * (network.n_neurons)
    times = {"vectorised": [], "loop": []}
    for _ in range(repeats):
        for name, fn in (("vectorised", vectorised), ("loop", loop)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    rate = {name: SAMPLES * neuron_bins / seconds for name, seconds in median.items()}
    print(
        f"\nOne epoch on the diffpoglm protocol "
        f"({visible.shape[0]} trials x {visible.shape[1]} bins, {SAMPLES} samples)"
    )
    for name in ("vectorised", "loop"):
        label = f"{name}:"
        print(f"  {label:<11} {median[name] * 1e3:9.1f} ms  {rate[name]:12,.0f} neuron-bins/s")
    print(f"  speed-up:   {median['loop'] / median['vectorised']:9.1f}x")
    return {
        "check": {**check, "tolerance": ELBO_RTOL},
        "data": {"trials": visible.shape[0], "bins": visible.shape[1], "neurons": network.n_neurons},
        "epoch_seconds": times,
        "median_epoch_seconds": median,
        "neuron_bins_per_second": rate,
        "speedup": median["loop"] / median["vectorised"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument(
        "--datasets", type=int, help=f"default {FULL['datasets']}, {QUICK['datasets']} with --quick"
    )
    q.add_argument("--epochs", type=int, help=f"default {FULL['epochs']}, {QUICK['epochs']} with --quick")
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS))
    q.add_argument(
        "--temperatures",
        nargs="+",
        type=float,
        help=f"default {' '.join(map(str, FULL['temperatures']))}, "
        f"{' '.join(map(str, QUICK['temperatures']))} with --quick",
    )
    q.add_argument("--quick", action="store_true", help="a smoke run: few datasets, epochs and temperatures")
    _results.add_option(q, "poglm-quality")
    t = sub.add_parser("throughput")
    t.add_argument("--repeats", type=int, default=3)
    _results.add_option(t, "poglm-throughput")
    args = parser.parse_args()
    if args.what == "quality":
        defaults = QUICK if args.quick else FULL
        settings = {key: defaults[key] if getattr(args, key) is None else getattr(args, key) for key in FULL}
        settings.update(workers=args.workers, relaxations=args.relaxations)
        path = _results.output(args.json, "poglm-quality", args.quick)
        _results.write(path, "poglm quality", {**settings, "quick": args.quick}, quality(**settings))
    else:
        path = _results.output(args.json, "poglm-throughput")
        figures = throughput(args.repeats)
        _results.write(path, "poglm throughput", {"repeats": args.repeats, "samples": SAMPLES}, figures)


if __name__ == "__main__":
    main()
