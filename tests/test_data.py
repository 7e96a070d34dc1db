import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import alignment_reference

import collapse_jax as cj


@pytest.mark.parametrize("K,n,M", [(2, 1, 0), (3, 4, 1), (4, 2, 5)])
def test_standard_alignment_matches_definition(K, n, M):
    data = cj.standard_data(K, n, M)
    np.testing.assert_array_equal(np.asarray(data.matrix()), alignment_reference(K, n, M))
    assert float(data.shared_total) == M
    assert data.n_samples == K * n + M


def test_inactive_rows_are_zero():
    A = np.asarray(cj.standard_data(3, 2, 1, max_shared=3).matrix())
    np.testing.assert_array_equal(A[6], np.ones(3))
    np.testing.assert_array_equal(A[7:], np.zeros((2, 3)))


@pytest.mark.parametrize("rule", ["round", "spread"])
def test_frustration_rule_reports_its_M(rule):
    phis = np.array([0.0, 0.1, 0.25, 0.5])
    K, n = 3, 4
    data = cj.frustration_data(K, n, phis, max_shared=12, rule=rule)
    M_exact = phis * K * n / (1 - phis)
    expected = np.round(M_exact) if rule == "round" else M_exact
    np.testing.assert_allclose(np.asarray(data.shared_total), expected, rtol=1e-14)
    # fixed shape: one alignment matrix per ratio through vmap, each the definition's
    A = np.asarray(jax.vmap(lambda d: d.matrix())(data))
    assert A.shape == (4, K * n + 12, K)
    np.testing.assert_allclose(A[:, K * n :, 0].sum(1), expected, rtol=1e-14)
    for i, M in enumerate(expected):
        ref = np.zeros((K * n + 12, K))
        ref[: K * n] = alignment_reference(K, n, 0)  # clean samples: one class each
        if rule == "round":  # round(M) shared rows of weight 1, the rest inactive (zero)
            ref[K * n : K * n + int(M)] = 1.0
        else:  # spread: all 12 shared rows active, each of weight M / 12
            ref[K * n :] = M / 12
        np.testing.assert_allclose(A[i], ref, rtol=1e-14, atol=0)
    if rule == "spread":  # the realised frustration ratio M / (K n + M) is the requested one
        M_real = A[:, K * n :, 0].sum(1)
        np.testing.assert_allclose(M_real / (K * n + M_real), phis, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cj.standard_data(1, 3, 0), "n_classes must be >= 2, got 1"),
        (lambda: cj.standard_data(3, 0, 0), "per_class must be >= 1, got 0"),
        (lambda: cj.standard_data(3, 2, -1), "shared must be >= 0, got -1"),
        (lambda: cj.standard_data(3, 2.5, 0), "per_class must be an integer, got 2.5"),
        (lambda: cj.standard_data(3, 2, 4, max_shared=2), "max_shared must be >= shared=4"),
        (lambda: cj.frustration_data(3, 2, 1.0, max_shared=4), "frustration must lie in [0, 1)"),
        (lambda: cj.frustration_data(3, 2, -0.1, max_shared=4), "got -0.1"),
        (lambda: cj.frustration_data(3, 2, 0.9, max_shared=4), "max_shared=4 is too small"),
        (lambda: cj.frustration_data(3, 2, 0.1, max_shared=4, rule="x"), "rule must be"),
    ],
)
def test_bad_input_names_argument_and_value(call, message):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert message in str(info.value)


def test_default_initial_state_statistics():
    z = cj.init_embedding_state(jax.random.PRNGKey(3), 20000, 2, 5)
    assert z.x.dtype == jnp.float64
    np.testing.assert_allclose(float(jnp.std(z.x)), 1.0, atol=0.01)
    z = cj.init_embedding_state(jax.random.PRNGKey(3), 2, 20000, 5)
    np.testing.assert_allclose(float(jnp.std(z.y)), 2.0, atol=0.02)
