"""Metrics of a state (docs/theory.md §1): MinL2, class distances, accuracy, loss."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._types import Array, Float

__all__ = [
    "class_distances",
    "min_l2",
    "nearest_label_accuracy",
    "roundoff_floor",
    "ROUNDOFF_FACTOR",
    "fit_slow_rate",
    "fit_fast_rate",
]

#: MinL2 below ``ROUNDOFF_FACTOR * eps * (1 + max_c |y_c|)`` is at the round-off floor: label
#: differences there are artefacts of floating point, so accuracy is not reported (NaN).
ROUNDOFF_FACTOR = 1e3


def class_distances(y: Float[Array, "classes dim"]) -> Float[Array, "classes classes"]:
    """`D_cc' = |y_c - y_c'|` (K is small, so the K x K x d difference is cheap)."""
    diff = y[:, None, :] - y[None, :, :]
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def min_l2(y: Float[Array, "classes dim"]) -> Float[Array, ""]:
    """`MinL2 = min_{c != c'} |y_c - y_c'|`, the collapse measure (docs/theory.md §1).

    NaN when any label is not finite (a diverged state has no MinL2, even where two other
    labels are finite).
    """
    K = y.shape[0]
    D = class_distances(y)
    value = jnp.min(jnp.where(jnp.eye(K, dtype=bool), jnp.inf, D))
    return jnp.where(jnp.all(jnp.isfinite(y)), value, jnp.nan)


def roundoff_floor(y: Float[Array, "classes dim"]) -> Float[Array, ""]:
    """The MinL2 below which label differences are floating-point round-off."""
    eps = jnp.finfo(y.dtype).eps
    return ROUNDOFF_FACTOR * eps * (1.0 + jnp.max(jnp.linalg.norm(y, axis=-1)))


def nearest_label_accuracy(
    predictions: Float[Array, "clean dim"],
    y: Float[Array, "classes dim"],
    per_class: int,
    n_shared=0,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Nearest-label accuracy over clean samples and over all samples (docs/theory.md §1).

    ``predictions`` holds `yhat(x_i)` of the clean samples, class-major (``per_class`` each).
    ``n_shared`` active shared samples have no correct class and count as wrong in the second
    value. Ties count as wrong. Distances are compared through
    `|y_k - ybar|^2 - 2 (p_i - ybar).(y_k - ybar)` (centred, so no `N x K x d` tensor and no
    cancellation against `|p_i|^2`). Both values are
    NaN when MinL2 is at the round-off floor
    ([`roundoff_floor`][collapse_jax.roundoff_floor]) and when any prediction or label is not
    finite (a diverged state is never scored).
    """
    ybar = jnp.mean(y, axis=0)
    yc = y - ybar
    n_clean = predictions.shape[0]
    p = predictions - ybar
    scores = jnp.sum(yc * yc, axis=-1)[None, :] - 2.0 * p @ yc.T  # (n_clean, K)
    labels = jnp.arange(n_clean) // per_class
    own = jnp.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jnp.arange(y.shape[0])[None, :] == labels[:, None], jnp.inf, scores).min(
        axis=1
    )
    correct = jnp.sum(own < others)
    finite = jnp.all(jnp.isfinite(predictions)) & jnp.all(jnp.isfinite(y))
    unscored = (min_l2(y) <= roundoff_floor(y)) | ~finite
    acc_clean = jnp.where(unscored, jnp.nan, correct / n_clean)
    acc_all = jnp.where(unscored, jnp.nan, correct / (n_clean + n_shared))
    return acc_clean, acc_all


def _slow_fit(ts, values, floor=None):
    ts = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if floor is None:
        floor = 1e-8 * np.nanmax(np.abs(v))
    valid = np.isfinite(v) & (v > floor)
    if valid.sum() < 3:
        return float("nan"), float("nan"), float("nan")
    t_last = ts[valid].max()
    window = valid & (ts >= t_last / 10)
    if window.sum() < 3:
        return float("nan"), float("nan"), float("nan")
    # in units of t_last: times near the float64 range's ends (t ~ 1e-300) made LAPACK fail
    # (and print on stdout); the fit itself is unchanged up to round-off
    try:
        slope, intercept = np.polyfit(ts[window] / t_last, np.log(v[window]), 1)
    except np.linalg.LinAlgError:
        return float("nan"), float("nan"), float("nan")
    return float(slope / t_last), float(intercept), float(t_last / 10)


def fit_slow_rate(ts, values, floor=None) -> float:
    """Late-time exponential rate of ``values(t)``: least-squares slope of `log values` vs `t`.

    Window (documented choice): the valid points (finite, above ``floor``, default
    `1e-8 max(values)`, below which integrator tolerances and round-off dominate) with
    `t >= t_last / 10`, where `t_last` is the last valid time; at least three points, else NaN.
    For the embedding model the fast mode has decayed by
    `e^{-(n+M+1) t_last / 10}` there, so the slope is `lambda_plus` (docs/theory.md §2).
    """
    return _slow_fit(ts, values, floor)[0]


def fit_fast_rate(ts, values, slow_rate=None, floor=None) -> float:
    """Early exponential rate: the rate at which `log values` approaches its slow line.

    With `MinL2(t) = |u e^{l+ t} + v e^{l- t}|`, `log MinL2 - (l+ t + log|u|)` decays as
    `c e^{(l- - l+) t}`. The residual of the slow fit
    ([`fit_slow_rate`][collapse_jax.fit_slow_rate], whose window also gives the line) is
    fitted where `1e-9 < |residual| < 1e-2`, before the slow window; the returned rate is that slope
    plus the slow rate. NaN with fewer than three points. ``slow_rate`` is accepted for symmetry but
    the line is always refitted.
    """
    del slow_rate
    slope, intercept, t_start = _slow_fit(ts, values, floor)
    if not np.isfinite(slope):
        return float("nan")
    ts = np.asarray(ts, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.abs(np.log(v) - (slope * ts + intercept))
    window = np.isfinite(resid) & (resid > 1e-9) & (resid < 1e-2) & (ts < t_start)
    if window.sum() < 3:
        return float("nan")
    rel, _ = np.polyfit(ts[window], np.log(resid[window]), 1)
    return float(rel + slope)


@eqx.filter_jit
def _metrics_along(metrics, states, data):
    """``metrics(state, data)`` at every saved state, compiled as one program (run eagerly
    under ``vmap`` it is ~100 small programs, each looked up and dispatched on every run even
    when the compilation cache holds them). ``metrics`` is a module-level function (static)."""
    return jax.vmap(lambda s: metrics(s, data))(states)
