"""Known inputs: does a stimulus covariate keep the stimulus out of the couplings and the hidden neurons?

Simulated: ``sg.synthetic.network("balanced", n_hidden=0, stimulus=...)``, a network of ``--visible``
neurons (default 20; target rates 2-10 Hz) without hidden neurons, driven by a known stimulus (an AR(1)
of unit variance, time constant 20 ms) through a 100 ms causal kernel of its own per neuron,
``--duration`` long at 5 ms (default 20 minutes, in 10 s trials, a fifth held out). Side by side in one
run, on the same data:

- ``GLM``: ``POGLM(n_hidden=0)``, the couplings alone (what a fit without covariates gives);
- ``GLM + stimulus``: the same with the stimulus as a covariate (``Lags("100 ms", 4)``, the true kernel's
  basis);
- ``selected`` and ``selected + stimulus``: ``select_hidden`` over 0 and 2 hidden neurons (3 folds),
  without and with the covariate: what the hidden neurons are asked to take over;
- ``truth``: the simulating network (its held-out likelihood is the ceiling).

For each: held-out log-likelihood per neuron-bin (exact for a GLM, particle filter otherwise), coupling
AUROC over the visible pairs, Wald calls at q < 0.05 (how many, the share positive) and their MCC
against the true edges, the correlation of the fitted kernels with the true ones, and CPU time. For the
fit with hidden neurons chosen without the covariate, the correlation of its inferred hidden rates with
the stimulus's true drive on the population says what they absorbed.

``--mtl``: the public human MTL recording (``../shared/data``, 35 units, the whole 47-minute session at
20 ms, cut into 10 s trials, a fifth held out), with the onsets of its stimuli (the starts of the rows of
its three intervals tables: 90 clips, 360 images) as one event covariate, a kernel of 4 bumps over the
2 s after each onset: the held-out likelihood with it against the GLM without (paired SE over the
held-out trials), the Wald calls before and after, and the kernels drawn
(``results/benchmarks/covariates_mtl.png``).

Run: ``python benchmarks/covariates.py`` (about 15 minutes of CPU per seed); ``--quick``: one seed, 5
minutes simulated; ``--mtl`` (about 10 minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _results
import numpy as np
import torch

import spikeglm as sg

#: Where the public recordings lie (absent from a user's clone).
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
#: The human MTL session, the tables whose rows start with a stimulus (a clip or an image) and the kernel
#: of their onsets: 4 bumps over the 2 s after each.
MTL = DATA / "human-mtl-35units-nwb" / "sub-4_ses-4_ecephys_image.nwb"
MTL_TABLES = ("encoding_table", "recognition_table", "timediscrimination_table")
MTL_KERNEL = sg.covariates.Around(0.0, "2 s", 4)
#: Particles of the held-out scores of fits with hidden neurons.
PARTICLES = 256
#: The candidates and folds of ``select_hidden``.
CANDIDATES, FOLDS = (0, 2), 3


def calls(conn: sg.Connectivity, truth: sg.Connectivity) -> dict:
    """The Wald tests' calls between distinct visible neurons at q < 0.05, against the true edges."""
    table = conn.significance(alpha=0.05)
    pairs = table[~table["self"]]
    index = {label: k for k, label in enumerate(conn.labels)}
    edges = np.abs(truth.strength) > 0
    called = np.array([bool(row["significant"]) for row in pairs])
    real = np.array([edges[index[row["post"]], index[row["pre"]]] for row in pairs])
    tp, fp = float((called & real).sum()), float((called & ~real).sum())
    fn, tn = float((~called & real).sum()), float((~called & ~real).sum())
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    positive = float((pairs["sign"][called] > 0).mean()) if called.any() else float("nan")
    mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
    return {"called": int(called.sum()), "positive": positive, "mcc": mcc}


def kernel_r(model: sg.POGLM, truth: sg.Connectivity) -> float | None:
    """Correlation of the fitted stimulus kernels of the visible neurons with the true ones."""
    fitted = model.connectivity().metadata.get("covariates")
    if not fitted:
        return None
    n = model.network_.n_visible
    true = np.asarray(truth.metadata["covariates"][0]["values"])[:n]
    return float(np.corrcoef(true.ravel(), np.asarray(fitted[0]["values"])[:n].ravel())[0, 1])


def absorbed(model: sg.POGLM, sim, test_covariates: list) -> float | None:
    """For a fit with hidden neurons: the largest correlation of an inferred hidden rate with the
    stimulus's true drive summed over the visible neurons (held-out trials)."""
    if model.n_hidden == 0:
        return None
    truth = sim.truth.metadata["covariates"][0]
    weight = torch.tensor(truth["weight"], dtype=torch.float64)
    columns = sg.covariates.covariate_design(sim.covariates_test, sim.test).columns.double()
    drive = (columns @ weight.T)[..., : sim.test.n_units].sum(-1).numpy().ravel()
    rates = model.infer(sim.test, covariates=test_covariates)
    return float(max(abs(np.corrcoef(drive, rates[..., h].ravel())[0, 1]) for h in range(rates.shape[-1])))


def fit(name: str, sim, covariates: bool) -> tuple[sg.POGLM, float]:
    """One of the compared fits and its CPU time."""
    given = sim.covariates_train if covariates else None
    start = time.process_time()
    if name.startswith("selected"):
        model = sg.select_hidden(sim.train, CANDIDATES, FOLDS, n_particles=PARTICLES, covariates=given)
    else:
        model = sg.POGLM(n_hidden=0).fit(sim.train, covariates=given)
    return model, time.process_time() - start


def case(seed: int, visible: int, duration: str) -> list[dict]:
    sim = sg.synthetic.network(
        "balanced", seed=seed, n_visible=visible, n_hidden=0, stimulus="strong", duration=duration
    )
    truth = sim.truth
    oracle = sg.POGLM.from_connectivity(truth).score(sim.test, covariates=sim.covariates_test)
    rows = [{"seed": seed, "model": "truth", "held_out": oracle}]
    for name, covariates in (
        ("GLM", False),
        ("GLM + stimulus", True),
        ("selected", False),
        ("selected + stimulus", True),
    ):
        model, cpu = fit(name, sim, covariates)
        given = sim.covariates_test if covariates else None
        held = model.score(sim.test, n_particles=PARTICLES, covariates=given)
        scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
        row = {"seed": seed, "model": name, "held_out": held, "auroc": scores["auroc_visible"], "cpu": cpu}
        row.update(n_hidden=model.n_hidden, kernel_r=kernel_r(model, truth))
        row["hidden_stimulus_r"] = absorbed(model, sim, given)
        if model.n_hidden == 0:
            row.update(calls(model.connectivity(), truth))
        rows.append(row)
        print(_line(row), flush=True)
    print(f"seed {seed}: truth held-out {oracle:.6f}", flush=True)
    return rows


def _line(row: dict) -> str:
    parts = [
        f"seed {row['seed']}",
        f"{row['model']:<20}",
        f"H={row['n_hidden']}",
        f"held-out {row['held_out']:.6f}",
    ]
    parts.append(f"AUROC {row['auroc']:.3f}")
    if "called" in row:
        parts.append(f"called {row['called']} ({row['positive']:.0%} positive) MCC {row['mcc']:.2f}")
    if row["kernel_r"] is not None:
        parts.append(f"kernel r {row['kernel_r']:.3f}")
    if row["hidden_stimulus_r"] is not None:
        parts.append(f"hidden-stimulus r {row['hidden_stimulus_r']:.2f}")
    parts.append(f"{row['cpu']:.1f} s")
    return " | ".join(parts)


def mtl() -> list[dict]:
    """The human MTL session with and without its events as covariates (see the module's description)."""
    from spikeglm import plot
    from spikeglm.io import signals

    if not MTL.exists():
        raise SystemExit(f"--mtl needs {MTL} (the shared public recordings), which is absent here")
    counts = sg.load(MTL).bin("20 ms", trial_length="10 s")
    train, test = counts.split(test=0.2, seed=0)
    onsets = np.sort(
        np.concatenate([signals.nwb_events(MTL, table, "start_time").times for table in MTL_TABLES])
    )
    events = [sg.Covariate.events("stimulus onset", onsets, kernel=MTL_KERNEL, source=f"{MTL}: start_time")]
    rows, per_trial = [], {}
    for name, given in (("GLM", None), ("GLM + events", events)):
        start = time.process_time()
        model = sg.POGLM(n_hidden=0).fit(train, covariates=given)
        cpu = time.process_time() - start
        estimate = model.log_likelihood(test, covariates=given)
        per_trial[name] = estimate.per_trial / (test.n_bins * test.n_units)
        table = model.connectivity().significance(alpha=0.05)
        pairs = table[~table["self"]]
        called = pairs["significant"].astype(bool)
        row = {"model": name, "held_out": estimate.per_bin, "cpu": cpu, "called": int(called.sum())}
        row.update(positive=int((pairs["sign"][called] > 0).sum()), pairs=len(pairs))
        rows.append(row)
        print(
            f"MTL | {name:<13} | held-out {row['held_out']:.6f} | called {row['called']} of {row['pairs']} "
            f"({row['positive']} positive) | {cpu:.1f} s",
            flush=True,
        )
        if given:
            figure = plot.kernels(model.connectivity())
            plot.save_figure(figure, _results.figure("covariates_mtl.png"), overwrite=True)
    difference = per_trial["GLM + events"] - per_trial["GLM"]
    se = float(difference.std(ddof=1) / np.sqrt(len(difference)))
    print(
        f"MTL | gain with the events {difference.mean():.3g} per neuron-bin, paired SE {se:.2g} "
        f"over {len(difference)} held-out trials",
        flush=True,
    )
    rows.append({"model": "difference", "gain": float(difference.mean()), "paired_se": se})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 5 minutes simulated")
    parser.add_argument("--seeds", type=int, default=3, help="networks (seeds 0, 1, ...)")
    parser.add_argument("--visible", type=int, default=20, help="visible neurons (default 20)")
    parser.add_argument("--duration", default="20 min", help="simulated time (default '20 min')")
    parser.add_argument("--mtl", action="store_true", help="the human MTL recording with its events")
    _results.add_option(parser, "covariates")
    args = parser.parse_args()
    path = _results.output(args.json, "covariates_mtl" if args.mtl else "covariates", args.quick)
    torch.set_num_threads(1)
    if args.mtl:
        _results.write(path, "covariates_mtl", {"recording": str(MTL), "bin_size": "20 ms"}, {"rows": mtl()})
        return
    seeds = range(1 if args.quick else args.seeds)
    duration = "5 min" if args.quick else args.duration
    rows = [row for seed in seeds for row in case(seed, args.visible, duration)]
    settings = {"visible": args.visible, "duration": duration, "candidates": CANDIDATES, "folds": FOLDS}
    _results.write(path, "covariates", settings, {"rows": rows})


if __name__ == "__main__":
    main()
