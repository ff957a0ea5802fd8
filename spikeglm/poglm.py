"""The :class:`POGLM` estimator: a sklearn-like front end to the model, its posterior and its fit."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import torch

from spikeglm import basis as basis_module
from spikeglm import modelfile, parallel, provenance, relax, smc
from spikeglm._version import __version__
from spikeglm.connectivity import Connectivity, json_plain
from spikeglm.counts import SpikeCounts
from spikeglm.covariates import RECORD_FIELDS, Covariate, covariate_design, kernel_functions, kernel_metadata
from spikeglm.extras import optional
from spikeglm.files import claim_checkpoint
from spikeglm.inference import (
    TRAINING_SETTINGS,
    Resume,
    TrainingConfig,
    auto_batch_size,
    check_memory,
    fit_memory,
    glm_start,
    solve_glm,
    train,
)
from spikeglm.inference.basis_choice import candidates as basis_candidates
from spikeglm.inference.basis_choice import cross_validated_basis
from spikeglm.inference.config import default_objective, default_samples
from spikeglm.inference.glm import (
    GLM_TOLERANCE_GRAD,
    UNBOUNDED_STRENGTH,
    likelihood_gradient,
    unbounded_couplings,
)
from spikeglm.inference.penalty import PENALTIES, GroupLasso, Penalty, entry_strengths
from spikeglm.inference.start import START_ITERATIONS, START_TOLERANCE_GRAD
from spikeglm.inference.strength import cross_validated_strength
from spikeglm.inference.trainer import VALIDATION_PARTICLES
from spikeglm.model import Network, check_own_history, mean_counts, start_tau
from spikeglm.options import whole
from spikeglm.progress import progress_bar
from spikeglm.recording import Recording
from spikeglm.records import EpochRecord, Selection
from spikeglm.segments import PART_BINS, Batch, Segments, on_device
from spikeglm.settings import DEFAULTS, SETTINGS
from spikeglm.significance import CPU_BUDGET, information_seconds, se_to_json, standard_errors
from spikeglm.timeunits import seconds
from spikeglm.variational import Posterior, laplace_latent, laplace_paths, marginal_log_likelihood

#: Default segment length of :meth:`POGLM.fit` (bins): longer trials are cut, with context.
SEGMENT_BINS = DEFAULTS["segment_bins"]


@dataclass(frozen=True)
class CheckedSettings:
    """The settings of a :class:`POGLM`, checked and built: what a fit of them runs with.

    Parameters
    ----------
    n_hidden : int
        Number of hidden neurons.
    basis : Basis
        The history basis, built from ``basis``, ``window`` and ``basis_options``.
    link : str
        The link's canonical name.
    variational : str
        The posterior family's canonical name.
    segment_bins : int or None
        Segment length of long trials (None: never cut).
    standard_errors : bool or "auto"
        Whether a fit without hidden neurons computes the couplings' standard errors; ``"auto"``: unless
        they would take more than :data:`~spikeglm.significance.CPU_BUDGET` seconds of one CPU core.
    training : TrainingConfig
        The training settings.
    n_latent : int
        Number of latent factors.
    latent_tau : float or "auto"
        Their time constant at the start, in bins, or ``"auto"``: read from the GLM's errors.
    penalty : str or None
        The canonical name of the couplings' penalty, or None.
    penalty_strength : float or "cv"
        Its strength in nats per spike, or ``"cv"``: chosen by cross-validation.
    """

    n_hidden: int
    basis: basis_module.Basis
    link: str
    variational: str
    segment_bins: int | None
    training: TrainingConfig
    standard_errors: bool | str = DEFAULTS["standard_errors"]
    n_latent: int = 0
    latent_tau: float | str = DEFAULTS["latent_tau"]
    penalty: str | None = None
    penalty_strength: float | str = DEFAULTS["penalty_strength"]

    @property
    def glm(self) -> bool:
        """Whether the model is an ordinary GLM (no hidden neuron, no latent factor): solved, not trained."""
        return self.n_hidden == 0 and self.n_latent == 0


class POGLM:
    """Partially observable GLM: the recorded (visible) neurons plus ``n_hidden`` hidden ones.

    Settings go to the constructor and data to :meth:`fit`, as in scikit-learn: the constructor stores
    them as given, :meth:`fit` checks them and builds what they name (:meth:`checked_settings`), so that
    ``sklearn.base.clone`` copies the estimator. Each setting's default and check are declared once, in
    :mod:`spikeglm.settings`. :meth:`get_params`, :meth:`set_params` and :meth:`clone` read, change and
    copy them.

    Parameters
    ----------
    n_hidden : int
        Number of hidden neurons (0 gives an ordinary, fully observed GLM).
    basis : str or Basis
        History basis: ``"exponential"`` (literature default), ``"raised-cosine"`` or ``"raw"``
        (:data:`spikeglm.basis.BASES`), or a ready :class:`~spikeglm.basis.Basis`.
    window : int or "auto"
        Number of history lags L (bins), for a basis given by name; ``"auto"``: the basis of the
        couplings and that of the neurons' own history chosen by cross-validation
        (:mod:`spikeglm.inference.basis_choice`, :attr:`basis_choice_`).
    link : {"softplus", "exp", "sigmoid"}
        Link from the linear predictor to the expected count per bin.
    variational : {"forward-backward", "forward", "forward-self", "smoothing"}
        Family of the posterior over hidden counts (see :mod:`spikeglm.variational`).
    basis_options : dict, optional
        Extra arguments of a basis given by name (e.g. ``{"decay": 0.25}`` or ``{"n_basis": 4}``).
    self_basis : str, optional
        A basis of each neuron's own history besides ``basis`` (a name of
        :data:`spikeglm.basis.BASES`, over ``self_window`` bins): each self-coupling filter then weighs
        the functions of both, and the couplings between neurons those of ``basis`` alone
        (:class:`~spikeglm.basis.OwnHistory`). A neuron's refractoriness, bursts and rhythms outlast
        its couplings (Pillow et al. 2008); a longer basis for every filter costs parameters and
        blurs the couplings. None (the default): ``basis`` alone. With ``window="auto"`` it is chosen
        by the data.
    self_window : int, optional
        The history length of ``self_basis``, in bins (needed with it).
    n_latent : int
        Number ``K`` of continuous latent factors: slow stationary AR(1) paths that drive every neuron,
        visible and hidden, through a loading (:class:`~spikeglm.model.Network`), so that an input many
        neurons share (brain state, a fluctuating background) is not read as coupling. Their posterior
        is a Gaussian over paths (:class:`~spikeglm.latent.MarkovGaussian`), trained with the hidden
        counts' under every objective. 0 (the default): none, the model without them.
    latent_tau : float or "auto"
        The factors' time constant at the start of a fit, in bins; each factor's is learned. ``"auto"``
        (the default): that of the GLM's errors along the factor (the fit's start), where they show one,
        else 20 bins. The time constants are held through the first rate of learning of the training
        (:func:`~spikeglm.inference.train`), so that they are learned from a fit close to its end. A fit
        without hidden neurons ends at its first rate, and keeps them: with ``"auto"`` it is the GLM
        errors' time constant that the fit uses (measured closer to the drive's than the ELBO's own
        optimum: docs/benchmarks.md, "Slow shared drive").
    penalty : {None, "ridge", "group-lasso"}
        A penalty of the couplings between distinct neurons (not the biases, nor a neuron's own history
        filter), for large populations: ``"ridge"`` shrinks them (half their summed squares); the
        ``"group-lasso"`` sets whole filters to zero (the summed norms of the filters, times the square
        root of their number of basis functions), and then has no standard errors nor Wald tests. The
        fit minimises minus the log-likelihood per spike plus ``penalty_strength`` times the penalty
        (:mod:`spikeglm.inference.penalty`). The group lasso: fits without hidden neurons or latent
        factors only. The ridge also with them: it then joins the training's loss and the start's GLM,
        and bounds the couplings to and from the hidden neurons too.
    penalty_strength : float or "cv"
        The penalty's strength, in nats per spike; ``"cv"`` (default) chooses it by 5-fold
        cross-validated log-likelihood along a path of strengths and none, and between the path's best
        point and its neighbours (:func:`spikeglm.inference.strength.cross_validated_strength`), and the
        fit records the table.
        With hidden neurons or latent factors, the strength chosen is the visible neurons' GLM's: a
        cross-validation of the whole fit would cost tens of fits.
    relaxation : str or relaxation class
        Law of the hidden-count samples in training: ``"eat-cubic"`` (default), ``"eat-sigmoid"``,
        ``"gumbel-softmax"`` (pathwise gradients) or ``"exact"`` (score-function gradients).
    temperature : float
        Temperature of the relaxation (Eat-cubic: ``0 < tau <= 1``).
    n_samples : int, optional
        Hidden-count samples per trial and step (the particles, for ``"fivo"`` and ``"likelihood"``).
        Default: 5, or 1 for a fit with latent factors and no hidden neuron, whose latent paths vary little
        from draw to draw (one sample halves the cost at no measured loss).
    objective : {"elbo", "iwae", "fivo", "likelihood"}, optional
        Evidence lower bound, its importance-weighted version, a particle filter's bound
        (:func:`spikeglm.smc.filtering_bound`; exact integer draws with Eat-cubic's gradient), or the
        log-likelihood itself, climbed by its gradient from a particle smoother whose proposal is the
        posterior (:func:`spikeglm.smc.smoothed_score`; no relaxation is used). The bounds shrink the
        hidden neurons towards those whose posterior the family can match, the ELBO most; ``"likelihood"``
        does not, at several times the cost per epoch (see docs/methods.md, "The likelihood objective").
        Default: ``"iwae"`` for a fit with hidden neurons and no latent factor, else ``"elbo"``
        (:func:`~spikeglm.inference.config.default_objective`).
    epochs : int
        Most passes over the training trials (with ``tol``, a fit usually stops well before); with no
        hidden neuron, most solver iterations (Newton or L-BFGS).
    lr : float
        Adam learning rate.
    batch_size : int, optional
        Trials (or segments) per step. Default: a quarter of them, at most 2^14 bins
        (:func:`spikeglm.inference.auto_batch_size`); a number at least the trials' gives full-batch steps.
    segment_bins : int, optional
        Trials longer than this (e.g. a continuous recording) are cut into segments of this many bins,
        each with ``window`` bins of context on either side so that no history is lost at the cuts
        (see :mod:`spikeglm.segments`); memory then depends on the batch, not the recording length.
        None: never cut. Inference and scoring cut the same way.
    standard_errors : bool or "auto"
        Whether a fit without hidden neurons computes its couplings' standard errors from the observed
        information (what :meth:`~spikeglm.Connectivity.significance`'s Wald tests read). Their cost grows
        as the cube of the neurons times the bins (for neurons firing at 5 Hz over an hour at 5 ms, about
        4 minutes of one core at 300 neurons, 2.4 hours at 1,000); ``"auto"`` computes them unless, on
        the CPU, they would take more than :data:`~spikeglm.significance.CPU_BUDGET` seconds (three
        hours) of one core (:func:`~spikeglm.significance.information_seconds`), and warns where it
        skips them; True computes them whatever they cost. Without them, the jitter test
        (``method="jitter"``) still tests the couplings. Cross-validation's and the bootstrap's fits never
        compute them.
    part_bins : int
        Bins computed at once: a step is done in parts of at most this many bins whose gradients add
        up, each with its own random stream. Lower it to save memory; under ``torchrun`` the parts are
        shared out among the processes.
    seed : int
        Seed of the initialisation and of every random draw of a fit; the same seed gives the same fit,
        on any number of processes.
    patience : int
        With validation counts, checks (every 10 epochs) without improvement before stopping.
    freeze_network : bool
        Keep the network as it is (from :meth:`from_connectivity` or an earlier fit) and fit only the
        posterior: with the true network this gives the oracle score, the ceiling of a fit.
    tol : float, optional
        Once the training objective, smoothed over epochs, has not risen by ``tol`` nats per spike in
        10 epochs, the learning rate is lowered five-fold; at the next such plateau the fit stops
        (:class:`spikeglm.inference.Plateau`). A fit with latent factors and no hidden neuron, whose
        couplings and biases are solved after training, stops at the first epoch that raises the
        objective by less than ``tol`` or within its noise (:class:`spikeglm.inference.Settled`): a few
        epochs. None: run all ``epochs`` at ``lr``. Where training draws
        real-valued relaxed counts (the default), the objective the rule reads is the bound of exact
        integer draws taken beside them: the relaxed draws' own value can rise while the model gets worse.
    straight_through : bool
        Train on exact integer hidden counts, with gradients from the Eat-cubic relaxation of the same
        draws (:class:`spikeglm.relax.EatCubic`): the gradient, not only the record, is then taken at
        counts the model can produce.
    init : {"glm", "random"}
        How a fit with hidden neurons starts: ``"glm"`` fits the visible neurons' GLM first and couples
        the hidden neurons onto the visible ones along the principal components of that GLM's errors (the
        shared input it cannot explain), rotated to sparse ones (:func:`spikeglm.inference.glm_start`);
        ``"random"`` starts from small random couplings.

    Attributes
    ----------
    network_ : Network or None
        The fitted generative model (:class:`~spikeglm.model.Network`): biases, couplings
        ``W[post, pre, basis]`` and link of the visible neurons, then the hidden ones. None before a fit.
    posterior_ : Posterior or None
        The fitted posterior over the hidden counts given the visible ones
        (:class:`~spikeglm.variational.Posterior`, family ``variational``). None before a fit.
    history_ : list of EpochRecord
        One :class:`~spikeglm.records.EpochRecord` per epoch (per solver iteration without hidden
        neurons): objective per neuron-bin, seconds, validation score, learning rate.
    stopped_ : str or None
        Why the last fit stopped (converged, a cap reached, early stopping), in words. None before a fit
        and in a loaded model.
    unit_ids_ : list of str
        Ids of the visible units, in the order of the fitted counts (the first labels of the
        connectivity).
    bin_size_ : str or None
        Bin size of the fitted counts, as text (``"5 ms"``). None before a fit.
    data_ : dict
        Metadata of the fitted counts as plain JSON values (``source``, ``trial_length``,
        ``trial_starts_s``, ...); :meth:`bin_like` bins a recording as they say.
    fit_options_ : dict
        The checked training settings the fit ran with, and ``segment_bins``: what the model file and
        the connectivity's metadata record.
    fitted_on_ : dict or None
        What the last fit was made on (:func:`spikeglm.provenance.fitted_on`: unit ids, bin size, trial
        layout, a SHA-256 of the counts, their file and reading options). None where unknown (a network
        given by :meth:`from_connectivity`, or a model file that does not record it).
    source_ : str or None
        The model file this model was loaded from, which :meth:`save` never replaces. None otherwise,
        and once refitted.
    selection_ : Selection or None
        The cross-validation that chose ``n_hidden`` (:func:`spikeglm.selection.select_hidden`,
        ``spikeglm fit --hidden auto``): candidates, scores per fold, choice. None otherwise.
    strength_se_ : numpy.ndarray or None
        Standard errors of the coupling strengths, shape (post, pre): from a fit without hidden
        neurons (the observed information), and from :func:`spikeglm.bootstrap.bootstrap_se` for any
        fit. None otherwise.
    strength_se_source_ : dict or None
        Where ``strength_se_`` came from: ``{"method": "fisher"}`` (the observed information) or
        ``{"method": "bootstrap", "n_boot": ..., "seed": ...}``. None without standard errors.
    covariates_ : list of dict
        One record per covariate of the fit (:class:`spikeglm.Covariate`), in the order of the network's
        covariate columns: ``name``, ``kind``, ``source``, ``kernel``, ``scale`` (what a signal was
        divided by), ``span`` (a spline's range) and ``n_features``. Empty without covariates.
    basis_choice_ : dict or None
        With ``window="auto"``: the cross-validated choice of the history basis
        (:func:`spikeglm.inference.basis_choice.cross_validated_basis`): ``candidates`` (each basis as a
        dict), ``scores`` (held-out log-likelihood per neuron-bin, candidates x folds), ``folds_by``,
        ``chosen`` (the index of the basis the fit used) and ``stages`` (the rows compared for the own
        history, then for the couplings; absent in files of format 4). None otherwise.
    covariate_se_ : dict or None
        Standard errors of each covariate's kernel, name -> (neurons, points) over the kernel's axis, from
        the same observed information as ``strength_se_``. None where the fit has none.
    entry_strength_ : numpy.ndarray or None
        Of a group-lasso fit, each coupling's entry strength, shape (post, pre), in nats per spike: the
        least penalty strength that would keep its filter at zero, every other parameter held where the fit
        put it (:func:`spikeglm.inference.penalty.entry_strengths`). The fit's strength for a kept filter;
        at most that for one set to zero, and the higher, the nearer it came to being kept. It ranks the
        couplings the fit set to zero, which their strength (0) cannot. None for any other fit.

    Notes
    -----
    With no hidden neuron the model is an ordinary Poisson GLM, fitted by full-batch L-BFGS to
    convergence (:func:`spikeglm.inference.solve_glm`): the sampling settings play no part then.

    Examples
    --------
    >>> import spikeglm as sg
    >>> truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=0)
    >>> model = sg.POGLM(n_hidden=2, link="sigmoid", epochs=50).fit(train)
    >>> ll = model.score(test, n_particles=200)   # log-likelihood per visible neuron-bin
    >>> model.get_params()["epochs"]
    50
    """

    def __init__(
        self,
        n_hidden: int = DEFAULTS["n_hidden"],
        basis: str | basis_module.Basis = DEFAULTS["basis"],
        window: int = DEFAULTS["window"],
        link: str = DEFAULTS["link"],
        variational: str = DEFAULTS["variational"],
        basis_options: dict | None = DEFAULTS["basis_options"],
        *,
        self_basis: str | None = DEFAULTS["self_basis"],
        self_window: int | None = DEFAULTS["self_window"],
        n_latent: int = DEFAULTS["n_latent"],
        latent_tau: float | str = DEFAULTS["latent_tau"],
        penalty: str | None = DEFAULTS["penalty"],
        penalty_strength: float | str = DEFAULTS["penalty_strength"],
        relaxation: str | type[relax.PoissonRelaxation] = DEFAULTS["relaxation"],
        temperature: float = DEFAULTS["temperature"],
        n_samples: int | None = DEFAULTS["n_samples"],
        objective: str | None = DEFAULTS["objective"],
        epochs: int = DEFAULTS["epochs"],
        lr: float = DEFAULTS["lr"],
        batch_size: int | None = DEFAULTS["batch_size"],
        segment_bins: int | None = DEFAULTS["segment_bins"],
        standard_errors: bool | str = DEFAULTS["standard_errors"],
        part_bins: int = DEFAULTS["part_bins"],
        seed: int = DEFAULTS["seed"],
        patience: int = DEFAULTS["patience"],
        freeze_network: bool = DEFAULTS["freeze_network"],
        tol: float | None = DEFAULTS["tol"],
        straight_through: bool = DEFAULTS["straight_through"],
        init: str = DEFAULTS["init"],
    ) -> None:
        self.n_hidden = n_hidden
        self.basis = basis
        self.window = window
        self.link = link
        self.variational = variational
        self.basis_options = basis_options
        self.self_basis, self.self_window = self_basis, self_window
        self.n_latent = n_latent
        self.latent_tau = latent_tau
        self.penalty = penalty
        self.penalty_strength = penalty_strength
        self.relaxation = relaxation
        self.temperature = temperature
        self.n_samples = n_samples
        self.objective = objective
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.segment_bins = segment_bins
        self.standard_errors = standard_errors
        self.part_bins = part_bins
        self.seed = seed
        self.patience = patience
        self.freeze_network = freeze_network
        self.tol = tol
        self.straight_through = straight_through
        self.init = init
        self._unfitted()

    def _unfitted(self) -> None:
        """Set the fitted attributes, as the class docstring's Attributes describe them, to "no fit"."""
        self.network_: Network | None = None
        self.posterior_: Posterior | None = None
        self.history_: list[EpochRecord] = []
        self.stopped_: str | None = None
        self.unit_ids_: list[str] = []
        self.bin_size_: str | None = None
        self.data_: dict = {}
        self.fit_options_: dict = {}
        self.fitted_on_: dict | None = None
        self.source_: str | None = None
        self.selection_: Selection | None = None
        self.basis_choice_: dict | None = None
        self.strength_se_: np.ndarray | None = None
        self.strength_se_source_: dict | None = None
        self.covariates_: list[dict] = []
        self.covariate_se_: dict[str, np.ndarray] | None = None
        self.entry_strength_: np.ndarray | None = None
        # Built by from_connectivity: the next fit starts from its network (and trains it, unless frozen).
        self._starts_given = False

    # ------------------------------------------------------------------ settings
    def get_params(self, deep: bool = True) -> dict:
        """The constructor's settings of this estimator, by name, as given (``deep`` is for scikit-learn)."""
        return {name: getattr(self, name) for name in self._parameter_names()}

    @classmethod
    def _parameter_names(cls) -> list[str]:
        """The names of the constructor's arguments: the settings."""
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def set_params(self, **params) -> POGLM:
        """Change settings; returns ``self``.

        The values are stored as given, as the constructor stores them, and checked at once by the checks
        :meth:`fit` makes (:meth:`checked_settings`): a setting that is refused leaves the estimator as it
        was. A fitted model keeps its fit: the new settings apply to the next :meth:`fit`. ``window`` or
        ``basis_options`` without ``basis``, where ``basis`` is a ready :class:`~spikeglm.basis.Basis`,
        rebuild that basis with them.
        """
        before = self.get_params()
        unknown = sorted(set(params) - set(before))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; settings: {', '.join(before)}")
        if isinstance(self.basis, basis_module.Basis) and "basis" not in params:
            if {"window", "basis_options"} & set(params):
                spec = {**self.basis.to_dict(), **(params.get("basis_options") or {})}
                spec["window"] = params.get("window", spec["window"])
                params = {**params, "basis": basis_module.from_dict(spec), "basis_options": None}
        vars(self).update(params)
        try:
            self.checked_settings()
        except (TypeError, ValueError):
            vars(self).update(before)
            raise
        return self

    def checked_settings(self) -> CheckedSettings:
        """The settings checked and built (the basis, the canonical names, the training config).

        :meth:`fit` runs with these; the estimator's own attributes keep the values as given.

        Raises
        ------
        ValueError
            If a setting is invalid; the message names it.
        """
        checked = {name: SETTINGS[name].check(getattr(self, name)) for name in ("n_hidden", "window")}
        if checked["window"] == "auto":  # the basis the data chose, or before a fit the simplest candidate
            chosen = self.basis_choice_
            built = (
                basis_module.from_dict(chosen["candidates"][chosen["chosen"]])
                if chosen
                else basis_candidates(5)[0]
            )
        else:
            built = basis_module.get(self.basis, window=checked["window"], **(self.basis_options or {}))
            built = self._with_own_history(built)
        checked.update({name: SETTINGS[name].check(getattr(self, name)) for name in ("link", "variational")})
        return CheckedSettings(
            n_hidden=checked["n_hidden"],
            basis=built,
            link=checked["link"],
            variational=checked["variational"],
            segment_bins=SETTINGS["segment_bins"].check(self.segment_bins),
            standard_errors=SETTINGS["standard_errors"].check(self.standard_errors),
            training=TrainingConfig(
                **self._training_settings(checked["n_hidden"], SETTINGS["n_latent"].check(self.n_latent))
            ),
            n_latent=SETTINGS["n_latent"].check(self.n_latent),
            latent_tau=SETTINGS["latent_tau"].check(self.latent_tau),
            penalty=SETTINGS["penalty"].check(self.penalty),
            penalty_strength=SETTINGS["penalty_strength"].check(self.penalty_strength),
        )

    def _training_settings(self, n_hidden: int, n_latent: int) -> dict:
        """The training settings as given, with the default samples and objective of a fit of ``n_hidden``
        hidden neurons and ``n_latent`` factors where none were given (``default_samples`` and
        ``default_objective`` of :mod:`spikeglm.inference.config`)."""
        settings = {name: getattr(self, name) for name in TRAINING_SETTINGS}
        if settings["n_samples"] is None:
            settings["n_samples"] = default_samples(n_hidden)
        if settings["objective"] is None:
            settings["objective"] = default_objective(n_hidden, n_latent)
        return settings

    @property
    def training(self) -> TrainingConfig:
        """The training settings, checked (:class:`~spikeglm.inference.TrainingConfig`)."""
        return self.checked_settings().training

    def clone(self) -> POGLM:
        """A new, unfitted estimator with the same settings (what model selection fits afresh)."""
        return type(self)(**self.get_params())

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        counts: SpikeCounts,
        validation: SpikeCounts | None = None,
        callback: Callable[[EpochRecord], None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        device: str | torch.device | None = None,
        checkpoint_every: int = 50,
        overwrite: bool = False,
        covariates: list[Covariate] | None = None,
        validation_covariates: list[Covariate] | None = None,
        progress: bool | None = None,
    ) -> POGLM:
        """Fit the model and the posterior over hidden counts to ``counts`` by variational inference.

        How the fit runs (relaxation, epochs, learning rate, ...) is set by the constructor.

        Parameters
        ----------
        counts : SpikeCounts
            Visible spike counts (trials, bins, units).
        validation : SpikeCounts, optional
            Held-out trials for early stopping on their log-likelihood, estimated by a particle filter
            (see ``patience``).
        callback : callable, optional
            Called with each epoch's :class:`~spikeglm.records.EpochRecord` (under ``torchrun``, in every
            process): a progress display, logging. The command line draws a progress line with it.
        checkpoint : path, optional
            A model file (HDF5) that also holds the training state, written atomically every
            ``checkpoint_every`` epochs and when the fit is interrupted (Ctrl-C, or SIGTERM where the
            caller turns it into KeyboardInterrupt, as the command line does); it loads as a model. It
            records the data (unit ids, bin size, a SHA-256 of the counts) and every setting. While the fit
            runs, the checkpoint is held (:func:`spikeglm.files.claim_checkpoint`): a second fit with the
            same checkpoint is refused at once.
        resume : bool
            Continue the fit saved in ``checkpoint`` up to ``epochs``, even from inside an epoch; the
            result equals that of an uninterrupted fit. Any difference in the data or the settings (but
            ``epochs``) is refused, naming it. Without a checkpoint file the fit starts afresh; an
            existing checkpoint without ``resume`` or ``overwrite`` raises FileExistsError.
        device : str or torch.device, optional
            Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default the GPU when there is one
            (under ``torchrun``, the process's own), else the CPU. The fitted model is returned on the CPU.
        checkpoint_every : int
            Epochs between checkpoints.
        overwrite : bool
            Start afresh over an existing checkpoint, which is removed (``resume`` takes precedence).
        covariates : list of Covariate, optional
            Known inputs (a stimulus, events, behaviour: :class:`spikeglm.Covariate`), each entering
            every neuron's rate through its kernel, fitted with the couplings. Scoring and inference then
            need the same covariates for their counts.
        validation_covariates : list of Covariate, optional
            The covariates of ``validation``; default ``covariates`` (right for covariates given in time,
            when the counts carry their trials' start times).
        progress : bool, optional
            Draw a progress bar of the epochs (of the iterations, for a GLM). Default: where someone watches
            (a terminal or a notebook; :func:`spikeglm.progress.watched`).

        Returns
        -------
        POGLM
            ``self``, fitted.
        """
        _check_counts(counts, "counts")
        config = self.training.replace(checkpoint_every=whole(checkpoint_every, "checkpoint_every"))
        given = config.freeze_network or self._starts_given
        kept = self.covariates_ if given and self.covariates_ else None  # a given network's
        design = covariate_design(covariates or [], counts, kept)
        self.check_fit(counts, config, validation, n_covariates=design.n_features)
        visible = self._visible(counts) if given else _compact_tensor(counts)
        known = None
        if validation is not None and design.records:
            inputs = covariates if validation_covariates is None else validation_covariates
            known = covariate_design(inputs or [], validation, design.records).columns
        main = parallel.is_main()
        with contextlib.ExitStack() as stack:
            if checkpoint is not None and main:
                stack.enter_context(claim_checkpoint(checkpoint, resume=resume, overwrite=overwrite))
            bar = stack.enter_context(self._progress_bar(config, progress))
            self._fit(
                counts,
                visible,
                config,
                design.records,
                design.columns if design.records else None,
                validation=None if validation is None else self._segments(_compact_tensor(validation), known),
                callback=_chain([callback, functools.partial(_advance, bar)]),
                device=device,
                checkpoint=checkpoint,
                resume=resume,
                given=given,
            )
            if bar.total is not None and bar.n < bar.total:  # stopped early: full at the epochs run
                bar.total = bar.n
                bar.refresh()
        return self

    def _progress_bar(self, config: TrainingConfig, show: bool | None) -> Any:
        """The bar of a fit's epochs, or of a GLM's solver iterations (their number unknown ahead)."""
        if self.checked_settings().glm:
            return progress_bar(None, "GLM fit", "it", show)
        return progress_bar(config.epochs, "fit", "epoch", show)

    def check_fit(
        self,
        counts: SpikeCounts,
        config: TrainingConfig | None = None,
        validation: SpikeCounts | None = None,
        n_covariates: int = 0,
    ) -> None:
        """The checks :meth:`fit` makes first, before it allocates anything, without fitting.

        Parameters
        ----------
        counts : SpikeCounts
            The counts to fit.
        config : TrainingConfig, optional
            The training settings (default: this model's own).
        validation : SpikeCounts, optional
            The held-out counts the fit would score as it goes (their particles count in its memory).
        n_covariates : int
            The covariates' columns the fit would weigh (:attr:`spikeglm.covariates.Design.n_features`).

        Raises
        ------
        ValueError
            If there are more latent factors than units, the history window is longer than the longest
            trial (or segment), or the fit's memory
            (:meth:`fit_memory`) is more than the machine has available; one line naming the counts' file,
            the setting at fault and what to change.
        """
        config = self.training if config is None else config
        where = counts.source
        n_latent = self.checked_settings().n_latent
        if n_latent > counts.n_units:
            raise ValueError(
                f"{where}: n_latent={n_latent} (--latent) is more than the {counts.n_units} units: so many "
                f"factors cannot be told apart; give at most {counts.n_units}"
            )
        checked = self.checked_settings()
        self._check_auto_window(where)
        if checked.penalty == "group-lasso" and not checked.glm:
            raise ValueError(
                f"{where}: penalty='group-lasso' (--penalty) applies to fits without hidden neurons or "
                "latent factors (its proximal steps need the exact solve); this one has "
                f"n_hidden={checked.n_hidden}, n_latent={checked.n_latent}: use penalty='ridge', or none"
            )
        segments = _stand_in(counts.n_trials, counts.n_bins, counts.n_units, self)
        window = checked.basis.window
        if window > segments.length:
            longest = (
                f"a segment (segment_bins={segments.length}, --segment-bins)"
                if segments.cut
                else f"the longest trial ({segments.length} bins)"
            )
            own = isinstance(checked.basis, basis_module.OwnHistory) and checked.basis.own.window == window
            setting = "self_window" if own else "window"
            raise ValueError(
                f"{where}: {setting}={window} (--{setting.replace('_', '-')}) is longer than {longest}; "
                f"give a history window of at most {segments.length} bins"
                + (", or longer segments" if segments.cut else "")
            )
        scoring = {}
        if validation is not None:
            scoring = {
                "score_trials": validation.n_trials,
                "score_bins": validation.n_bins,
                "n_particles": VALIDATION_PARTICLES,
            }
        parts = self.fit_memory(
            counts.n_trials, counts.n_bins, counts.n_units, config, n_covariates=n_covariates, **scoring
        )
        check_memory(parts, where, self._memory_advice(counts.n_units, config))

    def fit_memory(
        self,
        n_trials: int,
        n_bins: int,
        n_units: int,
        config: TrainingConfig | None = None,
        n_covariates: int = 0,
        **scoring,
    ) -> dict[str, float]:
        """The memory a fit of this model to counts of this shape (with ``n_covariates`` covariate
        columns) would take, by part, in bytes.

        :func:`spikeglm.inference.fit_memory` for this model's settings (``config``: its training settings, by
        default its own) and the size of the parts its steps are computed in; ``scoring`` are the
        arguments of that function that size a scoring of held-out counts.
        """
        checked = self.checked_settings()
        config = checked.training if config is None else config
        segments = _stand_in(n_trials, n_bins, n_units, self)
        batch = auto_batch_size(segments) if config.batch_size is None else config.batch_size
        per_part = min(max(1, config.part_bins // segments.bins), batch, len(segments))
        return fit_memory(
            n_units,
            checked.n_hidden,
            checked.basis.window,
            checked.basis.n_basis,
            per_part * segments.bins,
            config.n_samples,
            config.objective,
            n_latent=checked.n_latent,
            n_covariates=n_covariates,
            **scoring,
        )

    def _memory_advice(self, n_units: int, config: TrainingConfig) -> dict[str, str]:
        """What to change when each part of :meth:`fit_memory` is too large, naming the settings."""
        units = f"use fewer than the {n_units} units (--units, --min-spikes, --min-rate)"
        checked = self.checked_settings()
        n_hidden, n_latent = checked.n_hidden, checked.n_latent
        hidden = f"use fewer hidden neurons than n_hidden={n_hidden} (--hidden)"
        latent = f"use fewer latent factors than n_latent={n_latent} (--latent)"
        return {
            "parameters": latent if n_latent > n_units else hidden if n_hidden > n_units else units,
            "start": f"{units}, or hidden neurons (no standard errors then)" if checked.glm else units,
            "step": f"lower part_bins={config.part_bins} (--part-bins) or n_samples={config.n_samples} "
            "(--samples)" + (f", or {latent}" if n_latent else ""),
            "scoring": f"{hidden}, or hold out fewer trials",
        }

    def _fit(
        self,
        counts: SpikeCounts,
        visible: torch.Tensor,
        config: TrainingConfig,
        records: tuple[dict, ...],
        columns: torch.Tensor | None,
        *,
        validation: Segments | None,
        callback: Callable[[EpochRecord], None] | None,
        device: str | torch.device | None,
        checkpoint: str | os.PathLike | None,
        resume: bool,
        given: bool,
    ) -> None:
        """Initialise (or restore from the checkpoint; ``given``: from the model's network) and train."""
        checked = self.checked_settings()
        options = {
            **_fit_options(config),
            "segment_bins": checked.segment_bins,
            "standard_errors": checked.standard_errors,
        }
        fitted_on = json_plain(provenance.fitted_on(counts), strict=False)
        # The penalty only where there is one: checkpoints made before it could be set still match.
        penalised = {"penalty": checked.penalty, "penalty_strength": checked.penalty_strength}
        checked_options = {**options, **penalised} if checked.penalty else options
        identity = self._identity(fitted_on, checked_options, records)
        saved = _saved_state(checkpoint, identity) if resume and checkpoint is not None else None
        self.history_ = [] if saved is None else saved["history"]
        self.covariates_ = [dict(record) for record in records]
        self.covariate_se_ = None
        if not given:
            self._choose_basis(visible, columns, config)
        network, posterior = self._start(visible, saved, config.seed, given)
        self.unit_ids_ = [str(u) for u in counts.unit_ids]
        self.source_ = None
        self.bin_size_ = str(counts.bin_size)
        self.data_ = json_plain(counts.metadata, strict=False)
        self.fitted_on_ = fitted_on
        self.fit_options_ = options
        self.selection_ = None
        self.strength_se_ = self.strength_se_source_ = self.entry_strength_ = None
        where = parallel.choose_device(device)
        network.to(where)
        posterior.to(where)
        try:
            self._solve(
                network,
                posterior,
                on_device(self._segments(visible, columns), where),
                config,
                validation,
                _chain([self.history_.append, callback]),
                saved,
                None if checkpoint is None else self._checkpoint_writer(checkpoint, identity),
                given,
            )
        finally:
            network.cpu()
            posterior.cpu()

    def _check_auto_window(self, where: str) -> None:
        """Refuse the settings of one basis with ``window="auto"``, which chooses the bases itself."""
        given = [
            name
            for name, value in (
                ("basis_options", self.basis_options),
                ("self_basis (--self-basis)", self.self_basis),
                ("self_window (--self-window)", self.self_window),
            )
            if value
        ]
        if SETTINGS["window"].check(self.window) == "auto" and given:
            raise ValueError(
                f"{where}: window='auto' (--window auto) compares bases of its own, for the couplings and "
                f"for the neurons' own history, so {given[0]} cannot apply: leave it out, or give a window"
            )

    def _with_own_history(self, basis: basis_module.Basis) -> basis_module.Basis:
        """``basis``, or with ``self_basis`` the :class:`~spikeglm.basis.OwnHistory` of ``basis`` and it."""
        own, window = (SETTINGS[name].check(getattr(self, name)) for name in ("self_basis", "self_window"))
        if own is None:
            if window is not None:
                raise ValueError(f"self_window={window} (--self-window) needs self_basis (--self-basis)")
            return basis
        if window is None:
            raise ValueError(
                f"self_basis={own!r} (--self-basis) needs self_window (--self-window): the history length "
                "of the neurons' own filters in bins, e.g. 50"
            )
        if isinstance(basis, basis_module.OwnHistory):
            raise ValueError(f"self_basis={own!r} was given with a basis that has one already: {basis!r}")
        return basis_module.OwnHistory(basis, basis_module.get(own, window=window))

    def _choose_basis(
        self, visible: torch.Tensor, columns: torch.Tensor | None, config: TrainingConfig
    ) -> None:
        """With ``window="auto"``: the history basis chosen by cross-validation (:attr:`basis_choice_`),
        which the fit then uses (a given network keeps its own)."""
        if SETTINGS["window"].check(self.window) != "auto":
            return
        self.basis_choice_ = None
        checked = self.checked_settings()
        self.basis_choice_ = cross_validated_basis(
            visible,
            checked.link,
            checked.segment_bins,
            covariates=columns,
            max_iterations=config.epochs if checked.glm else START_ITERATIONS,
            part_bins=config.part_bins,
        )[1]

    def _start(
        self, visible: torch.Tensor, saved: dict | None, seed: int, given: bool
    ) -> tuple[Network, Posterior]:
        """The network and the posterior a fit starts from: new (seeded), or those of the checkpoint; where
        ``given``, the network the model has."""
        n_visible = visible.shape[-1]
        generator = torch.Generator().manual_seed(seed)
        if given:
            network = self._fitted_network()
            self._check_given(network)
            self._starts_given = False  # a later fit of this model starts afresh
        else:
            network = self._new_network(n_visible)
            # A GLM's optimum is unique (exp and softplus links): start it from no coupling at all, so that
            # the fit depends on the data alone.
            scale = 0.0 if self.checked_settings().glm else 0.1
            network.init_from_counts(visible, scale=scale, generator=generator)
        posterior = self._new_posterior(n_visible)
        posterior.init_rates(float(mean_counts(visible).mean()), scale=0.1, generator=generator)
        if saved is not None:
            network.load_state_dict(saved["network"])
            posterior.load_state_dict(saved["posterior"])
        self.network_, self.posterior_ = network, posterior
        return network, posterior

    def _solve(
        self,
        network: Network,
        posterior: Posterior,
        segments: Segments,
        config: TrainingConfig,
        validation: Segments | None,
        callback: Callable[[EpochRecord], None],
        saved: dict | None,
        checkpoint: Callable[[Resume, dict], None] | None,
        given: bool,
    ) -> None:
        """Fit from the start :meth:`_start` made: the GLM solve without hidden neurons, else training
        (from the GLM's start, unless the network was ``given``)."""
        penalty = None if config.freeze_network else self._penalty(network, segments, config)
        if self.checked_settings().glm:
            if config.freeze_network:
                return
            self.stopped_ = solve_glm(  # an ordinary GLM: solved, no sampling
                network,
                segments,
                max_iterations=config.epochs,
                part_bins=config.part_bins,
                callback=callback,
                penalty=penalty,
            )[1]
            self._warn_unbounded(network)
            if isinstance(penalty, GroupLasso):  # a filter it set to zero has no standard error
                self.entry_strength_ = _entry_strengths(network, segments, penalty, config.part_bins)
            else:
                self._standard_errors(network, segments, _se_source(penalty), penalty=penalty)
            return
        if saved is None and not given and config.init == "glm":
            estimate = self.checked_settings().latent_tau == "auto"
            # Couplings solved exactly after training need only a looser start.
            tolerance = START_TOLERANCE_GRAD if config.solves_after_training(network) else GLM_TOLERANCE_GRAD
            part = config.part_bins
            glm_start(
                network,
                posterior,
                segments,
                part,
                estimate_tau=estimate,
                tolerance_grad=tolerance,
                penalty=penalty,
            )
        self.stopped_ = train(
            network,
            posterior,
            segments,
            config,
            validation=validation,
            callback=callback,
            resume=None if saved is None else _resume_point(saved),
            optimizer_state=None if saved is None else saved["optimizer"],
            checkpoint=checkpoint,
            previous=list(self.history_),
            penalty=penalty,
        )[1]
        if config.solves_after_training(network):
            self._solve_given_path(network, posterior, segments, config, penalty)

    def _solve_given_path(
        self,
        network: Network,
        posterior: Posterior,
        segments: Segments,
        config: TrainingConfig,
        penalty: Penalty | None,
    ) -> None:
        """After training a network with latent factors and no hidden neuron: its couplings and biases
        solved exactly given the factors' path, the Laplace posterior's mean given the trained network
        (stochastic steps leave them near, not at, their optimum), and their errors given the same path."""
        path = _latent_path(network, posterior)
        solve_glm(
            network,
            segments,
            max_iterations=config.epochs,
            part_bins=config.part_bins,
            latent=path,
            penalty=penalty,
        )
        drive = _latent_drive(path, network)
        source = _se_source(penalty, latent=True)
        self._standard_errors(network, segments, source, offset=drive, penalty=penalty)

    def _warn_unbounded(self, network: Network) -> None:
        """Warn of the couplings the data leave unbounded, naming the strongest, and of what bounds them
        (:func:`~spikeglm.inference.glm.unbounded_couplings`)."""
        found = unbounded_couplings(network)
        if not found:
            return
        labels = [str(u) for u in self.unit_ids_]
        named = ", ".join(f"{labels[pre]} -> {labels[post]} ({value:+.0f})" for post, pre, value in found[:3])
        warnings.warn(
            f"{len(found)} coupling(s) have a strength beyond +-{UNBOUNDED_STRENGTH:g}, e.g. {named}: the "
            "data leave them unbounded (typically a neuron that never fired within the history window after "
            "another's spikes), so their maximum-likelihood value is at infinity and held-out spikes after "
            "them are predicted at almost no rate. A ridge penalty bounds them: penalty='ridge' (--penalty "
            "ridge), its strength chosen by held-out likelihood with penalty_strength='cv'",
            UserWarning,
            stacklevel=4,
        )

    def _standard_errors(self, network: Network, segments: Segments, source: dict, **options) -> None:
        """The couplings' standard errors, and the covariates' kernels', from the observed information
        (``source`` says which), where the ``standard_errors`` setting asks for them."""
        wanted = self.checked_settings().standard_errors
        if wanted is False:
            return
        auto = wanted == "auto" and network.bias.device.type == "cpu"  # a GPU is not held to the budget
        hours = information_seconds(network, segments) / 3600 if auto else 0.0
        if hours > CPU_BUDGET / 3600:
            warnings.warn(
                f"the couplings' standard errors were not computed: at {network.n_neurons} neurons and "
                f"{segments.n_trials * segments.n_bins:,} bins they would take about {hours:.2g} hours "
                f"of one CPU core, beyond the {CPU_BUDGET / 3600:g} that standard_errors='auto' spends. "
                "standard_errors=True (--standard-errors yes) computes them anyway (a GPU does it much "
                "faster); the jitter test (method='jitter') tests the couplings without them",
                UserWarning,
                stacklevel=5,
            )
            return
        functions = kernel_functions(self.covariates_, seconds(self.bin_size_, "bin_size"))
        self.strength_se_, kernel_se = standard_errors(network, segments, kernels=functions, **options)
        self.strength_se_source_ = source
        names = [record["name"] for record in self.covariates_]
        self.covariate_se_ = dict(zip(names, kernel_se, strict=True)) if names else None

    def _penalty(self, network: Network, segments: Segments, config: TrainingConfig) -> Penalty | None:
        """The penalty of a fit, its strength cross-validated where asked (that of the visible neurons'
        GLM, for a fit with hidden neurons or latent factors); recorded in the fit's options (the strength
        used, and the cross-validation's table)."""
        checked = self.checked_settings()
        if checked.penalty is None:
            return None
        strength = checked.penalty_strength
        if strength == "cv":
            strength, table = cross_validated_strength(
                network,
                segments.counts,
                checked.penalty,
                checked.segment_bins,
                max_iterations=config.epochs,
                part_bins=config.part_bins,
                covariates=segments.covariates,
            )
            self.fit_options_["penalty_cv"] = table
        self.fit_options_.update(penalty=checked.penalty, penalty_strength=float(strength))
        return PENALTIES[checked.penalty](float(strength))

    def _checkpoint_writer(
        self, checkpoint: str | os.PathLike, identity: dict | None
    ) -> Callable[[Resume, dict], None]:
        """What the trainer calls to write the checkpoint: the model with where the fit stands."""

        def write(where: Resume, optimizer_state: dict) -> None:
            if parallel.is_main():
                state = {
                    "epochs_done": where.epochs_done,
                    "steps_done": where.steps_done,
                    "partial": {
                        "objective_sum": where.objective_sum,
                        "seconds": where.seconds,
                        "groups": list(where.groups),
                        "last_groups": list(where.last_groups),
                    },
                    "identity": identity,
                    "optimizer": optimizer_state,
                }
                self._write(checkpoint, overwrite=True, training=state)

        return write

    def _identity(self, fitted_on: dict, options: dict, covariates: tuple[dict, ...] = ()) -> dict:
        """What a checkpoint must match to be resumed: the model, the settings and the data (the counts
        of ``fitted_on``, wherever they were read from, and the covariates' names, kernels and scales)."""
        model = self._model_record()
        if covariates:  # only then, so that checkpoints made before covariates existed still match
            model["covariates"] = [
                {key: r[key] for key in ("name", "kernel", "scale", "span")} for r in covariates
            ]
        return json_plain(
            {
                "model": model,
                "options": {key: value for key, value in options.items() if key != "epochs"},
                "data": {key: value for key, value in fitted_on.items() if key not in provenance.ORIGIN},
            }
        )

    def _model_record(self) -> dict:
        """The model's shape as checkpoints and model files record it: hidden neurons, latent factors, basis,
        link and posterior family."""
        checked = self.checked_settings()
        return {
            "n_hidden": checked.n_hidden,
            "n_latent": checked.n_latent,
            "latent_tau": checked.latent_tau,
            "basis": checked.basis.to_dict(),
            "link": checked.link,
            "variational": checked.variational,
        }

    @classmethod
    def from_connectivity(
        cls,
        conn: Connectivity,
        variational: str = "forward-backward",
        *,
        freeze_network: bool = True,
        **settings,
    ) -> POGLM:
        """A model whose network is given (e.g. the ground truth of a synthetic network).

        ``conn.metadata`` must name the ``basis`` (a basis spec) and the ``link``, as the connectivity of
        :func:`spikeglm.synthetic.network` and of a fitted model do; where it holds ``latent`` (the
        factors' ``loading`` and ``tau_bins``, :meth:`~spikeglm.model.Network.latent_record`), the network
        has those factors. By default its network stays as given (``freeze_network``): :meth:`fit` then
        fits only the posterior, which scoring and inference need. With ``freeze_network=False`` (here, or
        set later) the next fit trains the network from the given one (no GLM start, no choice of
        window), e.g. to see where a fit started at the true network goes; fits after it start afresh.
        ``settings`` are further constructor settings (e.g. ``epochs``, ``seed``).
        """
        missing = [key for key in ("basis", "link") if key not in conn.metadata]
        if missing:
            raise ValueError(f"connectivity metadata lacks {', '.join(missing)}: cannot rebuild the model")
        basis = basis_module.from_dict(conn.metadata["basis"])
        loading, tau = _latent_from_metadata(conn.metadata.get("latent"), conn.weights.shape[0])
        model = cls(
            conn.n_hidden,
            basis=basis,
            link=conn.metadata["link"],
            variational=variational,
            freeze_network=freeze_network,
            n_latent=loading.shape[1],
            **settings,
        )
        covariates = conn.metadata.get("covariates") or []
        model.covariates_ = [{key: covariate[key] for key in RECORD_FIELDS} for covariate in covariates]
        network = model._new_network(conn.n_visible)
        check_own_history(torch.tensor(conn.weights), basis, "conn.weights")
        with torch.no_grad():
            network.weight.copy_(torch.tensor(conn.weights))
            network.bias.copy_(torch.tensor(conn.bias))
            if network.covariate_weight is not None:
                weights = [torch.tensor(covariate["weight"]) for covariate in covariates]
                network.covariate_weight.copy_(torch.cat(weights, dim=1))
            if network.loading is not None and network.latent_prior is not None:
                network.loading.copy_(torch.as_tensor(loading))
                network.latent_prior.log_tau.copy_(torch.as_tensor(np.log(tau)))
        model.network_ = network
        model._starts_given = True  # frozen or not (set_params may unfreeze it), the next fit starts here
        model.unit_ids_ = conn.labels[: conn.n_visible]
        model.bin_size_ = conn.metadata.get("bin_size")
        return model

    def _new_network(self, n_visible: int) -> Network:
        checked = self.checked_settings()
        n_covariates = sum(record["n_features"] for record in self.covariates_)
        return Network(
            n_visible,
            checked.n_hidden,
            checked.basis,
            checked.link,
            checked.n_latent,
            start_tau(checked.latent_tau),
            n_covariates,
        )

    def _new_posterior(self, n_visible: int) -> Posterior:
        checked = self.checked_settings()
        matrix = checked.basis.matrix()
        return Posterior(
            checked.variational, n_visible, checked.n_hidden, matrix, checked.link, checked.n_latent
        )

    # ------------------------------------------------------------------ using a fit
    def _fitted_network(self) -> Network:
        if self.network_ is None:
            raise RuntimeError(
                "freeze_network keeps the network the model has, and this one has none: fit it first, or "
                "build it with POGLM.from_connectivity"
            )
        return self.network_

    def _check_given(self, network: Network) -> None:
        """Refuse a given network that the settings do not describe (e.g. ``n_hidden`` changed since)."""
        checked = self.checked_settings()
        has = (network.n_hidden, network.n_latent, network.link_name, tuple(network.basis_matrix.shape))
        asked = (checked.n_hidden, checked.n_latent, checked.link, tuple(checked.basis.matrix().shape))
        if has != asked:
            names = "hidden neurons, latent factors, link, basis (bins x functions)"
            raise ValueError(
                f"the model's network has {has} and its settings ask for {asked} ({names}): a fit from a "
                "given network keeps its shape; set them back, or fit a new model"
            )

    def _fitted(self) -> tuple[Network, Posterior]:
        if self.network_ is None or self.posterior_ is None:
            raise RuntimeError("this POGLM is not fitted yet: call fit(counts) first")
        return self.network_, self.posterior_

    def _visible(self, counts: SpikeCounts) -> torch.Tensor:
        """The counts as a compact tensor, checked against the fitted network."""
        network = self.network_
        if network is None:
            raise RuntimeError("this POGLM has no network yet: call fit(counts) first")
        _check_counts(counts, "counts")
        if counts.n_units != network.n_visible:
            raise ValueError(
                f"counts have {counts.n_units} units but the model was fitted on {network.n_visible}"
            )
        return _compact_tensor(counts)

    def _segments(self, visible: torch.Tensor, columns: torch.Tensor | None = None) -> Segments:
        checked = self.checked_settings()
        return Segments(
            visible, length=checked.segment_bins, context=checked.basis.window, covariates=columns
        )

    def _columns(self, counts: SpikeCounts, covariates: list[Covariate] | None) -> torch.Tensor | None:
        """The fit's covariates on the bins of ``counts`` (None for a fit without any), refusing covariates
        that are not the fit's."""
        if not self.covariates_:
            if covariates:
                raise ValueError("this model was fitted without covariates; fit it with them to use them")
            return None
        return covariate_design(covariates or [], counts, self.covariates_).columns

    def bin_like(self, recording: Recording) -> SpikeCounts:
        """The counts of ``recording`` binned as the fit's data was.

        The model's units in its order, its bin size and its trial cutting: what :meth:`infer`,
        :meth:`score` and plots of a recording need.

        Raises
        ------
        ValueError
            If the recording lacks one of the model's units (the message names it).
        """
        if self.bin_size_ is None:
            raise RuntimeError("this POGLM is not fitted yet: call fit(counts) first")
        units = recording.select_units(self.unit_ids_)
        return units.bin(self.bin_size_, trial_length=self.data_.get("trial_length"))

    @property
    def bin_seconds(self) -> float:
        """The bin size of the fit in seconds."""
        if self.bin_size_ is None:
            raise RuntimeError("this POGLM is not fitted yet: call fit(counts) first")
        return seconds(self.bin_size_, "bin_size")

    @overload
    def infer(
        self,
        counts: SpikeCounts,
        n_samples: int = ...,
        seed: int = ...,
        covariates: list[Covariate] | None = ...,
        *,
        as_pynapple: Literal[False] = ...,
    ) -> np.ndarray: ...

    @overload
    def infer(
        self,
        counts: SpikeCounts,
        n_samples: int = ...,
        seed: int = ...,
        covariates: list[Covariate] | None = ...,
        *,
        as_pynapple: Literal[True],
    ) -> Any: ...

    @torch.no_grad()
    def infer(
        self,
        counts: SpikeCounts,
        n_samples: int = 100,
        seed: int = 0,
        covariates: list[Covariate] | None = None,
        *,
        as_pynapple: bool = False,
    ) -> np.ndarray | Any:
        """Posterior mean rate of each hidden neuron in each bin, shape (trials, bins, n_hidden), in
        expected spikes per bin.

        For the mean-field families this is the rate of q; for the autoregressive ones, its average over
        ``n_samples`` draws of the hidden past. Long trials are done segment by segment, as in the fit.
        The posterior reads the visible counts only: ``covariates``, where given, are only checked against
        the fit's.

        With ``as_pynapple``, the same values as a ``pynapple.TsdFrame`` (pynapple is an optional extra:
        ``pip install "spikeglm[pynapple]"``): one row per bin at the bin's centre on the recording's
        clock (:meth:`SpikeCounts.bin_times`), trials one after another, one column per hidden neuron
        (``hidden-0``, ``hidden-1``, ...), and the trials' spans as its time support. Pynapple's
        intervals are closed, so a trial that stops where the next starts ends 1 µs earlier in the
        support, as pynapple itself does with touching intervals.

        Raises
        ------
        ModuleNotFoundError
            With ``as_pynapple``, without pynapple, naming the extra.
        ValueError
            With ``as_pynapple``, for trials that overlap (:meth:`SpikeCounts.bin_times`).
        """
        if as_pynapple:
            nap = optional("pynapple", "POGLM.infer(as_pynapple=True)")
            centres, spans = counts.bin_times()
            rates = self.infer(counts, n_samples, seed, covariates)
            return _tsdframe(nap, rates, centres, spans)
        _, posterior = self._fitted()
        segments = self._segments(self._visible(counts))
        if covariates is not None:
            self._columns(counts, covariates)
        rates = np.empty((counts.n_trials, counts.n_bins, posterior.n_hidden), dtype=np.float32)
        with parallel.seeded(seed):
            for index in segments.groups(PART_BINS):
                visible = segments.batch(index).visible
                if posterior.autoregressive:
                    part = posterior.sample(visible, n_samples, None)[1].mean(0)
                else:
                    part = posterior.rates(visible)
                for number, values in zip(index.tolist(), part.numpy(), strict=True):
                    trial, piece = divmod(number, segments.per_trial)
                    first = piece * segments.length
                    last = min(first + segments.length, counts.n_bins)
                    rates[trial, first:last] = values[segments.context : segments.context + last - first]
        return rates

    @torch.no_grad()
    def infer_latent(
        self, counts: SpikeCounts, covariates: list[Covariate] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of each latent factor in each bin, each shape (trials,
        bins, n_latent), in units of the factor's stationary standard deviation (its prior has variance 1).

        Every trial is one path, whole: a continuous recording is not cut, so the factors carry across
        what the fit's segments cut. The posterior is the Laplace approximation given the fitted network
        (:func:`~spikeglm.variational.laplace_latent`), started from the fitted amortised posterior; with
        hidden neurons, their posterior mean counts stand in for their spikes. The factor's drive on
        neuron ``n`` is ``loading[n, k]`` times the path (:attr:`~spikeglm.model.Network.loading`).

        Raises
        ------
        ValueError
            If the model has no latent factor (``n_latent=0``).
        """
        network, posterior = self._fitted()
        if network.n_latent == 0:
            raise ValueError("this model has no latent factors (n_latent=0): there is nothing to infer")
        visible = self._visible(counts)
        columns = self._columns(counts, covariates)
        hidden = torch.from_numpy(self.infer(counts, covariates=covariates)) if network.n_hidden else None
        shape = (counts.n_trials, counts.n_bins, network.n_latent)
        mean, sd = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
        for trial in range(counts.n_trials):
            start = posterior.latent_posterior(network, visible[trial])
            lag = None if hidden is None else hidden[trial]
            known = None if columns is None else columns[trial]
            q = laplace_latent(network, visible[trial], start, lag, covariates=known)
            mean[trial], sd[trial] = q.mean.numpy(), q.variance.sqrt().numpy()
        return mean, sd

    def latent_drive(self, counts: SpikeCounts, covariates: list[Covariate] | None = None) -> np.ndarray:
        """The latent factors' posterior mean drive on each visible neuron in each bin, shape (trials,
        bins, units): :meth:`infer_latent`'s mean path times the loadings, a term of every predictor. What
        the jitter test of a fit with factors takes as known (``conn.significance(method="jitter",
        counts=counts, drive=model.latent_drive(counts))``)."""
        network, _ = self._fitted()
        mean, _ = self.infer_latent(counts, covariates)
        assert network.loading is not None  # infer_latent refused a model without factors
        return mean.astype(np.float64) @ network.loading.detach().double().numpy()[: network.n_visible].T

    @torch.no_grad()
    def known_drive(self, counts: SpikeCounts, covariates: list[Covariate] | None = None) -> np.ndarray:
        """What drives each visible neuron in each bin besides the couplings and its bias, shape (trials,
        bins, units): the covariates' drive and the latent factors' posterior mean drive
        (:meth:`latent_drive`), zero for a fit with neither. What the jitter test of such a fit takes as
        known (``conn.significance(method="jitter", counts=counts, drive=model.known_drive(counts,
        covariates))``)."""
        network, _ = self._fitted()
        drive = np.zeros((counts.n_trials, counts.n_bins, network.n_visible))
        given = network.covariate_drive(self._columns(counts, covariates))
        if given is not None:
            drive += given.double().numpy()[..., : network.n_visible]
        if network.n_latent:
            drive += self.latent_drive(counts, covariates)
        return drive

    @torch.no_grad()
    def score(
        self,
        counts: SpikeCounts,
        n_particles: int = 1000,
        seed: int = 0,
        method: str = "smc",
        covariates: list[Covariate] | None = None,
    ) -> float:
        """Held-out log-likelihood per visible neuron-bin.

        Parameters
        ----------
        counts : SpikeCounts
            Visible counts of held-out trials.
        n_particles : int
            Draws of the hidden counts per trial, by either method: the particles of one filter
            (``"smc"``), or the importance samples (``"is"``: particles drawn for whole trials, weighted
            and never resampled).
        seed : int
            Seed of the draws.
        method : {"smc", "is"}
            ``"smc"``: a particle filter over the hidden counts (:meth:`log_likelihood`), exact with no
            hidden neuron, and tight enough to compare models with and without hidden neurons. All the
            particles go to one filter: the log of its estimate falls less short of the likelihood than
            that of several smaller filters' average, by amounts that differ from model to model, and
            this score has no standard error to take from several (:meth:`log_likelihood` has).
            ``"is"``: importance sampling of whole trials with the posterior as the proposal (each long
            trial scored segment by segment); a looser lower bound, biased against hidden neurons.
        covariates : list of Covariate, optional
            The fit's covariates, for these counts (needed by a model fitted with covariates).
        """
        if method == "smc":
            return self.log_likelihood(
                counts, n_particles=n_particles, seed=seed, n_runs=1, covariates=covariates
            ).per_bin
        if method != "is":
            raise ValueError(f"score: unknown method {method!r}; expected 'smc' or 'is'")
        network, posterior = self._fitted()
        segments = self._segments(self._visible(counts), self._columns(counts, covariates))
        with parallel.seeded(seed):
            return marginal_log_likelihood(network, posterior, segments, n_samples=n_particles)

    @torch.no_grad()
    def log_likelihood(
        self,
        counts: SpikeCounts,
        n_particles: int = 1000,
        seed: int = 0,
        proposal: str = "model",
        n_runs: int = 4,
        covariates: list[Covariate] | None = None,
    ) -> smc.Estimate:
        """``log p(visible counts)`` per trial by sequential Monte Carlo, with its standard error.

        Every trial is filtered whole (a continuous recording as one sequence), by ``n_runs``
        independent particle filters of ``n_particles / n_runs`` particles each whose hidden counts are
        drawn from the ``proposal`` (see :mod:`spikeglm.smc`). ``covariates`` are the fit's covariates for
        these counts (needed by a model fitted with covariates).

        Returns
        -------
        spikeglm.smc.Estimate
            ``.per_bin`` (as :meth:`score`), ``.se`` its Monte Carlo standard error, ``.per_trial``.
        """
        proposal = smc.PROPOSALS.name(proposal)
        # The model's own proposal needs only the network: a true network from from_connectivity is scored
        # before any posterior is fitted.
        if proposal == "posterior" or self.network_ is None:
            network, posterior = self._fitted()
        else:
            network, posterior = self.network_, None
        visible = self._visible(counts)
        return smc.log_likelihood(
            network,
            visible,
            posterior,
            proposal=proposal,
            n_particles=n_particles,
            n_runs=n_runs,
            seed=seed,
            covariates=self._columns(counts, covariates),
        )

    def connectivity(self) -> Connectivity:
        """The fitted coupling weights, filters and biases of all neurons (hidden ones labelled)."""
        network, _ = self._fitted()
        labels = self.unit_ids_ + [f"hidden-{k}" for k in range(network.n_hidden)]
        visible = np.arange(network.n_neurons) < network.n_visible
        checked = self.checked_settings()
        metadata = {
            "basis": checked.basis.to_dict(),
            "link": checked.link,
            "bin_size": self.bin_size_,
            "variational": checked.variational,
            "spikeglm_version": __version__,
            "fitted_on": self.fitted_on_,
            **self.fit_options_,
        }
        if self.selection_ is not None:
            metadata["selection"] = self.selection_.to_dict()
        if self.basis_choice_ is not None:
            metadata["basis_choice"] = self.basis_choice_
        if network.n_latent:
            metadata["latent"] = network.latent_record()
        if self.covariates_:
            metadata["covariates"] = self._covariate_kernels(network)
        if self.strength_se_ is not None:
            metadata["strength_se"] = se_to_json(self.strength_se_)
            metadata.update(_se_metadata(self.strength_se_source_ or {"method": "fisher"}))
        if self.entry_strength_ is not None:
            metadata["entry_strength"] = self.entry_strength_.tolist()
        return Connectivity(
            weights=network.weight.detach().numpy().astype(np.float64),
            basis_matrix=network.basis_matrix.numpy().astype(np.float64),
            bias=network.bias.detach().numpy().astype(np.float64),
            labels=labels,
            visible=visible,
            metadata=metadata,
        )

    def _covariate_kernels(self, network: Network) -> list[dict]:
        """The covariates' weights, kernels and their errors, as a connectivity's metadata hold them
        (:func:`spikeglm.covariates.kernel_metadata`)."""
        assert network.covariate_weight is not None  # the fit had covariates
        weight = network.covariate_weight.detach().double().numpy()
        errors = None
        if self.covariate_se_ is not None:
            errors = {name: se_to_json(table) for name, table in self.covariate_se_.items()}
        return kernel_metadata(self.covariates_, weight, self.bin_seconds, errors)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the fitted model to an HDF5 file (no pickle), atomically.

        The file starts with a SHA-256 checksum of the rest, which :meth:`load` verifies before it parses
        anything. Raises FileExistsError if ``path`` exists and ``overwrite`` is False, and ValueError if
        ``path`` is the file this model was loaded from (``source_``), even with ``overwrite``.
        """
        self._write(path, overwrite)

    def _write(self, path: str | os.PathLike, overwrite: bool, training: dict | None = None) -> None:
        network, posterior = self._fitted()
        states = {"network": network.state_dict(), "posterior": posterior.state_dict()}
        modelfile.write(
            path, self._config(), states, self.history_, training, overwrite=overwrite, inputs=[self.source_]
        )

    def _config(self) -> dict:
        network, _ = self._fitted()
        return {
            "n_visible": network.n_visible,
            **self._model_record(),
            "unit_ids": self.unit_ids_,
            "bin_size": self.bin_size_,
            "data": self.data_,
            "fitted_on": self.fitted_on_,
            "fit_options": self.fit_options_,
            "selection": None if self.selection_ is None else self.selection_.to_dict(),
            "strength_se": None if self.strength_se_ is None else se_to_json(self.strength_se_),
            "strength_se_source": self.strength_se_source_,
            "entry_strength": None if self.entry_strength_ is None else self.entry_strength_.tolist(),
            "covariates": self.covariates_,
            "basis_choice": self.basis_choice_,
            "covariate_se": None
            if self.covariate_se_ is None
            else {name: se_to_json(errors) for name, errors in self.covariate_se_.items()},
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> POGLM:
        """Read a model written by :meth:`save` (or a checkpoint of :meth:`fit`).

        Nothing is built from the file before it has passed every check: its checksum first (files of
        format version 1, from earlier releases, have none), then each field against the format: the
        config, the size of the model it declares, and the shape, type and values of every parameter.

        Parameters
        ----------
        path : path
            The model file.

        Returns
        -------
        POGLM
            The fitted model.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            If the file is damaged, altered or not a model file: one line naming the file and the field.
        """
        model = cls._from_state(modelfile.read(path), os.fspath(path))
        model.source_ = os.fspath(path)
        return model

    @classmethod
    def _from_state(cls, state: dict, path: str) -> POGLM:
        """The fitted model that the state :func:`spikeglm.modelfile.read` read from ``path`` describes."""
        config = state["config"]
        model = cls(
            config["n_hidden"],
            basis=state["basis"],
            link=config["link"],
            variational=config["variational"],
            n_latent=config["n_latent"],
            latent_tau=config["latent_tau"],
        )
        model.history_ = state["history"]
        model.covariates_ = config["covariates"]
        model.basis_choice_ = config["basis_choice"]
        model.covariate_se_ = state["covariate_se"]
        model.network_ = model._new_network(config["n_visible"])
        model.posterior_ = model._new_posterior(config["n_visible"])
        model.network_.load_state_dict(state["network"])
        model.posterior_.load_state_dict(state["posterior"])
        model.unit_ids_ = config["unit_ids"]
        model.bin_size_ = config["bin_size"]
        model.data_ = config["data"]
        model.fitted_on_ = config["fitted_on"]
        model.fit_options_ = config["fit_options"]
        if state["strength_se"] is not None:
            model.strength_se_ = state["strength_se"]
            # files of earlier releases had standard errors of the observed information only
            model.strength_se_source_ = config["strength_se_source"] or {"method": "fisher"}
        model.entry_strength_ = state["entry_strength"]
        model.selection_ = state["selection"]
        # The settings of the fit become the estimator's (files of earlier releases hold the same names).
        settings = {k: v for k, v in model.fit_options_.items() if k in model.get_params()}
        try:
            model.set_params(**settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: config field 'fit_options': {modelfile.one_line(err)}") from None
        return model

    def __repr__(self) -> str:
        state = "fitted" if self.network_ is not None else "not fitted"
        latent = f", n_latent={self.n_latent!r}" if self.n_latent else ""
        own = f", self_basis={self.self_basis!r}, self_window={self.self_window!r}" if self.self_basis else ""
        return (
            f"POGLM(n_hidden={self.n_hidden!r}{latent}, basis={self.basis!r}{own}, link={self.link!r}, "
            f"variational={self.variational!r}; {state})"
        )


def _latent_from_metadata(latent: object, n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    """The loading (N, K) and time constants (K,) that a connectivity's ``latent`` metadata record
    (:meth:`~spikeglm.model.Network.latent_record`); K = 0 without it. ValueError where they are not of
    that form."""
    if latent is None:
        return np.zeros((n_neurons, 0)), np.zeros(0)
    try:
        loading = np.asarray(latent["loading"], dtype=np.float64)  # type: ignore[index]
        tau = np.asarray(latent["tau_bins"], dtype=np.float64)  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"connectivity metadata 'latent' must hold 'loading' and 'tau_bins': {err}"
        ) from None
    if loading.ndim != 2 or loading.shape[0] != n_neurons or tau.shape != (loading.shape[1],):
        raise ValueError(
            f"connectivity metadata 'latent': loading must be ({n_neurons}, K) and tau_bins (K,); got "
            f"{loading.shape} and {tau.shape}"
        )
    if not (np.isfinite(loading).all() and np.isfinite(tau).all() and (tau > 0).all()):
        raise ValueError("connectivity metadata 'latent': loading must be finite and tau_bins positive")
    return loading, tau


def _check_identity(path: str | os.PathLike, saved: dict | None, now: dict) -> None:
    """Refuse to resume a checkpoint made with other data or options, naming every difference."""
    if saved is None:
        raise ValueError(
            f"{path}: the checkpoint does not record its data and options (an older spikeglm made it); "
            "start afresh (--overwrite)"
        )
    # Keys without their group ("model.link" -> "link"): the names of the options a user knows.
    before, after = ({key.split(".", 1)[-1]: v for key, v in _flatten(tree).items()} for tree in (saved, now))
    differences = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new:
            shown = f"{old!r} (now {new!r})"
            differences.append(f"{key} {shown if len(shown) <= 80 else 'differs'}")
    if differences:
        raise ValueError(
            f"{path}: the checkpoint was made with other data or options: {'; '.join(differences)}; "
            "resume with the same ones, or start afresh (--overwrite)"
        )


def _flatten(tree: dict, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys (``basis.window``)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


#: The shortest time pynapple tells apart (s): the gap it leaves between touching intervals.
_PYNAPPLE_PRECISION = 1e-6


def _tsdframe(nap: Any, rates: np.ndarray, centres: np.ndarray, spans: np.ndarray) -> Any:
    """The rates (trials, bins, hidden) as a ``TsdFrame`` at the bins' ``centres``, supported on the
    trials' ``spans`` (see :meth:`POGLM.infer`)."""
    stops = spans[:, 1].copy()
    touching = np.flatnonzero(np.isclose(stops[:-1], spans[1:, 0], rtol=0, atol=_PYNAPPLE_PRECISION))
    stops[touching] = spans[touching + 1, 0] - _PYNAPPLE_PRECISION
    return nap.TsdFrame(
        t=centres.reshape(-1),
        d=rates.reshape(-1, rates.shape[-1]),
        columns=[f"hidden-{k}" for k in range(rates.shape[-1])],
        time_support=nap.IntervalSet(start=spans[:, 0], end=stops),
    )


def _latent_path(network: Network, posterior: Posterior) -> Callable[[Batch], torch.Tensor]:
    """The latent factors' posterior mean path in a batch's segments (segments, bins, K): the Laplace
    posterior's given the network as it is at the first call (:func:`~spikeglm.variational.laplace_paths`),
    from the amortised one's; each segment's path is computed once and kept, so that the couplings' solve
    and their standard errors read the same paths."""
    kept: dict[int, torch.Tensor] = {}

    def path(batch: Batch) -> torch.Tensor:
        numbers = None if batch.numbers is None else batch.numbers.tolist()
        if numbers is not None and all(number in kept for number in numbers):
            return torch.stack([kept[number] for number in numbers])
        with torch.no_grad():
            start = posterior.latent_posterior(network, batch.visible, batch.scored)
            paths = laplace_paths(network, batch, start).mean
        if numbers is not None:
            kept.update(zip(numbers, paths.unbind(), strict=True))
        return paths

    return path


def _latent_drive(path: Callable[[Batch], torch.Tensor], network: Network) -> Callable[[Batch], torch.Tensor]:
    """The drive of the latent factors' ``path`` on every neuron, batch by batch."""

    def drive(batch: Batch) -> torch.Tensor:
        assert network.loading is not None  # the path's posterior checked the factors
        return path(batch).double() @ network.loading.detach().double().T

    return drive


def _resume_point(saved: dict) -> Resume:
    """Where the fit saved in a checkpoint's training state stands."""
    partial = saved.get("partial") or {}
    return Resume(
        saved["epochs_done"],
        saved.get("steps_done", 0),
        partial.get("objective_sum", 0.0),
        partial.get("seconds", 0.0),
        tuple(partial.get("groups", ())),
        tuple(partial.get("last_groups", ())),
    )


def _entry_strengths(network: Network, segments: Segments, penalty: GroupLasso, part_bins: int) -> np.ndarray:
    """The entry strength of each coupling of a group-lasso fit (see ``POGLM.entry_strength_``): the
    strength itself for a kept filter (where its optimality condition holds it to the solver's tolerance),
    the norm of the likelihood's gradient over ``sqrt(B)`` for one set to zero."""
    entry = entry_strengths(likelihood_gradient(network, segments, part_bins)).cpu().double().numpy()
    kept = (network.couplings().detach().norm(dim=-1) > 0).cpu().numpy()
    entry = np.where(kept, penalty.strength, entry)
    np.fill_diagonal(entry, 0.0)
    return entry


def _se_source(penalty: Penalty | None, latent: bool = False) -> dict:
    """Where the standard errors of a fit without hidden neurons come from: the observed information,
    penalised or not, given the latent factors' path where it has them."""
    method = "fisher-latent" if latent else "fisher"
    if penalty is None:
        return {"method": method}
    return {
        "method": f"{method}-penalised",
        "penalty": PENALTIES.name(type(penalty)),
        "penalty_strength": penalty.strength,
    }


def _se_metadata(source: dict) -> dict:
    """How the standard errors were found, as a connectivity's metadata records it."""
    if source["method"] == "bootstrap":
        return {
            "se_method": "parametric bootstrap from the fitted model",
            "se_n_boot": source["n_boot"],
            "se_seed": source["seed"],
        }
    if source["method"] in ("fisher-penalised", "fisher-latent-penalised"):
        given = " given the latent factors' posterior mean path" if "latent" in source["method"] else ""
        penalised = f"the {source['penalty']}-penalised likelihood{given}"
        return {
            "se_method": f"observed Fisher information of {penalised} "
            f"(strength {source['penalty_strength']:.3g}): the errors of the posterior under the "
            "matching Gaussian prior of the couplings, not of a sampling distribution",
        }
    if source["method"] == "fisher-latent":
        return {
            "se_method": "observed Fisher information given the latent factors' posterior mean path (the "
            "path's uncertainty is not carried; the parametric bootstrap carries it)"
        }
    return {"se_method": "observed Fisher information (no hidden neuron)"}


def _saved_state(checkpoint: str | os.PathLike, identity: dict) -> dict | None:
    """The training state in ``checkpoint`` (None if it holds none), refused where its data or settings
    differ from ``identity``."""
    saved = modelfile.read_training_state(checkpoint)
    if saved is not None:
        _check_identity(checkpoint, saved.get("identity"), identity)
    return saved


def _fit_options(config: TrainingConfig) -> dict:
    """The settings a fit used, as recorded in its model file and its connectivity's metadata."""
    return {name: getattr(config, name) for name in TRAINING_SETTINGS}


def _advance(bar: Any, record: EpochRecord) -> None:
    """Move a fit's progress bar on to ``record`` and show its objective: to its epoch, for a trained
    fit (a resumed one starts where it was); by one, for a GLM's solver iterations (no total)."""
    bar.update(1 if bar.total is None else record.epoch + 1 - bar.n)
    bar.set_postfix(objective=f"{record.objective:.4f}", refresh=False)


def _chain(callbacks: list[Callable | None]) -> Callable[[EpochRecord], None]:
    def every(record: EpochRecord) -> None:
        for callback in callbacks:
            if callback is not None:
                callback(record)

    return every


def _check_counts(counts: SpikeCounts, name: str) -> None:
    if not isinstance(counts, SpikeCounts):
        raise TypeError(
            f"{name} must be a spikeglm.SpikeCounts (e.g. SpikeCounts.from_array(array, bin_size='5 ms')); "
            f"got {type(counts).__name__}"
        )


def _stand_in(n_trials: int, n_bins: int, n_units: int, model: POGLM) -> Segments:
    """The segments the model would cut counts of this shape into, from a stand-in that holds no counts."""
    shape = torch.zeros((), dtype=torch.uint8).expand(n_trials, n_bins, n_units)
    return model._segments(shape)


def _compact_tensor(counts: SpikeCounts) -> torch.Tensor:
    """The counts as a tensor in a compact integer dtype (uint8 when they fit, as they almost always do)."""
    array = counts.counts
    dtype = {np.dtype(np.uint8): np.uint8, np.dtype(np.uint16): np.int32}.get(array.dtype, np.int64)
    return torch.from_numpy(array.astype(dtype))
