"""Linear teacher-student model (MODEL.md §4, issue 6).

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
from collapse_jax.cli import main
from collapse_jax.teacher_student import (
    TeacherStudentConfig,
    run_teacher_student,
    teacher_student_member,
)

SMALL = dict(dim=12, n_samples=40)


def _np(a):
    return np.asarray(a, dtype=np.float64)


def _small_problem(f=0.1, seed=3, projection=False, p=3):
    kd, ks = jax.random.split(jax.random.PRNGKey(seed))
    data = cj.teacher_student_data(kd, f, **SMALL)
    state = cj.init_teacher_student_state(ks, SMALL["dim"], p, projection=projection)
    return data, state


def _reference_fields(state, data, stop_gradient):
    """-grad of the losses by explicit per-sample sums (numpy), MODEL.md §3-§4."""
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
    assert cj.asymmetry_norm(J) > 1e-2 * np.linalg.norm(J)  # not a gradient (MODEL.md §3)
    # the naive construction (jacfwd of grad with lax.stop_gradient) is wrong: the trap
    value = cj.training_loss(loss, stop_gradient=True)
    flat, unravel = jax.flatten_util.ravel_pytree(state)
    naive = jax.jacfwd(
        lambda v: -jax.flatten_util.ravel_pytree(jax.grad(value)(unravel(v), args))[0]
    )(flat)
    assert np.max(np.abs(_np(naive) - J_fd)) > 1e-3


# --- trajectories (defaults of MODEL.md §4) ---------------------------------------------

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
        assert abs(fit / ref - 1) < 0.02, (f, fit, ref)
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


def test_projection_stop_gradient_keeps_separation_fast():
    r = run_teacher_student(0.1, 0, TeacherStudentConfig("projection", True), t1=300.0, points=30)
    assert r["result"] == 0
    assert 0.5 < r["final_min_l2"] < 10 and not np.isfinite(r["slow_rate_fit"])
    assert abs(r["final_accuracy"] - r["accuracy_reference"]) < 0.05


@pytest.mark.slow
def test_projection_stop_gradient_keeps_separation_sweep():
    cfg = TeacherStudentConfig("projection", True)
    ts = cj.log_times(1.0, 2000.0, 20)
    for seed in (0, 1):
        member = jax.jit(
            jax.vmap(lambda f, s=seed: teacher_student_member(f, jax.random.PRNGKey(s), ts, cfg))
        )
        out = member(jnp.asarray(FS))
        m, acc = _np(out["min_l2"]), _np(out["accuracy"])
        assert np.all(_np(out["result"]) == 0)
        assert np.all(m[:, -1] > 0.3)
        np.testing.assert_allclose(m[:, -1], m[:, -3], rtol=1e-4)  # settled, not decaying
        assert np.all(np.abs(acc[:, -1] - (1 - FS)) < 0.05), (seed, acc[:, -1])


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


def test_cli_projection_without_stop_gradient_collapses(capsys):
    """CLI JSON contract, and MinL2 -> 0 for the projection model without stop-gradient."""
    argv = ["teacher-student", "--json", "--variant", "projection", "--frustration", "0.1"]
    code = main([*argv, "--points", "30", "--t1", "300"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
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
    assert code == 2 and out == ""
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
