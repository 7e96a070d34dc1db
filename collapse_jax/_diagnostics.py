"""Collapse diagnostics for embeddings from any model (docs/theory.md §5).

A user brings embeddings `Z` of shape `(N, D)` (and optionally integer labels). Every metric
below is a pure JAX function, float64 when ``jax_enable_x64`` is on (inputs are promoted to
the default float type). Conventions fixed here (docs/theory.md §5 asks for them to be stated):

* **Spectrum.** `sigma_1 >= ... >= sigma_D >= 0` are the singular values of the centred
  embeddings `Z - 1 mu^T` (`D` values; those beyond `min(N - 1, D)` are 0). Covariance
  eigenvalues are `lambda_k = sigma_k^2 / N` (the scale never matters below). A singular value
  `<= rtol * |Z|_F` (default ``rtol = 10 D eps``, `|Z|_F` the norm of the *uncentred* data)
  is round-off of the centring and QR steps and is set to exactly 0; the count of the others
  is the numerical rank. This is what makes a constant input score as fully collapsed rather
  than as isotropic round-off.
* **RankMe** `= exp(-sum_k p_k log p_k)`, `p_k = sigma_k / sum_j sigma_j` (singular values;
  `0 log 0 = 0`). The eigenvalue variant `p_k = lambda_k / sum_j lambda_j` is reported only on
  request, as ``rankme_eigenvalues``. Defined as 0 when every `sigma_k` is 0.
* **Participation ratio** `= (sum lambda)^2 / sum lambda^2`, 0 when every `lambda_k` is 0.
* **Components for 95 %**: the smallest `k` with `sum_{j<=k} lambda_j >= 0.95 sum lambda`
  (compared with a relative slack of `1e-12`, so exact ties such as `19/20` of 20 equal
  eigenvalues count as reaching it); 0 when every `lambda_k` is 0.
* **alpha-ReQ**: least-squares slope of `log lambda_k = c - alpha log k`. Fit range: ranks
  `k_min <= k <= k_max` (1-based, inclusive; default all of `1..D`) restricted to the
  eigenvalues above the tolerance (the numerical rank). Reported with `R^2` of the fit in
  log-log space (`R^2 = 1` for a flat spectrum, which `alpha = 0` fits exactly). With fewer
  than two eigenvalues in range, `alpha = +inf` (the spectrum ends after at most one
  component) and `R^2 = NaN`.
* **std of L2-normalised embeddings**: `u_i = z_i / |z_i|` (a zero row stays 0), population
  standard deviation (ddof 0) of each coordinate of `u` over the samples, averaged over the
  `D` coordinates. 0 for a constant input, about `1/sqrt(D)` for isotropic data. The
  normalisation is *not* centred (as in SimSiam), so a large common offset also lowers it.
* **Labels**: integers `0..K-1`; a negative label marks an unlabelled sample, which enters
  every global metric but no class statistic. A class without samples is absent: it enters no
  class metric (`K_p` below counts the present classes).
* **Class means** `mu_c`; `mbar` = unweighted mean of the present class means (the global
  mean for balanced classes); `Mt` = the `K x D` matrix of rows `mu_c - mbar`.
* **MinL2** `= min_{c != c'} |mu_c - mu_c'|` over present classes.
* **NC1** `= tr(Sigma_W Sigma_B^+) / K_p` with `Sigma_W = (1/N_l) sum_i (z_i - mu_{c_i})
  (z_i - mu_{c_i})^T` over the `N_l` labelled samples and `Sigma_B = (1/K_p) Mt^T Mt`
  (Papyan, Han & Donoho 2020). Computed as `|R_W Mt^+|_F^2 / N_l`, with `R_W^T R_W` the
  within-class scatter, and `Mt^+` cut at the same relative tolerance. `+inf` when the class
  means coincide (`Sigma_B = 0`), 0 when every sample sits on its class mean.
* **NC2** `= | G / |G|_F - (I_K - 1 1^T / K) / sqrt(K - 1) |_F` with `G = Mt Mt^T` over
  present classes (Zhu et al. 2021): the distance of the centred class means, normalised as a
  whole, to a simplex equiangular tight frame; 0 for an ETF, at most 2. Unequal norms count as
  distance. NaN when the class means coincide (no configuration to compare); always 0 for two
  classes.
* **Nearest-class-mean accuracy**: a labelled sample is correct when its own class mean is
  strictly the nearest (ties count as wrong, as in
  [`nearest_label_accuracy`][collapse_jax.nearest_label_accuracy]).
* **Verdict** ``collapsed`` = `RankMe < 0.1 min(D, N - 1)` (dimensional collapse) **or**
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
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, EmbeddingState, Float

__all__ = [
    "EmbeddingStats",
    "embedding_stats",
    "merge_stats",
    "stream_stats",
    "diagnostics_from_stats",
    "ncm_counts",
    "diagnose",
    "trajectory_diagnostics",
    "std_l2_normalized",
    "singular_values",
    "rankme",
    "participation_ratio",
    "n_components",
    "alpha_req",
    "class_means",
    "min_l2_class_means",
    "nc1",
    "nc2",
    "ncm_accuracy",
    "collapse_verdict",
    "COLLAPSE_RULE",
]

#: Human-readable statement of the default verdict (see the module docstring).
COLLAPSE_RULE = "rankme < 0.1 * min(D, N - 1) or std_l2_normalized < 0.01 / sqrt(D)"

_SLACK_95 = 1e-12


def _float(z) -> Array:
    dtype = z.dtype if hasattr(z, "dtype") else np.asarray(z).dtype
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"embeddings must be real numbers, got dtype {dtype}")
    z = jnp.asarray(z)
    return z.astype(jnp.promote_types(z.dtype, jnp.result_type(float)))


def _default_rtol(dim: int, dtype) -> float:
    return 10.0 * dim * float(jnp.finfo(dtype).eps)


# ----------------------------------------------------------------------------- building blocks


def std_l2_normalized(z: Float[Array, "samples dim"]) -> Float[Array, ""]:
    """Mean over dimensions of the std of `u_i = z_i / |z_i|` (docs/theory.md §5).

    `mean_d sqrt((1/N) sum_i (u_id - ubar_d)^2)`; a zero row is kept as 0. About `1/sqrt(D)`
    for isotropic data, 0 for a constant input.
    """
    z = _float(z)
    norm = jnp.linalg.norm(z, axis=1, keepdims=True)
    u = z / jnp.where(norm > 0, norm, 1.0)
    return jnp.mean(jnp.std(u, axis=0))


def singular_values(
    z: Float[Array, "samples dim"], *, rtol: float | None = None
) -> Float[Array, " dim"]:
    """Singular values of the centred embeddings, descending, `D` of them (docs/theory.md §5).

    Values `<= rtol |Z|_F` (default ``10 D eps``, `|Z|_F` of the uncentred `Z`) are set to 0
    (round-off of the centring), and zeros pad the list when `N < D`.
    """
    z = _float(z)
    N, D = z.shape
    zc = z - jnp.mean(z, axis=0)
    s = jnp.linalg.svd(zc, compute_uv=False)
    s = jnp.concatenate([s, jnp.zeros(max(D - s.shape[0], 0), s.dtype)])
    rtol = _default_rtol(D, z.dtype) if rtol is None else rtol
    return jnp.where(s > rtol * jnp.linalg.norm(z), s, 0.0)


def _entropy_exp(w: Float[Array, " k"]) -> Float[Array, ""]:
    total = jnp.sum(w)
    p = w / jnp.where(total > 0, total, 1.0)
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    return jnp.where(total > 0, jnp.exp(-jnp.sum(plogp)), 0.0)


def rankme(sv: Float[Array, " k"], *, eigenvalues: bool = False) -> Float[Array, ""]:
    """RankMe `= exp(-sum p_k log p_k)`, `p_k = sigma_k / sum sigma` (docs/theory.md §5).

    Args:
        sv: singular values (non-negative).
        eigenvalues: use `p_k = sigma_k^2 / sum sigma^2` instead (the eigenvalue variant, to
            be labelled as such wherever it is reported).

    Returns:
        RankMe in `[1, k]`, or 0 when every value is 0 (a constant input).
    """
    sv = jnp.asarray(sv)
    return _entropy_exp(sv * sv if eigenvalues else sv)


def participation_ratio(sv: Float[Array, " k"]) -> Float[Array, ""]:
    """`PR = (sum lambda)^2 / sum lambda^2` of `lambda = sigma^2`; 0 when all vanish (§5)."""
    lam = jnp.asarray(sv) ** 2
    s2 = jnp.sum(lam * lam)
    return jnp.where(s2 > 0, jnp.sum(lam) ** 2 / jnp.where(s2 > 0, s2, 1.0), 0.0)


def n_components(sv: Float[Array, " k"], fraction: float = 0.95) -> Array:
    """Smallest `k` with `sum_{j<=k} lambda_j >= fraction sum lambda` (§5).

    ``sv`` must be sorted descending. The comparison has a relative slack of `1e-12`; the
    result is 0 when every `lambda` is 0.
    """
    lam = jnp.asarray(sv) ** 2
    total = jnp.sum(lam)
    reached = jnp.cumsum(lam) >= (fraction - _SLACK_95) * total
    k = jnp.argmax(reached) + 1
    return jnp.where(total > 0, k, 0)


def alpha_req(
    sv: Float[Array, " k"], fit_range: tuple[int, int] | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """alpha-ReQ: power-law decay exponent of the eigenspectrum, with `R^2` (docs/theory.md §5).

    Least squares of `log lambda_k = c - alpha log k`, `lambda = sigma^2`, over the ranks
    `k_min <= k <= k_max` (1-based, inclusive; default the whole spectrum) whose eigenvalue is
    positive (values at the tolerance were already set to 0 by
    [`singular_values`][collapse_jax.singular_values]).

    Returns:
        ``(alpha, r2)``: `alpha = +inf`, `r2 = NaN` with fewer than two points in range;
        `r2 = 1` for a spectrum flat up to round-off (spread of `log lambda` within
        `1e4 eps (1 + max |log lambda|)`).
    """
    lam = jnp.asarray(sv) ** 2
    k = jnp.arange(1, lam.shape[0] + 1)
    lo, hi = (1, lam.shape[0]) if fit_range is None else fit_range
    w = ((k >= lo) & (k <= hi) & (lam > 0)).astype(lam.dtype)
    n = jnp.sum(w)
    x = jnp.log(k.astype(lam.dtype))
    y = jnp.log(jnp.where(lam > 0, lam, 1.0))
    safe_n = jnp.maximum(n, 1.0)
    xm, ym = jnp.sum(w * x) / safe_n, jnp.sum(w * y) / safe_n
    sxx = jnp.sum(w * (x - xm) ** 2)
    sxy = jnp.sum(w * (x - xm) * (y - ym))
    syy = jnp.sum(w * (y - ym) ** 2)
    ok = n >= 2
    slope = sxy / jnp.where(ok, sxx, 1.0)
    resid = jnp.sum(w * (y - ym - slope * (x - xm)) ** 2)
    # flat up to round-off of the eigenvalues: R^2 of noise would mean nothing, alpha = 0 fits
    flat_tol = 1e4 * jnp.finfo(lam.dtype).eps * (1.0 + jnp.max(jnp.abs(w * y)))
    flat = syy <= n * flat_tol**2
    r2 = jnp.where(flat, 1.0, 1.0 - resid / jnp.where(flat, 1.0, syy))
    return jnp.where(ok, -slope, jnp.inf), jnp.where(ok, r2, jnp.nan)


def class_means(
    z: Float[Array, "samples dim"], labels, n_classes: int
) -> tuple[Float[Array, "classes dim"], Float[Array, " classes"]]:
    """Per-class means and counts (negative labels ignored; an absent class has mean 0)."""
    z = _float(z)
    onehot = jax.nn.one_hot(jnp.asarray(labels), n_classes, dtype=z.dtype)
    counts = jnp.sum(onehot, axis=0)
    return (onehot.T @ z) / jnp.maximum(counts, 1.0)[:, None], counts


def _centred_means(means, present):
    p = present.astype(means.dtype)
    kp = jnp.maximum(jnp.sum(p), 1.0)
    mbar = jnp.sum(p[:, None] * means, axis=0) / kp
    return p[:, None] * (means - mbar), p


def min_l2_class_means(means, present) -> Float[Array, ""]:
    """`min_{c != c'} |mu_c - mu_c'|` over present classes (inf with fewer than two)."""
    mc, _ = _centred_means(means, present)  # differences are shift-free; centring helps
    diff = mc[:, None, :] - mc[None, :, :]
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    pair = present[:, None] & present[None, :] & ~jnp.eye(means.shape[0], dtype=bool)
    return jnp.min(jnp.where(pair, dist, jnp.inf))


def _pinv_rows(mc, rtol, scale):
    """Pseudo-inverse `Mt^+` (D x K) with singular values `<= rtol * scale` dropped."""
    u, s, vt = jnp.linalg.svd(mc, full_matrices=False)
    keep = s > rtol * scale
    inv = jnp.where(keep, 1.0 / jnp.where(keep, s, 1.0), 0.0)
    return (vt.T * inv) @ u.T, jnp.any(keep)


def nc1(r_within, n_labelled, means, present, *, rtol: float | None = None):
    """NC1 `= tr(Sigma_W Sigma_B^+) / K_p = |R_W Mt^+|_F^2 / N_l` (module docstring, §5).

    Args:
        r_within: any `R_W` with `R_W^T R_W` the within-class scatter
            `sum_i (z_i - mu_{c_i})(z_i - mu_{c_i})^T` (e.g. the deviations themselves).
        n_labelled: `N_l`.
        means: class means `(K, D)`.
        present: boolean mask `(K,)` of the classes present.
        rtol: relative cut of `Mt^+` against `|mu|_F` (default ``10 D eps``).

    Returns:
        NC1; `+inf` when the class means coincide.
    """
    mc, _ = _centred_means(means, present)
    D = means.shape[1]
    rtol = _default_rtol(D, means.dtype) if rtol is None else rtol
    scale = jnp.linalg.norm(jnp.where(present[:, None], means, 0.0))
    pinv, any_between = _pinv_rows(mc, rtol, scale)
    value = jnp.sum((r_within @ pinv) ** 2) / jnp.maximum(n_labelled, 1.0)
    return jnp.where(any_between, value, jnp.inf)


def nc2(means, present) -> Float[Array, ""]:
    """NC2 `= |G/|G|_F - (I - 11^T/K)/sqrt(K-1)|_F`, `G = Mt Mt^T` (module docstring, §5).

    Over present classes only; NaN when the centred class means are all 0 or fewer than two
    classes are present.
    """
    mc, p = _centred_means(means, present)
    kp = jnp.sum(p)
    G = mc @ mc.T
    gnorm = jnp.linalg.norm(G)
    eye = jnp.eye(means.shape[0], dtype=means.dtype)
    target = p[:, None] * p[None, :] * (eye - 1.0 / jnp.maximum(kp, 1.0))
    target = target / jnp.sqrt(jnp.maximum(kp - 1.0, 1.0))
    value = jnp.linalg.norm(G / jnp.where(gnorm > 0, gnorm, 1.0) - target)
    return jnp.where((gnorm > 0) & (kp >= 2), value, jnp.nan)


def ncm_counts(z, labels, means, present) -> tuple[Array, Array]:
    """Correct and labelled counts of nearest-class-mean classification (ties wrong).

    Scores `|mu_c - mbar|^2 - 2 (z - mbar).(mu_c - mbar)` rank the classes like
    `|z - mu_c|^2` without cancellation against `|z|^2`; absent classes never win. Sum the
    counts over batches for a streaming second pass.
    """
    z = _float(z)
    labels = jnp.asarray(labels)
    mc, _ = _centred_means(means, present)
    mbar = jnp.sum(jnp.where(present[:, None], means, 0.0), axis=0) / jnp.maximum(
        jnp.sum(present), 1
    )
    scores = jnp.sum(mc * mc, axis=-1)[None, :] - 2.0 * (z - mbar) @ mc.T
    scores = jnp.where(present[None, :], scores, jnp.inf)
    labelled = labels >= 0
    safe = jnp.where(labelled, labels, 0)
    own = jnp.take_along_axis(scores, safe[:, None], axis=1)[:, 0]
    others = jnp.where(jnp.arange(means.shape[0])[None, :] == safe[:, None], jnp.inf, scores)
    correct = labelled & (own < others.min(axis=1))
    return jnp.sum(correct), jnp.sum(labelled)


def ncm_accuracy(z, labels, n_classes: int) -> Float[Array, ""]:
    """Nearest-class-mean accuracy of the labelled samples, with their own class means."""
    means, counts = class_means(z, labels, n_classes)
    correct, total = ncm_counts(z, labels, means, counts > 0)
    return correct / jnp.maximum(total, 1)


def collapse_verdict(
    rankme_value, std_value, n_samples, dim, *, rankme_fraction=0.1, std_fraction=0.01
):
    """``collapsed`` = `RankMe < rankme_fraction min(D, N-1)` or
    `std < std_fraction / sqrt(D)` ([`COLLAPSE_RULE`][collapse_jax.COLLAPSE_RULE],
    module docstring)."""
    top = jnp.minimum(dim, jnp.maximum(n_samples - 1, 1))
    return (rankme_value < rankme_fraction * top) | (std_value < std_fraction / jnp.sqrt(dim))


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


def _r_factor(rows, D):
    r = jnp.linalg.qr(rows, mode="r")
    return jnp.concatenate([r, jnp.zeros((D - r.shape[0], D), r.dtype)]) if r.shape[0] < D else r


def _check_finite(z):
    return eqx.error_if(z, ~jnp.all(jnp.isfinite(z)), "embeddings contain NaN or inf")


@partial(jax.jit, static_argnames="n_classes")
def _batch_stats(z, labels, n_classes):
    z = _check_finite(z)
    N, D = z.shape
    mean = jnp.mean(z, axis=0)
    norm = jnp.linalg.norm(z, axis=1, keepdims=True)
    u = z / jnp.where(norm > 0, norm, 1.0)
    umean = jnp.mean(u, axis=0)
    means, counts = class_means(z, labels, n_classes)
    onehot = jax.nn.one_hot(labels, n_classes, dtype=z.dtype)
    dev = z - onehot @ means
    dev = jnp.where((labels >= 0)[:, None], dev, 0.0)
    return EmbeddingStats(
        count=jnp.asarray(N, z.dtype),
        mean=mean,
        r=_r_factor(z - mean, D),
        norm_mean=umean,
        norm_m2=jnp.sum((u - umean) ** 2, axis=0),
        class_count=counts,
        class_mean=means,
        r_within=_r_factor(dev, D),
    )


def _check_matrix(z, name="embeddings"):
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, dim), got shape {z.shape}")
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {z.shape}")
    if not (jnp.issubdtype(z.dtype, jnp.floating) or jnp.issubdtype(z.dtype, jnp.integer)):
        raise TypeError(f"{name} must be real numbers, got dtype {z.dtype}")


def _prepare_labels(labels, N, n_classes):
    if labels is None:
        return jnp.full((N,), -1, jnp.int32), 0 if n_classes is None else n_classes
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != N:
        raise ValueError(f"labels must have shape ({N},), got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if n_classes is None:
        if isinstance(labels, jax.core.Tracer):
            raise ValueError("n_classes is required when labels are traced")
        n_classes = int(np.max(np.asarray(labels), initial=-1)) + 1
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


@partial(jax.jit, static_argnames=("fit_range", "eigen_rankme"))
def _finalize(stats, rtol, fit_range, rankme_fraction, std_fraction, eigen_rankme):
    D = stats.mean.shape[0]
    n = stats.count
    s = jnp.linalg.svd(stats.r, compute_uv=False)
    frob = jnp.sqrt(jnp.sum(stats.r**2) + n * jnp.sum(stats.mean**2))
    s = jnp.where(s > rtol * frob, s, 0.0)
    std = jnp.mean(jnp.sqrt(stats.norm_m2 / jnp.maximum(n, 1.0)))
    rm = rankme(s)
    alpha, r2 = alpha_req(s, fit_range)
    out = {
        "n_samples": n,
        "dim": D,
        "std_l2_normalized": std,
        "isotropic_std": 1.0 / jnp.sqrt(jnp.asarray(D, s.dtype)),
        "rankme": rm,
        "participation_ratio": participation_ratio(s),
        "n_components_95": n_components(s, 0.95),
        "numerical_rank": jnp.sum(s > 0),
        "alpha_req": alpha,
        "alpha_req_r2": r2,
        "singular_values": s,
        "collapsed": collapse_verdict(
            rm, std, n, D, rankme_fraction=rankme_fraction, std_fraction=std_fraction
        ),
    }
    if eigen_rankme:
        out["rankme_eigenvalues"] = rankme(s, eigenvalues=True)
    if stats.class_count.shape[0] > 0:
        present = stats.class_count > 0
        n_l = jnp.sum(stats.class_count)
        out.update(
            n_classes_present=jnp.sum(present),
            class_counts=stats.class_count,
            class_means=stats.class_mean,
            min_l2_class_means=min_l2_class_means(stats.class_mean, present),
            nc1=nc1(stats.r_within, n_l, stats.class_mean, present, rtol=rtol),
            nc2=nc2(stats.class_mean, present),
        )
    return out


def diagnostics_from_stats(
    stats: EmbeddingStats,
    *,
    rtol: float | None = None,
    fit_range: tuple[int, int] | None = None,
    rankme_fraction: float = 0.1,
    std_fraction: float = 0.01,
    rankme_eigenvalues: bool = False,
) -> dict[str, Array]:
    """Every metric of the module docstring that a summary determines (all but NCM accuracy).

    Keys: ``n_samples``, ``dim``, ``std_l2_normalized``, ``isotropic_std`` (`1/sqrt(D)`),
    ``rankme``, ``participation_ratio``, ``n_components_95``, ``numerical_rank``,
    ``alpha_req``, ``alpha_req_r2``, ``singular_values``, ``collapsed``; with
    ``rankme_eigenvalues=True`` also ``rankme_eigenvalues``; with classes also
    ``n_classes_present``, ``class_counts``, ``class_means``, ``min_l2_class_means``,
    ``nc1``, ``nc2``.
    """
    D = stats.mean.shape[0]
    rtol = _default_rtol(D, stats.mean.dtype) if rtol is None else float(rtol)
    if fit_range is not None:
        fit_range = (int(fit_range[0]), int(fit_range[1]))
        if not 1 <= fit_range[0] <= fit_range[1]:
            raise ValueError(f"fit_range must satisfy 1 <= k_min <= k_max, got {fit_range}")
    return _finalize(
        stats, rtol, fit_range, rankme_fraction, std_fraction, bool(rankme_eigenvalues)
    )


def _with_ncm(out, z, labels):
    present = out["class_counts"] > 0
    correct, total = ncm_counts(z, labels, out["class_means"], present)
    out["ncm_accuracy"] = correct / jnp.maximum(total, 1)
    return out


def diagnose(
    z: Float[Array, "samples dim"],
    labels=None,
    *,
    n_classes: int | None = None,
    **options,
) -> dict[str, Array]:
    """All collapse diagnostics of one embedding array (docs/theory.md §5, module docstring).

    The one-shot path is the streaming path with a single batch, so both give the same
    numbers. ``options`` go to
    [`diagnostics_from_stats`][collapse_jax.diagnostics_from_stats]. With labels, adds
    ``ncm_accuracy`` to its keys.

    Raises:
        ValueError: not 2-D, empty, fewer than 2 samples, NaN/inf, labels of the wrong shape,
            or labels naming fewer than two classes.
        TypeError: non-numeric embeddings or non-integer labels.
    """
    z = _float(z)
    _check_matrix(z)
    if z.shape[0] < 2:
        raise ValueError(f"need at least 2 samples, got {z.shape[0]}")
    if not isinstance(z, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(z))):
        raise ValueError("embeddings contain NaN or inf")
    has_labels = labels is not None
    labels, K = _prepare_labels(labels, z.shape[0], n_classes)
    if has_labels and not isinstance(labels, jax.core.Tracer):
        present = np.unique(np.asarray(labels)[np.asarray(labels) >= 0])
        if present.size < 2:
            raise ValueError(f"labels must name at least 2 classes, got {present.size}")
    out = diagnostics_from_stats(_batch_stats(z, labels, K), **options)
    return _with_ncm(out, z, labels) if has_labels else out


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
        out = _finalize(_batch_stats(xt, labels, K), rtol, fit_range, rf, sf, eig)
        return _with_ncm(out, xt, labels)

    return jax.vmap(one)(x)
