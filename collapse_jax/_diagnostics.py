"""Collapse diagnostics of embeddings from any model, all at once (docs/theory.md §5).

A user brings embeddings `Z` of shape `(N, D)` (and optionally integer labels):
[`diagnose`][collapse_jax.diagnose] returns every metric of the building blocks
([`singular_values`][collapse_jax.singular_values], [`rankme`][collapse_jax.rankme], ...,
[`nc1`][collapse_jax.nc1], [`ncm_accuracy`][collapse_jax.ncm_accuracy]; their conventions are
stated with them) and the collapse verdict, and
[`trajectory_diagnostics`][collapse_jax.trajectory_diagnostics] does the same along a run of
the minimal model.

**Verdict.** ``collapsed`` = `RankMe < 0.1 min(D, N - 1)` (dimensional collapse) **or**
`std_l2_normalized < 0.01 / sqrt(D)` (complete collapse onto one direction, which RankMe,
being scale-free, cannot see under a little noise). Both fractions are arguments.

Streaming: [`embedding_stats`][collapse_jax.embedding_stats] summarises a batch as
(count, mean, R factor of the centred batch, per-class counts, means and a within-class R factor,
moments of the normalised rows); [`merge_stats`][collapse_jax.merge_stats] merges two
summaries through the QR factorisation of `[R_a; R_b; sqrt(n_a n_b / (n_a + n_b)) (mu_a - mu_b)]`
(and one correction row per class for the within-class factor). This agrees with one pass to ~1e-12;
accumulating the Gram matrix `Z^T Z` instead loses ~1e-3 on RankMe (docs/theory.md §5).
Nearest-class-mean accuracy needs the final class means, hence a second pass
([`ncm_counts`][collapse_jax.ncm_counts]).

**How [`diagnose`][collapse_jax.diagnose] computes.** Two routes, the same numbers to the
round-off stated here (docs/diagnostics.md §10):

* *Gram route*, for a float32 (or float16) array in host memory with `N >= D` (numpy, a
  ``np.memmap``, a JAX array on the CPU): numpy reads it a block of rows at a time into one
  float64 buffer and keeps the count, the mean, the centred scatter `G = Z_c^T Z_c` (one
  symmetric rank-k update per block, merged by the Chan update `G = G_a + G_b + (n_a n_b / n)
  d d^T`), the moments of the normalised rows and the class means; the singular values are
  `sqrt(eigvalsh(G))`. With labels, a second pass gives the nearest-class-mean counts and the
  within-class scatter on the span of the class means (all that NC1 reads of it). The metrics
  are the same functions as under ``jit``, evaluated in numpy (their cores take the array
  module), so a one-shot call compiles nothing and makes no `N x D` float64 copy. Forming `G`
  costs the small singular values: a kept `sigma_k` carries a round-off of about
  `eps_64 sigma_1^2 / sigma_k`; the route is taken only where this stays `1000x` below what
  rounding the data to their own type can do (`eps_in |Z|_F`): `rtol >= 1000 eps_64 / eps_in`,
  true for the default cut of float32 data from `D = 2` on.
* *QR route*, for everything else (float64 or integer data, traced or accelerator arrays, a
  ``rtol`` below that): the factors above, in JAX; with ``chunk``, batch by batch through
  [`embedding_stats`][collapse_jax.embedding_stats] and
  [`merge_stats`][collapse_jax.merge_stats], then a second pass of
  [`ncm_counts`][collapse_jax.ncm_counts]'s scoring.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _diagnostics_gram as _gram
from ._collapse_metrics import (
    ALPHA_REQ_MIN_R2,
    _alpha_fit_range,
    _alpha_req,
    _default_rtol,
    _float,
    _min_l2,
    _n_components,
    _nc1,
    _nc2,
    _normalize_rows,
    _participation_ratio,
    _pow2_scale,
    _rankme,
    class_means,
    ncm_counts,
)
from ._types import Array, EmbeddingState, Float

__all__ = [
    "EmbeddingStats",
    "embedding_stats",
    "merge_stats",
    "stream_stats",
    "diagnostics_from_stats",
    "diagnose",
    "trajectory_diagnostics",
    "collapse_verdict",
    "COLLAPSE_RULE",
]

#: Human-readable statement of the default verdict (see the module docstring).
COLLAPSE_RULE = "rankme < 0.1 * min(D, N - 1) or std_l2_normalized < 0.01 / sqrt(D)"


def collapse_verdict(
    rankme_value, std_value, n_samples, dim, *, rankme_fraction=0.1, std_fraction=0.01
):
    """``collapsed`` = `RankMe < rankme_fraction min(D, N-1)` or
    `std < std_fraction / sqrt(D)` ([`COLLAPSE_RULE`][collapse_jax.COLLAPSE_RULE],
    module docstring)."""
    return _verdict(rankme_value, std_value, n_samples, dim, rankme_fraction, std_fraction, jnp)


def _verdict(rankme_value, std_value, n_samples, dim, rankme_fraction, std_fraction, xp):
    top = xp.minimum(dim, xp.maximum(n_samples - 1, 1))
    return (rankme_value < rankme_fraction * top) | (std_value < std_fraction / xp.sqrt(dim))


# ----------------------------------------------------------------------------- streaming


class EmbeddingStats(NamedTuple):
    """Mergeable summary of a set of embeddings (docs/theory.md §5, streaming).

    Attributes:
        count: `n`.
        mean: `mu`, `(D,)`.
        r: `(D, D)` factor with `r^T r = sum_i (z_i - mu)(z_i - mu)^T`.
        norm_mean, norm_m2: mean and summed squared deviation, per coordinate, of the
            L2-normalised rows.
        class_count, class_mean: `(K,)`, `(K, D)` (K may be 0).
        r_within: `(D, D)` factor of the within-class scatter of the labelled samples.
    """

    count: Float[Array, ""]
    mean: Float[Array, " dim"]
    r: Float[Array, "dim dim"]
    norm_mean: Float[Array, " dim"]
    norm_m2: Float[Array, " dim"]
    class_count: Float[Array, " classes"]
    class_mean: Float[Array, "classes dim"]
    r_within: Float[Array, "dim dim"]


def _r_factor(rows, D, pad=True):
    """`R` with `R^T R = rows^T rows`: `(D, D)` (zero rows padded) or, with ``pad=False``,
    `(min(rows, D), D)`, which keeps a wide batch (`N < D`) at `O(N D)` memory."""
    r = jnp.linalg.qr(rows, mode="r")
    if pad and r.shape[0] < D:
        return jnp.concatenate([r, jnp.zeros((D - r.shape[0], D), r.dtype)])
    return r


def _check_finite(z):
    return eqx.error_if(z, ~jnp.all(jnp.isfinite(z)), "embeddings contain NaN or inf")


@partial(jax.jit, static_argnames=("n_classes", "pad"))
def _batch_stats(z, labels, n_classes, pad=True):
    z = _check_finite(z)
    N, D = z.shape
    u = _normalize_rows(z)  # no square of a row overflows; the QR steps scale themselves
    umean = jnp.mean(u, axis=0)
    mean = jnp.mean(z, axis=0)
    means, counts = class_means(z, labels, n_classes)
    if n_classes == 0:  # no classes: the within-class factor is empty, skip its QR
        r_within = jnp.zeros((D if pad else min(N, D), D), z.dtype)
    else:
        onehot = jax.nn.one_hot(labels, n_classes, dtype=z.dtype)
        dev = jnp.where((labels >= 0)[:, None], z - onehot @ means, 0.0)
        r_within = _r_factor(dev, D, pad)
    return EmbeddingStats(
        count=jnp.asarray(N, z.dtype),
        mean=mean,
        r=_r_factor(z - mean, D, pad),
        norm_mean=umean,
        norm_m2=jnp.sum((u - umean) ** 2, axis=0),
        class_count=counts,
        class_mean=means,
        r_within=r_within,
    )


def _check_matrix(z, name="embeddings"):
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, dim), got shape {z.shape}")
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {z.shape}")
    if not (jnp.issubdtype(z.dtype, jnp.floating) or jnp.issubdtype(z.dtype, jnp.integer)):
        raise TypeError(f"{name} must be real numbers, got dtype {z.dtype}")


def _prepare_labels(labels, N, n_classes, xp=jnp):
    if labels is None:
        return jnp.full((N,), -1, jnp.int32), 0 if n_classes is None else n_classes
    labels = xp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != N:
        raise ValueError(f"labels must have shape ({N},), got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if n_classes is None:
        if isinstance(labels, jax.core.Tracer):
            raise ValueError("n_classes is required when labels are traced")
        n_classes = int(np.max(np.asarray(labels), initial=-1)) + 1
    elif not isinstance(labels, jax.core.Tracer):
        top = int(np.max(np.asarray(labels), initial=-1))
        if top >= n_classes:
            raise ValueError(
                f"labels must be < n_classes = {n_classes} (labels run 0..n_classes-1), got "
                f"a label {top}: pass n_classes={top + 1} or leave n_classes out"
            )
    return labels, n_classes


def embedding_stats(
    z: Float[Array, "samples dim"], labels=None, *, n_classes: int | None = None
) -> EmbeddingStats:
    """Summary of one batch (see [`EmbeddingStats`][collapse_jax.EmbeddingStats]; merge
    with [`merge_stats`][collapse_jax.merge_stats]).

    Args:
        z: embeddings `(N, D)`.
        labels: optional integer labels `(N,)`; negative means unlabelled.
        n_classes: `K` (static). Default: `max(labels) + 1`, 0 without labels. Give it
            explicitly when streaming, so every batch has the same shapes.

    Raises:
        ValueError: wrong shape, or NaN/inf (under ``jit`` the latter raises at run time
            through ``eqx.error_if``).
        TypeError: non-numeric embeddings or non-integer labels.
    """
    z = _float(z)
    _check_matrix(z)
    if not isinstance(z, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(z))):
        raise ValueError("embeddings contain NaN or inf")
    labels, K = _prepare_labels(labels, z.shape[0], n_classes)
    return _batch_stats(z, labels, K)


@jax.jit
def merge_stats(a: EmbeddingStats, b: EmbeddingStats) -> EmbeddingStats:
    """Merge two summaries exactly (Chan et al. for the moments, QR for the factors).

    `R = qr([R_a; R_b; sqrt(n_a n_b / n) (mu_a - mu_b)])`, and per class
    `R_W = qr([R_Wa; R_Wb; sqrt(n_ac n_bc / n_c) (mu_ac - mu_bc) for each c])`.
    """
    D = a.mean.shape[0]
    n = a.count + b.count
    safe = jnp.maximum(n, 1.0)
    delta = b.mean - a.mean
    w = jnp.sqrt(a.count * b.count / safe)
    r = _r_factor(jnp.concatenate([a.r, b.r, (w * delta)[None, :]]), D)
    du = b.norm_mean - a.norm_mean
    nc = a.class_count + b.class_count
    safe_c = jnp.maximum(nc, 1.0)
    dmu = b.class_mean - a.class_mean
    wc = jnp.sqrt(a.class_count * b.class_count / safe_c)
    rw = _r_factor(jnp.concatenate([a.r_within, b.r_within, wc[:, None] * dmu]), D)
    return EmbeddingStats(
        count=n,
        mean=a.mean + delta * (b.count / safe),
        r=r,
        norm_mean=a.norm_mean + du * (b.count / safe),
        norm_m2=a.norm_m2 + b.norm_m2 + du * du * (a.count * b.count / safe),
        class_count=nc,
        class_mean=a.class_mean + dmu * (b.class_count / safe_c)[:, None],
        r_within=rw,
    )


def stream_stats(batches: Iterable, *, n_classes: int = 0) -> EmbeddingStats:
    """Merge the summaries of an iterable of batches, each ``z`` or ``(z, labels)``."""
    total = None
    for batch in batches:
        z, labels = batch if isinstance(batch, tuple) else (batch, None)
        s = embedding_stats(z, labels, n_classes=n_classes)
        total = s if total is None else merge_stats(total, s)
    if total is None:
        raise ValueError("stream_stats needs at least one batch")
    return total


def _metrics(s, n, norm_m2, cc, cm, r_within, rtol, fit_range, fractions, eig, xp=jnp):
    """Every metric of the cut singular values ``s`` and the class summaries (traced, or in
    numpy with ``xp=np``: the same functions, no compilation)."""
    D = s.shape[0]
    std = xp.mean(xp.sqrt(norm_m2 / xp.maximum(n, 1.0)))
    rm = _rankme(s, False, xp)
    alpha, r2 = _alpha_req(s, fit_range, xp)
    out = {
        "n_samples": n,
        "dim": D,
        "std_l2_normalized": std,
        "isotropic_std": 1.0 / xp.sqrt(xp.asarray(D, s.dtype)),
        "rankme": rm,
        "participation_ratio": _participation_ratio(s, xp),
        "n_components_95": _n_components(s, 0.95, xp),
        "numerical_rank": xp.sum(s > 0),
        "alpha_req": alpha,
        "alpha_req_r2": r2,
        "alpha_req_fit_range": xp.stack(_alpha_fit_range(s, fit_range, xp)),
        "alpha_req_poor_fit": ~(r2 >= ALPHA_REQ_MIN_R2),
        "singular_values": s,
        "collapsed": _verdict(rm, std, n, D, *fractions, xp),
    }
    if eig:
        out["rankme_eigenvalues"] = _rankme(s, True, xp)
    if cc.shape[0] > 0:
        present = cc > 0
        out.update(
            n_classes_present=xp.sum(present),
            class_counts=cc,
            class_means=cm,
            min_l2_class_means=_min_l2(cm, present, xp),
            nc1=_nc1(r_within, xp.sum(cc), cm, present, rtol, xp),
            nc2=_nc2(cm, present, xp),
        )
    return out


@partial(jax.jit, static_argnames=("fit_range", "eigen_rankme"))
def _finalize(stats, rtol, fit_range, rankme_fraction, std_fraction, eigen_rankme):
    D = stats.mean.shape[0]
    n = stats.count
    c = _pow2_scale(stats.r, stats.mean)  # exact rescaling: no square overflows or underflows
    r, mean = stats.r / c, stats.mean / c
    s = jnp.linalg.svd(r, compute_uv=False)  # min(rows, D) values: pad to D
    s = jnp.concatenate([s, jnp.zeros(max(D - s.shape[0], 0), s.dtype)])
    frob = jnp.sqrt(jnp.sum(r**2) + n * jnp.sum(mean**2))
    s = c * jnp.where(s > rtol * frob, s, 0.0)
    return _metrics(
        s,
        n,
        stats.norm_m2,
        stats.class_count,
        stats.class_mean,
        stats.r_within,
        rtol,
        fit_range,
        (rankme_fraction, std_fraction),
        eigen_rankme,
    )


def _options(
    D,
    rtol=None,
    fit_range=None,
    rankme_fraction=0.1,
    std_fraction=0.01,
    rankme_eigenvalues=False,
    *,
    dtype=None,
):
    """Checked options of [`diagnostics_from_stats`][collapse_jax.diagnostics_from_stats]."""
    rtol = _default_rtol(D, dtype) if rtol is None else float(rtol)
    if fit_range is not None:
        fit_range = (int(fit_range[0]), int(fit_range[1]))
        if not 1 <= fit_range[0] <= fit_range[1]:
            raise ValueError(f"fit_range must satisfy 1 <= k_min <= k_max, got {fit_range}")
    return rtol, fit_range, (rankme_fraction, std_fraction), bool(rankme_eigenvalues)


def diagnostics_from_stats(
    stats: EmbeddingStats,
    *,
    rtol: float | None = None,
    fit_range: tuple[int, int] | None = None,
    rankme_fraction: float = 0.1,
    std_fraction: float = 0.01,
    rankme_eigenvalues: bool = False,
) -> dict[str, Array]:
    """Every metric that a summary determines (all but NCM accuracy; conventions with the
    building blocks, e.g. [`rankme`][collapse_jax.rankme]).

    Keys: ``n_samples``, ``dim``, ``std_l2_normalized``, ``isotropic_std`` (`1/sqrt(D)`),
    ``rankme``, ``participation_ratio``, ``n_components_95``, ``numerical_rank``,
    ``alpha_req``, ``alpha_req_r2``, ``alpha_req_fit_range`` (the ranks `[k_min, k_max]`
    fitted: ``fit_range`` or the default, clipped to the numerical rank),
    ``alpha_req_poor_fit`` (`R^2 < 0.9`, or no fit), ``singular_values``, ``collapsed``; with
    ``rankme_eigenvalues=True`` also ``rankme_eigenvalues``; with classes also
    ``n_classes_present``, ``class_counts``, ``class_means``, ``min_l2_class_means``,
    ``nc1``, ``nc2``.
    """
    rtol, fit_range, fractions, eig = _options(
        stats.mean.shape[0],
        rtol,
        fit_range,
        rankme_fraction,
        std_fraction,
        rankme_eigenvalues,
        dtype=stats.mean.dtype,
    )
    return _finalize(stats, rtol, fit_range, *fractions, eig)


def _with_ncm(out, z, labels):
    present = out["class_counts"] > 0
    correct, total = ncm_counts(z, labels, out["class_means"], present)
    out["ncm_accuracy"] = correct / jnp.maximum(total, 1)
    return out


# ----------------------------------------------------------------------------- by blocks of rows


def _gram_diagnose(z, labels, K, rows, rtol, fit_range, fractions, eig):
    """The Gram route over blocks of ``rows`` (module docstring, ``_diagnostics_gram.py``):
    numpy throughout, the metrics included (the same functions as under ``jit``), so nothing
    is compiled; the results are handed back as JAX arrays."""
    stats = _gram.gram_stats(z, labels, K, rows)
    s, frob = _gram.spectrum(stats)
    r_within = np.zeros((min(K, z.shape[1]), z.shape[1]))
    if labels is not None:
        correct, total, r_within = _gram.second_pass(z, labels, stats, rows)
    with np.errstate(all="ignore"):  # both branches of every where(), as under jit
        out = _metrics(
            np.where(s > rtol * frob, s, 0.0), np.float64(stats.count), stats.norm_m2,
            stats.class_count, stats.class_mean, r_within, rtol, fit_range, fractions, eig, np,
        )  # fmt: skip
    if labels is not None:
        out["ncm_accuracy"] = np.float64(correct / max(total, 1))
    return {key: jax.device_put(value) for key, value in out.items()}  # no compilation


def _qr_diagnose(z, labels, K, rows, rtol, fit_range, fractions, eig):
    """The QR route batch by batch, through the public streaming functions."""
    batches = (
        (_gram.read_block(z, a, rows), None if labels is None else labels[a : a + rows])
        for a in range(0, z.shape[0], rows)
    )
    stats = stream_stats(batches, n_classes=K)
    out = _finalize(stats, rtol, fit_range, *fractions, eig)
    if labels is not None:  # second pass: nearest-class-mean counts with the final means
        present = out["class_counts"] > 0
        correct, total = _gram.ncm_pass(z, labels, out["class_means"], present, rows)
        out["ncm_accuracy"] = jnp.asarray(correct) / jnp.maximum(jnp.asarray(total), 1)
    return out


def _data_rtol(in_dtype, D):
    """The default cut of [`diagnose`][collapse_jax.diagnose]: ``10 D eps`` of the input's
    float type where it is coarser than the computation's (a float32 input is exact only to
    float32's eps), else of the computation's."""
    work = jnp.promote_types(in_dtype, jnp.result_type(float))
    coarse = np.issubdtype(in_dtype, np.floating) and np.finfo(in_dtype).eps > np.finfo(work).eps
    return _default_rtol(D, in_dtype if coarse else work)


def _check_chunk(chunk):
    if chunk is None:
        return None
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk!r}")
    return int(chunk)


def diagnose(
    z: Float[Array, "samples dim"],
    labels=None,
    *,
    n_classes: int | None = None,
    chunk: int | None = None,
    **options,
) -> dict[str, Array]:
    """All collapse diagnostics of one embedding array (docs/theory.md §5, module docstring).

    The numbers are those of the streaming path with a single batch. How they are computed
    (module docstring): a float32 array in host memory goes by blocks of rows through its
    float64 Gram matrix, in numpy (nothing is compiled), anything else through QR factors in
    JAX, kept at `min(N, D) x D` so that a wide array (`N < D`) costs `O(N D)` memory, not
    `O(D^2)`. ``options`` go to
    [`diagnostics_from_stats`][collapse_jax.diagnostics_from_stats]. With labels, adds
    ``ncm_accuracy`` and ``class_ids`` to its keys: without ``n_classes`` the classes are the
    label values present, in increasing order (so sparse ids such as `{0, 99999}` make two
    classes), and ``class_counts``, ``class_means`` follow ``class_ids``; with
    ``n_classes``, ``class_ids`` is `0..n_classes-1` and absent classes keep their rows.

    Args:
        chunk: read ``z`` ``chunk`` rows at a time (one pass, two with labels), never whole:
            for an array larger than memory, e.g. ``np.load(path, mmap_mode="r")``. Default:
            blocks of 16 MiB on the Gram route, the whole array on the QR route.

    Raises:
        ValueError: not 2-D, empty, fewer than 2 samples, NaN/inf, labels of the wrong shape,
            labels naming fewer than two classes, a label `>= n_classes`, or a ``chunk`` that
            is not a positive integer.
        TypeError: non-numeric embeddings or non-integer labels.
    """
    chunk = _check_chunk(chunk)
    in_dtype = z.dtype if hasattr(z, "dtype") else np.asarray(z).dtype
    host = None
    if (chunk is not None or np.dtype(in_dtype).itemsize < 8) and not isinstance(
        labels, jax.core.Tracer
    ):
        host = _gram.host_view(z)  # a numpy view, or None for a traced or accelerator array
    if host is None:
        z = _float(z)
    elif not (np.issubdtype(in_dtype, np.floating) or np.issubdtype(in_dtype, np.integer)):
        raise TypeError(f"embeddings must be real numbers, got dtype {in_dtype}")
    _check_matrix(z if host is None else host)
    N, D = (z if host is None else host).shape
    work = jnp.promote_types(in_dtype, jnp.result_type(float))
    if options.get("rtol") is None:
        options = {**options, "rtol": _data_rtol(in_dtype, D)}
    if N < 2:
        raise ValueError(f"need at least 2 samples, got {N}")
    gram = host is not None and _gram.gram_route(in_dtype, N, D, options.get("rtol") or 0.0)
    if host is not None and not gram and chunk is None:
        z, host = _float(host), None
    if host is None and not isinstance(z, jax.core.Tracer):
        if not bool(jnp.all(jnp.isfinite(z))):
            raise ValueError("embeddings contain NaN or inf")
    has_labels = labels is not None
    if host is not None and not has_labels:
        labels, K = None, 0 if n_classes is None else n_classes
    else:
        labels, K = _prepare_labels(labels, N, n_classes, jnp if host is None else np)
    class_ids = jax.device_put(np.arange(K))
    if has_labels and not isinstance(labels, jax.core.Tracer):
        lab = np.asarray(labels)
        present, inverse = np.unique(lab[lab >= 0], return_inverse=True)
        if present.size < 2:
            raise ValueError(f"labels must name at least 2 classes, got {present.size}")
        if n_classes is None:  # the classes present: O(K_p), whatever the ids
            remapped = np.full(lab.shape, -1, np.int32)
            remapped[lab >= 0] = inverse.ravel()
            labels, K, class_ids = remapped, present.size, jax.device_put(present)
        labels = np.asarray(labels) if host is not None else jnp.asarray(labels)
    if host is not None:
        rtol, fit_range, fractions, eig = _options(D, **options, dtype=work)
        rows = _gram.block_rows(N, D, chunk)
        route = _gram_diagnose if gram else _qr_diagnose
        out = route(host, labels, K, rows, rtol, fit_range, fractions, eig)
    else:
        out = diagnostics_from_stats(_batch_stats(z, labels, K, pad=False), **options)
        if has_labels:
            out = _with_ncm(out, z, labels)
    if has_labels:
        out["class_ids"] = class_ids
    return out


def trajectory_diagnostics(
    ys: EmbeddingState, data, *, include_shared: bool = True, **options
) -> dict[str, Array]:
    """The diagnostics of the sample embeddings `x(t)` along a trajectory (docs/theory.md §2, §5).

    Args:
        ys: states with a leading time axis, from
            [`collapse_jax.simulate`][collapse_jax.simulate] or
            [`collapse_jax.exact_solution`][collapse_jax.exact_solution].
        data: the [`StandardData`][collapse_jax.StandardData] of the run (concrete). Clean
            samples carry their class; active shared samples enter the global metrics as
            unlabelled samples (``include_shared=False`` drops them); inactive rows never.

    Returns:
        [`diagnose`][collapse_jax.diagnose]'s dict, every entry with a leading time
        axis. ``min_l2_class_means`` is `MinL2` of the clean-sample class means: it falls to 0 with
        frustration (`M > 0`) and stays finite at `M = 0` (docs/theory.md §2).
    """
    K, n = data.n_classes, data.per_class
    rows = np.arange(K * n)
    labels = np.asarray(data.labels)
    if include_shared:
        active = np.flatnonzero(np.asarray(data.shared_mask) > 0) + K * n
        rows = np.concatenate([rows, active])
        labels = np.concatenate([labels, -np.ones(active.size, labels.dtype)])
    labels = jnp.asarray(labels, jnp.int32)
    x = _float(ys.x)[:, rows]
    D = x.shape[-1]
    opts = dict(options)
    rtol = opts.pop("rtol", None)
    rtol = _default_rtol(D, x.dtype) if rtol is None else float(rtol)
    fit_range = opts.pop("fit_range", None)
    rf = opts.pop("rankme_fraction", 0.1)
    sf = opts.pop("std_fraction", 0.01)
    eig = bool(opts.pop("rankme_eigenvalues", False))
    if opts:
        raise TypeError(f"unknown options {sorted(opts)}")

    def one(xt):
        out = _finalize(_batch_stats(xt, labels, K, pad=False), rtol, fit_range, rf, sf, eig)
        return _with_ncm(out, xt, labels)

    return jax.vmap(one)(x)
