"""Slow shared drive: do latent factors keep an input that every neuron shares out of the couplings?

Side by side in one run, on the same data, three models:

- ``GLM``: ``POGLM(n_hidden=0)``, the couplings alone (what the toolkit gave before, and what any GLM gives);
- ``K=1``: ``POGLM(n_hidden=0, n_latent=1)``, one slow latent factor beside the couplings;
- ``truth``: the simulating network itself (its held-out likelihood is the ceiling).

Simulated cases (``sg.synthetic.network("balanced", n_hidden=0, shared_drive=...)``): a network of
``--visible`` neurons (default 20; target rates 2-10 Hz) with a strong AR(1) shared drive of time
constant 0.5 s, and the same network without the drive, ``--duration`` long at 5 ms (default one hour, cut
into 10 s trials, a fifth of them held out). For each model:

- coupling AUROC over the visible pairs (``sg.evaluate.connectivity_scores``, true edges against
  ``|strength|``), and the Wald tests at q < 0.05: pairs called, the share of them positive, MCC against
  the true edges;
- held-out log-likelihood per neuron-bin (particle filter, exact for the GLM) with its Monte Carlo
  error, and for K=1 the share of the true model's gain over the GLM it reaches;
- correlation of the inferred path (``infer_latent``) with the true one on the held-out trials, beside
  that of the true network's own posterior (the ceiling: what the spikes say about the path);
- CPU time of the fit (one thread) and the ratio to the GLM's.

Without the drive, the choice between GLM and K=1 is made as cross-validation would make it: the held-out
difference against its paired standard error over the held-out trials (K=1 is kept only if it gains more
than one SE).

``--rat``: the public rat hippocampus recording (``../shared/data``, 16 units, 1,000 s), cut into 10 s
trials, a fifth held out: held-out likelihood with K=1 against the GLM (paired SE), the number and sign
of the significant couplings before and after, and a figure of the latent path beside the population rate
(``results/benchmarks/shared_drive_rat.png``).

Each K=1 fit's time constant is printed beside the drive's, measured on the true path (its lag-1
autocorrelation): ``--drive-tau`` sets the drive's (default 0.5 s).

Run: ``python benchmarks/shared_drive.py`` (one hour simulated: about 15 minutes of CPU);
``--quick``: 10 minutes simulated.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import _results
import numpy as np
import torch

import spikeglm as sg
from spikeglm.latent import MarkovGaussian
from spikeglm.variational import laplace_latent

#: Where the public recordings lie (absent from a user's clone).
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
#: Particles of the held-out scores.
PARTICLES = 256


def significant(conn: sg.Connectivity, n_visible: int, alpha: float = 0.05) -> np.ndarray:
    """The Wald tests' calls over the visible pairs, as a (post, pre) matrix of -1, 0, +1."""
    labels = conn.labels
    calls = np.zeros((n_visible, n_visible), dtype=int)
    for row in conn.significance(alpha=alpha):
        post, pre = labels.index(row["post"]), labels.index(row["pre"])
        if post < n_visible and pre < n_visible and row["significant"] and not row["self"]:
            calls[post, pre] = int(np.sign(row["strength"]))
    return calls


def mcc(truth: np.ndarray, called: np.ndarray) -> float:
    """Matthews correlation of two boolean arrays (0 where a class is empty)."""
    tp, tn = float(np.sum(truth & called)), float(np.sum(~truth & ~called))
    fp, fn = float(np.sum(~truth & called)), float(np.sum(truth & ~called))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator > 0 else 0.0


def fitted(model: sg.POGLM, train: sg.SpikeCounts) -> tuple[sg.POGLM, float]:
    start = time.process_time()
    model.fit(train)
    return model, time.process_time() - start


def scores(model: sg.POGLM, sim: sg.synthetic.Simulation, cpu: float) -> dict:
    """The figures of one fitted model on one simulated case."""
    n_visible = sim.train.n_units
    conn = model.connectivity()
    row: dict = {"cpu_s": cpu, "stopped": model.stopped_}
    row["auroc"] = sg.evaluate.connectivity_scores(sim.truth, conn)["auroc_visible"]
    calls = significant(conn, n_visible)
    edges = sim.truth.strength[:n_visible, :n_visible] != 0
    off = ~np.eye(n_visible, dtype=bool)
    row["called"] = int(np.sum(calls[off] != 0))
    row["positive"] = int(np.sum(calls[off] > 0))
    row["mcc"] = mcc(edges[off], calls[off] != 0)
    estimate = model.log_likelihood(sim.test, n_particles=PARTICLES)
    row |= {"heldout": estimate.per_bin, "heldout_se": estimate.se, "per_trial": estimate.per_trial.tolist()}
    if model.n_latent:
        row["tau_bins"] = float(model.network_.latent_prior.tau.detach()[0])
    if model.n_latent and sim.latent_test is not None:
        mean, _ = model.infer_latent(sim.test)
        row["path_r"] = abs(float(np.corrcoef(mean[..., 0].ravel(), sim.latent_test[..., 0].ravel())[0, 1]))
    return row


def truth_score(sim: sg.synthetic.Simulation) -> dict:
    """The held-out likelihood of the simulating network itself (its own proposal: no fit), and how well
    its own posterior recovers the path: the ceiling of what the spikes say about it."""
    model = sg.POGLM.from_connectivity(sim.truth)
    model.bin_size_ = str(sim.train.bin_size)
    estimate = model.log_likelihood(sim.test, n_particles=PARTICLES)
    row = {"heldout": estimate.per_bin, "heldout_se": estimate.se, "per_trial": estimate.per_trial.tolist()}
    if sim.latent_test is not None:
        network = model.network_
        paths = []
        for trial in range(sim.test.n_trials):
            visible = torch.from_numpy(sim.test.counts[trial].astype(np.int64))
            flat = torch.zeros(sim.test.n_bins, 1, dtype=torch.float64)
            start = MarkovGaussian(network.latent_prior, flat, flat)
            paths.append(laplace_latent(network, visible, start).mean[:, 0].numpy())
        truth = sim.latent_test[..., 0].ravel()
        row["path_r"] = abs(float(np.corrcoef(np.concatenate(paths), truth)[0, 1]))
    return row


def paired(a: dict, b: dict, size: int) -> tuple[float, float]:
    """``b - a`` per neuron-bin and its paired standard error over the held-out trials."""
    difference = np.asarray(b["per_trial"]) - np.asarray(a["per_trial"])
    n = len(difference)
    return float(difference.sum() / size), float(difference.std(ddof=1) * np.sqrt(n) / size)


def simulated(drive: float | str, args: argparse.Namespace) -> dict:
    """GLM, K=1 and the truth on one simulated case, side by side."""
    sim = sg.synthetic.network(
        "balanced",
        seed=args.seed,
        n_visible=args.visible,
        n_hidden=0,
        shared_drive=drive,
        duration=args.duration,
        drive_tau=args.drive_tau,
    )
    size = sim.test.n_trials * sim.test.n_bins * sim.test.n_units
    rows = {}
    glm, glm_cpu = fitted(sg.POGLM(n_hidden=0, seed=0), sim.train)
    rows["GLM"] = scores(glm, sim, glm_cpu)
    latent, latent_cpu = fitted(sg.POGLM(n_hidden=0, n_latent=1, seed=0), sim.train)
    rows["K=1"] = scores(latent, sim, latent_cpu)
    rows["truth"] = truth_score(sim)
    gain, se = paired(rows["GLM"], rows["K=1"], size)
    rows["K=1"] |= {"gain_over_glm": gain, "gain_se": se, "cpu_ratio": latent_cpu / glm_cpu}
    true_gain, _ = paired(rows["GLM"], rows["truth"], size)
    rows["K=1"]["share_of_true_gain"] = gain / true_gain if true_gain > 0 else float("nan")
    rows["K=1"]["chosen"] = "K=1" if gain > se else "GLM"
    path = sim.latent_train
    lagged = None if path is None else float((path[:, 1:] * path[:, :-1]).sum() / (path[:, :-1] ** 2).sum())
    drive_tau = None if lagged is None else -1.0 / math.log(lagged)  # measured on the true path
    bins = sim.train.n_trials * sim.train.n_bins
    return {"drive": drive, "bins": bins, "drive_tau_bins": drive_tau, **rows}


def show(case: dict) -> None:
    print(f"\nshared drive {case['drive']!r}, {case['bins']} training bins")
    print(
        f"{'model':<6} {'AUROC':>6} {'called':>6} {'pos.':>5} {'MCC':>6} {'held-out':>10} {'path r':>7} "
        f"{'CPU s':>7}"
    )
    for name in ("GLM", "K=1"):
        row = case[name]
        path = f"{row['path_r']:.3f}" if "path_r" in row else "-"
        print(
            f"{name:<6} {row['auroc']:>6.3f} {row['called']:>6} {row['positive']:>5} {row['mcc']:>6.3f} "
            f"{row['heldout']:>10.5f} {path:>7} {row['cpu_s']:>7.1f}"
        )
    ceiling = f"{case['truth']['path_r']:.3f}" if "path_r" in case["truth"] else "-"
    print(f"{'truth':<6} {'':>6} {'':>6} {'':>5} {'':>6} {case['truth']['heldout']:>10.5f} {ceiling:>7}")
    latent = case["K=1"]
    truth_tau = case.get("drive_tau_bins")
    told = f" (the drive's: {truth_tau:.0f})" if truth_tau else ""
    print(f"K=1's time constant: {latent['tau_bins']:.0f} bins{told}")
    print(
        f"K=1 - GLM: {latent['gain_over_glm']:+.2e} per neuron-bin (paired SE {latent['gain_se']:.1e}), "
        f"{latent['share_of_true_gain']:.0%} of the true model's gain; "
        f"CPU {latent['cpu_ratio']:.1f}x the GLM's; "
        f"a held-out choice keeps {latent['chosen']}"
    )


def rat(args: argparse.Namespace) -> dict:
    """GLM against K=1 on the rat hippocampus recording; the figure of the path."""
    import matplotlib

    matplotlib.use("Agg")
    import spikeglm.plot

    path = DATA / "rat-hippocampus-tetrode-16units" / "all_unit.mat"
    if not path.exists():
        print(f"\nrat recording: {path} is absent; skipped")
        return {}
    counts = sg.load(path).bin("5 ms", trial_length="10 s")
    train, test = counts.split(test=0.2, shuffle=False)
    size = test.n_trials * test.n_bins * test.n_units
    rows = {}
    for name, model in (("GLM", sg.POGLM(n_hidden=0)), ("K=1", sg.POGLM(n_hidden=0, n_latent=1))):
        model, cpu = fitted(model, train)
        calls = significant(model.connectivity(), counts.n_units)
        estimate = model.log_likelihood(test, n_particles=PARTICLES)
        rows[name] = {
            "cpu_s": cpu,
            "called": int(np.sum(calls != 0)),
            "positive": int(np.sum(calls > 0)),
            "heldout": estimate.per_bin,
            "per_trial": estimate.per_trial.tolist(),
        }
        if model.n_latent:
            figure = spikeglm.plot.raster(test, latent=model.infer_latent(test))
            spikeglm.plot.save_figure(figure.figure, _results.figure("shared_drive_rat.png"), overwrite=True)
            rows[name]["tau_s"] = float(model.network_.latent_prior.tau.detach()[0]) * counts.bin_seconds
    gain, se = paired(rows["GLM"], rows["K=1"], size)
    rows["K=1"] |= {"gain_over_glm": gain, "gain_se": se}
    pairs = counts.n_units * (counts.n_units - 1)
    print(
        f"\nrat hippocampus, {counts.n_units} units, {pairs} pairs; held-out {test.n_trials} trials of 10 s"
    )
    for name, row in rows.items():
        print(
            f"{name:<4} significant {row['called']:>3} ({row['positive']} positive), held-out "
            f"{row['heldout']:.5f}, {row['cpu_s']:.0f} s CPU"
        )
    print(
        f"K=1 - GLM: {gain:+.2e} per neuron-bin (paired SE {se:.1e}); factor tau {rows['K=1']['tau_s']:.2f} s"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visible", type=int, default=20, help="visible neurons (default 20)")
    parser.add_argument("--duration", default="1 h", help="simulated time (default 1 h)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network (default 0)")
    parser.add_argument("--drive-tau", default="0.5 s", help="time constant of the drive (default 0.5 s)")
    parser.add_argument("--rat", action="store_true", help="also the rat hippocampus recording")
    parser.add_argument("--quick", action="store_true", help="10 minutes simulated")
    _results.add_option(parser, "shared_drive")
    args = parser.parse_args()
    path = _results.output(args.json, "shared_drive", args.quick)
    torch.set_num_threads(1)
    if args.quick:
        args.duration = "10 min"
    cases = []
    for drive in ("strong", 0.0):
        cases.append(simulated(drive, args))
        show(cases[-1])
    figures = {"simulated": cases, "rat": rat(args) if args.rat else None}
    _results.write(path, "shared drive", vars(args) | {"json": str(path)}, figures)


if __name__ == "__main__":
    main()
