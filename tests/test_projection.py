"""Projection head and stop-gradient (docs/theory.md §3): fields, Jacobians, P1-P3.

Sizes are small on purpose (docs/theory.md §6: the `W` block relaxes at a rate set by the total
sample weight); one configuration (K=3, n=4, M=2, d=4) is shared by most tests so that its
compiled solves are reused.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import alignment_reference, min_l2_reference, projection_field_reference
from jax.flatten_util import ravel_pytree

import collapse_jax as cj

K, N_PER, M_SH, D = 3, 4, 2, 4
BOUND = N_PER / (N_PER + M_SH)


def _state(K, n, M, d, seed=0, data=None):
    data = cj.standard_data(K, n, M) if data is None else data
    return data, cj.init_projection_state(jax.random.PRNGKey(seed), data.n_samples, K, d)


@pytest.fixture(scope="module")
def sg_fixed_point():
    data, z0 = _state(K, N_PER, M_SH, D, seed=1)
    return data, cj.projection_fixed_point(data, z0, stop_gradient=True)


@pytest.fixture(scope="module")
def conservative_fixed_point():
    data, z0 = _state(K, N_PER, M_SH, D, seed=1)
    return data, cj.projection_fixed_point(data, z0, stop_gradient=False)


def test_init_shares_embeddings_with_embedding_model_and_w_near_identity():
    z = cj.init_projection_state(jax.random.PRNGKey(3), 7, 3, 5)
    e = cj.init_embedding_state(jax.random.PRNGKey(3), 7, 3, 5)
    np.testing.assert_array_equal(np.asarray(z.x), np.asarray(e.x))
    np.testing.assert_array_equal(np.asarray(z.y), np.asarray(e.y))
    noise = (np.asarray(z.W) - np.eye(5)) / 0.1
    assert z.W.shape == (5, 5) and 0.3 < noise.std() < 3.0


@pytest.mark.parametrize("d", [1, 3, 6])
def test_projection_loss_equals_pair_loop_for_any_alignment(d):
    rng = np.random.default_rng(d)
    A = rng.uniform(0, 2, size=(5, 3)) * (rng.uniform(size=(5, 3)) > 0.3)
    x, y, W = rng.normal(size=(5, d)), rng.normal(size=(3, d)), rng.normal(size=(d, d))
    z = cj.ProjectionState(jnp.asarray(x), jnp.asarray(y), jnp.asarray(W))
    ref = 0.5 * sum(
        A[i, c] * (np.sum((W @ x[i] - y[c]) ** 2) + np.sum((y[c] - x[i]) ** 2))
        for i in range(5)
        for c in range(3)
    )
    np.testing.assert_allclose(float(cj.projection_loss(z, z, jnp.asarray(A))), ref, rtol=1e-13)


@pytest.mark.parametrize("stop_gradient", [False, True])
@pytest.mark.parametrize("case", ["standard", "random_A"])
def test_projection_fields_equal_loop_reference(stop_gradient, case):
    if case == "standard":
        A = alignment_reference(3, 3, 2)
        d = 4
    else:  # any alignment matrix, any dimension
        rng = np.random.default_rng(7)
        A = rng.uniform(0, 1.5, size=(6, 4))
        d = 2
    z = cj.init_projection_state(jax.random.PRNGKey(2), A.shape[0], A.shape[1], d)
    F = cj.vector_field(cj.projection_loss, stop_gradient=stop_gradient)(0.0, z, jnp.asarray(A))
    ref = projection_field_reference(z.x, z.y, z.W, A, stop_gradient=stop_gradient)
    for got, want in zip((F.x, F.y, F.W), ref, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-12 * max(1, np.abs(want).max()))


def _jacobians(field, z, A):
    J = cj.jacobian(field, z, A)
    J_fd = cj.finite_difference_jacobian(field, z, A)
    return J, J_fd


def _rel_error(J, J_fd):
    return np.abs(J - J_fd).max() / np.abs(J).max()


def test_jacobians_at_random_states_match_finite_differences_and_naive_one_does_not():
    data, z = _state(K, N_PER, M_SH, D, seed=4)  # the fixture's shapes: compiled once
    A = data.matrix()
    cons = cj.vector_field(cj.projection_loss)
    sg = cj.vector_field(cj.projection_loss, stop_gradient=True)
    J_c, J_c_fd = _jacobians(cons, z, A)
    J_s, J_s_fd = _jacobians(sg, z, A)
    assert _rel_error(J_c, J_c_fd) < 1e-6
    assert _rel_error(J_s, J_s_fd) < 1e-6
    # conservative: minus a Hessian, symmetric to round-off; stop-gradient: far from it
    assert cj.asymmetry_norm(J_c) < 1e-13 * np.linalg.norm(J_c)
    assert cj.asymmetry_norm(J_s) > 1e-2 * np.linalg.norm(J_s)
    assert cj.is_symmetric(J_c) and not cj.is_symmetric(J_s)
    # docs/theory.md §3 trap: jacfwd of -grad[L(z, stop_gradient(z))] drops the held copy's motion
    flat, unravel = ravel_pytree(z)
    grad = jax.grad(cj.training_loss(cj.projection_loss, stop_gradient=True))
    naive = np.asarray(jax.jacfwd(lambda v: -ravel_pytree(grad(unravel(v), A))[0])(flat))
    np.testing.assert_allclose(-ravel_pytree(grad(z, A))[0], ravel_pytree(sg(0, z, A))[0])
    assert _rel_error(naive, J_s_fd) > 1e-1  # wrong, not round-off
    assert np.abs(naive - J_s_fd).max() > 1e6 * np.abs(J_s - J_s_fd).max()


@pytest.mark.parametrize("which", ["sg", "conservative"])
def test_jacobians_at_fixed_points_match_finite_differences(
    which, sg_fixed_point, conservative_fixed_point
):
    data, out = sg_fixed_point if which == "sg" else conservative_fixed_point
    st = out["steady"]
    field = cj.vector_field(cj.projection_loss, stop_gradient=which == "sg")
    J_fd = cj.finite_difference_jacobian(field, st.state, data.matrix())
    assert _rel_error(st.jacobian, J_fd) < 1e-6
    if which == "sg":
        assert cj.asymmetry_norm(st.jacobian) > 1.0  # measured ~42
    else:
        assert cj.asymmetry_norm(st.jacobian) < 1e-13 * np.linalg.norm(st.jacobian)


# --- P1: without stop-gradient, frustration forces complete collapse ---------------------


@pytest.mark.parametrize("M", [2, 0])
def test_p1_conservative_collapse_and_omega_bound(M):
    n = N_PER
    # max_shared=2 for both M: one shape, one compile
    data, z0 = _state(K, n, M, D, seed=0, data=cj.standard_data(K, n, M, max_shared=2))
    ts = cj.log_times(1e-2, 1e3, 40)
    sol = cj.simulate(cj.vector_field(cj.projection_loss), z0, data.matrix(), ts=ts)
    assert sol.result == diffrax.RESULTS.successful
    ml = np.array([min_l2_reference(y) for y in np.asarray(sol.ys.y)])
    if M > 0:
        assert ml[-1] < 1e-6 * ml[0]
    else:
        # finite separation, settled (measured: 2.63 -> 0.18746 by t = 1e3, flat after)
        assert ml[-1] > 0.05 * ml[0]
        late = ml[ts > 500]
        assert late.size >= 3 and np.ptp(late) < 1e-6 * late[-1]
    bound = n / (n + M)
    for W in np.asarray(sol.ys.W):
        om = cj.omega(W, n, M)
        # independent: the projector form [I I] P_G [I; I] (docs/theory.md §3)
        G = np.vstack([np.eye(D), W])
        P = G @ np.linalg.solve(G.T @ G, G.T)
        II = np.hstack([np.eye(D), np.eye(D)])
        np.testing.assert_allclose(om, bound / 2 * II @ P @ II.T, atol=1e-12)
        ev = np.linalg.eigvalsh(om)
        assert ev.min() > -1e-12 and ev.max() < bound + 1e-12


def _omega_projector(W, n, M):
    """`Omega` from its projector form `n/(2(n+M)) [I I] Q Q^T [I; I]`, `Q` from a QR of
    `[I; W]` (independent of the library's inverse formula)."""
    d = W.shape[0]
    Q, _ = np.linalg.qr(np.vstack([np.eye(d), W]))
    P = np.hstack([np.eye(d), np.eye(d)]) @ Q
    return n / (2 * (n + M)) * P @ P.T


def test_p1_conservative_fixed_point_is_collapsed(conservative_fixed_point):
    data, out = conservative_fixed_point
    assert out["status"] == "fixed-point" and out["branch"] == "collapsed"
    assert out["min_l2"] < 1e-8
    # The fixed-point equations force every x_i and y_c onto one point u with W u = u
    # (the y-equation averaged over classes: (I+W) B u = 2u, the top of [I I] P_G [I; I]),
    # hence Omega u = n/(n+M) u: the bound is attained, on u, not on a bias direction.
    z = out["steady"].state
    x, y, W = (np.asarray(a) for a in z)
    u = y.mean(axis=0)
    assert np.linalg.norm(u) > 0.1  # measured 0.26: the u != 0 component of the set
    np.testing.assert_allclose(x, np.broadcast_to(u, x.shape), atol=1e-12)  # measured 1e-16
    np.testing.assert_allclose(y, np.broadcast_to(u, y.shape), atol=1e-12)
    np.testing.assert_allclose(W @ u, u, atol=1e-12)  # measured 1e-16
    ev, V = np.linalg.eigh(_omega_projector(W, N_PER, M_SH))
    assert ev[-1] == pytest.approx(BOUND, abs=1e-12)  # attained (measured 1e-16)
    assert ev[-2] < BOUND - 1e-3  # simple: the eigenvector is determined
    uhat = u / np.linalg.norm(u)
    assert np.linalg.norm(V[:, -1] - (V[:, -1] @ uhat) * uhat) < 1e-10  # measured ~1e-15
    assert out["omega_max_eigenvalue"] == pytest.approx(ev[-1], abs=1e-12)


def test_p1_m0_bound_one_attained_on_the_label_bias_directions():
    # M = 0 (the shared rows of the fixture's shape switched off): (I - Omega) dy_c = 0 with
    # dy_c != 0, so eigenvalue 1 of Omega is reached and its eigenspace holds the bias span
    data, z0 = _state(K, N_PER, 0, D, seed=1, data=cj.standard_data(K, N_PER, 0, max_shared=M_SH))
    out = cj.projection_fixed_point(data, z0, stop_gradient=False)
    assert out["status"] == "fixed-point" and out["branch"] != "collapsed"
    _, y, W = (np.asarray(a) for a in out["steady"].state)
    dy = y - y.mean(axis=0)
    assert min_l2_reference(y) > 1e-2
    ev, V = np.linalg.eigh(_omega_projector(W, N_PER, 0))
    assert ev[-1] == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(dy @ _omega_projector(W, N_PER, 0).T, dy, atol=1e-10)
    E = V[:, ev > 1 - 1e-8]
    Ub, s, _ = np.linalg.svd(dy.T, full_matrices=False)
    Ub = Ub[:, s > 1e-8 * s[0]]
    assert np.linalg.norm(Ub - E @ (E.T @ Ub), 2) < 1e-8
    np.testing.assert_allclose(W @ dy.T, dy.T, atol=1e-10)  # the bias directions: W v = v


# --- P2: with stop-gradient, separation survives -----------------------------------------


def _check_separated(out, n, M, K):
    target = n / (n + M)
    span = np.sort(out["label_span_w_eigenvalues"])
    np.testing.assert_allclose(span, np.sort([1.0] + [target] * (K - 1)), atol=1e-6)
    np.testing.assert_allclose(out["label_span_w_eigenvalues_imag"], 0.0, atol=1e-6)
    assert out["label_span_leakage"] < 1e-6  # the label span is W-invariant
    assert out["min_l2"] > 1e-2  # finite separation
    assert all(s["sector"] == "separated" for s in out["bias_sectors"])


def _still(data, out, sg=True):
    """Independent check that a reported fixed point does not move: integrate it for t=50."""
    field = cj.vector_field(cj.projection_loss, stop_gradient=sg)
    z = out["steady"].state
    sol = cj.simulate(field, z, data.matrix(), ts=jnp.asarray([50.0]), rtol=1e-10, atol=1e-12)
    moved = ravel_pytree(jax.tree_util.tree_map(lambda a: a[-1], sol.ys))[0] - ravel_pytree(z)[0]
    return float(jnp.linalg.norm(moved))


def test_p2_separated_fixed_point_has_predicted_w_spectrum(sg_fixed_point):
    data, out = sg_fixed_point
    assert out["status"] == "fixed-point" and out["branch"] == "separated"
    _check_separated(out, N_PER, M_SH, K)
    assert out["residual_norm"] < 1e-13 and out["residual_norm"] <= out["residual_before_polish"]
    z = out["steady"].state  # independent residual: the numpy loop field
    ref = projection_field_reference(z.x, z.y, z.W, data.matrix(), stop_gradient=True)
    assert np.sqrt(sum(np.sum(r**2) for r in ref)) < 1e-12
    # directions no label occupies are driven to eigenvalue 0 of W (d - K of them)
    np.testing.assert_allclose(out["w_eigenvalues_abs"][: D - K], 0.0, atol=1e-8)


@pytest.mark.parametrize("K2,n,M,d,seeds", [(2, 5, 1, 3, (0, 1)), (3, 4, 2, 4, (0, 2))])
def test_p2_starts_are_classified_and_counted(K2, n, M, d, seeds):
    data = cj.standard_data(K2, n, M)
    # t_max = 3e3 (docs/theory.md's horizon): (3,4,2,4) seed 0 sits on a saddle plateau until
    # t ~ 6e4 (measured), so it must come back as a slow transient, not as a fixed point.
    res = cj.classify_starts(data, d, seeds, stop_gradient=True, t_max=3e3)
    assert sum(res["counts"].values()) == len(seeds)
    assert abs(sum(res["fractions"].values()) - 1) < 1e-12
    for run in res["runs"]:
        assert np.isfinite(run["min_l2"]) and run["min_l2"] > 1e-3
        if run["branch"] == "separated":
            _check_separated(run, n, M, K2)
        if run["status"] == "fixed-point":
            assert run["residual_norm"] < 1e-10 and run["jacobian_max_real"] < 1e-7
        else:  # not a fixed point: its residual or its spectrum says so
            assert run["residual_before_polish"] > 1e-8 or run["jacobian_max_real"] > 1e-7
    assert res["counts"]["separated"] >= 1
    if (K2, n, M, d) == (3, 4, 2, 4):
        plateau = res["runs"][0]
        assert plateau["branch"] == "slow-transient"
        assert plateau["residual_before_polish"] > 1e-8 and plateau["t_reached"] == 3e3


# --- P3: stability of the stop-gradient fixed point ----------------------------------------


def _rotation_generators(z):
    """Infinitesimal rotations `x -> x + eps x S^T`, `y` likewise, `W -> W + eps [S, W]`."""
    d = z.W.shape[0]
    out = []
    for a in range(d):
        for b in range(a + 1, d):
            S = np.zeros((d, d))
            S[a, b], S[b, a] = 1.0, -1.0
            g = cj.ProjectionState(z.x @ S.T, z.y @ S.T, S @ z.W - z.W @ S)
            out.append(np.asarray(ravel_pytree(g)[0]))
    return np.stack(out, axis=1)


def test_p3_sg_fixed_point_stable_with_counted_zero_modes(sg_fixed_point):
    data, out = sg_fixed_point
    st = out["steady"]
    assert out["jacobian_max_real"] < 1e-7
    ev = st.eigenvalues
    # a clean gap between zero modes and the rest (measured: 3e-15 vs 0.44)
    small = np.abs(ev) <= 1e-7
    assert out["zero_modes"] == small.sum() > 0
    assert np.abs(ev[~small]).min() > 1e-3
    # the rotation symmetry (both fields are equivariant) gives d(d-1)/2 of them
    R = _rotation_generators(st.state)
    assert np.linalg.norm(st.jacobian @ R) < 1e-9 * np.linalg.norm(R)
    assert np.linalg.matrix_rank(R) == D * (D - 1) // 2 <= out["zero_modes"]
    assert out["zero_modes"] == out["n_variables"] - np.linalg.matrix_rank(st.jacobian, tol=1e-7)
    # all of them are tangent to the manifold of fixed points, whose dimension is
    # d^2 + (N - d)(d - K) when W has rank K and the samples span R^d (derivation in
    # projection_fixed_point): 16 + 10 = 26 here
    N = data.n_samples
    assert out["zero_modes"] == out["zero_modes_predicted"] == D * D + (N - D) * (D - K) == 26


def test_spectrum_report_of_both_fields_at_the_sg_fixed_point(sg_fixed_point):
    data, out = sg_fixed_point
    rep = cj.projection_spectrum_report(out["steady"].state, data)
    sg, cons = rep["stop_gradient"], rep["conservative"]
    np.testing.assert_allclose(sg["real"], out["steady"].eigenvalues.real, atol=1e-12)
    assert sg["zero_modes"] == out["zero_modes"] and not sg["symmetric"]
    assert cons["symmetric"] and np.all(np.abs(cons["imag"]) == 0)
    # the sg fixed point is not a minimum of L_P: the conservative field is not zero there
    field = cj.vector_field(cj.projection_loss)
    assert cj.residual_norm(field, out["steady"].state, data.matrix()) > 1e-3
    # attained, not only bounded: W ybar = ybar at the sg fixed point (P2), and a W-fixed
    # vector v has Omega v = n/(n+M) v
    assert rep["omega_max_eigenvalue"] == pytest.approx(BOUND, abs=1e-12)
    assert [s["sector"] for s in rep["bias_sectors"]] == ["separated"] * (K - 1)


def test_conservative_fixed_point_zero_modes(conservative_fixed_point):
    # W is invertible at the collapsed fixed point: the manifold has dimension d^2
    data, out = conservative_fixed_point
    assert out["w_rank"] == D
    assert out["zero_modes"] == out["zero_modes_predicted"] == D * D
    assert out["jacobian_max_real"] < 1e-7  # minus a Hessian at a minimum


def test_collapsed_fixed_points_form_a_d_squared_set(conservative_fixed_point):
    """What "unique" means without stop-gradient: the collapsed fixed points are the set
    `x_i = y_c = u, W u = u` (L_P = 0), of dimension d + (d^2 - d) = d^2 by hand; the zero
    modes of the Jacobian are its tangent space, and its other points are fixed points with
    MinL2 = 0 (the same geometry)."""
    data, out = conservative_fixed_point
    st = out["steady"]
    x, y, W = (np.asarray(a) for a in st.state)
    N, u = x.shape[0], y.mean(axis=0)

    # tangent vectors by central differences of the hand parametrisation
    # (u, Z) -> (x_i = u, y_c = u, W = P_u + Z (I - P_u)), at (u, Z = W)
    def phi(p):
        uu, Z = p[:D], p[D:].reshape(D, D)
        P = np.outer(uu, uu) / (uu @ uu)
        return np.concatenate([np.tile(uu, N), np.tile(uu, K), (P + Z @ (np.eye(D) - P)).ravel()])

    p0 = np.concatenate([u, W.ravel()])
    h = 1e-6
    T = np.stack([(phi(p0 + h * e) - phi(p0 - h * e)) / (2 * h) for e in np.eye(p0.size)], axis=1)
    Ut, s, _ = np.linalg.svd(T, full_matrices=False)
    rank = int(np.sum(s > 1e-6 * s[0]))
    assert rank == D * D == out["zero_modes"]  # 16: d (u) + d^2 - d (W with W u = u)
    Ut = Ut[:, :rank]
    J = st.jacobian
    assert np.linalg.norm(J @ Ut) < 1e-8 * np.linalg.norm(J)  # measured ~1e-15
    ev, V = np.linalg.eigh(0.5 * (J + J.T))
    null = V[:, np.abs(ev) <= 1e-7]
    assert np.linalg.norm(Ut - null @ (null.T @ Ut), 2) < 1e-8  # same subspace
    # other points of the set: fixed points of the numpy loop field, MinL2 = 0
    rng = np.random.default_rng(0)
    A = data.matrix()
    for _ in range(3):
        pt = phi(rng.normal(size=p0.size))
        xs, ys = pt[: N * D].reshape(N, D), pt[N * D : (N + K) * D].reshape(K, D)
        F = projection_field_reference(xs, ys, pt[(N + K) * D :].reshape(D, D), A)
        assert max(np.abs(f).max() for f in F) < 1e-12 * (1 + np.abs(pt).max())
        assert min_l2_reference(ys) == 0.0


# --- long checks: `pytest -m slow` ----------------------------------------------------------


@pytest.mark.slow
def test_plateau_start_escapes_to_the_separated_branch():
    """(3,4,2,4) seed 0: a slow transient at t = 1e4 (max Re J ~ +3e-5), separated by 1e5."""
    data, z0 = _state(K, N_PER, M_SH, D, seed=0)
    out = cj.projection_fixed_point(data, z0, stop_gradient=True, t_max=1e5)
    assert out["branch"] == "separated" and out["t_reached"] > 1e4
    _check_separated(out, N_PER, M_SH, K)
    assert _still(data, out) < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("K2,n,M,d", [(3, 12, 2, 5), (4, 6, 5, 6), (2, 8, 3, 4)])
def test_p2_p3_model_md_configurations(K2, n, M, d):
    data = cj.standard_data(K2, n, M)
    res = cj.classify_starts(data, d, range(4), stop_gradient=True, t_max=1e5)
    assert sum(res["counts"].values()) == 4 and res["counts"]["separated"] >= 2
    for run in res["runs"]:
        assert np.isfinite(run["min_l2"]) and run["min_l2"] > 1e-3
        if run["branch"] == "separated":
            _check_separated(run, n, M, K2)
            assert run["jacobian_max_real"] < 1e-7
            pred = d * d + (data.n_samples - d) * (d - K2)
            assert run["zero_modes"] == run["zero_modes_predicted"] == pred
        elif run["status"] != "fixed-point":
            assert run["residual_before_polish"] > 1e-8 or run["jacobian_max_real"] > 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("K2,n,M,d", [(4, 3, 1, 5), (2, 6, 3, 3), (3, 5, 0, 4)])
def test_p1_more_configurations_and_seeds(K2, n, M, d):
    data = cj.standard_data(K2, n, M)
    # M > 0: collapse is over by t ~ 100; integrating on to t = 3e3 at rtol 1e-12 ran out of
    # 200k steps for (2, 6, 3, 3) (the collapsed state sits at round-off, the controller
    # thrashes). M = 0 needs the long horizon to show the plateau.
    ts = cj.log_times(1e-2, 3e3 if M == 0 else 500.0, 40)
    bound = n / (n + M)
    for seed in range(3):
        z0 = cj.init_projection_state(jax.random.PRNGKey(seed), data.n_samples, K2, d)
        sol = cj.simulate(
            cj.vector_field(cj.projection_loss), z0, data.matrix(), ts=ts, rtol=1e-10, atol=1e-12
        )
        assert sol.result == diffrax.RESULTS.successful
        ml = np.array([min_l2_reference(y) for y in np.asarray(sol.ys.y)])
        if M > 0:
            assert ml[-1] < 1e-6 * ml[0]
        else:
            assert ml[-1] > 1e-3 and abs(ml[-1] - ml[-2]) < 1e-6 * ml[-1]
        for W in np.asarray(sol.ys.W):
            assert cj.omega_max_eigenvalue(W, n, M) <= bound + 1e-12


def _double_well(t, z, args):
    """`F = (z0 - z0^3, -z1)`: a saddle at the origin, stable fixed points at `(+-1, 0)`."""
    return jnp.stack([z[0] - z[0] ** 3, -z[1]])


def test_finder_leaves_a_saddle_instead_of_reporting_it():
    z0 = jnp.zeros(2)  # exactly on the saddle: residual 0, eigenvalues +1 and -1
    st = cj.find_steady_state(_double_well, z0, None, t1=50.0, t_max=500.0)
    assert st.escapes == 1 and st.status == "fixed-point"
    np.testing.assert_allclose(np.abs(np.asarray(st.state)), [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(st.eigenvalues.real, [-2.0, -1.0], atol=1e-10)
    # with no escapes allowed it must say "saddle", never "fixed-point"
    stuck = cj.find_steady_state(_double_well, z0, None, t1=50.0, t_max=500.0, max_escapes=0)
    assert stuck.status == "saddle" and stuck.max_real == pytest.approx(1.0)


def test_fixed_point_reduced_path_equals_full_path(sg_fixed_point):
    """The default finder integrates the reduced path and lifts it back; integrating every
    sample instead (path="full") reaches the same fixed point (same start and field)."""
    data, red = sg_fixed_point
    _, z0 = _state(K, N_PER, M_SH, D, seed=1)
    full = cj.projection_fixed_point(data, z0, stop_gradient=True, path="full")
    assert red["branch"] == full["branch"] == "separated"
    assert red["zero_modes"] == full["zero_modes"]
    np.testing.assert_allclose(red["min_l2"], full["min_l2"], rtol=1e-8)
    np.testing.assert_allclose(red["w_eigenvalues_abs"], full["w_eigenvalues_abs"], atol=1e-8)
    for a, b in zip(red["steady"].state, full["steady"].state, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)
