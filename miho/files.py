"""Where the package keeps what it computes once (the cache folder) and how it writes files
(atomically: a reader never sees a half-written file, a crash leaves the old one)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "atomic_write", "atomic_savez"]


def cache_dir(sub: str = "") -> Path:
    """``$MIHO_CACHE/<sub>`` when ``MIHO_CACHE`` is set, else ``~/.cache/miho/<sub>`` (not created)."""
    root = os.environ.get("MIHO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "miho")
    return Path(root).expanduser() / sub if sub else Path(root).expanduser()


@contextlib.contextmanager
def atomic_write(path, suffix: str = ""):
    """Context manager yielding a temporary path in ``path``'s folder; on a clean exit it is renamed
    to ``path`` (atomic on POSIX), on an exception it is removed and ``path`` is left as it was.

    ``suffix`` is given to the temporary name (some writers, such as ``np.savez``, append one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_savez(path, arrays: dict) -> None:
    """``np.savez_compressed(path, **arrays)``, written atomically."""
    with atomic_write(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
