"""``spikeglm infer``: the hidden neurons' rates in a recording, written as an .npz file (which ``demo``
writes too)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

import spikeglm as sg
from spikeglm import files
from spikeglm.cli.app import main
from spikeglm.cli.options import SUBJECT, Reading, check_output, output_options, reading_options, units_like


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("recording", type=click.Path(exists=True))
@output_options("Output file by extension: .npz (numpy arrays) or .nwb (a new NWB file; needs pynwb).")
@SUBJECT
@reading_options
def infer(
    model: str, recording: str, output: str, overwrite: bool, subject: dict[str, str], reading: Reading
) -> None:
    """Infer the hidden neurons' rates in a recording, binned as the model was fitted.

    Writes an .npz (read it with numpy.load; no pickle) holding hidden_rates, the posterior mean of
    each hidden neuron's count per bin (trials, bins, hidden), and hidden_rates_hz, the same in spikes
    per second (divided by the bin size); each with its unit in hidden_rates_unit and
    hidden_rates_hz_unit; bin_size_s and trial_starts_s (s); hidden_labels and visible_units; and
    metadata, a JSON string naming the model file, the recording and the model's settings. A model with
    latent factors (--latent) adds latent_mean and latent_sd (trials, bins, factors: the posterior mean
    and sd of each factor's path, in units of its stationary sd, latent_unit), latent_loading (each
    neuron's loading on each factor, visible then hidden), latent_tau_s and latent_labels.

    An .nwb output is a new NWB file (pip install "spikeglm[nwb]"; the recording is never written to)
    whose processing module "spikeglm" holds the same rates in Hz and the factors' paths as time series
    on the recording's clock (each bin at its centre), the trials' spans, the couplings (with Wald tests
    where the model has standard errors) and the model's settings; it repeats the session's start time
    and subject of an NWB recording. See spikeglm.nwb_results.

    Example: spikeglm infer model.h5 spikeglm/data/example.nwb -o hidden.npz

    Example: spikeglm infer model.h5 spikeglm/data/example.nwb -o rates.nwb
    """
    out = check_output(output, overwrite, (model, recording))
    if subject and out.suffix.lower() != ".nwb":
        raise click.BadParameter("applies to .nwb outputs only", param_hint="--subject")
    fitted = sg.POGLM.load(model)
    units = units_like(fitted, recording, reading.given())
    counts = fitted.bin_like(units)
    sources = {"model": model, "recording": recording}
    if out.suffix.lower() == ".nwb":
        sg.nwb_results.save_results(
            out,
            fitted,
            counts,
            overwrite=overwrite,
            inputs=(model, recording),
            session=units.annotations,
            sources=sources,
            subject=subject,
        )
        click.echo(
            f"hidden rates of {fitted.n_hidden} hidden neurons in {counts.n_trials} trials, in Hz: {out}"
        )
        return
    arrays = hidden_arrays(fitted, counts, sources)
    write_npz(out, arrays, overwrite, (model, recording))
    click.echo(
        f"hidden rates {arrays['hidden_rates'].shape} (trials, bins, hidden), in expected counts per "
        f"{fitted.bin_size_} bin and in Hz: {out}"
    )


def hidden_arrays(model: sg.POGLM, counts: sg.SpikeCounts, sources: dict) -> dict[str, np.ndarray]:
    """What ``infer`` and ``demo`` write of the hidden rates: both units, named, and where they came from."""
    rates = model.infer(counts)
    checked = model.checked_settings()
    metadata = {
        **sources,
        "spikeglm": sg.__version__,
        "bin_size": model.bin_size_,
        "n_hidden": checked.n_hidden,
        "n_latent": checked.n_latent,
        "link": checked.link,
        "variational": checked.variational,
        "trial_length": model.data_.get("trial_length"),
    }
    return {
        **_latent_arrays(model, counts),
        "hidden_rates": rates,
        "hidden_rates_unit": np.array("expected spike count per bin"),
        "hidden_rates_hz": rates / model.bin_seconds,
        "hidden_rates_hz_unit": np.array("Hz (spikes per second)"),
        "bin_size_s": np.float64(model.bin_seconds),
        "trial_starts_s": np.asarray(counts.metadata.get("trial_starts_s", []), dtype=np.float64),
        "hidden_labels": np.array([f"hidden-{k}" for k in range(model.n_hidden)]),
        "visible_units": np.array(model.unit_ids_),
        "metadata": np.array(json.dumps(metadata)),
    }


def _latent_arrays(model: sg.POGLM, counts: sg.SpikeCounts) -> dict[str, np.ndarray]:
    """The latent factors' posterior paths, their unit, loadings and time constants; none without them."""
    network = model.network_
    if network is None or network.loading is None or network.latent_prior is None:
        return {}
    mean, sd = model.infer_latent(counts)
    return {
        "latent_mean": mean,
        "latent_sd": sd,
        "latent_unit": np.array("standard deviations of the factor's stationary prior (unitless)"),
        "latent_loading": network.loading.detach().numpy().astype(np.float64),
        "latent_tau_s": network.latent_prior.tau.detach().numpy().astype(np.float64) * model.bin_seconds,
        "latent_labels": np.array([f"latent-{k}" for k in range(network.n_latent)]),
    }


def write_npz(path: Path, arrays: dict, overwrite: bool, inputs: tuple = ()) -> None:
    """Write ``arrays`` to the .npz file ``path`` at once (see :func:`spikeglm.files.atomic_write`)."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    files.atomic_write(path, write, overwrite=overwrite, inputs=inputs)
