"""Exact order-parameter reduction of the projection model (MODEL.md §3, §6).

For the standard data set (``n`` clean samples per class, ``m`` shared samples of weight
``w``, `M = w m`) the projection loss depends on the samples only through the class means
`xbar_c`, the shared mean `xbar_S`, the summed within-class covariance `C = sum_c C_c` and the
shared covariance `C_S`:

    L = 1/2 sum_c [ n |W xbar_c - y_c|^2 + n |y_c - xbar_c|^2
                    + M |W xbar_S - y_c|^2 + M |y_c - xbar_S|^2 ]
        + 1/2 [ n tr(W C W^T) + n tr(C) + K M tr(W C_S W^T) + K M tr(C_S) ].

In the stop-gradient loss the predictor term holds `y` and the direct term holds `x` (so in
the moment form: `y` in the first line's `W` terms, `xbar` in its direct terms, and `C`,
`C_S` in `tr(C)`, `tr(C_S)`). :func:`moment_loss` writes this once with a held slot.

**Derivation of the field.** Every sample of a group obeys `dx_i/dt = -dL/dx_i`, and inside a
group (class `c`, or the shared samples) the per-sample force is affine in `x_i` with the same
linear part `-Q` (`Q = G + I` conservative, `Q = G` with stop-gradient, times `K w` for shared
samples; `G = W^T W`). Hence

* the group mean moves with the mean force: `d xbar/dt = -(1/m_g) dL/d xbar` (``m_g`` the
  number of samples of the group: `n` or `m`);
* deviations obey `d dx_i/dt = -Q dx_i`, so the covariance obeys `dC/dt = -(Q C + C Q)`, and
  since `dL/dC = (m_g / 2) Q` this is `dC/dt = -(2/m_g) (dL/dC C + C dL/dC)`;
* `y` and `W` move with `-dL/dy`, `-dL/dW` directly.

So the reduced field is obtained from :func:`moment_loss` by ``jax.grad`` and these group
rules (:class:`ReducedField`), conservative or stop-gradient through the same held slot as
the full model. It reproduces the equations of MODEL.md §3 ("Exact reduction"); its state has
`2 K d + d + 3 d^2` numbers whatever ``n`` is (`C` is stored in full, `C_c` are not needed).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ._types import Array, Float

__all__ = [
    "ReducedState",
    "ReducedParams",
    "moment_loss",
    "ReducedField",
    "reduced_field",
    "reduce_state",
    "reduced_params",
]


class ReducedState(NamedTuple):
    """Order parameters of the projection model (MODEL.md §3, exact reduction)."""

    xbar: Float[Array, "classes dim"]
    xs: Float[Array, " dim"]
    y: Float[Array, "classes dim"]
    W: Float[Array, "dim dim"]
    C: Float[Array, "dim dim"]
    CS: Float[Array, "dim dim"]


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
    pred = pred + n * jnp.trace(z.W @ z.C @ z.W.T) + K * M * jnp.trace(z.W @ z.CS @ z.W.T)
    # direct terms: x (means and covariances) is held
    direct = n * _sq(z.y - h.xbar) + M * _sq(z.y - h.xs[None, :])
    direct = direct + n * jnp.trace(h.C) + K * M * jnp.trace(h.CS)
    return 0.5 * (pred + direct)


def _sym(a):
    return a + a.T


class ReducedField(eqx.Module):
    """Diffrax field of the reduced model, derived from :func:`moment_loss`.

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
        return ReducedState(
            xbar=-g.xbar / p.n,
            xs=-g.xs / m_shared,
            y=-g.y,
            W=-g.W,
            C=-(2.0 / p.n) * _sym(g.C @ z.C),
            CS=-(2.0 / m_shared) * _sym(g.CS @ z.CS),
        )


def reduced_field(*, stop_gradient: bool = False) -> ReducedField:
    """The reduced projection field (conservative, or stop-gradient)."""
    return ReducedField(bool(stop_gradient))


def reduce_state(x, y, W, n_classes: int, per_class: int, shared_mask) -> ReducedState:
    """Order parameters of a full state `(x, y, W)` of the standard data set.

    Covariances are `1/n sum (x_i - xbar)(x_i - xbar)^T` (population), summed over classes;
    ``shared_mask`` selects the active shared rows.
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
    return ReducedState(xbar, xs, y, W, C, CS)


def reduced_params(data) -> ReducedParams:
    """:class:`ReducedParams` of a :class:`~collapse_jax.data.StandardData`."""
    dtype = data.shared_mask.dtype
    return ReducedParams(
        jnp.asarray(data.per_class, dtype), data.shared_count, jnp.asarray(data.shared_weight)
    )
