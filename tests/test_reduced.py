"""The order-parameter reduction of the projection model (MODEL.md §3) against two independent
references: the full model simulated sample by sample (a field derived here from the direct
pair loss, with its own held slot), and MODEL.md's hand-written reduced equations."""

from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax.reduced import (
    ReducedParams,
    ReducedState,
    reduce_state,
    reduced_field,
    reduced_params,
)


class Full(NamedTuple):
    x: jax.Array
    y: jax.Array
    W: jax.Array


def full_loss(z, h, A):
    """L_P with the N x K x d pair tensor (small sizes only): an independent reference."""
    pred = jnp.sum(A[:, :, None] * ((z.x @ z.W.T)[:, None, :] - h.y[None]) ** 2)
    direct = jnp.sum(A[:, :, None] * (z.y[None] - h.x[:, None, :]) ** 2)
    return 0.5 * (pred + direct)


def _start(K, n, M, d, seed=0):
    data = cj.standard_data(K, n, M)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (data.n_samples, d))
    y = 2.0 * jax.random.normal(k2, (K, d))
    W = jnp.eye(d) + 0.1 * jax.random.normal(k3, (d, d))
    return data, Full(x, y, W)


@pytest.mark.parametrize("stop_gradient", [False, True])
@pytest.mark.parametrize("K,n,M,d", [(3, 7, 3, 4), (2, 3, 0, 3)])
def test_reduced_dynamics_equal_full_simulation(K, n, M, d, stop_gradient):
    data, z0 = _start(K, n, M, d)
    ts = jnp.array([0.5, 2.0, 5.0])
    kw = dict(ts=ts, t1=5.0, solver=diffrax.Tsit5(), rtol=1e-12, atol=1e-12)
    full = cj.simulate(
        cj.vector_field(full_loss, stop_gradient=stop_gradient), z0, data.matrix(), **kw
    )
    r0 = reduce_state(z0.x, z0.y, z0.W, K, n, data.shared_mask)
    red = cj.simulate(reduced_field(stop_gradient=stop_gradient), r0, reduced_params(data), **kw)
    assert full.result == diffrax.RESULTS.successful
    assert red.result == diffrax.RESULTS.successful
    np.testing.assert_allclose(red.ys.W, full.ys.W, atol=1e-8)
    np.testing.assert_allclose(red.ys.y, full.ys.y, atol=1e-8)
    # and the moments of the full trajectory are the reduced state
    last = reduce_state(full.ys.x[-1], full.ys.y[-1], full.ys.W[-1], K, n, data.shared_mask)
    for a, b in zip(last, jax.tree.map(lambda v: v[-1], red.ys), strict=True):
        np.testing.assert_allclose(b, a, atol=1e-8)


def _model_md_sg_field(z, K, n, M):
    """MODEL.md §3 'Exact reduction', stop-gradient field, transcribed by hand."""
    G = z.W.T @ z.W
    ybar = z.y.mean(0)
    S = n * (z.C + z.xbar.T @ z.xbar) + K * M * (z.CS + jnp.outer(z.xs, z.xs))
    B = n * z.y.T @ z.xbar + K * M * jnp.outer(ybar, z.xs)
    return ReducedState(
        xbar=-(z.xbar @ z.W.T - z.y) @ z.W,
        xs=-K * z.W.T @ (z.W @ z.xs - ybar),
        y=-n * (z.y - z.xbar) - M * (z.y - z.xs[None]),
        W=-z.W @ S + B,
        C=-(G @ z.C + z.C @ G),
        CS=-K * (G @ z.CS + z.CS @ G),
    )


def test_reduced_field_is_model_md_equations():
    K, n, M, d = 3, 5, 2, 4
    keys = jax.random.split(jax.random.PRNGKey(1), 6)
    a = jax.random.normal(keys[4], (d, d))
    b = jax.random.normal(keys[5], (d, d))
    z = ReducedState(
        jax.random.normal(keys[0], (K, d)),
        jax.random.normal(keys[1], (d,)),
        jax.random.normal(keys[2], (K, d)),
        jax.random.normal(keys[3], (d, d)),
        a @ a.T,
        b @ b.T,
    )
    p = ReducedParams(jnp.asarray(5.0), jnp.asarray(2.0), jnp.asarray(1.0))
    got = reduced_field(stop_gradient=True)(0.0, z, p)
    ref = _model_md_sg_field(z, K, n, M)
    for u, v in zip(got, ref, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    # conservative = sg + MODEL.md's extra terms
    cons = reduced_field()(0.0, z, p)
    G = z.W.T @ z.W + jnp.eye(d)
    ybar = z.y.mean(0)
    np.testing.assert_allclose(cons.xbar, ref.xbar - (z.xbar - z.y), atol=1e-12)
    np.testing.assert_allclose(cons.xs, ref.xs - K * (z.xs - ybar), atol=1e-12)
    extra_y = n * (z.xbar @ z.W.T - z.y) + M * ((z.W @ z.xs)[None] - z.y)
    np.testing.assert_allclose(cons.y, ref.y + extra_y, atol=1e-12)
    np.testing.assert_allclose(cons.C, -(G @ z.C + z.C @ G), atol=1e-12)


def test_reduced_state_size_does_not_depend_on_n():
    for n in (10, 1000):
        data, z0 = _start(2, n, 1, 3)
        r = reduce_state(z0.x, z0.y, z0.W, 2, n, data.shared_mask)
        assert sum(v.size for v in r) == 2 * 2 * 3 + 3 + 3 * 9
