"""The collapse metrics of a set of embeddings, one pure function each (docs/theory.md §5).

Embeddings `Z` of shape `(N, D)` from any model (and optionally integer labels). Every metric
below is a pure JAX function, float64 when ``jax_enable_x64`` is on (inputs are promoted to
the default float type); [`diagnose`][collapse_jax.diagnose] computes them all at once. Their
cores (``_rankme``, ``_alpha_req``, ``_nc1``, ...) take the array module, ``jnp`` or ``numpy``:
``diagnose`` runs the same code in numpy where that spares a compilation (docs/diagnostics.md
§10). The conventions fixed here (docs/theory.md §5 asks for them to be stated):

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


def _pow2_scale(*arrays, xp=jnp) -> Array:
    """1 when `max |a|` over ``arrays`` lies in `[2^-60, 2^60]` (or is 0), else the power of
    two `c` with `max |a| / c` in `[0.5, 1)`.

    Dividing by `c` is exact in floating point (barring underflow of entries far below the
    largest), so a metric computed on `a / c` carries the same round-off as on `a`, and no
    square (nor fourth power) of `a / c` overflows or underflows; within the range the data
    are left as they are, so their numbers are unchanged to the last bit.
    """
    top = xp.max(xp.stack([xp.max(xp.abs(a), initial=0.0) for a in arrays]))
    _, e = xp.frexp(top)
    keep = (top == 0) | ((top >= 2.0**-60) & (top <= 2.0**60))
    return xp.asarray(xp.where(keep, 1.0, xp.ldexp(xp.ones((), top.dtype), e)), top.dtype)


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


def _entropy_exp(w: Float[Array, " k"], xp=jnp) -> Float[Array, ""]:
    total = xp.sum(w)
    p = w / xp.where(total > 0, total, 1.0)
    plogp = xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0)
    return xp.where(total > 0, xp.exp(-xp.sum(plogp)), 0.0)


def rankme(sv: Float[Array, " k"], *, eigenvalues: bool = False) -> Float[Array, ""]:
    """RankMe `= exp(-sum p_k log p_k)`, `p_k = sigma_k / sum sigma` (docs/theory.md §5).

    Args:
        sv: singular values (non-negative).
        eigenvalues: use `p_k = sigma_k^2 / sum sigma^2` instead (the eigenvalue variant, to
            be labelled as such wherever it is reported).

    Returns:
        RankMe in `[1, k]`, or 0 when every value is 0 (a constant input).
    """
    return _rankme(jnp.asarray(sv), eigenvalues, jnp)


def _rankme(sv, eigenvalues, xp):
    sv = sv / _pow2_scale(sv, xp=xp)  # scale-free: exact rescaling, no overflow of sv^2
    return _entropy_exp(sv * sv if eigenvalues else sv, xp)


def participation_ratio(sv: Float[Array, " k"]) -> Float[Array, ""]:
    """`PR = (sum lambda)^2 / sum lambda^2` of `lambda = sigma^2`; 0 when all vanish (§5)."""
    return _participation_ratio(jnp.asarray(sv), jnp)


def _participation_ratio(sv, xp):
    lam = (sv / _pow2_scale(sv, xp=xp)) ** 2  # scale-free: exact rescaling, no overflow of sv^4
    s2 = xp.sum(lam * lam)
    return xp.where(s2 > 0, xp.sum(lam) ** 2 / xp.where(s2 > 0, s2, 1.0), 0.0)


def n_components(sv: Float[Array, " k"], fraction: float = 0.95) -> Array:
    """Smallest `k` with `sum_{j<=k} lambda_j >= fraction sum lambda` (§5).

    ``sv`` must be sorted descending. The comparison has a relative slack of `1e-12`; the
    result is 0 when every `lambda` is 0.
    """
    return _n_components(jnp.asarray(sv), fraction, jnp)


def _n_components(sv, fraction, xp):
    lam = (sv / _pow2_scale(sv, xp=xp)) ** 2
    total = xp.sum(lam)
    reached = xp.cumsum(lam) >= (fraction - _SLACK_95) * total
    k = xp.argmax(reached) + 1
    return xp.where(total > 0, k, 0)


def _alpha_fit_range(sv: Float[Array, " k"], fit_range: tuple[int, int] | None = None, xp=jnp):
    """The ranks `(k_min, k_max)` that [`alpha_req`][collapse_jax.alpha_req] fits (traceable).

    ``fit_range`` (default `ALPHA_REQ_FIT_RANGE` = ranks 11..100 when the numerical rank
    `r >= ALPHA_REQ_MIN_RANK` = 20, else `1..r`) with `k_max` clipped to `r`, the number of
    positive values of the descending ``sv``. Fewer than two ranks in range when
    `k_max < k_min + 1`.
    """
    r = xp.sum(xp.asarray(sv) > 0)
    if fit_range is None:
        long = r >= ALPHA_REQ_MIN_RANK
        lo = xp.where(long, ALPHA_REQ_FIT_RANGE[0], 1)
        hi = xp.where(long, ALPHA_REQ_FIT_RANGE[1], r)
    else:
        lo, hi = fit_range
    return xp.asarray(lo, r.dtype), xp.minimum(xp.asarray(hi, r.dtype), r)


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
    return _alpha_req(jnp.asarray(sv), fit_range, jnp)


def _alpha_req(sv, fit_range, xp):
    lam = (sv / _pow2_scale(sv, xp=xp)) ** 2  # scale-free: exact rescaling, no overflow of sv^2
    k = xp.arange(1, lam.shape[0] + 1)
    lo, hi = _alpha_fit_range(sv, fit_range, xp)
    w = ((k >= lo) & (k <= hi) & (lam > 0)).astype(lam.dtype)
    n = xp.sum(w)
    x = xp.log(k.astype(lam.dtype))
    y = xp.log(xp.where(lam > 0, lam, 1.0))
    safe_n = xp.maximum(n, 1.0)
    xm, ym = xp.sum(w * x) / safe_n, xp.sum(w * y) / safe_n
    sxx = xp.sum(w * (x - xm) ** 2)
    sxy = xp.sum(w * (x - xm) * (y - ym))
    syy = xp.sum(w * (y - ym) ** 2)
    ok = n >= 2
    slope = sxy / xp.where(ok, sxx, 1.0)
    resid = xp.sum(w * (y - ym - slope * (x - xm)) ** 2)
    # flat up to round-off of the eigenvalues: R^2 of noise would mean nothing, alpha = 0 fits
    flat_tol = 1e4 * xp.finfo(lam.dtype).eps * (1.0 + xp.max(xp.abs(w * y)))
    flat = syy <= n * flat_tol**2
    r2 = xp.where(flat, 1.0, 1.0 - resid / xp.where(flat, 1.0, syy))
    return xp.where(ok, -slope, xp.inf), xp.where(ok, r2, xp.nan)


def class_means(
    z: Float[Array, "samples dim"], labels, n_classes: int
) -> tuple[Float[Array, "classes dim"], Float[Array, " classes"]]:
    """Per-class means and counts (negative labels ignored; an absent class has mean 0)."""
    z = _float(z)
    onehot = jax.nn.one_hot(jnp.asarray(labels), n_classes, dtype=z.dtype)
    counts = jnp.sum(onehot, axis=0)
    return (onehot.T @ z) / jnp.maximum(counts, 1.0)[:, None], counts


def _centred_means(means, present, xp=jnp):
    p = present.astype(means.dtype)
    kp = xp.maximum(xp.sum(p), 1.0)
    mbar = xp.sum(p[:, None] * means, axis=0) / kp
    return p[:, None] * (means - mbar), p


def min_l2_class_means(means, present) -> Float[Array, ""]:
    """`min_{c != c'} |mu_c - mu_c'|` over present classes (inf with fewer than two)."""
    return _min_l2(means, present, jnp)


def _min_l2(means, present, xp):
    pair = present[:, None] & present[None, :] & ~xp.eye(means.shape[0], dtype=bool)

    def smallest(m):
        mc, _ = _centred_means(m, present, xp)  # differences are shift-free; centring helps
        diff = mc[:, None, :] - mc[None, :, :]
        return xp.min(xp.where(pair, xp.sqrt(xp.sum(diff * diff, axis=-1)), xp.inf))

    c = _pow2_scale(xp.where(present[:, None], means, 0.0), xp=xp)
    # at c = 1 the data as they are (the same round-off as ever); else rescaled, exactly
    return xp.where(c == 1.0, smallest(means), c * smallest(means / c))


def _pinv_rows(mc, rtol, scale, xp=jnp):
    """Pseudo-inverse `Mt^+` (D x K) with singular values `<= rtol * scale` dropped."""
    u, s, vt = xp.linalg.svd(mc, full_matrices=False)
    keep = s > rtol * scale
    inv = xp.where(keep, 1.0 / xp.where(keep, s, 1.0), 0.0)
    return (vt.T * inv) @ u.T, xp.any(keep)


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
    return _nc1(r_within, n_labelled, means, present, rtol, jnp)


def _nc1(r_within, n_labelled, means, present, rtol, xp):
    means = xp.where(present[:, None], means, 0.0)
    c = _pow2_scale(means, r_within, xp=xp)  # NC1 is scale-free: exact rescaling, no overflow
    means, r_within = means / c, r_within / c
    mc, _ = _centred_means(means, present, xp)
    D = means.shape[1]
    rtol = _default_rtol(D, means.dtype) if rtol is None else rtol
    scale = xp.linalg.norm(xp.where(present[:, None], means, 0.0))
    pinv, any_between = _pinv_rows(mc, rtol, scale, xp)
    value = xp.sum((r_within @ pinv) ** 2) / xp.maximum(n_labelled, 1.0)
    return xp.where(any_between, value, xp.inf)


def nc2(means, present) -> Float[Array, ""]:
    """NC2 `= |G/|G|_F - (I - 11^T/K)/sqrt(K-1)|_F`, `G = Mt Mt^T` (module docstring, §5).

    Over present classes only; NaN when the centred class means are all 0 or fewer than two
    classes are present.
    """
    return _nc2(means, present, jnp)


def _nc2(means, present, xp):
    means = xp.where(present[:, None], means, 0.0)
    mc, p = _centred_means(means / _pow2_scale(means, xp=xp), present, xp)  # scale-free
    kp = xp.sum(p)
    G = mc @ mc.T
    gnorm = xp.linalg.norm(G)
    eye = xp.eye(means.shape[0], dtype=means.dtype)
    target = p[:, None] * p[None, :] * (eye - 1.0 / xp.maximum(kp, 1.0))
    target = target / xp.sqrt(xp.maximum(kp - 1.0, 1.0))
    value = xp.linalg.norm(G / xp.where(gnorm > 0, gnorm, 1.0) - target)
    return xp.where((gnorm > 0) & (kp >= 2), value, xp.nan)


def ncm_counts(z, labels, means, present) -> tuple[Array, Array]:
    """Correct and labelled counts of nearest-class-mean classification (ties wrong).

    Scores `|mu_c - mbar|^2 - 2 (z - mbar).(mu_c - mbar)` rank the classes like
    `|z - mu_c|^2` without cancellation against `|z|^2`; absent classes never win. Sum the
    counts over batches for a streaming second pass.
    """
    return _ncm_counts(_float(z), jnp.asarray(labels), means, present, jnp)


def _ncm_counts(z, labels, means, present, xp):
    means = xp.where(present[:, None], means, 0.0)
    c = _pow2_scale(z, means, xp=xp)  # the ranking is scale-free: exact rescaling, no overflow
    z, means = z / c, means / c
    mc, _ = _centred_means(means, present, xp)
    mbar = xp.sum(xp.where(present[:, None], means, 0.0), axis=0) / xp.maximum(xp.sum(present), 1)
    scores = xp.sum(mc * mc, axis=-1)[None, :] - 2.0 * (z - mbar) @ mc.T
    scores = xp.where(present[None, :], scores, xp.inf)
    labelled = labels >= 0
    safe = xp.where(labelled, labels, 0)
    own = xp.take_along_axis(scores, safe[:, None], axis=1)[:, 0]
    others = xp.where(xp.arange(means.shape[0])[None, :] == safe[:, None], xp.inf, scores)
    correct = labelled & (own < others.min(axis=1))
    return xp.sum(correct), xp.sum(labelled)


def ncm_accuracy(z, labels, n_classes: int) -> Float[Array, ""]:
    """Nearest-class-mean accuracy of the labelled samples, with their own class means."""
    means, counts = class_means(z, labels, n_classes)
    correct, total = ncm_counts(z, labels, means, counts > 0)
    return correct / jnp.maximum(total, 1)
