"""BLAS threads of the process: one by default, whatever the order of the imports.

JAX's CPU LU and eigenvalue kernels call the LAPACK that scipy ships (OpenBLAS in the pip
wheels); numpy carries a second OpenBLAS of its own. On a machine with few cores a threaded
OpenBLAS makes the small dense LU of every implicit step slow, the more so the busier the
cores: each call waits for all of its threads. ``benchmarks/bench_threads.py`` measures it
(docs/performance.md, "Thread settings").

``import collapse_jax`` makes every OpenBLAS of the process single-threaded unless the user set
``OPENBLAS_NUM_THREADS`` before the import (then nothing is changed):

* libraries already loaded (numpy's when numpy came first; scipy's when ``scipy.linalg`` or
  scikit-learn came first) are limited at run time through ``threadpoolctl``;
* libraries loaded later (scipy's, which JAX loads at its first LU) read
  ``OPENBLAS_NUM_THREADS=1``, which the import sets; child processes inherit it.

[`set_blas_threads`][collapse_jax.set_blas_threads] changes the count afterwards, and
[`blas_threads`][collapse_jax.blas_threads] reports it.
"""

from __future__ import annotations

import os
from numbers import Integral

#: The variable OpenBLAS reads when it loads; a value set before ``import collapse_jax`` wins.
ENV = "OPENBLAS_NUM_THREADS"


def blas_threads() -> dict[str, int]:
    """The thread count of every BLAS library loaded in this process, by file name.

    JAX's CPU LAPACK library (scipy's OpenBLAS, ``libscipy_openblas-*.so`` in the pip wheels)
    appears once JAX has run its first LU or eigenvalue kernel, or once ``scipy.linalg`` is
    imported; numpy's (``libscipy_openblas64_-*.so``) once numpy is. Read through
    ``threadpoolctl.threadpool_info()``.

    Returns:
        ``{library file name: threads}``, e.g. ``{"libscipy_openblas64_-32a4b2a6.so": 1}``.
    """
    from threadpoolctl import threadpool_info

    return {
        os.path.basename(info["filepath"]): int(info["num_threads"])
        for info in threadpool_info()
        if info["user_api"] == "blas"
    }


def set_blas_threads(threads: int) -> dict[str, int]:
    """Give every BLAS library of the process ``threads`` threads, now and for those loaded later.

    The loaded libraries change at once (``threadpoolctl.threadpool_limits``); the variable
    ``OPENBLAS_NUM_THREADS`` is set to ``threads`` as well, so an OpenBLAS loaded later (JAX's
    LAPACK at its first LU, if it has not run yet) and child processes start with the same
    count. ``import collapse_jax`` calls it with 1 unless ``OPENBLAS_NUM_THREADS`` was set
    before. Call it with ``os.cpu_count()`` to give large float64 factorizations every core;
    on a few busy cores the small LU of every implicit solver step is then several times
    slower (docs/performance.md, "Thread settings").

    Args:
        threads: a positive integer.

    Returns:
        [`blas_threads`][collapse_jax.blas_threads] after the change.

    Raises:
        ValueError: ``threads`` not a positive integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, Integral) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from threadpoolctl import threadpool_limits

    threads = int(threads)
    os.environ[ENV] = str(threads)
    threadpool_limits(threads, user_api="blas")  # applied now, kept after the call
    return blas_threads()


def _default() -> None:
    """One thread, unless the user set ``OPENBLAS_NUM_THREADS`` (then nothing changes)."""
    if ENV not in os.environ:
        set_blas_threads(1)
