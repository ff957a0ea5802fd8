"""Standard errors of the coupling strengths of any fit, by parametric bootstrap: refits of the estimator.

With hidden neurons the likelihood is an integral over their counts, and a variational fit gives no
closed form of its observed information (:mod:`spikeglm.significance` has the closed form for fits
without them). :func:`bootstrap_se` takes the standard errors from a parametric bootstrap instead:
recordings of the same shape are simulated from the fitted network, the model is refitted to each with
its own settings, the refits' hidden neurons are matched to the fit's (they are identifiable only up to
order and sign), and each strength's standard deviation over the refits is its standard error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from spikeglm.counts import SpikeCounts
from spikeglm.covariates import Covariate, covariate_design
from spikeglm.evaluate import align_hidden
from spikeglm.model import Network
from spikeglm.options import whole
from spikeglm.poglm import POGLM
from spikeglm.progress import progress_bar
from spikeglm.provenance import check_fitted_on

__all__ = ["bootstrap_se"]


def bootstrap_se(
    model: POGLM,
    counts: SpikeCounts,
    n_boot: int = 20,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    device: str | torch.device | None = None,
    covariates: list[Covariate] | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Standard errors of a fitted model's coupling strengths by parametric bootstrap, shape (post, pre).

    They become the model's ``strength_se_`` (with ``strength_se_source_`` saying how they were found),
    so that its :meth:`~spikeglm.POGLM.connectivity` carries them, with ``se_method`` and ``se_n_boot`` in
    its metadata, and ``significance(method="wald")`` tests the couplings of a fit with hidden neurons
    too; :meth:`~spikeglm.POGLM.save` keeps them and their source.

    Each of the ``n_boot`` rounds simulates a recording from the fitted network with as many trials and
    bins as ``counts`` (the hidden neurons' columns dropped; with latent factors, from new paths drawn from
    their fitted prior, so that the spread includes the paths' uncertainty), refits a model with the fit's
    settings to it, and reads the refit's strengths with its hidden neurons matched to the fit's
    (:func:`spikeglm.evaluate.align_hidden`: reordered, and an inverted one turned back). The standard
    error of each pair is the standard deviation of its strength over the refits. Each refit has a seed
    of its own (drawn from ``seed``), so that the spread includes the fit's dependence on its starting
    point and samples. The refits run one after another; only the strengths are kept.

    A fit with covariates is bootstrapped with them: every simulated recording is driven by the same
    known inputs as the data (the fit's kernels on the covariates' values in ``counts``' bins), keeps
    ``counts``' trial start times, and is refitted with the same ``covariates``; so the spread is that of
    the couplings given the inputs, as the fit's own standard errors are.

    Parameters
    ----------
    model : POGLM
        A fitted model (of any number of hidden neurons; with none,
        :func:`spikeglm.significance.strength_se` is exact and much faster).
    counts : SpikeCounts
        The counts the model was fitted to (checked against :attr:`~spikeglm.POGLM.fitted_on_`; a model
        that does not record them gives a warning): the simulated recordings take their trials, bins and
        bin size.
    n_boot : int
        Refits, at least 2. The standard errors' own relative error is about ``1 / sqrt(2 (n_boot - 1))``.
    seed : int
        Seed of the simulations and of the refits' seeds.
    callback : callable, optional
        Called after each refit with its index (from 0) and the seconds it took, e.g. to show progress.
    device : str or torch.device, optional
        Where the refits compute (see :meth:`spikeglm.POGLM.fit`).
    covariates : list of Covariate, optional
        The covariates the model was fitted with (the same, by name), for a fit with covariates.
    progress : bool, optional
        Draw a progress bar of the refits. Default: where someone watches
        (:func:`spikeglm.progress.watched`).

    Returns
    -------
    numpy.ndarray
        ``se[post, pre]`` over all neurons, visible then hidden, in the fit's order.

    Raises
    ------
    ValueError
        If ``n_boot`` is below 2, ``counts`` are not those the model was fitted on (the message names the
        difference), the model's network was given rather than fitted (``freeze_network``), the
        covariates are not the fit's (the message names them), or the fitted network's activity runs away
        when simulated.
    """
    n_boot = whole(n_boot, "bootstrap_se: n_boot", minimum=2)
    network = model.network_
    if network is None:
        raise RuntimeError("bootstrap_se: this POGLM is not fitted yet: call fit(counts) first")
    if model.training.freeze_network:
        raise ValueError(
            "bootstrap_se: the model's network was given, not fitted (freeze_network): there is no fit to "
            "repeat"
        )
    if not isinstance(counts, SpikeCounts) or counts.n_units != network.n_visible:
        got = f"{counts.n_units} units" if isinstance(counts, SpikeCounts) else type(counts).__name__
        raise ValueError(
            f"bootstrap_se: counts must be the SpikeCounts of the fit's {network.n_visible} units; got {got}"
        )
    check_fitted_on(model.fitted_on_, counts, "the parametric bootstrap")
    try:
        design = covariate_design(covariates or [], counts, model.covariates_ or [])
    except ValueError as err:
        raise ValueError(f"bootstrap_se: {err}") from None
    columns = design.columns.to(network.bias.dtype) if design.records else None
    reference = model.connectivity()
    settings = model.get_params()
    refit_seeds = np.random.SeedSequence(seed).generate_state(n_boot)
    generator = torch.Generator().manual_seed(seed)
    strengths = np.empty((n_boot, network.n_neurons, network.n_neurons))
    with progress_bar(n_boot, "bootstrap", "refit", progress) as bar:
        for round_ in range(n_boot):
            start = time.perf_counter()
            data = _simulated(network, counts, generator, columns)
            refit = type(model)(**{**settings, "seed": int(refit_seeds[round_]), "standard_errors": False})
            refit.fit(data, device=device, covariates=covariates, progress=False)
            strengths[round_] = align_hidden(reference, refit.connectivity())
            bar.update()
            if callback is not None:
                callback(round_, time.perf_counter() - start)
    model.strength_se_ = strengths.std(axis=0, ddof=1)
    model.strength_se_source_ = {"method": "bootstrap", "n_boot": n_boot, "seed": int(seed)}
    return model.strength_se_


def _simulated(
    network: Network, counts: SpikeCounts, generator: torch.Generator, columns: torch.Tensor | None
) -> SpikeCounts:
    """One recording simulated from the fitted ``network`` in ``counts``' trials, bins and clock (the
    hidden neurons' columns dropped), driven by the covariates' ``columns``."""
    with torch.no_grad():
        # With latent factors, each recording has paths of its own, drawn from their fitted prior.
        prior = network.latent_prior
        path = None if prior is None else prior.sample((counts.n_trials,), counts.n_bins, generator)
        try:
            simulated = network.simulate(
                counts.n_trials, counts.n_bins, generator=generator, latent=path, covariates=columns
            )
        except ValueError as err:
            raise ValueError(f"bootstrap_se: cannot simulate the fitted network: {err}") from None
    data = SpikeCounts.from_array(
        simulated[..., : network.n_visible], bin_size=counts.bin_size, unit_ids=counts.unit_ids
    )
    if "trial_starts_s" in counts.metadata:  # where covariates given in time are read
        data.metadata["trial_starts_s"] = counts.metadata["trial_starts_s"]
    return data
