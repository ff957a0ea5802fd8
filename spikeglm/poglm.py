"""The :class:`POGLM` estimator: a sklearn-like front end to the model, its posterior and its fit."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch

from spikeglm import basis as basis_module
from spikeglm import evaluate, relax
from spikeglm._files import atomic_write
from spikeglm._version import __version__
from spikeglm.connectivity import Connectivity
from spikeglm.fit import PART_BINS, EpochRecord, ProgressLine, choose_device, process, train
from spikeglm.model import Network, check_link, mean_counts
from spikeglm.segments import Segments
from spikeglm.spikes import SpikeCounts
from spikeglm.variational import Posterior, check_family

_FORMAT = "spikeglm-poglm"
_FORMAT_VERSION = 1
#: Default segment length of :meth:`POGLM.fit` (bins): longer trials are cut, with context.
SEGMENT_BINS = 1000


class POGLM:
    """Partially observable GLM: the recorded (visible) neurons plus ``n_hidden`` hidden ones.

    Parameters
    ----------
    n_hidden : int
        Number of hidden neurons (0 gives an ordinary, fully observed GLM).
    basis : str or Basis
        History basis: ``"exponential"`` (literature default), ``"raised-cosine"`` or ``"raw"``.
    window : int
        Number of history lags L (bins).
    link : {"softplus", "exp", "sigmoid"}
        Link from the linear predictor to the expected count per bin.
    variational : {"forward-backward", "forward", "forward-self"}
        Family of the posterior over hidden counts (see :mod:`spikeglm.variational`).
    basis_options : dict, optional
        Extra arguments of the basis (e.g. ``{"decay": 0.25}`` or ``{"n_basis": 4}``).

    Examples
    --------
    >>> import spikeglm as sg
    >>> truth, train, test = sg.synthetic.network(protocol="diffpoglm", seed=0)
    >>> model = sg.POGLM(n_hidden=2, link="sigmoid").fit(train, epochs=50, seed=0)
    >>> ll = model.score(test, n_samples=200)   # log-likelihood per visible neuron-bin
    """

    def __init__(
        self,
        n_hidden: int = 2,
        basis: str | basis_module.Basis = "exponential",
        window: int = 5,
        link: str = "softplus",
        variational: str = "forward-backward",
        basis_options: dict | None = None,
    ) -> None:
        if not isinstance(n_hidden, int) or n_hidden < 0:
            raise ValueError(f"n_hidden must be a whole number >= 0; got {n_hidden!r}")
        self.n_hidden = n_hidden
        self.basis = basis_module.get(basis, window=window, **(basis_options or {}))
        self.link = check_link(link)
        self.variational = check_family(variational)
        self.network_: Network | None = None
        self.posterior_: Posterior | None = None
        self.history_: list[EpochRecord] = []
        self.unit_ids_: list[str] = []
        self.fit_options_: dict = {}
        self.bin_size_: str | None = None
        self.data_: dict = {}

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        counts: SpikeCounts,
        relaxation: str = "eat-cubic",
        temperature: float = 0.5,
        n_samples: int = 5,
        epochs: int = 500,
        lr: float = 0.02,
        batch_size: int | None = None,
        objective: str = "elbo",
        seed: int = 0,
        segment_bins: int | None = SEGMENT_BINS,
        part_bins: int = PART_BINS,
        device: str | torch.device | None = None,
        validation: SpikeCounts | None = None,
        patience: int = 10,
        freeze_network: bool = False,
        progress: bool = False,
        callback: Callable[[EpochRecord], None] | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 50,
        resume: bool = False,
    ) -> POGLM:
        """Fit the model and the posterior over hidden counts by variational inference.

        Parameters
        ----------
        counts : SpikeCounts
            Visible spike counts (trials, bins, units).
        relaxation : str
            ``"eat-cubic"`` (default), ``"eat-sigmoid"``, ``"gumbel-softmax"`` (pathwise gradients) or
            ``"exact"`` (score-function gradients).
        temperature : float
            Temperature of the relaxation (Eat-cubic: ``0 < tau <= 1``).
        n_samples : int
            Hidden-count samples per trial and step.
        epochs : int
            Passes over the training trials.
        lr : float
            Adam learning rate.
        batch_size : int, optional
            Trials (or segments) per step (default: all).
        objective : {"elbo", "iwae"}
            Evidence lower bound or its importance-weighted version.
        seed : int
            Seed of the initialisation and of every random draw; the same seed gives the same fit, on any
            number of processes.
        segment_bins : int, optional
            Trials longer than this (e.g. a continuous recording) are cut into segments of this many bins,
            each with ``window`` bins of context on either side so that no history is lost at the cuts
            (see :mod:`spikeglm.segments`); memory then depends on the batch, not the recording length.
            None: never cut.
        part_bins : int
            Bins computed at once: a step is done in parts of at most this many bins whose gradients
            add up, each with its own random stream. Lower it to save memory; under ``torchrun`` the
            parts are shared out among the processes.
        device : str or torch.device, optional
            Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default the GPU when there is one
            (under ``torchrun``, the process's own), else the CPU. The fitted model is returned on the CPU.
        validation : SpikeCounts, optional
            Held-out trials for early stopping on the importance-sampled log-likelihood.
        patience : int
            Validation checks (every 10 epochs) without improvement before stopping.
        freeze_network : bool
            Keep the network as it is (from :meth:`from_connectivity` or an earlier fit) and fit only the
            posterior: with the true network this gives the oracle score, the ceiling of a fit.
        progress : bool
            Show the progress of the fit on stderr (epoch, objective, time left).
        callback : callable, optional
            Called with each epoch's :class:`~spikeglm.fit.EpochRecord` (progress bars, logging).
        checkpoint : path, optional
            A model file (HDF5) that also holds the training state, written atomically every
            ``checkpoint_every`` epochs and when the fit is interrupted (Ctrl-C); it loads as a model.
        checkpoint_every : int
            Epochs between checkpoints.
        resume : bool
            Continue the fit saved in ``checkpoint`` (same data and options) up to ``epochs``; the result
            equals that of an uninterrupted fit. Without a checkpoint file the fit starts afresh.

        Returns
        -------
        POGLM
            ``self``, fitted.
        """
        _check_counts(counts, "counts")
        if relaxation == "eat-cubic" and temperature > 1:
            raise ValueError(f"temperature must be <= 1 for eat-cubic; got {temperature}")
        relax.get(relaxation)
        if segment_bins is not None and segment_bins < 1:
            raise ValueError(f"segment_bins must be at least 1; got {segment_bins}")
        visible = self._visible(counts) if freeze_network else _compact_tensor(counts)
        n_visible = visible.shape[-1]
        options = {
            "relaxation": relaxation,
            "temperature": temperature,
            "n_samples": n_samples,
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "objective": objective,
            "seed": seed,
            "freeze_network": freeze_network,
            "segment_bins": segment_bins,
            "part_bins": part_bins,
        }
        saved = _read_training_state(checkpoint, options, n_visible) if resume and checkpoint else None
        self.history_ = [] if saved is None else saved["history"]
        main = process()[0] == 0
        callbacks = [self.history_.append, ProgressLine(epochs) if progress and main else None, callback]
        generator = torch.Generator().manual_seed(seed)
        if not freeze_network:
            self.network_ = self._new_network(n_visible)
            self.network_.init_from_counts(visible, scale=0.1, generator=generator)
        self.posterior_ = self._new_posterior(n_visible)
        self.posterior_.init_rates(float(mean_counts(visible).mean()), scale=0.1, generator=generator)
        if saved is not None:
            self.network_.load_state_dict(saved["network"])
            self.posterior_.load_state_dict(saved["posterior"])
        self.unit_ids_ = [str(u) for u in counts.unit_ids]
        self.bin_size_ = str(counts.bin_size)
        self.data_ = _json_safe(counts.metadata)
        self.fit_options_ = options

        def save_checkpoint(epochs_done: int, optimizer_state: dict) -> None:
            if main:
                state = {"epochs_done": epochs_done, "optimizer": optimizer_state}
                self._write(checkpoint, overwrite=True, training=state)

        where = choose_device(device)
        self.network_.to(where)
        self.posterior_.to(where)
        try:
            train(
                self.network_,
                self.posterior_,
                self._segments(visible),
                relaxation=relaxation,
                temperature=temperature,
                n_samples=n_samples,
                objective=objective,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                part_bins=part_bins,
                validation=None if validation is None else self._segments(_compact_tensor(validation)),
                patience=patience,
                train_network=not freeze_network,
                seed=seed,
                callback=_chain(callbacks),
                first_epoch=0 if saved is None else saved["epochs_done"],
                optimizer_state=None if saved is None else saved["optimizer"],
                checkpoint=None if checkpoint is None else save_checkpoint,
                checkpoint_every=checkpoint_every,
            )
        finally:
            self.network_.cpu()
            self.posterior_.cpu()
        return self

    @classmethod
    def from_connectivity(cls, conn: Connectivity, variational: str = "forward-backward") -> POGLM:
        """A model whose network is given (e.g. the ground truth of a synthetic network).

        ``conn.metadata`` must name the ``basis`` (a basis spec) and the ``link``, as the connectivity of
        :func:`spikeglm.synthetic.network` and of a fitted model do. Fit its posterior with
        ``fit(counts, freeze_network=True)`` before scoring or inferring.
        """
        missing = [key for key in ("basis", "link") if key not in conn.metadata]
        if missing:
            raise ValueError(f"connectivity metadata lacks {', '.join(missing)}: cannot rebuild the model")
        basis = basis_module.from_dict(conn.metadata["basis"])
        model = cls(conn.n_hidden, basis=basis, link=conn.metadata["link"], variational=variational)
        network = model._new_network(conn.n_visible)
        with torch.no_grad():
            network.weight.copy_(torch.tensor(conn.weights))
            network.bias.copy_(torch.tensor(conn.bias))
        model.network_ = network
        model.unit_ids_ = conn.labels[: conn.n_visible]
        model.bin_size_ = conn.metadata.get("bin_size")
        return model

    def _new_network(self, n_visible: int) -> Network:
        return Network(n_visible, self.n_hidden, self.basis, self.link)

    def _new_posterior(self, n_visible: int) -> Posterior:
        return Posterior(self.variational, n_visible, self.n_hidden, self.basis.matrix(), self.link)

    # ------------------------------------------------------------------ using a fit
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

    def _segments(self, visible: torch.Tensor) -> Segments:
        length = self.fit_options_.get("segment_bins", SEGMENT_BINS)
        return Segments(visible, length=length, context=self.basis.window)

    @torch.no_grad()
    def infer(self, counts: SpikeCounts, n_samples: int = 100, seed: int = 0) -> np.ndarray:
        """Posterior mean rate of each hidden neuron in each bin, shape (trials, bins, n_hidden).

        For the mean-field families this is the rate of q; for forward-self, its average over
        ``n_samples`` draws of the hidden past. Long trials are done segment by segment, as in the fit.
        """
        _, posterior = self._fitted()
        segments = self._segments(self._visible(counts))
        rates = np.empty((counts.n_trials, counts.n_bins, self.n_hidden), dtype=np.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for index in segments.groups(PART_BINS):
                visible = segments.batch(index).visible
                if posterior.family == "forward-self":
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
    def score(self, counts: SpikeCounts, n_samples: int = 1000, seed: int = 0) -> float:
        """Test log-likelihood per visible neuron-bin, importance-sampled with exact Poisson p and q.

        Parameters
        ----------
        counts : SpikeCounts
            Visible counts of held-out trials. Long trials are scored segment by segment, as in the fit
            (each segment given its context), so memory does not grow with their length.
        n_samples : int
            Importance samples per trial (the estimate is a lower bound that tightens as it grows).
        seed : int
            Seed of the importance samples.
        """
        network, posterior = self._fitted()
        segments = self._segments(self._visible(counts))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return evaluate.marginal_log_likelihood(network, posterior, segments, n_samples=n_samples)

    def connectivity(self) -> Connectivity:
        """The fitted coupling weights, filters and biases of all neurons (hidden ones labelled)."""
        network, _ = self._fitted()
        labels = self.unit_ids_ + [f"hidden-{k}" for k in range(network.n_hidden)]
        visible = np.arange(network.n_neurons) < network.n_visible
        metadata = {
            "basis": self.basis.to_dict(),
            "link": self.link,
            "bin_size": self.bin_size_,
            "variational": self.variational,
            "spikeglm_version": __version__,
            **self.fit_options_,
        }
        return Connectivity(
            weights=network.weight.detach().numpy().astype(np.float64),
            basis_matrix=network.basis_matrix.numpy().astype(np.float64),
            bias=network.bias.detach().numpy().astype(np.float64),
            labels=labels,
            visible=visible,
            metadata=metadata,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the fitted model to an HDF5 file (no pickle), atomically.

        Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
        """
        self._write(path, overwrite)

    def _write(self, path: str | os.PathLike, overwrite: bool, training: dict | None = None) -> None:
        network, posterior = self._fitted()

        def write(temporary: Path) -> None:
            with h5py.File(temporary, "w") as f:
                f.attrs["format"] = _FORMAT
                f.attrs["format_version"] = _FORMAT_VERSION
                f.attrs["config"] = json.dumps(self._config())
                for prefix, module in (("network", network), ("posterior", posterior)):
                    for name, value in module.state_dict().items():
                        f[f"{prefix}/{name}"] = value.cpu().numpy()
                for field in ("objective", "seconds", "validation"):
                    values = [getattr(r, field) for r in self.history_]
                    f[f"history/{field}"] = [math.nan if v is None else v for v in values]
                if training is not None:
                    _write_training_state(f.create_group("training"), training)

        atomic_write(path, write, overwrite=overwrite)

    def _config(self) -> dict:
        network, _ = self._fitted()
        return {
            "n_visible": network.n_visible,
            "n_hidden": self.n_hidden,
            "basis": self.basis.to_dict(),
            "link": self.link,
            "variational": self.variational,
            "unit_ids": self.unit_ids_,
            "bin_size": self.bin_size_,
            "data": self.data_,
            "fit_options": self.fit_options_,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> POGLM:
        """Read a model written by :meth:`save` (or a checkpoint of :meth:`fit`)."""
        with _open_model_file(path) as f:
            config = json.loads(f.attrs["config"])
            basis = basis_module.from_dict(config["basis"])
            model = cls(
                config["n_hidden"], basis=basis, link=config["link"], variational=config["variational"]
            )
            model.network_ = model._new_network(config["n_visible"])
            model.posterior_ = model._new_posterior(config["n_visible"])
            state = _read_parameters(f)
            model.network_.load_state_dict(state["network"])
            model.posterior_.load_state_dict(state["posterior"])
            model.history_ = state["history"]
        model.unit_ids_ = config["unit_ids"]
        model.bin_size_ = config["bin_size"]
        model.data_ = config.get("data", {})
        model.fit_options_ = config["fit_options"]
        return model

    def __repr__(self) -> str:
        state = "fitted" if self.network_ is not None else "not fitted"
        return (
            f"POGLM(n_hidden={self.n_hidden}, basis={self.basis!r}, link={self.link!r}, "
            f"variational={self.variational!r}; {state})"
        )


def _open_model_file(path: str | os.PathLike) -> h5py.File:
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    if f.attrs.get("format") != _FORMAT:
        f.close()
        raise ValueError(f"{path}: not a spikeglm model file")
    return f


def _read_parameters(f: h5py.File) -> dict:
    """Network and posterior parameters and the training history of an open model file."""
    state = {
        prefix: {k: torch.from_numpy(v[()]) for k, v in f[prefix].items()}
        for prefix in ("network", "posterior")
    }
    columns = [f[f"history/{field}"][()] for field in ("objective", "seconds", "validation")]
    state["history"] = [
        EpochRecord(i, float(o), float(s), None if math.isnan(v) else float(v))
        for i, (o, s, v) in enumerate(zip(*columns, strict=True))
    ]
    return state


def _write_training_state(group: h5py.Group, training: dict) -> None:
    group.attrs["epochs_done"] = training["epochs_done"]
    optimizer = training["optimizer"]
    group.attrs["param_groups"] = json.dumps(optimizer["param_groups"])
    for index, values in optimizer["state"].items():
        for key, value in values.items():
            group[f"optimizer/{index}/{key}"] = value.cpu().numpy()


def _read_training_state(path: str | os.PathLike, options: dict, n_visible: int) -> dict | None:
    """The training state of a checkpoint, or None if there is no checkpoint file yet."""
    if not os.path.exists(path):
        return None
    with _open_model_file(path) as f:
        if "training" not in f:
            raise ValueError(f"{path}: a finished model, not a checkpoint of a fit under way")
        config = json.loads(f.attrs["config"])
        saved = {k: v for k, v in config["fit_options"].items() if k != "epochs"}
        asked = {k: v for k, v in options.items() if k != "epochs"}
        if saved != asked or config["n_visible"] != n_visible:
            raise ValueError(
                f"{path}: the checkpoint was made with other options or data ({saved}, "
                f"{config['n_visible']} units); resume with the same ones or start afresh"
            )
        group = f["training"]
        state = _read_parameters(f)
        state["epochs_done"] = int(group.attrs["epochs_done"])
        state["optimizer"] = {
            "param_groups": json.loads(group.attrs["param_groups"]),
            "state": {
                int(index): {key: torch.tensor(v[()]) for key, v in values.items()}
                for index, values in group["optimizer"].items()
            },
        }
    return state


def _chain(callbacks: list[Callable | None]) -> Callable[[EpochRecord], None]:
    def every(record: EpochRecord) -> None:
        for callback in callbacks:
            if callback is not None:
                callback(record)

    return every


def _json_safe(metadata: dict) -> dict:
    """The JSON-able view of a metadata dict (other values as their text)."""
    return json.loads(json.dumps(metadata, default=str))


def _check_counts(counts: SpikeCounts, name: str) -> None:
    if not isinstance(counts, SpikeCounts):
        raise TypeError(
            f"{name} must be a spikeglm.SpikeCounts (e.g. SpikeCounts.from_array(array, bin_size='5 ms')); "
            f"got {type(counts).__name__}"
        )


def _compact_tensor(counts: SpikeCounts) -> torch.Tensor:
    """The counts as a tensor in a compact integer dtype (uint8 when they fit, as they almost always do)."""
    array = counts.counts
    dtype = {np.dtype(np.uint8): np.uint8, np.dtype(np.uint16): np.int32}.get(array.dtype, np.int64)
    return torch.from_numpy(array.astype(dtype))
