"""Epoch time and peak memory of POGLM training against recording length and neuron count.

Each configuration runs in a fresh process (so its peak resident memory, ru_maxrss, is its own): a
random recording of N visible neurons cut into 1 s trials (200 bins of 5 ms) is fitted for a few epochs
with mini-batches of ``--batch-size`` trials, and the median epoch time after the first is reported
with the throughput in neuron-bins per second (visible + hidden neurons x bins x samples).

Usage: python benchmarks/scaling.py [--bins 10000 100000 1000000] [--neurons 10 100 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

BINS_PER_TRIAL = 200


def measure(n_bins: int, n_visible: int, n_hidden: int, batch_size: int, epochs: int) -> dict:
    import numpy as np
    import torch

    import spikeglm as sg

    rng = np.random.default_rng(0)
    n_trials = max(1, n_bins // BINS_PER_TRIAL)
    counts = sg.SpikeCounts.from_array(
        rng.poisson(0.05, size=(n_trials, BINS_PER_TRIAL, n_visible)).astype(np.uint8), bin_size="5 ms"
    )
    seconds: list[float] = []
    sg.POGLM(n_hidden=n_hidden).fit(
        counts, epochs=epochs, batch_size=batch_size, seed=0, callback=lambda r: seconds.append(r.seconds)
    )
    epoch = statistics.median(seconds[1:] or seconds)
    neuron_bins = n_trials * BINS_PER_TRIAL * (n_visible + n_hidden) * 5
    return {
        "bins": n_trials * BINS_PER_TRIAL,
        "neurons": n_visible,
        "epoch_s": epoch,
        "neuron_bins_per_s": neuron_bins / epoch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def run_in_subprocess(**config) -> dict:
    """``measure(**config)`` in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--measure", json.dumps(config)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bins", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--neurons", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--hidden", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50, help="trials per step")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one configuration, as JSON (internal)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(**json.loads(args.measure))))
        return
    bins = [2_000, 20_000] if args.quick else args.bins
    neurons = [10, 30] if args.quick else args.neurons
    common = dict(n_hidden=args.hidden, batch_size=args.batch_size, epochs=args.epochs)
    print(f"{'bins':>9} {'neurons':>7} | {'epoch s':>8} {'neuron-bins/s':>14} {'peak MiB':>9}")
    rows = []
    for n_bins in bins:
        rows.append(run_in_subprocess(n_bins=n_bins, n_visible=neurons[0], **common))
    for n_visible in neurons[1:]:
        rows.append(run_in_subprocess(n_bins=bins[0], n_visible=n_visible, **common))
    for r in rows:
        print(
            f"{r['bins']:>9,} {r['neurons']:>7} | {r['epoch_s']:>8.2f} {r['neuron_bins_per_s']:>14,.0f} "
            f"{r['peak_mib']:>9.0f}"
        )
    length = rows[: len(bins)]
    print(
        f"\nlongest / shortest recording ({length[-1]['bins']:,} / {length[0]['bins']:,} bins): "
        f"epoch time x{length[-1]['epoch_s'] / length[0]['epoch_s']:.1f}, "
        f"peak memory x{length[-1]['peak_mib'] / length[0]['peak_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
