"""Where a fit runs: the device, the processes that share its work, and seeded random streams.

Launched by ``torchrun``, several processes fit one model: each computes its share of every step and
DistributedDataParallel sums their gradients. Outside ``torchrun`` there is one process, of rank 0, and
every function here is a no-op that says so.

Independent fits (the folds of a cross-validation) can also run in worker processes that one process
starts itself (:func:`run_jobs`, ``n_jobs``), as scikit-learn's estimators do: no launcher is needed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

#: Whether this process works alone for now (:func:`alone`), whatever the process group.
_alone = False

Task = TypeVar("Task")


def _grouped() -> bool:
    """Whether this process shares its work with a process group now."""
    return not _alone and dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number among those fitting together (0 outside ``torch.distributed``)."""
    return dist.get_rank() if _grouped() else 0


def world_size() -> int:
    """How many processes fit together (1 outside ``torch.distributed``)."""
    return dist.get_world_size() if _grouped() else 1


def share(count: int) -> range:
    """The tasks, of ``count`` independent ones (the folds of a cross-validation), that this process
    takes: every :func:`world_size`-th from its :func:`rank` (all of them outside ``torchrun``). Read it
    before :func:`alone`, inside which every process is rank 0 of 1."""
    return range(rank(), count, world_size())


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """A block in which this process works by itself, as the only process would: rank 0 of 1, its sums
    its own. Under ``torchrun`` the processes can so share independent fits (the folds of a
    cross-validation) instead of the steps of each; every process must then meet the others' sums
    again after the block.

    Examples
    --------
    >>> with alone():
    ...     world_size()
    1
    """
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def is_main() -> bool:
    """Whether this process is the one that reports progress and writes files (rank 0)."""
    return rank() == 0


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` as it is in one process; under several, wrapped to sum their gradients."""
    if world_size() == 1:
        return module
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)


def local_gradients(module: nn.Module, local: bool) -> contextlib.AbstractContextManager:
    """A block whose backward passes keep their gradients in this process, to be summed with the next
    block's (``local``, under several processes); otherwise a block like any other."""
    if local and isinstance(module, DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over the processes, in place (unchanged in one process)."""
    if world_size() > 1:
        dist.all_reduce(value)
    return value


@contextlib.contextmanager
def distributed(device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, for the duration.

    Outside ``torchrun`` (no ``WORLD_SIZE`` above 1 in the environment) this does nothing. The backend is
    NCCL when the device is a GPU, else gloo. Yields the device this process should use: the given one,
    or with ``None`` the process's own GPU (``cuda:LOCAL_RANK``) when there is one, else the CPU.

    Examples
    --------
    Run with ``torchrun --nproc-per-node 2 script.py``::

        with sg.parallel.distributed() as device:
            model.fit(counts, device=device)
            if sg.parallel.is_main():
                model.save("model.h5")
    """
    chosen = choose_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        yield chosen
        return
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    try:
        yield chosen
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Draw torch's random numbers from ``seed`` in the block, leaving the caller's streams as they were.

    The CPU stream is always forked; a GPU's too when ``device`` is one.
    """
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_streams(seed, device)
        yield


def seed_streams(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's CPU stream, and ``device``'s when it is a GPU.

    Unlike ``torch.manual_seed``, this leaves the streams of other devices alone, and costs nothing on a
    machine without them (``torch.manual_seed`` formats a stack trace for each lazy GPU back end).
    """
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def choose_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None or ``"auto"``: this process's GPU if there is one, else the CPU.

    This process's GPU is number ``LOCAL_RANK`` (set by torchrun; 0 otherwise).
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: no CUDA GPU is available here")
    return chosen


def n_workers(n_jobs: int | None, tasks: int) -> int:
    """How many processes :func:`run_jobs` uses for ``tasks`` independent tasks: ``n_jobs`` (None: 1;
    -1: one per CPU this process may use), at most one per task.

    Raises
    ------
    ValueError
        If ``n_jobs`` is not a whole number >= 1 or -1.
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(
            f"n_jobs (--jobs): {n_jobs!r} is not a number of processes; give a whole number >= 1, or -1 for "
            "one per CPU"
        )
    if n_jobs == -1:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(int(n_jobs), tasks))


def run_jobs(
    function: Callable[[Task], Any], tasks: Sequence[Task], n_jobs: int | None
) -> Iterator[tuple[Task, Any]]:
    """``(task, function(task))`` for every task, each as it is done, computed in :func:`n_workers`
    worker processes of this machine, on the CPU.

    Each worker runs one torch thread, so that they do not compete for the cores; ``function`` and the
    tasks must pickle (a module-level function, with ``functools.partial`` for its fixed arguments). A
    task's error is raised here. A caller with one worker does better to run the tasks itself.

    On Linux the workers are forked from this process: a script needs no ``if __name__ == "__main__"``
    guard, and with one torch thread each they never enter the thread pool they inherit. Elsewhere
    (macOS, Windows) they start fresh (``spawn``) and import the main script again, which must then keep
    its work under that guard. They compute on the CPU: forked workers cannot use a GPU that this process
    has used.
    """
    workers = n_workers(n_jobs, len(tasks))
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        futures = {pool.submit(function, task): task for task in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()
