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
    # at t = 400 MinL2 ~ e^{lambda+ 400}: far below round-off of O(1) positions, still exact
    lp = float(cj.lambda_pm(n, M)[0])
    ratio = np.log(exact[3] / exact[2]) / (400.0 - 20.0)
    np.testing.assert_allclose(ratio, lp, rtol=1e-6)
    assert exact[3] < 1e-30
