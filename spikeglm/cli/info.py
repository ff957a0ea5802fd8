"""``spikeglm info``: what a recording holds, and what reading it assumed."""

from __future__ import annotations

import click

import spikeglm as sg
from spikeglm.cli.app import main
from spikeglm.cli.options import Reading, reading_options
from spikeglm.io.nwb import tables_listing

#: Notes on suspicious units that ``info`` prints before it says how many more there are.
_NOTES_SHOWN = 12
#: Units whose spikes and rates ``info`` lists before it says how many more there are.
_UNITS_SHOWN = 200


@main.command()
@click.argument("recording", type=click.Path())
@click.option("--bin-size", default="5 ms", show_default=True, help="Bin size for the count summary.")
@reading_options
def info(recording: str, bin_size: str, reading: Reading) -> None:
    """Describe a recording: what was assumed in reading it, units, spikes, duration, trials, firing
    rates, and units that look suspicious (few spikes; spikes repeated at one time; many spikes at the same
    times as another unit). Only the first 200 units are listed.

    RECORDING is a file, a phy/Kilosort folder, a folder of per-unit text files, or a quoted glob
    pattern of such files.

    Example: spikeglm info spikeglm/data/example.nwb

    Example: spikeglm info "cells/cell*.txt.gz" --time-unit ms --t-start 0 --t-stop 5400
    """
    rec = sg.load(recording, **reading.given())
    duration = float(rec.duration.rescale("s").magnitude)
    click.echo(
        f"{recording}: {rec.n_units} units, {int(rec.n_spikes.sum())} spikes, {duration:g} s "
        f"({float(rec.t_start):g} s to {float(rec.t_stop):g} s)"
    )
    for subject, assumption in rec.annotations.get("assumed", {}).items():
        click.echo(f"  {subject}: {assumption}")
    units_tables = rec.annotations.get("units_tables") or {}
    if units_tables:
        click.echo("units tables: " + tables_listing(units_tables))
    tables = rec.annotations.get("interval_tables") or {}
    if tables:
        click.echo(
            "interval tables: "
            + ", ".join(
                f"{name} ({table['rows']} rows, {table['start_s']:g} to {table['stop_s']:g} s)"
                if table["rows"]
                else f"{name} (empty)"
                for name, table in tables.items()
            )
        )
    if rec.trials is not None:
        lengths = rec.trials[:, 1] - rec.trials[:, 0]
        click.echo(f"trials: {len(rec.trials)}, {lengths.min():g} to {lengths.max():g} s long")
    shown = rec.select_units(rec.unit_ids[:_UNITS_SHOWN].tolist())
    counts = shown.bin(bin_size)  # only the units shown: the counts of every unit could be gigabytes
    click.echo(f"binned at {bin_size}: {counts.n_trials} trials x {counts.n_bins} bins")
    width = max(len(u) for u in shown.unit_ids)
    places = [_place(notes) for notes in shown.unit_annotations]
    where = "  electrode (group)" if any(places) else ""
    click.echo(f"{'unit':<{width}}  {'spikes':>7}  {'rate (Hz)':>9}  {'per bin':>7}{where}")
    per_bin = counts.counts.mean(axis=(0, 1))
    for unit, n, mean, place in zip(shown.unit_ids, shown.n_spikes, per_bin, places, strict=True):
        line = f"{unit:<{width}}  {int(n):>7}  {n / duration:>9.2f}  {mean:>7.3f}"
        click.echo(f"{line}  {place}".rstrip() if where else line)
    if rec.n_units > _UNITS_SHOWN:
        click.echo(f"... and {rec.n_units - _UNITS_SHOWN} more units (--min-spikes or fit's --units choose)")
    notes = rec.suspicious_units()
    if notes:
        click.echo(
            f"suspicious units ({len(notes)} note(s); --min-spikes, --min-rate or fit's --units "
            "leave units out):"
        )
        for note in notes[:_NOTES_SHOWN]:
            click.echo(f"  {note}")
        if len(notes) > _NOTES_SHOWN:
            click.echo(f"  ... and {len(notes) - _NOTES_SHOWN} more")


def _place(notes: dict) -> str:
    """Where a unit was recorded, from its annotations: its electrodes' location (and group), or ""."""
    location, group = notes.get("location"), notes.get("electrode_group")
    if location is None:
        return ""
    return f"{location} ({group})" if group is not None else str(location)
