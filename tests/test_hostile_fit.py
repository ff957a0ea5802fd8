"""Fitting settings that would hang or exhaust memory, and the fit command's options: refused up front.

Each refusal is one line naming the data's file, the setting at fault (library name and command-line
option) and what to do; the command line exits 1 with it on stderr and writes nothing.
"""

import json
import resource
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_refused, run_cli

import spikeglm as sg
from spikeglm.cli import main
from spikeglm.cli.app import _warnings_on_one_line
from spikeglm.inference import fit_memory, footprint, n_parameters
from spikeglm.inference.footprint import _DESIGN_TENSORS, _LBFGS_COPIES, MEMORY_PARTS
from spikeglm.memory import available_memory
from spikeglm.selection import cross_validate, largest_candidate


def counts_of(n_trials: int, n_bins: int, n_units: int, source: str = "rec.npz") -> sg.SpikeCounts:
    rng = np.random.default_rng(0)
    return sg.SpikeCounts.from_array(
        rng.poisson(0.1, (n_trials, n_bins, n_units)), "5 ms", metadata={"source": source}
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A small recording (.npz) of 4 units over 10 s, with its bytes, to check that it is left alone."""
    path = tmp_path_factory.mktemp("hostile_fit") / "rec.npz"
    rng = np.random.default_rng(1)
    spikes = [np.sort(rng.uniform(0, 10, 60)) for _ in range(4)]
    sg.save(sg.Recording(spikes, ["a", "b", "c", "d"], 0.0, 10.0), path)
    return path, path.read_bytes()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused_in_process(result, *names: str) -> str:
    """The CliRunner form of :func:`conftest.assert_refused`: exit 1 and one error line naming ``names``."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeglm: error: "), result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def untouched(recording, folder) -> None:
    path, before = recording
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [], list(folder.iterdir())


# ------------------------------------------------------------------ the window
@pytest.mark.parametrize("window", [501, 1_000_000])
def test_a_window_longer_than_the_trials_is_refused_before_fitting(window):
    counts = counts_of(4, 500, 3)
    with pytest.raises(ValueError, match=rf"^rec\.npz: window={window} \(--window\) .* trial \(500 bins\)"):
        sg.POGLM(window=window, epochs=1).fit(counts)
    sg.POGLM(window=500).check_fit(counts)  # as long as the trials: accepted


def test_a_window_longer_than_a_segment_is_refused_naming_the_segment_length():
    counts = counts_of(1, 3000, 2)
    with pytest.raises(ValueError, match=r"window=1500 \(--window\).*segment_bins=1000, --segment-bins"):
        sg.POGLM(window=1500).fit(counts)


def test_the_cli_refuses_a_huge_window_with_one_line(recording, tmp_path):
    path, _ = recording
    out = tmp_path / "out"
    out.mkdir()
    result = run("fit", path, "-o", out / "m.h5", "--window", "1000000", "--trial-length", "2.5 s")
    line = refused_in_process(result, "rec.npz", "--window", "500 bins")
    assert "at most 500" in line
    untouched(recording, out)


# ------------------------------------------------------------------ memory
def test_too_many_hidden_neurons_are_refused_by_their_memory_naming_hidden():
    counts = counts_of(2, 100, 3)
    with pytest.raises(ValueError, match=r"^rec\.npz: the fit would take about .* GiB of memory, more than"):
        sg.POGLM(n_hidden=100_000).fit(counts)
    with pytest.raises(ValueError, match=r"couplings .* n_hidden=99999999999999999999 \(--hidden\)"):
        sg.POGLM(n_hidden=99999999999999999999).fit(counts)


def test_too_many_units_are_refused_naming_the_units_and_the_options_that_choose_them():
    counts = sg.SpikeCounts.from_array(np.zeros((1, 20, 100_000), np.uint8), "5 ms")
    for n_hidden in (0, 2):  # the standard errors of a GLM, or the couplings of a fit with hidden neurons
        with pytest.raises(
            ValueError, match=r"^counts: .*fewer than the 100000 units \(--units, --min-spikes"
        ):
            sg.POGLM(n_hidden=n_hidden).check_fit(counts)


def test_too_many_samples_are_refused_naming_the_part_and_samples_options():
    counts = counts_of(4, 500, 3)
    with pytest.raises(ValueError, match=r"one part of a training step: lower part_bins=.*--samples"):
        sg.POGLM(n_hidden=2, n_samples=10**9).fit(counts)


def test_the_particles_that_score_validation_counts_are_counted(monkeypatch):
    monkeypatch.setattr(sg.inference.footprint, "available_memory", lambda: 2**30)
    counts, held_out = counts_of(4, 50, 3), sg.SpikeCounts.from_array(np.zeros((1000, 50, 3), np.uint8))
    model = sg.POGLM(n_hidden=200, epochs=1)
    model.check_fit(counts)  # the fit alone fits in 1 GiB
    with pytest.raises(ValueError, match=r"^rec\.npz: .* more than the 1 GiB available; .*held-out counts"):
        model.fit(counts, validation=held_out)


def test_the_parameters_counted_are_those_of_the_fitted_model():
    counts = counts_of(3, 60, 4)
    for n_hidden, basis in ((0, "exponential"), (3, "raw")):
        model = sg.POGLM(n_hidden=n_hidden, basis=basis, window=4, epochs=1, init="random").fit(counts)
        held = sum(p.numel() for p in [*model.network_.parameters(), *model.posterior_.parameters()])
        if n_hidden == 0:  # the posterior of no hidden neuron holds nothing
            assert n_parameters(4, 0, model.checked_settings().basis.n_basis) == sum(
                p.numel() for p in model.network_.parameters()
            )
        else:
            assert n_parameters(4, n_hidden, model.checked_settings().basis.n_basis) == held
    parts = fit_memory(4, 3, 4, 4, 1000, 5)
    assert list(parts) == ["parameters", "start", "step"] and set(parts) <= set(MEMORY_PARTS)
    assert parts["parameters"] == n_parameters(4, 3, 4) * 5 * 4  # Adam: value, gradient, 2 moments, best
    scored = fit_memory(4, 3, 4, 4, 1000, 5, score_trials=10, score_bins=500, n_particles=1000)
    assert scored["scoring"] > 10 * 1000 * 4 * 3 * 4  # every particle's window of hidden history


def test_the_covariates_columns_count_in_the_memory_estimate_and_its_refusal(monkeypatch):
    """Each covariate column is a parameter of every neuron, a column of the GLM's curvature blocks and of
    every part of the design; a fit whose covariates tip it over the memory is refused before it starts."""
    from spikeglm.inference.newton import newton_memory

    plain, wide = fit_memory(30, 0, 5, 1, 2**15, 1), fit_memory(30, 0, 5, 1, 2**15, 1, n_covariates=40)
    assert wide["parameters"] - plain["parameters"] == 30 * 40 * _LBFGS_COPIES * 4  # float32 copies
    assert wide["start"] == newton_memory(30, 1 + 30 + 40) > plain["start"]
    assert wide["step"] - plain["step"] == 2**15 * 40 * _DESIGN_TENSORS * 4
    counts = counts_of(4, 400, 3)
    stimulus = np.random.default_rng(0).standard_normal((4, 400))
    covariate = sg.Covariate.binned("stimulus", stimulus, kernel=sg.covariates.Lags("100 ms", 8))
    model = sg.POGLM(n_hidden=0)
    bare = sum(model.fit_memory(4, 400, 3).values())
    monkeypatch.setattr(footprint, "available_memory", lambda: bare * 1.0001)
    model.check_fit(counts)  # fits without the covariate
    with pytest.raises(ValueError, match=r"^rec\.npz: the fit would take about"):
        model.fit(counts, covariates=[covariate])


def test_available_memory_is_what_the_machine_has_and_no_more_than_a_cap_leaves():
    free = available_memory()
    assert 0 < free < 1 << 50
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        mapped = int(next(line.split()[1] for line in status if line.startswith("VmSize:")))
    resource.setrlimit(resource.RLIMIT_AS, (mapped * 1024 + (1 << 30), hard))  # 1 GiB more than mapped
    try:
        capped = available_memory()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert 0 < capped <= min(free, 1 << 30)


PEAK = """
import json, resource, sys
import numpy as np, spikeglm as sg

def fit(n_units, n_hidden, n_trials, n_bins, n_samples):
    counts = sg.SpikeCounts.from_array(np.random.default_rng(0).poisson(0.05, (n_trials, n_bins, n_units)))
    model = sg.POGLM(n_hidden=n_hidden, epochs=1, n_samples=n_samples, init="random", tol=None)
    model.fit(counts)
    return sum(model.fit_memory(n_trials, n_bins, n_units).values())

def high_water():  # this process's own peak: ru_maxrss would keep the parent's, from before exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024

fit(3, 1, 2, 50, 2)  # the fixed cost: torch's threads and kernels, the autograd engine
base = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
estimate = fit(*map(int, sys.argv[1:]))
peak = high_water()
print(json.dumps({"estimate": estimate, "measured": peak - base}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(10, 200, 8, 1000, 10), (300, 0, 2, 200, 5)])
def test_the_estimate_is_within_a_factor_two_of_the_measured_peak(shape):
    """A fit's peak resident memory (over a warmed-up process) against :func:`fit_memory`: with hidden
    neurons, where one step's samples dominate; without, where the standard errors' information does.

    The peak is the process's own high-water mark (``VmHWM``): ``ru_maxrss`` survives ``exec`` and so
    holds the resident size of the test process it was forked from, which late in a full run is larger
    than the fit's (it failed CI at 2.1-2.2 times the estimate). glibc is told to map every block of
    64 KiB or more on its own, so that a freed tensor leaves the process at once: the peak is then the
    live tensors the estimate counts, the same on every run, not what the allocator happened to keep
    of freed ones (1.3-1.5 times the estimate here)."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *map(str, shape)],
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "", "MALLOC_MMAP_THRESHOLD_": "65536"},
        check=True,
    )
    sizes = json.loads(done.stdout)
    assert sizes["estimate"] > 100e6  # large enough for the comparison to mean something
    assert 0.5 < sizes["measured"] / sizes["estimate"] < 2, sizes


# ------------------------------------------------------------------ cross-validation
def test_candidates_beyond_what_the_data_carry_are_refused_before_any_fit():
    counts = counts_of(10, 500, 5)
    model = sg.POGLM(epochs=2)
    largest, why = largest_candidate(counts, model, [counts.select_trials(slice(0, 5))], 1000)
    assert n_parameters(5, largest, 1) <= counts.counts.size < n_parameters(5, largest + 1, 1)
    assert "parameters" in why
    for huge in (1000, 99999999999999999999):
        with pytest.raises(
            ValueError, match=rf"^rec\.npz: candidates \(--candidates\) .* at most {largest}$"
        ):
            cross_validate(counts, (0, huge), 2, model, callback=pytest.fail)


def test_every_fit_of_the_cross_validation_keeps_the_settings_and_device_it_is_given():
    fits = []

    class Watched(sg.POGLM):
        def fit(self, counts, *args, **kwargs):
            window = self.checked_settings().basis.window
            fits.append((self.n_hidden, self.get_params()["epochs"], window, kwargs.get("device")))
            return super().fit(counts, *args, **kwargs)

    counts = counts_of(4, 50, 3)
    cross_validate(counts, (0, 1), 2, Watched(epochs=2, window=3), n_particles=8, device="cpu")
    assert sorted(fits) == [(0, 2, 3, "cpu")] * 2 + [(1, 2, 3, "cpu")] * 2


def test_the_cli_refuses_hidden_auto_candidates_the_data_cannot_carry(recording, tmp_path):
    path, _ = recording
    out = tmp_path / "out"
    out.mkdir()
    for candidates in ("0,1000", "0,99999999999999999999"):
        arguments = ("--hidden", "auto", "--candidates", candidates, "--folds", "2", "--epochs", "2")
        result = run("fit", path, "-o", out / "m.h5", *arguments)
        assert "at most" in refused_in_process(result, "rec.npz", "--candidates")
    untouched(recording, out)


# ------------------------------------------------------------------ the options
@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        (("--candidates", "0,1"), ("--candidates", "--hidden auto")),
        (("--folds", "3"), ("--folds", "--hidden auto")),
        (
            ("--hidden", "1", "--candidates", "0,2", "--folds", "2"),
            ("--candidates and --folds", "--hidden 1"),
        ),
        (("--bin-size", "1e-320s"), ("rec.npz", "--bin-size", "bins")),
        (("--bin-size", "1e-12 s"), ("rec.npz", "--bin-size", "10000000000010 bins")),
    ],
)
def test_options_that_cannot_apply_are_refused_with_one_line(recording, tmp_path, arguments, names):
    path, _ = recording
    out = tmp_path / "out"
    out.mkdir()
    refused_in_process(run("fit", path, "-o", out / "m.h5", *arguments), *names)
    untouched(recording, out)


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (("--candidates", "a"), "--candidates"),
        (("--hidden", "auto", "--candidates", "0,,1"), "--candidates"),
        (("--hidden", "auto", "--candidates", "0,-1"), "--candidates"),
        (("--hidden", "1_0"), "--hidden"),
        (("--hidden", "1.5"), "--hidden"),
        (("--hidden", "٣"), "--hidden"),  # a digit, but not an ASCII one
        (("--hidden", "-1"), "-1 is negative"),
    ],
)
def test_numbers_that_are_not_whole_are_refused_whether_used_or_not(recording, tmp_path, arguments, phrase):
    path, _ = recording
    out = tmp_path / "out"
    out.mkdir()
    result = run("fit", path, "-o", out / "m.h5", *arguments)
    assert result.exit_code == 2 and phrase in result.output and "Traceback" not in result.output
    untouched(recording, out)


def test_bins_that_could_never_be_held_are_refused_by_the_library():
    recording = sg.Recording([[0.1, 0.5]], ["a"], 0.0, 1.0)
    with pytest.raises(ValueError, match=r"bin_size .* makes more than 1e308 bins .*--bin-size"):
        recording.bin("1e-320 s")
    with pytest.raises(ValueError, match=r"1 trial\(s\) x 1\d{12} bins .*\(--bin-size"):
        recording.bin("1e-12 s")


# ------------------------------------------------------------------ warnings
def test_warnings_of_a_command_are_one_line_each():
    with _warnings_on_one_line():
        shown = warnings.formatwarning("first line\n  and more", UserWarning, "/x/y.py", 12, "code()")
    assert shown == "spikeglm: warning: first line and more\n"
    assert "y.py:12: UserWarning: outside" in warnings.formatwarning("outside", UserWarning, "/x/y.py", 12)


# ------------------------------------------------------------------ end to end, under a memory cap
@pytest.mark.slow
def test_the_memory_cases_end_in_one_line_under_a_memory_cap(recording, tmp_path):
    path, _ = recording
    out = tmp_path / "out"
    out.mkdir()
    assert_refused(
        run_cli("fit", str(path), "-o", str(out / "m.h5"), "--hidden", "100000"), "rec.npz", "--hidden"
    )
    # 100,000 units with one spike each: small on disk, 40 GB of couplings
    many = tmp_path / "many.npz"
    rng = np.random.default_rng(2)
    spikes = rng.uniform(0, 1, 100_000)
    sg.save(sg.Recording([[t] for t in spikes], [f"u{k}" for k in range(100_000)], 0.0, 1.0), many)
    before = many.read_bytes()
    result = run_cli("fit", str(many), "-o", str(out / "m.h5"))
    assert_refused(result, "many.npz", "100000 units", "--units")
    assert many.read_bytes() == before
    untouched(recording, out)


@pytest.mark.slow
def test_a_warning_of_the_command_line_is_one_line_end_to_end(tmp_path):
    path = tmp_path / "rec.npz"
    sg.save(sg.Recording([[0.1, 0.5, 0.9], []], ["busy", "silent"], 0.0, 1.0, empty_units="keep"), path)
    result = run_cli(
        "fit", str(path), "-o", str(tmp_path / "m.h5"), "--hidden", "1", "--epochs", "2", "--window", "3"
    )
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "silent" in line]
    assert warned == ["spikeglm: warning: " + warned[0].split("spikeglm: warning: ", 1)[-1]]
    assert ".py:" not in result.stderr and "UserWarning" not in result.stderr
