"""The projection section of ``reproduce`` at a small size: its numpy references, every
verification it makes, and the data its two figures plot.

One small run (K=3, n=4, M=2, d=4, seed 1: the shapes of ``test_projection.py``) is shared by
the tests below.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import min_l2_reference, projection_field_reference

import collapse_jax as cj
from collapse_jax import reproduce as rp

SMALL = rp.ReproduceConfig(
    classes=3,
    per_class=4,
    shared=2,
    dim=4,
    points=30,
    projection_t1=300.0,
    projection_reference_t1=300.0,
)


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    out = tmp_path_factory.mktemp("projection")
    return out, rp._projection(SMALL, out, lambda *_: None, {})


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_numpy_field_equals_pair_loop_and_library(stop_gradient):
    rng = np.random.default_rng(3)
    A = rng.uniform(0, 1.5, size=(6, 3)) * (rng.uniform(size=(6, 3)) > 0.3)
    x, y, W = rng.normal(size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=(4, 4))
    got = rp._np_projection_field(x, y, W, A, stop_gradient)
    ref = projection_field_reference(x, y, W, A, stop_gradient=stop_gradient)
    z = cj.ProjectionState(jnp.asarray(x), jnp.asarray(y), jnp.asarray(W))
    lib = cj.vector_field(cj.projection_loss, stop_gradient=stop_gradient)(0.0, z, jnp.asarray(A))
    for g, r, f in zip(got, ref, lib, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-12)  # measured ~1e-14
        np.testing.assert_allclose(g, np.asarray(f), atol=1e-12)


def test_projector_form_of_omega_equals_the_inverse_form_and_obeys_the_bound():
    rng = np.random.default_rng(0)
    for n, M in ((10, 2), (4, 0), (3, 5)):
        W = rng.normal(size=(5, 5)) * rng.uniform(0.1, 3.0)
        om = rp._np_omega(W, n, M)
        np.testing.assert_allclose(om, cj.omega(W, n, M), atol=1e-12)
        ev = np.linalg.eigvalsh(om)
        assert ev.min() > -1e-12 and ev.max() < n / (n + M) + 1e-12


def test_collapsed_tangent_has_rank_d_squared_and_is_tangent():
    rng = np.random.default_rng(1)
    d, N, K = 4, 5, 3
    u, Z = rng.normal(size=d), rng.normal(size=(d, d))
    P = np.outer(u, u) / (u @ u)
    W = P + Z @ (np.eye(d) - P)  # W u = u
    T = rp._collapsed_tangent(u, W, N, K)
    s = np.linalg.svd(T, compute_uv=False)
    assert int(np.sum(s > 1e-10 * s[0])) == d * d
    # along each tangent vector W u = u still holds to first order: d(W u - u) = 0
    for col in T.T:
        du = col[:d]
        dW = col[(N + K) * d :].reshape(d, d)
        np.testing.assert_allclose(dW @ u + W @ du - du, 0.0, atol=1e-12)


def test_every_check_passes_and_states_its_basis(section):
    out, sec = section
    assert sec.checks and all(c.passed for c in sec.checks), [
        (c.what, c.measured, c.error) for c in sec.checks if not c.passed
    ]
    assert all(len(c.basis) > 20 for c in sec.checks)
    by = {c.what: c for c in sec.checks}
    zero = next(c for w, c in by.items() if w.startswith("P1 uniqueness: zero modes"))
    assert zero.measured == zero.reference == SMALL.dim**2
    assert any(w.startswith("reduced path (lifted") for w in by)
    nb = sec.numbers
    assert nb["reduced_vs_scipy"]["stop_gradient"]["status"] == 0
    # the collapsed fixed point: the bound n/(n+M) attained (top of the numpy spectrum)
    bound = SMALL.per_class / (SMALL.per_class + SMALL.shared)
    assert nb["collapsed_omega_eigenvalues"][-1] == pytest.approx(bound, abs=1e-12)
    for f in sec.figures:
        assert (out / f.split("/")[-1]).stat().st_size > 10_000


def _finite(a):
    a = np.asarray(a, dtype=float)
    return a[np.isfinite(a)]


def test_dynamics_figure_plots_the_numbers(section):
    _, sec = section
    nb = sec.numbers
    t = np.asarray(nb["t"])
    tr = nb["trajectories"]
    bound = nb["bias_eigenvalue_predicted"]
    fig = rp._fig_projection_dynamics(nb)
    axes = fig.axes
    assert len(axes) == 4
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel()
    ax_ml, ax_acc, ax_w, ax_om = axes
    # (a) MinL2 of both runs (zeros dropped on the log axis) and the round-off floor
    ys = [line.get_xydata() for line in ax_ml.get_lines()]
    for name in ("conservative", "stop_gradient"):
        ml = np.asarray(tr[name]["min_l2"])
        want = np.where(ml > 0, ml, np.nan)
        assert any(
            xy.shape == (t.size, 2)
            and np.allclose(xy[:, 0], t)
            and np.allclose(xy[:, 1], want, equal_nan=True)
            for xy in ys
        ), name
    floors = [xy[0, 1] for xy in ys if xy.shape[0] == 2 and xy[0, 1] == xy[1, 1]]
    assert tr["conservative"]["roundoff_floor"] in floors
    # (b) accuracies in [0, 1]
    for line in ax_acc.get_lines():
        v = _finite(line.get_ydata())
        assert v.size and v.min() >= 0.0 and v.max() <= 1.0
    # (c) one curve per |eig W| column of the stop-gradient run, and the levels n/(n+M), 1
    w = np.asarray(tr["stop_gradient"]["w_eigenvalues_abs"])
    curves = [ln.get_xydata() for ln in ax_w.get_lines() if ln.get_xydata().shape[0] == t.size]
    assert len(curves) == w.shape[1]
    for j, xy in enumerate(curves):
        np.testing.assert_allclose(xy[:, 1], w[:, j])
    levels = {
        round(float(ln.get_ydata()[0]), 12) for ln in ax_w.get_lines() if len(ln.get_ydata()) == 2
    }
    assert {round(bound, 12), 1.0} <= levels
    # (d) max eig Omega of both runs, below the bound line
    om = [ln.get_xydata() for ln in ax_om.get_lines() if ln.get_xydata().shape[0] == t.size]
    assert len(om) == 2
    for xy in om:
        assert np.all(np.isfinite(xy)) and xy[:, 1].max() <= bound + 1e-12
    assert any(
        len(ln.get_ydata()) == 2 and ln.get_ydata()[0] == pytest.approx(bound)
        for ln in ax_om.get_lines()
    )


def test_fixed_point_figure_plots_the_numbers(section):
    _, sec = section
    nb = sec.numbers
    fps = nb["fixed_points"]
    fig = rp._fig_projection_fixed_points(nb)
    ax_j, ax_w = fig.axes
    for ax in (ax_j, ax_w):
        assert ax.get_xlabel() and ax.get_ylabel()
    spectra = [ln.get_ydata() for ln in ax_j.get_lines() if len(ln.get_ydata()) > 2]
    assert len(spectra) == 2
    for k, got in zip(("stop_gradient", "conservative"), spectra, strict=True):
        np.testing.assert_allclose(got, np.sort(fps[k]["jacobian_real"]))
        assert got.max() <= 1e-7  # nothing above the growth tolerance line
    assert any(np.allclose(ln.get_ydata(), 1e-7) for ln in ax_j.get_lines())
    d = SMALL.dim
    marks = [ln.get_ydata() for ln in ax_w.get_lines() if len(ln.get_ydata()) == d]
    assert len(marks) == 3
    for k, got in zip(("stop_gradient", "conservative", "conservative_m0"), marks, strict=True):
        np.testing.assert_allclose(got, fps[k]["w_eigenvalues_abs"])
    assert math.isfinite(float(np.max([np.max(m) for m in marks])))


def test_plateau_caption_reads_the_curve():
    t = np.geomspace(1e-2, 1e3, 200)
    bound = 10 / 12
    w = np.stack(
        [
            np.zeros_like(t),
            np.where(t < 150.0, 0.02, bound),
            np.full_like(t, bound),
            np.ones_like(t),
        ],
        axis=1,
    )
    text = rp._plateau(t, w, bound, 1)
    k = int(np.searchsorted(t, 150.0))
    assert "0.02" in text and f"{t[k]:.3g}" in text
    # no plateau (the eigenvalue rises early) -> no sentence
    w[:, 1] = np.where(t < 2.0, 0.02, bound)
    assert rp._plateau(t, w, bound, 1) == ""


def test_reduced_trajectory_against_scipy_at_another_seed():
    """The comparison the section makes, at another start: lifted reduced path vs LSODA."""
    data = cj.standard_data(3, 4, 2)
    z = cj.init_projection_state(jax.random.PRNGKey(5), data.n_samples, 3, 4)
    ts = cj.log_times(1e-2, 50.0, SMALL.points)  # the section's shape: one compile
    run, _ = rp._projection_run(data, z, ts, True)
    ref, _, status = rp._scipy_projection_path(z, data.matrix(), np.asarray(ts), True)
    red = np.concatenate([np.asarray(a).reshape(len(ts), -1) for a in run.states], axis=1)
    assert status == 0
    err = np.max(np.abs(red - ref), axis=1) / np.max(np.abs(ref), axis=1)
    assert err.max() < 3e-9  # measured 2.5e-10
    assert min_l2_reference(np.asarray(run.states.y[-1])) > 0
