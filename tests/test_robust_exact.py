"""Robustness of the exact path, of the metrics on non-finite states, and of the flags around
them: each test reproduces one defect (the command lines are the reported ones)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import collapse_jax as cj
from collapse_jax.cli import main


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- the exact path at long horizons ------------------------------------------------------


def _rows_jacobian(data):
    """The row-space Jacobian of the embedding flow, built here from the data alone.

    `dx_i = sum_c A_ic (y_c - x_i)`, `dy_c = sum_i A_ic (x_i - y_c)`: minus the Laplacian of
    the weighted sample-label graph (symmetric, negative semi-definite).
    """
    K, n = data.n_classes, data.per_class
    mask = np.asarray(data.shared_mask, dtype=np.float64)
    w = float(data.shared_weight)
    A = np.concatenate([np.repeat(np.eye(K), n, axis=0), w * mask[:, None] * np.ones((1, K))])
    J = np.block([[-np.diag(A.sum(axis=1)), A], [A.T, -np.diag(A.sum(axis=0))]])
    assert np.array_equal(J, J.T)
    return J


def _eigen_propagator(J, t):
    """`expm(J t)` from the eigen-decomposition of the symmetric `J`: exponents clamped at 0,
    the zero modes (`|lambda| < 1e-9`) kept exactly; at large `t` the projection on them."""
    lam, V = np.linalg.eigh(J)
    lam = np.where(np.abs(lam) < 1e-9, 0.0, np.minimum(lam, 0.0))
    return (V * np.exp(lam * t)) @ V.T


def _zero_mode_limit(data, z0):
    """`t -> inf`: every connected component of the graph at the mean of its rows."""
    K, n = data.n_classes, data.per_class
    mask = np.asarray(data.shared_mask) > 0
    x, y = np.asarray(z0.x), np.asarray(z0.y)
    out_x, out_y = x.copy(), y.copy()
    clean = x[: K * n].reshape(K, n, -1)
    shared = x[K * n :]
    if mask.any() and float(data.shared_weight) > 0:  # one component
        g = (clean.sum(axis=(0, 1)) + y.sum(axis=0) + shared[mask].sum(axis=0)) / (
            K * n + K + mask.sum()
        )
        out_x[: K * n] = g
        out_x[K * n :][mask] = g
        out_y[:] = g
    else:  # a component per class; shared rows stay
        g = (clean.sum(axis=1) + y) / (n + 1)
        out_x[: K * n] = np.repeat(g, n, axis=0)
        out_y[:] = g
    return out_x, out_y


CASES = [  # (classes, per_class, frustration, rule, max_shared)
    (3, 10, 0.2, "round", None),  # the reported sweep's second ratio: 8 shared rows
    (3, 10, 0.0, "round", 8),  # no active shared rows, 8 inactive ones
    (3, 2, 0.0, "round", 3),  # m = 0 with n + 1 = K w: a double root of sector III
    (2, 5, 0.3, "spread", 7),  # fractional weight on every shared row
    (4, 3, 0.6, "round", 20),  # 18 of 20 shared rows active
]


def _case(K, n, phi, rule, max_shared, dim=3, seed=1):
    M = cj.shared_from_frustration(K, n, phi)
    rows = int(np.ceil(M)) if max_shared is None else max_shared
    data = cj.frustration_data(K, n, phi, max_shared=rows, rule=rule)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(seed), data.n_samples, K, dim)
    return data, z0


@pytest.mark.parametrize("case", CASES)
def test_exact_solution_long_horizons(case):
    """``exact_solution`` against ``expm`` of the row Jacobian: scipy's at moderate `t`, the
    eigen-decomposition at `t = 1e3, 1e5, 1e8`, and the zero-mode projection at large `t`
    (it overflowed from `t ~ 5e4` and returned NaN)."""
    data, z0 = _case(*case)
    J = _rows_jacobian(data)
    z = np.concatenate([np.asarray(z0.x), np.asarray(z0.y)])
    ts = np.array([0.0, 0.7, 30.0, 1e3, 1e5, 1e8])
    sol = cj.exact_solution(z0, data, jnp.asarray(ts))
    got = np.concatenate([np.asarray(sol.x), np.asarray(sol.y)], axis=1)
    assert np.all(np.isfinite(got))
    scale = np.abs(z).max()
    for i, t in enumerate(ts):
        ref = _eigen_propagator(J, t) @ z
        np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-12 * scale, err_msg=f"t={t}")
        if t <= 1e3:  # scipy's scaling and squaring is safe here
            ref = scipy.linalg.expm(J * t) @ z
            np.testing.assert_allclose(got[i], ref, rtol=0, atol=1e-11 * scale, err_msg=f"t={t}")
    lx, ly = _zero_mode_limit(data, z0)
    np.testing.assert_allclose(np.asarray(sol.x[-1]), lx, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(np.asarray(sol.y[-1]), ly, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("case", CASES)
def test_exact_path_finite_up_to_1e300(case):
    """State, MinL2 and class distances finite for `t` up to `1e300`, at the zero-mode limit."""
    data, z0 = _case(*case)
    ts = jnp.asarray([0.0, 5e4, 1e6, 1e20, 1e100, 1e300])
    sol = cj.exact_solution(z0, data, ts)
    assert np.all(np.isfinite(np.asarray(sol.x))) and np.all(np.isfinite(np.asarray(sol.y)))
    assert np.all(np.isfinite(np.asarray(cj.exact_min_l2(z0, data, ts))))
    assert np.all(np.isfinite(np.asarray(cj.exact_class_distances(z0, data, ts))))
    lx, ly = _zero_mode_limit(data, z0)
    scale = np.abs(np.asarray(z0.x)).max()
    np.testing.assert_allclose(np.asarray(sol.x[-1]), lx, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(np.asarray(sol.y[-1]), ly, rtol=0, atol=1e-12 * scale)


def test_cli_sweep_long_horizon(capsys, tmp_path):
    """``sweep --frustration 0:0.2:2 --seeds 1 --t1 1e6 --points 20``: it reported accuracy
    ``[0, 0]`` (a NaN state scored as 0) with ``failed_members 0``."""
    out_dir = tmp_path / "sw"
    argv = "sweep --frustration 0:0.2:2 --seeds 1 --t1 1e6 --points 20 --json".split()
    code = main([*argv, "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    assert res["failed_members"] == 0
    assert all(v is not None and np.isfinite(v) for v in res["final_min_l2"])
    # phi = 0: no collapse, every clean sample nearest its own label
    assert res["final_min_l2"][0] > 0.1 and res["final_accuracy"][0] == 1.0
    # phi = 0.2: MinL2 has decayed as e^{-0.43 t} to exactly 0, the round-off floor: null
    assert res["final_min_l2"][1] == 0.0 and res["final_accuracy"][1] is None
    saved = cj.load_sweep(out_dir / "sweep.npz")
    assert np.all(np.isfinite(saved.min_l2))
    assert np.all(np.isfinite(saved.accuracy[0]))


# --- metrics never score a non-finite state ------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_metrics_of_non_finite_states_are_nan(bad):
    y = jnp.asarray([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    p = jnp.repeat(y, 2, axis=0)
    acc, acc_all = cj.nearest_label_accuracy(p, y, 2, 1)
    assert float(acc) == 1.0 and float(acc_all) == pytest.approx(6 / 7)
    assert float(cj.min_l2(y)) == 3.0
    y_bad = y.at[2, 1].set(bad)  # the other two labels are still 3 apart
    assert np.isnan(float(cj.min_l2(y_bad)))
    for args in ((p, y_bad), (p.at[4, 0].set(bad), y)):
        acc, acc_all = cj.nearest_label_accuracy(*args, 2, 1)
        assert np.isnan(float(acc)) and np.isnan(float(acc_all))
    metrics = cj.embedding_metrics(
        cj.EmbeddingState(jnp.full((9, 2), jnp.nan), y), cj.standard_data(3, 2, 3)
    )
    # MinL2 is of the labels alone (finite here); the accuracies score the samples too
    assert float(metrics["min_l2"]) == 3.0
    assert np.isnan(float(metrics["accuracy"])) and np.isnan(float(metrics["accuracy_all"]))


def test_sweep_counts_non_finite_members_as_failed(monkeypatch):
    """A member whose state is not finite is a failed member (result ``nonfinite``), not a
    success with accuracy 0."""
    import diffrax

    from collapse_jax._models import embedding

    real = embedding.exact_solution

    def diverging(state0, data, ts):
        sol = real(state0, data, ts)
        return cj.EmbeddingState(sol.x.at[-1, 0, 0].set(jnp.inf), sol.y)

    monkeypatch.setattr(embedding, "exact_solution", diverging)
    res = cj.embedding_sweep([0.0, 0.2], 2, per_class=3, dim=2, ts=jnp.asarray([0.1, 1.0]))
    nonfinite = int(diffrax.RESULTS.nonfinite._value)
    assert np.all(res.result == nonfinite)
    assert cj.sweep_summary(res)["failed_members"] == 4
    assert np.all(np.isnan(res.accuracy[..., -1])) and np.all(np.isfinite(res.accuracy[..., 0]))


# --- flags and messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: cj.embedding_sweep([-0.1], 1),
        lambda: cj.embedding_sweep([-0.1], 1, max_shared=-1),
        lambda: cj.embedding_sweep([0.2, -0.1], 1, rule="spread"),
        lambda: cj.frustration_data(3, 10, -0.1, max_shared=-3),
    ],
)
def test_negative_frustration_is_named(call):
    """A ratio below 0 is reported as the frustration it is (not as a ``max_shared``)."""
    with pytest.raises(ValueError, match=r"frustration must lie in \[0, 1\), got -0\.1"):
        call()


def test_cli_frustration_count_one(capsys):
    """``--frustration 0:0.5:1`` said "COUNT must be >= 1" of a COUNT of 1; COUNT 1 is one
    ratio, so START must equal STOP."""
    from collapse_jax.cli._common import _frustration_range

    line = _one_line_error(
        capsys, ["sweep", "--frustration", "0:0.5:1", "--json"], "--frustration", "0:0.5:1"
    )
    assert "COUNT 1" in line and "START equal to STOP" in line and ">= 1" not in line
    np.testing.assert_array_equal(_frustration_range("0.2:0.2:1"), [0.2])
    _one_line_error(capsys, ["sweep", "--frustration", "0:0.5:0"], "COUNT must be >= 1")


def test_cli_sweep_method_integrate_needs_embedding(capsys, tmp_path):
    """``--method`` was silently ignored for projection sweeps."""
    out_dir = tmp_path / "never"
    argv = ["sweep", "--model", "projection", "--method", "integrate", "--out", str(out_dir)]
    _one_line_error(capsys, argv, "--method integrate", "--path")
    assert not out_dir.exists()


# --- teacher-student --figure ---------------------------------------------------------------


def _check_teacher_student_figure(res, fig):
    t = np.asarray(res["t"])
    a, b, c, d = fig.axes
    (ml,) = a.get_lines()
    np.testing.assert_allclose(ml.get_xydata(), np.c_[t, res["min_l2"]], rtol=1e-12)
    lam = res["slow_rate_hessian"]
    curve = [ln for ln in b.get_lines() if "slope -1" not in ln.get_label()]
    assert len(curve) == 1
    m = np.asarray(res["min_l2"])
    np.testing.assert_allclose(
        curve[0].get_xydata(), np.c_[t * lam, np.log(m / m[0])], rtol=1e-12, atol=1e-12
    )
    acc = np.asarray([np.nan if v is None else v for v in res["accuracy"]])
    np.testing.assert_allclose(c.get_lines()[0].get_xydata(), np.c_[t, acc], rtol=1e-12)
    np.testing.assert_allclose(d.get_lines()[0].get_xydata(), np.c_[t, res["loss"]], rtol=1e-12)


def test_cli_teacher_student_figure_plain(capsys, tmp_path, monkeypatch):
    """``teacher-student --frustration 0.1 --figure ts.png`` (plain variant; a small, short run
    here, the reported sizes below): the figure holds this run's MinL2, Hessian-rescaled time,
    accuracy and loss, as in the JSON."""
    from helpers import capture_figures

    saved = capture_figures(monkeypatch)
    path = tmp_path / "ts.png"
    argv = ["teacher-student", "--frustration", "0.1", "--figure", str(path), "--json"]
    small = ["--input-dim", "8", "--samples", "20", "--student-dim", "2"]
    code = main([*argv, *small, "--t1", "20", "--points", "12"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    assert res["variant"] == "plain" and res["figure"] == str(path) and path.stat().st_size
    (fig, written), *rest = saved
    assert written == str(path) and not rest
    _check_teacher_student_figure(res, fig)


@pytest.mark.slow
def test_cli_teacher_student_figure_reported_command(capsys, tmp_path, monkeypatch):
    """The reported command as it stands (`t1 = 400`, 100 points, ~20 s)."""
    from helpers import capture_figures

    saved = capture_figures(monkeypatch)
    path = tmp_path / "ts.png"
    code = main(["teacher-student", "--frustration", "0.1", "--figure", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    assert res["figure"] == str(path) and path.stat().st_size
    ((fig, _),) = saved
    _check_teacher_student_figure(res, fig)
