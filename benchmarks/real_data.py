"""Read time, fit time, peak memory and the summary figure of each public recording in ../shared/data.

For each recording (the settings are those of ``tests/test_real_data.py``): the wall time of
``sg.load`` and of binning; the wall and CPU time of a GLM fit (``sg.POGLM(n_hidden=0)``: Newton's
method on the exact log-likelihood until it converges or reaches its iteration cap, followed by the
couplings' standard errors), with the reason the fit stopped (``model.stopped_``) and its iteration count;
the peak resident memory (``ru_maxrss`` of ``getrusage``) of the process that read and fitted it; and
the summary figure (``sg.plot.summary`` on the counts fitted), written to
``results/benchmarks/real_data/NAME.png``. Figure time is not counted.

Each recording is measured in a fresh interpreter with one torch thread, so that its peak memory is its
own; the table shows that peak after the imports (interpreter, torch, spikeglm, matplotlib), after
reading and binning (the format's reader library included), and after the fit. ``tracemalloc`` is not
used: it sees neither torch's tensors nor the readers' C libraries (HDF5), which hold most of the memory.

Bins are 5 ms, except for the human MTL session taken whole (47 minutes, 35 units), binned at 20 ms to
keep its fit within a minute or two on one thread (its 90 encoding trials are fitted at 5 ms). The
GLMCC trains are read in GLMCC's window of 0-5400 s; the Plexon channels with fewer than 20 spikes are
left out (``min_spikes=20``); of the three Aplysia files only the largest (125 neurons) is fitted. The
spycon file's arrays are named ``times``/``ids``, not the ``spike_times``/``unit_ids`` that ``sg.load``
reads from an .npz, so it is read with numpy as ``benchmarks/significance.py`` does.

A recording whose folder is absent is skipped with a message; without ../shared/data the benchmark
says so and ends. ``--quick`` measures the two smallest fits (the mouse file's 3 units and the rat's 16:
about 15 s), ``--only NAME`` one recording or one folder's. The figures are written as JSON
(``--json PATH``, default results/benchmarks/real_data.json, real_data-quick.json with --quick).

Run: ``python benchmarks/real_data.py`` (about 8 minutes on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import _results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIGURES = _results.FOLDER / "real_data"


@dataclass(frozen=True)
class Case:
    """One recording as it is measured: where it is, how it is read and the bin size it is fitted at."""

    name: str
    folder: str
    file: str
    bin_size: str = "5 ms"
    options: dict = field(default_factory=dict)


CASES = (
    Case("mouse-phy", "mouse-phy-3units-nwb", "A8604-211122.nwb"),
    Case(
        "human-mtl-encoding",
        "human-mtl-35units-nwb",
        "sub-4_ses-4_ecephys_image.nwb",
        options={"trials": "encoding_table"},
    ),
    Case("human-mtl-whole", "human-mtl-35units-nwb", "sub-4_ses-4_ecephys_image.nwb", "20 ms"),
    Case("neo-nex", "neo-vendor-samples", "File_neuroexplorer_1.nex"),
    Case("neo-plx", "neo-vendor-samples", "File_plexon_3.plx", options={"min_spikes": 20}),
    Case("aplysia", "aplysia-pedal-ganglion-vsd", "Feb1312da06spks.mat"),
    Case("rat-hippocampus", "rat-hippocampus-tetrode-16units", "all_unit.mat"),
    Case(
        "glmcc",
        "glmcc-kobayashi-sim-20",
        "",
        options={"time_unit": "ms", "t_start": 0, "t_stop": 5400},
    ),
    Case(
        "spycon",
        "spycon-ren-sim-20of300",
        "ren_simulation_1917_Cell1Block1_long_340_20_ei5_example.npz",
    ),
)
QUICK = ("mouse-phy", "rat-hippocampus")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read(case: Case):
    """The recording of ``case``, read as ``tests/test_real_data.py`` reads it."""
    import numpy as np

    import spikeglm as sg

    path = DATA / case.folder / case.file
    if case.name != "spycon":
        return sg.load(path, **case.options)
    data = np.load(path, allow_pickle=False)
    times, ids = data["times"], data["ids"]
    spikes = {str(i): np.sort(times[ids == i]) for i in np.unique(ids)}
    return sg.Recording.from_spike_times(spikes, t_start=0, t_stop=3600)


def measure(name: str) -> dict:
    """Read, bin, fit and plot one recording (in a fresh interpreter: see :func:`run`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import spikeglm as sg
    import spikeglm.plot  # sg.plot is not imported with spikeglm (it needs matplotlib)

    torch.set_num_threads(1)
    case = next(case for case in CASES if case.name == name)
    imports_mib = _peak_mib()
    start = time.perf_counter()
    recording = read(case)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    counts = recording.bin(case.bin_size)
    bin_s = time.perf_counter() - start
    read_mib = _peak_mib()
    model = sg.POGLM(n_hidden=0, seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(counts)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    fit_mib = _peak_mib()
    figure = sg.plot.summary(model, counts)
    path = FIGURES / f"{case.name}.png"
    sg.plot.save_figure(figure, path, overwrite=True)
    plt.close(figure)
    return {
        "name": case.name,
        "file": str(Path(case.folder) / case.file),
        "options": case.options,
        "units": counts.n_units,
        "spikes": int(counts.counts.sum()),
        "trials": counts.n_trials,
        "bins_per_trial": counts.n_bins,
        "bin_size": case.bin_size,
        "read_s": read_s,
        "bin_s": bin_s,
        "fit_s": fit_s,
        "fit_cpu_s": fit_cpu_s,
        "iterations": len(model.history_),
        "stopped": model.stopped_,
        "peak_mib": {"imports": imports_mib, "read": read_mib, "fit": fit_mib},
        "figure": str(path),
        "threads": torch.get_num_threads(),
    }


def run(case: Case) -> dict:
    """``measure(case.name)`` in a fresh interpreter with one thread, so its peak memory is its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--measure", case.name]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # its traceback, which CalledProcessError would not show
        raise RuntimeError(f"measuring {case.name} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(row: dict) -> None:
    memory = row["peak_mib"]
    size = f"{row['units']} units, {row['spikes']:,} spikes, {row['trials']} x {row['bins_per_trial']:,} bins"
    print(
        f"{row['name']:<19} {size:<45} {row['bin_size']:>5} | read {row['read_s']:6.2f} s, bin "
        f"{row['bin_s']:5.2f} s | fit {row['fit_s']:6.1f} s ({row['fit_cpu_s']:6.1f} s CPU, "
        f"{row['iterations']:3d} it.) | peak {memory['imports']:.0f} / {memory['read']:.0f} / "
        f"{memory['fit']:.0f} MiB",
        flush=True,
    )
    print(f"{'':<19} {row['stopped']}; figure: {row['figure']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [case.name for case in CASES]
    folders = sorted({case.folder for case in CASES})
    parser.add_argument("--quick", action="store_true", help=f"only {' and '.join(QUICK)}")
    parser.add_argument(
        "--only",
        metavar="NAME",
        choices=names + folders,
        help=f"one recording ({', '.join(names)}) or all of one folder of ../shared/data",
    )
    parser.add_argument("--measure", metavar="NAME", choices=names, help=argparse.SUPPRESS)
    _results.add_option(parser, "real_data")
    args = parser.parse_args()
    if args.measure:  # the child process of run()
        print(json.dumps(measure(args.measure)))
        return
    if not DATA.is_dir():
        print(f"{DATA} is absent: the public recordings are not part of the project; nothing to measure")
        return
    path = _results.output(args.json, "real_data", args.quick)
    FIGURES.mkdir(parents=True, exist_ok=True)
    chosen = [c for c in CASES if not args.quick or c.name in QUICK]
    cases = [c for c in chosen if args.only in (None, c.name, c.folder)]
    print("peak memory: ru_maxrss after the imports / after reading and binning / after the fit\n")
    rows = []
    for case in cases:
        if not (DATA / case.folder).is_dir():
            print(f"{case.name:<19} skipped: {DATA / case.folder} is absent")
            continue
        rows.append(run(case))
        show(rows[-1])
    _results.write(
        path,
        "real data",
        {"model": "POGLM(n_hidden=0)", "threads": 1, "data": str(DATA), "figures": str(FIGURES)},
        {"rows": rows},
    )


if __name__ == "__main__":
    main()
