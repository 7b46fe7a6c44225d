"""Atomic file writes: a temporary file beside the target, flushed and synced, then renamed over it,
so a crash or Ctrl-C never leaves a half-written output (or a damaged earlier one).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike[str], write_fn: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write_fn` so that readers see the old file or the whole new one.

    The data goes to a temporary file in the target's folder (so `os.replace` is a rename on one
    file system), is fsynced, then replaces the target. On any failure the temporary file is
    removed and the target is left as it was.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for any new file (mkstemp
    # would leave the output readable by its owner only).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fp:
            write_fn(fp)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; Windows cannot open a folder this way)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems (network mounts) refuse fsync on a folder; the file's data is already
        # on disk, so the write has succeeded as far as it can be made to.
        pass
    finally:
        os.close(fd)
