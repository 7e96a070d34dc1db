"""The collapse metrics of a set of embeddings, one pure function each (docs/theory.md §5).

Embeddings `Z` of shape `(N, D)` from any model (and optionally integer labels). Every metric
below is a pure JAX function, float64 when ``jax_enable_x64`` is on (inputs are promoted to
the default float type); [`diagnose`][collapse_jax.diagnose] computes them all at once. The
conventions fixed here (docs/theory.md §5 asks for them to be stated):

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
  `k_min <= k <= k_max` (1-based, inclusive), restricted to the eigenvalues above the tolerance
  (the numerical rank `r`). Default: ranks 11..100 (the default of reptrix, which leaves out
  the head of the spectrum) clipped to `r`, when `r >= 20` (at least ten ranks to fit); for a
  shorter spectrum, the whole of it, ranks `1..r`. Reported with `R^2` of the fit in
  log-log space (`R^2 = 1` for a flat spectrum, which `alpha = 0` fits exactly). With fewer
  than two eigenvalues in range, `alpha = +inf` (the spectrum ends after at most one
  component) and `R^2 = NaN`.
* **Scale.** Where the largest entry lies outside `[2^-60, 2^60]`, every square is taken of the
  data divided by a power of two near it (exact in floating point), so the scale-free metrics
  (all but the singular values, the class means and MinL2) are the same for `Z` and `c Z` at
  any `c > 0` from `1e-300` to `1e300`: no square overflows or underflows.
* **std of L2-normalised embeddings**: `u_i = z_i / |z_i|` (a zero row stays 0), population
  standard deviation (ddof 0) of each coordinate of `u` over the samples, averaged over the
  `D` coordinates. 0 for a constant input, about `1/sqrt(D)` for isotropic data. The
  normalisation is *not* centred (as in SimSiam), so a large common offset also lowers it.
* **Labels**: integers `0..K-1`; a negative label marks an unlabelled sample, which enters
  every global metric but no class statistic. A class without samples is absent: it enters no
  class metric (`K_p` below counts the present classes). A label `>= K` is an error.
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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, Float

__all__ = [
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
    "ncm_counts",
    "ncm_accuracy",
]

_SLACK_95 = 1e-12
#: default alpha-ReQ fit range, ranks (1-based, inclusive): reptrix's ``np.arange(10, 100)``
ALPHA_REQ_FIT_RANGE = (11, 100)
#: below this numerical rank the default range has under ten ranks: fit the whole spectrum
ALPHA_REQ_MIN_RANK = 20
#: an alpha-ReQ fit with R^2 below this is flagged as poor (``alpha_req_poor_fit``)
ALPHA_REQ_MIN_R2 = 0.9


def _float(z) -> Array:
    dtype = z.dtype if hasattr(z, "dtype") else np.asarray(z).dtype
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise TypeError(f"embeddings must be real numbers, got dtype {dtype}")
    z = jnp.asarray(z)
    return z.astype(jnp.promote_types(z.dtype, jnp.result_type(float)))


def _default_rtol(dim: int, dtype) -> float:
    return 10.0 * dim * float(jnp.finfo(dtype).eps)


def _pow2_scale(*arrays) -> Array:
    """1 when `max |a|` over ``arrays`` lies in `[2^-60, 2^60]` (or is 0), else the power of
    two `c` with `max |a| / c` in `[0.5, 1)`.

    Dividing by `c` is exact in floating point (barring underflow of entries far below the
    largest), so a metric computed on `a / c` carries the same round-off as on `a`, and no
    square (nor fourth power) of `a / c` overflows or underflows; within the range the data
    are left as they are, so their numbers are unchanged to the last bit.
    """
    top = jnp.max(jnp.stack([jnp.max(jnp.abs(a), initial=0.0) for a in arrays]))
    _, e = jnp.frexp(top)
    keep = (top == 0) | ((top >= 2.0**-60) & (top <= 2.0**60))
    return jnp.where(keep, 1.0, jnp.ldexp(jnp.ones((), top.dtype), e)).astype(top.dtype)


def _normalize_rows(z: Array) -> Array:
    """`z_i / |z_i|` without overflow or underflow of `|z_i|^2` (a zero row stays 0)."""
    _, e = jnp.frexp(jnp.max(jnp.abs(z), axis=1, keepdims=True))
    zs = jnp.ldexp(z, -e)  # exact: a power of two per row
    norm = jnp.linalg.norm(zs, axis=1, keepdims=True)
    return zs / jnp.where(norm > 0, norm, 1.0)


def std_l2_normalized(z: Float[Array, "samples dim"]) -> Float[Array, ""]:
    """Mean over dimensions of the std of `u_i = z_i / |z_i|` (docs/theory.md §5).

    `mean_d sqrt((1/N) sum_i (u_id - ubar_d)^2)`; a zero row is kept as 0. About `1/sqrt(D)`
    for isotropic data, 0 for a constant input.
    """
    return jnp.mean(jnp.std(_normalize_rows(_float(z)), axis=0))


def singular_values(
    z: Float[Array, "samples dim"], *, rtol: float | None = None
) -> Float[Array, " dim"]:
    """Singular values of the centred embeddings, descending, `D` of them (docs/theory.md §5).

    Values `<= rtol |Z|_F` (default ``10 D eps``, `|Z|_F` of the uncentred `Z`) are set to 0
    (round-off of the centring), and zeros pad the list when `N < D`.
    """
    z = _float(z)
    N, D = z.shape
    c = _pow2_scale(z)
    zs = z / c  # exact; no square below overflows or underflows
    s = jnp.linalg.svd(zs - jnp.mean(zs, axis=0), compute_uv=False)  # thin: min(N, D) values
    s = jnp.concatenate([s, jnp.zeros(max(D - s.shape[0], 0), s.dtype)])
    rtol = _default_rtol(D, z.dtype) if rtol is None else rtol
    return c * jnp.where(s > rtol * jnp.linalg.norm(zs), s, 0.0)


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
    sv = sv / _pow2_scale(sv)  # scale-free: exact rescaling, no overflow of sv^2
    return _entropy_exp(sv * sv if eigenvalues else sv)


def participation_ratio(sv: Float[Array, " k"]) -> Float[Array, ""]:
    """`PR = (sum lambda)^2 / sum lambda^2` of `lambda = sigma^2`; 0 when all vanish (§5)."""
    sv = jnp.asarray(sv)
    lam = (sv / _pow2_scale(sv)) ** 2  # scale-free: exact rescaling, no overflow of sv^4
    s2 = jnp.sum(lam * lam)
    return jnp.where(s2 > 0, jnp.sum(lam) ** 2 / jnp.where(s2 > 0, s2, 1.0), 0.0)


def n_components(sv: Float[Array, " k"], fraction: float = 0.95) -> Array:
    """Smallest `k` with `sum_{j<=k} lambda_j >= fraction sum lambda` (§5).

    ``sv`` must be sorted descending. The comparison has a relative slack of `1e-12`; the
    result is 0 when every `lambda` is 0.
    """
    sv = jnp.asarray(sv)
    lam = (sv / _pow2_scale(sv)) ** 2
    total = jnp.sum(lam)
    reached = jnp.cumsum(lam) >= (fraction - _SLACK_95) * total
    k = jnp.argmax(reached) + 1
    return jnp.where(total > 0, k, 0)


def _alpha_fit_range(sv: Float[Array, " k"], fit_range: tuple[int, int] | None = None):
    """The ranks `(k_min, k_max)` that [`alpha_req`][collapse_jax.alpha_req] fits (traceable).

    ``fit_range`` (default `ALPHA_REQ_FIT_RANGE` = ranks 11..100 when the numerical rank
    `r >= ALPHA_REQ_MIN_RANK` = 20, else `1..r`) with `k_max` clipped to `r`, the number of
    positive values of the descending ``sv``. Fewer than two ranks in range when
    `k_max < k_min + 1`.
    """
    r = jnp.sum(jnp.asarray(sv) > 0)
    if fit_range is None:
        long = r >= ALPHA_REQ_MIN_RANK
        lo = jnp.where(long, ALPHA_REQ_FIT_RANGE[0], 1)
        hi = jnp.where(long, ALPHA_REQ_FIT_RANGE[1], r)
    else:
        lo, hi = fit_range
    return jnp.asarray(lo, r.dtype), jnp.minimum(jnp.asarray(hi, r.dtype), r)


def alpha_req(
    sv: Float[Array, " k"], fit_range: tuple[int, int] | None = None
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """alpha-ReQ: power-law decay exponent of the eigenspectrum, with `R^2` (docs/theory.md §5).

    Least squares of `log lambda_k = c - alpha log k`, `lambda = sigma^2`, over the ranks
    `k_min <= k <= k_max` (1-based, inclusive) whose eigenvalue is positive (values at the
    tolerance were already set to 0 by [`singular_values`][collapse_jax.singular_values]).
    Default range: ranks 11..100 (reptrix's default) clipped to the numerical rank `r` when
    `r >= 20`, else the whole spectrum `1..r` (module docstring).

    Returns:
        ``(alpha, r2)``: `alpha = +inf`, `r2 = NaN` with fewer than two points in range;
        `r2 = 1` for a spectrum flat up to round-off (spread of `log lambda` within
        `1e4 eps (1 + max |log lambda|)`, eigenvalues scaled to a largest value near 1).
    """
    sv = jnp.asarray(sv)
    lam = (sv / _pow2_scale(sv)) ** 2  # scale-free: exact rescaling, no overflow of sv^2
    k = jnp.arange(1, lam.shape[0] + 1)
    lo, hi = _alpha_fit_range(sv, fit_range)
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
    pair = present[:, None] & present[None, :] & ~jnp.eye(means.shape[0], dtype=bool)

    def smallest(m):
        mc, _ = _centred_means(m, present)  # differences are shift-free; centring helps
        diff = mc[:, None, :] - mc[None, :, :]
        return jnp.min(jnp.where(pair, jnp.sqrt(jnp.sum(diff * diff, axis=-1)), jnp.inf))

    c = _pow2_scale(jnp.where(present[:, None], means, 0.0))
    # at c = 1 the data as they are (the same round-off as ever); else rescaled, exactly
    return jnp.where(c == 1.0, smallest(means), c * smallest(means / c))


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
    means = jnp.where(present[:, None], means, 0.0)
    c = _pow2_scale(means, r_within)  # NC1 is scale-free: exact rescaling, no overflow
    means, r_within = means / c, r_within / c
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
    means = jnp.where(present[:, None], means, 0.0)
    mc, p = _centred_means(means / _pow2_scale(means), present)  # scale-free, no overflow
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
    means = jnp.where(present[:, None], means, 0.0)
    c = _pow2_scale(z, means)  # the ranking is scale-free: exact rescaling, no overflow
    z, means = z / c, means / c
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
