"""When do hidden neurons pay off? Held-out likelihood and recovery against the truth, by hidden drive.

For ``balanced`` networks (30 visible, 3 hidden neurons, target rates 10-30 Hz; 40 training and 20 test
trials of 500 bins) at each hidden-drive strength, this fits a plain GLM (no hidden neuron) and POGLMs
with 3 hidden neurons: the default fit (the importance-weighted bound over 5 samples of relaxed
counts, started from the visible neurons' GLM and the principal components of its errors), the previous
defaults (the same from small random couplings, ``init="random"``, and the ELBO instead of the
importance-weighted bound, ``objective="elbo"``), the default with a ridge penalty of
the couplings (``penalty="ridge"``, its strength the visible GLM's cross-validated one), the
likelihood itself through a particle smoother (``objective="likelihood"``, 16 particles, the default
start), and the default fit started at the true network instead (``"truth start"``,
``POGLM.from_connectivity(truth, freeze_network=False)``: where the objective settles near the truth
with this much data, what a better start could at best reach), and prints for each:

- the held-out log-likelihood per visible neuron-bin by the particle filter (4000 particles per trial
  in 4 filters, whose estimate falls short of the likelihood by about 1e-5 with 3 hidden neurons; with
  1000 it fell short by about 1e-4, several points of the gains compared), with two references: the
  true network's (the oracle) and that of a GLM fitted to the visible and the true hidden spikes
  together (fully observed: the best a GLM can do with this much data, since the oracle's network is
  known without estimation error; with the ridge fit, the fully observed GLM with its own
  cross-validated ridge is printed beside it); and the share of each reference's gain over the plain
  GLM that the fit recovers;
- the visible block's AUROC of edge detection;
- the correlation of the inferred hidden rates with the true hidden spikes of the held-out trials (mean
  over matched hidden neurons, inverted ones counted with their sign reversed), next to that of a
  posterior fitted to the true network;
- CPU time of the fit;

and the same for the model that ``select_hidden`` chooses among 0-3 hidden neurons by 4-fold
cross-validation of the training trials (the default fit), refitted on them all;

and, at the true network with a posterior fitted to it, how far each training bound (ELBO, IWAE with 20
samples, the particle-filter bound with 16 particles) falls below the likelihood of the training trials:
a bound whose gap exceeds the hidden neurons' gain ranks a plain GLM above the truth.

Every seed asked for is measured: the balanced networks are checked for stability before they are
simulated, and none is skipped.

Run: ``python benchmarks/hidden.py`` (about 10 minutes of CPU per network; ``--quick``: the strong drive
only, one seed; ``--drives strong --seeds 10``: ten networks of one drive; ``--fits default``: the plain
GLM and the named fits only, for a quick look; ``--train 320``: more training trials than the 40).
"""

from __future__ import annotations

import argparse
import time

import _results
import numpy as np
import torch

import spikeglm as sg
from spikeglm import smc
from spikeglm.segments import Batch
from spikeglm.variational import log_weights

PARTICLES = 4000
#: The fits with hidden neurons, compared with the plain GLM.
FITTED = ("random start", "elbo", "default", "ridge", "likelihood", "truth start", "selected")
#: The numbers of hidden neurons that ``select_hidden`` chooses from (4-fold cross-validation).
CANDIDATES = (0, 1, 2, 3)


def hidden_correlation(model: sg.POGLM, truth: sg.Connectivity, test, hidden_test) -> float:
    """Mean correlation of inferred hidden rates with the matched true hidden spikes (held-out trials)."""
    scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
    inferred = model.infer(test)
    true = np.asarray(hidden_test.counts, dtype=float)
    values = []
    for (i, j), inverted in zip(scores["hidden_match"], scores["hidden_inverted"], strict=True):
        r = np.corrcoef(inferred[..., j].ravel(), true[..., i].ravel())[0, 1]
        values.append(-r if inverted else r)
    return float(np.mean(values))


@torch.no_grad()
def bound_gaps(model: sg.POGLM, counts: sg.SpikeCounts, samples: int = 20, particles: int = 16) -> dict:
    """How far each training bound lies below ``log p(x)`` (per visible neuron-bin) at ``model``."""
    network, posterior = model.network_, model.posterior_
    visible = torch.from_numpy(np.asarray(counts.counts, dtype=np.float32))
    size = visible.numel()
    torch.manual_seed(0)
    log_w = log_weights(network, posterior, Batch(visible), samples)[0]
    draw = sg.inference.TrainingConfig().sampler.draw
    fivo = np.mean(
        [
            float(smc.filtering_bound(network, posterior, Batch(visible), particles, draw).sum())
            for _ in range(3)
        ]
    )
    exact = smc.log_likelihood(network, visible, n_particles=PARTICLES).per_bin
    bounds = {
        "elbo": float(log_w.mean(0).sum()),
        "iwae": float((torch.logsumexp(log_w, 0) - np.log(samples)).sum()),
    }
    bounds["fivo"] = fivo
    return {name: exact - value / size for name, value in bounds.items()}


def fully_observed(
    truth: sg.Connectivity, train, hidden_train, visible: torch.Tensor, penalty: str | None = None
) -> float:
    """Held-out log-likelihood of a GLM fitted with the hidden neurons' true spikes in view (with
    ``penalty``, its strength cross-validated)."""
    both = sg.SpikeCounts(np.concatenate([train.counts, hidden_train.counts], axis=2), train.bin_size)
    model = sg.POGLM.from_connectivity(truth)
    glm = sg.POGLM(n_hidden=0, basis=model.basis, link=model.link, penalty=penalty).fit(both)
    model.network_.load_state_dict(glm.network_.state_dict())
    return smc.log_likelihood(model.network_, visible, n_particles=PARTICLES).per_bin


#: The settings of the networks (the ``"balanced"`` protocol's, but for these).
NETWORK = {"n_visible": 30, "n_hidden": 3, "n_bins": 500, "n_train": 40, "n_test": 20, "rate": (10.0, 30.0)}


def case(drive: str, seed: int, fitted: tuple[str, ...] = FITTED, n_train: int = 40) -> dict:
    network = {**NETWORK, "n_train": n_train}
    sim = sg.synthetic.network(protocol="balanced", seed=seed, hidden_drive=drive, **network)
    truth, train, test = sim
    hidden_train, hidden_test = sim.hidden_train, sim.hidden_test
    oracle = sg.POGLM.from_connectivity(truth, seed=0)
    visible = torch.from_numpy(np.asarray(test.counts, dtype=np.float32))
    oracle_ll = smc.log_likelihood(oracle.network_, visible, n_particles=PARTICLES).per_bin
    oracle.fit(train)  # the posterior only: the network stays at the truth
    row = {"drive": drive, "seed": seed, "n_train": n_train, "oracle": {"test_ll": oracle_ll}}
    row["oracle"]["hidden_r"] = hidden_correlation(oracle, truth, test, hidden_test)
    fits = {"no hidden": {"n_hidden": 0}, "random start": {"n_hidden": 3, "init": "random"}}
    fits["elbo"] = {"n_hidden": 3, "objective": "elbo"}
    fits["default"] = {"n_hidden": 3}
    fits["ridge"] = {"n_hidden": 3, "penalty": "ridge"}
    fits["likelihood"] = {"n_hidden": 3, "objective": "likelihood", "n_samples": 16}
    fits["truth start"] = {}
    row["oracle"]["bound_gap"] = bound_gaps(oracle, train)
    row["fully observed"] = {"test_ll": fully_observed(truth, train, hidden_train, visible)}
    if "ridge" in fitted:
        ridge = fully_observed(truth, train, hidden_train, visible, "ridge")
        row["fully observed, ridge"] = {"test_ll": ridge}
    fits["selected"] = {}
    fits = {label: settings for label, settings in fits.items() if label == "no hidden" or label in fitted}
    for label, settings in fits.items():
        start = time.process_time()
        if label == "selected":
            model = sg.select_hidden(train, candidates=CANDIDATES, folds=4, model=sg.POGLM(seed=0))
        elif label == "truth start":
            given = sg.POGLM.from_connectivity(truth, freeze_network=False, seed=0, **settings)
            model = given.fit(train)
        else:
            model = sg.POGLM(seed=0, **settings).fit(train)
        seconds = time.process_time() - start
        estimate = model.log_likelihood(test, n_particles=PARTICLES)
        scores = sg.evaluate.connectivity_scores(truth, model.connectivity())
        row[label] = {
            "cpu_s": seconds,
            "epochs": len(model.history_),
            "test_ll": estimate.per_bin,
            "se": estimate.se,
            "auroc_visible": scores["auroc_visible"],
            "n_hidden": model.n_hidden,
        }
        if model.n_hidden:
            row[label]["hidden_r"] = hidden_correlation(model, truth, test, hidden_test)
    plain = row["no hidden"]["test_ll"]
    for label in fitted:
        row[label]["share_of_gain"] = (row[label]["test_ll"] - plain) / (oracle_ll - plain)
        row[label]["share_of_observed_gain"] = (row[label]["test_ll"] - plain) / (
            row["fully observed"]["test_ll"] - plain
        )
    print(_line(row), flush=True)
    return row


def _line(row: dict) -> str:
    parts = [f"{row['drive']:<8} seed {row['seed']}, {row['n_train']} trials: oracle"]
    parts.append(f"{row['oracle']['test_ll']:.5f}")
    parts.append(f"(hidden r {row['oracle']['hidden_r']:.2f}; gaps at the truth")
    parts.append(", ".join(f"{k} {v:.4f}" for k, v in row["oracle"]["bound_gap"].items()) + ")")
    parts.append(f"| fully observed {row['fully observed']['test_ll']:.5f}")
    if "fully observed, ridge" in row:
        parts.append(f"(with the ridge {row['fully observed, ridge']['test_ll']:.5f})")
    for label in ("no hidden", *FITTED):
        if label not in row:
            continue
        r = row[label]
        text = f"| {label} {r['test_ll']:.5f} AUROC {r['auroc_visible']:.3f} {r['cpu_s']:.0f} s"
        if label == "selected":
            text += f" H={r['n_hidden']}"
            if "default" in row:
                text += f" ({r['cpu_s'] / row['default']['cpu_s']:.1f}x the default's CPU)"
        if "share_of_gain" in r:
            text += f" gain {100 * r['share_of_gain']:.0f}% ({100 * r['share_of_observed_gain']:.0f}% of"
            text += " the fully observed)"
        if "hidden_r" in r:
            text += f" hidden r {r['hidden_r']:.2f}"
        parts.append(text)
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the strong drive only, one seed")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per drive strength (default 1)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="the first seed (to share seeds among processes)"
    )
    parser.add_argument(
        "--drives", nargs="+", default=["weak", "moderate", "strong"], help="hidden-drive strengths"
    )
    parser.add_argument(
        "--fits", nargs="+", choices=FITTED, default=FITTED, help="the fits with hidden neurons"
    )
    parser.add_argument("--train", type=int, default=40, help="training trials (default 40)")
    _results.add_option(parser, "hidden")
    args = parser.parse_args()
    path = _results.output(args.json, "hidden", args.quick)
    torch.set_num_threads(1)
    drives = ("strong",) if args.quick else args.drives
    seeds = range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds))
    rows = [case(drive, seed, tuple(args.fits), args.train) for drive in drives for seed in seeds]
    network = {**NETWORK, "n_train": args.train}
    settings = {"particles": PARTICLES, "protocol": "balanced", **network, "fits": args.fits}
    _results.write(path, "hidden", settings, {"rows": rows})


if __name__ == "__main__":
    main()
