"""The GPU against the CPU on a large fit: 300 neurons for an hour at 5 ms, a GLM and 2 hidden neurons.

Each fit runs in a fresh process (``scaling.py``'s fits of ground truth: a ``balanced`` network, seed 0,
simulated for ``--duration`` of 10 s training trials), once on the CPU with one thread and once on CUDA,
side by side: CPU and wall seconds, peak resident memory, the GPU's peak memory, the AUROC of the
visible couplings against the truth, and the share of the CPU's wall time that CUDA takes. The fits
with hidden neurons are capped at ``--epochs`` epochs, so both devices do the same work.

Without a CUDA device there is nothing to compare: the benchmark says so and stops (``scaling.py --fits``
measures the CPU alone). ``--quick``: 30 neurons for a minute, to check the device path in seconds.
``--gpu-only`` leaves the CPU's fits out, for a lease of the device too short for them (an hour of 300
neurons takes over half an hour of one core); CUDA's fits take torch's threads for their host's work.

Run: ``python benchmarks/gpu.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse

import _results
import scaling
import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--neurons", type=int, default=300, help="visible neurons (default 300)")
    parser.add_argument("--duration", default="1h", help="training time simulated (default 1h)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[0, 2], help="hidden neurons of the fits")
    parser.add_argument("--epochs", type=int, default=20, help="most epochs of the fits with hidden neurons")
    parser.add_argument("--quick", action="store_true", help="30 neurons for a minute")
    parser.add_argument(
        "--gpu-only",
        action="store_true",
        help="fit on CUDA alone (the CPU's fits of the same size measured by scaling.py --fits)",
    )
    _results.add_option(parser, "gpu")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to compare (scaling.py --fits measures the CPU alone)")
    sizes, duration = ([30], "1min") if args.quick else ([args.neurons], args.duration)
    scaling.fits(
        argparse.Namespace(
            json=args.json if args.json else _results.output(None, "gpu", args.quick),
            quick=args.quick,
            fit_sizes=sizes,
            fit_duration=[duration],
            fit_hidden=args.hidden,
            fit_epochs=args.epochs,
            fit_devices=["cuda"] if args.gpu_only else ["cpu", "cuda"],
        )
    )


if __name__ == "__main__":
    main()
