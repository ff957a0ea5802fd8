"""Time to a converged fit: the default fit against the previous default, side by side in one run.

The previous default was 500 full-batch Adam epochs at lr 0.02 for every model, hidden neurons or not,
from small random couplings. The default now solves a model without hidden neurons by L-BFGS to
convergence, and fits one with hidden neurons from that GLM and the principal components of its errors
(``init="glm"``) in mini-batches (a quarter of the segments) at lr 0.05, lowered five-fold when the
smoothed training objective stops rising, until it stops rising again. For each case this prints the
CPU time of each fit, the CPU time it took to come within 0.001 nats per neuron-bin of the best held-out
log-likelihood either fit reached (scored every few epochs by the particle filter, scoring time not
counted), the final held-out log-likelihood and, where the truth is known, the weight MAE after matching
the hidden neurons.

Cases: the diffpoglm protocol (3 visible + 2 hidden, sigmoid link; 10 datasets), sparse-ei (30
neurons, with 0 and with 2 hidden), and the public 3-unit mouse recording in ../shared/data when that
folder exists (18 min at 20 ms, 2 hidden; the first 80% of 10 s trials to fit, the rest to score).

Run: ``python benchmarks/convergence.py`` (about 10 minutes on 2 cores), ``--quick`` for 2 datasets
and no recording.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _results
import numpy as np
import torch

import spikeglm as sg
from spikeglm.inference import TrainingConfig, train

MOUSE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mouse-phy-3units-nwb" / "A8604-211122.nwb"
#: The previous default: one full-batch Adam step per epoch, all 500 epochs.
PREVIOUS = {"epochs": 500, "lr": 0.02, "batch_size": 10**9, "tol": None, "init": "random"}
WITHIN = 1e-3
CURVE_PARTICLES, FINAL_PARTICLES = 200, 1000


class Curve:
    """A fit's callback: the held-out log-likelihood every ``every`` epochs against CPU time spent fitting."""

    def __init__(self, model: sg.POGLM, test: sg.SpikeCounts, every: int) -> None:
        self.model, self.test, self.every = model, test, every
        self.points: list[tuple[float, float]] = []
        self.scoring = 0.0
        self.start = time.process_time()

    def __call__(self, record) -> None:
        if (record.epoch + 1) % self.every:
            return
        begin = time.process_time()
        fitting = begin - self.start - self.scoring  # CPU time spent fitting so far
        value = self.model.score(self.test, n_particles=CURVE_PARTICLES)
        self.scoring += time.process_time() - begin
        self.points.append((fitting, value))

    def fitting_time(self) -> float:
        return time.process_time() - self.start - self.scoring


def fit_previous(
    settings: dict, train_counts: sg.SpikeCounts, test: sg.SpikeCounts
) -> tuple[sg.POGLM, Curve]:
    """The previous default, the fully visible case included (then Adam on the same likelihood)."""
    model = sg.POGLM(**settings, **PREVIOUS, seed=0)
    curve = Curve(model, test, every=25)
    if model.n_hidden:
        model.fit(train_counts, callback=curve)
        return model, curve
    visible = torch.from_numpy(np.array(train_counts.counts, dtype=np.uint8))
    model.network_ = model._new_network(train_counts.n_units)
    model.network_.init_from_counts(visible, 0.1, torch.Generator().manual_seed(0))
    model.posterior_ = model._new_posterior(train_counts.n_units)
    model.unit_ids_ = [str(u) for u in train_counts.unit_ids]
    config = TrainingConfig(**PREVIOUS, seed=0)
    model.history_ = train(
        model.network_, model.posterior_, model._segments(visible), config, callback=curve
    )[0]
    return model, curve


def fit_default(settings: dict, train_counts: sg.SpikeCounts, test: sg.SpikeCounts) -> tuple[sg.POGLM, Curve]:
    model = sg.POGLM(**settings, seed=0)
    curve = Curve(model, test, every=1 if model.n_hidden == 0 else 5)
    model.fit(train_counts, callback=curve)
    return model, curve


def compare(name: str, settings: dict, train_counts, test, truth=None) -> dict:
    row = {"case": name}
    fits = {}
    for label, fitter in (("previous", fit_previous), ("default", fit_default)):
        torch.manual_seed(0)
        model, curve = fitter(settings, train_counts, test)
        fits[label] = (model, curve, curve.fitting_time())
    best = max(max((v for _, v in curve.points), default=-np.inf) for _, curve, _ in fits.values())
    for label, (model, curve, seconds) in fits.items():
        final = model.score(test, n_particles=FINAL_PARTICLES)
        reached = [t for t, v in curve.points if v >= best - WITHIN]
        row[label] = {
            "cpu_s": seconds,
            "cpu_s_to_within": reached[0] if reached else None,
            "test_ll": final,
            "steps": len(model.history_),
            "stopped": model.stopped_ or "ran the 500 epochs set",
        }
        if truth is not None:
            row[label]["mae"] = sg.evaluate.connectivity_scores(truth, model.connectivity())["mae"]
    print(_line(row), flush=True)
    return row


def _line(row: dict) -> str:
    parts = [f"{row['case']:<26}"]
    for label in ("previous", "default"):
        r = row[label]
        within = "-" if r["cpu_s_to_within"] is None else f"{r['cpu_s_to_within']:.1f}"
        mae = f" MAE {r['mae']:.3f}" if "mae" in r else ""
        parts.append(f"{label}: {r['cpu_s']:6.1f} s (to 0.001: {within:>5} s) LL {r['test_ll']:.5f}{mae}")
    ratio = row["default"]["cpu_s"] / row["previous"]["cpu_s"]
    return " | ".join(parts) + f" | time ratio {ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 diffpoglm datasets, no recording")
    _results.add_option(parser, "convergence")
    args = parser.parse_args()
    path = _results.output(args.json, "convergence", args.quick)
    torch.set_num_threads(1)
    rows = []
    for seed in range(2 if args.quick else 10):
        truth, train_counts, test = sg.synthetic.network(protocol="diffpoglm", seed=seed)
        rows.append(
            compare(f"diffpoglm {seed}", {"n_hidden": 2, "link": "sigmoid"}, train_counts, test, truth)
        )
    truth, train_counts, test = sg.synthetic.network(protocol="sparse-ei", seed=0)
    for hidden in (0, 2):
        rows.append(compare(f"sparse-ei, {hidden} hidden", {"n_hidden": hidden}, train_counts, test))
    if MOUSE.exists() and not args.quick:
        counts = sg.load(MOUSE).bin("20 ms", trial_length="10 s")
        cut = int(0.8 * counts.n_trials)
        rows.append(
            compare(
                "mouse 3 units, 2 hidden",
                {"n_hidden": 2},
                counts.select_trials(slice(0, cut)),
                counts.select_trials(slice(cut, None)),
            )
        )
    elif not MOUSE.exists():
        print(f"(skipped the mouse recording: {MOUSE} is not there)")
    diff = [r for r in rows if r["case"].startswith("diffpoglm")]
    summary = {
        label: {key: float(np.mean([r[label][key] for r in diff])) for key in ("cpu_s", "test_ll", "mae")}
        for label in ("previous", "default")
    }
    print(
        "diffpoglm mean: "
        + " | ".join(
            f"{label}: {s['cpu_s']:.2f} s, LL {s['test_ll']:.4f}, MAE {s['mae']:.3f}"
            for label, s in summary.items()
        )
        + f" | time ratio {summary['default']['cpu_s'] / summary['previous']['cpu_s']:.2f}"
    )
    _results.write(
        path, "convergence", {"previous": PREVIOUS, "within": WITHIN}, {"rows": rows, "diffpoglm": summary}
    )


if __name__ == "__main__":
    main()
