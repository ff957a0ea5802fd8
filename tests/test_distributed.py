"""Data-parallel fitting: two processes launched by torchrun (gloo) give the single-process fit."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import spikeglm as sg

# A continuous recording of 1,200 bins, fitted in segments of 100 bins (12 segments), 2 segments per
# part. Batches of 5 segments give steps of 3, 3 and 1 parts: the processes get unequal shares, and in
# the last step the second process has none. Checkpoints every 10 epochs: only the first process writes.
OPTIONS = [
    "--hidden", "1", "--epochs", "30", "--segment-bins", "100", "--part-bins", "250",
    "--batch-size", "5", "--device", "cpu", "--seed", "3", "--checkpoint-every", "10", "--init", "random",
]  # fmt: skip
# A random start: the GLM start's principal components of these 6 neurons have nearly equal leading
# variances, so that the rounding of sums taken in another order turns them visibly.


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    _, counts, _ = sg.synthetic.network(
        "sparse-ei", seed=2, n_visible=6, n_hidden=1, n_train=1, n_test=1, n_bins=1200
    )
    path = tmp_path_factory.mktemp("distributed") / "long.npz"
    sg.save(sg.Recording.from_counts(counts), path)
    return path


def _run(command: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _parameters(path) -> dict[str, np.ndarray]:
    model = sg.POGLM.load(path)
    return {
        f"{prefix}.{name}": value.numpy()
        for prefix, module in (("network", model.network_), ("posterior", model.posterior_))
        for name, value in module.state_dict().items()
    }


@pytest.mark.slow
def test_two_processes_fit_what_one_fits(recording, tmp_path):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    _run([sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(one), *OPTIONS], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = _run([*launch, "-m", "spikeglm", "fit", str(recording), "-o", str(two), *OPTIONS], tmp_path)
    assert "in 2 processes" in result.stdout
    assert result.stdout.count("model: ") == 1  # only the first process reports and writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "two.h5"]  # no checkpoint left over
    single, parallel = _parameters(one), _parameters(two)
    assert single.keys() == parallel.keys()
    for name in single:
        np.testing.assert_allclose(parallel[name], single[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # The fit moved far from its start, so the agreement is not that of two unfitted models.
    history = sg.POGLM.load(one).history_
    assert history[-1].objective > history[0].objective + 0.003


@pytest.mark.slow
@pytest.mark.parametrize("model", [["--hidden", "0"], ["--hidden", "1"], ["--hidden", "0", "--latent", "1"]])
def test_two_processes_fit_a_recording_of_one_part(recording, tmp_path, model):
    """The whole recording in one part: the second process has none in the GLM solve (the fit itself,
    or the start of one with a hidden neuron or a factor, and the final solve of the factor's couplings)
    and must still join every sum of the gradients."""
    options = [*model, "--epochs", "3", "--device", "cpu", "--seed", "3", "--tol", "0"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    _run([sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(one), *options], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launch, "-m", "spikeglm", "fit", str(recording), "-o", str(two), *options], tmp_path)
    single, parallel = _parameters(one), _parameters(two)
    for name in single:
        np.testing.assert_allclose(parallel[name], single[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_two_processes_share_out_the_folds_of_the_choice_of_hidden_neurons(recording, tmp_path):
    """``--hidden auto`` under torchrun: each process fits and scores whole folds on its own (the first
    prints only its own), the scores are the single process's, and both fit the choice together."""
    options = [
        "--hidden", "auto", "--candidates", "0,1", "--folds", "3", "--epochs", "3", "--tol", "0",
        "--segment-bins", "100", "--device", "cpu", "--seed", "3",
    ]  # fmt: skip
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    _run([sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(one), *options], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = _run([*launch, "-m", "spikeglm", "fit", str(recording), "-o", str(two), *options], tmp_path)
    printed = [line for line in result.stdout.splitlines() if "hidden, fold" in line]
    assert len(printed) == 4 and not any("fold 2/3" in line for line in printed)  # folds 1 and 3
    chosen = [sg.POGLM.load(path) for path in (one, two)]
    np.testing.assert_allclose(chosen[1].selection_.fold_scores, chosen[0].selection_.fold_scores, atol=1e-9)
    assert chosen[1].n_hidden == chosen[0].n_hidden
    single, parallel = _parameters(one), _parameters(two)
    for name in single:
        np.testing.assert_allclose(parallel[name], single[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_two_processes_share_out_the_folds_of_the_choice_of_the_basis(recording, tmp_path):
    """``--window auto`` under torchrun: each process scores its share of the folds alone; the table and
    the choice are the single process's."""
    options = ["--hidden", "0", "--window", "auto", "--segment-bins", "100", "--device", "cpu"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    _run([sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(one), *options], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launch, "-m", "spikeglm", "fit", str(recording), "-o", str(two), *options], tmp_path)
    tables = [sg.POGLM.load(path).basis_choice_ for path in (one, two)]
    np.testing.assert_allclose(tables[1]["scores"], tables[0]["scores"], rtol=0, atol=1e-9)
    assert tables[1]["candidates"] == tables[0]["candidates"] and tables[1]["chosen"] == tables[0]["chosen"]


def test_unavailable_device_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        sg.parallel.choose_device("cuda")
    counts = sg.SpikeCounts.from_array(np.ones((2, 20, 3)), "5 ms")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        sg.POGLM(n_hidden=1, epochs=1).fit(counts, device="cuda:0")


def test_device_choice():
    assert sg.parallel.choose_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert sg.parallel.choose_device(None).type == expected
    assert sg.parallel.choose_device("auto").type == expected


@pytest.mark.slow
@pytest.mark.parametrize("model", [["--hidden", "0"], ["--hidden", "1", "--epochs", "3", "--tol", "0"]])
def test_two_processes_fit_with_a_covariate_what_one_fits(recording, tmp_path, model):
    """The covariates' columns are cut and shared with the counts: a GLM (Newton's solve, the kernels'
    errors with it) and a fit with a hidden neuron give the single process's parameters."""
    bin_seconds = sg.load(recording).bin("5 ms").bin_seconds
    times = np.arange(0.0, 1300 * bin_seconds, bin_seconds / 2)
    signal = tmp_path / "drive.csv"
    signal.write_text("time,drive\n" + "\n".join(f"{t:.5f},{np.sin(7 * t):.6f}" for t in times))
    options = [
        *model, "--bin-size", "5 ms", "--segment-bins", "400", "--part-bins", "850", "--device", "cpu",
        "--seed", "3", "--covariate", f"drive={signal}@lags(window=20 ms, n_basis=2)",
    ]  # fmt: skip
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    _run([sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(one), *options], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launch, "-m", "spikeglm", "fit", str(recording), "-o", str(two), *options], tmp_path)
    single, parallel = _parameters(one), _parameters(two)
    assert "network.covariate_weight" in single
    for name in single:
        np.testing.assert_allclose(parallel[name], single[name], rtol=1e-4, atol=1e-5, err_msg=name)
    if model[1] == "0":  # the GLM's kernels have standard errors, from information summed over processes
        kernels = [sg.POGLM.load(path).connectivity().metadata["covariates"][0] for path in (one, two)]
        np.testing.assert_allclose(kernels[1]["se"], kernels[0]["se"], rtol=1e-4)


def _one_and_two(script: str, recording, tmp_path, part_bins: int) -> tuple:
    """What ``script`` saves (its arguments: the recording, the output, the part size) run in one process
    and launched on two by torchrun."""
    path = tmp_path / "script.py"
    path.write_text(script)
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    _run([sys.executable, str(path), str(recording), str(one), str(part_bins)], tmp_path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launch, str(path), str(recording), str(two), str(part_bins)], tmp_path)
    return np.load(one), np.load(two)


SOLVE = """
import sys
import numpy as np
import torch
import spikeglm as sg
from spikeglm.inference import solve_glm
from spikeglm.inference.glm import _Closure, mean_log_likelihood
from spikeglm.inference.whitening import Whitening
from spikeglm.model import Network, inverse_link
from spikeglm.segments import Segments

counts = torch.as_tensor(sg.load(sys.argv[1]).bin("5 ms").counts, dtype=torch.float32)
data = Segments(counts, length=100, context=5)
with sg.parallel.distributed("cpu"):
    network = Network(counts.shape[-1], 0, sg.basis.get("raised-cosine", window=8, n_basis=2))
    with torch.no_grad():
        network.bias.copy_(inverse_link("softplus", counts.mean((0, 1))))
    closure = _Closure(network, data, int(sys.argv[3]), None, network.glm_parameters(), None)
    factor = Whitening.of(network, data, closure.mine, closure.scale).factor.numpy()
    reason = solve_glm(network, data, solver="lbfgs", part_bins=int(sys.argv[3]))[1]
    assert reason.startswith("converged"), reason
    value = mean_log_likelihood(network.double(), data)
    if sg.parallel.rank() == 0:
        weight, bias = network.weight.detach().numpy(), network.bias.detach().numpy()
        np.savez(sys.argv[2], factor=factor, weight=weight, bias=bias, value=value)
"""


@pytest.mark.slow
@pytest.mark.parametrize("part_bins", [250, 100_000])
def test_two_processes_solve_in_whitened_coordinates_what_one_solves(recording, tmp_path, part_bins):
    """L-BFGS's whitening sums the design's moments over the processes' parts (with a part each, and
    with the whole recording in one part, where the second process has none): its factor is the single
    process's, and so is the solution, to the solve's own precision (it stops where an iteration gains
    less than 1e-9 nats per spike: the log-likelihood to 1e-8, the least determined couplings of these
    1,200 bins to a few hundredths, as far as either ends from Newton's optimum)."""
    single, parallel = _one_and_two(SOLVE, recording, tmp_path, part_bins)
    np.testing.assert_allclose(parallel["factor"], single["factor"], rtol=1e-6, atol=1e-9)
    assert np.abs(single["weight"]).max() > 0.1  # solved, not the start
    assert abs(float(parallel["value"]) - float(single["value"])) < 1e-8
    for name in ("weight", "bias"):
        np.testing.assert_allclose(parallel[name], single[name], rtol=0, atol=0.05, err_msg=name)


GROUP_LASSO = """
import sys
import numpy as np
import torch
import spikeglm as sg
from spikeglm.inference import newton, solve_glm
from spikeglm.inference.penalty import GroupLasso
from spikeglm.model import Network, inverse_link
from spikeglm.segments import Segments

counts = torch.as_tensor(sg.load(sys.argv[1]).bin("5 ms").counts, dtype=torch.float32)
data = Segments(counts, length=100, context=5)
newton.NEWTON_COLUMNS = 1  # every network beyond exact Newton: the design's curvature
with sg.parallel.distributed("cpu"):
    network = Network(counts.shape[-1], 0, sg.basis.get("raised-cosine", window=8, n_basis=2))
    with torch.no_grad():
        network.bias.copy_(inverse_link("softplus", counts.mean((0, 1))))
    records, reason = solve_glm(network, data, part_bins=int(sys.argv[3]), penalty=GroupLasso(2e-3))
    assert "proximal quasi-Newton" in reason, reason
    if sg.parallel.rank() == 0:
        weight, bias = network.weight.detach().numpy(), network.bias.detach().numpy()
        np.savez(sys.argv[2], weight=weight, bias=bias, value=records[-1].objective)
"""


@pytest.mark.slow
@pytest.mark.parametrize("part_bins", [250, 100_000])
def test_two_processes_solve_the_group_lasso_by_the_designs_curvature_as_one_does(
    recording, tmp_path, part_bins
):
    """The group lasso's proximal quasi-Newton solve sums the design's correlations, the gradients and the
    curvature's diagonals over the processes (with a part each, and with one process holding no part):
    the single process's solution, to the solve's tolerance, with the same filters set to zero."""
    single, parallel = _one_and_two(GROUP_LASSO, recording, tmp_path, part_bins)
    zero = np.linalg.norm(single["weight"], axis=-1) == 0
    assert zero.any() and not zero.all()  # the strength drops some filters and keeps others
    np.testing.assert_array_equal(np.linalg.norm(parallel["weight"], axis=-1) == 0, zero)
    assert abs(float(parallel["value"]) - float(single["value"])) < 1e-10
    for name in ("weight", "bias"):
        np.testing.assert_allclose(parallel[name], single[name], rtol=0, atol=1e-4, err_msg=name)
