"""The Gram route of [`diagnose`][collapse_jax.diagnose]: float32 embeddings in host memory,
reduced a block of rows at a time in numpy, in float64 (the design and its accuracy are in the
docstring of ``_diagnostics.py``).

Pass 1 summarises each block as the count, the mean, the centred scatter `G = Z_c^T Z_c` (one
symmetric rank-k update), the mean and summed squared deviation of the L2-normalised rows, and
the per-class counts and means, and merges the summaries with the updates of
[`merge_stats`][collapse_jax.merge_stats] (`G = G_a + G_b + (n_a n_b / n) d d^T`). Every block
is copied into one float64 buffer, so no `N x D` float64 array is ever made and a ``np.memmap``
is read from the disk once per pass.

Pass 2 (labels only) works in an orthonormal basis `B` of the span of the centred class means:
NC1 reads only `B^T S_W B` of the within-class scatter, and the class mean nearest to `z` is
the one nearest in `B`-coordinates (`z - mu_c` differs from its projection by the same vector
for every class `c`), so the nearest-class-mean counts come from the scoring of
[`ncm_counts`][collapse_jax.ncm_counts] on `rows x K` blocks. Everything here is numpy: the
metric functions of ``_collapse_metrics.py`` run in numpy as well (their cores take the array
module), so a one-shot call compiles nothing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from ._collapse_metrics import _ncm_counts

#: float64 bytes of one block of rows when no ``chunk`` is given (16 MiB)
BLOCK_BYTES = 2**24
#: the route's round-off on a singular value stays this far below the input's own rounding
GRAM_MARGIN = 1000.0


class GramStats(NamedTuple):
    """The [`EmbeddingStats`][collapse_jax.EmbeddingStats] of the Gram route (numpy, float64),
    with the centred scatter ``gram`` in place of its factor and no within-class factor."""

    count: float
    mean: np.ndarray
    gram: np.ndarray
    norm_mean: np.ndarray
    norm_m2: np.ndarray
    class_count: np.ndarray
    class_mean: np.ndarray


def host_view(z):
    """``z`` as a numpy array when it lives in host memory (numpy, a memmap, a concrete JAX
    array on the CPU), else None (traced, or on an accelerator)."""
    if isinstance(z, jax.core.Tracer):
        return None
    if isinstance(z, jax.Array):
        return np.asarray(z) if all(d.platform == "cpu" for d in z.devices()) else None
    return z if isinstance(z, np.ndarray) else np.asarray(z)


def gram_route(in_dtype, N, D, rtol) -> bool:
    """Whether the route keeps its round-off `GRAM_MARGIN` times below the input's own:
    a float16/float32 input, `N >= D`, and `rtol >= GRAM_MARGIN eps_64 / eps_in`."""
    if not (np.issubdtype(in_dtype, np.floating) and np.dtype(in_dtype).itemsize < 8):
        return False
    return N >= D and rtol >= GRAM_MARGIN * np.finfo(np.float64).eps / np.finfo(in_dtype).eps


def block_rows(N, D, chunk=None) -> int:
    """Rows per block: ``chunk``, else 16 MiB of float64 (at least 256 rows); at most `N`."""
    return min(chunk or max(256, BLOCK_BYTES // (8 * D)), N)


def read_block(z, a, rows):
    """Rows ``a:a+rows`` of ``z`` as a fresh array in native byte order (float64 for a
    float type wider than float64)."""
    dtype = z.dtype.newbyteorder("=") if z.dtype.itemsize <= 8 else np.float64
    return np.array(z[a : a + rows], dtype=dtype)


def _class_sums(x, labels, K):
    counts = np.bincount(labels[labels >= 0], minlength=K).astype(np.float64)
    if K <= 64:  # one small GEMM
        return counts, (labels[:, None] == np.arange(K)).astype(np.float64).T @ x
    keep = np.flatnonzero(labels >= 0)
    order = keep[np.argsort(labels[keep], kind="stable")]
    sums = np.zeros((K, x.shape[1]))
    if order.size:
        ls = labels[order]
        start = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        sums[ls[start]] = np.add.reduceat(x[order], start, axis=0)
    return counts, sums


def _block_stats(x, u, labels, K):
    """Summary of one float64 block ``x`` (overwritten; ``u`` is scratch of its shape)."""
    n = x.shape[0]
    mean = x.sum(axis=0) / n  # float32 data in float64: no sum overflows, so a NaN/inf shows
    if not np.all(np.isfinite(mean)):
        raise ValueError("embeddings contain NaN or inf")
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))  # float32 data: no square over/underflows
    np.divide(x, np.where(norm > 0, norm, 1.0)[:, None], out=u)  # a zero row stays 0
    first = u[0].copy()  # summed from the first row: equal rows give exactly 0
    u -= first
    shift = u.sum(axis=0) / n
    u -= shift
    norm_mean = first + shift
    counts, sums = _class_sums(x, labels, K) if K else (np.zeros(0), np.zeros((0, x.shape[1])))
    x -= mean
    return GramStats(
        count=float(n),
        mean=mean,
        gram=x.T @ x,  # numpy's symmetric rank-k update
        norm_mean=norm_mean,
        norm_m2=np.einsum("ij,ij->j", u, u),
        class_count=counts,
        class_mean=sums / np.maximum(counts, 1.0)[:, None],
    )


def _merge(a, b):
    """The updates of [`merge_stats`][collapse_jax.merge_stats], for the scatter itself
    (``a.gram`` is updated in place)."""
    n = a.count + b.count
    delta, du = b.mean - a.mean, b.norm_mean - a.norm_mean
    nc = a.class_count + b.class_count
    gram = a.gram
    gram += b.gram
    gram += (a.count * b.count / n) * np.outer(delta, delta)
    return GramStats(
        count=n,
        mean=a.mean + delta * (b.count / n),
        gram=gram,
        norm_mean=a.norm_mean + du * (b.count / n),
        norm_m2=a.norm_m2 + b.norm_m2 + du * du * (a.count * b.count / n),
        class_count=nc,
        class_mean=a.class_mean
        + (b.class_mean - a.class_mean) * (b.class_count / np.maximum(nc, 1.0))[:, None],
    )


def _blocks(z, rows):
    """``(start, float64 block)`` over ``z``, every block copied into one reused buffer."""
    N, D = z.shape
    buf = np.empty((min(rows, N), D))
    for a in range(0, N, rows):
        x = buf[: min(rows, N - a)]
        np.copyto(x, z[a : a + rows])
        yield a, x


def gram_stats(z, labels, K, rows) -> GramStats:
    """Pass 1 over ``z`` by blocks of ``rows`` (``labels``: integers `0..K-1`, negative for
    an unlabelled row, or None)."""
    N, D = z.shape
    scratch = np.empty((min(rows, N), D))
    lab = np.full(N, -1, np.int64) if labels is None else labels
    stats = None
    for a, x in _blocks(z, rows):
        s = _block_stats(x, scratch[: x.shape[0]], lab[a : a + rows], K)
        stats = s if stats is None else _merge(stats, s)
    return stats


def spectrum(stats):
    """The singular values of the centred data, descending (uncut), and `|Z|_F`."""
    s = np.sqrt(np.clip(np.linalg.eigvalsh(stats.gram)[::-1], 0.0, None))
    return s, np.sqrt(np.trace(stats.gram) + stats.count * np.sum(stats.mean**2))


def second_pass(z, labels, stats, rows):
    """Pass 2 (module docstring): the nearest-class-mean ``(correct, labelled)`` counts and a
    factor `R` (`k x D`) with `R^T R = B B^T S_W B B^T`, which gives NC1 exactly."""
    present = stats.class_count > 0
    mc = np.where(present[:, None], stats.class_mean - stats.class_mean[present].mean(0), 0.0)
    basis = np.linalg.qr(mc.T)[0]  # D x min(K, D), spans the centred class means
    centred = stats.class_mean - stats.mean
    means_b = centred @ basis
    proj = np.zeros((basis.shape[1],) * 2)
    correct = total = 0
    dev = np.empty((min(rows, z.shape[0]), z.shape[1]))
    for a, x in _blocks(z, rows):
        lab = labels[a : a + rows]
        own = np.maximum(lab, 0)
        d = dev[: x.shape[0]]
        np.subtract(x, np.take(stats.class_mean, own, axis=0, out=d), out=d)  # 0 on its mean
        d[lab < 0] = 0.0
        y = d @ basis
        proj += y.T @ y
        y += means_b[own]  # the rows' own B-coordinates
        with np.errstate(all="ignore"):
            c, t = _ncm_counts(y, lab, means_b, present, np)
        correct, total = correct + int(c), total + int(t)
    w, v = np.linalg.eigh(proj)
    return correct, total, (np.sqrt(np.clip(w, 0.0, None))[:, None] * v.T) @ basis.T


def ncm_pass(z, labels, means, present, rows):
    """The nearest-class-mean ``(correct, labelled)`` counts over blocks of ``rows``, in
    float64 (the QR route's second pass)."""
    correct = total = 0
    means, present = np.asarray(means, np.float64), np.asarray(present)
    for a in range(0, z.shape[0], rows):
        x = np.asarray(read_block(z, a, rows), np.float64)
        with np.errstate(all="ignore"):
            c, t = _ncm_counts(x, np.asarray(labels[a : a + rows]), means, present, np)
        correct, total = correct + int(c), total + int(t)
    return correct, total
