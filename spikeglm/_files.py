"""Writing files safely: a temporary file next to the target, synced, then renamed onto it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Let ``write`` fill a temporary file next to ``path``, sync it, then rename it onto ``path``."""
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {directory} does not exist (writing {path})")
    temporary = directory / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    # O_EXCL: never reuse an existing file; mode 0o666 lets the umask decide the permissions, as for open().
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(temporary)
        with open(temporary, "r+b") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
