"""A new model defined, registered and analysed without any edit to the package.

The model is a toy Barlow-Twins-like loss on the standard data layer: the cross-correlation
`C(x, y) = sum_ic A_ic x_i y_c^T / P` (`P = sum_ic A_ic`) of sample and label embeddings is
pushed to the identity, and the labels are pulled to their samples:

`L(z, h) = 1/2 |C(x, h.y) - I|_F^2 + 1/2 sum_ic A_ic |y_c - h.x_i|^2`.

Held slot: the labels in the correlation term and the samples in the pull term, so the
stop-gradient field is `F_x = -A Y (C - I)^T / P`, `F_y = -(s_c y_c - sum_i A_ic x_i)` (not
a gradient: its Jacobian is not symmetric). Everything generic (field, ``simulate``,
Jacobian, steady state, the sharded sweep engine) runs on it from its registry row; every check
compares with an independent reference (numpy loops, finite differences, a Python loop).
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_on_two_devices

import collapse_jax as cj
from collapse_jax import (
    MODELS,
    Model,
    find_steady_state,
    finite_difference_jacobian,
    get_model,
    jacobian,
    pair_sum,
    register,
    run_grid,
)


def _cross_correlation(A, x, y):
    return x.T @ A @ y / jnp.sum(A)


def barlow_loss(state, held, args):
    """`L(z, h)` of the module docstring; ``args`` a ``MechanismArgs``."""
    A = args.A
    # held: the labels of the correlation term
    C = _cross_correlation(A, state.x, held.y)
    corr = 0.5 * jnp.sum((C - jnp.eye(C.shape[0], dtype=C.dtype)) ** 2)
    # held: the samples the labels are pulled to
    return corr + 0.5 * pair_sum(A, held.x, state.y)


def _numpy_field(x, y, A, stop_gradient):
    """The field by hand, pair by pair (independent of autodiff and of the loss code)."""
    N, d = x.shape
    K = y.shape[0]
    P = A.sum()
    C = np.zeros((d, d))
    for i in range(N):
        for c in range(K):
            C += A[i, c] * np.outer(x[i], y[c]) / P
    R = C - np.eye(d)
    fx = np.zeros_like(x)
    fy = np.zeros_like(y)
    for i in range(N):
        for c in range(K):
            fx[i] -= A[i, c] * (R @ y[c]) / P  # correlation term, d/dx_i
            fy[c] -= A[i, c] * (y[c] - x[i])  # pull term, d/dy_c
            if not stop_gradient:
                fy[c] -= A[i, c] * (R.T @ x[i]) / P  # correlation term, d/dy_c
                fx[i] -= A[i, c] * (x[i] - y[c])  # pull term, d/dx_i
    return fx, fy


def toy_row() -> Model:
    """The registry row of the toy model (stop-gradient field, no hyper-parameter)."""
    return Model(
        "toy_barlow", barlow_loss, cj.init_embedding_state, True, False, None, {}, (None,),
        "cross-correlation pushed to the identity, labels pulled to held samples",
    )  # fmt: skip


@pytest.fixture(scope="module")
def model():
    row = register(toy_row(), replace=True)
    yield row
    MODELS.pop("toy_barlow")


@pytest.fixture(scope="module")
def problem(model):
    data = cj.standard_data(3, 2, 1)
    z0 = model.start(jax.random.PRNGKey(3), data, 2)
    return data, z0, model.data_args(data)


def test_registered_and_found(model):
    assert get_model("toy_barlow") is model
    assert cj.MODELS["toy_barlow"] is model
    with pytest.raises(ValueError, match="already registered"):
        register(model)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_field_matches_numpy_loop(model, problem, stop_gradient):
    data, z0, args = problem
    field = model._replace(stop_gradient=stop_gradient).field()
    F = field(0.0, z0, args)
    fx, fy = _numpy_field(np.asarray(z0.x), np.asarray(z0.y), np.asarray(data.matrix()),
                          stop_gradient)  # fmt: skip
    np.testing.assert_allclose(np.asarray(F.x), fx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(F.y), fy, rtol=1e-12, atol=1e-13)


def test_jacobian_matches_finite_differences(model, problem):
    _, z0, args = problem
    field = model.field()
    J = jacobian(field, z0, args)
    J_fd = finite_difference_jacobian(field, z0, args)
    np.testing.assert_allclose(J, J_fd, atol=1e-8)
    # a held slot: the stop-gradient Jacobian is not symmetric, the conservative one is
    assert cj.asymmetry_norm(J) > 1e-2
    J_c = jacobian(model._replace(stop_gradient=False).field(), z0, args)
    assert cj.is_symmetric(J_c)


def test_simulate_and_steady_state(model, problem):
    data, z0, args = problem
    field = model.field()
    ts = cj.log_times(1e-2, 50.0, 20)
    sol = cj.simulate(field, z0, args, ts=ts, solver=diffrax.Tsit5(), rtol=1e-10, atol=1e-12)
    assert sol.result == diffrax.RESULTS.successful
    # the first save is one small step of the flow: z(t) ~ z0 + t F(z0)
    F0 = field(0.0, z0, args)
    dx = (np.asarray(sol.ys.x[0]) - np.asarray(z0.x)) / float(ts[0])
    np.testing.assert_allclose(dx, np.asarray(F0.x), rtol=0, atol=5e-2 * np.abs(F0.x).max())
    st = find_steady_state(field, z0, args, t_max=1e4)
    assert st.status == "fixed-point"
    A = np.asarray(data.matrix())
    x, y = np.asarray(st.state.x), np.asarray(st.state.y)
    fx, fy = _numpy_field(x, y, A, True)  # the numpy field vanishes there too
    assert max(np.abs(fx).max(), np.abs(fy).max()) < 1e-9
    # each label at the mean of its samples; the cross-correlation at the identity
    s = A.sum(axis=0)
    np.testing.assert_allclose(y, (A.T @ x) / s[:, None], atol=1e-9)
    np.testing.assert_allclose(x.T @ A @ y / A.sum(), np.eye(2), atol=1e-9)


SWEEP_PHIS = np.array([0.0, 0.2, 0.25])
SWEEP_SEEDS = (0, 1, 2)


def sweep_axes():
    """The sweep grid: 3 ratios x 3 seeds = 9 members (padded to 10 over 2 devices)."""
    data = cj.frustration_data(3, 2, SWEEP_PHIS, max_shared=2)
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in SWEEP_SEEDS])
    return {"data": data, "key": keys}


def sweep_member(model):
    """One sweep member of ``model``: MinL2 at 5 times of a Tsit5 run from its default start."""
    ts = cj.log_times(1e-1, 10.0, 5)

    def member(data, key):
        z0 = model.start(key, data, 2)
        args = model.data_args(data)
        sol = cj.simulate(model.field(), z0, args, ts=ts, solver=diffrax.Tsit5(),
                          rtol=1e-10, atol=1e-12)  # fmt: skip
        return {"min_l2": jax.vmap(cj.min_l2)(sol.ys.y), "result": sol.result._value}

    return member


def _python_loop(member):
    """The reference: each member alone (``jit`` of one member, no ``vmap``, no sharding)."""
    axes = sweep_axes()
    one = jax.jit(member)
    ref = np.empty((len(SWEEP_PHIS), len(SWEEP_SEEDS), 5))
    for f in range(len(SWEEP_PHIS)):
        d = jax.tree.map(lambda a, f=f: a[f], axes["data"])
        for s in range(len(SWEEP_SEEDS)):
            ref[f, s] = np.asarray(one(d, jnp.asarray(axes["key"][s]))["min_l2"])
    return ref


def test_sharded_sweep_matches_a_python_loop(model):
    member = sweep_member(model)
    out, timing = run_grid(member, sweep_axes(), devices=jax.devices())
    assert out["min_l2"].shape == (3, 3, 5) and timing["n_devices"] == len(jax.devices())
    assert np.all(out["result"] == 0)
    np.testing.assert_allclose(out["min_l2"], _python_loop(member), rtol=1e-9)


TWO_DEVICES = """
import sys
import chex, jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
import collapse_jax as cj
from helpers import run_on_two_devices
import test_new_model as t
assert len(jax.devices()) == 2, jax.devices()
row = cj.register(t.toy_row())  # registered here, in a fresh process, by the test file alone
member = chex.assert_max_traces(t.sweep_member(row), n=1)  # one trace: one compile
out, timing = cj.run_grid(member, t.sweep_axes())
np.savez(sys.argv[2], min_l2=out["min_l2"], result=out["result"],
         n_devices=timing["n_devices"])
"""


def test_sharded_sweep_on_two_devices(model, tmp_path):
    """The sweep engine shards the new model over a 2-device mesh (9 members, padded to 10)
    in a fresh process, tracing the member once; it matches the python loop here."""
    path = tmp_path / "two.npz"
    run_on_two_devices(TWO_DEVICES, path)
    with np.load(path) as got:
        assert int(got["n_devices"]) == 2
        assert np.all(got["result"] == 0)
        np.testing.assert_allclose(got["min_l2"], _python_loop(sweep_member(model)), rtol=1e-9)
