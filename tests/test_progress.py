"""Progress bars (spikeglm.progress): drawn where someone watches, by fits, folds, refits and jitter tests."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import spikeglm as sg
from spikeglm import progress
from spikeglm.cli.progress import progress_line


class _Terminal:
    """A standard error that says it is a terminal and keeps what is written to it."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_no_bar_is_drawn_where_no_one_watches(capsys):
    assert not progress.watched()  # pytest captures standard error: not a terminal
    with progress.progress_bar(5, "work", "step") as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_a_bar_is_drawn_on_a_terminal_and_in_a_notebook_but_not_off_the_main_process(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress.watched()
    with progress.progress_bar(4, "refits", "refit") as bar:
        bar.update(4)
    assert "refits" in terminal.text and "4/4" in terminal.text
    monkeypatch.setattr(sg.parallel, "is_main", lambda: False)
    assert not progress.watched()
    monkeypatch.undo()

    kernel_shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel_shell))
    assert progress.watched()  # a Jupyter kernel, though its standard error is no terminal
    terminal_shell = types.SimpleNamespace()  # IPython in a terminal has no kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: terminal_shell))
    assert not progress.watched()


def test_show_forces_the_bar_either_way(monkeypatch, capsys):
    with progress.progress_bar(2, "forced", "step", show=True) as bar:
        bar.update(2)
    assert "forced" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with progress.progress_bar(2, "hidden", "step", show=False) as bar:
        bar.update(2)
    assert sys.stderr.text == ""


def test_a_fit_draws_its_epochs_and_a_glm_its_iterations(diffpoglm, capsys):
    _, train, _ = diffpoglm
    sg.POGLM(n_hidden=1, epochs=6, seed=0, tol=None).fit(train, progress=True)
    err = capsys.readouterr().err
    assert "fit" in err and "6/6" in err and "objective=" in err
    glm = sg.POGLM(n_hidden=0).fit(train, progress=True)
    err = capsys.readouterr().err
    assert "GLM fit" in err and f"{len(glm.history_)}it " in err
    stopped = sg.POGLM(n_hidden=1, epochs=500, seed=0).fit(train, progress=True)
    epochs = len(stopped.history_)
    assert epochs < 500 and "100%" in capsys.readouterr().err.splitlines()[-1]  # ended by its stopping rule
    sg.POGLM(n_hidden=0).fit(train, progress=False)
    assert capsys.readouterr().err == ""


def test_the_refitting_procedures_draw_one_bar_each_and_none_for_their_fits(diffpoglm, capsys):
    _, train, _ = diffpoglm
    model = sg.POGLM(n_hidden=0).fit(train, progress=False)
    sg.bootstrap_se(model, train, n_boot=2, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap" in err and "2/2" in err and "GLM fit" not in err

    sg.selection.cross_validate(train, (0,), 2, sg.POGLM(n_hidden=0), n_particles=10, progress=True)
    err = capsys.readouterr().err
    assert "cross-validation" in err and "2/2" in err and "GLM fit" not in err

    sg.select_hidden(train, (0,), 2, model=sg.POGLM(n_hidden=0), n_particles=10, progress=False)
    assert capsys.readouterr().err == ""


def test_the_jitter_tests_draw_one_step_per_presynaptic_neuron(diffpoglm, capsys):
    _, train, _ = diffpoglm
    connectivity = sg.POGLM(n_hidden=0).fit(train, progress=False).connectivity()
    table = connectivity.significance(method="jitter", counts=train, n_jitter=3, progress=True)
    n = train.n_units
    err = capsys.readouterr().err
    assert "jitter tests" in err and f"{n}/{n}" in err
    assert np.isnan(table["p"][table["self"]]).all()


def test_the_command_line_logs_progress_only_where_no_bar_is_drawn(monkeypatch):
    model = sg.POGLM(n_hidden=1)
    assert progress_line(model) is not None  # standard error captured: lines in the log
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress_line(model) is None  # a terminal: the library's bar


@pytest.mark.parametrize("total", [None, 3])
def test_a_bar_closes_when_its_loop_breaks_off(total):
    with pytest.raises(KeyboardInterrupt), progress.progress_bar(total, "work", "step", show=True) as bar:
        bar.update()
        raise KeyboardInterrupt
    assert bar.disable  # tqdm marks a closed bar disabled
