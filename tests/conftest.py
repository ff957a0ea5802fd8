"""Shared fixtures: data sets simulated once per session, and models fitted once to them.

Every fit made here goes through :func:`fit_poglm`, the one place that knows how settings reach the
estimator; tests that fit on their own can use it too, through the ``fit_poglm`` fixture. Tests of
hostile input run the command line through :func:`run_cli` (a subprocess under a memory cap) and check
its refusal with :func:`assert_refused` (``from conftest import run_cli, assert_refused``).
"""

from __future__ import annotations

import importlib
import os
import resource
import subprocess
import sys

import pytest

import spikeglm as sg


def fit_poglm(counts: sg.SpikeCounts, **settings) -> sg.POGLM:
    """A :class:`~spikeglm.POGLM` with ``settings`` (``n_hidden``, ``epochs``, ``seed``...), fitted to
    ``counts``."""
    return sg.POGLM(**settings).fit(counts)


@pytest.fixture(name="fit_poglm", scope="session")
def _fit_poglm():
    """:func:`fit_poglm`, for tests that fit a model of their own."""
    return fit_poglm


@pytest.fixture(scope="session")
def diffpoglm_with_hidden() -> sg.synthetic.Simulation:
    """The published benchmark's data set 0, with the hidden neurons' counts (``hidden_train``,
    ``hidden_test``).

    3 visible and 2 hidden neurons, 40 training and 20 test trials of 100 bins, sigmoid link
    (:func:`spikeglm.synthetic.network`). Shared: treat it as read-only.
    """
    return sg.synthetic.network(protocol="diffpoglm", seed=0)


@pytest.fixture(scope="session")
def diffpoglm(diffpoglm_with_hidden) -> tuple:
    """``truth, train, test`` of :func:`diffpoglm_with_hidden` (the same simulation)."""
    return tuple(diffpoglm_with_hidden)


@pytest.fixture(scope="session")
def diffpoglm_fitted(diffpoglm) -> sg.POGLM:
    """A POGLM with 2 hidden neurons and the true (sigmoid) link, fitted for 30 epochs to ``diffpoglm``'s
    training trials. Shared: save, score or plot it, but do not refit or change it."""
    _, train, _ = diffpoglm
    return fit_poglm(train, n_hidden=2, link="sigmoid", epochs=30, seed=0)


#: The address space a command run by :func:`run_cli` may take, unless told otherwise: room for torch and
#: the readers, far below what a decompression bomb would need.
CLI_MEMORY = 3 << 30


def run_cli(
    *args: str, memory: int | None = CLI_MEMORY, timeout: float = 300, **options
) -> subprocess.CompletedProcess:
    """``spikeglm ARGS`` as a real subprocess, its address space capped at ``memory`` bytes (None: no cap).

    The cap (``RLIMIT_AS``) turns an allocation the command should have refused into a MemoryError or a
    kill, which :func:`assert_refused` then reports. ``options`` go to :func:`subprocess.run`.
    """

    def cap() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "spikeglm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **options,
    )


def assert_refused(result: subprocess.CompletedProcess, *names: str) -> str:
    """Assert that a command ended with exit 1 and one line on stderr naming each of ``names``.

    Returns that line. A traceback, a kill by a signal, a MemoryError or a second line fails.
    """
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith("spikeglm: error: "), line
    assert "Traceback" not in line and "MemoryError" not in line, line
    for name in names:
        assert name in line, (name, line)
    return line


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the module ``name`` look uninstalled to spikeglm's imports of optional extras (which go through
    ``importlib.import_module``), for the rest of the test."""
    real = importlib.import_module

    def without(module: str, *args):
        if module == name:
            raise ModuleNotFoundError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(importlib, "import_module", without)
