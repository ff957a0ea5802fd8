"""Epoch time and peak memory of POGLM training against recording length, neuron count and processes.

Each configuration runs in a fresh process (so its peak resident memory, ru_maxrss, is its own): one
continuous random recording of N visible neurons (5 ms bins, about 10 spikes/s) is fitted for a few
epochs, cut into segments of 1,000 bins with context, ``--batch-size`` segments per step. The median
epoch time after the first is reported with the throughput in neuron-bins per second
((visible + hidden neurons) x bins x samples per second).

Three sweeps: recording length (10^4 to 10^6 bins, 10 neurons), neuron count (10 to 300, 10^5 bins),
and 1 process against 2 processes launched by torchrun (gloo), 100 neurons, 10^5 bins. Each of the 2
processes uses one thread; the single process runs once with one thread and once with torch's default
(all cores), so the ratios show both the parallel efficiency and the gain on this machine.

With ``--fits`` it measures instead fits of simulated ground truth: for each size, a ``"balanced"``
network (``spikeglm.synthetic``, seed 0, 2 hidden neurons, rates 2-10 Hz) simulated for
``--fit-duration`` of training trials (10 s each), fitted by a GLM (``n_hidden=0``, L-BFGS to
convergence, then the couplings' standard errors) and by a POGLM with 2 hidden neurons (the default fit,
at most ``--fit-epochs`` epochs), each in a fresh process with one thread: CPU time of the fit, peak
memory, and the AUROC of the visible couplings against the truth. Where a GPU is present the same fits
run on it too (wall time).

A configuration whose training objective is not finite in every epoch stops the benchmark (with the
measuring process's error). The figures are written as JSON beside the printed tables (``--json PATH``,
default results/benchmarks/scaling.json, scaling-quick.json with --quick).

Usage: python benchmarks/scaling.py [--bins 10000 100000 1000000] [--neurons 10 100 300] [--quick]
         [--json PATH]
       python benchmarks/scaling.py --fits [--fit-sizes 30 100 300 1000] [--fit-duration 1h ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import _results

SAMPLES = 5


def measure(n_bins: int, n_visible: int, n_hidden: int, batch_size: int, part_bins: int, epochs: int) -> dict:
    import numpy as np
    import torch

    import spikeglm as sg

    rng = np.random.default_rng(0)
    array = np.empty((1, n_bins, n_visible), dtype=np.uint8)
    for first in range(0, n_bins, 10_000):  # drawn in blocks: no int64 copy of the whole recording
        block = array[:, first : first + 10_000]
        block[...] = rng.poisson(0.05, size=block.shape)
    counts = sg.SpikeCounts.from_array(array, bin_size="5 ms")
    records: list[sg.records.EpochRecord] = []
    with sg.parallel.distributed("cpu"):
        model = sg.POGLM(
            n_hidden=n_hidden, epochs=epochs, batch_size=batch_size, part_bins=part_bins, n_samples=SAMPLES
        )
        model.fit(counts, device="cpu", callback=records.append)
        objectives = [record.objective for record in records]
        if not all(math.isfinite(objective) for objective in objectives):
            raise RuntimeError(f"the training objective is not finite in every epoch: {objectives}")
        rank, world = sg.parallel.rank(), sg.parallel.world_size()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peaks = [peak] * world
        if world > 1:
            torch.distributed.all_gather_object(peaks, peak)
    seconds = [record.seconds for record in records]
    epoch = statistics.median(seconds[1:] or seconds)
    return {
        "rank": rank,
        "processes": world,
        "bins": n_bins,
        "neurons": n_visible,
        "epoch_s": epoch,
        "neuron_bins_per_s": n_bins * (n_visible + n_hidden) * SAMPLES / epoch,
        "peak_mib": max(peaks),  # of any process
        "threads": torch.get_num_threads(),
    }


def measure_fit(n_visible: int, n_hidden: int, duration: str, epochs: int, device: str) -> dict:
    """Fit a balanced network's simulated training trials of ``duration``; time, memory and AUROC."""
    import torch

    import spikeglm as sg

    n_train = sg.synthetic.trials_in(duration, 2000)
    sim = sg.synthetic.network("balanced", seed=0, n_visible=n_visible, n_train=n_train, n_test=1)
    cpu, wall = time.process_time(), time.perf_counter()
    capped = {"epochs": epochs} if n_hidden else {}  # the GLM runs L-BFGS to convergence
    model = sg.POGLM(n_hidden=n_hidden, seed=0, **capped).fit(sim.train, device=device)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    scores = sg.evaluate.connectivity_scores(sim.truth, model.connectivity())
    return {
        "rank": 0,
        "neurons": n_visible,
        "hidden": n_hidden,
        "duration": duration,
        "device": device,
        "cpu_s": cpu,
        "wall_s": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
        "auroc_visible": scores["auroc_visible"],
        "stopped": model.stopped_,
        "threads": torch.get_num_threads(),
    }


def run(processes: int = 1, threads: int | None = None, **config) -> dict:
    """``measure(**config)`` in fresh interpreters (torchrun for several), so peak memory is their own.

    Several processes use one thread each; one process uses ``threads`` (default: torch's choice).
    """
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*launch, __file__, "--measure", json.dumps(config)]
    threads = 1 if processes > 1 else threads
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # its traceback, which CalledProcessError would not show
        raise RuntimeError(f"measuring {config} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(rows: list[dict]) -> None:
    header = f"{'bins':>9} {'neurons':>7} {'procs':>5} {'threads':>7} | {'epoch s':>8} {'neuron-bins/s':>14}"
    print(f"{header} {'peak MiB/proc':>13}")
    for r in rows:
        print(
            f"{r['bins']:>9,} {r['neurons']:>7} {r['processes']:>5} {r['threads']:>7} | {r['epoch_s']:>8.2f} "
            f"{r['neuron_bins_per_s']:>14,.0f} {r['peak_mib']:>13.0f}"
        )


def compare(large: dict, small: dict, label: str) -> dict:
    """Print and return the ratios of epoch time and peak memory of two measurements."""
    time_ratio = large["epoch_s"] / small["epoch_s"]
    memory_ratio = large["peak_mib"] / small["peak_mib"]
    print(f"{label}: epoch time x{time_ratio:.2f}, peak memory per process x{memory_ratio:.2f}")
    return {"label": label, "epoch_time": time_ratio, "peak_memory": memory_ratio}


def fits(args: argparse.Namespace) -> None:
    """The table of fits of ground truth: GLM and 2 hidden neurons, CPU (and GPU where there is one)."""
    import torch

    path = _results.output(args.json, "scaling-fits", args.quick)
    durations = args.fit_duration * len(args.fit_sizes) if len(args.fit_duration) == 1 else args.fit_duration
    if len(durations) != len(args.fit_sizes):
        raise SystemExit("--fit-duration: give one duration, or one per size")
    devices = args.fit_devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    header = f"{'neurons':>7} {'training':>8} {'hidden':>6} {'device':>6} | {'CPU s':>8} {'wall s':>8}"
    print(f"{header} {'peak MiB':>8} AUROC")
    for size, duration in zip(args.fit_sizes, durations, strict=True):
        for n_hidden in args.fit_hidden:
            for device in devices:
                fit = {"n_visible": size, "n_hidden": n_hidden, "duration": duration, "device": device}
                # The CPU's fits use one thread; a CUDA fit's host (its simulation) takes torch's threads.
                threads = 1 if device == "cpu" else None
                rows.append(run(threads=threads, fit={**fit, "epochs": args.fit_epochs}))
                r = rows[-1]
                times = f"{r['cpu_s']:>8.1f} {r['wall_s']:>8.1f} {r['peak_mib']:>8.0f}"
                gpu = "" if r["gpu_peak_mib"] is None else f"  (GPU memory {r['gpu_peak_mib']:.0f} MiB)"
                auroc = f"{r['auroc_visible']:.3f}"
                print(f"{size:>7} {duration:>8} {n_hidden:>6} {device:>6} | {times} {auroc}{gpu}", flush=True)
            if devices == ["cpu", "cuda"]:
                cpu, cuda = rows[-2], rows[-1]
                print(f"{'':>31} CUDA takes {cuda['wall_s'] / cpu['wall_s']:.3f} of the CPU's wall time")
    settings = {
        "sizes": args.fit_sizes,
        "durations": durations,
        "epochs": args.fit_epochs,
        "devices": devices,
        "hidden": args.fit_hidden,
    }
    _results.write(path, "scaling of ground-truth fits", settings, {"fits": rows})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bins", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--neurons", type=int, nargs="+", default=[10, 30, 100, 300])
    parser.add_argument("--hidden", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="segments per step")
    parser.add_argument("--part-bins", type=int, default=2**14, help="bins computed at once")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--fits", action="store_true", help="fits of simulated ground truth instead")
    parser.add_argument("--fit-sizes", type=int, nargs="+", default=[30, 100, 300, 1000])
    parser.add_argument(
        "--fit-duration", nargs="+", default=["1h"], help="training time per size (one for all, or one each)"
    )
    parser.add_argument(
        "--fit-epochs", type=int, default=20, help="most epochs of the fits with hidden neurons"
    )
    parser.add_argument(
        "--fit-hidden", type=int, nargs="+", default=[0, 2], help="hidden neurons of the fits"
    )
    parser.add_argument(
        "--fit-devices",
        nargs="+",
        choices=["cpu", "cuda"],
        help="devices of the fits (default: cpu, and cuda where present)",
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one configuration, as JSON (internal)
    _results.add_option(parser, "scaling")
    args = parser.parse_args()
    if args.measure:
        config = json.loads(args.measure)
        result = measure_fit(**config["fit"]) if "fit" in config else measure(**config)
        if result["rank"] == 0:
            print(json.dumps(result), flush=True)
        return
    if args.fits:
        fits(args)
        return
    path = _results.output(args.json, "scaling", args.quick)
    bins = [2_000, 20_000] if args.quick else args.bins
    neurons = [10, 30] if args.quick else args.neurons
    middle = bins[len(bins) // 2]
    common = dict(
        n_hidden=args.hidden, batch_size=args.batch_size, part_bins=args.part_bins, epochs=args.epochs
    )
    figures: dict = {"ratios": []}

    print("recording length")
    figures["length"] = [run(n_bins=n, n_visible=neurons[0], **common) for n in bins]
    show(figures["length"])
    for small, large in itertools.pairwise(figures["length"]):
        figures["ratios"].append(compare(large, small, f"{large['bins']:,} / {small['bins']:,} bins"))

    print(f"\nneurons ({middle:,} bins)")
    figures["neurons"] = [run(n_bins=middle, n_visible=n, **common) for n in neurons]
    show(figures["neurons"])

    size = neurons[len(neurons) // 2]
    print(f"\nprocesses ({middle:,} bins, {size} neurons)")
    single = run(1, threads=1, n_bins=middle, n_visible=size, **common)
    one, two = (run(k, n_bins=middle, n_visible=size, **common) for k in (1, 2))
    figures["processes"] = [single, one, two]
    show(figures["processes"])
    figures["ratios"].append(compare(two, single, "2 processes / 1 process, one thread each"))
    figures["ratios"].append(
        compare(two, one, f"2 processes of 1 thread / 1 process of {one['threads']} threads")
    )
    settings = {"bins": bins, "neurons": neurons, "samples": SAMPLES, "quick": args.quick, **common}
    _results.write(path, "scaling", settings, figures)


if __name__ == "__main__":
    main()
