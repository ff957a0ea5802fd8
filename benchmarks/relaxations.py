"""Speed and fidelity of the Poisson relaxations, side by side in one run.

Speed: forward + backward of a relaxed sample of N elements (float32, CPU unless --device), for
  * Eat-cubic as shipped (exact window sampling, one saved value per element),
  * the truncated-arrival formulation of the same relaxation (n_exp exponentials per element, n_exp from
    the 1e-3 Poisson tail quantile at rate * (1 + tau)), through plain autograd, written two ways:
    "plain" as it reads with torch.distributions (Exponential(rate).rsample, cumsum, smoothstep), and
    "fast-rng" as spikeglm.relax.truncated_arrival_counts, which draws the exponentials as log(1 - U)
    (faster than torch's exponential_ on CPU) so the ratio isolates the algorithm from the generator,
  * plain torch.poisson (forward only, no gradient): the floor any sampler is compared with.
Timings are interleaved (one of each per round) and the median over rounds is reported, so the ratios
compare the three under the same machine load. Memory is the bytes autograd keeps for the backward pass.
Before a rate is timed, one sample of N elements from each sampler is checked: its mean and variance must
lie within 5 standard errors of the closed forms (for the relaxations, those of Eat-cubic: mean ``rate``,
variance ``rate * (1 - 9 tau / 35)``; for torch.poisson, ``rate`` and ``rate``), or the benchmark stops.

Fidelity: Wasserstein-1 distance to exact Poisson samples, and empirical mean and variance against the
closed forms, for each relaxation over a grid of rates and temperatures (spikeglm.fidelity).

The figures are written as JSON beside the printed tables (``--json PATH``, default
results/benchmarks/relaxations.json, relaxations-quick.json with --quick).

Usage: python benchmarks/relaxations.py [--elements 1000000] [--rounds 15] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import _results
import torch

from spikeglm import fidelity, relax

#: How many standard errors a sampler's mean and variance may lie from the closed forms.
MOMENT_TOLERANCE_SE = 5.0


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``fn()``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def plain_truncated(rate: torch.Tensor, temperature: float, n_exp: int) -> torch.Tensor:
    """The truncated-arrival Eat-cubic count as written with torch.distributions."""
    arrivals = torch.distributions.Exponential(rate).rsample((n_exp,)).cumsum(0)
    return relax.cubic_step((1 - arrivals) / temperature).sum(0)


def check_moments(name: str, sample: torch.Tensor, mean: float, variance: float) -> dict:
    """A sample's mean and variance with their standard errors, checked against the expected ones.

    Raises RuntimeError, naming the sampler ``name``, if either lies more than ``MOMENT_TOLERANCE_SE``
    standard errors from ``mean`` or ``variance``.
    """
    z = sample.detach().double().flatten()
    n = z.numel()
    sample_mean = float(z.mean())
    centred = z - sample_mean
    sample_variance = float(centred.square().sum()) / (n - 1)
    fourth = float(centred.pow(4).mean())
    moments = {
        "mean": sample_mean,
        "mean_se": math.sqrt(sample_variance / n),
        "variance": sample_variance,
        "variance_se": math.sqrt(max(fourth - sample_variance**2, 0.0) / n),
    }
    for moment, expected in (("mean", mean), ("variance", variance)):
        if not abs(moments[moment] - expected) <= MOMENT_TOLERANCE_SE * moments[f"{moment}_se"]:
            raise RuntimeError(
                f"{name}: sample {moment} {moments[moment]:.6g} is more than {MOMENT_TOLERANCE_SE:g} "
                f"standard errors ({moments[f'{moment}_se']:.3g}) from {expected:.6g}; nothing was timed"
            )
    return moments


def speed(
    rates: tuple[float, ...], temperature: float, n: int, rounds: int, device: torch.device
) -> list[dict]:
    """Check, then time each sampler at each rate; print the table and return its rows."""
    print(f"\nForward + backward, {n:,} elements, temperature {temperature}, {device}, median of {rounds}")
    print(
        f"{'rate':>5} {'n_exp':>5} | {'ms: eat-cubic':>13} {'plain':>7} {'fast-rng':>8} {'poisson':>7} | "
        f"{'plain/cubic':>11} {'fast-rng/cubic':>14} {'cubic/poisson':>13} | {'saved bytes/element':>19}"
    )
    rows = []
    for r in rates:
        rate = torch.full((n,), r, device=device, requires_grad=True)
        n_exp = relax.poisson_tail_count(r * (1 + temperature), 1e-3) + 1
        samplers = {
            "cubic": lambda rate=rate: relax.EatCubic(rate, temperature).rsample(),
            "plain": lambda rate=rate, k=n_exp: plain_truncated(rate, temperature, k),
            "fast-rng": lambda rate=rate, k=n_exp: relax.truncated_arrival_counts(
                rate, temperature, relax.cubic_step, k
            ),
        }
        contenders = {name: (lambda f=f: f().sum().backward()) for name, f in samplers.items()}
        contenders["poisson"] = lambda rate=rate: torch.poisson(rate.detach())
        relaxed = relax.EatCubic(torch.tensor(r), temperature)
        moments = {
            name: check_moments(f"{name} at rate {r:g}", f(), float(relaxed.mean), float(relaxed.variance))
            for name, f in samplers.items()
        }
        moments["poisson"] = check_moments(f"poisson at rate {r:g}", contenders["poisson"](), r, r)
        for fn in contenders.values():  # warm-up
            fn()
        times = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, fn in contenders.items():
                times[name].append(timed(fn, device))
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        saved = {name: saved_bytes(f) / n for name, f in samplers.items()}
        print(
            f"{r:>5g} {n_exp:>5d} | {ms['cubic']:>13.1f} {ms['plain']:>7.1f} {ms['fast-rng']:>8.1f} "
            f"{ms['poisson']:>7.1f} | {ms['plain'] / ms['cubic']:>10.1f}x "
            f"{ms['fast-rng'] / ms['cubic']:>13.1f}x {ms['cubic'] / ms['poisson']:>12.2f}x | "
            f"cubic {saved['cubic']:.0f}, plain {saved['plain']:.0f}"
        )
        rows.append(
            {
                "rate": r,
                "n_exp": n_exp,
                "median_ms": ms,
                "saved_bytes_per_element": saved,
                "moments": moments,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--skip-fidelity", action="store_true")
    _results.add_option(parser, "relaxations")
    args = parser.parse_args()
    path = _results.output(args.json, "relaxations", args.quick)
    torch.manual_seed(0)
    settings = {
        "elements": 20_000 if args.quick else args.elements,
        "rounds": 3 if args.quick else args.rounds,
        "temperature": args.temperature,
        "device": args.device,
        "fidelity_samples": None if args.skip_fidelity else 2_000 if args.quick else 10_000,
        "moment_tolerance_se": MOMENT_TOLERANCE_SE,
    }
    figures = {
        "speed": speed(
            (0.05, 1.0, 5.0),
            args.temperature,
            settings["elements"],
            settings["rounds"],
            torch.device(args.device),
        )
    }
    if not args.skip_fidelity:
        print("\nFidelity to the Poisson law (W1 and moments; closed forms where they exist)")
        figures["fidelity"] = fidelity.fidelity_table(n_samples=settings["fidelity_samples"], seed=0)
        print(fidelity.format_table(figures["fidelity"]))
    _results.write(path, "relaxations", settings, figures)


if __name__ == "__main__":
    main()
