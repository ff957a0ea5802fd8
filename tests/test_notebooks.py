"""The analysis notebooks: each one runs from top to bottom without an error, and none is stored with outputs.

The notebooks run in a Jupyter kernel of the interpreter that runs the tests (so in the project's virtual
environment, with ``ipykernel`` from the ``dev`` extra), with the repository root as the working directory
so that their relative paths (such as ``../shared/data``) resolve. Each run notebook is written, with its
outputs, to ``build/notebooks/``, where the documentation site (``make docs``) renders it from, so that the
site shows the figures without running the notebooks a second time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Where each notebook is written once it has run, with its outputs (read by docs/tools/hooks.py).
EXECUTED = ROOT / "build" / "notebooks"
CELL_TIMEOUT_S = 600

nbformat = pytest.importorskip("nbformat")


def _ids(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def test_notebooks_are_present() -> None:
    assert NOTEBOOKS, f"no notebooks found in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs", []) == [], f"{path.name}: code cell {index} has stored outputs"
        assert cell.get("execution_count") is None, f"{path.name}: code cell {index} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    # A kernelspec of this very interpreter (the virtual environment's python), in a temporary folder:
    # the kernel cannot pick up another python from a kernelspec installed elsewhere on the machine, and
    # no kernelspec install step is needed.
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (spikeglm tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    kernel_manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(ROOT)}},
        allow_errors=False,
        coalesce_streams=True,  # a progress bar's redrawn frames kept as Jupyter shows them: the last
    )
    try:
        client.execute(cwd=str(ROOT))
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed:\n{error}")
    EXECUTED.mkdir(parents=True, exist_ok=True)
    partial = EXECUTED / f".{path.name}.partial"
    nbformat.write(notebook, partial)
    partial.replace(EXECUTED / path.name)  # whole or not at all, should the run be killed
