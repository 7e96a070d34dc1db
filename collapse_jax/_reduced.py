"""Exact order-parameter reduction of the projection model (docs/theory.md §3, §6).

For the standard data set (``n`` clean samples per class, ``m`` shared samples of weight
``w``, `M = w m`) the projection loss depends on the samples only through the class means
`xbar_c`, the shared mean `xbar_S`, the summed within-class covariance `C = sum_c C_c` and the
shared covariance `C_S`:

    L = 1/2 sum_c [ n |W xbar_c - y_c|^2 + n |y_c - xbar_c|^2
                    + M |W xbar_S - y_c|^2 + M |y_c - xbar_S|^2 ]
        + 1/2 [ n tr(W C W^T) + n tr(C) + K M tr(W C_S W^T) + K M tr(C_S) ].

In the stop-gradient loss the predictor term holds `y` and the direct term holds `x` (so in
the moment form: `y` in the first line's `W` terms, `xbar` in its direct terms, and `C`,
`C_S` in `tr(C)`, `tr(C_S)`). [`moment_loss`][collapse_jax.moment_loss] writes this once
with a held slot.

**Derivation of the field.** Every sample of a group obeys `dx_i/dt = -dL/dx_i`, and inside a
group (class `c`, or the shared samples) the per-sample force is affine in `x_i` with the same
linear part `-Q` (`Q = G + I` conservative, `Q = G` with stop-gradient, times `K w` for shared
samples; `G = W^T W`). Hence

* the group mean moves with the mean force: `d xbar/dt = -(1/m_g) dL/d xbar` (``m_g`` the
  number of samples of the group: `n` or `m`);
* deviations obey `d dx_i/dt = -Q dx_i`, so the covariance obeys `dC/dt = -(Q C + C Q)`, and
  since `dL/dC = (m_g / 2) Q` this is `dC/dt = -(2/m_g) (dL/dC C + C dL/dC)`;
* `y` and `W` move with `-dL/dy`, `-dL/dW` directly.

So the reduced field is obtained from [`moment_loss`][collapse_jax.moment_loss] by
``jax.grad`` and these group rules ([`ReducedField`][collapse_jax.ReducedField]),
conservative or stop-gradient through the same held slot as the full model. It reproduces the
equations of docs/theory.md §3 ("Exact reduction"); its state has `2 K d + d + 3 d^2` numbers
whatever ``n`` is (`C` is stored in full, `C_c` are not needed).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg

from ._types import Array, Float

__all__ = [
    "ReducedState",
    "ReducedParams",
    "moment_loss",
    "ReducedField",
    "reduced_field",
    "reduce_state",
    "reduced_params",
    "lift_state",
]


class ReducedState(NamedTuple):
    """Order parameters of the projection model (docs/theory.md §3, exact reduction).

    ``P`` and ``PS`` are optional (``None`` = absent): the propagators of the within-group
    deviations, `dP/dt = -Q P`, `P(0) = I`, with the group's `Q` (see the module docstring).
    Every sample of a group moves as `x_i(t) = xbar(t) + P(t) (x_i(0) - xbar(0))`, so with them
    the reduced solution lifts back to the full state exactly
    ([`lift_state`][collapse_jax.lift_state]): sample level metrics (accuracy, loss) and the
    full Jacobian of a fixed point come at the cost of `2 d^2` more numbers, still independent of
    ``n``.
    """

    xbar: Float[Array, "classes dim"]
    xs: Float[Array, " dim"]
    y: Float[Array, "classes dim"]
    W: Float[Array, "dim dim"]
    C: Float[Array, "dim dim"]
    CS: Float[Array, "dim dim"]
    P: Float[Array, "dim dim"] | None = None
    PS: Float[Array, "dim dim"] | None = None


class ReducedParams(NamedTuple):
    """Group sizes: ``n`` clean samples per class, ``m`` shared samples of weight ``w``."""

    n: Float[Array, ""]
    m: Float[Array, ""]
    w: Float[Array, ""]


def _sq(a):
    return jnp.sum(a * a)


def moment_loss(z: ReducedState, h: ReducedState, p: ReducedParams) -> Float[Array, ""]:
    """`L_P` in moment form, with the held slot ``h`` (see the module docstring)."""
    K = z.y.shape[0]
    n, M = p.n, p.w * p.m
    Wx = z.xbar @ z.W.T  # (K, d): W xbar_c
    Wxs = z.W @ z.xs
    # predictor terms: y is held (stop-gradient target)
    pred = n * _sq(Wx - h.y) + M * _sq(Wxs[None, :] - h.y)
    # n tr(W C W^T) + K M tr(W C_S W^T) = <W^T W, n C + K M C_S>: one d x d product instead
    # of four, here and in every gradient taken of it (the step is made of small operations)
    pred = pred + jnp.vdot(z.W.T @ z.W, n * z.C + K * M * z.CS)
    # direct terms: x (means and covariances) is held
    direct = n * _sq(z.y - h.xbar) + M * _sq(z.y - h.xs[None, :])
    direct = direct + n * jnp.trace(h.C) + K * M * jnp.trace(h.CS)
    return 0.5 * (pred + direct)


def _sym(a):
    return a + a.T


class ReducedField(eqx.Module):
    """Diffrax field of the reduced model, derived from
    [`moment_loss`][collapse_jax.moment_loss].

    Attributes:
        stop_gradient: differentiate the live slot only (non-conservative field).
    """

    stop_gradient: bool = eqx.field(static=True, default=False)

    def __call__(self, t, z: ReducedState, p: ReducedParams) -> ReducedState:
        del t
        if self.stop_gradient:
            g = jax.grad(moment_loss, argnums=0)(z, z, p)
        else:
            g = jax.grad(lambda s: moment_loss(s, s, p))(z)
        m_shared = jnp.maximum(p.m, 1.0)  # no shared samples: dL/dxs = 0 anyway
        lifted = z.P is not None
        return ReducedState(
            xbar=-g.xbar / p.n,
            xs=-g.xs / m_shared,
            y=-g.y,
            W=-g.W,
            C=-(2.0 / p.n) * _sym(g.C @ z.C),
            CS=-(2.0 / m_shared) * _sym(g.CS @ z.CS),
            # deviation propagators: dP/dt = -Q P with Q = (2/m_g) dL/dC
            P=-(2.0 / p.n) * g.C @ z.P if lifted else None,
            PS=-(2.0 / m_shared) * g.CS @ z.PS if lifted else None,
        )

    # -- IMEX split (fast: y, W; slow: means and covariances) ----------------------------

    @staticmethod
    def split(z: ReducedState):
        """``(slow, fast)`` leaves of a state: the explicit part of the IMEX split moves only
        the slow ones, the implicit part only `(y, W)` (the solver's ``partition``)."""
        return (z.xbar, z.xs, z.C, z.CS, z.P, z.PS), (z.y, z.W)

    @staticmethod
    def merge(slow, fast) -> ReducedState:
        """Inverse of [`split`][collapse_jax.ReducedField.split]."""
        xbar, xs, C, CS, P, PS = slow
        y, W = fast
        return ReducedState(xbar, xs, y, W, C, CS, P, PS)

    def explicit(self, t, z: ReducedState, p: ReducedParams) -> ReducedState:
        """The slow part of the field: means and covariances (`y`, `W` components zero)."""
        f = self(t, z, p)
        return f._replace(y=jnp.zeros_like(z.y), W=jnp.zeros_like(z.W))

    def implicit(self, t, z: ReducedState, p: ReducedParams) -> ReducedState:
        """The fast part of the field: the `y` and `W` components (others zero)."""
        f = self(t, z, p)
        slow = jax.tree.map(jnp.zeros_like, f._replace(y=None, W=None))
        return slow._replace(y=f.y, W=f.W)

    def stage_solve(self, t, r: ReducedState, eta, p: ReducedParams) -> ReducedState:
        """Exact solution `U` of `U = r + eta * implicit(U)` (the IMEX stage equation).

        [`implicit`][collapse_jax.ReducedField.implicit] is affine in `(y, W)` with the slow
        variables fixed, so the stage is a linear solve. With `a = n + M`,
        `u_c = n xbar_c + M xbar_S` (rows of ``u``) and
        `S = n (C + sum_c xbar_c xbar_c^T) + K M (C_S + xbar_S xbar_S^T)`, the loss gives
        `dL/dW = W S - y^T u` in both variants and

        * stop-gradient: `dL/dy_c = a y_c - u_c`, so `y = (r_y + eta u) / (1 + eta a)`,
          then `W (I + eta S) = r_W + eta y^T u`;
        * conservative: `dL/dy_c = 2 a y_c - (I + W) u_c`, so `y = alpha + beta u W^T`
          with `alpha = (r_y + eta u) / (1 + 2 eta a)`, `beta = eta / (1 + 2 eta a)`, and
          `W (I + eta S - eta beta u^T u) = r_W + eta alpha^T u`.

        Both matrices are symmetric positive definite (`u^T u <= a S` by Cauchy--Schwarz,
        so the second is `>= I + eta S / 2`): one `d x d` solve, whatever `n` (Gauss--Jordan
        without pivoting, which is stable for such matrices, written out for `d <= 16`;
        a Cholesky solve for larger `d`).
        The tests check the residual of the stage equation against
        [`implicit`][collapse_jax.ReducedField.implicit], i.e. against ``jax.grad`` of
        [`moment_loss`][collapse_jax.moment_loss].
        """
        del t
        K, d = r.y.shape
        n, M = p.n, p.w * p.m
        a = n + M
        u = n * r.xbar + M * r.xs[None, :]
        S = n * (r.C + r.xbar.T @ r.xbar) + K * M * (r.CS + jnp.outer(r.xs, r.xs))
        eye = jnp.eye(d, dtype=r.W.dtype)
        if self.stop_gradient:
            y = (r.y + eta * u) / (1.0 + eta * a)
            P = eye + eta * S
            rhs = r.W + eta * y.T @ u
        else:
            alpha = (r.y + eta * u) / (1.0 + 2.0 * eta * a)
            beta = eta / (1.0 + 2.0 * eta * a)
            P = eye + eta * S - eta * beta * u.T @ u
            rhs = r.W + eta * alpha.T @ u
        W = _spd_solve(P, rhs.T).T  # W P = rhs, P symmetric
        if not self.stop_gradient:
            y = alpha + beta * u @ W.T
        return r._replace(y=y, W=W)


def _spd_solve(P, B):
    """`P^{-1} B` for a symmetric positive definite ``P``.

    For small `d` Gauss--Jordan elimination without pivoting, unrolled: `d` rank-one updates of
    `[P | B]`, elementwise operations that batch well under ``vmap`` (a batched Cholesky calls
    LAPACK once per batch member and matrix: on the benchmark problem the solve took 8.8 us
    per 16 members that way, 6.0 us this way). Elimination without pivoting is backward stable
    for symmetric positive definite matrices; the tests check the stage equation's residual.
    """
    d = P.shape[-1]
    if d > 16:
        return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(P), B)
    A = jnp.concatenate([P, B], axis=-1)
    for k in range(d):
        row = A[k] / A[k, k]
        A = (A - A[:, k, None] * row[None, :]).at[k].set(row)
    return A[:, d:]


def reduced_field(*, stop_gradient: bool = False) -> ReducedField:
    """The reduced projection field (conservative, or stop-gradient)."""
    return ReducedField(bool(stop_gradient))


def reduce_state(
    x, y, W, n_classes: int, per_class: int, shared_mask, *, lift: bool = False
) -> ReducedState:
    """Order parameters of a full state `(x, y, W)` of the standard data set.

    Covariances are `1/n sum (x_i - xbar)(x_i - xbar)^T` (population), summed over classes;
    ``shared_mask`` selects the active shared rows. ``lift=True`` adds the deviation
    propagators `P = PS = I` (a start state for [`lift_state`][collapse_jax.lift_state]).
    """
    K, n = n_classes, per_class
    d = x.shape[-1]
    xc = x[: K * n].reshape(K, n, d)
    xbar = xc.mean(axis=1)
    dev = xc - xbar[:, None, :]
    C = jnp.einsum("kni,knj->ij", dev, dev) / n
    xsh = x[K * n :]
    mask = jnp.asarray(shared_mask, x.dtype)
    m = jnp.sum(mask)
    xs = jnp.sum(mask[:, None] * xsh, axis=0) / jnp.maximum(m, 1.0)
    ds = (xsh - xs) * mask[:, None]
    CS = ds.T @ ds / jnp.maximum(m, 1.0)
    eye = jnp.eye(d, dtype=x.dtype) if lift else None
    return ReducedState(xbar, xs, y, W, C, CS, eye, eye)


def lift_state(z: ReducedState, x0, n_classes: int, per_class: int, shared_mask):
    """The full sample embeddings `x(t)` from a lifted reduced state and the start ``x0``.

    `x_i(t) = xbar_g(t) + P_g(t) (x_i(0) - xbar_g(0))` for every sample of group `g` (a class,
    or the active shared rows); inactive shared rows feel no force and keep `x_i(0)`. Exact
    for the flow (to the integration tolerance); ``z`` must carry ``P``, ``PS``.
    """
    if z.P is None:
        raise ValueError("lift_state needs a lifted ReducedState (reduce_state(..., lift=True))")
    K, n = n_classes, per_class
    z0 = reduce_state(x0, z.y, z.W, K, n, shared_mask)
    d = x0.shape[-1]
    xc0 = x0[: K * n].reshape(K, n, d)
    xc = z.xbar[:, None, :] + (xc0 - z0.xbar[:, None, :]) @ z.P.T
    xsh0 = x0[K * n :]
    mask = jnp.asarray(shared_mask, x0.dtype)[:, None] > 0
    xsh = jnp.where(mask, z.xs + (xsh0 - z0.xs) @ z.PS.T, xsh0)
    return jnp.concatenate([xc.reshape(K * n, d), xsh], axis=0)


def reduced_params(data) -> ReducedParams:
    """[`ReducedParams`][collapse_jax.ReducedParams] of a
    [`StandardData`][collapse_jax.StandardData]."""
    dtype = data.shared_mask.dtype
    return ReducedParams(
        jnp.asarray(data.per_class, dtype), data.shared_count, jnp.asarray(data.shared_weight)
    )
