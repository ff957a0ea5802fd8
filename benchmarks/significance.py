"""Which couplings are real: calibration, false discoveries and power of the Wald tests of a GLM fit.

- Calibration: 20 recordings of 8 neurons with self-history and no coupling between them (40 trials of
  500 bins of 5 ms at 20 Hz): the share of pairs with p < 0.05, which should be near 0.05.
- False discoveries: ``sparse-ei`` networks whose hidden neurons do not drive the visible ones
  (``hidden_drive=0``: the GLM is then the right model), seeds 0-4:
  the false discovery proportion of the couplings with q < 0.05, which should average at most 0.05, and
  the share of true couplings found.
- Power: ``sparse-ei`` with its 3 hidden neurons (common input the GLM does not see), at several
  recording lengths: true-positive rate and false discovery proportion at q < 0.05.
- The public spycon recording (20 of 300 LIF neurons, 1 hour, 18 true edges), when ../shared/data is
  there: detected edges, precision and MCC at q < 0.05, and the AUROC of |z|.
- The jitter tests (``method="jitter"``, default settings: 99 jittered copies, intervals reaching one
  history window, normal p-values) on the calibration case (10 recordings) and on
  spycon (also with intervals of 2 bins either side): the same figures, and their CPU time against
  that of the fit.

Run: ``python benchmarks/significance.py`` (about 12 minutes on 2 cores), ``--quick`` for fewer cases
(no spycon, no jitter tests on it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _results
import numpy as np
import torch

import spikeglm as sg
from spikeglm.model import Network

SPYCON = Path(__file__).resolve().parents[2] / "shared" / "data" / "spycon-ren-sim-20of300"


def tested(model: sg.POGLM, alpha: float = 0.05, **options) -> np.ndarray:
    table = model.connectivity().significance(alpha, **options)
    return table[~table["self"]]


def truth_at(pairs: np.ndarray, strength: np.ndarray, labels: list[str]) -> np.ndarray:
    index = {label: k for k, label in enumerate(labels)}
    return np.array(
        [
            strength[index[post], index[pre]] != 0
            for pre, post in zip(pairs["pre"], pairs["post"], strict=True)
        ]
    )


def calibration(recordings: int, method: str = "wald") -> dict:
    network = Network(8, 0, sg.basis.get("exponential"), link="softplus")
    with torch.no_grad():
        network.bias.fill_(float(np.log(np.expm1(0.1))))
        network.weight[range(8), range(8), 0] = -1.5
    shares, seconds = [], []
    for seed in range(recordings):
        simulated = network.simulate(40, 500, generator=torch.Generator().manual_seed(seed)).numpy()
        counts = sg.SpikeCounts.from_array(simulated, bin_size="5 ms")
        start = time.process_time()
        model = sg.POGLM(n_hidden=0).fit(counts)
        fit_s = time.process_time() - start
        options = {} if method == "wald" else {"method": method, "counts": counts, "seed": seed}
        start = time.process_time()
        shares.append(float(np.mean(tested(model, **options)["p"] < 0.05)))
        seconds.append((fit_s, time.process_time() - start))
    row = {"test": method, "recordings": recordings, "share_p_below_0.05": float(np.mean(shares))}
    row["fit_cpu_s"], row["test_cpu_s"] = map(float, np.mean(seconds, axis=0))
    print(
        f"calibration ({method}), {recordings} uncoupled recordings: share of p < 0.05 = "
        f"{row['share_p_below_0.05']:.3f} (fit {row['fit_cpu_s']:.1f} s CPU, "
        f"tests {row['test_cpu_s']:.1f} s)",
        flush=True,
    )
    return row


def detection(name: str, seeds: range, **options) -> dict:
    fdp, tpr, seconds = [], [], []
    for seed in seeds:
        truth, train, _ = sg.synthetic.network(protocol="sparse-ei", seed=seed, **options)
        start = time.process_time()
        model = sg.POGLM(n_hidden=0).fit(train)
        fit_s = time.process_time() - start
        start = time.process_time()
        pairs = tested(model)
        seconds.append((fit_s, time.process_time() - start))
        visible = truth.visible_block()
        real = truth_at(pairs, visible.strength, visible.labels)
        found = pairs["significant"]
        fdp.append(float((found & ~real).sum() / max(1, found.sum())))
        tpr.append(float((found & real).sum() / max(1, real.sum())))
    row = {"case": name, "fdp": float(np.mean(fdp)), "tpr": float(np.mean(tpr))}
    row["fit_cpu_s"], row["test_cpu_s"] = map(float, np.mean(seconds, axis=0))
    print(
        f"{name:<44} FDP {row['fdp']:.3f}  TPR {row['tpr']:.3f}  "
        f"(fit with standard errors {row['fit_cpu_s']:.1f} s CPU, tests {row['test_cpu_s']:.3f} s)",
        flush=True,
    )
    return row


def spycon(tests: dict[str, dict]) -> list[dict]:
    data = np.load(SPYCON / "ren_simulation_1917_Cell1Block1_long_340_20_ei5_example.npz")
    truth = np.load(SPYCON / "truth_ren_example.npz")
    times, ids = data["times"], data["ids"]
    spikes = {str(i): np.sort(times[ids == i]) for i in range(20)}
    counts = sg.Recording.from_spike_times(spikes, t_start=0, t_stop=3600).bin("5 ms")
    start = time.process_time()
    model = sg.POGLM(n_hidden=0).fit(counts)
    fit_s = time.process_time() - start
    rows = []
    for name, options in tests.items():
        start = time.process_time()
        pairs = tested(model, **options, **({"counts": counts} if options else {}))
        test_s = time.process_time() - start
        post, pre = pairs["post"].astype(int), pairs["pre"].astype(int)
        known = truth["known"][post, pre]
        real = (truth["weights"][post, pre] != 0)[known]
        found = pairs["significant"][known]
        row = {
            "test": name,
            "detected": int(found.sum()),
            "true_edges": int(real.sum()),
            "precision": float((found & real).sum() / max(1, found.sum())),
            "mcc": sg.evaluate.matthews_corrcoef(real, found),
            "auroc_abs_z": sg.evaluate.auroc(real, np.abs(pairs["z"][known])),
            "fit_cpu_s": fit_s,
            "test_cpu_s": test_s,
        }
        print(
            f"spycon 20 of 300, 1 h, {name}: {row['detected']} edges at q < 0.05 for "
            f"{row['true_edges']} true, precision {row['precision']:.3f}, MCC {row['mcc']:.3f}; AUROC of |z| "
            f"{row['auroc_abs_z']:.4f} (fit {fit_s:.0f} s CPU, tests {test_s:.0f} s)",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer recordings, no spycon")
    _results.add_option(parser, "significance")
    args = parser.parse_args()
    path = _results.output(args.json, "significance", args.quick)
    torch.set_num_threads(1)
    figures = {"calibration": calibration(5 if args.quick else 20)}
    figures["calibration jitter"] = calibration(2 if args.quick else 10, "jitter")
    seeds = range(2 if args.quick else 5)
    figures["no hidden"] = detection(
        "sparse-ei, hidden neurons not driving, 40 trials", seeds, hidden_drive=0
    )
    figures["power"] = [
        detection(f"sparse-ei with 3 hidden neurons, {trials} trials", seeds, n_train=trials)
        for trials in ((10, 40) if args.quick else (10, 20, 40))
    ]
    if SPYCON.exists() and not args.quick:
        jitter = {"method": "jitter"}
        figures["spycon"] = spycon(
            {"wald": {}, "jitter": jitter, "jitter, half-width 2 bins": {**jitter, "jitter": 2}}
        )
    elif not SPYCON.exists():
        print(f"(skipped the spycon recording: {SPYCON} is not there)")
    _results.write(path, "significance", {"alpha": 0.05, "tests": ["wald", "jitter"]}, figures)


if __name__ == "__main__":
    main()
