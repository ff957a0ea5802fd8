"""Does ``window="auto"`` ever cost what it should not? The history basis chosen by the data against the
default (exponential, 5 bins), side by side on the same counts.

``POGLM(n_hidden=0, window="auto")`` compares the exponential and raised-cosine families over 5, 10, 20
and 50 bins by 5-fold cross-validated GLM likelihood and keeps the simplest within one paired standard
error of the best. It should gain where the true filters are long, and lose nothing where the default is
right: the coupling AUROC no more than 0.005 below the default's.

Cases, each fitted with the default and with ``window="auto"``:

- ``balanced`` networks (``sg.synthetic.network``, 30 visible neurons, no hidden neuron, 10 minutes at
  5 ms, seeds 0-2) and ``sparse-ei`` networks (seeds 0-2): their true filters are the default basis's,
  so ``auto`` can only match it; AUROC of |strength| over the visible pairs against the true edges, and
  held-out log-likelihood per neuron-bin (the simulation's test trials);
- the public spycon recording (20 of 300 LIF neurons, one hour, 18 true edges; ``../shared/data``),
  whose synapses have delays and shapes of their own: AUROC over the pairs with known truth, and
  held-out log-likelihood of its last fifth;
- the public rat hippocampus recording (16 units, 1,000 s at 5 ms): held-out log-likelihood of its last
  fifth (no ground truth).

CPU seconds of each fit (one thread) are printed with the ratio. Run: ``python
benchmarks/basis_choice.py`` (about 40 minutes of CPU: each ``auto`` fit is 40 GLM solves, some of
bases of 6 functions), ``--quick`` (balanced seed 0 and spycon).
"""

from __future__ import annotations

import argparse
import time

import _results
import numpy as np
import real_data
import torch

import spikeglm as sg


def fitted(counts: sg.SpikeCounts, **settings) -> tuple[sg.POGLM, float]:
    start = time.process_time()
    model = sg.POGLM(n_hidden=0, **settings).fit(counts)
    return model, time.process_time() - start


def chosen(model: sg.POGLM) -> str:
    return model.checked_settings().basis.label


def compare(name: str, train: sg.SpikeCounts, test: sg.SpikeCounts, auroc) -> dict:
    """Default and ``auto`` on one case: AUROC (``auroc(model)``, None without truth), held-out LL, CPU."""
    row: dict = {"case": name}
    for label, settings in (("default", {}), ("auto", {"window": "auto"})):
        model, cpu = fitted(train, **settings)
        row[label] = {
            "basis": chosen(model),
            "auroc": None if auroc is None else auroc(model),
            "heldout": model.score(test),
            "cpu_s": cpu,
        }
    default, auto = row["default"], row["auto"]
    lost = None if auroc is None else default["auroc"] - auto["auroc"]
    row["auroc_lost"] = lost
    row["heldout_gain"] = auto["heldout"] - default["heldout"]
    print(
        f"{name:<22} {auto['basis']:<18} AUROC "
        + ("-" if lost is None else f"{default['auroc']:.4f} -> {auto['auroc']:.4f} ({-lost:+.4f})")
        + f"; held-out {default['heldout']:.6f} -> {auto['heldout']:.6f} ({row['heldout_gain']:+.2e}); "
        f"CPU {default['cpu_s']:.1f} s -> {auto['cpu_s']:.1f} s ({auto['cpu_s'] / default['cpu_s']:.0f}x)",
        flush=True,
    )
    return row


def simulated(protocol: str, seed: int) -> dict:
    options = {"n_visible": 30, "n_hidden": 0, "duration": "10 min"} if protocol == "balanced" else {}
    sim = sg.synthetic.network(protocol, seed=seed, **options)

    def auroc(model: sg.POGLM) -> float:
        return sg.evaluate.connectivity_scores(sim.truth, model.connectivity())["auroc_visible"]

    return compare(f"{protocol} seed {seed}", sim.train, sim.test, auroc)


def public(name: str, trial_length: str) -> tuple[sg.SpikeCounts, sg.SpikeCounts] | None:
    """The public recording ``name`` (a case of ``real_data.py``, read as it reads it) in trials of
    ``trial_length``, its last fifth held out; None where it is absent."""
    case = next(case for case in real_data.CASES if case.name == name)
    path = real_data.DATA / case.folder / case.file
    if not path.exists():
        print(f"{name}: {path} is absent; skipped")
        return None
    counts = real_data.read(case).bin(case.bin_size, trial_length=trial_length)
    return counts.split(test=0.2, shuffle=False)


def spycon() -> dict | None:
    parts = public("spycon", "60 s")
    if parts is None:
        return None
    truth = np.load(real_data.DATA / "spycon-ren-sim-20of300" / "truth_ren_example.npz")
    known = truth["known"].copy()
    np.fill_diagonal(known, False)
    real = truth["weights"][known] != 0

    def auroc(model: sg.POGLM) -> float:
        return sg.evaluate.auroc(real, np.abs(model.connectivity().strength[known]))

    return compare("spycon 20 of 300", *parts, auroc)


def rat() -> dict | None:
    parts = public("rat-hippocampus", "10 s")
    return None if parts is None else compare("rat hippocampus", *parts, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="balanced seed 0 and spycon only")
    _results.add_option(parser, "basis_choice")
    args = parser.parse_args()
    path = _results.output(args.json, "basis_choice", args.quick)
    torch.set_num_threads(1)
    rows = [simulated("balanced", seed) for seed in range(1 if args.quick else 3)]
    if not args.quick:
        rows += [simulated("sparse-ei", seed) for seed in range(3)]
    rows.append(spycon())
    if not args.quick:
        rows.append(rat())
    rows = [row for row in rows if row is not None]
    lost = [row["auroc_lost"] for row in rows if row["auroc_lost"] is not None]
    print(f"\nlargest AUROC lost to window='auto': {max(lost):+.4f} (target: at most 0.005)")
    settings = {"quick": args.quick, "threads": 1}
    _results.write(path, "window='auto' against the default basis", settings, {"rows": rows})


if __name__ == "__main__":
    main()
