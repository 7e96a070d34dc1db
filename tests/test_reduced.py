"""The order-parameter reduction of the projection model (docs/theory.md §3) against two independent
references: the full model simulated sample by sample (a field derived here from the direct
pair loss, with its own held slot), and docs/theory.md's hand-written reduced equations."""

from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax as cj
from collapse_jax._reduced import (
    ReducedParams,
    ReducedState,
    lift_state,
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
    for a, b in zip(last[:6], jax.tree.map(lambda v: v[-1], red.ys)[:6], strict=True):
        np.testing.assert_allclose(b, a, atol=1e-8)


def _model_md_sg_field(z, K, n, M):
    """docs/theory.md §3 'Exact reduction', stop-gradient field, transcribed by hand."""
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


def _random_reduced(K, d, seed, lift=False):
    keys = jax.random.split(jax.random.PRNGKey(seed), 8)
    a = jax.random.normal(keys[4], (d, d))
    b = jax.random.normal(keys[5], (d, d))
    P = jax.random.normal(keys[6], (d, d)) if lift else None
    PS = jax.random.normal(keys[7], (d, d)) if lift else None
    return ReducedState(
        jax.random.normal(keys[0], (K, d)),
        jax.random.normal(keys[1], (d,)),
        jax.random.normal(keys[2], (K, d)),
        jax.random.normal(keys[3], (d, d)),
        a @ a.T,
        b @ b.T,
        P,
        PS,
    )


def test_reduced_field_is_model_md_equations():
    K, n, M, d = 3, 5, 2, 4
    z = _random_reduced(K, d, seed=1)
    p = ReducedParams(jnp.asarray(5.0), jnp.asarray(2.0), jnp.asarray(1.0))
    got = reduced_field(stop_gradient=True)(0.0, z, p)
    ref = _model_md_sg_field(z, K, n, M)
    assert got.P is None and ref.P is None
    for u, v in zip(got[:6], ref[:6], strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    # conservative = sg + docs/theory.md's extra terms
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
        assert sum(v.size for v in r if v is not None) == 2 * 2 * 3 + 3 + 3 * 9


@pytest.mark.parametrize("stop_gradient", [False, True])
@pytest.mark.parametrize("eta", [1e-3, 0.1, 10.0])
def test_stage_solve_is_exact_against_the_loss_derived_field(stop_gradient, eta):
    """U = R + eta f_I(U): the closed-form linear solve vs the jax.grad field of the loss."""
    K, d = 3, 4
    f = reduced_field(stop_gradient=stop_gradient)
    p = ReducedParams(jnp.asarray(40.0), jnp.asarray(3.0), jnp.asarray(1.5))
    r = _random_reduced(K, d, 2, lift=True)
    U = f.stage_solve(0.0, r, eta, p)
    rhs = jax.tree.map(lambda a, b: a + eta * b, r, f.implicit(0.0, U, p))
    scale = 1.0 + eta * 1e3  # the fast rates are O(n + M) and O(|S|)
    for u, v in zip(U, rhs, strict=True):
        np.testing.assert_allclose(u, v, atol=1e-12 * scale)
    # the slow variables are untouched, and the split adds up to the whole field
    for name in ("xbar", "xs", "C", "CS", "P", "PS"):
        np.testing.assert_array_equal(getattr(U, name), getattr(r, name))
    whole = f(0.0, r, p)
    parts = jax.tree.map(jnp.add, f.explicit(0.0, r, p), f.implicit(0.0, r, p))
    for u, v in zip(whole, parts, strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("stop_gradient", [False, True])
@pytest.mark.parametrize("lift", [False, True])
def test_partitioned_imex_step_equals_diffrax_kencarp_with_newton(stop_gradient, lift):
    """One step of the package's IMEX solvers (exact stage solves; the partitioned step the
    projection path uses, and the general one) against diffrax's own KenCarp, whose implicit
    stages are a Newton iteration on the jax.grad field: an independent reference."""
    import optimistix as optx

    from collapse_jax._imex import StageSolveKenCarp4, StageSolveKenCarp5

    K, d = 3, 4
    f = reduced_field(stop_gradient=stop_gradient)
    p = ReducedParams(jnp.asarray(40.0), jnp.asarray(3.0), jnp.asarray(1.5))
    z = _random_reduced(K, d, 5, lift=lift)
    terms = diffrax.MultiTerm(diffrax.ODETerm(f.explicit), diffrax.ODETerm(f.implicit))
    newton = optx.Newton(rtol=1e-10, atol=1e-12)  # converges quadratically past it
    for ours, theirs in (
        (StageSolveKenCarp4, diffrax.KenCarp4),
        (StageSolveKenCarp5, diffrax.KenCarp5),
    ):
        t0, t1 = jnp.asarray(0.0), jnp.asarray(0.05)
        reference = theirs(root_finder=newton)
        state = reference.init(terms, t0, t1, z, p)
        ref = reference.step(terms, t0, t1, z, p, state, False)
        assert ref[4] == diffrax.RESULTS.successful
        ref_dense = theirs.interpolation_cls(t0=t0, t1=t1, **ref[2]).evaluate(0.02)
        for solver in (ours(f.stage_solve, (f.split, f.merge)), ours(f.stage_solve)):
            y1, err, dense, _, result = solver.step(terms, t0, t1, z, p, None, False)
            assert result == diffrax.RESULTS.successful
            mid = ours.interpolation_cls(t0=t0, t1=t1, **dense).evaluate(0.02)
            for got, want in ((y1, ref[0]), (err, ref[1]), (mid, ref_dense)):
                for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                    # measured: at most 6.6e-14 of the leaf's scale (Newton's own tolerance)
                    scale = 1.0 + float(jnp.max(jnp.abs(b)))
                    np.testing.assert_allclose(a, b, rtol=0, atol=7e-13 * scale)


@pytest.mark.parametrize("stop_gradient", [False, True])
@pytest.mark.parametrize(
    "K,n,M,d",
    [
        (3, 7, 3, 4),
        pytest.param(2, 3, 0, 3, marks=pytest.mark.slow),
        pytest.param(4, 6, 5, 6, marks=pytest.mark.slow),
    ],
)
def test_lifted_reduced_path_equals_full_simulation(K, n, M, d, stop_gradient):
    """The default projection path (IMEX on the reduced state, lifted back to every sample)
    against the full model integrated sample by sample with the independent pair loss."""
    data, z0 = _start(K, n, M, d, seed=3)
    ts = jnp.array([0.5, 2.0, 5.0])
    run = cj.simulate_projection(data, cj.ProjectionState(*z0), stop_gradient=stop_gradient, ts=ts)
    full = cj.simulate(
        cj.vector_field(full_loss, stop_gradient=stop_gradient),
        z0,
        data.matrix(),
        ts=ts,
        solver=diffrax.Tsit5(),
        rtol=1e-12,
        atol=1e-12,
    )
    assert run.result == diffrax.RESULTS.successful
    for got, ref in zip(run.states, full.ys, strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-8)


def test_lift_state_needs_propagators():
    data, z0 = _start(2, 3, 1, 3)
    r = reduce_state(z0.x, z0.y, z0.W, 2, 3, data.shared_mask)
    with pytest.raises(ValueError, match="lift"):
        lift_state(r, z0.x, 2, 3, data.shared_mask)
    lifted = reduce_state(z0.x, z0.y, z0.W, 2, 3, data.shared_mask, lift=True)
    np.testing.assert_allclose(lift_state(lifted, z0.x, 2, 3, data.shared_mask), z0.x, atol=1e-15)
