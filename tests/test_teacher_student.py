"""Linear teacher-student model (linear teacher, linear student, label embeddings).

References are independent of the package: numpy gradients and Hessians written from the
inputs `xi` (not from the package's moments), central finite differences, the closed-form
plain path, Python loops against `vmap`.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import collapse_jax as cj
from collapse_jax._models.teacher_student import (
    TeacherStudentConfig,
    run_teacher_student,
    teacher_student_member,
)
from collapse_jax.cli import main

SMALL = dict(dim=12, n_samples=40)


def _np(a):
    return np.asarray(a, dtype=np.float64)


def _small_problem(f=0.1, seed=3, projection=False, p=3):
    kd, ks = jax.random.split(jax.random.PRNGKey(seed))
    data = cj.teacher_student_data(kd, f, **SMALL)
    state = cj.init_teacher_student_state(ks, SMALL["dim"], p, projection=projection)
    return data, state


def _reference_fields(state, data, stop_gradient):
    """-grad of the losses by explicit per-sample sums (numpy), docs/theory.md §3-§4."""
    xi, c = _np(data.xi), _np(data.labels)
    U, y = _np(state.U), _np(state.y)
    P = xi.shape[0]
    cls = np.where(c > 0, 0, 1)
    yc = y[cls]  # (P, p)
    x = xi @ U.T
    if state.W is None:
        r = x - yc
        dU = -(r.T @ xi) / P
        dy = np.stack([r[cls == k].sum(0) for k in (0, 1)]) / P
        return dU, dy, None
    W = _np(state.W)
    r = x @ W.T - yc  # predictor residual W U xi - y
    e = yc - x  # direct residual y - U xi
    dW = -(r.T @ x) / P
    dU = -(W.T @ r.T @ xi) / P
    dy = -np.stack([e[cls == k].sum(0) for k in (0, 1)]) / P
    if not stop_gradient:  # held copies differentiated too
        dy += np.stack([r[cls == k].sum(0) for k in (0, 1)]) / P
        dU += (e.T @ xi) / P
    return dU, dy, dW


def _reference_slow_rate(data):
    """Smallest eigenvalue of the plain Hessian with a separation component, built from xi."""
    xi, c = _np(data.xi), _np(data.labels)
    P, D = xi.shape
    onehot = np.stack([c > 0, c < 0], axis=1).astype(float)  # (P, 2)
    # features of one student row: z = (u, y+, y-); residual_i = u.xi_i - y_{c_i} = G_i . z
    G = np.concatenate([xi, -onehot], axis=1)
    H = G.T @ G / P
    lam, Q = np.linalg.eigh(H)
    sep = np.abs(Q[D] - Q[D + 1])
    return lam[np.argmax(sep > 1e-8)], H


# --- data -------------------------------------------------------------------------------


def test_data_frustration_rule():
    key = jax.random.PRNGKey(0)
    d0 = cj.teacher_student_data(key, 0.0)
    d2 = cj.teacher_student_data(key, 0.2)
    assert d0.xi.shape == (400, 100)
    np.testing.assert_allclose(np.linalg.norm(_np(d0.teacher)), 1.0, rtol=1e-14)
    assert float(d2.frustration_realised) == 0.2
    fr = _np(d2.frustrated)
    assert fr[:200].sum() == fr[200:].sum() == 40  # per class
    assert np.all(fr >= _np(cj.teacher_student_data(key, 0.1).frustrated))  # nested sets
    # frustrated samples sit at the opposite peak, the noise is the same for every f
    side = _np(d2.xi) @ _np(d2.teacher) - _np(d0.xi) @ _np(d0.teacher)
    np.testing.assert_allclose(side, -4.0 * fr * _np(d2.labels), atol=1e-12)
    with pytest.raises(ValueError, match="frustration"):
        cj.teacher_student_data(key, 0.5)


# --- fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("projection,stop_gradient", [(False, False), (True, False), (True, True)])
def test_fields_match_numpy_reference(projection, stop_gradient):
    data, state = _small_problem(projection=projection)
    loss = cj.teacher_student_projection_loss if projection else cj.teacher_student_loss
    F = cj.vector_field(loss, stop_gradient=stop_gradient)(0.0, state, data.moments())
    dU, dy, dW = _reference_fields(state, data, stop_gradient)
    np.testing.assert_allclose(_np(F.U), dU, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(_np(F.y), dy, rtol=1e-12, atol=1e-13)
    if projection:
        np.testing.assert_allclose(_np(F.W), dW, rtol=1e-12, atol=1e-13)
    # training_loss (optax-facing) has gradient -F in value
    g = jax.grad(cj.training_loss(loss, stop_gradient=stop_gradient))(state, data.moments())
    np.testing.assert_allclose(_np(g.U), -dU, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "name,projection,stop_gradient",
    [
        ("teacher_student", False, False),
        ("teacher_student_projection", True, False),
        ("teacher_student_sg", True, True),
    ],
)
def test_registry_rows_fields_start_and_metrics(name, projection, stop_gradient):
    """The registry rows: the generic ``start``/``data_args``/``field`` of a row give the
    numpy per-sample field, its Jacobian matches finite differences, and its metrics row is
    the model's metrics."""
    row = cj.get_model(name)
    kd, ks = jax.random.split(jax.random.PRNGKey(3))
    data = cj.teacher_student_data(kd, 0.1, **SMALL)
    state = row.start(ks, data, 3)
    ref = cj.init_teacher_student_state(ks, SMALL["dim"], 3, projection=projection)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(_np(a), _np(b))
    args = row.data_args(data)
    F = row.field()(0.0, state, args)
    dU, dy, dW = _reference_fields(state, data, stop_gradient)
    # measured: 2.6-3.9e-16 relative to the largest entry
    np.testing.assert_allclose(_np(F.U), dU, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(_np(F.y), dy, rtol=1e-12, atol=1e-13)
    if projection:
        np.testing.assert_allclose(_np(F.W), dW, rtol=1e-12, atol=1e-13)
    J = cj.jacobian(row.field(), state, args)
    J_fd = cj.finite_difference_jacobian(row.field(), state, args)
    np.testing.assert_allclose(J, J_fd, atol=3e-10)  # measured 0.9-2.5e-11 (|J| <= 4.5)
    assert cj.is_symmetric(J) == row.conservative
    m = row.metrics(row, state, data, args)
    assert float(m["min_l2"]) == pytest.approx(float(np.linalg.norm(_np(state.y[0] - state.y[1]))))
    with pytest.raises(TypeError, match="starts from its own data"):
        row.init(ks, 10, 2, 3)


def test_plain_jacobian_is_minus_numpy_hessian():
    data, state = _small_problem()
    J = cj.jacobian(cj.vector_field(cj.teacher_student_loss), state, data.moments())
    _, H_row = _reference_slow_rate(data)
    D, p = SMALL["dim"], state.U.shape[0]
    # flattened layout [U.ravel() (p, D row-major), y.ravel() (2, p)]
    idx_u = np.arange(p * D).reshape(p, D)
    idx_y = p * D + np.arange(2 * p).reshape(2, p)
    H = np.zeros_like(J)
    for a in range(p):
        rows = np.concatenate([idx_u[a], idx_y[:, a]])
        H[np.ix_(rows, rows)] = H_row
    np.testing.assert_allclose(J, -H, atol=1e-13)
    assert cj.asymmetry_norm(J) < 1e-13


def test_projection_jacobians_symmetric_and_stop_gradient_matches_fd():
    data, state = _small_problem(projection=True)
    args = data.moments()
    loss = cj.teacher_student_projection_loss
    Jc = cj.jacobian(cj.vector_field(loss), state, args)
    assert cj.asymmetry_norm(Jc) < 1e-12 * np.linalg.norm(Jc)
    field = cj.vector_field(loss, stop_gradient=True)
    J = cj.jacobian(field, state, args)
    J_fd = cj.finite_difference_jacobian(field, state, args)
    assert np.max(np.abs(J - J_fd)) < 1e-7
    assert cj.asymmetry_norm(J) > 1e-2 * np.linalg.norm(J)  # not a gradient (docs/theory.md §3)
    # the naive construction (jacfwd of grad with lax.stop_gradient) is wrong: the trap
    value = cj.training_loss(loss, stop_gradient=True)
    flat, unravel = jax.flatten_util.ravel_pytree(state)
    naive = jax.jacfwd(
        lambda v: -jax.flatten_util.ravel_pytree(jax.grad(value)(unravel(v), args))[0]
    )(flat)
    assert np.max(np.abs(_np(naive) - J_fd)) > 1e-3


# --- trajectories (defaults of docs/theory.md §4) ---------------------------------------------

FS = np.array([0.0, 0.1, 0.2])
TS = cj.log_times(1e-2, 400.0, 60)


@pytest.fixture(scope="module")
def plain_runs():
    cfg = TeacherStudentConfig()
    member = jax.jit(jax.vmap(lambda f: teacher_student_member(f, jax.random.PRNGKey(0), TS, cfg)))
    return jax.tree_util.tree_map(np.asarray, member(jnp.asarray(FS)))


def test_plain_slow_rate_matches_hessian_eigenvalue(plain_runs):
    assert np.all(plain_runs["result"] == 0)
    rates, refs = [], []
    for i, f in enumerate(FS):
        kd, _ = jax.random.split(jax.random.PRNGKey(0))
        ref, _ = _reference_slow_rate(cj.teacher_student_data(kd, float(f)))
        fit = -cj.fit_slow_rate(TS, plain_runs["min_l2"][i], floor=1e-250)
        assert abs(fit / ref - 1) < 5e-3, (f, fit, ref)  # measured 4.7e-4 (f = 0.2)
        rates.append(fit)
        refs.append(ref)
    assert np.all(np.diff(rates) > 0)  # collapse is faster with more frustration
    # the package's own closed form agrees with the independent one
    kd, ks = jax.random.split(jax.random.PRNGKey(0))
    data = cj.teacher_student_data(kd, 0.1)
    assert abs(cj.teacher_student_slow_rate(data.moments()) - refs[1]) < 1e-12
    # and the integrated path matches the closed-form path (relative error control)
    state0 = cj.init_teacher_student_state(ks)
    exact = cj.teacher_student_exact_min_l2(state0, data.moments(), TS)
    np.testing.assert_allclose(plain_runs["min_l2"][1], exact, rtol=1e-7)


def test_plain_collapses_and_accuracy_is_scale_free(plain_runs):
    m = plain_runs["min_l2"]
    assert np.all(m[:, -1] < 1e-10 * m[:, 0])  # MinL2 -> 0 without stop-gradient
    acc = plain_runs["accuracy"]
    # accuracy stays on its plateau while the state shrinks by > 1e10 (no underflow tie)
    assert np.all(np.isfinite(acc[:, -1]))
    assert np.all(np.abs(acc[:, -1] - acc[:, -10]) < 0.03)
    assert np.all(acc[:, -1] <= 1 - FS + 0.01)


def test_vmap_over_frustration_equals_python_loop(plain_runs):
    cfg = TeacherStudentConfig()
    single = jax.jit(lambda f: teacher_student_member(f, jax.random.PRNGKey(0), TS, cfg))
    for i in (0, 2):
        one = single(jnp.asarray(FS[i]))
        for key in ("min_l2", "accuracy", "loss"):
            np.testing.assert_allclose(_np(one[key]), plain_runs[key][i], rtol=1e-9)


def _field_norm(state, data, stop_gradient):
    """|F| from the numpy reference field (independent of the package's field)."""
    return np.sqrt(sum(np.sum(a**2) for a in _reference_fields(state, data, stop_gradient)))


@pytest.mark.slow
def test_projection_stop_gradient_f02_settles_on_fixed_point():
    """Stop-gradient at f = 0.2: the accuracy peak (0.805) and later fall to 0.7525 is the
    approach to a fixed point, not a late collapse: the end state has |F| ~ 1e-11 (numpy
    field), and MinL2 / accuracy are the same at t1 = 2000 and 5000 and at rtol 1e-6."""
    cfg = TeacherStudentConfig("projection", True)
    ends = {}
    for t1, rtol in ((2000.0, 1e-10), (5000.0, 1e-10), (2000.0, 1e-6)):
        r = run_teacher_student(0.2, 0, cfg, t1=t1, points=60, rtol=rtol)
        assert r["result"] == 0
        ends[(t1, rtol)] = r
    out = teacher_student_member(
        jnp.asarray(0.2), jax.random.PRNGKey(0), cj.log_times(1e-2, 2000.0, 60), cfg
    )
    kd, _ = jax.random.split(jax.random.PRNGKey(0))
    data = cj.teacher_student_data(kd, 0.2)
    # numpy |F| at the end: a fixed point (measured 2.9e-11; 1e-5 at t1 = 400)
    assert _field_norm(out["final_state"], data, True) < 3e-10
    for r in ends.values():
        np.testing.assert_allclose(r["final_min_l2"], 0.5299657800, rtol=1e-6)  # measured 1e-9
        assert r["final_accuracy"] == pytest.approx(0.7525, abs=1e-12)  # 301 of 400
        assert r["peak_accuracy"] == pytest.approx(0.805, abs=1e-12)


@pytest.mark.slow
def test_projection_stop_gradient_keeps_separation_sweep():
    """Seeds 0-4 at f = 0.2, and f = 0, 0.1, 0.2 for seeds 0, 1: every run ends on a fixed point
    with a finite MinL2; the accuracy there is within 0.05 of 1 - f (measured: at f = 0.2
    0.7525, 0.805, 0.835, 0.7975, 0.825 for seeds 0-4; the worst, seed 0, 0.0475 below)."""
    cfg = TeacherStudentConfig("projection", True)
    ts = cj.log_times(1.0, 2000.0, 20)
    accs = []
    for seed in range(5):
        fs = FS if seed < 2 else FS[2:]
        member = jax.jit(
            jax.vmap(lambda f, s=seed: teacher_student_member(f, jax.random.PRNGKey(s), ts, cfg))
        )
        out = member(jnp.asarray(fs))
        m, acc = _np(out["min_l2"]), _np(out["accuracy"])
        assert np.all(_np(out["result"]) == 0)
        assert np.all(m[:, -1] > 0.3)
        # on a fixed point: |F(t1)| / |F(t0)| measured <= 1.7e-8 (seed 4), 7e-12 (seed 0)
        assert np.all(_np(out["residual_final"]) < 2e-7 * _np(out["residual_initial"]))
        # settled, not decaying: measured 1.7e-4 at worst (seed 4, f = 0.2, t = 1000 -> 2000)
        np.testing.assert_allclose(m[:, -1], m[:, -3], rtol=2e-3)
        assert np.all(np.abs(acc[:, -1] - (1 - fs)) < 0.05), (seed, acc[:, -1])
        accs.append(acc[-1, -1])
    np.testing.assert_allclose(accs, [0.7525, 0.805, 0.835, 0.7975, 0.825], atol=1e-12)


# --- loss time scales, two-stage pattern, rescaling (defaults) ----------------------------


def test_plain_loss_fast_then_slow_rates_match_closed_form(plain_runs):
    """The plain loss is the quadratic form 1/2 sum_a v_a^T H v_a, so along the flow
    L(t) = 1/2 sum_k lambda_k c_k^2 exp(-2 lambda_k t) (H built here from xi): its log-slope
    starts at the fast weighted rate and ends at 2 lambda_min, 7 to 32 times slower."""
    t = _np(TS)
    _, ks = jax.random.split(jax.random.PRNGKey(0))
    state0 = cj.init_teacher_student_state(ks)
    for i, f in enumerate(FS):
        kd, _ = jax.random.split(jax.random.PRNGKey(0))
        _, H = _reference_slow_rate(cj.teacher_student_data(kd, float(f)))
        lam, Q = np.linalg.eigh(H)
        V0 = np.concatenate([_np(state0.U).T, _np(state0.y)])
        c2 = ((Q.T @ V0) ** 2).sum(1)
        exact = 0.5 * (np.exp(-2 * np.outer(t, lam)) * lam * c2).sum(1)
        loss = plain_runs["loss"][i]
        np.testing.assert_allclose(loss, exact, rtol=1e-8)  # measured 8.6e-10 (f = 0.2)
        tm = 0.5 * (t[0] + t[1])
        w = lam * c2 * np.exp(-2 * lam * tm)
        fast = -(np.log(loss[1]) - np.log(loss[0])) / (t[1] - t[0])
        assert abs(fast / (2 * (lam * w).sum() / w.sum()) - 1) < 3e-5  # measured 3.0e-6
        slow = -cj.fit_slow_rate(t, loss, floor=1e-250 * loss.max())
        assert abs(slow / (2 * lam[0]) - 1) < 5e-3  # measured 3.4e-4 (f = 0.2)
        assert fast > 5 * slow  # measured 7.1 (f = 0.2) .. 32 (f = 0)
        assert np.all(np.diff(loss) < 0)  # a gradient flow: the loss never rises


@pytest.fixture(scope="module")
def projection_runs():
    """Projection model without stop-gradient (seed 0) at f = 0.1, 0.2 to t = 400."""
    cfg = TeacherStudentConfig("projection")
    return {False: [run_teacher_student(f, 0, cfg, t1=400.0, points=60) for f in (0.1, 0.2)]}


def test_projection_two_stage_pattern_and_uniform_shrinking(projection_runs):
    """Without stop-gradient at f = 0.2 the accuracy rises to 0.79 then falls to 0.5775 while
    the loss falls at every save; U and y shrink at one rate while W converges."""
    for r in projection_runs[False]:
        assert r["result"] == 0
        assert r["loss_max_increase"] < 0  # measured -1.2e-2: never rises (gradient flow)
        assert abs(r["scale_rate_y"] / r["scale_rate_U"] - 1) < 0.05  # measured 5.5e-3 (f = 0.2)
        assert r["norm_W_change"] < 1e-10 and 1.5 < r["norm_W"][-1] < 2.5  # |W| -> 1.84
        assert abs(r["slow_rate_fit"] / r["scale_rate_y"] - 1) < 0.01  # measured 8.1e-4
    r = projection_runs[False][1]
    assert r["peak_accuracy"] - r["final_accuracy"] > 0.1  # measured 0.21 (0.79 -> 0.58)
    assert 1 < r["peak_time"] < 20  # measured 3.75
    assert r["final_loss"] < 1e-100 * r["loss_at_peak"]  # measured ratio 5e-122
    r = projection_runs[False][0]
    assert r["peak_accuracy"] - r["final_accuracy"] < 0.02  # f = 0.1: no fall (measured 0.0075)


@pytest.mark.slow
def test_projection_with_and_without_stop_gradient_split(projection_runs):
    """f = 0.2: both runs start together (MinL2 within 1% at t = 0.01) and part during the fast
    phase (|ln ratio| > 0.1 from t = 0.30; 0.43 at f = 0.1); the stop-gradient run ends on a
    fixed point and its loss, not a gradient flow, rises somewhere."""
    from collapse_jax.reproduce import _ts_split_time

    sg_run = run_teacher_student(0.2, 0, TeacherStudentConfig("projection", True), t1=2000.0)
    for plain, sg in ((projection_runs[False][1], sg_run),):
        assert abs(np.log(plain["min_l2"][0] / sg["min_l2"][0])) < 0.01  # measured 5e-3
        split = _ts_split_time(plain, sg)
        assert 0.1 < split < 2.0, split
        # the interpolation is checked against a direct comparison at the stop-grad save times
        t_sg = np.asarray(sg["t"])
        a = np.interp(np.log(t_sg), np.log(plain["t"]), np.log(plain["min_l2"]))
        first = t_sg[np.argmax(np.abs(a - np.log(sg["min_l2"])) > 0.1)]
        assert 0.5 < first / split < 2.0
        assert sg["residual_final"] < 1e-10 * sg["residual_initial"]  # measured 7e-12
        assert 0.5 < sg["final_min_l2"] < 10 and not np.isfinite(sg["slow_rate_fit"])
        # accuracy at the fixed point: measured 0.7525 (0.0475 below 1 - f = 0.8)
        assert abs(sg["final_accuracy"] - sg["accuracy_reference"]) < 0.05
        assert sg["loss_max_increase"] > 0  # measured 2.7e-2


def test_scale_summary_on_a_rescaling_path():
    """A path that only rescales (z(t) = e^{-a t} z0): rates a, zero shape drift."""
    from collapse_jax._models.teacher_student import scale_summary
    from collapse_jax._types import TeacherStudentState

    t = np.linspace(0.0, 100.0, 50)
    rng = np.random.default_rng(0)
    U0, y0, W0 = rng.normal(size=(3, 7)), rng.normal(size=(2, 3)), rng.normal(size=(3, 3))
    e = np.exp(-0.3 * t)[:, None, None]
    states = TeacherStudentState(U=e * U0, y=e * y0, W=np.broadcast_to(W0, (50, 3, 3)))
    out = scale_summary(t, states)
    assert out["scale_rate_U"] == pytest.approx(0.3, rel=1e-10)
    assert out["scale_rate_y"] == pytest.approx(0.3, rel=1e-10)
    assert out["direction_drift_U"] < 1e-12 and out["direction_drift_y"] < 1e-12
    assert out["norm_W_change"] == 0.0
    np.testing.assert_allclose(out["norm_U"], np.linalg.norm(U0) * e[:, 0, 0], rtol=1e-12)
    # no predictor: NaN W norms; a non-decaying norm has no rate
    out = scale_summary(t, TeacherStudentState(U=np.broadcast_to(U0, (50, 3, 7)), y=e * y0))
    assert np.all(np.isnan(out["norm_W"])) and np.isnan(out["scale_rate_U"])


# --- figure -----------------------------------------------------------------------------


def test_teacher_student_figure_data(tmp_path, plain_runs, projection_runs):
    from collapse_jax._plots import save_figure, teacher_student_figure

    plain, lams = [], []
    for i in (1, 2):  # f = 0.1, 0.2 of the shared default runs, as run dicts
        kd, _ = jax.random.split(jax.random.PRNGKey(0))
        lam, _ = _reference_slow_rate(cj.teacher_student_data(kd, float(FS[i])))
        lams.append(lam)
        acc = plain_runs["accuracy"][i]
        plain.append(
            {
                "t": _np(TS),
                **{k: plain_runs[k][i] for k in ("min_l2", "accuracy", "loss")},
                "slow_rate_hessian": lam,
                "accuracy_reference": 1 - FS[i],
                "peak_time": float(_np(TS)[np.argmax(acc)]),
                "variant": "plain",
                "frustration": FS[i],
                "seed": 0,
            }
        )
    fig = teacher_student_figure(plain, title="t")
    axes = fig.axes
    assert len(axes) == 4
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        for line in ax.get_lines():
            assert np.all(np.isfinite(line.get_xydata()))
    a, b, c, d = axes
    assert len(a.get_lines()) == 2 and len(d.get_lines()) >= 2
    # (b): ln(MinL2/MinL2(t_min)) against t lambda_H (closed form, from xi here) + slope -1
    ref = [ln for ln in b.get_lines() if "slope -1" in ln.get_label()]
    assert len(ref) == 1
    xy = ref[0].get_xydata()
    np.testing.assert_allclose(xy[:, 1], -xy[:, 0])
    curves = [ln for ln in b.get_lines() if ln not in ref]
    assert len(curves) == 2
    for ln, r, lam in zip(curves, plain, lams, strict=True):
        x, yv = ln.get_xydata().T
        np.testing.assert_allclose(x, np.asarray(r["t"]) * lam, rtol=1e-10)
        # late slope against the closed-form time: -1 (a real test, nothing fitted)
        late = x > 0.5 * x[-1]
        slope = np.polyfit(x[late], yv[late], 1)[0]
        assert abs(slope + 1) < 5e-5, slope  # measured 5.6e-6 (f = 0.2), 3e-12 (f = 0.1)
    # (c): accuracy curves, 1 - f dashed; (d): loss curves
    np.testing.assert_allclose(c.get_lines()[0].get_ydata(), plain[0]["accuracy"])
    np.testing.assert_allclose(d.get_lines()[0].get_ydata(), plain[0]["loss"])
    assert save_figure(fig, tmp_path / "ts.png").endswith("ts.png")
    assert (tmp_path / "ts.png").stat().st_size > 0
    # projection runs have no closed-form rate: (b) shows |U|, |y|, |W|
    fig = teacher_student_figure(projection_runs[False])
    b = fig.axes[1]
    labels = [ln.get_label() for ln in b.get_lines()]
    assert sum(lab.endswith("|W|") for lab in labels) == 2
    for ln in b.get_lines():
        assert np.all(np.isfinite(ln.get_xydata()))
    assert b.get_xlabel() and b.get_ylabel()


# --- discrete training (optax) ----------------------------------------------------------


def test_gradient_descent_tracks_gradient_flow():
    """GD step k at t = k lr against the closed-form flow (plain model, small sizes)."""
    data, state = _small_problem(f=0.1, seed=1)
    args = data.moments()
    lam = np.linalg.eigvalsh(cj.teacher_student_hessian(args))
    t_end = 20.0
    errors = {}
    for lr in (0.005, 0.05):
        steps = int(round(t_end / lr))
        k, states = jax.jit(
            lambda s, lr=lr, steps=steps: cj.train(
                cj.teacher_student_loss, s, args, optax.sgd(lr), steps=steps, save_every=steps // 20
            )
        )(state)
        t = _np(k) * lr
        exact = cj.teacher_student_exact_min_l2(state, args, t)
        gd = np.linalg.norm(_np(states.y[:, 0] - states.y[:, 1]), axis=-1)
        errors[lr] = np.max(np.abs(gd / exact - 1))
    # Euler on a linear flow: relative error ~ lr * lambda^2 t / 2 for the slow mode, O(lr)
    assert errors[0.005] < 0.01
    assert 5 < errors[0.05] / errors[0.005] < 20  # first order in the step size
    assert lam.max() * 0.05 < 2  # still stable at that step


# --- CLI --------------------------------------------------------------------------------


def test_cli_projection_without_stop_gradient_collapses(capsys, tmp_path, monkeypatch):
    """CLI JSON contract, and MinL2 -> 0 for the projection model without stop-gradient;
    ``--figure`` draws the run (it was once refused for every teacher-student run)."""
    from helpers import capture_figures

    saved = capture_figures(monkeypatch)
    argv = ["teacher-student", "--json", "--variant", "projection", "--frustration", "0.1"]
    code = main([*argv, "--points", "30", "--t1", "300", "--figure", str(tmp_path / "ts.png")])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    assert res["figure"] == str(tmp_path / "ts.png") and (tmp_path / "ts.png").stat().st_size
    (fig, path), *rest = saved
    assert path == res["figure"] and not rest
    # panel (a) holds this run's MinL2(t), as printed in the JSON
    xy = np.concatenate([ln.get_xydata() for ln in fig.axes[0].get_lines()])
    np.testing.assert_allclose(xy[: len(res["t"])], np.c_[res["t"], res["min_l2"]], rtol=1e-12)
    for key in ("t", "min_l2", "accuracy", "loss", "final_accuracy", "accuracy_reference"):
        assert key in res
    assert len(res["t"]) == len(res["min_l2"]) == len(res["accuracy"]) == 30
    assert res["accuracy_reference"] == pytest.approx(0.9)
    assert res["result"] == "successful" and "slow_rate_hessian" not in res
    assert res["final_min_l2"] < 1e-12 * res["min_l2"][0]
    assert res["slow_rate_fit"] > 0.1


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--frustration", "0.5"], "[0, 0.5)"),
        (["--frustration", "-0.1"], "[0, 0.5)"),
        (["--stop-gradient"], "--variant projection"),
        (["--variant", "linear"], "invalid choice"),
        (["--samples", "41"], "even"),
    ],
)
def test_cli_teacher_student_errors(capsys, argv, msg):
    code = main(["teacher-student", "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and json.loads(out) == {"error": err.strip().split("error: ", 1)[1]}
    assert msg in err and len(err.strip().splitlines()) == 1


def test_minibatch_training():
    """Full-size batches reproduce GD exactly; small batches give unbiased gradients."""
    data, state = _small_problem(f=0.1, seed=2)
    loss = cj.teacher_student_loss
    P = SMALL["n_samples"]
    key = jax.random.PRNGKey(7)
    _, full = cj.train(loss, state, data.moments(), optax.sgd(0.05), steps=40, save_every=10)
    _, perm = cj.train(
        loss,
        state,
        None,
        optax.sgd(0.05),
        steps=40,
        save_every=10,
        sample_args=lambda k: data.batch_moments(k, P),
        key=key,
    )
    np.testing.assert_allclose(_np(perm.U), _np(full.U), rtol=1e-11, atol=1e-13)
    grad = jax.grad(cj.training_loss(loss))
    keys = jax.random.split(key, 4000)
    g = jax.jit(jax.vmap(lambda k: grad(state, data.batch_moments(k, 8)).y))(keys)
    g = _np(g)
    mean, sem = g.mean(0), g.std(0) / np.sqrt(len(keys))
    full_g = _np(grad(state, data.moments()).y)
    assert np.all(np.abs(mean - full_g) < 5 * sem + 1e-12)
    assert np.all(g.std(0) > 1e-3)  # and they are noisy
