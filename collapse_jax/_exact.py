"""Closed forms of the embedding-only model (docs/theory.md §2).

The permutation symmetry of the standard data set splits the state into three invariant
sectors (plus, in a fixed-shape sweep, the inactive shared rows):

* I (sample fluctuations): clean samples around their class mean decay at rate 1; active
  shared samples around their mean at rate `K w`.
* II (inter-class bias): `(dxbar_c, dy_c)` obey `[[-1, 1], [n, -(n+M)]]`, eigenvalues
  `lambda_pm = (-(n+M+1) pm sqrt((n+M+1)^2 - 4M)) / 2`.
* III (global translation): `(xbar, ybar, xbar_S)` obey `[[-1, 1, 0], [n, -(n+M), M],
  [0, K w, -K w]]`, eigenvalues `0` and the roots of
  `lambda^2 + (1 + n + M + K w) lambda + (M + K w (n + 1)) = 0` (for `w = 1` this is the table's
  `lambda^2 + (n+M+K+1) lambda + (Kn+K+M)`); for `m = 0` active shared rows, `0` and `-(n+1)`.
* inactive shared rows (weight 0) do not move: eigenvalue 0.

`M = w m` is the total shared weight (`w = 1` for the standard data set). Everything here
works on a [`StandardData`][collapse_jax.StandardData] and is `jit`/`vmap`-compatible except
[`sector_eigenvalues`][collapse_jax.sector_eigenvalues], which returns host arrays with
multiplicities.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._data import StandardData
from ._types import Array, EmbeddingState, Float

__all__ = [
    "lambda_pm",
    "bias_propagator",
    "global_matrix",
    "sector_eigenvalues",
    "exact_solution",
    "exact_class_distances",
    "exact_min_l2",
    "compare_with_exact",
]


def lambda_pm(per_class, shared_total):
    """Sector II eigenvalues `(lambda_plus, lambda_minus)` (docs/theory.md §2).

    `lambda_plus` is computed as `M / lambda_minus` (their product is `M`), which keeps full
    relative precision when `M << n` and is exactly 0 at `M = 0`.
    """
    n = jnp.asarray(per_class)
    M = jnp.asarray(shared_total)
    b = n + M + 1.0
    lam_minus = -0.5 * (b + jnp.sqrt(b * b - 4.0 * M))
    return M / lam_minus, lam_minus


def bias_propagator(per_class, shared_total, t) -> Float[Array, "... 2 2"]:
    """`expm(J_II t)` for `J_II = [[-1, 1], [n, -(n+M)]]`, in closed form.

    `expm(J t) = [e^{l+ t}(J - l- I) - e^{l- t}(J - l+ I)] / (l+ - l-)`; the eigenvalues are
    always distinct (`(n+M+1)^2 > 4M`).
    """
    n = jnp.asarray(per_class)
    M = jnp.asarray(shared_total)
    lp, lm = lambda_pm(n, M)
    t = jnp.asarray(t)
    ep, em = jnp.exp(lp * t), jnp.exp(lm * t)
    delta = lp - lm
    d = (ep - em) / delta
    p11 = (ep * (-1.0 - lm) - em * (-1.0 - lp)) / delta
    p22 = (ep * (-(n + M) - lm) - em * (-(n + M) - lp)) / delta
    return jnp.stack([jnp.stack([p11, d], -1), jnp.stack([n * d, p22], -1)], -2)


def global_matrix(per_class, n_classes, shared_weight, shared_count) -> Float[Array, "3 3"]:
    """Sector III matrix on `(xbar, ybar, xbar_S)` (see the module docstring)."""
    n = jnp.asarray(per_class, dtype=jnp.result_type(float))
    w = jnp.asarray(shared_weight)
    M = w * shared_count
    Kw = n_classes * w
    zero = jnp.zeros_like(M)
    return jnp.stack(
        [
            jnp.stack([-jnp.ones_like(M), jnp.ones_like(M), zero]),
            jnp.stack([n + zero, -(n + M), M]),
            jnp.stack([zero, Kw, -Kw]),
        ]
    )


def _quadratic_roots(b: float, c: float) -> list[float]:
    """Real roots of `l^2 + b l + c` (discriminant >= 0 here), computed stably."""
    disc = max(b * b - 4.0 * c, 0.0)
    q = -0.5 * (b + np.sqrt(disc))
    return [q, c / q] if q != 0.0 else [0.0, -b]


def sector_eigenvalues(data: StandardData) -> dict[str, np.ndarray]:
    """Closed-form Jacobian eigenvalues per sector, in the row space (multiply by `d`).

    Returns a dict ``{"I", "II", "III"[, "inactive"]}`` of ascending float64 arrays with
    multiplicities (docs/theory.md §2 table). ``data`` must be concrete (not traced).
    """
    K, n = data.n_classes, data.per_class
    mask = np.asarray(data.shared_mask, dtype=np.float64)
    m = int(round(mask.sum()))
    w = float(data.shared_weight)
    M = w * m
    lp, lm = (float(v) for v in lambda_pm(float(n), M))
    sector_i = [-1.0] * (K * (n - 1)) + [-K * w] * max(m - 1, 0)
    sector_ii = [lp] * (K - 1) + [lm] * (K - 1)
    if m > 0:
        sector_iii = [0.0] + _quadratic_roots(1.0 + n + M + K * w, M + K * w * (n + 1.0))
    else:
        sector_iii = [0.0, -(n + 1.0)]
    out = {
        "I": np.sort(np.array(sector_i)),
        "II": np.sort(np.array(sector_ii)),
        "III": np.sort(np.array(sector_iii)),
    }
    if mask.size > m:
        out["inactive"] = np.zeros(mask.size - m)
    return out


def _split(state: EmbeddingState, data: StandardData):
    K, n = data.n_classes, data.per_class
    x, y = state
    d = x.shape[-1]
    xc = x[: K * n].reshape(K, n, d)
    xs = x[K * n :]
    return xc, xs, y


def _slow_divided_difference(r_slow, r_fast, t):
    """`(e^{r_slow t} - e^{r_fast t}) / (r_slow - r_fast)` for `r_fast <= r_slow <= 0`.

    Written as `e^{r_slow t} (1 - e^{-(r_slow - r_fast) t}) / (r_slow - r_fast)` (no
    cancellation; `t e^{r t}` at equal roots): finite and bounded for every finite `t >= 0`.
    """
    gap = r_slow - r_fast
    safe = jnp.where(gap > 0, gap, 1.0)
    ratio = jnp.where(gap > 0, -jnp.expm1(-gap * t) / safe, t)
    return jnp.exp(r_slow * t) * ratio


def _global_propagator(per_class, n_classes, shared_weight, shared_count, t):
    """`expm(G t)` for the sector III matrix `G` (``global_matrix``), bounded for every `t >= 0`.

    `G` has the zero mode `(1, 1, 1)` with left eigenvector `c = (K n, K, m)` (`diag(c) G` is
    symmetric with zero row sums), so `P0 = 1 c^T / sum(c)` projects on it along an invariant
    complement on which `G` has the roots `r_fast <= r_slow <= 0` of
    `lambda^2 + (1 + n + M + K w) lambda + (M + K w (n + 1))`. There
    `expm(G t) = e^{r_fast t} I + f[r_fast, r_slow] (G - r_fast I)` (Newton form, exact also at
    equal roots), so `expm(G t) = P0 + (e^{r_fast t} I + f (G - r_fast I)) (I - P0)`: no exponent
    is positive, and at large `t` only `P0` is left.
    """
    G = global_matrix(per_class, n_classes, shared_weight, shared_count)
    n = jnp.asarray(per_class, dtype=G.dtype)
    m = jnp.asarray(shared_count, dtype=G.dtype)
    w = jnp.asarray(shared_weight, dtype=G.dtype)
    M, Kw = w * m, n_classes * w
    b = 1.0 + n + M + Kw
    c = M + Kw * (n + 1.0)
    r_fast = -0.5 * (b + jnp.sqrt(jnp.maximum(b * b - 4.0 * c, 0.0)))
    r_slow = jnp.minimum(c / r_fast, 0.0)
    r_fast = jnp.minimum(r_fast, r_slow)
    weights = jnp.stack([n_classes * n, jnp.full_like(m, n_classes), m])
    eye = jnp.eye(3, dtype=G.dtype)
    P0 = jnp.ones((3, 1), G.dtype) * (weights / jnp.sum(weights))[None, :]
    f = _slow_divided_difference(r_slow, r_fast, t)
    return P0 + (jnp.exp(r_fast * t) * eye + f * (G - r_fast * eye)) @ (eye - P0)


def exact_solution(
    state0: EmbeddingState, data: StandardData, ts: Float[Array, " times"]
) -> EmbeddingState:
    """`z(t) = expm(J t) z(0)` through the sectors, `O(N d)` per time point (docs/theory.md §2).

    Every mode decays or is constant and each is propagated with its own exponent (never a
    growing one), so the state is finite for every finite `t >= 0` (at `t = 1e300` it is the
    projection of the start on the zero modes). Returns an
    [`EmbeddingState`][collapse_jax.EmbeddingState] whose arrays carry a leading time axis.
    """
    K = data.n_classes
    xc, xs, y = _split(state0, data)
    mask = data.shared_mask
    w = data.shared_weight
    m = jnp.sum(mask)
    M = w * m
    mean_c = xc.mean(axis=1)
    fluct = xc - mean_c[:, None, :]
    mean_s = jnp.sum(mask[:, None] * xs, axis=0) / jnp.maximum(m, 1.0)
    fluct_s = xs - mean_s
    gx, gy = mean_c.mean(axis=0), y.mean(axis=0)
    bx, by = mean_c - gx, y - gy
    g0 = jnp.stack([gx, gy, mean_s])  # (3, d)

    def at(t):
        P = bias_propagator(data.per_class, M, t)
        bxt = P[0, 0] * bx + P[0, 1] * by
        byt = P[1, 0] * bx + P[1, 1] * by
        gt = _global_propagator(data.per_class, K, w, m, t) @ g0
        x_clean = (gt[0] + bxt)[:, None, :] + fluct * jnp.exp(-t)
        x_shared = jnp.where(mask[:, None] > 0, gt[2] + fluct_s * jnp.exp(-K * w * t), xs)
        x = jnp.concatenate([x_clean.reshape(-1, xc.shape[-1]), x_shared], axis=0)
        return EmbeddingState(x, gt[1] + byt)

    return jax.vmap(at)(jnp.asarray(ts))


def exact_class_distances(
    state0: EmbeddingState, data: StandardData, ts: Float[Array, " times"]
) -> Float[Array, "times classes classes"]:
    """`|y_c(t) - y_c'(t)|` on the exact path, evolved directly from the pair differences.

    Label differences obey sector II alone, so they are propagated without ever being formed
    as a difference of O(1) positions: no round-off floor (docs/theory.md §2).
    """
    xc, _, y = _split(state0, data)
    mean_c = xc.mean(axis=1)
    dx = mean_c[:, None, :] - mean_c[None, :, :]
    dy = y[:, None, :] - y[None, :, :]
    P = bias_propagator(data.per_class, data.shared_total, jnp.asarray(ts))  # (T, 2, 2)
    dyt = P[:, 1, 0, None, None, None] * dx + P[:, 1, 1, None, None, None] * dy
    return jnp.sqrt(jnp.sum(dyt * dyt, axis=-1))


def exact_min_l2(
    state0: EmbeddingState, data: StandardData, ts: Float[Array, " times"]
) -> Float[Array, " times"]:
    """`MinL2(t)` on the exact path, free of round-off (see
    [`exact_class_distances`][collapse_jax.exact_class_distances])."""
    D = exact_class_distances(state0, data, ts)
    K = D.shape[-1]
    return jnp.min(jnp.where(jnp.eye(K, dtype=bool), jnp.inf, D), axis=(-2, -1))


_exact_min_l2_jit = eqx.filter_jit(exact_min_l2)  # one program, not one per operation


def compare_with_exact(
    state0: EmbeddingState, data: StandardData, ts, min_l2, *, resolved: float = 1e-6
) -> dict:
    """A measured `MinL2(t)` of the embedding model against its exact path and rates.

    What ``collapse-jax simulate`` reports for the embedding model: the exact curve
    ([`exact_min_l2`][collapse_jax.exact_min_l2]) from the same start, the largest
    relative error of ``min_l2`` against it where the exact value is still resolved (above
    ``resolved`` times its first value: below that the measured curve is round-off), and the
    predicted slow and fast rates `lambda_+`, `lambda_-`
    ([`lambda_pm`][collapse_jax.lambda_pm]).

    Args:
        state0: the start.
        data: the data set.
        ts: the save times of ``min_l2``.
        min_l2: the measured MinL2 at ``ts``.
        resolved: relative level below which the exact value is not compared.

    Returns:
        ``{"min_l2_exact", "max_rel_error_vs_exact", "slow_rate_predicted",
        "fast_rate_predicted"}`` (host values).
    """
    reference = np.asarray(_exact_min_l2_jit(state0, data, ts))
    min_l2 = np.asarray(min_l2)
    mask = reference > resolved * reference[0]
    lam_plus, lam_minus = (float(v) for v in lambda_pm(data.per_class, data.shared_total))
    return {
        "min_l2_exact": reference,
        "max_rel_error_vs_exact": float(np.max(np.abs(min_l2 / reference - 1)[mask])),
        "slow_rate_predicted": lam_plus,
        "fast_rate_predicted": lam_minus,
    }
