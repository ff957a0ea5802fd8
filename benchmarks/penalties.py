"""Penalised couplings: do the ridge and the group lasso at their cross-validated strength beat the
unpenalised GLM when there are few spikes for many couplings?

Side by side in one run, on the same data: sparse-ei networks of 30 visible neurons and no hidden one
(``sg.synthetic.network("sparse-ei", n_hidden=0, n_train=10)``: 10 training trials of 500 bins, the
default test trials held out), each fitted three ways:

- ``none``: ``POGLM(n_hidden=0)``, the unpenalised GLM (the baseline);
- ``ridge``: ``POGLM(n_hidden=0, penalty="ridge")``, strength by 5-fold cross-validation;
- ``group-lasso``: ``POGLM(n_hidden=0, penalty="group-lasso")``, the same.

Printed per seed and model: held-out log-likelihood per neuron-bin (exact, no hidden neuron) and its
difference from the baseline, coupling AUROC over the visible pairs (``sg.evaluate.connectivity_scores``:
by ``|strength|``, and for the group lasso, the filters it set to zero ranked below the kept ones by their
entry strength), the AUROC of ``|strength|`` alone (its zeros tied), the share of the absent pairs set
exactly to zero, the chosen strength (nats per spike) and the CPU time of the fit (one
thread), cross-validation included.

``--aplysia``: the same three fits of the public Aplysia pedal ganglion recording (``../shared/data``: 125
units, 90 s at 5 ms, one continuous trial, its last fifth held out): held-out log-likelihood, the
couplings each fit keeps (not zero) and the colour limit of its heatmap (``sg.plot.connectivity``'s
robust limit), the iterations of the final solve and the CPU time.

``--large N``: how the group lasso is solved in a large population, side by side on one ``balanced``
network of N neurons (10 minutes at 5 ms, seed 0) at a fixed strength (``--strength``): the default solve
(exact proximal Newton up to 200 design columns, beyond them proximal quasi-Newton steps of the design's
curvature), exact proximal Newton (``solver="newton"``) and accelerated proximal gradient steps
(``solver="lbfgs"``, capped at ``--cap`` iterations); each one's iterations, CPU, final objective and
couplings kept. Exact Newton is left out beyond 200 design columns, where each of its passes takes minutes.

Run: ``python benchmarks/penalties.py`` (seeds 0-4, about 10 minutes of CPU); ``--quick``: seed 0 only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _results
import numpy as np
import torch

import spikeglm as sg

#: The fits compared, by name: their penalty settings.
MODELS = {"none": {}, "ridge": {"penalty": "ridge"}, "group-lasso": {"penalty": "group-lasso"}}


def one_seed(seed: int) -> dict:
    """Every model on the network of ``seed``."""
    truth, train, test = sg.synthetic.network("sparse-ei", seed=seed, n_hidden=0, n_train=10)
    n_visible = train.n_units
    off = ~np.eye(n_visible, dtype=bool)
    absent = (truth.strength[:n_visible, :n_visible] == 0) & off
    rows = {}
    for name, settings in MODELS.items():
        start = time.process_time()
        model = sg.POGLM(n_hidden=0, **settings).fit(train)
        cpu = time.process_time() - start
        conn = model.connectivity()
        rows[name] = {
            "heldout": model.score(test),
            "auroc": sg.evaluate.connectivity_scores(truth, conn)["auroc_visible"],
            "auroc_strength": sg.evaluate.auroc(
                ~absent[off], np.abs(conn.strength[:n_visible, :n_visible][off])
            ),
            "absent_zero": float(np.mean(conn.strength[:n_visible, :n_visible][absent] == 0)),
            "strength": model.fit_options_.get("penalty_strength"),
            "cpu_s": cpu,
            "stopped": model.stopped_,
        }
    return {"seed": seed, **rows}


#: The public Aplysia recording (absent from a user's clone).
APLYSIA = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "aplysia-pedal-ganglion-vsd"
    / "Feb1312da06spks.mat"
)


def aplysia() -> dict | None:
    """Every model on the Aplysia recording, its last fifth held out."""
    import matplotlib

    matplotlib.use("Agg")
    import spikeglm.plot

    if not APLYSIA.exists():
        print(f"\nAplysia: {APLYSIA} is absent; skipped")
        return None
    counts = sg.load(APLYSIA).bin("5 ms")
    train, test = counts.split(test=0.2)  # one continuous trial: cut in time
    n = counts.n_units
    between = ~np.eye(n, dtype=bool)
    rows = {}
    print(f"\nAplysia, {n} units, {train.n_bins} bins fitted, {test.n_bins} held out")
    print(
        f"{'penalty':<12} {'held-out':>10} {'- none':>10} {'kept':>6} {'limit':>6} {'strength':>9} "
        f"{'CPU s':>6}  stopped"
    )
    for name, settings in MODELS.items():
        start = time.process_time()
        model = sg.POGLM(n_hidden=0, **settings).fit(train)
        cpu = time.process_time() - start
        conn = model.connectivity()
        strength = conn.strength
        rows[name] = {
            "heldout": model.score(test),
            "kept": int(np.sum(strength[between] != 0)),
            "colour_limit": spikeglm.plot._limits(conn)[0],  # what the heatmap's colours end at
            "strength": model.fit_options_.get("penalty_strength"),
            "cpu_s": cpu,
            "iterations": len(model.history_),
            "stopped": model.stopped_,
        }
        row = rows[name]
        chosen = "-" if row["strength"] is None else f"{row['strength']:.2g}"
        print(
            f"{name:<12} {row['heldout']:>10.6f} {row['heldout'] - rows['none']['heldout']:>+10.2e} "
            f"{row['kept']:>6} {row['colour_limit']:>6.2f} {chosen:>9} {cpu:>6.1f}  {row['stopped']}",
            flush=True,
        )
    return rows


def large(n_neurons: int, strength: float, cap: int) -> dict:
    """The group lasso of one large network solved three ways (see the module)."""
    from spikeglm.inference import solve_glm
    from spikeglm.inference.newton import NEWTON_COLUMNS
    from spikeglm.inference.penalty import GroupLasso
    from spikeglm.model import Network
    from spikeglm.segments import Segments

    sim = sg.synthetic.network("balanced", seed=0, n_visible=n_neurons, n_hidden=0, duration="10 min")
    counts = torch.tensor(sim.train.counts, dtype=torch.float32)
    data, between = Segments(counts), ~torch.eye(n_neurons, dtype=torch.bool)
    print(
        f"\nbalanced, {n_neurons} neurons, {counts.shape[0] * counts.shape[1]} bins, group lasso {strength:g}"
    )
    print(f"{'solve':<8} {'iterations':>10} {'CPU s':>7} {'objective':>14} {'kept':>7}  stopped")
    rows = {}
    for solver in ("auto", "newton", "lbfgs"):
        if solver == "newton" and n_neurons + 1 > NEWTON_COLUMNS:
            print(f"{solver:<8} (skipped: exact blocks of {n_neurons + 1} columns cost minutes per pass)")
            continue
        network = Network(n_neurons, 0, sg.basis.get("exponential"), "softplus")
        network.init_from_counts(counts, scale=0.0, generator=torch.Generator().manual_seed(0))
        start = time.process_time()
        records, reason = solve_glm(
            network, data, penalty=GroupLasso(strength), solver=solver, max_iterations=cap
        )
        cpu = time.process_time() - start
        kept = int((network.weight.detach().norm(dim=-1)[between] > 0).sum())
        rows[solver] = {"iterations": len(records), "cpu_s": cpu, "objective": records[-1].objective}
        rows[solver] |= {"kept": kept, "stopped": reason}
        print(
            f"{solver:<8} {len(records):>10} {cpu:>7.1f} {records[-1].objective:>14.9f} {kept:>7}  {reason}"
        )
    return rows


def show(case: dict) -> None:
    base = case["none"]
    print(f"\nsparse-ei seed {case['seed']}, 30 visible neurons, 10 training trials")
    print(
        f"{'penalty':<12} {'held-out':>10} {'- none':>10} {'AUROC':>7} {'|s| only':>8} {'absent = 0':>10} "
        f"{'strength':>9} {'CPU s':>6}"
    )
    for name in MODELS:
        row = case[name]
        strength = "-" if row["strength"] is None else f"{row['strength']:.2g}"
        print(
            f"{name:<12} {row['heldout']:>10.6f} {row['heldout'] - base['heldout']:>+10.2e} "
            f"{row['auroc']:>7.4f} {row['auroc_strength']:>8.4f} {row['absent_zero']:>10.0%} "
            f"{strength:>9} {row['cpu_s']:>6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="networks, seeds 0.. (default 5)")
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--aplysia", action="store_true", help="the Aplysia recording instead")
    parser.add_argument(
        "--large", type=int, help="the group lasso's solves of a network of this many neurons"
    )
    parser.add_argument("--strength", type=float, default=1e-5, help="its strength (--large; default 1e-5)")
    parser.add_argument("--cap", type=int, default=200, help="most iterations of each solve (--large)")
    _results.add_option(parser, "penalties")
    args = parser.parse_args()
    name = "penalties-aplysia" if args.aplysia else "penalties-large" if args.large else "penalties"
    path = _results.output(args.json, name, args.quick)
    torch.set_num_threads(1)
    if args.large:
        rows = large(args.large, args.strength, args.cap)
        _results.write(path, "penalties", vars(args) | {"json": str(path)}, {"large": rows})
        return
    if args.aplysia:
        _results.write(path, "penalties", vars(args) | {"json": str(path)}, {"aplysia": aplysia()})
        return
    cases = []
    for seed in range(1 if args.quick else args.seeds):
        cases.append(one_seed(seed))
        show(cases[-1])
    _results.write(path, "penalties", vars(args) | {"json": str(path)}, {"cases": cases})


if __name__ == "__main__":
    main()
