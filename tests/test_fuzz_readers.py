"""Damaged files of every format the readers take: truncated, and with bytes flipped at random (seeded).

Each damaged input must either read as a recording or be refused with one line naming the file: no other
exception, no crash, no hang, and no allocation beyond a cap (conftest's CLI_MEMORY), whatever the damage.
The inputs are the small valid files of the reader tests, written afresh.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import CLI_MEMORY
from test_io import write_pynwb
from test_readers import TIMES, id_time_rows, write_phy, write_text_units, write_v73

import spikeglm as sg

#: Damaged copies tried per format.
N_CASES = 300
#: The longest the damaged copies of one format may take to read, in seconds.
PATIENCE = 120


def _nwb(folder: Path) -> Path:
    path = folder / "rec.nwb"
    write_pynwb(path)
    return path


def _mat_v5(folder: Path, compressed: bool) -> Path:
    path = folder / ("zipped.mat" if compressed else "plain.mat")
    cells = np.empty((1, len(TIMES)), dtype=object)
    for k, times in enumerate(TIMES.values()):
        cells[0, k] = times[:, None]
    scipy.io.savemat(path, {"spikes": id_time_rows(), "cells": cells}, do_compression=compressed)
    return path


def _mat_v73(folder: Path) -> Path:
    path = folder / "v73.mat"
    write_v73(path, {"units": {f"c{unit}": times for unit, times in TIMES.items()}, "label": "session"})
    return path


def _npz(folder: Path) -> Path:
    path = folder / "rec.npz"
    recording = sg.Recording(list(TIMES.values()), list(TIMES), trials=[[0.0, 1.0], [1.0, 3.0]])
    sg.io.save(recording, path)
    return path


def _csv(folder: Path) -> Path:
    path = folder / "rec.csv"
    sg.io.save(sg.Recording(list(TIMES.values()), list(TIMES)), path)
    return path


def _text(folder: Path) -> Path:
    return write_text_units(folder / "cells")


def _phy(folder: Path) -> Path:
    write_phy(folder / "sorting")
    return folder / "sorting"


#: format -> a function that writes a small valid input in a folder and returns its path.
INPUTS = {
    "nwb": _nwb,
    "mat-v5": lambda folder: _mat_v5(folder, compressed=False),
    "mat-v5-compressed": lambda folder: _mat_v5(folder, compressed=True),
    "mat-v7.3": _mat_v73,
    "npz": _npz,
    "csv": _csv,
    "text": _text,
    "phy": _phy,
}
#: The options each format is read with (the example times are in seconds; text in ms).
OPTIONS = {
    "text": {"time_unit": "ms"},
    "mat-v5": {"variable": "spikes"},
    "mat-v5-compressed": {"variable": "spikes"},
}


def _damage(path: Path, rng: np.random.Generator) -> Path:
    """Truncate ``path`` (a file, or one file of a folder) or flip some of its bytes; returns that file."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    target = files[rng.integers(len(files))]
    data = bytearray(target.read_bytes())
    if rng.random() < 0.3 or len(data) < 2:
        data = data[: rng.integers(len(data))]
    else:
        places = rng.integers(len(data), size=rng.integers(1, 9))
        for place in places:
            data[place] ^= int(rng.integers(1, 256))
    target.write_bytes(bytes(data))
    return target


def fuzz(name: str, folder: Path) -> dict:
    """Damage ``N_CASES`` copies of the ``name`` input and read each: the outcomes, and what went wrong."""
    (folder / "original").mkdir(parents=True)
    original = INPUTS[name](folder / "original")
    sg.load(original, **OPTIONS.get(name, {}))  # the undamaged input reads
    rng = np.random.default_rng(list(INPUTS).index(name))
    outcomes = {"read": 0, "refused": 0, "failures": []}
    for case in range(N_CASES):
        copy = folder / f"case{case}"
        shutil.copytree(original.parent, copy)
        path = copy / original.name
        target = _damage(path, rng)
        failure = _outcome(path, target, OPTIONS.get(name, {}), outcomes)
        if failure:
            outcomes["failures"].append(f"case {case}, {target.name} damaged: {failure}")
        shutil.rmtree(copy)
    return outcomes


def _outcome(path: Path, target: Path, options: dict, outcomes: dict) -> str | None:
    """Read ``path``; count the outcome, and say what was wrong with it (None if nothing)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sg.load(path, read_limit="256 MB", **options)
            outcomes["read"] += 1
        except ValueError as error:
            outcomes["refused"] += 1
            message = str(error).strip()
            if "\n" in message or not (path.name in message or target.name in message):
                return f"a refusal not in one line naming the file: {message!r}"
        except Exception as error:  # any other exception is the failure to report
            return f"{type(error).__name__}: {error}"
    lines = [str(warning.message) for warning in caught if "\n" in str(warning.message).strip()]
    return f"a warning in several lines: {lines[0]!r}" if lines else None


@pytest.mark.parametrize("name", INPUTS)
def test_damaged_inputs_are_read_or_refused_in_one_line(tmp_path, name):
    # In a process of its own, so that a crash, a hang or an allocation past the cap is reported as such.
    program = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_fuzz_readers; "
        f"print(json.dumps(test_fuzz_readers.fuzz({name!r}, __import__('pathlib').Path({str(tmp_path)!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY, CLI_MEMORY)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.splitlines()[-1])
    assert not outcomes["failures"], "\n".join(outcomes["failures"])
    assert outcomes["refused"] > 0, outcomes  # the damage was seen at least once
