"""The command line, through click's runner and as a real subprocess."""

import subprocess
import sys

from click.testing import CliRunner

import spikeglm as sg
from spikeglm_cli.main import main


def test_demo_writes_its_results(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--epochs", "20", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "test log-likelihood per neuron-bin" in result.output
    for name in ("model.h5", "connectivity.csv", "truth.csv"):
        assert str(out / name) in result.output
    model = sg.POGLM.load(out / "model.h5")
    assert model.n_hidden == 2 and len(model.history_) == 20
    header = (out / "connectivity.csv").read_text().splitlines()[0]
    assert header == ",n0,n1,n2,hidden-0,hidden-1"


def test_python_dash_m_and_version():
    result = subprocess.run(
        [sys.executable, "-m", "spikeglm", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"spikeglm, version {sg.__version__}"
    help_text = subprocess.run(
        [sys.executable, "-m", "spikeglm", "demo", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "Example: spikeglm demo" in help_text
