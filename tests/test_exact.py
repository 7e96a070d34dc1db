import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from helpers import embedding_hessian_reference, min_l2_reference
from jax.flatten_util import ravel_pytree

import collapse_jax as cj

CASES = [
    (2, 1, 0, 1, None),
    (2, 1, 1, 2, None),
    (3, 4, 2, 2, None),
    (4, 3, 0, 2, 2),
    (3, 2, 5, 1, 7),
    (5, 6, 1, 3, None),
]


@pytest.mark.parametrize("K,n,M,d,max_shared", CASES)
def test_sector_eigenvalues_match_hessian(K, n, M, d, max_shared):
    data = cj.standard_data(K, n, M, max_shared=max_shared)
    predicted = np.sort(
        np.concatenate([np.repeat(v, d) for v in cj.sector_eigenvalues(data).values()])
    )
    numeric = np.sort(-np.linalg.eigvalsh(embedding_hessian_reference(data.matrix(), d)))
    np.testing.assert_allclose(predicted, numeric, atol=1e-9)


def test_spread_rule_closed_form_matches_hessian():
    data = cj.frustration_data(3, 4, 0.3, max_shared=5, rule="spread")
    predicted = np.sort(np.concatenate(list(cj.sector_eigenvalues(data).values())))
    numeric = np.sort(-np.linalg.eigvalsh(embedding_hessian_reference(data.matrix(), 1)))
    np.testing.assert_allclose(predicted, numeric, atol=1e-9)


def test_lambda_pm_is_the_quadratic_root():
    for n, M in [(1, 0), (5, 1), (40, 3), (1000, 1e-3)]:
        lp, lm = (float(v) for v in cj.lambda_pm(n, M))
        b = n + M + 1
        for lam in (lp, lm):
            assert abs(lam * lam + b * lam + M) <= 1e-12 * b * b
        assert lm < lp <= 0
    assert float(cj.lambda_pm(10, 0)[0]) == 0.0


@pytest.mark.parametrize("K,n,M,d,max_shared", CASES)
def test_exact_solution_equals_expm(K, n, M, d, max_shared):
    data = cj.standard_data(K, n, M, max_shared=max_shared)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(1), data.n_samples, K, d)
    ts = jnp.array([0.0, 0.01, 0.7, 5.0, 60.0])
    path = cj.exact_solution(z0, data, ts)
    flat0, _ = ravel_pytree(z0)
    J = -embedding_hessian_reference(data.matrix(), d)
    for i, t in enumerate(np.asarray(ts)):
        ref = sl.expm(J * t) @ np.asarray(flat0)
        got = ravel_pytree(jax.tree.map(lambda a, i=i: a[i], path))[0]
        np.testing.assert_allclose(np.asarray(got), ref, atol=1e-12 * np.abs(ref).max())


def test_exact_min_l2_has_no_round_off_floor():
    K, n, M, d = 3, 4, 2, 2
    data = cj.standard_data(K, n, M)
    z0 = cj.init_embedding_state(jax.random.PRNGKey(2), data.n_samples, K, d)
    ts = jnp.array([0.1, 2.0, 20.0, 400.0])
    exact = np.asarray(cj.exact_min_l2(z0, data, ts))
    path = cj.exact_solution(z0, data, ts)
    for i in range(3):  # where label positions still resolve it
        np.testing.assert_allclose(exact[i], min_l2_reference(path.y[i]), rtol=1e-9)
    # Independent reference for every time, t = 400 included: the label differences
    # y_a - y_b and class-mean differences xbar_a - xbar_b obey, from dx_i/dt = -sum_c A_ic
    # (x_i - y_c) and dy_c/dt = sum_i A_ic (x_i - y_c) (the shared rows drop out of the
    # differences), d/dt (dxbar, dy) = [[-1, 1], [n, -(n+M)]] (dxbar, dy). That 2x2 matrix is
    # Metzler, so scipy's expm (scaling and squaring of an entrywise-positive matrix) keeps full
    # relative precision even where the entries are ~1e-52.
    x0, y0 = np.asarray(z0.x), np.asarray(z0.y)
    xbar = x0[: K * n].reshape(K, n, d).mean(1)
    J2 = np.array([[-1.0, 1.0], [n, -(n + M)]])
    ref = []
    for t in np.asarray(ts):
        P = sl.expm(J2 * t)
        dist = [
            np.linalg.norm(P[1, 0] * (xbar[a] - xbar[b]) + P[1, 1] * (y0[a] - y0[b]))
            for a in range(K)
            for b in range(a + 1, K)
        ]
        ref.append(min(dist))
    # measured 1.8e-13 at t = 400 (expm of J2 t with |J2 t| ~ 2600), 1.1e-15 before
    np.testing.assert_allclose(exact, ref, rtol=2e-12)
    # at t = 400 MinL2 ~ e^{lambda+ 400}: far below round-off of O(1) positions, still exact;
    # its late slope is lambda+ in closed form, written out here
    lp = 0.5 * (-(n + M + 1) + np.sqrt((n + M + 1) ** 2 - 4 * M))
    ratio = np.log(exact[3] / exact[2]) / (400.0 - 20.0)
    np.testing.assert_allclose(ratio, lp, rtol=2e-15)  # measured 2.2e-16
    assert exact[3] < 1e-30
