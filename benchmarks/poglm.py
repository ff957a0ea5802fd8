"""The published POGLM benchmark, and training throughput against a per-sequence loop implementation.

Quality (``quality``): the "diffpoglm" synthetic protocol (3 visible + 2 hidden neurons, W ~ U(-2, 2),
b ~ U(-0.5, 0.5), sigmoid link, exponential basis L = 5, 100-bin trials, 40 train / 20 test trials;
dataset k has seed k). For every dataset, relaxation and temperature a POGLM is fit with the library's
defaults (sigmoid link to match the protocol) and reported are
  * the test log-likelihood per visible neuron-bin (importance sampling, exact Poisson p and q),
  * beside it the oracle: the same estimator with the true network (only q fit), the ceiling,
  * the weight MAE after matching the hidden neurons (all weights, and the visible block),
  * the fit time.
Fits run in parallel worker processes, one torch thread each.

Throughput (``throughput``): one training epoch of the shipped, vectorised objective against a
straightforward implementation of the same model and ELBO that loops over sequences, samples and lags
in Python (vectorised over bins), on the same data, side by side in one run; neuron-bins per second.

Usage:
  python benchmarks/poglm.py quality [--datasets 10] [--epochs 500] [--workers 2] [--quick]
  python benchmarks/poglm.py throughput [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import product

import torch

import spikeglm as sg
from spikeglm.model import Network, poisson_log_pmf
from spikeglm.variational import Posterior

RELAXATIONS = ("eat-cubic", "eat-sigmoid", "gumbel-softmax")
TEMPERATURES = (0.1, 0.2, 0.5, 1.0)
SCORE_SAMPLES = 1000


# ---------------------------------------------------------------------------------------------- quality
def _fit_one(job: tuple) -> dict:
    dataset, relaxation, temperature, epochs = job
    torch.set_num_threads(1)
    truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=dataset)
    start = time.perf_counter()
    if relaxation == "oracle":
        model = sg.POGLM.from_connectivity(truth).fit(train, epochs=epochs, seed=0, freeze_network=True)
    else:
        model = sg.POGLM(n_hidden=truth.n_hidden, link="sigmoid").fit(
            train, relaxation=relaxation, temperature=temperature, epochs=epochs, seed=0
        )
    seconds = time.perf_counter() - start
    scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
    return {
        "dataset": dataset,
        "relaxation": relaxation,
        "temperature": temperature,
        "test_ll": model.score(test, n_samples=SCORE_SAMPLES),
        "mae": scores["mae"],
        "mae_visible": scores["mae_visible"],
        "seconds": seconds,
    }


def quality(datasets: int, epochs: int, workers: int, relaxations, temperatures) -> None:
    jobs = [(d, "oracle", None, epochs) for d in range(datasets)]
    jobs += [(d, r, t, epochs) for d, r, t in product(range(datasets), relaxations, temperatures)]
    jobs += [(d, "exact", None, epochs) for d in range(datasets)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_fit_one, jobs))
    print(
        f"\ndiffpoglm protocol, {datasets} datasets, {epochs} epochs, test LL per neuron-bin "
        f"({SCORE_SAMPLES} importance samples); mean ± sd over datasets"
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
        if temperature is not None:
            by_relaxation.setdefault(relaxation, []).append(statistics.mean(ll))
    print("\nSpread of the mean test LL across temperatures, (max - min) / |mean|:")
    for relaxation, means in by_relaxation.items():
        spread = (max(means) - min(means)) / abs(statistics.mean(means))
        print(f"  {relaxation:<15} {100 * spread:.2f}%")


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


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


def loop_elbo(network: Network, posterior: Posterior, visible: torch.Tensor, n_samples: int) -> torch.Tensor:
    """The forward-backward ELBO of ``spikeglm.fit`` written sequence by sequence and lag by lag."""
    phi = network.basis_matrix
    total = visible.new_zeros(())
    for x in visible:  # one sequence, (bins, V)
        past, future = _lagged(x, phi, 1), _lagged(x, phi, -1)
        q_pre = posterior.bias + torch.einsum("tvb,hvb->th", past, posterior.past)
        q_rate = network.link(q_pre + torch.einsum("tvb,hvb->th", future, posterior.future))
        for _ in range(n_samples):
            z = sg.relax.EatCubic(q_rate, temperature=0.5, validate_args=False).rsample()
            y = torch.cat([x, z], dim=-1)
            rate = network.link(
                network.bias + torch.einsum("tmb,nmb->tn", _lagged(y, phi, 1), network.weight)
            )
            total = total + poisson_log_pmf(y, rate).sum() - poisson_log_pmf(z, q_rate).sum()
    return total / (visible.shape[0] * n_samples)


def throughput(repeats: int) -> None:
    from spikeglm.variational import log_weights

    torch.manual_seed(0)
    truth, train, _ = sg.synthetic.network(protocol="diffpoglm", seed=0)
    visible = train.to_tensor()
    model = sg.POGLM.from_connectivity(truth)
    network = model.network_
    posterior = Posterior("forward-backward", 3, 2, network.basis_matrix, "sigmoid")
    params = list(network.parameters()) + list(posterior.parameters())
    optimizer = torch.optim.Adam(params, lr=0.01)

    def vectorised():
        log_w, _ = log_weights(network, posterior, visible, 5, "eat-cubic", 0.5)
        optimizer.zero_grad()
        (-log_w.mean()).backward()
        optimizer.step()

    def loop():
        optimizer.zero_grad()
        (-loop_elbo(network, posterior, visible, 5)).backward()
        optimizer.step()

    neuron_bins = visible.shape[0] * visible.shape[1] * (network.n_neurons)
    times = {"vectorised": [], "loop": []}
    for _ in range(repeats):
        for name, fn in (("vectorised", vectorised), ("loop", loop)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    vec, lp = (statistics.median(times[k]) for k in ("vectorised", "loop"))
    print(
        f"\nOne epoch on the diffpoglm protocol "
        f"({visible.shape[0]} trials x {visible.shape[1]} bins, 5 samples)"
    )
    print(f"  vectorised: {vec * 1e3:9.1f} ms  {5 * neuron_bins / vec:12,.0f} neuron-bins/s")
    print(f"  loop:       {lp * 1e3:9.1f} ms  {5 * neuron_bins / lp:12,.0f} neuron-bins/s")
    print(f"  speed-up:   {lp / vec:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--datasets", type=int, default=10)
    q.add_argument("--epochs", type=int, default=500)
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS))
    q.add_argument("--temperatures", nargs="+", type=float, default=list(TEMPERATURES))
    t = sub.add_parser("throughput")
    t.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "quality":
        quality(args.datasets, args.epochs, args.workers, args.relaxations, args.temperatures)
    else:
        throughput(args.repeats)


if __name__ == "__main__":
    main()
