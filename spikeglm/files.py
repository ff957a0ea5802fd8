"""Writing files safely.

Outputs are written to a temporary file next to the target, synced, then renamed onto it, so a reader
sees the old file or the new one, never a part. Before anything is computed, :func:`check_output` makes
sure an output can be written and is not one of the command's inputs: replacing an earlier output is
allowed with ``overwrite``, destroying an input never is.

The checkpoint of a fit has one rule, kept here for the estimator and the command line alike
(:func:`check_checkpoint`, :func:`claim_checkpoint`): an existing one is continued with ``resume``,
replaced with ``overwrite`` and otherwise refused, and one fit at a time holds it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

#: Longest part of a target's name kept in its temporary file's name (file names are at most 255 bytes).
_NAME_IN_TEMPORARY = 160


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one existing file (after symlinks, ``..`` and the filesystem's case rules)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """Refuse an output that would destroy an input, replace a file unasked, or cannot be written.

    Parameters
    ----------
    path : path
        The output.
    overwrite : bool
        Whether an existing regular file at ``path`` (an earlier output) may be replaced.
    inputs : paths
        The files the caller reads; ``path`` may not be any of them, with or without ``overwrite``
        (None entries are ignored).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` is an input, or exists and is not a regular file (a folder, FIFO or device).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    FileNotFoundError, PermissionError, OSError
        If the folder is missing or not writable, or the name is too long for it (found by creating
        and removing the temporary file that the write will use).
    """
    path = _check_target(path, overwrite, inputs)
    _create_temporary(path).unlink()
    return path


def _check_target(
    path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike | None]
) -> Path:
    """The checks of :func:`check_output` that create no file: inputs, an existing file, the folder."""
    path = Path(path)
    for source in inputs:
        if source is not None and same_file(path, source):
            raise ValueError(f"{path}: is an input here ({source}); an input is never replaced")
    try:
        mode = os.stat(path).st_mode  # of the file a symlink points to
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise _unwritable(path, error) from None
    if mode is None and path.is_symlink():
        raise ValueError(f"{path}: is a symlink to nothing; an output must be a file path")
    if mode is not None:
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO or a device)"
            raise ValueError(f"{path}: is {kind}; an output must be a file path")
        if not overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True (--overwrite) to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such folder for the output {path}")
    return path


def _create_temporary(path: Path) -> Path:
    """Create the empty temporary file that a write of ``path`` fills; refuse an unwritable ``path``."""
    temporary = _temporary_name(path)
    try:
        # O_EXCL: never reuse an existing file; mode 0o666 lets the umask decide the permissions.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise _unwritable(path, error) from None
    return temporary


def _unwritable(path: Path, error: OSError) -> OSError:
    reason = "the name is too long" if error.errno == errno.ENAMETOOLONG else error.strerror
    return type(error)(error.errno, f"{path}: cannot be written ({reason})")


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> None:
    """Let ``write`` fill a temporary file next to ``path``, sync it, then rename it onto ``path``.

    ``path`` is first checked by :func:`check_output` (with ``overwrite`` and ``inputs``), and the
    temporary files that killed writers left for the same target are removed.
    """
    path = _check_target(path, overwrite, inputs)
    remove_stale_temporaries(path)
    temporary = _create_temporary(path)  # which also finds an unwritable folder or name
    try:
        write(temporary)
        with open(temporary, "r+b") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _temporary_name(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that records the writing process: ``.NAME.PID.RANDOM.tmp``."""
    stem = path.name[:_NAME_IN_TEMPORARY]
    return path.parent / f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` whose writing process no longer runs; return them."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name[:_NAME_IN_TEMPORARY]}.") + r"(\d+)\.[0-9a-f]{12}\.tmp")
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and not _running(int(match.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # a process of another user (or a number no process can have: leave the file)
    return True


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, purpose: str) -> Iterator[None]:
    """Hold an exclusive lock on the hidden file ``.NAME.lock`` next to ``path`` for the duration.

    The lock is :mod:`filelock`'s (``flock`` on POSIX, a locked byte range on Windows), so it holds on
    every platform. A second holder, in another process or in this one, is refused at once with a
    RuntimeError naming ``path`` and ``purpose``. The operating system drops the lock with the process,
    so a killed holder never blocks the next run: its lock file stays behind, and the next holder locks
    that file. On release the lock file is removed while it is still locked (where an open file cannot
    be removed, as on Windows, :mod:`filelock` removes it as it releases); a process that opened the file
    just before and locks it just after finds it unlinked, which :mod:`filelock` does not count as
    holding, and is refused as if the lock were still held.
    """
    path = Path(path)
    lock = path.parent / f".{path.name[:_NAME_IN_TEMPORARY]}.lock"
    held = FileLock(lock)
    try:
        held.acquire(timeout=0)
    except Timeout:
        raise RuntimeError(f"{path}: another process is {purpose} (it holds {lock})") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        held.release()


def check_checkpoint(
    path: str | os.PathLike,
    *,
    resume: bool,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Refuse a checkpoint that a fit may not use, without locking or changing anything.

    An existing checkpoint holds an earlier fit: it is continued with ``resume``, replaced with
    ``overwrite`` (a fit afresh), and otherwise refused, so that no fit is lost unasked. Like an output,
    the checkpoint must be writable and none of the ``inputs`` (:func:`check_output`).

    Parameters
    ----------
    path : path
        The checkpoint.
    resume : bool
        Whether the fit continues an existing checkpoint.
    overwrite : bool
        Whether the fit may start afresh over an existing checkpoint.
    inputs : paths
        The files the caller reads (None entries are ignored).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and neither ``resume`` nor ``overwrite`` is given; the message names both.
    ValueError, OSError
        As :func:`check_output` with ``overwrite=True``.
    """
    path = check_output(path, overwrite=True, inputs=inputs)
    if path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"{path}: a checkpoint of an earlier fit exists; continue it with resume=True (--resume) "
            "or start afresh with overwrite=True (--overwrite)"
        )
    return path


class _Claims(threading.local):
    """The checkpoints that a thread has claimed (real paths): a claim nested in one of them locks nothing."""

    def __init__(self) -> None:
        self.paths: set[str] = set()


_claimed = _Claims()


@contextlib.contextmanager
def claim_checkpoint(
    path: str | os.PathLike,
    *,
    resume: bool,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Hold a checkpoint for one fit: lock it, check it, and clear it for a fit afresh.

    The checkpoint is locked (:func:`exclusive_lock`), so that a second fit with it is refused at once,
    then checked by :func:`check_checkpoint`; with ``overwrite`` and without ``resume``, the earlier
    fit's checkpoint is removed. A claim made while the same thread holds one on the same checkpoint
    takes no second lock: a caller may hold the checkpoint for longer than the fit that writes it (the
    command line does, from before a choice of hidden neurons until the model is saved).

    Parameters
    ----------
    path : path
        The checkpoint.
    resume, overwrite : bool
        What to do with an existing checkpoint, as in :func:`check_checkpoint`.
    inputs : paths
        The files the caller reads (None entries are ignored).

    Yields
    ------
    Path
        ``path``, held until the block ends.

    Raises
    ------
    RuntimeError
        If another process holds the checkpoint.
    FileExistsError, ValueError, OSError
        As :func:`check_checkpoint`.
    """
    key = os.path.realpath(path)
    with contextlib.ExitStack() as stack:
        if key not in _claimed.paths:
            stack.enter_context(exclusive_lock(path, "fitting with this checkpoint"))
            _claimed.paths.add(key)
            stack.callback(_claimed.paths.discard, key)
        path = check_checkpoint(path, resume=resume, overwrite=overwrite, inputs=inputs)
        if overwrite and not resume:
            path.unlink(missing_ok=True)
        yield path


#: Bytes at the start of a checksummed file that hold its checksum header (the smallest HDF5 userblock).
CHECKSUM_HEADER_BYTES = 512
_CHECKSUM_TAG = b"spikeglm-sha256 "
_CHECKSUM_HEADER = re.compile(re.escape(_CHECKSUM_TAG) + rb"[0-9a-f]{64}\n\x00*")
#: Bytes hashed at a time: a file of any size is checked in constant memory.
_HASH_CHUNK = 1 << 20


def add_checksum(path: str | os.PathLike, header_bytes: int = CHECKSUM_HEADER_BYTES) -> None:
    """Write the SHA-256 of a finished file, all of it but the first ``header_bytes``, into those bytes.

    The header is ``b"spikeglm-sha256 " + hexdigest + b"\\n"``, padded with zero bytes. The file must
    have been written with ``header_bytes`` reserved at its start (e.g. an HDF5 userblock), which this
    overwrites; call it last, once the file is closed. :func:`verify_checksum` checks it.

    Parameters
    ----------
    path : path
        The finished file.
    header_bytes : int
        Size of the reserved block at the start of the file (at least 81 bytes, the header's length).
    """
    with open(path, "r+b") as handle:
        handle.seek(header_bytes)
        header = _checksum_header(_sha256(handle), header_bytes)
        handle.seek(0)
        handle.write(header)


def verify_checksum(path: str | os.PathLike, header_bytes: int = CHECKSUM_HEADER_BYTES) -> None:
    """Check the header written by :func:`add_checksum` against the rest of the file, read in chunks.

    Parameters
    ----------
    path : path
        The file.
    header_bytes : int
        Size of the block at the start of the file that holds the header.

    Raises
    ------
    ValueError
        One line naming ``path``, if the file has no valid header (a damaged header, a file cut short
        or one that never had a header) or if the checksum does not match the contents.
    """
    with open(path, "rb") as handle:
        header = handle.read(header_bytes)
        if len(header) < header_bytes or not _CHECKSUM_HEADER.fullmatch(header):
            raise ValueError(
                f"{path}: damaged or altered, or not a spikeglm file (no valid checksum header); "
                "use an intact copy"
            )
        if header != _checksum_header(_sha256(handle), header_bytes):
            raise ValueError(
                f"{path}: damaged or altered (checksum mismatch); it is not read: use an intact copy "
                "or write it again"
            )


def _checksum_header(hexdigest: str, header_bytes: int) -> bytes:
    header = _CHECKSUM_TAG + hexdigest.encode("ascii") + b"\n"
    if len(header) > header_bytes:
        raise ValueError(f"a checksum header takes {len(header)} bytes; {header_bytes} are reserved")
    return header.ljust(header_bytes, b"\x00")


def _sha256(handle: BinaryIO) -> str:
    """SHA-256 hex digest of what is left to read in ``handle``."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
