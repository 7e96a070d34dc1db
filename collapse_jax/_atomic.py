"""Atomic file writes: every result file of the package is written through ``atomic_write``.

The content goes to a temporary name in the destination's folder (so the rename cannot cross
file systems), which is then renamed over the destination: a reader, or a run interrupted
half-way (Ctrl-C, a crash, a full disk), never sees a half-written file. The temporary file
gets ordinary permissions (``0666`` less the umask; ``mkstemp`` makes ``0600``) and is removed
if anything fails. The destination's folder is created if needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, *, mode: str = "wb", prefix: str = ".collapse-jax.", suffix: str = ""):
    """``with atomic_write(path) as fh: ...``: ``fh`` a file open under a temporary name in
    ``path``'s folder; on a clean exit it replaces ``path``, on an exception it is removed."""
    folder = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
