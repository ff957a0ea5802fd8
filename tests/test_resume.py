"""Checkpoints and resuming: exact from any point, refused when the data or options differ.

The kill test SIGKILLs real fits at random moments, including while a checkpoint is written, and
checks that what is on disk is always whole and that the resumed fit equals the uninterrupted one.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import spikeglm as sg
from spikeglm.files import claim_checkpoint, exclusive_lock
from spikeglm.inference import trainer
from spikeglm.inference.adam import Adam


def counts(seed: int = 0, trials: int = 12) -> sg.SpikeCounts:
    rng = np.random.default_rng(seed)
    return sg.SpikeCounts.from_array(rng.poisson(0.3, (trials, 60, 3)), bin_size="5 ms")


OPTIONS = {"epochs": 6, "batch_size": 5, "n_samples": 2, "seed": 1}  # 3 steps per epoch


def parameters(model: sg.POGLM) -> dict[str, torch.Tensor]:
    state = {f"network.{k}": v for k, v in model.network_.state_dict().items()}
    state.update({f"posterior.{k}": v for k, v in model.posterior_.state_dict().items()})
    return state


def assert_same_fit(a: sg.POGLM, b: sg.POGLM) -> None:
    for (name, x), y in zip(parameters(a).items(), parameters(b).values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    assert [r.objective for r in a.history_] == [r.objective for r in b.history_]


def interrupt(monkeypatch, stop_at_step: int, options: dict, data: sg.SpikeCounts, checkpoint: Path) -> None:
    """Fit with a checkpoint, interrupted before Adam's step number ``stop_at_step`` (as Ctrl-C between
    two steps would)."""
    adam_step = Adam.step
    calls = []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at_step:
            raise KeyboardInterrupt
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        sg.POGLM(**options).fit(data, checkpoint=checkpoint)
    monkeypatch.setattr(Adam, "step", adam_step)


@pytest.mark.parametrize("stop_at_step", [1, 4, 8, 9, 18])
def test_an_interrupt_inside_an_epoch_resumes_exactly(tmp_path, monkeypatch, stop_at_step):
    data = counts()
    uninterrupted = sg.POGLM(n_hidden=1, **OPTIONS).fit(data)
    checkpoint = tmp_path / "m.ckpt.h5"
    interrupt(monkeypatch, stop_at_step, {"n_hidden": 1, **OPTIONS}, data, checkpoint)
    assert len(sg.POGLM.load(checkpoint).history_) == (stop_at_step - 1) // 3
    resumed = sg.POGLM(n_hidden=1, **OPTIONS).fit(data, checkpoint=checkpoint, resume=True)
    assert_same_fit(uninterrupted, resumed)


@pytest.mark.parametrize("stop_at_step", [2, 4, 7])
def test_a_fit_with_factors_alone_resumes_to_the_same_stop(tmp_path, monkeypatch, stop_at_step):
    """Its stopping rule compares each epoch with the one before, segment group by group: the checkpoint
    keeps the groups' sums of the last epoch and of the steps done in this one."""
    data = counts(trials=12)
    options = {**OPTIONS, "epochs": 50, "n_hidden": 0, "n_latent": 1}
    uninterrupted = sg.POGLM(**options).fit(data)
    assert uninterrupted.stopped_.startswith("converged: the objective rose by less than")
    assert stop_at_step <= 3 * len(uninterrupted.history_)  # interrupted before it stops (3 steps an epoch)
    checkpoint = tmp_path / "m.ckpt.h5"
    interrupt(monkeypatch, stop_at_step, options, data, checkpoint)
    resumed = sg.POGLM(**options).fit(data, checkpoint=checkpoint, resume=True)
    assert_same_fit(uninterrupted, resumed)
    assert resumed.stopped_ == uninterrupted.stopped_


@pytest.mark.parametrize("field", ["groups", "last_groups"])
def test_a_checkpoint_whose_group_sums_do_not_fit_is_refused(tmp_path, monkeypatch, field):
    """A checkpoint that passes every check of the file but sums its objective over another number of
    groups of segments than the fit (a forged one) is refused in one line before any step; the checkpoint
    is left as it was."""
    from test_modelfile import _edited

    data = counts(trials=12)
    options = {**OPTIONS, "epochs": 50, "n_hidden": 0, "n_latent": 1}
    checkpoint = tmp_path / "m.ckpt.h5"
    interrupt(monkeypatch, 8, options, data, checkpoint)  # one step into epoch 3: both sums are kept

    def forge(f) -> None:
        extras = json.loads(f["training"].attrs["extras"])
        assert len(extras["partial"][field]) == 12
        extras["partial"][field] = extras["partial"][field][:3]
        f["training"].attrs["extras"] = json.dumps(extras)

    forged = _edited(checkpoint, tmp_path / "forged.ckpt.h5", forge)
    before = forged.read_bytes()
    with pytest.raises(
        ValueError,
        match=r"^resume: the checkpoint's objective is summed over 3 groups of "
        r"segments where this fit has 12: it was not written by this fit$",
    ):
        sg.POGLM(**options).fit(data, checkpoint=forged, resume=True)
    assert forged.read_bytes() == before


def test_an_interrupt_during_an_update_is_delivered_after_it(monkeypatch):
    """A signal that arrives while the parameters change waits until the update is whole."""
    seen = []
    adam_step = Adam.step

    def step(self, *args, **kwargs):
        import signal

        signal.raise_signal(signal.SIGINT)  # arrives mid-update
        seen.append("update finished")
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        sg.POGLM(n_hidden=1, **OPTIONS).fit(counts())
    assert seen == ["update finished"]


def test_a_non_finite_objective_stops_the_fit_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    checkpoint = tmp_path / "m.ckpt.h5"
    real_step = trainer._step
    steps = []

    def poisoned(*args, **kwargs):
        steps.append(1)
        value = real_step(*args, **kwargs)
        return value * np.nan if len(steps) == 8 else value  # epoch 3, step 2

    monkeypatch.setattr(trainer, "_step", poisoned)
    model = sg.POGLM(n_hidden=1, **OPTIONS)
    with pytest.raises(FloatingPointError, match="non-finite at epoch 3, step 2"):
        model.fit(counts(), checkpoint=checkpoint, checkpoint_every=1)
    kept = sg.POGLM.load(checkpoint)
    assert len(kept.history_) == 2
    assert all(torch.isfinite(v).all() for v in parameters(kept).values())


def test_bad_counts_of_epochs_and_steps_are_refused_before_any_work():
    for name, value in [("epochs", 0), ("n_samples", 0), ("batch_size", 0), ("part_bins", 0)]:
        with pytest.raises(ValueError, match=f"{name} must be a whole number >= 1; got 0"):
            sg.POGLM(n_hidden=1, **{name: value}).fit(counts())
    with pytest.raises(ValueError, match="checkpoint_every must be a whole number >= 1; got 0"):
        sg.POGLM(n_hidden=1).fit(counts(), checkpoint_every=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        sg.POGLM(n_hidden=1, temperature=float("nan")).fit(counts())
    with pytest.raises(ValueError, match="n_hidden must be a whole number >= 0; got True"):
        sg.POGLM(n_hidden=True).fit(counts())
    assert sg.POGLM(n_hidden=np.int64(2)).n_hidden == 2


def test_an_existing_checkpoint_needs_resume_or_overwrite(tmp_path):
    checkpoint = tmp_path / "m.ckpt.h5"
    checkpoint.write_text("mine")
    with pytest.raises(FileExistsError, match=r"a checkpoint of an earlier fit exists; .*resume=True"):
        sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint)
    assert checkpoint.read_text() == "mine"
    sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint, checkpoint_every=1, overwrite=True)
    assert len(sg.POGLM.load(checkpoint).history_) == 1  # the earlier file went; the fit's own replaced it


def test_a_checkpoint_is_held_by_one_fit_at_a_time(tmp_path):
    checkpoint = tmp_path / "m.ckpt.h5"
    with exclusive_lock(checkpoint, "fitting"):  # as another process's fit holds it
        with pytest.raises(RuntimeError, match="another process is fitting with this checkpoint"):
            sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint)
    assert list(tmp_path.iterdir()) == []
    # A caller that holds the checkpoint for longer than the fit (the command line) is not refused by it.
    with claim_checkpoint(checkpoint, resume=False, overwrite=False):
        sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint, checkpoint_every=1)
        with pytest.raises(FileExistsError, match="a checkpoint of an earlier fit exists"):
            sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint)
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt.h5"]  # the lock went with the claim


@pytest.mark.slow
def test_a_lock_held_by_another_process_refuses_at_once_and_goes_with_it(tmp_path):
    output = tmp_path / "m.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from spikeglm.files import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], 'writing it'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            str(output),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(
            RuntimeError, match=r"m\.h5: another process is writing it \(it holds .*\.m\.h5\.lock\)"
        ):
            with exclusive_lock(output, "writing it"):
                pass
        assert time.monotonic() - started < 5  # refused at once, not after waiting
    finally:
        holder.kill()  # as a fit killed while it holds the lock: the lock file stays, unlocked
        holder.wait()
        holder.stdout.close()
    assert [p.name for p in tmp_path.iterdir()] == [".m.h5.lock"]
    with exclusive_lock(output, "writing it"):  # the killed holder does not block the next run
        with pytest.raises(RuntimeError, match="another process is writing it"):
            with exclusive_lock(output, "writing it"):  # nor does a second holder in one process pass
                pass
    assert list(tmp_path.iterdir()) == []  # removed on release


def test_resume_names_each_difference(tmp_path):
    checkpoint = tmp_path / "m.ckpt.h5"
    sg.POGLM(n_hidden=1, epochs=1).fit(counts(), checkpoint=checkpoint, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"n_hidden 1 \(now 2\); temperature 0.5 \(now 0.3\)"):
        sg.POGLM(n_hidden=2, temperature=0.3, epochs=2).fit(counts(), checkpoint=checkpoint, resume=True)
    with pytest.raises(ValueError, match="counts_sha256 differs"):
        sg.POGLM(n_hidden=1, epochs=2).fit(counts(seed=5), checkpoint=checkpoint, resume=True)
    resumed = sg.POGLM(n_hidden=1, epochs=2).fit(counts(), checkpoint=checkpoint, resume=True)
    assert len(resumed.history_) == 2


@pytest.mark.slow
def test_killed_fits_resume_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a fit at random moments (checkpoints every epoch), then resume; 5 kills, then to the end."""
    recording = tmp_path / "rec.npz"
    rng = np.random.default_rng(3)
    times = {f"u{k}": np.sort(rng.uniform(0, 20, 200)) for k in range(4)}
    sg.save(sg.Recording.from_spike_times(times, t_start=0, t_stop=20), recording)
    out = tmp_path / "m.h5"
    checkpoint = Path(str(out) + ".ckpt.h5")
    options = ["--hidden", "1", "--trial-length", "1 s", "--samples", "2", "--batch-size", "4"]
    options += ["--epochs", "800", "--tol", "0", "--checkpoint-every", "1", "--seed", "2"]
    command = [sys.executable, "-m", "spikeglm", "fit", str(recording), "-o", str(out), *options, "--resume"]
    kills = np.random.default_rng(7)
    for run in range(5):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if run == 0:
            time.sleep(kills.uniform(0.5, 2.0))  # while it starts up: nothing to keep yet
        else:  # once this run has written a checkpoint of its own, at a random moment after
            before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and process.poll() is None:
                if checkpoint.exists() and checkpoint.stat().st_mtime_ns != before:
                    break
                time.sleep(0.01)
            time.sleep(kills.uniform(0.0, 1.0))
        process.kill()
        process.wait()
        assert not out.exists(), "the fit finished before it was killed: make it longer"
        if checkpoint.exists():  # always a whole file: the previous checkpoint or the new one
            sg.POGLM.load(checkpoint)
    assert checkpoint.exists(), "no checkpoint was ever written: kill later"
    done = len(sg.POGLM.load(checkpoint).history_)
    assert 0 < done < 800
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert not checkpoint.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "rec.npz"]  # no temporaries, no locks
    data = sg.load(recording).bin("5 ms", trial_length="1 s")
    reference = sg.POGLM(n_hidden=1, n_samples=2, batch_size=4, epochs=800, seed=2, tol=None).fit(data)
    assert_same_fit(reference, sg.POGLM.load(out))


def test_a_fit_resumed_after_its_learning_rate_was_lowered_goes_on_at_the_lowered_rate(tmp_path, monkeypatch):
    # tol so large that every epoch after the first is flat: the rate is lowered after epoch 11 and the
    # fit stops after epoch 21; it is interrupted in epoch 16, after the lowering.
    options = {**OPTIONS, "epochs": 100, "tol": 10.0}
    data = counts()
    uninterrupted = sg.POGLM(n_hidden=1, **options).fit(data)
    assert len(uninterrupted.history_) == 21
    assert uninterrupted.stopped_.endswith("at learning rate 0.01 (lowered from 0.05)")
    checkpoint = tmp_path / "m.ckpt.h5"
    adam_step = Adam.step
    rates, interrupted = [], []

    def step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        if len(rates) == 3 * 15 + 2 and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(Adam, "step", step)
    with pytest.raises(KeyboardInterrupt):
        sg.POGLM(n_hidden=1, **options).fit(data, checkpoint=checkpoint)
    assert rates[0] == 0.05 and rates[3 * 11 - 1] == 0.05 and rates[3 * 11] == pytest.approx(0.01)
    rates.clear()
    resumed = sg.POGLM(n_hidden=1, **options).fit(data, checkpoint=checkpoint, resume=True)
    assert rates[0] == pytest.approx(0.01)
    assert_same_fit(uninterrupted, resumed)
    assert resumed.stopped_ == uninterrupted.stopped_
