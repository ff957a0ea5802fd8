"""Covariates: known inputs aligned to the bins, turned into kernels' columns, fitted with the couplings."""

import json

import h5py
import numpy as np
import pytest
import scipy.optimize
import torch

import spikeglm as sg
from spikeglm.covariates import Around, Covariate, Instant, Lags, Spline, covariate_design, kernel_curves
from spikeglm.files import add_checksum

BIN = 0.005


def _counts(trials: int, bins: int, units: int = 2, starts=None) -> sg.SpikeCounts:
    metadata = {} if starts is None else {"trial_starts_s": list(starts)}
    return sg.SpikeCounts.from_array(np.zeros((trials, bins, units)), bin_size="5 ms", metadata=metadata)


def stimulus_case(seed: int = 0, trials: int = 30, bins: int = 600, link: str = "softplus"):
    """A 4-neuron network driven by a smoothed noise stimulus through a 50 ms kernel, and its counts."""
    rng = np.random.default_rng(seed)
    stimulus = rng.standard_normal((trials, bins))
    stimulus = np.apply_along_axis(lambda x: np.convolve(x, np.ones(4) / 4, mode="same"), 1, stimulus)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    design = covariate_design([covariate], _counts(trials, bins))
    network = sg.model.Network(4, 0, sg.basis.get("exponential"), link, n_covariates=design.n_features)
    with torch.no_grad():
        network.bias.copy_(torch.tensor([-3.0, -2.5, -2.8, -3.2]))
        strongest = 0.3 if link == "softplus" else 0.05  # the exp link's feedback runs away sooner
        network.weight.copy_(torch.tensor(rng.uniform(-0.8, strongest, (4, 4, 1)), dtype=torch.float32))
        network.covariate_weight.copy_(torch.tensor(rng.uniform(-1.0, 1.0, (4, 3)), dtype=torch.float32))
    drawn = network.simulate(
        trials, bins, generator=torch.Generator().manual_seed(seed), covariates=design.columns
    )
    counts = sg.SpikeCounts.from_array(drawn.numpy().astype(np.uint8), bin_size="5 ms")
    return network, design, stimulus, counts


# ------------------------------------------------------------------ alignment to the bins


def test_a_signal_denser_than_the_bins_is_averaged_and_a_sparser_one_interpolated():
    counts = _counts(2, 4, starts=[0.0, 1.0])
    dense = Covariate.signal("fast", np.arange(2000.0), rate=1000.0)  # one sample per ms from 0 s
    values = dense.per_bin(counts)
    # bin [5 ms, 10 ms) of trial 1 (1.005-1.010 s) holds samples 1005..1009, whose mean is 1007
    np.testing.assert_allclose(values[1], [1002.0, 1007.0, 1012.0, 1017.0])
    sparse = Covariate.signal("slow", [0.0, 10.0], times=[0.0, 2.0])  # a ramp of 5 per second
    np.testing.assert_allclose(sparse.per_bin(counts)[0], 5 * (np.arange(4) + 0.5) * BIN)


def test_events_are_counted_in_their_bins_on_each_trials_clock():
    counts = _counts(2, 4, starts=[0.0, 1.0])
    events = Covariate.events("cue", [0.0051, 0.006, 1.0199, 3.0])
    np.testing.assert_array_equal(events.per_bin(counts), [[0, 2, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Covariate.signal("s", [1.0, np.nan, 2.0], rate=10.0), "'s': values: 1 missing"),
        (lambda: Covariate.signal("s", [1.0, 2.0], times=[0.0, 0.0]), "'s': the sample times must increase"),
        (lambda: Covariate.signal("s", [1.0, 2.0]), "'s': give either the sample times or the sampling rate"),
        (lambda: Covariate.signal("s", [1.0, 2.0], rate=-1.0), "rate must be a positive number"),
        (lambda: Covariate.events("e", [0.1, np.inf]), "'e': times: 1 missing or infinite"),
        (lambda: Covariate.binned("b", np.zeros((2, 3, 4))), "binned values must be (trials, bins)"),
        (lambda: Covariate.binned(" b", np.zeros(3)), "name must be a non-empty string"),
        (lambda: Covariate.binned("b", np.zeros(3), kernel="wavelet"), "kernel"),
        (lambda: Lags(window="10 kHz"), "window"),
        (lambda: Lags(window="1000 s").functions(BIN), "reaches 200,000 bins"),
        (lambda: Spline(n_basis=3), "n_basis must be a whole number >= 4"),
    ],
)
def test_bad_covariates_are_refused_naming_them(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_covariates_that_do_not_fit_the_counts_are_refused_naming_them():
    counts = _counts(2, 100, starts=[0.0, 1.0])
    short = Covariate.signal("speed", np.ones(50) + np.arange(50), rate=100.0)  # 0 to 0.5 s
    with pytest.raises(ValueError, match=r"'speed' covers -0.01 s to 0.5 s, but trial 1 runs from 1 s"):
        covariate_design([short], counts)
    with pytest.raises(ValueError, match="'flat' is constant over the counts"):
        covariate_design([Covariate.binned("flat", np.ones((2, 100)))], counts)
    with pytest.raises(ValueError, match=r"binned values of shape \(1, 100\) do not match"):
        covariate_design([Covariate.binned("b", np.arange(100.0))], counts)
    twice = Covariate.binned("b", np.arange(200.0).reshape(2, 100))
    with pytest.raises(ValueError, match="'b' are given more than once"):
        covariate_design([twice, twice], counts)
    untimed = _counts(2, 100)
    with pytest.raises(ValueError, match="carry no trial start times"):
        covariate_design([Covariate.events("cue", [0.1])], untimed)


# ------------------------------------------------------------------ kernels' columns


def test_lag_columns_are_the_causal_convolution_of_the_signal():
    rng = np.random.default_rng(1)
    values = rng.standard_normal((2, 40))
    kernel = Lags("30 ms", 3)  # lags 0..6
    _, functions = kernel.functions(BIN)
    columns = kernel.columns(values, BIN)
    expected = np.zeros_like(columns)
    for t in range(40):
        for lag in range(functions.shape[1]):
            if t - lag >= 0:
                expected[:, t] += functions[:, lag] * values[:, t - lag, None]
    np.testing.assert_allclose(columns, expected, atol=1e-12)


def test_an_event_kernel_reaches_from_before_the_event_to_after_it():
    values = np.zeros((1, 50))
    values[0, 20] = 1.0
    kernel = Around(before="20 ms", after="40 ms", n_basis=4)  # offsets -4..8 bins
    columns = kernel.columns(values, BIN)
    reached = np.flatnonzero(np.abs(columns[0]).sum(-1) > 0)
    assert reached.min() >= 16 and reached.max() <= 28
    axis, functions = kernel.functions(BIN)
    np.testing.assert_allclose(axis, np.arange(-4, 9) * BIN)
    np.testing.assert_allclose(columns[0, 16:29].T, functions, atol=1e-12)  # the impulse response


def test_a_spline_is_a_partition_of_unity_less_its_first_function_and_clips_outside_its_span():
    kernel = Spline(6)
    x = np.linspace(-1.0, 3.0, 41)[None]
    columns = kernel.columns(x, BIN, span=(0.0, 2.0))
    assert columns.shape == (1, 41, 5)
    inside = (x[0] > 0) & (x[0] < 2)
    assert np.all(columns[0, inside].sum(-1) <= 1 + 1e-12)
    np.testing.assert_allclose(columns[0, x[0] <= 0], 0.0, atol=1e-12)  # the first, left-out, function
    np.testing.assert_allclose(columns[0, x[0] >= 2], columns[0, x[0] == 2].repeat((x[0] >= 2).sum(), 0))


def test_an_instant_kernel_is_the_value_and_kernels_round_trip_through_their_dicts():
    values = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(Instant().columns(values, BIN)[..., 0], values)
    for kernel in (Lags("0.2 s", 5), Around(0.1, "300 ms", 3), Instant(), Spline(5)):
        rebuilt = sg.covariates.kernel_from_dict(kernel.to_dict())
        assert rebuilt.to_dict() == kernel.to_dict()


# ------------------------------------------------------------------ fits with covariates


def test_the_glm_with_a_covariate_reaches_the_optimum_found_independently():
    """scipy's L-BFGS-B maximises the same log-likelihood (couplings, biases and the covariate's weights,
    float64): the fit's optimum agrees to 1e-6 nats per neuron-bin."""
    network, design, stimulus, counts = stimulus_case(link="exp")
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(n_hidden=0, link="exp").fit(counts, covariates=[covariate])
    x = torch.tensor(counts.counts, dtype=torch.float64)
    columns = design.columns.double()
    template = network.double()

    def objective(theta):
        weight = torch.tensor(theta[:16].reshape(4, 4, 1), requires_grad=True)
        bias = torch.tensor(theta[16:20], requires_grad=True)
        known = torch.tensor(theta[20:].reshape(4, 3), requires_grad=True)
        rates = torch.exp(bias + template._drive(x, weight) + columns @ known.T)
        loss = -sg.relax.poisson_log_pmf(x, rates).sum() / x.numel()
        loss.backward()
        return loss.item(), np.concatenate([p.grad.numpy().ravel() for p in (weight, bias, known)])

    start = np.concatenate([np.zeros(16), np.full(4, -3.0), np.zeros(12)])
    found = scipy.optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000}
    )
    assert model.history_[-1].objective == pytest.approx(-found.fun, abs=1e-6)
    # Neighbouring bumps overlap, so single weights are flat in float32 but the kernels they make are not:
    # those are compared, to 0.003 (their standard errors here are 0.005-0.02 on this scale).
    _, functions = Lags("50 ms", 3).functions(BIN)
    fitted = model.network_.covariate_weight.detach().double().numpy() @ functions
    np.testing.assert_allclose(fitted, found.x[20:].reshape(4, 3) @ functions, atol=0.003)
    assert model.score(counts, n_particles=1, covariates=[covariate]) == pytest.approx(-found.fun, abs=1e-6)


def test_the_covariate_is_recovered_and_keeps_the_couplings_from_absorbing_it():
    network, design, stimulus, counts = stimulus_case(seed=2, trials=60)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    with_it = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
    without = sg.POGLM(n_hidden=0).fit(counts)
    truth = kernel_curves(design.records, network.covariate_weight.detach().double().numpy(), BIN)[
        "stimulus"
    ][1]
    kernel = with_it.connectivity().metadata["covariates"][0]
    assert np.corrcoef(truth.ravel(), np.ravel(kernel["values"]))[0, 1] > 0.95
    true_weights = network.weight.detach().numpy().ravel()
    r_with = np.corrcoef(true_weights, with_it.network_.weight.detach().numpy().ravel())[0, 1]
    r_without = np.corrcoef(true_weights, without.network_.weight.detach().numpy().ravel())[0, 1]
    assert r_with > 0.8 and r_with > r_without + 0.4  # without it: r = 0.30 here


def test_kernel_standard_errors_are_calibrated_over_repeated_recordings():
    """Over 40 recordings of one network and one stimulus, the fitted kernel at each lag (and each coupling
    strength) lies within 1.96 standard errors of the truth about 95% of the time (Monte Carlo: 40 x 4
    neurons x 11 lags, correlated within a fit; accepted between 0.90 and 0.99)."""
    network, design, stimulus, _ = stimulus_case(seed=3, trials=15, bins=400)
    weight = network.covariate_weight.detach().double().numpy()
    truth = kernel_curves(design.records, weight, BIN)["stimulus"][1]
    strength = network.weight.detach().double().numpy().sum(-1)  # the exponential basis sums to 1
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    covered, couplings = [], []
    for seed in range(40):
        generator = torch.Generator().manual_seed(seed)
        drawn = network.simulate(15, 400, generator=generator, covariates=design.columns)
        counts = sg.SpikeCounts.from_array(drawn.numpy().astype(np.uint8), bin_size="5 ms")
        fitted = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
        kernel = fitted.connectivity().metadata["covariates"][0]
        covered.append(np.abs(np.array(kernel["values"]) - truth) < 1.96 * np.array(kernel["se"]))
        couplings.append(np.abs(fitted.connectivity().strength - strength) < 1.96 * fitted.strength_se_)
    assert 0.90 <= np.mean(covered) <= 0.99  # 0.969 when written
    assert 0.90 <= np.mean(couplings) <= 0.99  # 0.944: the couplings' errors, estimated with the kernels


def test_cutting_a_long_recording_into_segments_keeps_the_covariates_aligned():
    """One continuous trial fitted whole and in segments of 500 bins (the covariate's columns are made on
    the whole trial, then cut with the counts): the same optimum."""
    network, design, stimulus, _ = stimulus_case(seed=4, trials=1, bins=6000)
    drawn = network.simulate(1, 6000, generator=torch.Generator().manual_seed(4), covariates=design.columns)
    counts = sg.SpikeCounts.from_array(drawn.numpy().astype(np.uint8), bin_size="5 ms")
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    whole = sg.POGLM(n_hidden=0, segment_bins=None).fit(counts, covariates=[covariate])
    cut = sg.POGLM(n_hidden=0, segment_bins=500).fit(counts, covariates=[covariate])
    assert cut.history_[-1].objective == pytest.approx(whole.history_[-1].objective, abs=1e-6)
    assert cut.score(counts, covariates=[covariate]) == pytest.approx(
        whole.score(counts, covariates=[covariate]), abs=1e-6
    )


@pytest.mark.parametrize("objective", ["elbo", "likelihood"])
def test_fits_with_hidden_neurons_take_covariates_and_are_scored_with_them(objective):
    _, _, stimulus, counts = stimulus_case(seed=5, trials=20, bins=300)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(n_hidden=1, epochs=3, objective=objective).fit(counts, covariates=[covariate])
    assert model.network_.covariate_weight.shape == (5, 3)
    assert float(model.network_.covariate_weight.detach()[:4].abs().sum()) > 0  # the GLM start's, trained
    kernels = model.connectivity().metadata["covariates"][0]
    assert np.shape(kernels["values"]) == (5, 11) and kernels["se"] is None  # no errors with hidden neurons
    visible = model.connectivity().visible_block().metadata["covariates"][0]
    assert visible["values"] == kernels["values"][:4] and visible["weight"] == kernels["weight"][:4]
    estimate = model.log_likelihood(counts, n_particles=64, covariates=[covariate])
    assert np.isfinite(estimate.per_bin)
    assert model.infer(counts, covariates=[covariate]).shape == (20, 300, 1)


def test_the_true_network_with_its_covariates_scores_exactly():
    network, design, stimulus, counts = stimulus_case(seed=6)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    fitted = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
    truth = fitted.connectivity()
    metadata = truth.metadata  # the true network's weights in the fitted one's place
    metadata["covariates"][0]["weight"] = network.covariate_weight.detach().double().tolist()
    true = sg.Connectivity(
        network.weight.detach().double().numpy(),
        truth.basis_matrix,
        network.bias.detach().double().numpy(),
        truth.labels,
        truth.visible,
        metadata,
    )
    model = sg.POGLM.from_connectivity(true)
    with torch.no_grad():
        exact = network.log_likelihood(
            torch.tensor(counts.counts, dtype=torch.float32), covariates=design.columns
        )
    expected = float(exact.double().sum()) / counts.counts.size
    assert model.score(counts, covariates=[covariate]) == pytest.approx(expected, abs=1e-6)


def test_a_model_with_covariates_round_trips_its_file_and_its_exports(tmp_path):
    _, _, stimulus, counts = stimulus_case(seed=7, trials=10, bins=300)
    covariates = [
        Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3)),
        Covariate.binned("speed", np.abs(stimulus), kernel=Spline(5)),
    ]
    model = sg.POGLM(n_hidden=0).fit(counts, covariates=covariates)
    model.save(tmp_path / "m.h5")
    loaded = sg.POGLM.load(tmp_path / "m.h5")
    assert loaded.covariates_ == model.covariates_
    assert loaded.score(counts, covariates=covariates) == model.score(counts, covariates=covariates)
    kernels = loaded.connectivity().metadata["covariates"]
    assert [k["name"] for k in kernels] == ["stimulus", "speed"]
    assert np.shape(kernels[1]["values"]) == (4, sg.covariates.SPLINE_POINTS)
    assert np.all(np.isfinite(kernels[0]["se"]))
    exported = tmp_path / "c.json"
    loaded.connectivity().save(exported)
    assert sg.Connectivity.load(exported).metadata["covariates"] == kernels


def test_scoring_refuses_covariates_that_are_not_the_fits():
    _, _, stimulus, counts = stimulus_case(seed=8, trials=10, bins=300)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
    with pytest.raises(ValueError, match="fitted with covariates 'stimulus'; give 'stimulus'"):
        model.score(counts)
    other = Covariate.binned("speed", stimulus)
    with pytest.raises(ValueError, match="'speed' is not one of them"):
        model.score(counts, covariates=[covariate, other])
    plain = sg.POGLM(n_hidden=0).fit(counts)
    with pytest.raises(ValueError, match="fitted without covariates"):
        plain.score(counts, covariates=[covariate])
    with pytest.raises(ValueError, match="bootstrap_se: this model was fitted with covariates 'stimulus'"):
        sg.bootstrap_se(model, counts, n_boot=2)
    with pytest.raises(ValueError, match="bootstrap_se: this model was fitted with covariates none"):
        sg.bootstrap_se(plain, counts, n_boot=2, covariates=[covariate])


def test_the_bootstrap_of_a_fit_with_covariates_is_driven_by_them_and_agrees_with_the_fisher_errors(
    monkeypatch,
):
    """Every simulated recording of the bootstrap takes the fit's covariate columns, and its standard errors
    agree with the observed information's: median ratio 1.002 when written (12 refits; accepted within a
    factor of 1.33, about three times the ratio's Monte Carlo spread)."""
    _, _, stimulus, counts = stimulus_case(seed=5, trials=20, bins=400)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
    fisher = model.strength_se_.copy()
    seen = []
    simulate = sg.model.Network.simulate

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("covariates"))
        return simulate(self, *args, **kwargs)

    monkeypatch.setattr(sg.model.Network, "simulate", spy)
    boot = sg.bootstrap_se(model, counts, n_boot=12, seed=0, covariates=[covariate])
    columns = covariate_design([covariate], counts).columns
    assert len(seen) == 12 and all(c is not None and torch.equal(c, columns) for c in seen)
    assert model.strength_se_source_["method"] == "bootstrap"
    ratio = float(np.median(boot / fisher))
    assert 1 / 1.33 < ratio < 1.33, ratio


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scale", -1.0, "'scale' must be a number > 0"),
        ("n_features", 7, "'n_features' is 7; its kernel makes 3"),
        ("kernel", {"name": "lags", "window": "1e9 s"}, "'kernel':"),
        ("kind", "pickle", "'kind' must be signal, events or binned"),
    ],
)
def test_a_model_file_with_a_damaged_covariate_record_is_refused(tmp_path, field, value, message):
    _, _, stimulus, counts = stimulus_case(seed=9, trials=10, bins=300)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    path = tmp_path / "m.h5"
    sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate]).save(path)
    with h5py.File(path, "r+") as f:  # a hostile edit, its checksum made valid again
        config = json.loads(f.attrs["config"])
        config["covariates"][0][field] = value
        f.attrs["config"] = json.dumps(config)
    add_checksum(path)
    with pytest.raises(ValueError, match=f"m.h5: config field 'covariates': covariate 'stimulus': {message}"):
        sg.POGLM.load(path)


def test_select_hidden_cuts_the_covariates_into_its_folds_with_the_counts():
    _, _, stimulus, counts = stimulus_case(seed=10, trials=1, bins=4000)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(epochs=3, segment_bins=500)
    chosen = sg.select_hidden(counts, (0, 1), folds=2, model=model, n_particles=32, covariates=[covariate])
    assert chosen.selection_.folds_by == "time blocks"
    assert chosen.covariates_[0]["name"] == "stimulus"
    # fold 0 of the time blocks: the GLM fitted on the second half scores the first half's bins
    first = counts._with_counts(counts.counts[:, :2000], counts.unit_ids)
    second = counts._with_counts(counts.counts[:, 2000:], counts.unit_ids)
    half = [Covariate.binned("stimulus", stimulus[:, 2000:], kernel=covariate.kernel)]
    glm = model.clone().set_params(n_hidden=0).fit(second, covariates=half)
    held = [Covariate.binned("stimulus", stimulus[:, :2000], kernel=covariate.kernel)]
    assert chosen.selection_.fold_scores[0, 0] == pytest.approx(glm.score(first, covariates=held), abs=1e-6)


def test_the_jitter_test_of_a_fit_with_covariates_takes_their_drive():
    _, design, stimulus, counts = stimulus_case(seed=11, trials=10, bins=300)
    covariate = Covariate.binned("stimulus", stimulus, kernel=Lags("50 ms", 3))
    model = sg.POGLM(n_hidden=0).fit(counts, covariates=[covariate])
    conn = model.connectivity()
    with pytest.raises(
        ValueError, match=r"has covariates, .* pass drive=model.known_drive\(counts, covariates\)"
    ):
        conn.significance(method="jitter", counts=counts)
    drive = model.known_drive(counts, [covariate])
    expected = design.columns.double() @ model.network_.covariate_weight.detach().double().T
    np.testing.assert_allclose(drive, expected.numpy(), rtol=1e-6, atol=1e-6)
    table, settings = conn.test_couplings(0.05, "jitter", counts=counts, drive=drive, n_jitter=5)
    assert len(table) == 16 and "covariates" in settings["drive"]


def test_balanced_networks_with_a_stimulus_meet_their_rates_and_carry_its_truth():
    sim = sg.synthetic.network(
        "balanced", seed=1, n_visible=12, n_hidden=0, stimulus="strong", duration="10 min"
    )
    rates = sim.train.counts.mean(axis=(0, 1)) / BIN
    np.testing.assert_allclose(rates / np.array(sim.truth.metadata["target_rate_hz"]), 1.0, atol=0.2)
    assert sim.stimulus_train.shape == (sim.train.n_trials, sim.train.n_bins)
    assert 0.8 < float(sim.stimulus_train.std()) < 1.2  # unit variance
    truth = sim.truth.metadata["covariates"][0]
    assert truth["name"] == "stimulus" and np.shape(truth["values"]) == (12, 21)
    model = sg.POGLM.from_connectivity(sim.truth)  # the truth scores with its stimulus, exactly
    fitted = sg.POGLM(n_hidden=0).fit(sim.train, covariates=sim.covariates_train)
    assert (
        model.score(sim.test, covariates=sim.covariates_test)
        > fitted.score(sim.test, covariates=sim.covariates_test) - 1e-3
    )
    estimate = np.array(fitted.connectivity().metadata["covariates"][0]["values"])
    assert np.corrcoef(np.ravel(truth["values"]), estimate.ravel())[0, 1] > 0.95
    without = sg.synthetic.network("balanced", seed=1, n_visible=12, n_hidden=0, duration="10 min")
    assert without.stimulus_train is None and without.covariates_train == []
    with pytest.raises(ValueError, match="stimulus: unknown strength 'huge'"):
        sg.synthetic.network("balanced", stimulus="huge")
    with pytest.raises(ValueError, match="stimulus_tau must be a positive duration"):
        sg.synthetic.network("balanced", stimulus="weak", stimulus_tau=0)


def test_covariates_are_read_from_nwb_neo_and_pynapple_objects(tmp_path):
    import neo
    import quantities as pq
    from test_signals import STIM_ON, write_nwb

    path = write_nwb(tmp_path / "s.nwb")
    speed = Covariate.from_nwb("speed", str(path), "/acquisition/running_speed")
    assert speed.kind == "signal" and speed.kernel.name == "lags" and "running_speed" in speed.source
    stim = Covariate.from_nwb("stim", str(path), "/stimulus/presentation/stim", channel=1)
    np.testing.assert_allclose(stim.values, [2.0, 3.0, 4.0])  # data 2, 4, 6 x 0.5 + 1
    with pytest.raises(ValueError, match="has 2 channels; pick one with channel= \\(0 to 1\\)"):
        Covariate.from_nwb("stim", str(path), "/stimulus/presentation/stim")
    with pytest.warns(UserWarning, match="dropped 1 of 3"):
        onset = Covariate.from_nwb("onset", str(path), table="trials", column="stim_on_time", kernel="around")
    np.testing.assert_allclose(onset.times, [t for t in STIM_ON if np.isfinite(t)])
    with pytest.raises(ValueError, match="give either series= or table= and column="):
        Covariate.from_nwb("x", str(path), "/acquisition/running_speed", table="trials", column="x")
    signal = neo.AnalogSignal(
        np.arange(4.0)[:, None], units="V", sampling_rate=1 * pq.kHz, t_start=10 * pq.ms
    )
    from_neo = Covariate.from_neo("v", signal)
    np.testing.assert_allclose(from_neo.times, [0.010, 0.011, 0.012, 0.013])
    cue = Covariate.from_neo("cue", neo.Event(np.array([5.0, 1.0]) * pq.s))
    assert cue.kind == "events" and list(cue.times) == [1.0, 5.0]

    class Tsd:  # what pynapple's objects hold: times in seconds and values
        t, values = np.array([0.0, 0.5, 1.0]), np.array([1.0, 2.0, 3.0])

    class Ts:
        t, values = np.array([0.7, 0.2]), None

    assert Covariate.from_pynapple("tsd", Tsd()).kind == "signal"
    assert list(Covariate.from_pynapple("ts", Ts()).times) == [0.2, 0.7]


def test_a_fit_with_covariates_validates_with_them_and_resumes_only_with_the_same_ones(tmp_path):
    _, _, stimulus, counts = stimulus_case(seed=12, trials=12, bins=300)
    train, held = counts[:10], counts[10:]
    covariate = Covariate.binned("stimulus", stimulus[:10], kernel=Lags("50 ms", 3))
    later = Covariate.binned("stimulus", stimulus[10:], kernel=Lags("50 ms", 3))
    checkpoint = tmp_path / "fit.h5"
    model = sg.POGLM(n_hidden=1, epochs=10, tol=None)  # validated every 10 epochs
    model.fit(
        train,
        validation=held,
        covariates=[covariate],
        validation_covariates=[later],
        checkpoint=checkpoint,
        checkpoint_every=5,
    )
    assert np.isfinite(model.history_[-1].validation)
    longer = sg.POGLM(n_hidden=1, epochs=11, tol=None)
    other = Covariate.binned("stimulus", stimulus[:10], kernel=Lags("100 ms", 3))
    with pytest.raises(ValueError, match="checkpoint was made with other data or options: covariates"):
        longer.fit(train, covariates=[other], checkpoint=checkpoint, resume=True)
    longer.fit(
        train,
        validation=held,
        covariates=[covariate],
        validation_covariates=[later],
        checkpoint=checkpoint,
        resume=True,
    )
    assert len(longer.history_) == 11
