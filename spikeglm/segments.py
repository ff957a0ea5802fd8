"""Training data as segments: whole trials, or long recordings cut into segments with context.

A continuous recording of an hour is one long trial; its counts, kept in their compact integer dtype, are
never turned into one float tensor. Instead a trial longer than ``length`` bins is cut into segments of
``length`` bins, and each segment carries ``context`` bins of the recording on either side (``context`` is
the history window L):

* the left context is the true history of the segment's first bins, so cutting loses no visible
  history: a bin's rate is the one it has in the uncut trial;
* the right context is the future that the forward-backward posterior looks at for its last bins.

Context bins are inputs only. Their likelihood is not counted (it is counted once, in the segment they
belong to), and the hidden counts drawn there stand in for the hidden history of the segment, drawn
from the posterior given the visible counts around them. Bins outside the recording (before its start,
after its end) are zero padding: neither scored nor given hidden counts.

Trials no longer than ``length`` are used whole, with no context and no masks, exactly as the model
defines them (zero history at the start of a trial).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from spikeglm.basis import future as basis_future
from spikeglm.basis import history

#: Default bins computed at once (context included) when a computation runs over segments in parts: what
#: bounds the memory of a training step or a GLM solve.
PART_BINS = 2**15


@dataclass
class Batch:
    """Segments gathered for one pass of the model.

    Attributes
    ----------
    visible : torch.Tensor
        Visible counts, shape (segments, bins, V), floating point.
    present : torch.Tensor or None
        1 for bins inside the recording, 0 for padding, shape (segments, bins); None when all are.
    scored : torch.Tensor or None
        1 for the bins whose likelihood this segment counts, shape (segments, bins); None when all are.
    covariates : torch.Tensor or None
        The covariates' columns in the same bins, shape (segments, bins, F) (zero outside the
        recording); None without covariates.
    numbers : torch.Tensor or None
        The segments' numbers in their :class:`Segments` (what :meth:`Segments.batch` was given), shape
        (segments,); None for a batch made otherwise.
    past, future : torch.Tensor or None
        The visible counts' history and future through a basis, shape (segments, bins, V, basis), where
        the segments keep them (:meth:`Segments.filtered`); None otherwise.
    """

    visible: torch.Tensor
    present: torch.Tensor | None = None
    scored: torch.Tensor | None = None
    covariates: torch.Tensor | None = None
    numbers: torch.Tensor | None = None
    past: torch.Tensor | None = None
    future: torch.Tensor | None = None


class Segments:
    """The segments of counts (trials, bins, V) that training and scoring iterate over.

    Parameters
    ----------
    counts : torch.Tensor
        Spike counts of shape (trials, bins, V), best in a compact integer dtype (``uint8``); they are
        converted to floating point one batch at a time.
    length : int, optional
        Bins per segment; trials no longer than this are used whole. None: never cut.
    context : int
        Bins of context on either side of a cut segment (the model's history window).
    covariates : torch.Tensor, optional
        The covariates' columns on the same bins, (trials, bins, F) (:mod:`spikeglm.covariates`): cut and
        gathered with the counts, as float32.

    Examples
    --------
    >>> counts = torch.zeros(1, 10_000, 3, dtype=torch.uint8)   # one long recording
    >>> segments = Segments(counts, length=1000, context=5)
    >>> len(segments), segments.bins
    (10, 1010)
    """

    def __init__(
        self,
        counts: torch.Tensor,
        length: int | None = None,
        context: int = 0,
        covariates: torch.Tensor | None = None,
    ) -> None:
        if counts.dim() != 3:
            raise ValueError(f"counts must have shape (trials, bins, units); got {tuple(counts.shape)}")
        if length is not None and length < 1:
            raise ValueError(f"segment length must be at least 1 bin; got {length}")
        if context < 0:
            raise ValueError(f"context must be 0 or more bins; got {context}")
        if covariates is not None and (covariates.dim() != 3 or covariates.shape[:2] != counts.shape[:2]):
            raise ValueError(
                f"covariates must have shape (trials, bins, columns) = {tuple(counts.shape[:2])} + (F,); "
                f"got {tuple(covariates.shape)}"
            )
        self.counts, self.covariates = counts, covariates
        self.n_trials, self.n_bins, self.n_units = counts.shape
        self.cut = length is not None and self.n_bins > length
        self.length: int = length if length is not None and self.cut else self.n_bins
        self.context: int = context if self.cut else 0
        self.per_trial: int = math.ceil(self.n_bins / self.length) if self.cut else 1
        #: Each segment's visible history and future (or None) through a basis (:meth:`filtered`).
        self.filters: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def __len__(self) -> int:
        return self.n_trials * self.per_trial

    @property
    def bins(self) -> int:
        """Bins in one segment, context included."""
        return self.length + 2 * self.context

    @property
    def n_scored(self) -> int:
        """Bins scored over all segments: every bin of every trial exactly once."""
        return self.n_trials * self.n_bins

    def batch(
        self,
        index: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Batch:
        """The segments numbered ``index``: segment ``k`` of trial ``r`` is number ``r * per_trial + k``.
        Gathered where the counts are (:meth:`to`), then moved to ``device``."""
        home = self.counts.device
        index = torch.as_tensor(index, dtype=torch.long, device=home)
        past, future = (None, None) if self.filters is None else self.filters
        past = None if past is None else past[index].to(device=device, dtype=dtype)
        future = None if future is None else future[index].to(device=device, dtype=dtype)
        if not self.cut:
            covariates = (
                None if self.covariates is None else self.covariates[index].to(device=device, dtype=dtype)
            )
            visible = self.counts[index].to(device=device, dtype=dtype)
            return Batch(visible, covariates=covariates, numbers=index, past=past, future=future)
        trial, piece = index // self.per_trial, index % self.per_trial
        position = piece[:, None] * self.length + torch.arange(self.bins, device=home) - self.context
        present = (position >= 0) & (position < self.n_bins)
        # Gathered from the counts themselves (no padded copy); bins outside the recording are zeroed.
        visible = self.counts[trial[:, None], position.clamp(0, self.n_bins - 1)]  # (segments, bins, V)
        visible = visible * present[..., None].to(visible.dtype)
        inner = torch.zeros(self.bins, dtype=torch.bool, device=home)
        inner[self.context : self.context + self.length] = True
        covariates = None
        if self.covariates is not None:
            covariates = self.covariates[trial[:, None], position.clamp(0, self.n_bins - 1)]
            covariates = (covariates * present[..., None]).to(device=device, dtype=dtype)
        return Batch(
            visible.to(device=device, dtype=dtype),
            present.to(device=device, dtype=dtype),
            (present & inner).to(device=device, dtype=dtype),
            covariates,
            index,
            past,
            future,
        )

    def to(self, device: torch.device | str) -> Segments:
        """The same segments with their counts (and covariates) on ``device``: batches are then gathered
        there, instead of on the host and copied over at every step."""
        covariates = None if self.covariates is None else self.covariates.to(device)
        moved = self._cut_alike(self.counts.to(device), covariates)
        if self.filters is not None:
            past, future = self.filters
            moved.filters = (past.to(device), None if future is None else future.to(device))
        return moved

    def _cut_alike(self, counts: torch.Tensor, covariates: torch.Tensor | None) -> Segments:
        """Segments of ``counts`` (and ``covariates``) cut as these are, without their filtered counts."""
        return Segments(counts, self.length if self.cut else None, self.context, covariates)

    def filtered_bytes(self, n_basis: int, future: bool) -> int:
        """The memory that :meth:`filtered` takes (float32)."""
        return len(self) * self.bins * self.n_units * n_basis * 4 * (2 if future else 1)

    def filtered(self, basis_matrix: torch.Tensor, future: bool) -> Segments:
        """The same segments keeping each one's visible history (and with ``future``, its future) through
        ``basis_matrix`` (n_basis, L), filtered once here rather than at every step that draws the
        segment: the counts are fixed, and with long bases filtering them is much of a step's work.
        They are those of :func:`spikeglm.basis.history` and :func:`spikeglm.basis.future` of the batch,
        computed segment by segment as :meth:`batch` gathers them (takes :meth:`filtered_bytes`)."""
        keeping = self._cut_alike(self.counts, self.covariates)
        shape = (len(self), self.bins, self.n_units, basis_matrix.shape[0])
        past = torch.empty(shape, dtype=torch.float32, device=self.counts.device)
        after = torch.empty_like(past) if future else None
        matrix = basis_matrix.to(device=self.counts.device, dtype=torch.float32)
        for index in self.groups(PART_BINS):
            visible = self.batch(index).visible
            past[index] = history(visible, matrix)
            if after is not None:
                after[index] = basis_future(visible, matrix)
        keeping.filters = (past, after)
        return keeping

    def groups(self, max_bins: int) -> list[torch.Tensor]:
        """All segments in order, in groups of at most ``max_bins`` bins (at least one segment each)."""
        size = max(1, max_bins // self.bins)
        return list(torch.arange(len(self)).split(size))


#: The share of a CUDA device's free memory that a fit's counts and covariates may take there
#: (:func:`on_device`).
DEVICE_SHARE = 0.25


def on_device(segments: Segments, device: torch.device | str) -> Segments:
    """``segments`` moved to ``device`` where it is a CUDA device with room for their counts and covariates
    (at most :data:`DEVICE_SHARE` of its free memory); elsewhere, ``segments`` as they are.

    A fit passes over its data at every step (the GLM's solve at every iteration): from the host's memory,
    each pass gathers every batch on the host and copies it over. An hour of 300 units in compact counts
    takes 216 MB of the device.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return segments
    tensors = [segments.counts] + ([] if segments.covariates is None else [segments.covariates])
    size = sum(t.element_size() * t.numel() for t in tensors)
    free, _ = torch.cuda.mem_get_info(device)
    return segments.to(device) if size <= DEVICE_SHARE * free else segments


def blocks(
    counts: torch.Tensor,
    block: int,
    past: int = 0,
    ahead: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, slice]]:
    """Blocks of bins of ``counts`` (trials, bins, units), each with ``past`` bins before it and ``ahead``
    after (where there are): what a computation over a long trial works through, a block at a time.

    Yields the counts of the block with its context, as ``dtype`` on ``device`` (compact integer counts
    are converted a block at a time), and the slice of the block's own bins in them.
    """
    n_bins = counts.shape[1]
    for start in range(0, n_bins, block):
        stop = min(start + block, n_bins)
        low, high = max(0, start - past), min(n_bins, stop + ahead)
        yield counts[:, low:high].to(dtype=dtype, device=device), slice(start - low, stop - low)
