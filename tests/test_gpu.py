"""Fits on a CUDA device give the CPU's answer and come back on the CPU; skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spikeglm as sg

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device on this machine: the GPU path is checked where one is present",
)


def test_a_glm_on_the_gpu_reaches_the_cpus_optimum(diffpoglm):
    _, train, test = diffpoglm
    on_cpu = sg.POGLM(n_hidden=0).fit(train, device="cpu", progress=False)
    on_gpu = sg.POGLM(n_hidden=0).fit(train, device="cuda", progress=False)
    assert on_gpu.network_.bias.device.type == "cpu"  # handed back on the CPU
    np.testing.assert_allclose(on_gpu.connectivity().strength, on_cpu.connectivity().strength, atol=1e-4)
    np.testing.assert_allclose(on_gpu.strength_se_, on_cpu.strength_se_, rtol=1e-3)
    assert abs(on_gpu.score(test) - on_cpu.score(test)) < 1e-6


def test_a_fit_with_hidden_neurons_trains_on_the_gpu_and_scores_on_the_cpu(diffpoglm):
    _, train, test = diffpoglm
    model = sg.POGLM(n_hidden=1, epochs=20, seed=0, tol=None).fit(train, device="cuda", progress=False)
    assert len(model.history_) == 20 and all(np.isfinite(r.objective) for r in model.history_)
    assert next(model.posterior_.parameters()).device.type == "cpu"
    rates = model.infer(test)
    assert rates.shape == (test.n_trials, test.n_bins, 1) and np.isfinite(rates).all()
    assert np.isfinite(model.log_likelihood(test, n_particles=64).per_bin)
